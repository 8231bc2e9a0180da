"""labels -> flows and flows -> masks: flowseg against cellpose 4, side by side.

For each label image (the real samples in ../shared/data, and synthetic images of densely packed
touching cells of 15-40 px diameter at 512^2, 1024^2 and 2048^2, fixed seed):

- labels -> flows: ``flowseg.labels_to_flows`` and ``cellpose.dynamics.masks_to_flows_gpu`` (its CPU
  path when given the CPU device);
- flows -> masks: ``flowseg.masks_from_flows`` and ``cellpose.dynamics.compute_masks``, both fed the
  same exact flows (flowseg's, times 5) and the same cellprob (+-5 logits), with the flow-error
  check on (threshold 0.4) and off, min_size 15, niter 200.

Every figure is the median of --repeats runs after one warm-up run. Each implementation runs in its
own process, so that its peak RSS is its own. F1 is the challenge's F1 of the round trip against the
true labels (each implementation's masks from its own exact flows).

    python benchmarks/bench_masks.py [--sizes 512 1024 2048] [--repeats 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import peak_rss_mb

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
SEED = 2022


def make_inputs(sizes: list[int]) -> dict[str, np.ndarray]:
    from flowseg.io import read_labels
    from flowseg.training.synthetic import random_touching_labels

    inputs = {}
    if (SHARED / "labels").is_dir():
        for path in sorted((SHARED / "labels").glob("*_label.tiff")):
            inputs[path.name[: -len("_label.tiff")]] = read_labels(path)
    for n in sizes:
        inputs[f"dense_{n}"] = random_touching_labels((n, n), diameter=(15, 40), seed=SEED)
    return inputs


def timed(fn, repeats: int) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    result = fn()  # warm-up: JIT compilation, caches, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def import_cellpose() -> tuple[types.ModuleType, str]:
    note = ""
    try:
        import torchvision  # noqa: F401
    except Exception as err:  # absent, or PyPI's build that cannot load beside the CPU torch
        # cellpose.transforms imports torchvision for training augmentations only; none of the
        # functions timed here touch it.
        stub = types.ModuleType("torchvision")
        stub.transforms = types.ModuleType("torchvision.transforms")  # type: ignore[attr-defined]
        for name in ("torchvision.transforms.functional",
                     "torchvision.transforms._functional_tensor"):
            sys.modules[name] = types.ModuleType(name)
        sys.modules["torchvision"] = stub
        sys.modules["torchvision.transforms"] = stub.transforms  # type: ignore[attr-defined]
        note = f"torchvision stand-in ({type(err).__name__})"
    from cellpose import dynamics, version

    return dynamics, f"cellpose {version}" + (f", {note}" if note else "")


def run_worker(impl: str, name: str, sizes: list[int], repeats: int) -> dict[str, object]:
    from flowseg.metrics import challenge_scores
    from flowseg.representation.flows import FLOW_SCALE, labels_to_flows
    from flowseg.representation.masks import MaskConfig, masks_from_flows

    labels = make_inputs(sizes)[name]
    flows = labels_to_flows(labels) * FLOW_SCALE  # the shared input of the masks step
    cellprob = np.where(labels > 0, 5.0, -5.0).astype(np.float32)
    rss_before = peak_rss_mb()
    out: dict[str, object] = {"impl": impl, "name": name, "cells": int(len(np.unique(labels)) - 1)}
    if impl == "flowseg":
        out["flows_s"], own = timed(lambda: labels_to_flows(labels), repeats)
        own_flows = np.asarray(own) * FLOW_SCALE
        for qc, threshold in (("on", 0.4), ("off", 0.0)):
            cfg = MaskConfig(flow_threshold=threshold)
            out[f"masks_{qc}_s"], _ = timed(lambda c=cfg: masks_from_flows(flows, cellprob, config=c),
                                            repeats)
        masks = masks_from_flows(own_flows, cellprob)
        out["version"] = "flowseg"
    else:
        import torch

        dynamics, out["version"] = import_cellpose()
        cpu = torch.device("cpu")
        out["flows_s"], own = timed(lambda: dynamics.masks_to_flows_gpu(labels.astype(np.int64),
                                                                         device=cpu)[0], repeats)
        own_flows = np.asarray(own, np.float32) * 5.0
        for qc, threshold in (("on", 0.4), ("off", 0.0)):
            out[f"masks_{qc}_s"], _ = timed(
                lambda t=threshold: dynamics.compute_masks(
                    flows, cellprob, niter=200, cellprob_threshold=0.0, flow_threshold=t,
                    min_size=15, device=cpu),
                repeats)
        masks = dynamics.compute_masks(own_flows, cellprob, niter=200, cellprob_threshold=0.0,
                                       flow_threshold=0.4, min_size=15, device=cpu)
    scores = challenge_scores(labels, np.asarray(masks))
    out["f1"], out["miou"] = scores.f1, scores.mean_iou
    out["rss_base_mb"] = rss_before
    out["rss_peak_mb"] = peak_rss_mb()
    return out


def spawn(impl: str, name: str, args: argparse.Namespace) -> dict[str, object] | None:
    return spawn_json(__file__, ["--worker", impl, name, "--repeats", str(args.repeats),
                                 "--sizes", *map(str, args.sizes)], f"{impl} on {name}")


def spawn_json(script: str, argv: list[str], label: str) -> dict[str, object] | None:
    """Run ``script argv`` in a fresh process; return the JSON of its last line, None if it failed."""
    proc = subprocess.run([sys.executable, script, *argv], capture_output=True, text=True,
                          env=os.environ.copy())
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        print(f"  {label} failed: {tail[0]}", file=sys.stderr)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ratio(a: object, b: object) -> str:
    return f"{float(b) / float(a):.1f}x" if a and b else "-"  # type: ignore[arg-type]


def print_table(rows: list[tuple[dict, dict | None]], markdown: bool) -> None:
    head = ["image", "cells", "step", "flowseg s", "cellpose s", "cellpose/flowseg",
            "flowseg F1", "cellpose F1", "flowseg RSS MB", "cellpose RSS MB"]
    lines = [head]
    for fs, cp in rows:
        for step, key in (("labels->flows", "flows_s"), ("flows->masks QC on", "masks_on_s"),
                          ("flows->masks QC off", "masks_off_s")):
            cps = cp[key] if cp else None
            lines.append([
                fs["name"], str(fs["cells"]), step, f"{fs[key]:.3f}",
                f"{cps:.3f}" if cps else "-", ratio(fs[key], cps),
                f"{fs['f1']:.4f}", f"{cp['f1']:.4f}" if cp else "-",
                f"{fs['rss_peak_mb']:.0f}", f"{cp['rss_peak_mb']:.0f}" if cp else "-",
            ])
    if markdown:
        print("| " + " | ".join(lines[0]) + " |")
        print("|" + "---|" * len(lines[0]))
        for line in lines[1:]:
            print("| " + " | ".join(line) + " |")
        return
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    for line in lines:
        print("  ".join(cell.rjust(w) for cell, w in zip(line, widths, strict=True)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--no-cellpose", action="store_true", help="time flowseg alone")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(*args.worker, args.sizes, args.repeats)))
        return 0
    names = list(make_inputs(args.sizes))
    rows = []
    version = "cellpose not run"
    for name in names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        fs = spawn("flowseg", name, args)
        cp = None if args.no_cellpose else spawn("cellpose", name, args)
        if cp:
            version = str(cp["version"])
        if fs:
            rows.append((fs, cp))
    print(f"flowseg vs {version}; median of {args.repeats} runs after a warm-up; "
          f"{os.cpu_count()} CPUs; torch threads default")
    print_table(rows, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
