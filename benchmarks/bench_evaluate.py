"""Time of the challenge's scoring on a large label image, with and without the errors by kind.

    python benchmarks/bench_evaluate.py [--tiles 10] [--repeats 3]

A 1000^2 image of touching cells (10-30 px, seed 1) tiled ``--tiles`` x ``--tiles`` times with
fresh ids (10,000^2 and 250,000 cells by default), against itself shifted by (2, 3) px (a
prediction that matches most cells and misses the smallest). Times
:func:`flowseg.metrics.challenge_scores` and
:func:`flowseg.metrics.challenge_scores_and_errors` (what ``flowseg evaluate`` runs), median of
``--repeats`` after one warm-up, in one process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from flowseg.metrics import challenge_scores, challenge_scores_and_errors
from flowseg.training.synthetic import random_touching_labels


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    base = random_touching_labels((1000, 1000), diameter=(10, 30), seed=1).astype(np.uint32)
    n = int(base.max())
    true = np.block([[np.where(base > 0, base + (i * args.tiles + j) * n, 0)
                      for j in range(args.tiles)] for i in range(args.tiles)]).astype(np.uint32)
    pred = np.roll(true, (2, 3), axis=(0, 1))
    print(f"{true.shape[0]}^2, {int(true.max())} cells; median of {args.repeats} after a warm-up")
    for function in (challenge_scores, challenge_scores_and_errors):
        function(true[:2000, :2000], pred[:2000, :2000])  # warm-up (numba, imports)
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = function(true, pred)
            times.append(time.perf_counter() - start)
        print(f"{function.__name__}: {statistics.median(times):.2f} s  {result}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
