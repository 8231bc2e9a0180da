"""Two models' real validation scores side by side, with how much of the difference is noise.

    python benchmarks/compare_real.py BASE.csv CANDIDATE.csv [--column f1_50] [--resamples 10000]

Reads the per-image CSVs that ``bench_real.py --csv`` writes for two models and pairs their rows
by source, image and scale. Per modality and scale it prints each model's mean (the challenge's
per-image mean), the candidate's mean minus the base's with a 95 % bootstrap interval over the
images (the same images drawn for both, so what is common to an image cancels), how many images
the candidate scores higher and lower (by more than 0.001), and the 95 % interval of the base's
own mean over images: how far that mean could move on another draw of images like these. A
difference whose interval spans 0 is not shown to be one; with 5 or 7 images (the phase-contrast
and stained-tissue splits) the intervals are several hundredths wide.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import numpy.typing as npt

KEY = ("source", "name", "scale")


def read_rows(path: Path, column: str) -> dict[tuple[str, str, str], tuple[str, float]]:
    """``{(source, name, scale): (modality, value)}`` from one ``bench_real.py --csv`` file.

    Raises
    ------
    ValueError
        One line naming the file and what is wrong with it.
    """
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            missing = [c for c in (*KEY, "modality", column) if c not in (reader.fieldnames or [])]
            if missing:
                raise ValueError(f"{path}: no column {', '.join(missing)} (not a bench_real.py "
                                 f"--csv file?)")
            rows = {}
            for line, row in enumerate(reader, start=2):
                try:
                    value = float(row[column])
                except ValueError:
                    raise ValueError(f"{path}, line {line}: {column} is {row[column]!r}, not a "
                                     f"number") from None
                rows[tuple(row[k] for k in KEY)] = (row["modality"], value)
    except OSError as error:
        raise ValueError(f"{path}: cannot read it ({error.strerror})") from None
    return rows


def mean_interval(values: npt.ArrayLike, *, resamples: int = 10_000,
                  rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Mean and 95 % percentile-bootstrap interval of the mean, resampling the values.

    Examples
    --------
    >>> [round(v, 3) for v in mean_interval([0.9, 0.9, 0.9])]
    [0.9, 0.9, 0.9]
    """
    values = np.asarray(values, np.float64)
    if values.size == 0:
        raise ValueError("no values to take a mean of")
    rng = rng or np.random.default_rng(0)
    draws = rng.integers(0, values.size, (resamples, values.size))
    means = values[draws].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def paired_interval(base: npt.ArrayLike, candidate: npt.ArrayLike, *, resamples: int = 10_000,
                    rng: np.random.Generator | None = None) -> tuple[float, float, float]:
    """Mean of ``candidate - base`` over paired images, with its 95 % bootstrap interval."""
    base, candidate = np.asarray(base, np.float64), np.asarray(candidate, np.float64)
    if base.shape != candidate.shape:
        raise ValueError(f"{base.size} base values against {candidate.size} candidate values")
    return mean_interval(candidate - base, resamples=resamples, rng=rng)


def compare(base: dict[tuple[str, str, str], tuple[str, float]],
            candidate: dict[tuple[str, str, str], tuple[str, float]], *,
            resamples: int = 10_000, seed: int = 0) -> list[dict[str, object]]:
    """One row per (modality, scale) over the images both files hold."""
    groups: dict[tuple[str, str], list[tuple[float, float]]] = defaultdict(list)
    for key in sorted(base.keys() & candidate.keys()):
        modality, value = base[key]
        groups[modality, key[2]].append((value, candidate[key][1]))
    rows = []
    for (modality, scale), pairs in sorted(groups.items()):
        rng = np.random.default_rng(seed)
        a, b = np.array(pairs).T
        diff = paired_interval(a, b, resamples=resamples, rng=rng)
        own = mean_interval(a, resamples=resamples, rng=rng)
        rows.append({"modality": modality, "scale": scale, "images": len(pairs),
                     "base": float(a.mean()), "candidate": float(b.mean()), "difference": diff,
                     "better": int(np.sum(b - a > 0.001)), "worse": int(np.sum(a - b > 0.001)),
                     "base_interval": own[1:]})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path)
    parser.add_argument("candidate", type=Path)
    parser.add_argument("--column", default="f1_50",
                        help="a per-image column of bench_real.py's CSV (f1_75, f1_true, ...)")
    parser.add_argument("--resamples", type=int, default=10_000)
    args = parser.parse_args(argv)
    if args.resamples < 100:
        print(f"compare_real.py: --resamples must be at least 100, got {args.resamples}",
              file=sys.stderr)
        return 2
    try:
        base, candidate = (read_rows(p, args.column) for p in (args.base, args.candidate))
    except ValueError as error:
        print(f"compare_real.py: {error}", file=sys.stderr)
        return 2
    rows = compare(base, candidate, resamples=args.resamples)
    if not rows:
        print(f"compare_real.py: {args.base} and {args.candidate} share no image", file=sys.stderr)
        return 2
    print(f"{args.column}: {args.candidate} against {args.base}, 95 % bootstrap intervals over "
          f"images ({args.resamples} resamples)\n")
    print("| modality | scale | images | base | candidate | difference [95 % interval] | "
          "images better / worse | base's mean, 95 % interval |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        d, lo, hi = r["difference"]
        blo, bhi = r["base_interval"]
        # One image has no spread to resample: its difference is all there is to say.
        spread = f" [{lo:+.3f}, {hi:+.3f}]" if r["images"] > 1 else " (one image)"
        own = f"[{blo:.3f}, {bhi:.3f}]" if r["images"] > 1 else "-"
        print(f"| {r['modality']} | {float(r['scale']):g}x | {r['images']} | {r['base']:.3f} | "
              f"{r['candidate']:.3f} | {d:+.3f}{spread} | {r['better']} / {r['worse']} | "
              f"{own} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
