from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from flowseg.inference.estimate import median_diameter
from flowseg.inference.normalize import PreparedView, resize_labels_to
from flowseg.inference.pipeline import load_model
from flowseg.inference.sizehead import head_features, predict_diameter
from flowseg.io import write_labels
from flowseg.training.sizefit import refit_size_head
from flowseg.training.synthetic import make_sample


def test_resize_labels_keeps_ids_and_scales_areas():
    labels = np.zeros((40, 60), np.uint32)
    labels[10:20, 10:30] = 3
    half = resize_labels_to(labels, (20, 30))
    assert set(np.unique(half)) == {0, 3} and (half == 3).sum() == 50
    double = resize_labels_to(labels, (80, 120))
    assert (double == 3).sum() == 800


def write_nuclei(root: Path, count: int, diameter: float, seed: int) -> list[tuple[Path, Path]]:
    (root / "images").mkdir(parents=True, exist_ok=True)
    pairs = []
    for i in range(count):
        image, labels = make_sample((256, 256), "nuclei", seed=seed + i, diameter=diameter)
        pairs.append((root / "images" / f"n{i}.tif", root / "labels" / f"n{i}_label.tiff"))
        tifffile.imwrite(pairs[-1][0], image)
        write_labels(labels, pairs[-1][1])
    return pairs


@pytest.mark.slow
def test_refitted_head_reads_the_size_of_an_unseen_image(tmp_path: Path):
    # Fitted on three images at seven known rescalings, the head reads a fourth image, drawn with
    # other cells, at scales it was not shown exactly, within a quarter of its true diameter.
    net = load_model()
    pairs = write_nuclei(tmp_path / "train", 3, 24.0, seed=10)
    head = refit_size_head(net, pairs)
    assert head is not None and head["samples"] >= 15 and head["images"] == 3
    for diameter in (15.0, 36.0):
        image, labels = make_sample((256, 256), "nuclei", seed=99, diameter=diameter)
        truth = median_diameter(labels)[0]
        read = predict_diameter(head, head_features(net, PreparedView(image[None].astype(
            np.float32))))
        assert 0.75 < read / truth < 1.33, (diameter, read, truth)


def test_no_head_without_cells(tmp_path: Path):
    (tmp_path / "labels").mkdir()
    image = tmp_path / "empty.tif"
    tifffile.imwrite(image, np.zeros((64, 64), np.uint16))
    write_labels(np.zeros((64, 64), np.uint32), tmp_path / "labels" / "empty_label.tiff")
    assert refit_size_head(load_model(), [(image, tmp_path / "labels" / "empty_label.tiff")]) is None
