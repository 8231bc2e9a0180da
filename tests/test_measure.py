from __future__ import annotations

import csv
import zipfile
from pathlib import Path

import numpy as np
import pytest
from roifile import ImagejRoi
from skimage.draw import polygon2mask

from flowseg.apps.measure import label_outlines, measure, write_csv, write_rois
from flowseg.training.synthetic import make_sample


def test_table_matches_the_labels_and_pixels(tmp_path: Path) -> None:
    image, labels = make_sample((96, 120), "cytoplasm", seed=1)
    pixels = np.moveaxis(image, -1, 0) if image.ndim == 3 else image[None]
    table = measure(labels, pixels)
    ids = np.unique(labels)[1:]
    assert table["label"].tolist() == ids.tolist()
    for k, label in enumerate(ids):
        cell = labels == label
        rows, cols = np.nonzero(cell)
        assert table["area"][k] == cell.sum()
        assert table["centroid-0"][k] == pytest.approx(rows.mean())
        assert table["centroid-1"][k] == pytest.approx(cols.mean())
        assert (table["bbox-0"][k], table["bbox-3"][k]) == (rows.min(), cols.max() + 1)
        for c in range(pixels.shape[0]):
            assert table[f"intensity_mean-{c}"][k] == pytest.approx(pixels[c][cell].mean())
            assert table[f"intensity_max-{c}"][k] == pixels[c][cell].max()
    assert np.allclose(table["equivalent_diameter_area"], 2 * np.sqrt(table["area"] / np.pi))
    path = write_csv(table, tmp_path / "cells.csv")
    with open(path) as stream:
        rows_read = list(csv.DictReader(stream))
    assert len(rows_read) == len(ids) and float(rows_read[0]["area"]) == table["area"][0]
    assert [p.name for p in tmp_path.iterdir()] == ["cells.csv"]
    with pytest.raises(ValueError, match="does not match"):
        measure(labels, pixels[:, :10])


def test_rois_fill_back_to_their_masks(tmp_path: Path) -> None:
    _, labels = make_sample((128, 128), "nuclei", seed=4)
    path = write_rois(labels, tmp_path / "rois.zip")
    with zipfile.ZipFile(path) as archive:
        names = sorted(archive.namelist())
    assert names == sorted(f"{k}.roi" for k in np.unique(labels)[1:])
    for roi in ImagejRoi.fromfile(path):
        points = roi.coordinates()  # x, y in ImageJ's pixel-edge coordinates
        filled = polygon2mask(labels.shape, points[:, ::-1] - 0.5)  # to pixel-centre indices
        cell = labels == int(roi.name)
        iou = (filled & cell).sum() / (filled | cell).sum()
        assert iou > 0.85 and abs(int(filled.sum()) - int(cell.sum())) <= 0.15 * cell.sum() + 4


def test_outlines_of_a_square_run_along_its_pixel_edges() -> None:
    labels = np.zeros((8, 8), np.uint8)
    labels[2:5, 3:7] = 9
    points = label_outlines(labels)[9]
    assert points[:, 0].min() == pytest.approx(3.0) and points[:, 0].max() == pytest.approx(7.0)
    assert points[:, 1].min() == pytest.approx(2.0) and points[:, 1].max() == pytest.approx(5.0)
