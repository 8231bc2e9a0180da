"""flowseg.io.files: image and label pairs, folder listings, output names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowseg.io import write_labels
from flowseg.io.files import find_pairs, label_path, list_images

from .test_io import _save


def test_find_pairs(tmp_path: Path) -> None:
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    for name in ("b", "a"):
        _save(images / f"{name}.png", np.zeros((4, 4), np.uint8))
        write_labels(np.zeros((4, 4), np.uint8), labels / f"{name}_label.tiff")
    (images / ".hidden.png").write_bytes(b"")
    pairs = find_pairs(images, labels)
    assert [(i.name, lab.name) for i, lab in pairs] == [
        ("a.png", "a_label.tiff"), ("b.png", "b_label.tiff")]
    _save(images / "c.tif", np.zeros((4, 4), np.uint8))
    write_labels(np.zeros((4, 4), np.uint8), labels / "z_label.tiff")
    with pytest.raises(ValueError, match=r"for c.tif.*for z_label.tiff"):
        find_pairs(images, labels)
    _save(images / "a.tif", np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="share the name a"):
        list_images(images)


def test_find_pairs_in_one_folder_and_empty(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no images"):
        find_pairs(tmp_path, tmp_path)
    with pytest.raises(FileNotFoundError, match="no such folder"):
        find_pairs(tmp_path / "nope", tmp_path)
    _save(tmp_path / "x.bmp", np.zeros((4, 4, 3), np.uint8))
    write_labels(np.zeros((4, 4), np.uint8), tmp_path / "x_label.tiff")
    assert [p[0].name for p in find_pairs(tmp_path, tmp_path)] == ["x.bmp"]


def test_label_path() -> None:
    assert label_path("/in/cell.01.png", "/out") == Path("/out/cell.01_label.tiff")


def test_outputs_written_beside_their_images_are_not_inputs_again(tmp_path: Path) -> None:
    # predict -i same -o same --save-overlays: the rerun segmented a_overlay.png as an image.
    from flowseg.io.files import list_images, resolve_inputs

    for name in ("a.tif", "a_overlay.png", "a_flows.tiff", "b_overlay.png"):
        (tmp_path / name).write_bytes(b"x")
    images, ignored, _ = resolve_inputs(tmp_path)
    assert [p.name for p in images] == ["a.tif", "b_overlay.png"]  # b's own image is not here
    assert "a_overlay.png (an output of flowseg)" in ignored
    assert [p.name for p in list_images(tmp_path)] == ["a.tif", "b_overlay.png"]


def test_a_long_name_fits_its_temporary_file_too(tmp_path: Path) -> None:
    # A 236-character image name: its 247-character label file was fine, the temporary file it
    # is written through (".<name>.<random>.tmp") passed the file system's 255.
    from flowseg.io import write_atomic

    path = write_atomic(tmp_path / ("n" * 236 + "_label.tiff"), b"x")
    assert path.read_bytes() == b"x" and len(path.name) == 247
    write_labels(np.ones((4, 4), np.uint8), tmp_path / ("m" * 240 + "_label.tiff"))


def test_two_images_of_one_name_fail_as_a_pair_and_the_rest_go_on(tmp_path: Path) -> None:
    # a.tif beside a.png refused the whole run up front.
    from flowseg.io.files import resolve_inputs

    for name in ("a.tif", "a.png", "b.png"):
        (tmp_path / name).write_bytes(b"x")
    images, _, clashes = resolve_inputs(tmp_path)
    assert [p.name for p in images] == ["b.png"]
    assert clashes == ["a.png: shares the name a with a.tif (their label files would collide; "
                       "rename one)", "a.tif: shares the name a with a.png (their label files "
                       "would collide; rename one)"]
