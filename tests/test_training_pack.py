"""The training pack (scripts/training_pack.py): what a training reads from ../shared, in one file."""

from __future__ import annotations

import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
import real_data
import training_pack

from flowseg.errors import InputError
from flowseg.inference.normalize import prepare_image
from flowseg.io import read_image, read_labels, write_labels


def _cells(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    labels = np.zeros(shape, np.uint16)
    for k in range(1, 6):
        y, x = rng.integers(8, shape[0] - 8), rng.integers(8, shape[1] - 8)
        labels[y - 5:y + 5, x - 5:x + 5] = k
    return labels


@pytest.fixture
def shared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A small ../shared: 8-bit grey (saved as RGB) and colour DSB images, 16-bit phase contrast."""
    root = tmp_path / "shared"
    rng = np.random.default_rng(0)
    names = {"dsb2018_stage1_train": ["grey_a", "colour_b"],
             "usiigaci_phase": ["usiigaci_set1", "usiigaci_set6"]}  # set6 validates
    for source, stems in names.items():
        for stem in stems:
            labels = _cells((48, 64), rng)
            folder = root / "data_real" / source
            (folder / "images").mkdir(parents=True, exist_ok=True)
            if source.startswith("usiigaci"):  # 16-bit with noise in the low bits
                pixels = (20000 + 3000 * (labels > 0) + rng.normal(0, 400, labels.shape))
                Image.fromarray(pixels.astype(np.uint16)).save(folder / "images" / f"{stem}.png")
            else:
                grey = (30 + 150 * (labels > 0) + rng.integers(0, 20, labels.shape)).astype(np.uint8)
                rgb = np.stack([grey] * 3 if stem.startswith("grey") else
                               [grey, grey // 2, 255 - grey], axis=-1)
                Image.fromarray(rgb).save(folder / "images" / f"{stem}.png")
            write_labels(labels, folder / "labels" / f"{stem}_label.tiff")
    (root / "data" / "images").mkdir(parents=True)
    tifffile.imwrite(root / "data" / "images" / "nuclei.tif",
                     rng.integers(0, 4000, (32, 32)).astype(np.uint16))
    write_labels(_cells((32, 32), rng), root / "data" / "labels" / "nuclei_label.tiff")
    (root / "data3d" / "images").mkdir(parents=True)
    tifffile.imwrite(root / "data3d" / "images" / "stack.tif",
                     rng.integers(0, 4000, (5, 32, 32)).astype(np.uint16))
    write_labels(np.stack([_cells((32, 32), rng) for _ in range(5)]),
                 root / "data3d" / "labels" / "stack_label.tiff")
    monkeypatch.setattr(real_data, "SHARED", real_data.SHARED)  # restored after the test
    monkeypatch.setattr(real_data, "REAL", real_data.REAL)
    return root


def test_a_pack_carries_the_training_split_as_the_network_sees_it(shared, tmp_path):
    summary = training_pack.write_pack(tmp_path / "pack.zip", shared, planes=range(0, 2))
    assert summary["images"] == 3 and summary["quantised"] == 1  # the 16-bit training image
    originals = {p.stem: (s, m, p, lab) for s, m, p, lab in real_data.real_pairs("train")}
    assert set(originals) == {"grey_a", "colour_b", "usiigaci_set1"}  # never the validation one
    with zipfile.ZipFile(tmp_path / "pack.zip") as archive:
        assert not [n for n in archive.namelist() if "usiigaci_set6" in n]

    real_data.use_shared(training_pack.unpack(tmp_path / "pack.zip", tmp_path / "out"))
    unpacked = {p.stem: (s, m, p, lab) for s, m, p, lab in real_data.real_pairs("train")}
    assert set(unpacked) == set(originals)
    for stem, (source, modality, image, labels) in originals.items():
        source2, modality2, image2, labels2 = unpacked[stem]
        assert (source2, modality2) == (source, modality)
        assert np.array_equal(read_labels(labels2), read_labels(labels))
        before, after = prepare_image(read_image(image)), prepare_image(read_image(image2))
        change = np.abs(after - before).max()
        if stem == "usiigaci_set1":
            assert 0 < change <= training_pack.MAX_CHANGE
        else:  # 8-bit images travel without loss, grey stored as one channel
            assert change == 0
    assert read_image(unpacked["grey_a"][2]).shape[0] == 1
    out = tmp_path / "out"
    assert (out / "data" / "images" / "nuclei.tif").read_bytes() == \
        (shared / "data" / "images" / "nuclei.tif").read_bytes()
    for name in ("images/stack.tif", "labels/stack_label.tiff"):  # the planes training reads
        assert np.array_equal(tifffile.imread(out / "data3d" / name),
                              tifffile.imread(shared / "data3d" / name)[:2])


def test_a_pack_over_the_limit_is_refused_and_nothing_written(shared, tmp_path):
    with pytest.raises(InputError, match=r"pack\.zip: the pack would be .* MiB, over the 0\.0 MiB"):
        training_pack.write_pack(tmp_path / "pack.zip", shared, limit=1000)
    assert not list(tmp_path.glob("pack*"))


REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_the_budget_is_what_the_working_tree_leaves(tmp_path):
    repo = REPO
    budget = training_pack.travel_budget(repo)
    assert 0 < budget < training_pack.TRAVEL - 8_000_000  # the bundled model alone is ~10 MB
    assert training_pack.travel_budget(tmp_path) == training_pack.TRAVEL  # not a checkout


def test_a_damaged_pack_is_named_in_one_line(shared, tmp_path):
    (tmp_path / "junk.zip").write_bytes(b"not a zip file")
    with pytest.raises(InputError, match=r"junk\.zip: not a training pack"):
        training_pack.unpack(tmp_path / "junk.zip", tmp_path / "out")
    with zipfile.ZipFile(tmp_path / "other.zip", "w") as archive:  # a zip, but not a pack
        archive.writestr("notes.txt", "hello")
    with pytest.raises(InputError, match=r"other\.zip: not a training pack"):
        training_pack.unpack(tmp_path / "other.zip", tmp_path / "out")
    (tmp_path / "busy").mkdir()
    with pytest.raises(InputError, match="busy: exists but holds no unpacked training pack"):
        training_pack.unpack(tmp_path / "junk.zip", tmp_path / "busy")
    training_pack.write_pack(tmp_path / "pack.zip", shared)
    data = bytearray((tmp_path / "pack.zip").read_bytes())
    data[1000] ^= 0xFF  # inside the first member's bytes (its CRC or checksum catches it)
    (tmp_path / "bad.zip").write_bytes(bytes(data))
    damaged = r"bad\.zip: (not a training pack|.* does not match its checksum)"
    with pytest.raises(InputError, match=damaged):
        training_pack.unpack(tmp_path / "bad.zip", tmp_path / "out2")
