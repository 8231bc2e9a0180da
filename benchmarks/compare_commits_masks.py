"""2-D labels -> flows and flows -> masks timed from one checkout; run it on two to compare commits.

    git worktree add /tmp/old REV
    for r in /tmp/old . /tmp/old .; do python benchmarks/compare_commits_masks.py $r; done

Dense synthetic cells of 15-40 px at 1024^2 and 2048^2 (seed 2022); median of 3 after a warm-up.
"""

from __future__ import annotations

import importlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def timed(fn) -> tuple[float, object]:  # type: ignore[no-untyped-def]
    fn()  # warm-up: numba kernels loaded or compiled
    times, result = [], None
    for _ in range(3):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> int:
    root = str(Path(sys.argv[1]).resolve())
    sys.path.insert(0, root)
    flows_mod = importlib.import_module("flowseg.representation.flows")
    masks_mod = importlib.import_module("flowseg.representation.masks")
    synthetic = importlib.import_module("flowseg.training.synthetic")
    if not flows_mod.__file__.startswith(root):
        raise SystemExit(f"flowseg imported from {flows_mod.__file__}, not {root}")
    for n in (1024, 2048):
        labels = synthetic.random_touching_labels((n, n), diameter=(15, 40), seed=2022)
        flows = flows_mod.labels_to_flows(labels) * flows_mod.FLOW_SCALE
        cellprob = np.where(labels > 0, 5.0, -5.0).astype(np.float32)
        t_flows, _ = timed(lambda lab=labels: flows_mod.labels_to_flows(lab))
        t_masks, masks = timed(lambda f=flows, c=cellprob: masks_mod.masks_from_flows(f, c))
        print(f"{root} {n}^2: flows {t_flows:.3f} s, masks {t_masks:.3f} s, "
              f"cells {int(np.asarray(masks).max())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
