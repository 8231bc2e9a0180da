"""benchmarks/compare_real.py: paired bootstrap intervals between two bench_real.py CSVs."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_real

FIELDS = ("source", "modality", "name", "scale", "f1_50")


def write(path: Path, rows: list[tuple[str, str, str, float]]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for source, modality, name, value in rows:
            writer.writerow([source, modality, name, "1.0", value])
    return path


def test_a_shift_common_to_every_image_has_a_tight_interval() -> None:
    # Images that differ widely among themselves, the candidate 0.02 higher on every one: the
    # pairing cancels the spread between images, which a comparison of the two means would not.
    base = np.linspace(0.5, 0.95, 20)
    mean, low, high = compare_real.paired_interval(base, base + 0.02)
    assert mean == pytest.approx(0.02) and low == pytest.approx(0.02) and high == pytest.approx(0.02)
    own_mean, own_low, own_high = compare_real.mean_interval(base)
    assert own_low < own_mean - 0.05 and own_high > own_mean + 0.05


def test_mixed_changes_give_an_interval_across_zero() -> None:
    rng = np.random.default_rng(1)
    base = rng.uniform(0.6, 0.95, 7)
    change = np.array([0.05, -0.04, 0.03, -0.06, 0.02, -0.01, 0.01])
    mean, low, high = compare_real.paired_interval(base, base + change)
    assert mean == pytest.approx(change.mean())
    assert low < 0 < high


def test_rows_pair_by_image_and_group_by_modality(tmp_path: Path) -> None:
    base = write(tmp_path / "a.csv", [("s", "phase", "p1", 0.8), ("s", "phase", "p2", 0.6),
                                      ("s", "tissue", "t1", 0.9), ("s", "tissue", "only_a", 0.1)])
    cand = write(tmp_path / "b.csv", [("s", "tissue", "t1", 0.95), ("s", "phase", "p2", 0.7),
                                      ("s", "phase", "p1", 0.7)])
    rows = compare_real.compare(compare_real.read_rows(base, "f1_50"),
                                compare_real.read_rows(cand, "f1_50"))
    by = {r["modality"]: r for r in rows}
    assert by["phase"]["images"] == 2 and by["phase"]["better"] == 1 and by["phase"]["worse"] == 1
    assert by["phase"]["difference"][0] == pytest.approx(0.0)
    assert by["tissue"]["images"] == 1  # the image only one file holds is left out
    assert by["tissue"]["difference"][0] == pytest.approx(0.05)


def test_bad_files_get_one_line_and_exit_2(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path / "a.csv", [("s", "phase", "p1", 0.8)])
    other = write(tmp_path / "b.csv", [("s", "phase", "p9", 0.8)])
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("a,b\n1,2\n")
    for args, needle in (([str(tmp_path / "missing.csv"), str(good)], "missing.csv: cannot read"),
                         ([str(wrong), str(good)], "wrong.csv: no column"),
                         ([str(good), str(other)], "share no image"),
                         ([str(good), str(good), "--column", "f1_99"], "no column f1_99")):
        assert compare_real.main(args) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1
