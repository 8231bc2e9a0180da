"""What validating at the training diameter costs: flowseg train's validation of four synthetic
nuclei images of 320^2 (cells of 12, 20, 30 and 45 px) at their own size and rescaled to 30 px.

    python benchmarks/bench_validation_cost.py
"""

import pathlib
import statistics
import tempfile
import time

import tifffile
import torch

from flowseg.inference.pipeline import default_model_path
from flowseg.io import write_labels
from flowseg.model.net import load_net
from flowseg.training.synthetic import make_sample
from flowseg.training.validate import validate

d = pathlib.Path(tempfile.mkdtemp()); (d / "images").mkdir()
pairs = []
for i, diam in enumerate((12, 20, 30, 45)):
    image, labels = make_sample((320, 320), "nuclei", seed=10 + i, diameter=diam)
    tifffile.imwrite(d / "images" / f"a{i}.tif", image); write_labels(labels, d / "labels" / f"a{i}_label.tiff")
    pairs.append((d / "images" / f"a{i}.tif", d / "labels" / f"a{i}_label.tiff"))
net = load_net(default_model_path()); dev = torch.device("cpu")
for name, dia in (("own size", None), ("at 30 px", 30.0)):
    validate(net, pairs, dev, diameter=dia)
    t = []
    for _ in range(3):
        s = time.perf_counter(); f1 = validate(net, pairs, dev, diameter=dia); t.append(time.perf_counter() - s)
    print(f"{name}: F1 {f1:.3f}, {statistics.median(t):.2f} s (median of 3 after a warm-up)")
