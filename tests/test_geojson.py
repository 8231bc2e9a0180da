"""Cells as GeoJSON for QuPath: polygons that fill back to the masks, the structure QuPath reads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.measure import points_in_poly

from flowseg.apps.geojson import cell_features, cell_geometry, write_geojson

# The structure QuPath's GeoJSON import reads (its documentation, "Exporting annotations", and
# what its own "Export as GeoJSON" writes): a FeatureCollection of Features whose geometry is a
# Polygon or MultiPolygon in full-resolution pixels, and whose properties name the object type
# and hold a map of numeric measurements.
QUPATH_FEATURE = {"type": "Feature", "geometry": {"type": ("Polygon", "MultiPolygon")},
                  "properties": {"objectType": ("detection", "annotation", "cell")}}


def fill(geometry: dict, shape: tuple[int, int]) -> np.ndarray:
    """Pixels whose centres lie inside a GeoJSON polygon (holes out)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    centres = np.stack([xx.ravel() + 0.5, yy.ravel() + 0.5], axis=1)
    polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else \
        geometry["coordinates"]
    inside = np.zeros(len(centres), bool)
    for rings in polygons:
        part = points_in_poly(centres, np.array(rings[0]))
        for hole in rings[1:]:
            part &= ~points_in_poly(centres, np.array(hole))
        inside |= part
    return inside.reshape(shape)


def signed_area(ring: list[list[float]]) -> float:
    x, y = np.array(ring).T
    return float(np.dot(x[:-1], y[1:]) - np.dot(x[1:], y[:-1])) / 2


def test_polygons_fill_back_to_their_masks_holes_and_pieces_kept() -> None:
    labels = np.zeros((40, 50), np.uint32)
    labels[2:20, 3:25] = 1
    labels[8:12, 10:14] = 0  # a hole
    labels[25:35, 30:45] = 2
    labels[36:39, 5:9] = 2  # the same cell in a second piece
    labels[22, 2], labels[23, 3] = 3, 3  # diagonal neighbours: one piece
    labels[0:3, 47:50] = 4  # cut by the image's edge: kept whole as it is
    for cell in range(1, 5):
        ys, xs = np.nonzero(labels == cell)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        geometry = cell_geometry(labels[box] == cell, (box[0].start, box[1].start))
        np.testing.assert_array_equal(fill(geometry, labels.shape), labels == cell)
        polygons = [geometry["coordinates"]] if geometry["type"] == "Polygon" else \
            geometry["coordinates"]
        for rings in polygons:
            assert all(ring[0] == ring[-1] and len(ring) >= 4 for ring in rings)  # closed
            assert signed_area(rings[0]) > 0  # exterior counter-clockwise in (x, y)
            assert all(signed_area(hole) < 0 for hole in rings[1:])
    assert cell_geometry(labels == 1)["type"] == "Polygon"
    assert len(cell_geometry(labels == 1)["coordinates"]) == 2  # the hole is a ring
    assert cell_geometry(labels == 2)["type"] == "MultiPolygon"
    assert cell_geometry(labels == 3)["type"] == "Polygon"
    assert cell_geometry(np.zeros((3, 3), bool)) is None


def test_a_geojson_file_is_what_qupath_reads(tmp_path: Path) -> None:
    labels = np.zeros((30, 40), np.uint16)
    labels[5:15, 5:15] = 3
    labels[18:28, 20:37] = 7
    image = np.full((2, 30, 40), 4.0)
    path = write_geojson(labels, tmp_path / "a_cells.geojson", image=image, pixel_size=0.5)
    data = json.loads(path.read_text())
    assert data["type"] == "FeatureCollection" and len(data["features"]) == 2
    for feature in data["features"]:
        assert feature["type"] == QUPATH_FEATURE["type"]
        assert feature["geometry"]["type"] in QUPATH_FEATURE["geometry"]["type"]
        props = feature["properties"]
        assert props["objectType"] in QUPATH_FEATURE["properties"]["objectType"]
        values = props["measurements"]
        assert all(isinstance(v, float) for v in values.values())
        cell = labels == props["label"]
        assert values["area"] == cell.sum() and values["Area um^2"] == cell.sum() * 0.25
        assert values["intensity_mean-1"] == 4.0
        np.testing.assert_array_equal(fill(feature["geometry"], labels.shape), cell)
    assert [f["properties"]["label"] for f in data["features"]] == [3, 7]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_cells.geojson"]  # atomic


def test_block_features_sit_in_the_full_image() -> None:
    labels = np.zeros((10, 10), np.uint32)
    labels[2:5, 3:7] = 1
    (feature,) = cell_features(labels, origin=(100, 200), offset=41)
    assert feature["properties"]["label"] == 42
    xs, ys = np.array(feature["geometry"]["coordinates"][0]).T
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (203.0, 207.0, 102.0, 105.0)
    assert feature["properties"]["measurements"]["centroid-0"] == pytest.approx(103.0)


def test_predict_writes_geojson_beside_the_labels(tmp_path: Path) -> None:
    import tifffile

    from flowseg.apps.cli import main
    from flowseg.io import read_labels
    from flowseg.training.synthetic import make_sample

    (tmp_path / "in").mkdir()
    tifffile.imwrite(tmp_path / "in" / "n.tif", make_sample((96, 112), "nuclei", seed=2)[0])
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--save-geojson", "--device", "cpu"]) == 0
    labels = read_labels(tmp_path / "out" / "n_label.tiff")
    data = json.loads((tmp_path / "out" / "n_cells.geojson").read_text())
    assert len(data["features"]) == labels.max() > 3
