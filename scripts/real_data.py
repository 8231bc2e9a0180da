"""The real annotated images of ../shared/data_real: sources, modalities and the fixed split.

Every source keeps a tenth of its images for validation, chosen by a hash of the file name
(``crc32(name) % 10 == 0``), so that the split does not depend on the order of a listing, on
the other images present or on a random seed: training (scripts/train_default_model.py) never
reads these images, and benchmarks/bench_real.py scores only them.

Modality is read from the pixels where the source mixes several: the DSB 2018 images are colour
stained tissue when their channels differ, grey fluorescence when their background (median) is
dark, grey brightfield when it is bright.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flowseg.io import read_image
from flowseg.io.files import find_pairs

SHARED = Path(__file__).resolve().parents[2] / "shared"
REAL = SHARED / "data_real"
SOURCES = ("dsb2018_stage1_train", "dsb2018_stage1_test", "usiigaci_phase")
VALIDATION_MODULUS = 10  # one image in ten validates


def use_shared(root: Path) -> None:
    """Read the real images from ``root`` instead of ../shared (an unpacked training pack)."""
    global SHARED, REAL
    SHARED, REAL = Path(root), Path(root) / "data_real"


def is_validation(name: str) -> bool:
    """True for the images of the fixed validation split (a tenth of each source, by name hash).

    >>> is_validation("usiigaci_set1"), is_validation("usiigaci_set6")
    (False, True)
    """
    return zlib.crc32(name.encode()) % VALIDATION_MODULUS == 0


def modality_of(source: str, image: np.ndarray) -> str:
    """Return ``fluorescence``, ``tissue``, ``brightfield`` or ``phase`` for an image (C, H, W)."""
    if source.startswith("usiigaci"):
        return "phase"
    if image.shape[0] >= 3 and float(np.abs(image[0] - image[1]).mean()
                                     + np.abs(image[1] - image[2]).mean()) > 1e-3 * float(
                                         image.max() or 1):
        return "tissue"
    gray = image[0]
    low, high = float(gray.min()), float(gray.max())
    return "brightfield" if float(np.median(gray)) > low + 0.5 * (high - low) else "fluorescence"


def real_pairs(split: str) -> Iterator[tuple[str, str, Path, Path]]:
    """Yield ``(source, modality, image_path, label_path)`` of one split (``train`` or ``val``).

    Sources absent from ../shared are skipped.
    """
    for source in SOURCES:
        root = REAL / source
        if not (root / "images").is_dir():
            continue
        for image_path, label_path in find_pairs(root / "images", root / "labels"):
            if is_validation(image_path.stem) == (split == "val"):
                yield source, modality_of(source, read_image(image_path)), image_path, label_path
