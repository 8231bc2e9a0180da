"""Additive against concatenated skips: the same data, steps and seed; F1 per parameter.

    python benchmarks/compare_skips.py [--steps 600] [--images 48]

Trains FlowUNet twice on one synthetic multi-modality set (scripts/make_synthetic_data.py, 256^2,
a quarter held out) and prints parameters, training time and validation F1 (challenge F1).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from make_synthetic_data import write_dataset

from flowseg.model.net import NetConfig, count_parameters, load_net
from flowseg.training.dataset import DataConfig, discover_pairs
from flowseg.training.train import TrainConfig, split_pairs, train
from flowseg.training.validate import validate


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="flowseg-skips-"))
    write_dataset(work / "data", count=args.images, size=256, seed=7)
    pairs = discover_pairs(work / "data")
    _, val = split_pairs(pairs, 0.25, seed=0)
    train_count = len(pairs) - len(val)
    epochs = max(1, round(args.steps * args.batch / train_count))
    print(f"{train_count} training and {len(val)} validation images, {epochs} epochs "
          f"(~{epochs * train_count // args.batch} steps of {args.batch}), crop 192")
    print("| skips | parameters | train s | val F1 | F1 per M parameters |")
    print("|---|---|---|---|---|")
    for skip in ("add", "concat"):
        config = TrainConfig(epochs=epochs, batch_size=args.batch, val_fraction=0.25,
                             val_every=epochs, num_workers=1, seed=0)
        start = time.perf_counter()
        best = train(work / "data", work / skip, config=config, data=DataConfig(crop=192),
                     net_config=NetConfig(skip=skip), cache_dir=work / "cache")
        seconds = time.perf_counter() - start
        net = load_net(best)
        f1 = validate(net, val, torch.device("cpu"))
        params = count_parameters(net)
        print(f"| {skip} | {params:,} | {seconds:.0f} | {f1:.4f} | {f1 / params * 1e6:.4f} |",
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
