"""Bad and odd inputs, one parametrised case per kind: a one-line error naming the file or the
argument, a non-zero exit, the good images beside a bad one written, nothing else left behind."""

from __future__ import annotations

import os
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowseg.apps.cli import main
from flowseg.inference.pipeline import segment
from flowseg.io import read_image, read_labels, write_labels
from flowseg.io.files import IMAGE_SUFFIXES

RNG = np.random.default_rng(7)
GOOD = (RNG.random((48, 64)) * 255).astype(np.uint8)


def _jpeg_declaring(height: int, width: int) -> bytes:
    data = bytearray(imagecodecs.jpeg8_encode(GOOD))
    i = data.find(b"\xff\xc0")
    data[i + 5:i + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(data)


def _png_declaring(height: int, width: int) -> bytes:
    data = bytearray(imagecodecs.png_encode(GOOD))
    data[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")
    return bytes(data)


def _bmp_declaring(height: int, width: int) -> bytes:
    data = bytearray(imagecodecs.bmp_encode(GOOD))
    data[18:26] = width.to_bytes(4, "little", signed=True) + height.to_bytes(4, "little", signed=True)
    return bytes(data)


def _tiff_declaring(tmp: Path) -> bytes:
    # A compressed TIFF whose one page claims 49152^2 pixels: small on disk, huge decoded.
    path = tmp / "lying.tif"
    tifffile.imwrite(path, GOOD, compression="zlib")
    with tifffile.TiffFile(path, mode="r+") as tif:
        tif.pages[0].tags["ImageWidth"].overwrite(49152)
        tif.pages[0].tags["ImageLength"].overwrite(49152)
    return path.read_bytes()


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _tiff_of_rows_cut(tmp: Path) -> bytes:
    # (H, W, 3) written as "minisblack": one page per row; the last pages' records cut off.
    path = tmp / "rows.tif"
    tifffile.imwrite(path, np.stack([GOOD] * 3, axis=-1), photometric="minisblack")
    return path.read_bytes()[:-50]


BAD_FILES = {
    "huge.jpg": ("lying header", lambda tmp: _jpeg_declaring(30000, 30000), "pixels is more"),
    "vast.jpg": ("lying header", lambda tmp: _jpeg_declaring(65000, 65000), "pixels is more"),
    "huge.png": ("lying header", lambda tmp: _png_declaring(100000, 100000), "pixels is more"),
    "huge.bmp": ("lying header", lambda tmp: _bmp_declaring(60000, 60000), "pixels is more|BMP"),
    "huge.tif": ("lying header", _tiff_declaring, "pixels is more|truncated"),
    "cut.jpg": ("truncated", lambda tmp: _cut(imagecodecs.jpeg8_encode(GOOD)), "truncated JPEG"),
    "cut.png": ("truncated", lambda tmp: _cut(imagecodecs.png_encode(GOOD)), "truncated PNG"),
    "cut.bmp": ("truncated", lambda tmp: _cut(imagecodecs.bmp_encode(GOOD)), "truncated BMP"),
    "cut.tif": ("truncated", _tiff_of_rows_cut, "cannot read the header"),
    "empty.tif": ("empty", lambda tmp: b"", "empty file"),
    "junk.png": ("corrupt", lambda tmp: b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "PNG"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_a_bad_file_is_one_line_and_the_good_one_beside_it_is_written(
        name: str, tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, make, reason = BAD_FILES[name]
    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir()
    (inp / name).write_bytes(make(tmp_path))
    tifffile.imwrite(inp / "good.tif", GOOD)
    code = main(["predict", "-i", str(inp), "-o", str(out), "--model", str(tiny_model),
                 "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1
    lines = [ln for ln in captured.err.splitlines() if name in ln]
    assert len(lines) == 1 and lines[0].startswith(f"failed: {name}: "), captured.err
    import re

    assert re.search(reason, lines[0]), lines[0]
    assert str(inp) not in lines[0]  # the file is named once, not as a path twice
    assert sorted(p.name for p in out.iterdir()) == ["good_label.tiff"]  # nothing else left


def test_a_broken_link_fails_by_name_and_hidden_and_label_files_are_named(
        tmp_path: Path, tiny_model: Path, capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    tifffile.imwrite(inp / "good.tif", GOOD)
    os.symlink(tmp_path / "gone.tif", inp / "link.tif")
    os.symlink(tmp_path / "gone.txt", inp / "notes.txt")
    tifffile.imwrite(inp / ".hidden.tif", GOOD)
    write_labels(np.zeros((4, 4), np.uint8), inp / "x_label.tiff")
    # A dangling link named as an image is an input that cannot be read: it fails, by name,
    # once, and the exit code says so; the good image is still written.
    assert main(["predict", "-i", str(inp), "-o", str(tmp_path / "out"), "--model",
                 str(tiny_model), "--device", "cpu"]) == 1
    captured = capsys.readouterr()
    assert captured.err.count("link.tif") == 1 and "failed: link.tif: " in captured.err
    assert "1 failed: link.tif" in captured.out
    assert "notes.txt (a broken link)" in captured.out
    assert ".hidden.tif (a hidden file)" in captured.out
    assert "x_label.tiff (a label file)" in captured.out
    assert (tmp_path / "out" / "good_label.tiff").is_file()
    assert not (tmp_path / "out" / ".hidden_label.tiff").exists()


@pytest.mark.parametrize(("argv", "option"), [
    (["predict", "-i", "", "-o", "out"], "-i/--input"),
    (["predict", "-i", "in", "-o", ""], "-o/--output"),
    (["evaluate", "--pred", " ", "--gt", "gt"], "--pred"),
    (["train", "--data_path", "", "--out", "run"], "--data_path"),
])
def test_an_empty_path_is_refused_by_option(argv: list[str], option: str,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    # An empty path used to be taken as the current folder.
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and f"argument {option}: an empty path" in err


@pytest.mark.parametrize(("argv", "message"), [
    (["predict", "--tile", "8"], "argument --tile: must be from 128 to 16,384, got 8"),
    (["predict", "--batch", "0"], "argument --batch: must be from 1 to 256, got 0"),
    (["predict", "--border", "-1"], "argument --border: must be from 0 to 1,024, got -1"),
    (["predict", "--border", "100000"], "argument --border: must be from 0 to 1,024"),
    (["predict", "--max-pixels", "0"], "argument --max-pixels: must be from 1"),
    (["predict", "--3d", "--anisotropy", "1e-9"], "argument --anisotropy: the z step"),
    (["predict", "--3d", "--anisotropy", "inf"], "argument --anisotropy: the z step"),
    (["predict", "--3d", "--anisotropy", "1e6"], "argument --anisotropy: the z step"),
    (["predict", "--dask", "--workers", "0"], "argument --workers: must be from 1"),
    (["predict", "--dask", "--workers", "-1"], "argument --workers: must be from 1"),
    (["predict", "--dask", "garbage::address"], "--dask garbage::address: no scheduler"),
    (["predict", "--diameter", "20", "--diameter-um", "8"], "not both"),
    (["predict", "--diameter-um", "-3"], "argument --diameter-um: must be between"),
    (["predict", "--diameter", "-2"], "must be a positive number of pixels"),
    (["predict", "--diameter", "inf"], "argument --diameter: must be a positive number"),
    (["predict", "--diameter", "0.001"], "under 2 px"),
    (["predict", "--device", "cuda"], "no CUDA device"),
    (["predict", "--precision", "float16"], "needs a CUDA device"),
    (["train", "--batch_size", "0"], "invalid training settings"),
    (["train", "--epochs", "0"], "invalid training settings"),
    (["train", "--crop", "0"], "invalid data settings"),
    (["train", "--seed", "-1"], "argument --seed: must be from 0 to 4,294,967,295, got -1"),
])
def test_argument_errors_are_reported_once_before_any_image(
        argv: list[str], message: str, tmp_path: Path, tiny_model: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    import torch

    if "cuda" in argv and torch.cuda.is_available():
        pytest.skip("a CUDA device is present: --device cuda is valid here")
    inp = tmp_path / "in"
    inp.mkdir()
    for k in range(3):
        tifffile.imwrite(inp / f"img{k}.tif", GOOD)
    if argv[0] == "predict":
        argv = [*argv, "-i", str(inp), "-o", str(tmp_path / "out"), "--model", str(tiny_model)]
    else:
        write_labels(np.zeros(GOOD.shape, np.uint8), inp / "img0_label.tiff")
        argv = [*argv, "--data_path", str(inp), "--out", str(tmp_path / "run")]
    try:
        code = main(argv)
    except SystemExit as stop:  # argparse's own usage errors exit 2
        code = int(stop.code or 0)
    err = capsys.readouterr().err
    assert code in (1, 2) and message in err, err
    assert len([ln for ln in err.splitlines() if "error:" in ln]) == 1  # said once
    assert not (tmp_path / "out").exists()


def test_training_on_labels_without_cells_says_so(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    for k in range(2):
        (data / "images").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(data / "images" / f"a{k}.tif", GOOD)
        write_labels(np.zeros(GOOD.shape, np.uint8), data / "labels" / f"a{k}_label.tiff")
    assert main(["train", "--data_path", str(data), "--out", str(tmp_path / "run"),
                 "--pretrained", "none"]) == 1
    assert "no cells in any of the 2 label images" in capsys.readouterr().err  # both train


def test_arrays_are_read_the_way_the_docs_say(tiny_model: Path) -> None:
    from flowseg.inference.pipeline import load_model

    net = load_model(tiny_model)
    rgb = (RNG.random((40, 50, 3)) * 255).astype(np.uint8)
    assert segment(rgb, net, device="cpu").shape == (40, 50)
    assert segment(rgb[..., 0], net, device="cpu").shape == (40, 50)
    assert segment(np.moveaxis(rgb, -1, 0), net, device="cpu").shape == (40, 50)
    with pytest.raises(ValueError, match="channel_axis"):
        segment(RNG.random((5, 40, 50)), net, device="cpu")  # a stack, not channels
    assert segment(RNG.random((5, 40, 50)), net, device="cpu", channel_axis=0).shape == (40, 50)


@settings(max_examples=60, deadline=5000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from(IMAGE_SUFFIXES), data=st.binary(max_size=2000),
       seed_format=st.booleans(), cut=st.integers(0, 4000))
def test_random_and_mutated_bytes_give_an_image_or_our_error(
        tmp_path: Path, suffix: str, data: bytes, seed_format: bool, cut: int) -> None:
    if seed_format:  # start from a real file of the format and damage it
        encode = {".png": imagecodecs.png_encode, ".bmp": imagecodecs.bmp_encode,
                  ".jpg": imagecodecs.jpeg8_encode, ".jpeg": imagecodecs.jpeg8_encode}
        real = bytes(encode[suffix](GOOD)) if suffix in encode else _tiff_bytes(tmp_path)
        data = real[:cut] + data + real[cut + len(data):]
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        image = read_image(path)
    except ValueError as err:
        assert str(path) in str(err) and "\n" not in str(err)
        return
    assert image.ndim == 3 and image.dtype == np.float32 and np.isfinite(image).all()


def _tiff_bytes(tmp: Path) -> bytes:
    tifffile.imwrite(tmp / "seed.tif", GOOD)
    return (tmp / "seed.tif").read_bytes()


def test_labels_of_a_good_run_are_whole(tmp_path: Path, tiny_model: Path) -> None:
    inp = tmp_path / "in"
    inp.mkdir()
    tifffile.imwrite(inp / "good.tif", GOOD)
    assert main(["predict", "-i", str(inp), "-o", str(tmp_path / "o"), "--model",
                 str(tiny_model), "--device", "cpu"]) == 0
    assert read_labels(tmp_path / "o" / "good_label.tiff").shape == GOOD.shape


def test_ctrl_c_is_one_line_and_exit_130(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from flowseg.apps import predict as predict_module

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(predict_module, "predict_folder", interrupted)
    (tmp_path / "in").mkdir()
    code = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 130 and err.strip() == "flowseg predict: interrupted; every file written " \
        "so far is whole" and "Traceback" not in err


def _value_options(command: str) -> list[str]:
    """The options of a subcommand that take a value (from the parser itself)."""
    import argparse

    from flowseg.apps.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(o for action in sub.choices[command]._actions if action.nargs != 0
                  and action.option_strings for o in action.option_strings if o.startswith("--")
                  and o not in ("--data_path", "--out", "--pred", "--gt", "--input", "--output",
                                "--model", "--pretrained", "--csv", "--dask"))


ODD_VALUES = st.one_of(
    st.sampled_from(["", "0", "-1", "nan", "inf", "-inf", "1e308", "1e-308", "99999999999999",
                     "auto", "none", "  3 ", "0x10", "1,000", "tcp://", "\x00", "é"]),
    st.integers(-10**12, 10**12).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12))


@settings(max_examples=150, deadline=10_000,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["predict", "train", "evaluate"]), data=st.data())
def test_fuzzed_option_values_are_an_exit_code_and_one_line(
        tmp_path_factory: pytest.TempPathFactory, command: str, data: st.DataObject) -> None:
    # Any value of any option: exit 1 or 2 (nothing to segment, train or score here, so no value
    # can lead to work), one line of error, no traceback, nothing written anywhere.
    import contextlib
    import io

    option = data.draw(st.sampled_from(_value_options(command)), label="option")
    value = data.draw(ODD_VALUES, label="value")
    root = tmp_path_factory.mktemp("fuzz")
    empty = root / "empty"
    empty.mkdir()
    paths = {"predict": ["-i", str(empty), "-o", str(root / "out")],
             "train": ["--data_path", str(empty), "--out", str(root / "run")],
             "evaluate": ["--pred", str(empty), "--gt", str(empty)]}[command]
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main([command, *paths, option, value])
        except SystemExit as stop:
            code = int(stop.code or 0)
    text = err.getvalue()
    assert code in (1, 2), (option, value, code, text)
    assert "Traceback" not in text and "internal error" not in text, (option, value, text)
    assert len([ln for ln in text.splitlines() if "error" in ln]) == 1, (option, value, text)
    assert sorted(p.name for p in root.iterdir()) == ["empty"] and not any(empty.iterdir())


def test_a_full_disk_is_one_line_per_image_and_leaves_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import errno

    import flowseg.io.labels as labels_module

    def full(*args: object, **kwargs: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "in").mkdir()
    for k in range(2):
        tifffile.imwrite(tmp_path / "in" / f"img{k}.tif", GOOD)
    monkeypatch.setattr(labels_module.tifffile, "imwrite", full)
    code = main(["predict", "-i", str(tmp_path / "in"), "-o", str(tmp_path / "out"),
                 "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1 and err.count("No space left on device") == 2 and "Traceback" not in err
    assert list((tmp_path / "out").iterdir()) == []  # no temporary file, no partial label
