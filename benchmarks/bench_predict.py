"""End-to-end predict time and memory by image size, beside the seed's MONAI UNet.

For each size (default 512, 1024, 2048, 4096, 10000 squared), a synthetic fluorescence image of
touching cells is written to a TIFF; a fresh process then reads it and segments it with the
bundled model, as ``flowseg predict`` does, timing the network part (normalise + tiled forward)
and the masks part (flows -> labels) separately, and reporting its peak RSS; the network part
again through torch instead of ONNX Runtime; and ``python -m flowseg predict`` on the same file,
process start to exit (imports, model, reading, writing: what a user waits for), and its peak RSS
(it resizes an image whose cells ask for it, as the worker does not).

When monai is installed, the seed's network (MONAI UNet, channels 16-256, strides 2, 2 residual
units, 1.63 M parameters; random weights, speed does not depend on them) runs the same image
through MONAI's sliding window (roi 256, batch 4) in the same run.

GPU memory: measured with ``torch.cuda.max_memory_reserved`` when CUDA is available. Without a
GPU, the extra memory of one tiled forward batch is measured on the CPU (the rise in peak RSS of a
fresh process over a batch of tiles, in float32): an estimate of the activations a GPU would hold,
which float16 halves; torch's CUDA context comes on top.

z-stacks (``--volumes``, default one of 32 x 256^2): a synthetic volume of packed nuclei (per-cell
brightness, blur, noise), segmented by ``flowseg.inference.volume.segment_volume`` as ``predict --3d``
does, once with flows followed in 3-D and once with ``--stitch 0.5``: seconds per megavoxel, peak RSS.

    python benchmarks/bench_predict.py [--sizes 512 1024 2048 4096 10000] [--repeats 3]
                                       [--volumes 32x256]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import peak_rss_mb


def make_image(size: int, folder: Path) -> Path:
    import tifffile

    from flowseg.training.synthetic import make_sample

    path = folder / f"synthetic_{size}_v2.tif"
    if not path.exists():
        image, _ = make_sample((size, size), "fluorescence", seed=size)
        # Some seeds give an RGB sample (H, W, 3): stored as RGB, as a microscope's RGB TIFF is.
        # (As "minisblack" tifffile writes it as H pages of W x 3, which flowseg's reader took
        # 1.4 s to walk at 2048^2: in the CLI column until 2026-11-27.)
        photometric = "rgb" if image.ndim == 3 else "minisblack"
        tifffile.imwrite(path, image, compression="zlib", photometric=photometric)
    return path


def worker_flowseg(path: Path, repeats: int, tile: int, batch: int,
                   runtime: str = "auto") -> dict[str, object]:
    from flowseg.inference.blocks import masks_in_blocks
    from flowseg.inference.normalize import PreparedView
    from flowseg.inference.pipeline import load_model
    from flowseg.inference.tiling import TileConfig, run_tiled
    from flowseg.io import read_pixels
    from flowseg.model.execution import plan_execution
    from flowseg.model.runtime import release_memory

    # torch only where it runs the network: its import alone holds memory that predict's ONNX
    # Runtime path never pays, and the peak RSS column is predict's.
    plan = plan_execution("auto", runtime=runtime)
    net = load_model(execution=plan)
    config = TileConfig(tile=tile, batch=batch)
    times: dict[str, list[float]] = {"read": [], "network": [], "masks": []}
    cells = 0
    # What flowseg.inference.pipeline.segment does, timed in parts.
    for run in range(repeats + 1):  # run 0 warms up (JIT, allocator, caches)
        start = time.perf_counter()
        image = read_pixels(path)
        t_read = time.perf_counter()
        output = run_tiled(net, PreparedView(image), config=config, execution=plan)
        release_memory(net)  # as run_at_scale does before the masks
        t_net = time.perf_counter()
        labels = masks_in_blocks(output[:2], output[2])
        t_masks = time.perf_counter()
        cells = int(labels.max())
        del image, output, labels
        if run:
            times["read"].append(t_read - start)
            times["network"].append(t_net - t_read)
            times["masks"].append(t_masks - t_net)
    result: dict[str, object] = {k: statistics.median(v) for k, v in times.items()}
    result["cells"] = cells
    result["rss_mb"] = peak_rss_mb()
    if plan.device == "cuda":
        import torch

        result["gpu_mb"] = torch.cuda.max_memory_reserved() / 2**20
    return result


def make_volume(shape: str, folder: Path) -> Path:
    import tifffile
    from scipy import ndimage

    from flowseg.training.synthetic import random_touching_volume

    path = folder / f"volume_{shape}.tif"
    if not path.exists():
        depth, side = (int(n) for n in shape.split("x"))
        labels = random_touching_volume((depth, side, side), diameter=24, seed=depth + side)
        rng = np.random.default_rng(0)
        brightness = np.concatenate([[0.0], rng.uniform(0.3, 1.0, int(labels.max()))])
        inside = ndimage.grey_erosion(labels, size=3) == labels  # a dim seam between nuclei
        image = ndimage.gaussian_filter(brightness[labels] * inside, 1.5)
        image += rng.normal(0, 0.03, labels.shape)
        tifffile.imwrite(path, (np.clip(image, 0, None) * 4000).astype(np.uint16),
                         photometric="minisblack")
    return path


def worker_volume(path: Path, repeats: int, stitch: str) -> dict[str, object]:
    from flowseg.inference.pipeline import load_model
    from flowseg.inference.volume import VolumeConfig, segment_volume
    from flowseg.io import read_volume

    net = load_model()
    config = VolumeConfig(stitch=float(stitch) if stitch != "none" else None)
    times, cells = [], 0
    for run in range(repeats + 1):  # run 0 warms up
        start = time.perf_counter()
        labels = segment_volume(read_volume(path), net, config=config, diameter=24.0)
        if run:
            times.append(time.perf_counter() - start)
        cells = int(labels.max())
    return {"seconds": statistics.median(times), "cells": cells, "rss_mb": peak_rss_mb(),
            "megavoxels": labels.size / 1e6}


def worker_monai(path: Path, repeats: int) -> dict[str, object]:
    import torch
    from monai.inferers import sliding_window_inference
    from monai.networks.nets import UNet

    from flowseg.inference.normalize import prepare_image
    from flowseg.io import read_image

    torch.manual_seed(0)
    net = UNet(spatial_dims=2, in_channels=3, out_channels=3, channels=(16, 32, 64, 128, 256),
               strides=(2, 2, 2, 2), num_res_units=2).eval()
    x = torch.from_numpy(prepare_image(read_image(path)))[None]
    times = []
    with torch.inference_mode():
        for run in range(repeats + 1):
            start = time.perf_counter()
            sliding_window_inference(x, roi_size=(256, 256), sw_batch_size=4, predictor=net)
            if run:
                times.append(time.perf_counter() - start)
    return {"network": statistics.median(times), "rss_mb": peak_rss_mb()}


def worker_tile_memory(tile: int, batch: int) -> dict[str, object]:
    import torch

    from flowseg.inference.pipeline import load_model

    net = load_model().eval()
    x = torch.randn(batch, 3, tile, tile)
    with torch.inference_mode():
        net(x[:1, :, :64, :64])  # load kernels, allocator set-up
        before = peak_rss_mb()
        net(x)
        after = peak_rss_mb()
    weights = sum(p.numel() * p.element_size() for p in net.parameters()) / 2**20
    # Which precision is fastest on this CPU: float32 against bfloat16 autocast, the latter only
    # where the CPU computes bfloat16 natively (elsewhere it is tens of times slower).
    from flowseg.model.execution import cpu_has_native_bfloat16

    speed = {}
    choices = [("float32", False)] + ([("bfloat16", True)] if cpu_has_native_bfloat16() else [])
    with torch.inference_mode():
        for name, enabled in choices:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=enabled):
                net(x)
                start = time.perf_counter()
                for _ in range(3):
                    net(x)
                speed[name] = (time.perf_counter() - start) / 3
    return {"forward_mb": after - before, "weights_mb": weights, "batch_s": speed}


def time_cli(path: Path, folder: Path, tile: int, batch: int,
             repeats: int, model: Path | None = None) -> tuple[float, float]:
    """Median seconds of ``python -m flowseg predict`` on one image, process start to exit, and
    the largest peak RSS (MB) of those runs: the CLI resizes images whose cells ask for it, which
    the worker columns (at the image's own scale) do not."""
    out = folder / f"cli_{path.stem}"
    seconds, peaks = [], []
    for run in range(repeats + 1):  # run 0 fills the caches (numba, export, file system)
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "flowseg", "predict", "-i", str(path),
                                 "-o", str(out), "--tile", str(tile), "--batch", str(batch),
                                 "--overwrite", *(["--model", str(model)] if model else [])],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak, not all children's
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise RuntimeError(f"predict failed on {path} (exit {proc.returncode})")
        if run:
            seconds.append(time.perf_counter() - start)
            peaks.append(usage.ru_maxrss / 1024)  # KiB on Linux
    return statistics.median(seconds), max(peaks)


def compare_cli(args: argparse.Namespace, common: list[str], have_monai: bool) -> int:
    """predict with ``--cli-model``, start to exit, against the seed's network alone."""
    print(f"{os.cpu_count()} CPUs; model {args.cli_model}; median of {args.repeats} runs after a "
          "warm-up")
    print("| size | MP | predict CLI s (start to exit) | CLI peak RSS MB | MONAI UNet network s "
          "| CLI / MONAI network |")
    print("|---|---|---|---|---|---|")
    for size in args.sizes:
        path = make_image(size, args.folder)
        monai_s = spawn(["--worker", "monai", str(path), *common])["network"] if have_monai else None
        cli_s, cli_mb = time_cli(path, args.folder, args.tile, args.batch, args.repeats,
                                 None if args.cli_model == "bundled" else Path(args.cli_model))
        ratio = f"{cli_s / float(monai_s):.2f}" if monai_s else "-"
        print(f"| {size}^2 | {size * size / 1e6:.2f} | {cli_s:.2f} | {cli_mb:.0f} "
              f"| {f'{monai_s:.2f}' if monai_s else '-'} | {ratio} |", flush=True)
    return 0


def spawn(args: list[str]) -> dict[str, object]:
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1] if proc.stderr else "failed")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096, 10000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tile", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "flowseg-bench")
    parser.add_argument("--volumes", nargs="*", default=["32x256"], metavar="DEPTHxSIDE")
    parser.add_argument("--cli-model", default=None, metavar="CHECKPOINT",
                        help="only the CLI (start to exit) with this model ('bundled': no "
                             "--model, the shipped ONNX export), beside the MONAI network: how "
                             "candidate models compare (issue 31 point 4)")
    parser.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        if kind == "flowseg":
            out = worker_flowseg(Path(rest[0]), args.repeats, args.tile, args.batch, *rest[1:])
        elif kind == "monai":
            out = worker_monai(Path(rest[0]), args.repeats)
        elif kind == "volume":
            out = worker_volume(Path(rest[0]), args.repeats, rest[1])
        else:
            out = worker_tile_memory(args.tile, args.batch)
        print(json.dumps(out))
        return 0
    args.folder.mkdir(parents=True, exist_ok=True)
    try:
        import monai  # noqa: F401

        have_monai = True
    except ImportError:
        have_monai = False
    common = ["--repeats", str(args.repeats), "--tile", str(args.tile), "--batch", str(args.batch)]
    if args.cli_model:
        return compare_cli(args, common, have_monai)
    memory = spawn(["--worker", "tile", *common])
    print(f"{os.cpu_count()} CPUs; tile {args.tile}, batch {args.batch}; median of "
          f"{args.repeats} runs after a warm-up, each size in a fresh process")
    from flowseg.model.execution import plan_execution

    runtime = plan_execution().runtime
    print(f"network runtime: {runtime}; the torch column is the same network through torch "
          "(float32, the cached faster layout), in the same run")
    print("| size | MP | cells | read s | network s | masks s | total s | s/MP | peak RSS MB "
          "| RSS budget MB (1 GB + 16 B/px) | torch network s | MONAI UNet network s "
          "| predict CLI s (start to exit) | CLI peak RSS MB | CLI / MONAI network |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in args.sizes:
        path = make_image(size, args.folder)
        fs = spawn(["--worker", "flowseg", str(path), "auto", *common])
        torch_s = (spawn(["--worker", "flowseg", str(path), "torch", *common])["network"]
                   if runtime != "torch" else fs["network"])
        mp = size * size / 1e6
        total = float(fs["read"]) + float(fs["network"]) + float(fs["masks"])
        budget = 1024 + 16 * size * size / 2**20
        monai_s = spawn(["--worker", "monai", str(path), *common])["network"] if have_monai else None
        cli_s, cli_mb = time_cli(path, args.folder, args.tile, args.batch, args.repeats)
        ratio = f"{cli_s / float(monai_s):.2f}" if monai_s else "-"
        print(f"| {size}^2 | {mp:.2f} | {fs['cells']} | {fs['read']:.2f} | {fs['network']:.2f} "
              f"| {fs['masks']:.2f} | {total:.2f} | {total / mp:.2f} | {fs['rss_mb']:.0f} "
              f"| {budget:.0f} | {float(torch_s):.2f} | {f'{monai_s:.2f}' if monai_s else '-'} "
              f"| {cli_s:.2f} | {cli_mb:.0f} | {ratio} |", flush=True)
        if "gpu_mb" in fs:
            print(f"  GPU max_memory_reserved: {fs['gpu_mb']:.0f} MB")
    print(f"GPU estimate (no GPU here): one forward batch of {args.batch} x {args.tile}^2 tiles "
          f"raised peak RSS by {memory['forward_mb']:.0f} MB in float32 (about "
          f"{float(memory['forward_mb']) / 2:.0f} MB of activations in float16); weights "
          f"{memory['weights_mb']:.1f} MB; plus torch's CUDA context, not measured here.")
    if args.volumes:
        print("\n| z-stack | megavoxels | mode | cells | total s | s/megavoxel | peak RSS MB |")
        print("|---|---|---|---|---|---|---|")
    for shape in args.volumes:
        path = make_volume(shape, args.folder)
        for mode in ("none", "0.5"):
            vs = spawn(["--worker", "volume", str(path), mode, *common])
            label = "3-D flows" if mode == "none" else f"--stitch {mode}"
            print(f"| {shape} | {vs['megavoxels']:.2f} | {label} | {vs['cells']} "
                  f"| {vs['seconds']:.2f} | {float(vs['seconds']) / float(vs['megavoxels']):.2f} "
                  f"| {vs['rss_mb']:.0f} |", flush=True)
    speed = memory["batch_s"]
    print(f"CPU precision, one batch of {args.batch} x {args.tile}^2 tiles (mean of 3): "
          + ", ".join(f"{k} {v:.2f} s" for k, v in speed.items()))  # type: ignore[union-attr]
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    raise SystemExit(main())
