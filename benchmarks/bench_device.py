"""What needs other hardware than ours: a GPU, or a CPU with native bfloat16.

    python benchmarks/bench_device.py [--model PATH] [--images 3] [--memory-sizes 1024 4096 10000]

Four parts, each run where the machine allows it:
1. agreement: every precision this machine offers (CPU bfloat16 where the CPU has it natively,
   CUDA float16 and float32) against torch float32 on the CPU, image by image on
   bench_accuracy's held-out sets at 1x: F1@0.5 against the truth and, against the CPU float32
   labels, matched F1 and mean matched IoU (issue 16 asks F1 >= 0.995 before bfloat16 is trusted);
2. network speed: ``run_tiled`` on a 2048^2 image (1024^2 on the CPU), median of 3 after a
   warm-up, per precision and layout; the CPU at all its threads and at 2;
3. GPU memory of ``flowseg predict --device cuda`` as a user runs it, one process per image size
   (images tiled from a 1024^2 synthetic sample): the device's used memory sampled every 5 ms
   through NVML, minus what was used before the process started, so the CUDA context counts;
   plus torch's own peak of allocated tensors for one tiled forward;
4. end to end on the GPU: ``segment`` (network fp16 on the GPU, masks on the CPU), median of 3.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import numpy as np
import tifffile
from bench_accuracy import real_set, synthetic_set

from flowseg.inference.normalize import PreparedView
from flowseg.inference.pipeline import as_channels_first, load_model, segment_with_outputs
from flowseg.inference.tiling import TileConfig, run_tiled
from flowseg.metrics import challenge_scores, match_labels
from flowseg.model.execution import (
    Execution,
    cpu_has_native_bfloat16,
    plan_execution,
    read_cpu_model_and_flags,
)
from flowseg.training.synthetic import MODALITIES, make_sample


def machine() -> str:
    import torch

    model, flags = read_cpu_model_and_flags() or ("unknown CPU", [])
    wanted = [f for f in flags if f.startswith(("avx512", "amx")) or f in ("avx2", "fma")]
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (f"CPU {model}, {os.cpu_count()} logical cores, torch threads "
            f"{torch.get_num_threads()}; flags {' '.join(wanted)}; GPU {gpu}; torch "
            f"{torch.__version__}; native bfloat16 {cpu_has_native_bfloat16()}")


def plans() -> dict[str, Execution]:
    import torch

    from flowseg.model.runtime import onnxruntime_available

    found = {"cpu float32": plan_execution("cpu", "float32", runtime="torch")}
    if onnxruntime_available():
        found["cpu float32 onnxruntime"] = plan_execution("cpu", "float32", runtime="onnxruntime")
    if cpu_has_native_bfloat16():
        found["cpu bfloat16"] = plan_execution("cpu", "bfloat16", runtime="torch")
    if torch.cuda.is_available():
        found["cuda float32"] = plan_execution("cuda", "float32")
        found["cuda float16"] = plan_execution("cuda", "float16")
    return found


def agreement(model: Path | None, images: int) -> None:
    chosen = plans()
    nets = {name: load_model(model, execution=plan) for name, plan in chosen.items()}
    sets = {m: list(synthetic_set(m, images, 384)) for m in MODALITIES}
    sets["real"] = list(real_set())
    others = [n for n in chosen if n != "cpu float32"]
    print("\n## 1. Agreement with torch float32 on the CPU (bench_accuracy held-out sets, 1x)")
    print("| set | images | F1 truth cpu float32 |" + "".join(
        f" F1 truth {n} | F1 vs f32 {n} | IoU vs f32 {n} |" for n in others))
    print("|---" * (3 + 3 * len(others)) + "|")
    worst = {n: 1.0 for n in others}
    for name, samples in sets.items():
        if not samples:
            continue
        truth_f1 = {n: [] for n in chosen}
        agree = {n: [] for n in others}
        for image, truth in samples:
            raw = as_channels_first(image, channel_axis=-1 if image.ndim == 3 else None)
            labels = {n: segment_with_outputs(raw, nets[n], channel_axis=0,
                                              execution=chosen[n]).labels for n in chosen}
            for n in chosen:
                truth_f1[n].append(challenge_scores(truth, labels[n]).f1)
            for n in others:
                m = match_labels(labels["cpu float32"], labels[n])
                agree[n].append((m.f1, m.mean_iou))
                worst[n] = min(worst[n], m.f1)
        cells = [f"{np.mean(truth_f1['cpu float32']):.3f}"]
        for n in others:
            a = np.array(agree[n])
            cells += [f"{np.mean(truth_f1[n]):.3f}", f"{a[:, 0].mean():.4f}", f"{a[:, 1].mean():.4f}"]
        print(f"| {name} | {len(samples)} | " + " | ".join(cells) + " |", flush=True)
    for n, f1 in worst.items():
        print(f"worst single-image F1 against cpu float32, {n}: {f1:.4f}")


def network_speed(model: Path | None) -> None:
    import torch

    print("\n## 2. Network speed (run_tiled, default tiles; median of 3 after a warm-up)")
    print("| precision | layout | threads | image | s | s/MP |")
    print("|---|---|---|---|---|---|")
    configs = []
    for name, plan in plans().items():
        layouts = (False, True) if plan.device == "cpu" and plan.runtime == "torch" else (False,)
        for last in layouts:
            counts = sorted({torch.get_num_threads(), 2}) if plan.device == "cpu" else [None]
            for threads in counts:
                configs.append((name, Execution(plan.device, plan.precision, last, plan.runtime),
                                threads))
    all_threads = torch.get_num_threads()
    for name, plan, threads in configs:
        side = 1024 if plan.device == "cpu" else 2048
        image, _ = make_sample((side, side), "nuclei", seed=4)
        view = PreparedView(as_channels_first(image))
        net = load_model(model, execution=plan)
        torch.set_num_threads(threads or all_threads)
        seconds = []
        for _ in range(4):
            start = time.perf_counter()
            run_tiled(net, view, execution=plan)
            if plan.device == "cuda":
                torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        median = float(np.median(seconds[1:]))
        print(f"| {name} | {'NHWC' if plan.channels_last else 'NCHW'} | {threads or '-'} | "
              f"{side}^2 | {median:.3f} | {median / (side * side / 1e6):.3f} |", flush=True)
    torch.set_num_threads(all_threads)


class UsedMemory(threading.Thread):
    """The GPU's used memory (NVML), sampled every 5 ms; ``peak`` in MiB."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        import pynvml

        pynvml.nvmlInit()
        self.nvml = pynvml
        self.handle = pynvml.nvmlDeviceGetHandleByIndex(0)
        self.peak = self.read()
        self.running = True

    def read(self) -> float:
        return self.nvml.nvmlDeviceGetMemoryInfo(self.handle).used / 2**20

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.read())
            time.sleep(0.005)


def gpu_memory(model: Path | None, sizes: list[int]) -> None:
    import torch

    print("\n## 3. GPU memory of `flowseg predict --device cuda` (one process per image)")
    print("| image | MP | wall s | GPU used, peak - before (MiB, context included) |")
    print("|---|---|---|---|")
    sample, _ = make_sample((1024, 1024), "nuclei", seed=4)
    with tempfile.TemporaryDirectory() as tmp:
        for side in sizes:
            folder = Path(tmp) / f"in{side}"
            folder.mkdir()
            reps = -(-side // 1024)
            big = np.tile(sample, (reps, reps) + (1,) * (sample.ndim - 2))[:side, :side]
            tifffile.imwrite(folder / f"tiled{side}.tif", big)
            del big
            sampler = UsedMemory()
            before = sampler.peak
            sampler.start()
            command = [sys.executable, "-m", "flowseg", "predict", "-i", str(folder), "-o",
                       str(Path(tmp) / f"out{side}"), "--device", "cuda"]
            if model:
                command += ["--model", str(model)]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            wall = time.perf_counter() - start
            sampler.running = False
            sampler.join()
            if done.returncode:
                print(f"| {side}^2 | failed: {done.stderr.strip().splitlines()[-1:]} |")
                continue
            print(f"| {side}^2 | {side * side / 1e6:.1f} | {wall:.1f} | "
                  f"{sampler.peak - before:.0f} |", flush=True)
    plan = plan_execution("cuda", "float16")
    net = load_model(model, execution=plan)
    image, _ = make_sample((4096, 4096), "nuclei", seed=4)
    view = PreparedView(as_channels_first(image))
    run_tiled(net, view, execution=plan)
    torch.cuda.reset_peak_memory_stats()
    run_tiled(net, view, execution=plan)
    print(f"torch peak of allocated tensors, one tiled float16 forward of 4096^2 (default tiles "
          f"{TileConfig().tile} + 2 x {TileConfig().context}, batch {TileConfig().batch}): "
          f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB allocated, "
          f"{torch.cuda.max_memory_reserved() / 2**20:.0f} MiB reserved")


def end_to_end(model: Path | None) -> None:
    import torch

    print("\n## 4. End to end on the GPU (segment: network float16 on the GPU, masks on the CPU)")
    print("| image | cells | s (median of 3) | s/MP |")
    print("|---|---|---|---|")
    plan = plan_execution("cuda", "float16")
    net = load_model(model, execution=plan)
    for side in (2048, 4096):
        image, truth = make_sample((side, side), "nuclei", seed=4)
        raw = as_channels_first(image)
        seconds = []
        for _ in range(4):
            start = time.perf_counter()
            labels = segment_with_outputs(raw, net, channel_axis=0, execution=plan).labels
            torch.cuda.synchronize()
            seconds.append(time.perf_counter() - start)
        median = float(np.median(seconds[1:]))
        print(f"| {side}^2 | {int(labels.max())} (truth {int(truth.max())}) | {median:.2f} | "
              f"{median / (side * side / 1e6):.3f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--images", type=int, default=3)
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[1024, 4096, 10000])
    parser.add_argument("--parts", type=int, nargs="+", default=[1, 2, 3, 4],
                        help="which parts, in this order")
    args = parser.parse_args()
    import torch

    print(machine(), flush=True)
    parts = {1: lambda: agreement(args.model, args.images),
             2: lambda: network_speed(args.model),
             3: lambda: gpu_memory(args.model, args.memory_sizes),
             4: lambda: end_to_end(args.model)}
    failed = 0
    for part in args.parts:
        if part in (3, 4) and not torch.cuda.is_available():
            print(f"\npart {part} skipped: no CUDA device")
            continue
        try:  # one part failing on a machine lent for minutes must not cost the others
            parts[part]()
        except Exception:
            traceback.print_exc()
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
