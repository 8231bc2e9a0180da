"""Fine-tuning on half of one real image, scored on its other half: F1 against CPU time.

    python benchmarks/bench_finetune_real.py [--model PATH] [--minutes 1 3] [--lr 2e-4 2e-3]

For one validation image of each real modality (scripts/real_data.py's split, which
training never reads; the first by name whose left half holds at least 15 cells), the model is
fine-tuned on the left half as ``flowseg train --data_path HALF --workers 0`` does from it (its
training diameter, AdamW with a warm-up and a cosine decay, batch 8 of 256^2 crops, the size
head refitted at the end) and the right half is segmented with no option given (the automatic
diameter) and at the diameter the starting model estimated, before and after. Each CPU budget is
a run of its own with as many epochs as fit: a run's fixed cost and an epoch's CPU time are
measured first by runs of 1 and 3 epochs after a warm-up. One thread, no loader workers, so the
process's CPU time is the training's (scoring not counted).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from bench_finetune import cpu_seconds
from real_data import real_pairs

from flowseg.inference.pipeline import default_model_path, load_model, segment_with_outputs
from flowseg.inference.scaling import training_diameter
from flowseg.io import read_image, read_labels, write_labels
from flowseg.metrics import challenge_scores
from flowseg.model.net import load_net
from flowseg.training.dataset import DataConfig
from flowseg.training.train import FINETUNE_LEARNING_RATE, TrainConfig, train


def halves(image: np.ndarray, labels: np.ndarray):
    """Left and right halves (C, H, W) / (H, W), split along the longer side."""
    axis = 2 if image.shape[2] >= image.shape[1] else 1
    cut = image.shape[axis] // 2
    left = (np.take(image, range(cut), axis=axis), np.take(labels, range(cut), axis=axis - 1))
    right = (np.take(image, range(cut, image.shape[axis]), axis=axis),
             np.take(labels, range(cut, image.shape[axis]), axis=axis - 1))
    return left, right


def pick_images(modalities: list[str]):
    """One validation image per modality: the first by name whose left half has 15 cells."""
    seen = set()
    for source, modality, image_path, label_path in sorted(real_pairs("val"),
                                                           key=lambda p: p[2].name):
        if modality in seen or modality not in modalities:
            continue
        image, labels = read_image(image_path), read_labels(label_path)
        (_, left_labels), _ = halves(image, labels)
        if len(np.unique(left_labels)) - 1 >= 15:
            seen.add(modality)
            yield f"{source} {modality} {image_path.stem[:12]}", image, labels


def finetune(folder: Path, epochs: int, run: Path, rate: float, start: Path) -> tuple[Path, float]:
    config = TrainConfig(epochs=epochs, val_fraction=0.0, num_workers=0, learning_rate=rate)
    data = DataConfig(crop=256, diameter=training_diameter(load_net(start)))
    before = cpu_seconds()
    last = train(folder, run, config=config, data=data, pretrained=start, cache_dir=folder / "c")
    return last, cpu_seconds() - before


def score(net, image: np.ndarray, labels: np.ndarray, diameter: float | None) -> tuple[float, float]:
    result = segment_with_outputs(image, net, channel_axis=0, device="cpu", diameter=diameter)
    return challenge_scores(labels, result.labels).f1, result.diameter


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="start (default: bundled)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 3])
    parser.add_argument("--lr", type=float, nargs="+", default=[FINETUNE_LEARNING_RATE])
    parser.add_argument("--modalities", nargs="+",
                        default=["fluorescence", "tissue", "brightfield", "phase"])
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    start = args.model or default_model_path()
    print(f"model {start}; one thread; F1@0.5 on the right half, automatic diameter "
          "(at the starting model's estimate)")
    print("| image | lr | before | " + " | ".join(f"{m:g} min" for m in args.minutes) + " |")
    print("|---" * (len(args.minutes) + 3) + "|")
    for name, image, labels in pick_images(args.modalities):
        (left, left_labels), (right, right_labels) = halves(image, labels)
        base = load_model(start)
        f1, estimate = score(base, right, right_labels, None)
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            (folder / "images").mkdir()
            tifffile.imwrite(folder / "images" / "left.tif", left)
            write_labels(left_labels, folder / "labels" / "left_label.tiff")
            finetune(folder, 1, folder / "warm_up", args.lr[0], start)
            one, three = (finetune(folder, n, folder / f"cal_{n}", args.lr[0], start)[1]
                          for n in (1, 3))
            per_epoch = max((three - one) / 2, 1e-3)
            fixed = max(0.0, one - per_epoch)
            for rate in args.lr:
                cells = [f"{f1:.3f} ({estimate:.0f} px)"]
                for budget in args.minutes:
                    epochs = max(1, round((budget * 60 - fixed) / per_epoch))
                    last, used = finetune(folder, epochs, folder / f"run_{rate}_{budget}", rate,
                                          start)
                    tuned = load_net(last)
                    auto, found = score(tuned, right, right_labels, None)
                    same, _ = score(tuned, right, right_labels, estimate)
                    cells.append(f"{auto:.3f} ({same:.3f}; {found:.0f} px; {epochs} ep., "
                                 f"{used / 60:.1f} min)")
                print(f"| {name} | {rate:g} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
