"""Show where the bundled model fails: predicted outlines in green, errors in red and yellow.

    python scripts/render_model_examples.py [--out benchmarks/figures/model_failures.png]

Panels, left to right: the bottom (held-out) half of ../shared/data's dsb2018_nuclei_left image,
plane 33 of ../shared/data3d (held out), synthetic DIC, bacteria (never in training) and cytoplasm
images (held-out seeds). As the challenge's metric counts them: a true cell that no predicted mask
matches at IoU >= 0.5 is outlined in red (missed, or merged with a neighbour, or cut too small),
a predicted mask that matches no true cell in yellow (false, or a merge). Errors on cells cut by
the image's edge are shown too, though the metric leaves those cells out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import imagecodecs
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_accuracy import real_set, synthetic_set

from flowseg.inference.normalize import prepare_image
from flowseg.inference.pipeline import as_channels_first, load_model, segment
from flowseg.metrics import label_overlap
from flowseg.training.synthetic.labels import label_edges

SIDE = 256


def panel(net, image: np.ndarray, truth: np.ndarray) -> np.ndarray:
    raw = as_channels_first(image, channel_axis=-1 if image.ndim == 3 else None)
    pred = segment(raw, net, channel_axis=0, device="cpu")
    shown = np.clip(prepare_image(raw), 0, 1)
    rgb = (np.moveaxis(shown, 0, -1) * 255).astype(np.uint8)
    overlap = label_overlap(truth, pred).astype(np.float64)
    union = overlap.sum(1, keepdims=True) + overlap.sum(0, keepdims=True) - overlap
    iou = overlap / np.maximum(union, 1)  # ids absent from an image have an empty union
    matched = iou[1:, 1:] >= 0.5
    rgb[label_edges(pred) & (pred > 0)] = (0, 255, 64)
    false = np.isin(pred, np.flatnonzero(~matched.any(axis=0)) + 1) & (pred > 0)
    rgb[label_edges(np.where(false, pred, 0)) & false] = (255, 230, 0)
    missed = np.isin(truth, np.flatnonzero(~matched.any(axis=1)) + 1) & (truth > 0)
    rgb[label_edges(np.where(missed, truth, 0)) & missed] = (255, 40, 40)
    out = np.zeros((SIDE, SIDE, 3), np.uint8)
    out[: min(SIDE, rgb.shape[0]), : min(SIDE, rgb.shape[1])] = rgb[:SIDE, :SIDE]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/figures/model_failures.png"))
    args = parser.parse_args()
    net = load_model()
    real = list(real_set())
    cases = [real[1] if len(real) > 1 else real[0], real[3] if len(real) > 3 else real[-1],
             *(next(synthetic_set(name, 1, SIDE)) for name in ("dic", "bacteria", "cytoplasm"))]
    gap = np.full((SIDE, 4, 3), 255, np.uint8)
    row = [part for image, truth in cases for part in (panel(net, image, truth), gap)][:-1]
    args.out.write_bytes(imagecodecs.png_encode(np.concatenate(row, axis=1)))
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
