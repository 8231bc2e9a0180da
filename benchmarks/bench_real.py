"""Accuracy on the real validation splits of ../shared/data_real, per source and modality.

    python benchmarks/bench_real.py [--model PATH] [--scales 1 0.5 2] [--csv OUT.csv] [--tta]

The split is scripts/real_data.py's: a tenth of every source by a hash of the file name, never
read by scripts/train_default_model.py. Every image is segmented with no option given (the
automatic diameter) at each ``--scales`` factor (bilinear image, nearest-neighbour labels), and
at 1x also at its true diameter (the median over its whole cells, as the estimate measures it),
so that the estimate's cost shows.

Per source, modality and scale: challenge F1 at IoU 0.5 and 0.75 (cells touching the 2-px
border removed from both sides), F1@0.5 at the true diameter, the estimate against the true
diameter (median ratio and the worst image), merges, splits, missed cells (FN), false objects
(FP) and seconds per megapixel end to end (model loaded). F1@0.5 is the mean over images, as
the challenge ranks; "pooled" is F1@0.5 over the group's cells together (2 TP / (2 TP + FP +
FN) summed over images), which one image of few cells moves less. A second table sorts the
missed cells and false objects by kind (flowseg.metrics.scores_and_errors): missed in a merge, found
but misdrawn, undetected; false objects that are pieces of cells, or on background.
``--tta`` runs every image as ``predict --tta`` does (the network's outputs averaged over the
four mirrorings).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from skimage.transform import rescale as sk_rescale

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from real_data import real_pairs

from flowseg.inference import estimate
from flowseg.inference.estimate import median_diameter
from flowseg.inference.pipeline import load_model, segment_with_outputs
from flowseg.inference.tiling import TileConfig
from flowseg.io import read_image, read_labels
from flowseg.metrics import (
    Errors,
    challenge_scores,
    challenge_scores_and_errors,
    merges_and_splits,
)

FIELDS = ("source", "modality", "name", "scale", "cells", "f1_50", "f1_75", "f1_true",
          "estimate", "true_diameter", "merges", "splits", "matched", "missed", "false", "seconds",
          "pixels", *Errors.__dataclass_fields__)


def resized(image: np.ndarray, labels: np.ndarray, factor: float) -> tuple[np.ndarray, np.ndarray]:
    """Resize ``image`` (C, H, W) bilinearly and ``labels`` by nearest neighbour."""
    if factor == 1:
        return image, labels
    big = sk_rescale(image, factor, order=1, preserve_range=True, anti_aliasing=factor < 1,
                     channel_axis=0)
    lab = sk_rescale(labels, factor, order=0, preserve_range=True, anti_aliasing=False)
    return big.astype(np.float32), lab.astype(np.uint32)


def score_image(net, source: str, modality: str, image_path: Path, label_path: Path,
                factor: float, tiles: TileConfig = TileConfig()) -> dict[str, object]:
    image, labels = resized(read_image(image_path), read_labels(label_path), factor)
    true = median_diameter(labels)[0]
    start = time.perf_counter()
    result = segment_with_outputs(image, net, tiles=tiles, channel_axis=0, device="cpu")
    seconds = time.perf_counter() - start
    at50, errors = challenge_scores_and_errors(labels, result.labels)
    merges, splits = merges_and_splits(labels, result.labels)
    row = {"source": source, "modality": modality, "name": image_path.stem, "scale": factor,
           "cells": int(len(np.unique(labels)) - 1), "f1_50": at50.f1,
           "f1_75": challenge_scores(labels, result.labels, threshold=0.75).f1,
           "f1_true": np.nan, "estimate": result.diameter, "true_diameter": true,
           "merges": merges, "splits": splits, "matched": at50.tp, "missed": at50.fn, "false": at50.fp,
           "seconds": seconds, "pixels": labels.size}
    row |= vars(errors)
    if factor == 1 and true > 0:
        fixed = segment_with_outputs(image, net, tiles=tiles, channel_axis=0, device="cpu",
                                     diameter=true)
        row["f1_true"] = challenge_scores(labels, fixed.labels).f1
    return row


def summarise(rows: list[dict[str, object]]) -> None:
    groups: dict[tuple[object, ...], list[dict[str, object]]] = defaultdict(list)
    for row in rows:
        groups[(row["source"], row["modality"], row["scale"])].append(row)
        groups[("all", row["modality"], row["scale"])].append(row)
    print("| source | modality | scale | images | cells | F1@0.5 | pooled | F1@0.75 "
          "| F1@0.5 true d | est./true median | worst | merges | splits | missed | false | s/MP |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for (source, modality, scale), group in sorted(groups.items(), key=lambda kv: (
            kv[0][0] == "all", kv[0][0], kv[0][1], kv[0][2] != 1, kv[0][2])):
        ratios = np.array([float(r["estimate"]) / float(r["true_diameter"]) for r in group
                           if float(r["true_diameter"]) > 0])
        worst = ratios[np.argmax(np.abs(np.log(ratios)))] if ratios.size else np.nan
        true = [float(r["f1_true"]) for r in group if not np.isnan(float(r["f1_true"]))]
        print(f"| {source} | {modality} | {scale:g}x | {len(group)} | "
              f"{sum(int(r['cells']) for r in group)} | "
              f"{np.mean([r['f1_50'] for r in group]):.3f} | {pooled_f1(group):.3f} | "
              f"{np.mean([r['f1_75'] for r in group]):.3f} | "
              f"{np.mean(true) if true else np.nan:.3f} | "
              f"{np.median(ratios) if ratios.size else np.nan:.2f} | {worst:.2f} | "
              + " | ".join(str(sum(int(r[k]) for r in group))
                           for k in ("merges", "splits", "missed", "false"))
              + f" | {per_megapixel(group):.2f} |")


def summarise_errors(rows: list[dict[str, object]]) -> None:
    groups: dict[tuple[object, ...], list[dict[str, object]]] = defaultdict(list)
    for row in rows:
        groups[(row["modality"], row["scale"])].append(row)
    print("\n| modality | scale | missed: in a merge | misdrawn | undetected "
          "| false: pieces | on background |")
    print("|---|---|---|---|---|---|---|")
    for (modality, scale), group in sorted(groups.items(), key=lambda kv: (
            kv[0][0], kv[0][1] != 1, kv[0][1])):
        print(f"| {modality} | {scale:g}x | "
              + " | ".join(str(sum(int(r[k]) for r in group)) for k in Errors.__dataclass_fields__)
              + " |")


def pooled_f1(group: list[dict[str, object]]) -> float:
    """F1@0.5 over all of a group's scored cells at once."""
    tp, fp, fn = (sum(int(r[k]) for r in group) for k in ("matched", "false", "missed"))
    return 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")


def per_megapixel(group: list[dict[str, object]]) -> float:
    return sum(float(r["seconds"]) for r in group) / sum(int(r["pixels"]) for r in group) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 2.0])
    parser.add_argument("--csv", type=Path, default=None, help="per-image rows")
    parser.add_argument("--no-second-look", action="store_true",
                        help="turn off the estimate's second looks (the half-size check of "
                             "estimate_diameter and run_estimated's rerun) to measure them")
    parser.add_argument("--tta", action="store_true",
                        help="average the network over the four mirrorings (predict --tta)")
    args = parser.parse_args()
    if args.no_second_look:
        estimate.SPLIT_CHECK_FROM = float("inf")
        estimate.LOOK_RANGE = (0.0, float("inf"))
    pairs = list(real_pairs("val"))
    if not pairs:
        print("no real validation images: ../shared/data_real is absent")
        return 1
    net = load_model(args.model)
    print(f"model: {args.model or 'bundled'}; {len(pairs)} validation images"
          + ("; second looks off" if args.no_second_look else "")
          + ("; --tta" if args.tta else ""))
    tiles = TileConfig(flip_tta=args.tta)
    rows = [score_image(net, *pair, factor, tiles) for factor in args.scales for pair in pairs]
    summarise(rows)
    summarise_errors(rows)
    if args.csv:
        with open(args.csv, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
