"""OME-Zarr in and out: level 0 read lazily, labels written as an NGFF image-label with its pyramid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import zarr

pytest.importorskip("ome_zarr", reason="the ome extra (ome-zarr) is not installed")

from flowseg.apps.cli import main
from flowseg.inference.pipeline import as_channels_first
from flowseg.io import read_labels
from flowseg.io.omezarr import open_level0
from flowseg.io.pixelsize import read_pixel_size
from flowseg.training.synthetic import make_sample


def write_image(path: Path, image: np.ndarray, axes: str, size_um: float | None = 0.5) -> None:
    """An OME-Zarr image as converters (bioformats2raw, ome-zarr) write it, with its pyramid."""
    from flowseg.io.omezarr import ome_zarr_writer

    ome_write_image = ome_zarr_writer().write_image
    root = zarr.open_group(str(path), mode="w")
    extra = {}
    if size_um:
        extra = {"scale": {"y": size_um, "x": size_um, **({"c": 1.0} if "c" in axes else {})},
                 "axes_units": {"y": "micrometer", "x": "micrometer"}}
    ome_write_image(image, root, axes=axes, scale_factors=(2, 4), **extra)


def test_predict_reads_an_ome_zarr_and_writes_ngff_labels(tmp_path: Path) -> None:
    image, _ = make_sample((320, 288), "nuclei", seed=3)
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "slide.ome.zarr", as_channels_first(image), "cyx")
    assert read_pixel_size(tmp_path / "in" / "slide.ome.zarr").x == 0.5
    code = main(["predict", "-i", str(tmp_path / "in" / "slide.ome.zarr"), "-o",
                 str(tmp_path / "out"), "--save-ome-zarr", "--device", "cpu"])
    assert code == 0
    labels = read_labels(tmp_path / "out" / "slide.ome_label.tiff")
    assert labels.shape == (320, 288) and labels.max() > 10
    store = tmp_path / "out" / "slide.ome_labels.ome.zarr"
    group = zarr.open_group(str(store / "labels" / "cells"), mode="r")
    meta = dict(group.attrs)
    meta = meta.get("ome", meta)
    assert "image-label" in meta and len(meta["multiscales"][0]["datasets"]) >= 2
    level0, axes, scale, units = open_level0(store / "labels" / "cells")
    assert axes == ["y", "x"] and scale[:2] == [0.5, 0.5] and units == ["micrometer"] * 2
    np.testing.assert_array_equal(np.asarray(level0), labels)
    coarse = np.asarray(group[meta["multiscales"][0]["datasets"][1]["path"]])
    assert coarse.shape == (160, 144) and set(np.unique(coarse)) <= set(np.unique(labels))
    # the same image as a TIFF: the same labels
    import tifffile

    (tmp_path / "tif").mkdir()
    tifffile.imwrite(tmp_path / "tif" / "slide.ome.tif", image)
    assert main(["predict", "-i", str(tmp_path / "tif"), "-o", str(tmp_path / "o2"),
                 "--device", "cpu"]) == 0
    np.testing.assert_array_equal(read_labels(tmp_path / "o2" / "slide.ome_label.tiff"), labels)


def test_a_folder_lists_ome_zarr_images_and_refuses_stacks_by_name(tmp_path: Path,
                                                                    capfd) -> None:  # type: ignore[no-untyped-def]
    image, _ = make_sample((96, 96), "nuclei", seed=1)
    (tmp_path / "in").mkdir()
    write_image(tmp_path / "in" / "a.zarr", image, "yx", size_um=None)
    write_image(tmp_path / "in" / "stack.zarr", np.stack([image] * 3), "zyx", size_um=None)
    code = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--device", "cpu"])
    err = capfd.readouterr().err
    assert code == 1 and "stack.zarr: z holds 3 planes" in err
    assert read_labels(tmp_path / "out" / "a_label.tiff").shape == (96, 96)


def test_dask_reads_ome_zarr_by_blocks_and_writes_the_pyramid(tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    from distributed import Client

    from flowseg.apps.cluster import local_cluster
    from flowseg.apps.slides import BlockConfig, segment_large
    from flowseg.inference.pipeline import segment
    from flowseg.metrics import match_labels

    image, _ = make_sample((384, 352), "nuclei", seed=4, diameter=24.0)
    write_image(tmp_path / "slide.ome.zarr", as_channels_first(image), "cyx")
    with local_cluster(1) as cluster, Client(cluster) as client:
        out = segment_large(tmp_path / "slide.ome.zarr", tmp_path / "x.zarr", client=client,
                            device="cpu", blocks=BlockConfig(block=128, margin=48),
                            ome_zarr=tmp_path / "x_labels.ome.zarr",
                            pixel_size=read_pixel_size(tmp_path / "slide.ome.zarr"))
    blocked = np.asarray(zarr.open_array(str(out), mode="r")[:])
    assert match_labels(segment(image, device="cpu"), blocked).f1 >= 0.999
    level0, _, scale, _ = open_level0(tmp_path / "x_labels.ome.zarr" / "labels" / "cells")
    np.testing.assert_array_equal(np.asarray(level0), blocked)
    assert scale[:2] == [0.5, 0.5]
