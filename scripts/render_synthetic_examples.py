"""Render example images of every synthetic modality into benchmarks/figures/synthetic_<name>.png.

    python scripts/render_synthetic_examples.py [--size 160] [--out benchmarks/figures]

Each figure holds, left to right, the modality at three cell diameters (small, typical, large),
each above its labels' outlines drawn in yellow on the same image. ``synthetic_stack.png`` shows
three nuclei z-stacks (``make_nuclei_volume``) the same way: an XY plane, then a ZY plane beside it,
which is what the default model's z-stack training planes look like.

``real_vs_synthetic.png`` sets each generator made for what ../shared/data_real lacks beside the
real training image closest to it, both at the same median cell diameter (the real crop rescaled):
Usiigaci phase contrast beside ``debris`` (cells among unlabelled debris, dust rings and empty
halos) and ``phase``; DSB 2018 fluorescence nuclei beside ``fluobacteria`` (there is no real
bacterium in ../shared, nor a membrane-stained tissue image: the row shows the closest real
modality, not a match) and ``membrane`` (TissueNet-like whole cells, shown as membrane in green
and nuclei in blue). Real crops are from the training split only.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imagecodecs
import numpy as np
from skimage.transform import resize

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


# (real source, real modality, generator, render diameter): real crops at the render's diameter.
COMPARISONS = (("usiigaci_phase", "phase", "debris", 40.0),
               ("usiigaci_phase", "phase", "phase", 40.0),
               ("dsb2018_stage1_train", "fluorescence", "fluobacteria", 14.0),
               ("dsb2018_stage1_train", "fluorescence", "membrane", 28.0),
               ("dsb2018_stage1_train", "tissue", "membrane", 28.0))


def real_crop(source: str, modality: str, diameter: float, size: int, pick: int) -> np.ndarray | None:
    """The ``pick``-th training image of a source and modality, rescaled to ``diameter``, cropped."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_data import real_pairs

    from flowseg.inference.estimate import median_diameter
    from flowseg.io import read_image, read_labels

    found = [pair for pair in real_pairs("train") if pair[0] == source and pair[1] == modality]
    if not found:
        return None
    _, _, image_path, label_path = found[pick % len(found)]
    image = np.moveaxis(read_image(image_path), 0, -1)
    factor = diameter / median_diameter(read_labels(label_path))[0]
    shape = tuple(max(size, round(n * factor)) for n in image.shape[:2])
    image = resize(image.astype(np.float32), shape, order=1, anti_aliasing=factor < 1)
    y0, x0 = (shape[0] - size) // 2, (shape[1] - size) // 2
    crop = image[y0:y0 + size, x0:x0 + size]
    return crop[..., 0] if crop.shape[-1] == 1 else crop


def comparison_figure(size: int) -> np.ndarray:
    rows = []
    for source, modality, generator, diameter in COMPARISONS:
        real = [real_crop(source, modality, diameter, size, pick) for pick in (0, 7)]
        tiles = [to_rgb8(r) if r is not None else np.full((size, size, 3), 128, np.uint8)
                 for r in real]
        for k in range(3):
            image, labels = make_sample((size, size), generator, seed=10 + k, diameter=diameter)
            plain = to_rgb8(image)
            if k == 2:
                plain[label_edges(labels) & (labels > 0)] = (255, 220, 0)
            tiles.append(plain)
        gap = np.full((size, 4, 3), 255, np.uint8)
        row = [tiles[0], gap, tiles[1], np.full((size, 16, 3), 255, np.uint8)]
        for tile in tiles[2:]:
            row += [tile, gap]
        rows += [np.concatenate(row[:-1], axis=1), np.full((4, 5 * size + 28, 3), 255, np.uint8)]
    return np.concatenate(rows[:-1])


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
    path = args.out / "real_vs_synthetic.png"
    path.write_bytes(imagecodecs.png_encode(comparison_figure(args.size)))
    print(path)
    path = args.out / "synthetic_stack.png"
    path.write_bytes(imagecodecs.png_encode(stack_figure(args.size)))
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
