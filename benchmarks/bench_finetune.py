"""Fine-tuning the bundled model on a few images of a modality it never saw: F1 against CPU time.

    python benchmarks/bench_finetune.py [--modality bacteria] [--counts 1 2 5] [--minutes 1 3 10]

The default model is trained without the ``bacteria`` generator (rods in phase contrast;
scripts/train_default_model.py's ``--hold-out``). Here it is fine-tuned on 1, 2 and 5 annotated
images of it (384^2, seeds 700,000 and up) and scored on bench_accuracy.py's 6 held-out images of
the same generator, before and after 1, 3 and 10 minutes of CPU time. Each budget is its own run
of ``flowseg.training.train.train`` with the settings of ``flowseg train --data_path MINE --workers 0
--val_fraction 0`` (the bundled model's weights and training diameter, AdamW with a warm-up and a
cosine decay, batch 8 of 256^2 crops) and as many epochs as fit the budget: a run's fixed cost
and the CPU time of one epoch are measured first by runs of 1 and 3 epochs after a warm-up (not
counted). One thread, no loader workers, so the process's CPU time is the training's; scoring is
not counted.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import numpy as np
import torch

from flowseg.inference.pipeline import default_model_path, load_model, segment, training_diameter
from flowseg.io import write_labels
from flowseg.metrics import challenge_scores
from flowseg.model.net import load_net
from flowseg.training.dataset import DataConfig
from flowseg.training.synthetic import MODALITIES, TYPICAL_DIAMETER, make_sample
from flowseg.training.train import TrainConfig, train


def held_out(modality: str, count: int = 6, size: int = 384):
    for i in range(count):
        seed = 500_000 + 1000 * MODALITIES.index(modality) + i
        yield make_sample((size, size), modality, seed=seed, diameter=TYPICAL_DIAMETER[modality])


def write_pairs(folder: Path, modality: str, count: int) -> list[tuple[Path, Path]]:
    import tifffile

    (folder / "images").mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(count):
        image, labels = make_sample((384, 384), modality, seed=700_000 + i,
                                    diameter=TYPICAL_DIAMETER[modality])
        path = folder / "images" / f"mine_{i}.tif"
        tifffile.imwrite(path, image)
        pairs.append((path, write_labels(labels, folder / "labels" / f"mine_{i}_label.tiff")))
    return pairs


def score(net, test) -> float:
    f1 = [challenge_scores(labels, segment(image, net, device="cpu")).f1 for image, labels in test]
    return float(np.mean(f1))


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def finetune(folder: Path, epochs: int, run: Path) -> tuple[Path, float]:
    """``flowseg train --data_path FOLDER --epochs EPOCHS`` from the bundled model, in process."""
    config = TrainConfig(epochs=epochs, val_fraction=0.0, num_workers=0)
    data = DataConfig(crop=256, diameter=training_diameter(load_model()))
    start = cpu_seconds()
    last = train(folder, run, config=config, data=data, pretrained=default_model_path(),
                 cache_dir=folder / "cache")
    return last, cpu_seconds() - start


def curve(folder: Path, test, minutes: list[float]) -> list[str]:
    """F1 before, then after each budget (a run of its own); the epochs each run took."""
    finetune(folder, 1, folder / "warm_up")  # computes the targets' cache, loads the libraries
    one, three = (finetune(folder, n, folder / f"calibrate_{n}")[1] for n in (1, 3))
    per_epoch = max((three - one) / 2, 1e-3)
    fixed = one - per_epoch
    print(f"calibration: {fixed:.1f} s per run, {per_epoch:.2f} s per epoch (CPU)", flush=True)
    cells = [f"{score(load_model(), test):.3f}"]
    for budget in minutes:
        epochs = max(1, round((budget * 60 - fixed) / per_epoch))
        last, used = finetune(folder, epochs, folder / f"run_{budget:g}")
        cells.append(f"{score(load_net(last), test):.3f} ({epochs} ep., {used / 60:.1f} min)")
    return cells


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", default="bacteria", choices=MODALITIES)
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 5])
    parser.add_argument("--minutes", type=float, nargs="+", default=[1, 3, 10])
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    test = list(held_out(args.modality))
    print(f"model {default_model_path()}, {args.modality}, {len(test)} held-out images")
    print("| annotated images | " + " | ".join(["before"] + [f"{m:g} min" for m in args.minutes])
          + " |")
    print("|---" * (len(args.minutes) + 2) + "|")
    for count in args.counts:
        with tempfile.TemporaryDirectory() as tmp:
            write_pairs(Path(tmp), args.modality, count)
            cells = curve(Path(tmp), test, args.minutes)
        print(f"| {count} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
