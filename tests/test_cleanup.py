from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from flowseg.representation.cleanup import (
    fill_holes,
    flow_errors,
    remove_bad_flow_masks,
    remove_masks_by_size,
)
from flowseg.representation.flows import FLOW_SCALE, labels_to_flows
from flowseg.training.synthetic import random_touching_labels

from .references import fill_holes_reference


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000))
def test_fill_holes_matches_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = random_touching_labels((48, 48), diameter=(10, 20), density=0.8, seed=seed)
    labels[rng.random(labels.shape) < 0.05] = 0  # punch holes
    np.testing.assert_array_equal(fill_holes(labels), fill_holes_reference(labels))


def test_fill_holes_spares_a_cell_in_a_hole() -> None:
    labels = np.zeros((30, 30), np.uint32)
    labels[5:25, 5:25] = 1
    labels[10:20, 10:20] = 0
    labels[13:17, 13:17] = 2  # a cell inside the hole of cell 1
    labels[7, 7] = 0  # a plain hole
    filled = fill_holes(labels)
    assert filled[7, 7] == 1 and filled[11, 11] == 0 and filled[14, 14] == 2


def test_flow_errors_match_numpy_and_reject_wrong_flows() -> None:
    labels = random_touching_labels((64, 64), seed=2)
    flows = labels_to_flows(labels) * FLOW_SCALE
    rng = np.random.default_rng(0)
    noisy = flows + rng.normal(0, 2.0, flows.shape).astype(np.float32)
    own = labels_to_flows(labels)
    sq = ((own - noisy / FLOW_SCALE) ** 2).sum(axis=0)
    expected = ndimage.mean(sq, labels, index=np.arange(1, labels.max() + 1))
    np.testing.assert_allclose(flow_errors(labels, noisy), expected, rtol=1e-5)
    assert np.all(flow_errors(labels, flows) < 1e-8)
    bad = flows.copy()
    bad[:, labels == 1] *= -1  # cell 1's flows point outward
    kept = remove_bad_flow_masks(labels, bad, threshold=0.4)
    assert not (kept == 1).any() and np.array_equal(kept[labels != 1], labels[labels != 1])


def test_remove_masks_by_size_keeps_the_ids_in_range() -> None:
    labels = np.zeros((10, 10), np.uint32)
    labels[0, :2], labels[2:5, 2:5], labels[6:, :] = 3, 5, 7  # 2, 9 and 40 pixels
    kept = remove_masks_by_size(labels, low=3, high=30)
    assert set(np.unique(kept)) == {0, 5} and np.array_equal(kept == 5, labels == 5)
