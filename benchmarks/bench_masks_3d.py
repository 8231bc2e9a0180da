"""3-D labels -> flows and flows -> masks: flowseg against cellpose 4, side by side.

For each label volume (synthetic packed touching cells of about 14 voxels across at 32 x 128^2,
48 x 192^2 and 64 x 512^2, fixed seed; and the real sub-volume in ../shared/data3d):

- labels -> flows: ``flowseg.labels_to_flows`` and ``cellpose.dynamics.masks_to_flows_gpu_3d`` on
  the CPU device;
- flows -> masks: ``flowseg.masks_from_flows`` (flow check at its 3-D threshold, 0.8) and
  ``cellpose.dynamics.resize_and_compute_masks(..., do_3D=True)`` (which skips the flow check in
  3-D), both fed the same exact flows (flowseg's, times 5) and cellprob (+-5 logits), min_size 15,
  niter 200.

Every figure is the median of --repeats runs after one warm-up run, each implementation in its own
process (its own peak RSS). F1 and mean matched IoU are those of each implementation's round trip
from its own exact flows against the true labels (IoU >= 0.5, no border removal).

    python benchmarks/bench_masks_3d.py [--shapes 32x128 48x192 64x512] [--repeats 3] [--markdown]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_masks import import_cellpose, print_table, spawn_json, timed
from memory import peak_rss_mb

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data3d"
SEED = 2022
DIAMETER = 14.0


def make_input(name: str) -> np.ndarray:
    from flowseg.io import read_labels
    from flowseg.io.files import find_pairs
    from flowseg.training.synthetic import random_touching_volume

    if name == "real":
        return read_labels(find_pairs(SHARED / "images", SHARED / "labels")[0][1], ndim=3)
    depth, side = (int(n) for n in name.split("_")[1].split("x"))
    return random_touching_volume((depth, side, side), diameter=DIAMETER, seed=SEED)


def run_worker(impl: str, name: str, repeats: int) -> dict[str, object]:
    from flowseg.inference.volume import VOLUME_FLOW_THRESHOLD
    from flowseg.metrics import match_labels
    from flowseg.representation.flows import FLOW_SCALE, labels_to_flows
    from flowseg.representation.masks import MaskConfig, masks_from_flows

    labels = make_input(name)
    flows = labels_to_flows(labels) * FLOW_SCALE
    cellprob = np.where(labels > 0, 5.0, -5.0).astype(np.float32)
    rss_before = peak_rss_mb()
    out: dict[str, object] = {"impl": impl, "name": f"{name} ({'x'.join(map(str, labels.shape))})",
                              "cells": int(len(np.unique(labels)) - 1)}
    if impl == "flowseg":
        out["flows_s"], own = timed(lambda: labels_to_flows(labels), repeats)
        config = MaskConfig(flow_threshold=VOLUME_FLOW_THRESHOLD)
        for qc, cfg in (("on", config), ("off", MaskConfig(flow_threshold=0.0))):
            out[f"masks_{qc}_s"], _ = timed(lambda c=cfg: masks_from_flows(flows, cellprob, config=c),
                                            repeats)
        masks = masks_from_flows(np.asarray(own) * FLOW_SCALE, cellprob, config=config)
        out["version"] = "flowseg"
    else:
        import torch

        dynamics, out["version"] = import_cellpose()
        cpu = torch.device("cpu")
        out["flows_s"], own = timed(lambda: dynamics.masks_to_flows_gpu_3d(
            labels.astype(np.int64), device=cpu), repeats)  # (3, Z, Y, X), no second output
        # cellpose ignores the flow threshold in 3-D: one timing serves both rows.
        out["masks_on_s"], _ = timed(lambda: dynamics.resize_and_compute_masks(
            flows, cellprob, niter=200, cellprob_threshold=0.0, flow_threshold=0.4, do_3D=True,
            min_size=15, device=cpu), repeats)
        out["masks_off_s"] = out["masks_on_s"]
        masks = dynamics.resize_and_compute_masks(
            np.asarray(own, np.float32) * 5.0, cellprob, niter=200, cellprob_threshold=0.0,
            flow_threshold=0.4, do_3D=True, min_size=15, device=cpu)
    scores = match_labels(labels, np.asarray(masks))
    out["f1"], out["miou"] = scores.f1, scores.mean_iou
    out["rss_base_mb"] = rss_before
    out["rss_peak_mb"] = peak_rss_mb()
    return out


def spawn(impl: str, name: str, repeats: int) -> dict[str, object] | None:
    return spawn_json(__file__, ["--worker", impl, name, "--repeats", str(repeats)],
                      f"{impl} on {name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["32x128", "48x192", "64x512"],
                        help="synthetic volumes, DEPTHxSIDE")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--no-cellpose", action="store_true", help="time flowseg alone")
    parser.add_argument("--worker", nargs=2, metavar=("IMPL", "NAME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(run_worker(*args.worker, args.repeats)))
        return 0
    names = [f"packed_{shape}" for shape in args.shapes]
    names += ["real"] if (SHARED / "labels").is_dir() else []
    rows, version = [], "cellpose not run"
    for name in names:
        print(f"measuring {name} ...", file=sys.stderr, flush=True)
        fs = spawn("flowseg", name, args.repeats)
        cp = None if args.no_cellpose else spawn("cellpose", name, args.repeats)
        version = str(cp["version"]) if cp else version
        if fs:
            rows.append((fs, cp))
    print(f"flowseg vs {version}; 3-D; median of {args.repeats} runs after a warm-up; "
          f"{os.cpu_count()} CPUs; torch threads default")
    print_table(rows, args.markdown)
    for fs, cp in rows:
        print(f"{fs['name']}: mean matched IoU flowseg {fs['miou']:.4f}"
              + (f", cellpose {cp['miou']:.4f}" if cp else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
