"""Training throughput and forward time of FlowUNet, beside cellpose's CPnet.

- training: optimisation steps (forward, backward, AdamW) on 256 x 256 crops in batches of 8, and
  separately the data pipeline (augmented samples per second from FlowDataset, one process);
- inference: one 512 x 512 tile, batch 1, eval mode, no gradient; parameter counts.

CPnet (cellpose 1-3's network, widths 32-256) left cellpose in version 4; pass a cellpose 3 wheel
(``pip download --no-deps cellpose==3.1.1.2``) with --cpnet-wheel to time it in the same run. Its
``resnet_torch`` module imports torch alone.

    python benchmarks/bench_train.py [--cpnet-wheel cellpose-3.1.1.2-py3-none-any.whl]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import torch

from flowseg.model.net import FlowUNet, count_parameters
from flowseg.training.loss import flow_loss


def median_time(fn, repeats: int, warmup: int = 2) -> float:  # type: ignore[no-untyped-def]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def load_cpnet(wheel: Path | None) -> type | None:
    try:
        from cellpose.resnet_torch import CPnet  # cellpose < 4

        return CPnet  # type: ignore[no-any-return]
    except ImportError:
        pass
    if wheel is None:
        return None
    folder = Path(tempfile.mkdtemp())
    with zipfile.ZipFile(wheel) as archive:
        archive.extract("cellpose/resnet_torch.py", folder)
    spec = importlib.util.spec_from_file_location("cp3_resnet_torch",
                                                  folder / "cellpose" / "resnet_torch.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.CPnet  # type: ignore[no-any-return]


def train_step_time(net: torch.nn.Module, batch: int, crop: int, repeats: int,
                    boundary_weight: float = 0.0) -> float:
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
    x = torch.randn(batch, 3, crop, crop)
    y = torch.zeros(batch, 3, crop, crop)
    y[:, 2] = (torch.rand(batch, crop, crop) > 0.5).float()
    net.train()

    def step() -> None:
        out = net(x)
        out = out[0] if isinstance(out, tuple) else out
        flow, prob = flow_loss(out, y, boundary_weight)
        optimizer.zero_grad()
        (flow + prob).backward()
        optimizer.step()

    return median_time(step, repeats)


def forward_time(net: torch.nn.Module, size: int, repeats: int) -> float:
    net.eval()
    x = torch.randn(1, 3, size, size)
    with torch.inference_mode():
        return median_time(lambda: net(x), repeats)


def data_rate(samples: int) -> float:
    import tifffile

    from flowseg.io import write_labels
    from flowseg.training.dataset import DataConfig, FlowDataset
    from flowseg.training.synthetic import make_sample

    root = Path(tempfile.mkdtemp())
    (root / "images").mkdir()
    for i in range(6):
        image, labels = make_sample((512, 512), ("fluorescence", "brightfield", "tissue")[i % 3],
                                    seed=i)
        tifffile.imwrite(root / "images" / f"s{i}.tif", image)
        write_labels(labels, root / "labels" / f"s{i}_label.tiff")
    from flowseg.training.dataset import discover_pairs

    ds = FlowDataset(discover_pairs(root), DataConfig(crop=256), cache_dir=root / "cache")
    ds[(0, 0)]
    start = time.perf_counter()
    for k in range(samples):
        ds[(k % len(ds), k)]
    return samples / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cpnet-wheel", type=Path, help="a cellpose 3 wheel holding CPnet")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    nets = {"flowseg FlowUNet": FlowUNet()}
    cpnet = load_cpnet(args.cpnet_wheel)
    if cpnet is not None:
        nets["cellpose CPnet 32-256"] = cpnet(nbase=[3, 32, 64, 128, 256], nout=3, sz=3)
    else:
        print("CPnet not available: pass --cpnet-wheel", file=sys.stderr)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}; "
          f"median of {args.repeats} after 2 warm-up runs")
    print("| network | parameters | train step, batch 8 x 256^2 (s) | train images/s "
          "| forward 512^2 tile (s) | forward s/MP |")
    print("|---|---|---|---|---|---|")
    base = None
    for name, net in nets.items():
        step = train_step_time(net, 8, 256, args.repeats)
        fwd = forward_time(net, 512, args.repeats)
        base = base or (step, fwd)
        print(f"| {name} | {count_parameters(net):,} | {step:.3f} | {8 / step:.1f} | {fwd:.3f} "
              f"| {fwd / (512 * 512 / 1e6):.3f} |")
    weighted = train_step_time(nets["flowseg FlowUNet"], 8, 256, args.repeats, boundary_weight=9.0)
    print(f"FlowUNet train step with the touching-edge weight (boundary_weight 9): {weighted:.3f} s, "
          f"{weighted / base[0]:.2f}x the plain loss's")
    if len(nets) > 1:
        print(f"CPnet / FlowUNet time: train step {step / base[0]:.2f}x, forward {fwd / base[1]:.2f}x")
    print(f"data pipeline (FlowDataset, 256^2 crops from 512^2 images, one process): "
          f"{data_rate(64):.1f} samples/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
