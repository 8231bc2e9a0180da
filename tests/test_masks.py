from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from flowseg.io import read_labels
from flowseg.metrics import challenge_scores, match_labels
from flowseg.representation.flows import FLOW_SCALE, labels_to_flows
from flowseg.representation.masks import (
    GROW_RADIUS,
    REST_DRIFT,
    SEED_RADIUS,
    MaskConfig,
    _bin_endpoints,
    _grow_seeds,
    cluster_endpoints,
    follow_flows,
    masks_from_flows,
)
from flowseg.training.synthetic import random_touching_labels

from .conftest import ring_cell
from .references import euler_reference, grow_reference, round_trip


def test_round_trip_recovers_synthetic_cells(synthetic_labels: np.ndarray) -> None:
    masks = round_trip(synthetic_labels, MaskConfig(min_size=0))
    scores = match_labels(synthetic_labels, masks)
    assert scores.f1 >= 0.995 and scores.mean_iou >= 0.98, scores
    assert masks.dtype == np.uint32
    assert np.array_equal(np.unique(masks), np.arange(masks.max() + 1))


def test_ring_cell_loses_only_its_saddle() -> None:
    labels = ring_cell()
    assert round_trip(labels, MaskConfig(min_size=0)).max() == 3  # ring, inner cell, saddle bit
    masks = round_trip(labels)  # the default min_size drops the few pixels stuck at the saddle
    scores = match_labels(labels, masks)
    assert scores.f1 == 1.0 and scores.mean_iou >= 0.98, scores


def test_round_trip_keeps_a_one_pixel_cell() -> None:
    labels = np.zeros((30, 30), np.uint32)
    labels[5:20, 5:20] = 4
    labels[25, 25] = 9
    masks = round_trip(labels, MaskConfig(min_size=0))
    assert masks[25, 25] > 0 and masks.max() == 2
    assert round_trip(labels)[25, 25] == 0  # the default min_size drops it


def test_round_trip_on_real_samples(shared_pair: tuple) -> None:
    labels = read_labels(shared_pair[1])
    scores = challenge_scores(labels, round_trip(labels))
    assert scores.f1 >= 0.995 and scores.mean_iou >= 0.98, scores


def test_dense_round_trip_at_challenge_scale() -> None:
    labels = random_touching_labels((768, 768), seed=11)
    scores = challenge_scores(labels, round_trip(labels))
    assert labels.max() > 700 and scores.f1 >= 0.995 and scores.mean_iou >= 0.98, scores


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 40))
def test_euler_kernel_matches_numpy_reference(seed: int, niter: int) -> None:
    rng = np.random.default_rng(seed)
    # A smooth field: white noise would make the paths chaotic, so that rounding alone diverges.
    noise = ndimage.gaussian_filter(rng.normal(0, 1, (2, 23, 31)), (0, 3, 3))
    flows = (noise / noise.std() * FLOW_SCALE).astype(np.float32)
    mask = ndimage.gaussian_filter(rng.random((23, 31)), 2) < 0.55
    # float32 rounding may stop a point one step earlier in one of the two: at most a few
    # REST_DRIFT apart.
    np.testing.assert_allclose(follow_flows(flows, mask, niter=niter),
                               euler_reference(flows, mask, niter), atol=3 * REST_DRIFT)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_grow_kernel_matches_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hist = np.zeros((48, 48), np.int32)
    # Sinks on a jittered grid, at least 2 * GROW_RADIUS + 3 apart: nearer ones make ties whose
    # order may legitimately differ between a breadth-first search and a distance map.
    grid = np.array([(y, x) for y in (10, 34) for x in (10, 34)])
    centres = grid + rng.integers(-3, 4, grid.shape)
    for cy, cx in centres:  # each a peak with a spread of stragglers
        hist[cy, cx] += rng.integers(20, 200)
        near = np.clip(rng.normal((cy, cx), 1.5, (25, 2)).round().astype(int), 0, 47)
        np.add.at(hist, tuple(near.T), 1)
    stray = rng.integers(0, 48, (6, 2))  # lone end points far from any sink
    np.add.at(hist, tuple(stray.T), 1)
    owner = _grow_seeds(hist, SEED_RADIUS, GROW_RADIUS, np.empty(hist.size, np.int32),
                        np.empty(hist.size, np.uint8))
    np.testing.assert_array_equal(owner, grow_reference(hist))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000))
def test_binning_kernel_matches_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ends = rng.uniform(-3, 40, (2, 30, 37)).astype(np.float32)
    ends[:, 0, :4] = [[2.5], [3.5]]  # halves round to even, as np.rint does
    mask = rng.random((30, 37)) < 0.6
    bins = np.empty((30, 37), np.int32)
    hist = np.zeros((30, 37), np.int32)
    _bin_endpoints(ends, mask, bins, hist)
    by = np.clip(np.rint(ends[0]), 0, 29).astype(int)
    bx = np.clip(np.rint(ends[1]), 0, 36).astype(int)
    expected = np.where(mask, by * 37 + bx, -1)
    np.testing.assert_array_equal(bins, expected)
    np.testing.assert_array_equal(hist.ravel(), np.bincount(expected[mask], minlength=30 * 37))


def test_cluster_merges_plateaus_and_splits_distant_sinks() -> None:
    mask = np.ones((20, 20), bool)
    ends = np.zeros((2, 20, 20), np.float32)
    ends[:, :, :10] = np.array([5.0, 5.0])[:, None, None]  # left half ends at (5, 5)
    ends[:, :10, 10:] = np.array([5.0, 15.0])[:, None, None]  # right half at (5, 15) and (5, 16):
    ends[:, 10:, 10:] = np.array([5.0, 16.0])[:, None, None]  # neighbouring bins, one cell
    labels = cluster_endpoints(ends, mask)
    assert labels.max() == 2 and len(np.unique(labels[:, :10])) == 1
    assert len(np.unique(labels[:, 10:])) == 1


def test_config_switches() -> None:
    labels = np.zeros((40, 40), np.uint32)
    labels[2:38, 2:38] = 1  # 81% of the image
    assert round_trip(labels).max() == 0
    assert round_trip(labels, MaskConfig(max_size_fraction=1.0)).max() == 1
    flows = labels_to_flows(labels) * FLOW_SCALE
    flows[:, labels > 0] *= -1
    cellprob = np.where(labels > 0, 1.0, -1.0)
    off = MaskConfig(flow_threshold=0, max_size_fraction=1.0, min_size=0)
    assert masks_from_flows(flows, cellprob, config=off).max() > 0
    on = MaskConfig(max_size_fraction=1.0, min_size=0)
    assert masks_from_flows(flows, cellprob, config=on).max() == 0
    none = masks_from_flows(flows, cellprob, config=MaskConfig(cellprob_threshold=2.0))
    assert none.shape == labels.shape and none.max() == 0


@pytest.mark.parametrize(("flows", "cellprob"), [
    (np.zeros((2, 4, 4)), np.zeros((4, 5))),
    (np.zeros((3, 4, 4)), np.zeros((4, 4))),
    (np.full((2, 4, 4), np.nan), np.zeros((4, 4))),
])
def test_bad_inputs_are_refused(flows: np.ndarray, cellprob: np.ndarray) -> None:
    with pytest.raises(ValueError, match="flows"):
        masks_from_flows(flows, cellprob)
