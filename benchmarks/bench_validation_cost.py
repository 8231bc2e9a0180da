"""What validating at the training diameter costs: flowseg train's validation of four synthetic
nuclei images of 320^2 (cells of 12, 20, 30 and 45 px) at their own size and rescaled to 30 px.

    python benchmarks/bench_validation_cost.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import tifffile
import torch

from flowseg.inference.pipeline import default_model_path
from flowseg.io import write_labels
from flowseg.model.net import load_net
from flowseg.training.synthetic import make_sample
from flowseg.training.validate import validate


def main() -> int:
    folder = Path(tempfile.mkdtemp())
    (folder / "images").mkdir()
    pairs = []
    for i, diameter in enumerate((12, 20, 30, 45)):
        image, labels = make_sample((320, 320), "nuclei", seed=10 + i, diameter=diameter)
        pair = (folder / "images" / f"a{i}.tif", folder / "labels" / f"a{i}_label.tiff")
        tifffile.imwrite(pair[0], image)
        write_labels(labels, pair[1])
        pairs.append(pair)
    net, device = load_net(default_model_path()), torch.device("cpu")
    print("| validation | mean F1 | seconds (median of 3 after a warm-up) |")
    print("|---|---|---|")
    for name, at in (("at the images' own size", None), ("rescaled to 30 px", 30.0)):
        validate(net, pairs, device, diameter=at)
        seconds = []
        for _ in range(3):
            start = time.perf_counter()
            f1 = validate(net, pairs, device, diameter=at)
            seconds.append(time.perf_counter() - start)
        print(f"| {name} | {f1:.3f} | {statistics.median(seconds):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
