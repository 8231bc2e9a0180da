"""What the network's width and depth cost on this CPU: one forward pass, as predict runs it.

    python benchmarks/bench_widths.py [--size 1024] [--repeats 9] [--threads 0]

Issue 31 point 4 asks whether a narrower or shallower network would make predict fast enough to
be worth training. This times the forward pass alone of untrained networks of several shapes
(speed does not depend on the weights) through ONNX Runtime, as predict runs the bundled model
on the CPU: one ``size`` x ``size`` tile, the shapes interleaved run by run so that a change in
the machine's load touches all of them alike; median and fastest of ``--repeats`` after a
warm-up, with the multiply-accumulates per input pixel and the parameter count beside.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
import torch

from flowseg.model.net import FlowUNet, NetConfig, count_parameters
from flowseg.model.runtime import export_onnx

SHAPES = {
    "bundled (16..256, full 8)": NetConfig(),
    "half width (8..128)": NetConfig(widths=(8, 16, 32, 64, 128)),
    "half width, full 4": NetConfig(widths=(8, 16, 32, 64, 128), full_res=4),
    "3/4 width (12..192)": NetConfig(widths=(12, 24, 48, 96, 192)),
    "4 levels (16..128)": NetConfig(widths=(16, 32, 64, 128)),
    "3 levels (16..64)": NetConfig(widths=(16, 32, 64)),
    "double width (32..512)": NetConfig(widths=(32, 64, 128, 256, 512)),
    "2 blocks at 1/8..1/32 (blocks 1,1,2,2,2)": NetConfig(blocks=(1, 1, 2, 2, 2)),
    "2 blocks at every level": NetConfig(blocks=2),
}


def macs_per_pixel(net: FlowUNet, size: int = 256) -> float:
    """Multiply-accumulates of the convolutions per input pixel."""
    total = 0

    def count(module: torch.nn.Module, _: object, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels
            total += output.numel() * k // module.groups
    hooks = [m.register_forward_hook(count) for m in net.modules()]
    with torch.inference_mode():
        net(torch.zeros(1, net.config.in_channels, size, size))
    for hook in hooks:
        hook.remove()
    return total / size**2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=0,
                        help="ONNX Runtime intra-op threads (0: its default, the cores)")
    args = parser.parse_args()
    x = np.random.default_rng(0).random((1, 3, args.size, args.size), np.float32)
    sessions, nets = {}, {}
    for name, config in SHAPES.items():
        nets[name] = FlowUNet(config).eval()
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        options.log_severity_level = 3
        sessions[name] = ort.InferenceSession(export_onnx(nets[name]), options,
                                              providers=["CPUExecutionProvider"])
        sessions[name].run(["output"], {"image": x})  # warm-up
    times: dict[str, list[float]] = {name: [] for name in SHAPES}
    for _ in range(args.repeats):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(["output"], {"image": x})
            times[name].append(time.perf_counter() - start)
    base = float(np.median(times[next(iter(SHAPES))]))
    print(f"{args.size}^2 tile, ONNX Runtime {ort.__version__}, threads {args.threads or 'default'}, "
          f"median of {args.repeats}")
    print("| network | parameters | MACs / px | median s | fastest s | median / bundled |")
    print("|---|---|---|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {count_parameters(nets[name]):,} | {macs_per_pixel(nets[name]):,.0f} | "
              f"{np.median(values):.3f} | {min(values):.3f} | {np.median(values) / base:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
