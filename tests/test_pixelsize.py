"""Pixel sizes read from the files pathologists and microscopists have, and used."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from flowseg.io.pixelsize import read_pixel_size


def write_ome_pyramid(path: Path, data: np.ndarray, size_um: float) -> None:
    """An OME-TIFF with two SubIFD levels below the full resolution, as slide converters write."""
    with tifffile.TiffWriter(path) as tif:
        tif.write(data, subifds=2, tile=(128, 128), metadata={
            "axes": "YX", "PhysicalSizeX": size_um, "PhysicalSizeY": size_um,
            "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"})
        tif.write(data[::2, ::2], subfiletype=1, tile=(128, 128))
        tif.write(data[::4, ::4], subfiletype=1, tile=(128, 128))


def test_pixel_sizes_from_ome_aperio_imagej_and_tags(tmp_path: Path) -> None:
    data = np.zeros((512, 384), np.uint16)
    write_ome_pyramid(tmp_path / "slide.ome.tif", data, 0.25)
    tifffile.imwrite(tmp_path / "aperio.svs.tif", data, description=(
        "Aperio Image Library v12.0.15\n384x512 -> 384x512 - |AppMag = 20|MPP = 0.4990|"))
    tifffile.imwrite(tmp_path / "fiji.tif", data, imagej=True, resolution=(1 / 0.65, 1 / 0.65),
                     metadata={"unit": "micron"})
    tifffile.imwrite(tmp_path / "cm.tif", data, resolution=(1e4 / 0.3, 1e4 / 0.4),
                     resolutionunit="CENTIMETER")
    tifffile.imwrite(tmp_path / "dpi.tif", data, resolution=(72, 72), resolutionunit="INCH")
    tifffile.imwrite(tmp_path / "plain.tif", data)
    found = {p.name: read_pixel_size(p) for p in tmp_path.iterdir()}
    assert (found["slide.ome.tif"].x, found["slide.ome.tif"].source) == (0.25, "OME")
    assert (found["aperio.svs.tif"].x, found["aperio.svs.tif"].source) == (0.499, "Aperio")
    assert found["fiji.tif"].x == pytest.approx(0.65) and found["fiji.tif"].source == "ImageJ"
    assert (found["cm.tif"].x, found["cm.tif"].y) == pytest.approx((0.3, 0.4))
    assert found["dpi.tif"] is None  # 353 um a pixel: a screen's default, not a microscope's
    assert found["plain.tif"] is None
    (tmp_path / "a.png").write_bytes(b"not read")
    assert read_pixel_size(tmp_path / "a.png") is None


def test_diameter_in_micrometres_and_labels_at_the_images_scale(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    from flowseg.apps.cli import main
    from flowseg.io import read_labels
    from flowseg.training.synthetic import make_sample

    image, _ = make_sample((512, 384), "nuclei", seed=6, diameter=16.0)
    (tmp_path / "in").mkdir()
    write_ome_pyramid(tmp_path / "in" / "slide.ome.tif", image, 0.5)  # nuclei of 8 um
    tifffile.imwrite(tmp_path / "in" / "plain.tif", image)
    code = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--diameter-um", "8", "--device", "cpu", "--save-geojson", "-v"])
    text = capfd.readouterr().err
    assert code == 1  # the plain TIFF has no pixel size: named, the other written
    assert "plain.tif: --diameter-um needs the pixel size" in text
    assert "pyramid of 3 levels" in text and "pixel size 0.5 x 0.5 um (OME)" in text
    assert "diameter 16.0 px (8.0 um)" in text
    labels = read_labels(tmp_path / "out" / "slide.ome_label.tiff")
    assert labels.shape == (512, 384) and labels.max() > 50
    size = read_pixel_size(tmp_path / "out" / "slide.ome_label.tiff")
    assert (size.x, size.y) == pytest.approx((0.5, 0.5))
    assert main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "o2"),
                 "--diameter-um", "8", "--diameter", "20"]) == 1


def test_labels_carry_imagej_units_and_a_rerun_still_sees_its_settings(tmp_path: Path) -> None:
    from flowseg.apps.predict import predict_folder
    from flowseg.training.synthetic import make_sample

    image, _ = make_sample((128, 96), "nuclei", seed=2)
    (tmp_path / "in").mkdir()
    write_ome_pyramid(tmp_path / "in" / "s.ome.tif", image if image.ndim == 2 else image[..., 2],
                      0.65)
    first = predict_folder(tmp_path / "in", tmp_path / "out", device="cpu")
    label = tmp_path / "out" / "s.ome_label.tiff"
    with tifffile.TiffFile(label) as tif:  # Fiji shows the scale in um
        assert tif.is_imagej and tif.imagej_metadata["unit"] == "um"
    size = read_pixel_size(label)
    assert size.source == "ImageJ" and size.x == pytest.approx(0.65)
    again = predict_folder(tmp_path / "in", tmp_path / "out", device="cpu")
    assert len(first.written) == 1 and again.skipped == [label]  # settings found in their tag
