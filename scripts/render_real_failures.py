"""The bundled model on the real validation images: the worst image of each modality, overlaid.

    python scripts/render_real_failures.py --csv bench_real.csv [--model PATH]
        [--out benchmarks/figures/model_failures_real.png]

``--csv`` is benchmarks/bench_real.py's per-image table for the same model; the image with the
lowest F1@0.5 at 1x of each modality is segmented with no option given and its central 256^2
shown as scripts/render_model_examples.py draws it: predicted outlines green, true cells no mask
matches at IoU >= 0.5 red, masks that match no cell yellow. Under each panel: the image, its F1.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import imagecodecs
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from real_data import real_pairs
from render_model_examples import SIDE, panel

from flowseg.inference.pipeline import load_model
from flowseg.io import read_image, read_labels


def worst_per_modality(table: Path) -> dict[str, tuple[str, float]]:
    worst: dict[str, tuple[str, float]] = {}
    with open(table) as stream:
        for row in csv.DictReader(stream):
            if float(row["scale"]) != 1.0:
                continue
            f1 = float(row["f1_50"])
            if row["modality"] not in worst or f1 < worst[row["modality"]][1]:
                worst[row["modality"]] = (row["name"], f1)
    return worst


def centre(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The central SIDE^2 of an image (C, H, W) as (H, W, C) and of its labels."""
    height, width = labels.shape
    top, left = max(0, (height - SIDE) // 2), max(0, (width - SIDE) // 2)
    window = (slice(top, top + SIDE), slice(left, left + SIDE))
    return np.moveaxis(image[(slice(None), *window)], 0, -1), labels[window]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--csv", type=Path, required=True)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/figures/model_failures_real.png"))
    args = parser.parse_args()
    net = load_model(args.model)
    worst = worst_per_modality(args.csv)
    paths = {p.stem: (p, q) for _, _, p, q in real_pairs("val")}
    gap = np.full((SIDE, 4, 3), 255, np.uint8)
    row = []
    for modality, (name, f1) in sorted(worst.items()):
        image_path, label_path = paths[name]
        image, labels = centre(read_image(image_path), read_labels(label_path))
        row += [panel(net, image[..., 0] if image.shape[-1] == 1 else image, labels), gap]
        print(f"{modality}: {name} (F1@0.5 {f1:.3f} on the whole image)")
    args.out.write_bytes(imagecodecs.png_encode(np.concatenate(row[:-1], axis=1)))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
