"""Fine-tuning on half of one real image, scored on its other half: F1 against CPU time.

    python benchmarks/bench_finetune_real.py [--model PATH] [--minutes 1 3] [--lr 2e-4 2e-3]
                                             [--images 1 2 5]

For one validation image of each real modality (scripts/real_data.py's split, which
training never reads; the first by name whose left half holds at least 15 cells), or the first
``--images`` N of them where the split has as many, the model is fine-tuned on the left halves
as ``flowseg train --data_path HALVES --workers 0`` does from it (its training diameter, AdamW
with a warm-up and a cosine decay, batch 8 of 256^2 crops, the last fifth of each left half's
longer side held out to validate on, the starting weights kept unless a validation beats them,
the size head refitted at the end)
and the right halves are segmented with no option given (the automatic diameter) and at the
diameters the starting model estimated, given as ``diameter`` (F1 of their matches pooled),
before and after. The two differ even for one model: with no option, an image whose estimate
is within the trained range runs at its own size, and the second look may rerun it; a given
diameter always resizes to the training diameter. Each CPU
budget is a run of its own with as many epochs as fit: a run's fixed cost and an epoch's CPU
time are measured first by runs of 1 and 3 epochs after a warm-up. One thread, no loader
workers, so the process's CPU time is the training's (scoring not counted).
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
from flowseg.model.net import load_net, read_checkpoint
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


def pick_images(modalities: list[str], most: int = 1):
    """Up to ``most`` validation images per modality: the first by name whose left half has 15 cells."""
    found: dict[str, list] = {m: [] for m in modalities}
    for source, modality, image_path, label_path in sorted(real_pairs("val"),
                                                           key=lambda p: p[2].name):
        if modality not in found or len(found[modality]) >= most:
            continue
        image, labels = read_image(image_path), read_labels(label_path)
        (_, left_labels), _ = halves(image, labels)
        if len(np.unique(left_labels)) - 1 >= 15:
            found[modality].append((f"{source} {modality} {image_path.stem[:12]}", image, labels))
    return found


def finetune(folder: Path, epochs: int, run: Path, rate: float, start: Path) -> tuple[Path, float]:
    # flowseg train's defaults: with 1-9 images each trains on 80 % of its longer side and
    # validates on the rest, and best.pt keeps the starting weights unless one validation beats them.
    config = TrainConfig(epochs=epochs, num_workers=0, learning_rate=rate)
    data = DataConfig(crop=256, diameter=training_diameter(load_net(start)))
    before = cpu_seconds()
    last = train(folder, run, config=config, data=data, pretrained=start, cache_dir=folder / "c")
    return last, cpu_seconds() - before


def score(net, parts: list, diameters: list[float | None]) -> tuple[float, list[float]]:
    """F1@0.5 over the images' right halves pooled (their matches summed), and the diameters used."""
    tp = fp = fn = 0
    used = []
    for (image, labels), diameter in zip(parts, diameters, strict=True):
        result = segment_with_outputs(image, net, channel_axis=0, device="cpu", diameter=diameter)
        scores = challenge_scores(labels, result.labels)
        tp, fp, fn = tp + scores.tp, fp + scores.fp, fn + scores.fn
        used.append(result.diameter)
    return 2 * tp / max(2 * tp + fp + fn, 1), used


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="start (default: bundled)")
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 3])
    parser.add_argument("--lr", type=float, nargs="+", default=[FINETUNE_LEARNING_RATE])
    parser.add_argument("--modalities", nargs="+",
                        default=["fluorescence", "tissue", "brightfield", "phase"])
    parser.add_argument("--images", type=int, nargs="+", default=[1],
                        help="fine-tune on the left halves of this many images of each "
                             "modality (where the split has them), scored on their right halves")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    start = args.model or default_model_path()
    print(f"model {start}; one thread; F1@0.5 on the right halves (pooled), automatic diameter "
          "(at the starting model's estimates)")
    print("| images | lr | before | " + " | ".join(f"{m:g} min" for m in args.minutes) + " |")
    print("|---" * (len(args.minutes) + 3) + "|")
    picked = pick_images(args.modalities, max(args.images))
    for count in args.images:
        for chosen in picked.values():
            if len(chosen) < count:
                continue
            finetune_row(chosen[:count], start, args)
    return 0


def finetune_row(chosen: list, start: Path, args: argparse.Namespace) -> None:
    """Fine-tune on the left halves of ``chosen`` at every rate and budget; print one row a rate."""
    lefts, rights = zip(*(halves(image, labels) for _, image, labels in chosen), strict=True)
    base = load_model(start)
    f1, estimates = score(base, list(rights), [None] * len(rights))
    f1_same, _ = score(base, list(rights), estimates)
    name = chosen[0][0] if len(chosen) == 1 else f"{len(chosen)} x {' '.join(chosen[0][0].split()[:2])}"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "images").mkdir()
        for k, (left, left_labels) in enumerate(lefts):
            tifffile.imwrite(folder / "images" / f"left{k}.tif", left)
            write_labels(left_labels, folder / "labels" / f"left{k}_label.tiff")
        finetune(folder, 1, folder / "warm_up", args.lr[0], start)
        one = finetune(folder, 1, folder / "cal_1", args.lr[0], start)[1]
        finetune(folder, 3, folder / "cal_3", args.lr[0], start)
        # An epoch's time from the run's own log (epochs 2 and 3), not from the difference of
        # two runs' totals: with few crops an epoch takes a second, less than the noise of a
        # run's fixed costs, and that difference could come out near zero (tens of thousands
        # of epochs asked for a minute).
        seconds = [float(line.split(",")[-1]) for line in
                   (folder / "cal_3" / "log.csv").read_text().splitlines()[1:]
                   if not line.startswith("0,")]  # the starting weights' score
        per_epoch = max((seconds[-1] - seconds[0]) / 2, 1e-3)
        fixed = max(0.0, one - seconds[0])
        for rate in args.lr:
            cells = [f"{f1:.3f} ({f1_same:.3f}; {np.median(estimates):.0f} px)"]
            for budget in args.minutes:
                epochs = max(1, round((budget * 60 - fixed) / per_epoch))
                last, used = finetune(folder, epochs, folder / f"run_{rate}_{budget}", rate, start)
                tuned = load_net(last)
                auto, found = score(tuned, list(rights), [None] * len(rights))
                same, _ = score(tuned, list(rights), estimates)
                kept = " kept start;" if read_checkpoint(last).get("epoch") == 0 else ""
                cells.append(f"{auto:.3f} ({same:.3f};{kept} {np.median(found):.0f} px; "
                             f"{epochs} ep., {used / 60:.1f} min)")
            print(f"| {name} | {rate:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
