"""Train the default model that ships in flowseg/models/default.pt, reproducibly.

    python scripts/train_default_model.py [--work DIR] [--epochs 90] [--device auto|cpu|cuda]

Training data: synthetic fluorescence, brightfield and H&E-like tissue images
(scripts/make_synthetic_data.py, 280 images of 256^2, seed 1) plus one half of each real sample in
../shared/data (repeated, so that real pixels weigh in). Held out for the report: 30 synthetic
images of 384^2 from another seed (10 per modality) and the other half of each real sample. On
2 CPU cores the default settings train in about 25 minutes; on a GPU, pass --device cuda.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_synthetic_data import write_dataset

from flowseg.dataset import DataConfig
from flowseg.io import find_pairs, read_image, read_labels, write_labels
from flowseg.metrics import challenge_scores
from flowseg.net import load_net, save_net
from flowseg.pipeline import default_model_path, segment
from flowseg.train import TrainConfig, train

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL_COPIES = 20


def split_real(work: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Put the top half of each real sample into the training set; return the bottom halves."""
    held_out = []
    if not (SHARED / "images").is_dir():
        print(f"no real samples at {SHARED}: training on synthetic data only")
        return held_out
    for image_path, label_path in find_pairs(SHARED / "images", SHARED / "labels"):
        image, labels = tifffile.imread(image_path), read_labels(label_path)
        half = labels.shape[0] // 2
        for k in range(REAL_COPIES):
            name = f"real_{image_path.stem}_top_{k:02d}"
            tifffile.imwrite(work / "train" / "images" / f"{name}.tif", image[:half])
            write_labels(labels[:half], work / "train" / "labels" / f"{name}_label.tiff")
        held_out.append((image_path.stem, read_image(image_path)[:, half:], labels[half:]))
    return held_out


def evaluate(model_path: Path, work: Path, real: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    net = load_net(model_path)
    rows = []
    for image_path, label_path in find_pairs(work / "test" / "images", work / "test" / "labels"):
        modality = image_path.stem.split("_")[1]
        scores = challenge_scores(read_labels(label_path), segment(read_image(image_path), net))
        rows.append((f"synthetic {modality}", scores.f1))
    print("| held-out set | images | mean F1 |")
    print("|---|---|---|")
    for group in sorted({r[0] for r in rows}):
        f1 = [r[1] for r in rows if r[0] == group]
        print(f"| {group} (384^2) | {len(f1)} | {np.mean(f1):.3f} |")
    for name, image, labels in real:
        f1 = challenge_scores(labels, segment(image, net)).f1
        print(f"| {name}, bottom half {labels.shape[0]}x{labels.shape[1]} | 1 | {f1:.3f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("default_model_run"))
    parser.add_argument("--epochs", type=int, default=90)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--install", action=argparse.BooleanOptionalAction, default=True,
                        help="copy the result to flowseg/models/default.pt")
    args = parser.parse_args()
    torch.manual_seed(0)
    work = args.work
    if not (work / "train").is_dir():
        write_dataset(work / "train", count=280, size=256, seed=1)
        write_dataset(work / "test", count=30, size=384, seed=2)
    real = split_real(work)
    start = time.perf_counter()
    config = TrainConfig(epochs=args.epochs, batch_size=8, val_fraction=0.1, val_every=10,
                         seed=0, device=args.device, num_workers=1)
    best = train(work / "train", work / "run", config=config, data=DataConfig(crop=256),
                 resume=True, cache_dir=work / "cache")
    print(f"trained in {time.perf_counter() - start:.0f} s: {best}")
    # Ship a lean copy: weights in float16 (load_net restores float32), no optimizer state.
    lean = save_net(load_net(best), work / "default.pt", half=True)
    evaluate(lean, work, real)
    if args.install:
        shutil.copyfile(lean, default_model_path())
        print(f"installed {default_model_path()} ({lean.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
