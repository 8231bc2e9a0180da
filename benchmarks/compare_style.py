"""Does the global style vector earn its keep? FlowUNet with and without it, same data and steps.

    python benchmarks/compare_style.py --work DIR --style on|off [--steps 500] [--threads 1]
    python benchmarks/compare_style.py --work DIR --report

The style vector (mean of the deepest features, added to every decoder level) is the one part of
the network that sees the whole input at once, so it makes each tile's output depend on how the
image was cut. This trains the network both ways on the default model's former training set
(280 synthetic 256^2 images, seed 1, of the three generators it had, plus the top halves of
the real samples, 20 copies each) for the same steps from the same seed, then scores both on
its held-out sets (30 synthetic 384^2 images of seed 2, the real bottom halves) run whole, and
reports how much the labels change between a whole-image run and 128-px tiles.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from make_synthetic_data import write_dataset

from flowseg.inference.pipeline import segment
from flowseg.inference.tiling import TileConfig
from flowseg.io import read_image, read_labels, write_labels
from flowseg.io.files import find_pairs
from flowseg.metrics import challenge_scores, match_labels
from flowseg.model.net import NetConfig, load_net
from flowseg.training.dataset import DataConfig
from flowseg.training.train import TrainConfig, train

# The generators of the first default model (before flowseg.training.synthetic grew to eight).
OLD_MODALITIES = ("fluorescence", "brightfield", "tissue")


def prepare(work: Path) -> None:
    if not (work / "train").is_dir():
        write_dataset(work / "train", count=280, size=256, seed=1, modalities=OLD_MODALITIES)
        write_dataset(work / "test", count=30, size=384, seed=2, modalities=OLD_MODALITIES)
        for stem, image, labels in real_halves(top=True):
            for k in range(20):
                tifffile.imwrite(work / "train" / "images" / f"real_{stem}_top_{k:02d}.tif", image)
                write_labels(labels, work / "train" / "labels" / f"real_{stem}_top_{k:02d}_label.tiff")


def run(work: Path, style: bool, steps: int, batch: int) -> None:
    images = len(find_pairs(work / "train" / "images", work / "train" / "labels"))
    epochs = max(1, round(steps * batch / (0.9 * images)))
    config = TrainConfig(epochs=epochs, batch_size=batch, val_fraction=0.1, val_every=epochs,
                         seed=0, device="cpu", num_workers=1)
    start = time.perf_counter()
    train(work / "train", work / f"style_{'on' if style else 'off'}", config=config,
          data=DataConfig(crop=192), net_config=NetConfig(style=style), resume=True,
          cache_dir=work / "cache")
    print(f"style={style}: {epochs} epochs in {time.perf_counter() - start:.0f} s")


def report(work: Path) -> None:
    real = [(stem, image[None] if image.ndim == 2 else image, labels)
            for stem, image, labels in real_halves(top=False)]
    print("| style | set | images | F1@0.5 | F1@0.75 | whole vs 128-px tiles F1 |")
    print("|---|---|---|---|---|---|")
    for name in ("on", "off"):
        net = load_net(work / f"style_{name}" / "last.pt")
        rows: dict[str, list[tuple[float, float, float]]] = {}
        for image_path, label_path in find_pairs(work / "test" / "images", work / "test" / "labels"):
            group = image_path.stem.split("_")[1]
            rows.setdefault(group, []).append(score(net, read_image(image_path),
                                                    read_labels(label_path)))
        for _stem, image, labels in real:
            rows.setdefault("real halves", []).append(score(net, image, labels))
        for group, values in rows.items():
            f50, f75, tiled = np.mean(values, axis=0)
            print(f"| {name} | {group} | {len(values)} | {f50:.4f} | {f75:.4f} | {tiled:.4f} |")


def real_halves(top: bool) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The top (training) or bottom (held-out) half of each real sample, as stored."""
    halves = []
    shared = Path(__file__).resolve().parents[2] / "shared" / "data"
    for image_path, label_path in find_pairs(shared / "images", shared / "labels"):
        image, labels = tifffile.imread(image_path), read_labels(label_path)
        half = labels.shape[0] // 2
        rows = slice(0, half) if top else slice(half, None)
        halves.append((image_path.stem, image[rows], labels[rows]))
    return halves


def score(net, image, labels) -> tuple[float, float, float]:
    whole = segment(image, net, tiles=TileConfig(tile=1024, batch=1), device="cpu")
    tiled = segment(image, net, tiles=TileConfig(tile=128, batch=1, overlap=0.25), device="cpu")
    return (challenge_scores(labels, whole).f1, match_labels(labels, whole, threshold=0.75).f1,
            match_labels(whole, tiled, threshold=0.5).f1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--style", choices=("on", "off"))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    prepare(args.work)
    if args.report:
        report(args.work)
    else:
        run(args.work, args.style == "on", args.steps, args.batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
