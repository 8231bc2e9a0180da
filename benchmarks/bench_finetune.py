"""Fine-tuning the bundled model on a few images of a modality it never saw: F1 against CPU time.

    python benchmarks/bench_finetune.py [--modality dic] [--counts 1 2 5] [--minutes 1 3 10]

The default model is trained without the DIC generator (scripts/train_default_model.py). Here
it is fine-tuned on 1, 2 and 5 annotated DIC images (384^2, seeds 700,000 and up) and scored on
6 held-out DIC images (bench_accuracy.py's seeds) before fine-tuning and after 1, 3 and 10 minutes
of CPU time. One thread, data prepared in the same process (no loader workers), so the CPU time
of the process is the training's; scoring is not counted. AdamW at 5e-4, batch 4 of 256^2 crops,
the default model's augmentation and training diameter, as `flowseg train --data_path MINE`
(which starts from the bundled model) does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from flowseg.dataset import DataConfig, FlowDataset, epoch_order
from flowseg.io import write_labels
from flowseg.metrics import challenge_scores
from flowseg.pipeline import default_model_path, load_model, segment, training_diameter
from flowseg.synthetic import MODALITIES, TYPICAL_DIAMETER, make_sample
from flowseg.train import flow_loss


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
    net.eval()
    f1 = [challenge_scores(labels, segment(image, net, device="cpu")).f1 for image, labels in test]
    return float(np.mean(f1))


def finetune(pairs, test, minutes: list[float], work: Path) -> list[float]:
    net = load_model()
    data = DataConfig(crop=256, diameter=training_diameter(net), scale=(0.5, 2.0))
    dataset = FlowDataset(pairs, data, work / "cache")
    optimizer = torch.optim.AdamW(net.parameters(), lr=5e-4, weight_decay=1e-4)
    results, used, epoch = [score(net, test)], 0.0, 0
    for budget in minutes:
        while used < budget * 60:
            order = epoch_order(len(dataset), batch_size=4, epoch=epoch, seed=0)
            for k in range(0, len(order), 4):
                start = time.process_time()
                batch = [dataset[item] for item in order[k:k + 4]]
                net.train()
                x = torch.stack([b[0] for b in batch])
                y = torch.stack([b[1] for b in batch])
                flow, prob = flow_loss(net(x), y)
                optimizer.zero_grad(set_to_none=True)
                (flow + prob).backward()
                optimizer.step()
                used += time.process_time() - start
                if used >= budget * 60:
                    break
            epoch += 1
        results.append(score(net, test))
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modality", default="dic", choices=MODALITIES)
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
            pairs = write_pairs(Path(tmp), args.modality, count)
            f1 = finetune(pairs, test, args.minutes, Path(tmp))
        print(f"| {count} | " + " | ".join(f"{v:.3f}" for v in f1) + " |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
