"""Render example images of every synthetic modality into benchmarks/figures/synthetic_<name>.png.

    python scripts/render_synthetic_examples.py [--size 160] [--out benchmarks/figures]

Each figure holds, left to right, the modality at three cell diameters (small, typical, large),
each above its labels' outlines drawn in yellow on the same image. ``synthetic_stack.png`` shows
three nuclei z-stacks (``make_nuclei_volume``) the same way: an XY plane, then a ZY plane beside it,
which is what the default model's z-stack training planes look like.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imagecodecs
import numpy as np

from flowseg.inference.normalize import prepare_image
from flowseg.training.synthetic import MODALITIES, TYPICAL_DIAMETER, make_nuclei_volume, make_sample
from flowseg.training.synthetic.labels import label_edges


def to_rgb8(image: np.ndarray) -> np.ndarray:
    chw = np.moveaxis(image, -1, 0) if image.ndim == 3 else image[None]
    rgb = np.clip(prepare_image(chw.astype(np.float32)), 0, 1)
    return (np.moveaxis(rgb, 0, -1) * 255).astype(np.uint8)


def figure(modality: str, size: int) -> np.ndarray:
    columns = []
    typical = TYPICAL_DIAMETER[modality]
    for k, diameter in enumerate((max(8.0, typical / 2), typical, min(150.0, typical * 3))):
        image, labels = make_sample((size, size), modality, seed=k, diameter=diameter)
        plain = to_rgb8(image)
        outlined = plain.copy()
        outlined[label_edges(labels) & (labels > 0)] = (255, 220, 0)
        columns.append(np.concatenate([plain, np.full((4, size, 3), 255, np.uint8), outlined]))
        columns.append(np.full((2 * size + 4, 4, 3), 255, np.uint8))
    return np.concatenate(columns[:-1], axis=1)


def outlined_pair(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    plain = to_rgb8(image)
    outlined = plain.copy()
    outlined[label_edges(labels) & (labels > 0)] = (255, 220, 0)
    return np.concatenate([plain, np.full((4, image.shape[1], 3), 255, np.uint8), outlined])


def stack_figure(size: int) -> np.ndarray:
    columns = []
    for k, diameter in enumerate((12.0, 20.0, 30.0)):
        depth = size // 2
        image, labels = make_nuclei_volume((depth, size, size), diameter, np.random.default_rng(k))
        xy = outlined_pair(image[depth // 2][:depth], labels[depth // 2][:depth])
        zy = outlined_pair(image[:, :, size // 2], labels[:, :, size // 2])
        columns += [xy, np.full((xy.shape[0], 4, 3), 255, np.uint8), zy,
                    np.full((xy.shape[0], 12, 3), 255, np.uint8)]
    return np.concatenate(columns[:-1], axis=1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/figures"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for modality in MODALITIES:
        path = args.out / f"synthetic_{modality}.png"
        path.write_bytes(imagecodecs.png_encode(figure(modality, args.size)))
        print(path)
    path = args.out / "synthetic_stack.png"
    path.write_bytes(imagecodecs.png_encode(stack_figure(args.size)))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
