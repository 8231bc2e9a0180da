"""Write a synthetic data set in the challenge layout: images/<name>.<ext>, labels/<name>_label.tiff.

    python scripts/make_synthetic_data.py OUT [--count 60] [--size 256] [--seed 0]

Modalities rotate through every generator of flowseg.training.synthetic; file formats rotate through tif,
png and bmp (bmp only for 8-bit images, which it can hold). The generator is
flowseg.training.synthetic.make_sample.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import imagecodecs
import numpy as np
import tifffile

from flowseg.io import write_labels
from flowseg.training.synthetic import MODALITIES, make_sample


def write_tiff(path: Path, image: np.ndarray) -> None:
    """Write (H, W) or channel-last (H, W, C) pixels as one zlib-compressed TIFF page."""
    rgb = image.ndim == 3 and image.shape[-1] == 3
    tifffile.imwrite(path, image, compression="zlib", photometric="rgb" if rgb else "minisblack",
                     planarconfig="contig" if image.ndim == 3 else None)


def write_image(folder: Path, name: str, image: np.ndarray, index: int) -> Path:
    """Write one sample as tif, png or bmp by ``index`` (bmp for 8-bit 1- or 3-channel only)."""
    suffix = (".tif", ".png", ".bmp")[index % 3]
    channels = image.shape[-1] if image.ndim == 3 else 1
    if suffix == ".bmp" and (image.dtype != np.uint8 or channels == 2):
        suffix = ".tif"
    if suffix == ".png" and channels == 2:
        suffix = ".tif"  # a 2-channel png would read as gray + alpha
    path = folder / f"{name}{suffix}"
    if suffix == ".tif":
        write_tiff(path, image)
    elif suffix == ".png":
        path.write_bytes(imagecodecs.png_encode(image))
    else:
        path.write_bytes(imagecodecs.bmp_encode(image))
    return path


def write_dataset(out: Path, *, count: int, size: int, seed: int,
                  modalities: tuple[str, ...] = MODALITIES) -> list[Path]:
    """Write ``count`` samples of ``size`` x ``size`` pixels; return the image paths."""
    (out / "images").mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        modality = modalities[i % len(modalities)]
        image, labels = make_sample((size, size), modality, seed=seed * 100_003 + i)
        name = f"synth_{modality}_{i:04d}"
        paths.append(write_image(out / "images", name, image, i))
        write_labels(labels, out / "labels" / f"{name}_label.tiff")
    return paths


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = write_dataset(args.out, count=args.count, size=args.size, seed=args.seed)
    print(f"wrote {len(paths)} images and labels under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
