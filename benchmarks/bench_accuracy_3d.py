"""Accuracy of predict --3d: 3-D flows and --stitch, on the real sub-volume and synthetic stacks.

    python benchmarks/bench_accuracy_3d.py [--model PATH] [--threads 2] [--real-diameters 40 45 50]

Volumes:
- real: ../shared/data3d/cells3d_nuclei_z22-34 (13 planes of 256^2, 20 nuclei, labels only where
  the nuclei are in focus); its nuclei (about 45 px across) are longer in z than the 13 planes,
  so every one is cut at the top and bottom of the stack;
- synthetic: packed nuclei of about 24 voxels across in 48 x 160^2 (seed 3), whole in z, each
  with its own brightness and a dark seam of one voxel where nuclei touch, blurred (sigma 1.5
  voxels), with Gaussian noise; the same volume with
  every second plane dropped and ``anisotropy=2``.

Each is segmented with no diameter given (estimated on the middle plane) and with flows followed in
3-D, then with ``stitch=0.5``. Scores: F1 at IoU 0.5 and 0.75 and the mean matched IoU, in 3-D
(every voxel; no border removal), and seconds end to end.

The real sub-volume's 20 nuclei make its figures jumpy: the same model stitched it at F1 0.927
with the estimate (45.4 px) and 0.837 at a given 45.0 px. ``--real-diameters`` runs it also at
each of these diameters and prints the mean over them, a steadier figure to compare models by.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from flowseg.inference.pipeline import load_model
from flowseg.inference.volume import VolumeConfig, segment_volume
from flowseg.io import read_labels, read_volume
from flowseg.io.files import find_pairs
from flowseg.metrics import match_labels
from flowseg.training.synthetic import random_touching_volume

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data3d"


def synthetic_volume(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    labels = random_touching_volume(shape, diameter=24, seed=seed)
    rng = np.random.default_rng(seed)
    brightness = np.concatenate([[0.0], rng.uniform(0.3, 1.0, int(labels.max()))])
    # Each nucleus one voxel short of its neighbours, so that touching nuclei show a dim seam.
    inside = ndimage.grey_erosion(labels, size=3) == labels
    image = ndimage.gaussian_filter(brightness[labels] * inside, 1.5)
    image += rng.normal(0, 0.03, labels.shape)
    return (np.clip(image, 0, None) * 4000).astype(np.uint16), labels


def volumes() -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    out = {}
    if (SHARED / "images").is_dir():
        image_path, label_path = find_pairs(SHARED / "images", SHARED / "labels")[0]
        out["real 13 x 256^2"] = (read_volume(image_path), read_labels(label_path, ndim=3), 1.0)
    image, labels = synthetic_volume((48, 160, 160), seed=3)
    out["synthetic 48 x 160^2"] = (image, labels, 1.0)
    out["synthetic, every 2nd plane, anisotropy 2"] = (image[::2], labels[::2], 2.0)
    return out


def print_volume_rows(net, name: str, image: np.ndarray, labels: np.ndarray,
                      anisotropy: float = 1.0, diameter: float | None = None) -> dict[str, float]:
    """Segment a stack by 3-D flows and by stitching; print one table row each.

    Returns F1@0.5 by mode.
    """
    f1 = {}
    for stitch in (None, 0.5):
        config = VolumeConfig(anisotropy=anisotropy, stitch=stitch)
        start = time.perf_counter()
        pred = segment_volume(image, net, config=config, diameter=diameter)
        seconds = time.perf_counter() - start
        s50, s75 = match_labels(labels, pred), match_labels(labels, pred, threshold=0.75)
        mode = "3-D flows" if stitch is None else f"stitch {stitch}"
        f1[mode] = s50.f1
        print(f"| {name} | {int(labels.max())} | {mode} | {int(pred.max())} | {s50.f1:.3f} "
              f"| {s75.f1:.3f} | {s50.mean_iou:.3f} | {seconds:.1f} |", flush=True)
    return f1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--real-diameters", type=float, nargs="+", default=[], metavar="PX",
                        help="also run the real sub-volume at each of these diameters (px) and "
                             "print the mean F1@0.5 over them")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    net = load_model(args.model)
    print(f"model: {args.model or 'bundled'}; torch threads {torch.get_num_threads()}")
    print("| volume | cells | mode | found | F1@0.5 | F1@0.75 | mean IoU | s |")
    print("|---|---|---|---|---|---|---|---|")
    swept: dict[str, list[float]] = {}
    for name, (image, labels, anisotropy) in volumes().items():
        print_volume_rows(net, name, image, labels, anisotropy)
        if name.startswith("real"):
            for diameter in args.real_diameters:
                rows = print_volume_rows(net, f"{name}, {diameter:g} px", image, labels,
                                         anisotropy, diameter)
                for mode, f1 in rows.items():
                    swept.setdefault(mode, []).append(f1)
    for mode, scores in swept.items():
        print(f"real sub-volume, {mode}, mean F1@0.5 over {len(scores)} diameters: "
              f"{np.mean(scores):.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
