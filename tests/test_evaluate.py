from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from flowseg.apps.evaluate import evaluate_folder
from flowseg.io import write_labels
from flowseg.training.synthetic import random_touching_labels


def test_evaluate_folder(tmp_path: Path) -> None:
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    labels = random_touching_labels((80, 80), seed=4)
    write_labels(labels, gt / "a_label.tiff")
    write_labels(labels, pred / "a_label.tiff")
    write_labels(labels, gt / "b_label.tiff")  # no prediction
    write_labels(labels, gt / "c_label.tiff")
    (pred / "c_label.tiff").write_bytes(b"junk")
    write_labels(labels[:40], gt / "d_label.tiff")
    write_labels(labels, pred / "d_label.tiff")  # wrong shape
    (gt / "e_label.tiff").write_bytes(b"")  # unreadable truth
    result = evaluate_folder(pred, gt)
    rows = {r["name"]: r for r in result.rows}
    assert rows["a"]["f1"] == 1.0 and rows["b"]["f1"] == 0.0 and rows["b"]["status"] == "missing"
    assert rows["c"]["status"].startswith("unreadable") and rows["c"]["fn"] > 0
    assert "shape" in str(rows["d"]["status"])
    # the unreadable truth and both bad predictions are listed (the command then exits 1)
    assert result.missing == ["b"] and len(result.failed) == 3
    assert {f.split(":")[0] for f in result.failed} == {"c", "d", "e"}
    assert result.summary()["mean_f1"] == pytest.approx(0.25)
    table = result.to_table()
    assert "mean F1 0.2500" in table and "missing predictions" in table and "failed: e:" in table
    # the misses by kind add up to FN: every cell of the empty predictions is undetected
    assert all(r["merged"] + r["misdrawn"] + r["undetected"] == r["fn"] for r in result.rows)
    assert rows["b"]["undetected"] == rows["b"]["fn"] > 0
    missed = rows["b"]["fn"] + rows["c"]["fn"] + rows["d"]["fn"]  # a is perfect
    assert f"missed: 0 in a merge, 0 found but misdrawn, {missed} undetected; false: 0" in table
    result.write_csv(tmp_path / "scores.csv")
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert lines[0].startswith("name,f1") and len(lines) == 5


def test_evaluate_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        evaluate_folder(tmp_path / "nope", tmp_path)
    with pytest.raises(ValueError, match=r"no \*_label\.tiff"):
        evaluate_folder(tmp_path, tmp_path)
    write_labels(np.zeros((4, 4), np.uint8), tmp_path / "gt" / "a_label.tiff")
    (tmp_path / "pred").mkdir()
    with pytest.raises(ValueError, match=r"pred: no \*_label\.tiff files to score"):
        evaluate_folder(tmp_path / "pred", tmp_path / "gt")


def test_evaluate_folder_scores_label_stacks_in_3d(tmp_path: Path) -> None:
    # Three nuclei through a 6-plane stack: one touches the x face (left out of both sides), two
    # touch the top and bottom planes (kept: a stack cuts every nucleus there). The prediction
    # finds one of the two and, in its place, a cell that overlaps the other by a third.
    truth = np.zeros((6, 40, 40), np.uint32)
    truth[:, 10:20, 10:20] = 1
    truth[1:5, 25:35, 25:35] = 2
    truth[:, 15:25, 0:5] = 3
    pred = truth.copy()
    pred[pred == 2] = 0
    pred[1:5, 25:35, 28:38] = 4  # IoU 70 / 130 with cell 2: a match at 0.5
    pred[1:5, 25:35, 32:40] = 5  # touches the x face: removed, cell 4 keeps 25:35 x 28:32
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    write_labels(truth, tmp_path / "gt" / "stack_label.tiff")
    write_labels(pred, tmp_path / "pred" / "stack_label.tiff")
    row = evaluate_folder(tmp_path / "pred", tmp_path / "gt").rows[0]
    # truth keeps cells 1 and 2; prediction keeps 1 and what is left of 4 (x 28:32: IoU 0.4)
    assert (row["tp"], row["fp"], row["fn"], row["status"]) == (1, 1, 1, "ok")
    # cell 2 is covered by less than half (40 of 400 voxels); cell 4's remnant lies on it
    assert (row["undetected"], row["pieces"]) == (1, 1)
    write_labels(pred[:3], tmp_path / "pred" / "stack_label.tiff")
    result = evaluate_folder(tmp_path / "pred", tmp_path / "gt")
    assert result.failed and "shape" in result.rows[0]["status"]
