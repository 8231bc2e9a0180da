from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment

from flowseg.metrics import (
    PATCH,
    Errors,
    Scores,
    challenge_scores,
    challenge_scores_and_errors,
    label_overlap,
    match_labels,
    merges_and_splits,
    remove_border_cells,
    scores_and_errors,
)
from flowseg.training.synthetic import random_touching_labels


def test_hand_computed_scores() -> None:
    true = np.zeros((10, 10), np.uint8)
    true[2:4, 2:6] = 1  # 8 px
    true[6:8, 2:4] = 2  # 4 px
    pred = np.zeros_like(true)
    pred[2:4, 2:5] = 7  # 6 px inside cell 1: IoU 6/8
    pred[6:8, 3:6] = 9  # 2 px shared with cell 2: IoU 2/(4+6-2) = 0.25
    pred[0, 9] = 4
    s = match_labels(true, pred)
    assert (s.tp, s.fp, s.fn) == (1, 2, 1)
    assert s.precision == pytest.approx(1 / 3) and s.recall == pytest.approx(1 / 2)
    assert s.f1 == pytest.approx(2 * 1 / (2 + 2 + 1)) and s.mean_iou == pytest.approx(0.75)
    assert match_labels(true, pred, threshold=0.8).tp == 0


def test_exactly_half_counts_and_one_to_one() -> None:
    true = np.array([[1, 1, 0, 0]])
    pred = np.array([[2, 3, 0, 0]])  # two predictions with IoU 0.5 each against one cell
    s = match_labels(true, pred)
    assert (s.tp, s.fp, s.fn) == (1, 1, 0) and s.mean_iou == 0.5


def test_empty_cases() -> None:
    empty = np.zeros((6, 6), np.uint8)
    cells = empty.copy()
    cells[2:4, 2:4] = 1
    assert match_labels(empty, empty).f1 == 1.0
    s = match_labels(cells, empty)
    assert (s.tp, s.fp, s.fn, s.f1, s.precision, s.recall) == (0, 0, 1, 0.0, 0.0, 0.0)
    assert math.isnan(s.mean_iou)
    s = match_labels(empty, cells)
    assert (s.fp, s.f1, s.precision, s.recall) == (1, 0.0, 0.0, 0.0)


def test_border_cells_removed_from_both_sides() -> None:
    # The band is rows and columns 0 and 1 (the challenge zeroes bd[2:H-2, 2:W-2]).
    true = np.zeros((20, 20), np.uint16)
    true[1:5, 5:9] = 3  # touches the band at row 1: removed
    true[8:12, 8:12] = 5
    pred = np.zeros_like(true)
    pred[2:6, 5:9] = 1  # starts at row 2, outside the band: kept, and now unmatched
    pred[8:12, 8:12] = 2
    pred[15:20, 15:18] = 6  # touches the bottom edge: removed
    assert remove_border_cells(true).max() == 1 and remove_border_cells(pred).max() == 2
    s = challenge_scores(true, pred)
    assert (s.tp, s.fp, s.fn) == (1, 1, 0)
    assert remove_border_cells(true, width=0).max() == 2


def test_label_overlap_kernel_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 7, (30, 40))
    y = rng.integers(0, 5, (30, 40))
    expected = np.zeros((7, 5), np.int64)
    np.add.at(expected, (x.ravel(), y.ravel()), 1)
    np.testing.assert_array_equal(label_overlap(x, y), expected)


def dense_hungarian(true: np.ndarray, pred: np.ndarray, threshold: float) -> tuple[int, float]:
    """The challenge's own recipe: a dense IoU matrix and one Hungarian assignment."""
    overlap = label_overlap(true, pred).astype(float)
    union = overlap.sum(1, keepdims=True) + overlap.sum(0, keepdims=True) - overlap
    iou = np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)[1:, 1:]
    n = min(iou.shape)
    cost = -(iou >= threshold).astype(float) - iou / (2 * n)
    r, c = linear_sum_assignment(cost)
    ok = iou[r, c] >= threshold
    return int(ok.sum()), float(iou[r, c][ok].sum())


@settings(max_examples=25)
@given(st.integers(0, 10_000), st.sampled_from([0.3, 0.5, 0.75]))
def test_sparse_matching_equals_dense_hungarian(seed: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    true = random_touching_labels((60, 60), diameter=(6, 14), seed=seed)
    shift = np.roll(true, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
    pred = random_touching_labels((60, 60), diameter=(6, 14), seed=seed + 1)
    pred = np.where(rng.random((60, 60)) < 0.5, shift, pred)  # a messy partial match
    tp, iou_sum = dense_hungarian(true, pred, threshold)
    s = match_labels(true, pred, threshold=threshold)
    assert s.tp == tp
    # Below 0.5 the dense cost also rewards sub-threshold pairs, which can cost matched IoU; ours
    # maximises the matched IoU itself. From 0.5 up, matches are unique and the two agree.
    assert s.iou_sum >= iou_sum - 1e-9
    if threshold >= 0.5:
        assert s.iou_sum == pytest.approx(iou_sum)


def test_large_images_are_scored_in_patches() -> None:
    # 5001 x 5000 >= 25 MP: patches of 2000, the last ones padded. A cell across a patch border is
    # removed in both patches (it touches each patch's band), so it is counted in neither.
    true = np.zeros((5001, 5000), np.uint32)
    true[100:120, 100:120] = 1
    true[PATCH - 10 : PATCH + 10, 500:520] = 2  # crosses the first horizontal patch border
    true[5000, 4000] = 3  # in the padded last patch row
    pred = true.copy()
    pred[100:120, 100:110] = 0  # IoU 0.5 still counts
    s = challenge_scores(true, pred)
    assert (s.tp, s.fp, s.fn) == (1, 0, 0)


def test_scores_add_up() -> None:
    assert Scores(1, 2, 3, 0.5) + Scores(1, 0, 0, 0.75) == Scores(2, 2, 3, 1.25)


def test_merges_and_splits() -> None:
    true = np.zeros((20, 40), np.uint32)
    true[2:10, 2:10], true[2:10, 10:18], true[12:18, 2:30] = 1, 2, 3
    pred = np.zeros_like(true)
    pred[2:10, 2:18] = 9  # merges cells 1 and 2
    pred[12:18, 2:15], pred[12:18, 15:30] = 4, 5  # split cell 3 in two
    assert merges_and_splits(true, pred) == (1, 1)
    assert merges_and_splits(true, true) == (0, 0)
    assert merges_and_splits(true, np.zeros_like(true)) == (0, 0)
    # a sliver of a neighbour does not make a merge
    pred2 = true.copy()
    pred2[2:10, 10:12] = 1
    assert merges_and_splits(true, pred2) == (0, 0)
    with pytest.raises(ValueError, match="differ in shape"):
        merges_and_splits(true, true[1:])


def test_errors_by_kind_by_hand() -> None:
    true = np.zeros((20, 40), np.uint32)
    true[2:10, 2:10], true[2:10, 10:14], true[12:18, 2:30] = 1, 2, 3
    true[2:6, 30:34] = 4
    pred = np.zeros_like(true)
    pred[2:10, 2:14] = 9  # matches cell 1 (IoU 0.67) and holds all of cell 2: merged
    pred[12:18, 2:10], pred[12:18, 10:20], pred[12:18, 20:30] = 5, 6, 7  # cell 3 in three pieces
    pred[2:4, 30:32] = 8  # a quarter of cell 4: undetected, and a piece
    pred[15:19, 34:38] = 10  # on background
    assert scores_and_errors(true, pred)[1] == Errors(merged=1, misdrawn=1, undetected=1,
                                                     pieces=4, spurious=1)
    assert scores_and_errors(true, true)[1] == Errors()
    assert scores_and_errors(true, np.zeros_like(true))[1] == Errors(undetected=4)
    assert Errors(1, 2, 3, 4, 5) + Errors(1, 1, 1, 1, 1) == Errors(2, 3, 4, 5, 6)
    with pytest.raises(ValueError, match="IoU threshold"):
        scores_and_errors(true, pred, threshold=0)


@settings(max_examples=25)
@given(st.integers(0, 10_000), st.sampled_from([0.5, 0.75]))
def test_errors_by_kind_add_up_to_misses_and_false_objects(seed: int, threshold: float) -> None:
    rng = np.random.default_rng(seed)
    true = random_touching_labels((60, 60), diameter=(6, 14), seed=seed)
    shift = np.roll(true, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
    pred = random_touching_labels((60, 60), diameter=(6, 14), seed=seed + 1)
    pred = np.where(rng.random((60, 60)) < 0.5, shift, pred)
    s, e = challenge_scores_and_errors(true, pred, threshold=threshold)
    assert s == challenge_scores(true, pred, threshold=threshold)
    assert e.merged + e.misdrawn + e.undetected == s.fn
    assert e.pieces + e.spurious == s.fp


def test_challenge_errors_by_kind_in_patches() -> None:
    true = np.zeros((5001, 5000), np.uint32)
    true[100:120, 100:120], true[100:120, 120:130] = 1, 2
    true[PATCH - 10 : PATCH + 10, 500:520] = 3  # crosses a patch border: scored in neither
    pred = np.zeros_like(true)
    pred[100:120, 100:130] = 1  # matches cell 1 (IoU 0.67) and merges cell 2
    pred[3000:3010, 3000:3010] = 2  # on background, in another patch
    assert challenge_scores_and_errors(true, pred)[1] == Errors(merged=1, spurious=1)
