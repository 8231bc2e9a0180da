"""One process reads a slide's level 0 window by window, with the labels of a whole read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

pytest.importorskip("zarr", reason="lazy reading needs zarr and dask (the dask extra)")
pytest.importorskip("dask", reason="lazy reading needs zarr and dask (the dask extra)")

from flowseg.apps.cli import main
from flowseg.inference import normalize
from flowseg.inference.normalize import PERCENTILE_SAMPLE, channel_ranges
from flowseg.io import lazy, read_labels
from flowseg.io.lazy import LazyPixels, open_lazily, read_or_open


def write_rgb_pyramid(path: Path, image: np.ndarray) -> None:
    """An RGB OME-TIFF with a SubIFD level, tiled, as slide converters write H&E."""
    with tifffile.TiffWriter(path) as tif:
        tif.write(image, subifds=1, tile=(128, 128), photometric="rgb", metadata={
            "axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
        tif.write(image[::2, ::2], subfiletype=1, tile=(128, 128), photometric="rgb")


def test_one_process_segments_a_slide_without_reading_it_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from flowseg.training.synthetic import make_sample

    image, _ = make_sample((704, 576), "tissue", seed=5)
    (tmp_path / "in").mkdir()
    write_rgb_pyramid(tmp_path / "in" / "slide.ome.tif", image)
    # as on a slide: percentiles from a strided sample, the network over many tiles
    monkeypatch.setattr(normalize, "PERCENTILE_SAMPLE", 50_000)
    options = ["--device", "cpu", "--tile", "256"]
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "whole"),
                 *options]) == 0  # 0.4 MP: read whole (LAZY_FROM is 16.8 MP)
    windows: list[tuple[int, ...]] = []
    read = LazyPixels.__getitem__

    def spy(self: LazyPixels, key: object) -> np.ndarray:
        window = read(self, key)
        windows.append(window.shape)
        return window

    def never(self: LazyPixels, *args: object, **kwargs: object) -> np.ndarray:
        raise AssertionError("the slide was read whole")

    monkeypatch.setattr(lazy, "LAZY_FROM", 1)
    monkeypatch.setattr(LazyPixels, "__getitem__", spy)
    monkeypatch.setattr(LazyPixels, "__array__", never)
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "lazy"),
                 *options]) == 0
    whole = read_labels(tmp_path / "whole" / "slide.ome_label.tiff")
    assert whole.max() > 10
    np.testing.assert_array_equal(read_labels(tmp_path / "lazy" / "slide.ome_label.tiff"), whole)
    assert len(windows) > 4 and max(np.prod(shape) for shape in windows) < image.size, windows
    # overlays need every pixel: read whole, for them only
    monkeypatch.undo()
    monkeypatch.setattr(lazy, "LAZY_FROM", 1)
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "lazy"),
                 "--device", "cpu", "--save-overlays", "--overwrite"]) == 0
    assert (tmp_path / "lazy" / "slide.ome_overlay.png").stat().st_size > 0


def test_lazy_percentiles_equal_those_of_the_whole_image(tmp_path: Path) -> None:
    # larger than the percentiles' sample, so that both take the strided subsample
    side = int(np.sqrt(PERCENTILE_SAMPLE)) + 300
    rng = np.random.default_rng(0)
    image = (rng.gamma(2.0, 900.0, (2, side, side - 7))).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", image, tile=(256, 256), metadata={"axes": "CYX"})
    with open_lazily(tmp_path / "a.tif") as pixels:
        assert pixels.shape == image.shape and pixels.dtype == np.uint16
        np.testing.assert_array_equal(channel_ranges(pixels), channel_ranges(image))
        np.testing.assert_array_equal(pixels[:, 10:20, 5:9], image[:, 10:20, 5:9])


def test_lazy_axes_and_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plane = np.arange(48 * 40, dtype=np.uint16).reshape(48, 40)
    tifffile.imwrite(tmp_path / "rgb.tif", np.stack([plane] * 3, -1).astype(np.uint8),
                     photometric="rgb")
    tifffile.imwrite(tmp_path / "pages.tif", np.stack([plane, plane + 1]))
    tifffile.imwrite(tmp_path / "gray.tif", plane)
    tifffile.imwrite(tmp_path / "z.tif", np.stack([plane] * 5), imagej=True,
                     metadata={"axes": "ZYX"})
    with open_lazily(tmp_path / "rgb.tif") as rgb:
        assert rgb.shape == (3, 48, 40)
    with open_lazily(tmp_path / "pages.tif") as pages:  # unnamed pages are channels
        np.testing.assert_array_equal(pages[1], plane + 1)
    with open_lazily(tmp_path / "gray.tif") as gray:
        np.testing.assert_array_equal(np.asarray(gray), plane[None])
    with pytest.raises(ValueError, match=r"z.tif: a stack of 5 planes along Z"):
        open_lazily(tmp_path / "z.tif")
    with pytest.raises(FileNotFoundError, match=r"none\.tif"):
        open_lazily(tmp_path / "none.tif")
    # small files are read whole; the budget holds for lazy ones too
    assert isinstance(read_or_open(tmp_path / "gray.tif"), np.ndarray)
    monkeypatch.setattr(lazy, "LAZY_FROM", 1)
    with read_or_open(tmp_path / "gray.tif") as pixels:
        assert isinstance(pixels, LazyPixels)
    with pytest.raises(ValueError, match=r"gray.tif: 48 x 40 pixels is more than the 100"):
        read_or_open(tmp_path / "gray.tif", max_pixels=100)
