"""Accuracy of a model on data its training never saw: per modality, per cell size, per scale.

    python benchmarks/bench_accuracy.py [--model PATH] [--images 6] [--size 384] [--sizes]

Held-out sets (none of them, nor their seeds, is used by scripts/train_default_model.py):
- synthetic: ``--images`` images of ``--size``^2 per generator of flowseg.training.synthetic, at the
  modality's typical cell diameter, seeds 500,000 and up (training uses seeds below 10,000);
  ``bacteria`` is a modality the default model never saw (DIC was, up to the ninth model);
- real: the bottom halves of ../shared/data's images, and planes 32-34 of
  ../shared/data3d/cells3d_nuclei_z22-34 (one id per piece, pieces under 15 px dropped, as
  ../shared/data does);
- every set again resized by 0.5x and 2x (bilinear images, nearest-neighbour labels), segmented
  with no option given, so the automatic diameter must cope;
- with ``--sizes``: nuclei and phase contrast at diameters of 8 to 150 px.

Per set and scale: challenge F1 at IoU 0.5 and 0.75 (border cells removed), F1 at 0.5 over all
cells (those cut by the image's edge too, which a user sees but the challenge does not score),
merges, splits, missed cells (FN) and false objects (FP) at 0.5, the median estimated diameter,
and seconds per megapixel end to end (network, rescaling and masks; model already loaded).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import tifffile
from skimage.transform import rescale as sk_rescale

from flowseg.inference.pipeline import as_channels_first, load_model, segment_with_outputs
from flowseg.inference.tiling import TileConfig
from flowseg.io import read_labels
from flowseg.io.files import find_pairs
from flowseg.metrics import challenge_scores, match_labels, merges_and_splits
from flowseg.training.synthetic import MODALITIES, TYPICAL_DIAMETER, make_sample
from flowseg.training.synthetic.labels import tidy_labels

SHARED = Path(__file__).resolve().parents[2] / "shared"
HELD_OUT_PLANES = (10, 11, 12)  # z = 32, 33, 34


def synthetic_set(modality: str, count: int, size: int, diameter: float | None = None):
    for i in range(count):
        seed = 500_000 + 1000 * MODALITIES.index(modality) + i
        yield make_sample((size, size), modality, seed=seed,
                          diameter=diameter or TYPICAL_DIAMETER[modality])


def real_set():
    data, stack = SHARED / "data", SHARED / "data3d"
    if (data / "images").is_dir():
        for image_path, label_path in find_pairs(data / "images", data / "labels"):
            image, labels = tifffile.imread(image_path), read_labels(label_path)
            half = labels.shape[0] // 2
            yield image[half:], labels[half:]
    if (stack / "images").is_dir():
        for image_path, label_path in find_pairs(stack / "images", stack / "labels"):
            volume, labels = tifffile.imread(image_path), tifffile.imread(label_path)
            for z in HELD_OUT_PLANES:
                yield volume[z], tidy_labels(labels[z], min_size=15)


def resized(image: np.ndarray, labels: np.ndarray, factor: float):
    if factor == 1:
        return image, labels
    channels = -1 if image.ndim == 3 else None
    big = sk_rescale(image.astype(np.float32), factor, order=1, preserve_range=True,
                     anti_aliasing=factor < 1, channel_axis=channels)
    lab = sk_rescale(labels, factor, order=0, preserve_range=True, anti_aliasing=False)
    return big.astype(np.float32), lab.astype(np.uint32)


def score_set(net, samples, factor: float, tiles: TileConfig = TileConfig()) -> dict[str, float]:
    rows = []
    seconds = pixels = 0.0
    for image, labels in samples:
        image, labels = resized(image, labels, factor)
        raw = as_channels_first(image, channel_axis=-1 if image.ndim == 3 else None)
        start = time.perf_counter()
        result = segment_with_outputs(raw, net, channel_axis=0, device="cpu", tiles=tiles)
        seconds += time.perf_counter() - start
        pixels += labels.size
        at50 = challenge_scores(labels, result.labels)
        at75 = challenge_scores(labels, result.labels, threshold=0.75)
        merges, splits = merges_and_splits(labels, result.labels)
        rows.append((at50.f1, at75.f1, merges, splits, at50.fn, at50.fp, result.diameter,
                     int(labels.max()), match_labels(labels, result.labels).f1))
    values = np.array(rows, float)
    return {"images": len(rows), "cells": int(values[:, 7].sum()), "f1_50": values[:, 0].mean(),
            "f1_75": values[:, 1].mean(), "f1_all": values[:, 8].mean(),
            "merges": int(values[:, 2].sum()),
            "splits": int(values[:, 3].sum()), "missed": int(values[:, 4].sum()),
            "false": int(values[:, 5].sum()), "diameter": float(np.median(values[:, 6])),
            "s_per_mp": seconds / pixels * 1e6}


def print_row(name: str, factor: float, r: dict[str, float]) -> None:
    print(f"| {name} | {factor:g}x | {r['images']} | {r['cells']} | {r['f1_50']:.3f} | "
          f"{r['f1_75']:.3f} | {r['f1_all']:.3f} | {r['merges']} | {r['splits']} | "
          f"{r['missed']} | {r['false']} | "
          f"{r['diameter']:.1f} | {r['s_per_mp']:.2f} |", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--sizes", action="store_true", help="also the cell-size sweep")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 2.0])
    parser.add_argument("--modalities", nargs="+", default=list(MODALITIES))
    parser.add_argument("--border", type=int, default=TileConfig().border,
                        help="TileConfig.border: background shown past the image's edges")
    args = parser.parse_args()
    tiles = TileConfig(border=args.border)
    net = load_model(args.model)
    print(f"model: {args.model or 'bundled'}; training diameter {net.metadata.get('diameter')}")
    print("| set | scale | images | cells | F1@0.5 | F1@0.75 | F1@0.5 all cells | merges | splits "
          "| missed | false | est. diameter | s/MP |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for factor in args.scales:
        for modality in args.modalities:
            samples = list(synthetic_set(modality, args.images, args.size))
            print_row(modality, factor, score_set(net, samples, factor, tiles))
        real = list(real_set())
        if real:
            print_row("real (held-out halves, planes)", factor, score_set(net, real, factor, tiles))
    if args.sizes:
        for modality in ("nuclei", "phase"):
            for diameter in (8, 15, 30, 60, 100, 150):
                size = args.size if diameter <= 60 else 2 * args.size
                samples = list(synthetic_set(modality, max(2, args.images // 2), size, diameter))
                print_row(f"{modality} d={diameter}px", 1.0, score_set(net, samples, 1.0, tiles))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
