from __future__ import annotations

import os
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile

from flowseg.io import read_description, read_image, read_labels, read_volume, write_labels

RNG = np.random.default_rng(0)


def _save(path: Path, array: np.ndarray) -> Path:
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        tifffile.imwrite(path, array)
    elif suffix == ".png":
        path.write_bytes(imagecodecs.png_encode(array))
    elif suffix == ".bmp":
        path.write_bytes(imagecodecs.bmp_encode(array))
    else:
        path.write_bytes(imagecodecs.jpeg8_encode(array, level=100))
    return path


LOSSLESS = [(s, d, c) for s in (".png", ".tif", ".tiff", ".bmp") for d in (np.uint8, np.uint16)
            for c in (0, 3) if not (s == ".bmp" and d == np.uint16)]  # BMP has no 16 bits


@pytest.mark.parametrize(("suffix", "dtype", "channels"), LOSSLESS)
def test_lossless_formats_round_trip(tmp_path: Path, suffix: str, dtype: type, channels: int) -> None:
    shape = (17, 23, channels) if channels else (17, 23)
    array = RNG.integers(0, np.iinfo(dtype).max, shape, endpoint=True).astype(dtype)
    image = read_image(_save(tmp_path / f"x{suffix}", array))
    expected = np.moveaxis(array, -1, 0) if channels else array[None]
    assert image.dtype == np.float32 and image.shape == expected.shape
    np.testing.assert_array_equal(image, expected.astype(np.float32))  # 16-bit range kept


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPG"])
def test_jpeg_reads_close(tmp_path: Path, suffix: str) -> None:
    array = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (24, 1))
    rgb = np.stack([array, array[::-1], array], axis=-1)
    image = read_image(_save(tmp_path / f"x{suffix}", rgb))
    assert image.shape == (3, 24, 32)
    assert np.abs(image - np.moveaxis(rgb, -1, 0)).mean() < 3


def test_alpha_is_dropped_from_png(tmp_path: Path) -> None:
    rgba = RNG.integers(0, 255, (9, 11, 4)).astype(np.uint8)
    assert read_image(_save(tmp_path / "a.png", rgba)).shape == (3, 9, 11)
    gray_alpha = RNG.integers(0, 255, (9, 11, 2)).astype(np.uint8)
    assert read_image(_save(tmp_path / "b.png", gray_alpha)).shape == (1, 9, 11)


@pytest.mark.parametrize("shape", [(5, 40, 30), (40, 30, 5), (1, 40, 30), (2, 40, 30), (40, 30, 4)])
def test_multichannel_tiff_in_either_order(tmp_path: Path, shape: tuple[int, ...]) -> None:
    array = RNG.integers(0, 60_000, shape).astype(np.uint16)
    image = read_image(_save(tmp_path / "m.tif", array))
    channel_last = shape[-1] < shape[0]
    expected = np.moveaxis(array, -1, 0) if channel_last else array
    np.testing.assert_array_equal(image, expected)


def test_float_tiff_keeps_values(tmp_path: Path) -> None:
    array = RNG.normal(0, 1000, (12, 13)).astype(np.float32)
    np.testing.assert_array_equal(read_image(_save(tmp_path / "f.tif", array))[0], array)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("missing.png", None, "no such file"),
    ("empty.png", b"", "empty file"),
    ("corrupt.png", b"\x89PNG\r\n\x1a\nnot really a png", "not a PNG"),
    ("corrupt.tif", b"II*\x00garbage", "not a readable TIFF"),
    ("corrupt.jpg", b"\xff\xd8\xff\xe0 no frame\xff\xd9", "JPEG"),
    ("notes.txt", b"hello", "unsupported format"),
])
def test_bad_files_give_one_line_errors(tmp_path: Path, name: str, content: bytes | None,
                                        message: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises((ValueError, FileNotFoundError), match=message) as info:
        read_image(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_a_stack_is_refused(tmp_path: Path) -> None:
    path = _save(tmp_path / "stack.tif", np.zeros((30, 40, 50), np.uint8))
    with pytest.raises(ValueError, match=r"stack.tif: shape \(30, 40, 50\)"):
        read_image(path)


def test_labels_round_trip_and_dtype(tmp_path: Path) -> None:
    small = RNG.integers(0, 60_000, (20, 30)).astype(np.uint32)
    path = write_labels(small, tmp_path / "out" / "a_label.tiff")
    assert tifffile.imread(path).dtype == np.uint16
    np.testing.assert_array_equal(read_labels(path), small)
    big = small.copy()
    big[0, 0] = 70_000
    path = write_labels(big, tmp_path / "b_label.tiff")
    assert tifffile.imread(path).dtype == np.uint32
    np.testing.assert_array_equal(read_labels(path), big)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression != 1  # compressed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b_label.tiff", "out"]  # no leftovers


def test_write_labels_failure_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="negative"):
        write_labels(np.full((4, 4), -1), tmp_path / "x_label.tiff")
    old = write_labels(np.ones((4, 4), np.uint8), tmp_path / "y_label.tiff")
    with pytest.raises(ValueError, match="must be 3-D"):
        write_labels(np.ones((2, 2, 4, 4), np.uint8), old)
    assert read_labels(old).sum() == 16 and sorted(os.listdir(tmp_path)) == ["y_label.tiff"]


@pytest.mark.parametrize(("array", "message"), [
    (np.full((4, 4), -3, np.int32), "negative"),
    (np.full((4, 4), 1.5, np.float32), "non-integer"),
    (np.zeros((2, 4, 4), np.uint16), "2-D"),
])
def test_bad_labels(tmp_path: Path, array: np.ndarray, message: str) -> None:
    path = tmp_path / "bad_label.tiff"
    tifffile.imwrite(path, array)
    with pytest.raises(ValueError, match=message):
        read_labels(path)


def test_read_pixels_keeps_the_dtype(tmp_path: Path) -> None:
    from flowseg.io import read_pixels

    rgb = RNG.integers(0, 255, (9, 11, 3)).astype(np.uint8)
    pixels = read_pixels(_save(tmp_path / "p.png", rgb))
    assert pixels.dtype == np.uint8 and pixels.shape == (3, 9, 11)
    np.testing.assert_array_equal(pixels, np.moveaxis(rgb, -1, 0))


@pytest.mark.parametrize(("array", "options", "expected"), [
    (np.zeros((5, 16, 20), np.uint16), {}, (5, 1, 16, 20)),
    (np.zeros((5, 16, 20), np.uint16), {"imagej": True}, (5, 1, 16, 20)),  # ImageJ says "C"
    (np.zeros((5, 2, 16, 20), np.uint16), {"imagej": True, "metadata": {"axes": "ZCYX"}},
     (5, 2, 16, 20)),
    (np.zeros((5, 2, 16, 20), np.uint16), {}, (5, 2, 16, 20)),
    (np.zeros((2, 30, 16, 20), np.uint16), {}, (30, 2, 16, 20)),
    (np.zeros((5, 16, 20, 3), np.uint8), {"photometric": "rgb"}, (5, 3, 16, 20)),
    (np.zeros((16, 20), np.uint8), {}, (1, 1, 16, 20)),
])
def test_read_volume_finds_planes_and_channels(tmp_path: Path, array: np.ndarray, options: dict,
                                               expected: tuple) -> None:
    tifffile.imwrite(tmp_path / "stack.tif", array, **options)
    assert read_volume(tmp_path / "stack.tif").shape == expected


def test_read_volume_refuses_what_is_not_a_stack(tmp_path: Path) -> None:
    tifffile.imwrite(tmp_path / "five.tif", np.zeros((2, 3, 4, 16, 20), np.uint16),
                     photometric="minisblack")
    with pytest.raises(ValueError, match=r"five.tif: shape \(2, 3, 4, 16, 20\)"):
        read_volume(tmp_path / "five.tif")
    with pytest.raises(ValueError, match="must be a TIFF"):
        read_volume(tmp_path / "five.png")
    with pytest.raises(ValueError, match="more than the 100 allowed"):
        read_volume(tmp_path / "five.tif", max_pixels=100)
    tifffile.imwrite(tmp_path / "labels.tif", np.ones((3, 8, 8), np.uint16), photometric="minisblack")
    assert read_labels(tmp_path / "labels.tif", ndim=3).shape == (3, 8, 8)
    with pytest.raises(ValueError, match="labels must be 2-D"):
        read_labels(tmp_path / "labels.tif")


def test_a_stack_of_three_label_planes_is_not_written_as_rgb(tmp_path: Path) -> None:
    # tifffile takes a (3, H, W) array for one RGB image unless told otherwise: Fiji would then
    # open a 3-plane label stack as colour.
    stack = np.random.default_rng(0).integers(0, 5, (3, 20, 20)).astype(np.uint32)
    write_labels(stack, tmp_path / "s_label.tiff")
    with tifffile.TiffFile(tmp_path / "s_label.tiff") as tif:
        assert len(tif.pages) == 3 and tif.pages[0].photometric == tifffile.PHOTOMETRIC.MINISBLACK
    np.testing.assert_array_equal(read_labels(tmp_path / "s_label.tiff", ndim=3), stack)


@pytest.mark.parametrize("shape", [(3, 100, 3), (1, 50, 3), (2, 40, 4), (2, 2, 3), (4, 4, 2)])
def test_tiny_pictures_keep_their_channels_last(tmp_path: Path, shape: tuple[int, ...]) -> None:
    # A 3-pixel-high RGB PNG was read as 3 channels of 100 x 3: labels of another shape.
    import imagecodecs

    from flowseg.io import read_pixels

    array = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    for suffix, encode in ((".png", imagecodecs.png_encode), (".bmp", imagecodecs.bmp_encode)):
        if suffix == ".bmp" and shape[-1] not in (3, 4):
            continue
        path = tmp_path / f"tiny{suffix}"
        path.write_bytes(encode(array))
        image = read_pixels(path)
        channels = {2: 1, 3: 3, 4: 3}[shape[-1]]  # alpha dropped
        assert image.shape == (channels, *shape[:2]), suffix
        np.testing.assert_array_equal(image[0], array[..., 0])


def test_jpegs_with_long_metadata_or_fill_bytes_are_read(tmp_path: Path) -> None:
    # libjpeg reads both; the header check refused them ("no frame header in the first 64 KiB").
    import imagecodecs

    from flowseg.io import read_pixels

    array = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    plain = bytes(imagecodecs.jpeg8_encode(array))
    exif = b"".join(b"\xff\xe1" + (60002).to_bytes(2, "big") + b"x" * 60000 for _ in range(3))
    (tmp_path / "metadata.jpg").write_bytes(plain[:2] + exif + plain[2:])
    (tmp_path / "fill.jpg").write_bytes(plain[:2] + b"\xff\xff\xff" + plain[3:])
    for name in ("metadata.jpg", "fill.jpg"):
        assert read_pixels(tmp_path / name).shape == (3, 40, 60), name


def test_the_budget_bounds_decoded_bytes_not_only_pixels(tmp_path: Path) -> None:
    # A 16-bit RGBA PNG and a multi-page TIFF within the pixel budget decode to far more bytes.
    import imagecodecs

    from flowseg.io import read_pixels

    (tmp_path / "rgba16.png").write_bytes(imagecodecs.png_encode(np.zeros((300, 400, 4),
                                                                          np.uint16)))
    tifffile.imwrite(tmp_path / "pages.tif", np.zeros((50, 200, 200), np.uint8))
    with pytest.raises(ValueError, match=r"rgba16.png: decodes to 1.0 MB, more than the 0.8 MB"):
        read_pixels(tmp_path / "rgba16.png", max_pixels=200_000)
    with pytest.raises(ValueError, match=r"pages.tif: decodes to 2.0 MB, more than the 0.4 MB"):
        read_pixels(tmp_path / "pages.tif", max_pixels=100_000)
    # evaluate --gt reads labels the same way: a page bomb (sparse: 1.2 GB, nothing on disk)
    tifffile.imwrite(tmp_path / "bomb_label.tiff", shape=(300, 2000, 2000), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"bomb_label.tiff: decodes to 1.2 GB, more than the"):
        read_labels(tmp_path / "bomb_label.tiff")
    assert read_pixels(tmp_path / "rgba16.png").shape == (3, 300, 400)  # within the default


def test_a_stack_cut_short_is_refused_not_read_as_its_first_plane(tmp_path: Path) -> None:
    stack = np.random.default_rng(0).integers(0, 4000, (16, 64, 64), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "whole.tif", stack, compression="zlib")
    data = (tmp_path / "whole.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) // 2])
    assert read_volume(tmp_path / "whole.tif").shape == (16, 1, 64, 64)
    with pytest.raises(ValueError, match=r"cut.tif: a damaged or truncated stack \(.*invalid page"):
        read_volume(tmp_path / "cut.tif")


def test_large_label_tiffs_get_a_pyramid_with_the_pixel_size(tmp_path: Path) -> None:
    from flowseg.io import write_labels_tiled
    from flowseg.io.pixelsize import PixelSize, read_pixel_size

    labels = np.zeros((9000, 600), np.uint32)
    labels[100:200, 300:400] = 70_000  # an id past uint16
    labels[8000:8100, 10:110] = 3
    write_labels_tiled(labels, tmp_path / "big_label.tiff", pixel_size=PixelSize(0.25, 0.25, "t"))
    with tifffile.TiffFile(tmp_path / "big_label.tiff") as tif:
        levels = tif.series[0].levels
        assert [level.shape for level in levels] == [(9000, 600), (4500, 300), (2250, 150)]
        np.testing.assert_array_equal(levels[2].asarray(), labels[::4, ::4])  # ids stay ids
    np.testing.assert_array_equal(read_labels(tmp_path / "big_label.tiff"), labels)
    assert read_pixel_size(tmp_path / "big_label.tiff").x == 0.25
    # write_labels (one process's predict) hands a slide's labels to it: OME-XML with the pixel
    # size in um, predict's settings in the private tag.
    write_labels(labels, tmp_path / "one_label.tiff", description='{"model": "m"}',
                 pixel_size=PixelSize(0.5, 0.25, "t"))
    with tifffile.TiffFile(tmp_path / "one_label.tiff") as tif:
        assert tif.is_ome and len(tif.series[0].levels) == 3
        pixels = tif.ome_metadata.split("<Pixels ")[1].split(">")[0]
        assert 'PhysicalSizeX="0.25"' in pixels and 'PhysicalSizeY="0.5"' in pixels
        assert 'PhysicalSizeXUnit="µm"' in pixels
    assert read_description(tmp_path / "one_label.tiff") == '{"model": "m"}'
    found = read_pixel_size(tmp_path / "one_label.tiff")
    assert (found.y, found.x, found.source) == (0.5, 0.25, "OME")
    np.testing.assert_array_equal(read_labels(tmp_path / "one_label.tiff"), labels)
    write_labels_tiled(labels[:4000], tmp_path / "small_label.tiff")
    with tifffile.TiffFile(tmp_path / "small_label.tiff") as tif:
        assert len(tif.series[0].levels) == 1


def test_a_stack_read_in_2d_is_refused_or_named(tmp_path: Path,
                                                caplog: pytest.LogCaptureFixture) -> None:
    # predict without --3d on a 13-plane stack read its planes as channels without a word.
    from flowseg.io import read_pixels

    stack = np.zeros((13, 32, 32), np.uint16)
    tifffile.imwrite(tmp_path / "z.tif", stack, imagej=True, metadata={"axes": "ZYX"})
    with pytest.raises(ValueError, match=r"z.tif: a stack of 13 planes along Z .*--3d"):
        read_pixels(tmp_path / "z.tif")
    tifffile.imwrite(tmp_path / "pages.tif", stack)
    with caplog.at_level("WARNING", logger="flowseg.io.images"):
        assert read_pixels(tmp_path / "pages.tif").shape == (13, 32, 32)
    assert "pages.tif: 13 pages without axis names, read as 13 channels" in caplog.text
    tifffile.imwrite(tmp_path / "c.tif", stack[:3], imagej=True, metadata={"axes": "CYX"})
    assert read_pixels(tmp_path / "c.tif").shape == (3, 32, 32)


def test_an_unnamed_4d_stack_says_how_it_was_read(tmp_path: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    # (4, 17, 32, 32) without axis names: 17 planes of 4 channels (a 17-channel stack is beyond
    # what flowseg reads as channels), and the log says so; named axes decide otherwise.
    tifffile.imwrite(tmp_path / "s.tif", np.zeros((4, 17, 32, 32), np.uint16))
    with caplog.at_level("INFO", logger="flowseg.io.images"):
        assert read_volume(tmp_path / "s.tif").shape == (17, 4, 32, 32)
    assert "read as 17 planes of 4 channels (C, Z, Y, X)" in caplog.text
    tifffile.imwrite(tmp_path / "n.tif", np.zeros((4, 3, 32, 32), np.uint16), imagej=True,
                     metadata={"axes": "ZCYX"})
    assert read_volume(tmp_path / "n.tif").shape == (4, 3, 32, 32)


def test_exif_orientation_is_not_applied(tmp_path: Path) -> None:
    # A decision: labels overlay the pixels as stored (Fiji, tifffile and QuPath read them so).
    import imagecodecs

    from flowseg.io import read_pixels

    array = np.zeros((30, 50, 3), np.uint8)
    array[:, :10] = 255  # a bright band on the left as stored
    plain = bytes(imagecodecs.jpeg8_encode(array, level=95))
    tiff = b"II*\x00\x08\x00\x00\x00\x01\x00" + b"\x12\x01\x03\x00\x01\x00\x00\x00\x06\x00\x00\x00"
    exif = b"Exif\x00\x00" + tiff + b"\x00\x00\x00\x00"  # orientation 6: rotate 90 to view
    segment = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    (tmp_path / "phone.jpg").write_bytes(plain[:2] + segment + plain[2:])
    image = read_pixels(tmp_path / "phone.jpg")
    assert image.shape == (3, 30, 50) and image[0, :, :10].mean() > 200
