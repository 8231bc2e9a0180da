"""What the tiles' context costs: the network pass at 128 and at 224 px of context, same run.

    python benchmarks/bench_context_cost.py [--sizes 1024 2048 4096] [--repeats 3]

224 px covers the bundled network's receptive field (benchmarks/bench_tiling.py: tiles then give
the whole run's labels exactly); 128 px was the default before. For gray synthetic nuclei images
of each size, ``run_tiled`` (default tile 1024, batch 1, CPU, the default runtime) is timed at both
contexts, alternately, median of ``--repeats`` runs after a warm-up; the ratio is 224 over 128.
"""

from __future__ import annotations

import argparse
import statistics
import time

from flowseg.inference.normalize import PreparedView
from flowseg.inference.pipeline import as_channels_first, load_model
from flowseg.inference.tiling import TileConfig, run_tiled
from flowseg.model.execution import plan_execution
from flowseg.training.synthetic import make_sample


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    plan = plan_execution("cpu")
    net = load_model(execution=plan)
    print(f"runtime {plan.runtime}, precision {plan.precision}")
    print("| image | context 128 s | context 224 s | ratio |")
    print("|---|---|---|---|")
    for size in args.sizes:
        image, _ = make_sample((size, size), "nuclei", seed=size)
        view = PreparedView(as_channels_first(image[..., 2] if image.ndim == 3 else image))
        times: dict[int, list[float]] = {128: [], 224: []}
        for run in range(args.repeats + 1):
            for context in (128, 224):
                start = time.perf_counter()
                run_tiled(net, view, config=TileConfig(context=context), execution=plan)
                if run:  # run 0 warms up
                    times[context].append(time.perf_counter() - start)
        old, new = (statistics.median(times[c]) for c in (128, 224))
        print(f"| {size}^2 | {old:.2f} | {new:.2f} | {new / old:.2f}x |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
