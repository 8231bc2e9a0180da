"""Volumes: 3-D flows and masks against numpy references, and labels -> flows -> masks round trips."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage
from skimage.draw import ellipsoid

from flowseg.io import read_labels
from flowseg.metrics import match_labels
from flowseg.representation.cleanup import fill_holes, flow_errors
from flowseg.representation.flows import FLOW_SCALE, labels_to_flows
from flowseg.representation.masks import (
    GROW_RADIUS,
    REST_DRIFT,
    SEED_RADIUS,
    MaskConfig,
    cluster_endpoints,
    follow_flows,
    masks_from_flows,
)
from flowseg.representation.masks3d import _bin_endpoints_3d, _grow_seeds_3d
from flowseg.training.synthetic import random_touching_labels, random_touching_volume

from .references import euler_reference, fill_holes_reference, grow_reference, round_trip


def diffuse_reference_3d(labels: np.ndarray) -> np.ndarray:
    """Plain numpy 3-D flows: per cell, 7-point heat diffusion on its padded bounding box."""
    flows = np.zeros((3, *labels.shape))
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        inside = np.pad(labels[box] == k, 1).astype(float)
        points = np.argwhere(inside)
        source = tuple(points[np.argmin(((points - points.mean(axis=0)) ** 2).sum(axis=1))])
        heat = np.zeros_like(inside)
        for _ in range(2 * (sum(inside.shape) - 3)):
            heat[source] += 1
            total = heat.copy()
            for axis in range(3):  # the padding is zero, so a roll brings in zeros only
                total += np.roll(heat, 1, axis) + np.roll(heat, -1, axis)
            heat = inside * total / 7
        grad = np.stack([np.roll(heat, -1, a) - np.roll(heat, 1, a) for a in range(3)])
        norm = np.sqrt((grad**2).sum(axis=0))
        ok = (inside > 0) & (norm > 0)
        unit = np.where(ok, grad / np.maximum(norm, 1e-300), 0.0)[(slice(None),) + (slice(1, -1),) * 3]
        flows[(slice(None), *box)] += unit
    return flows


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000), st.integers(3, 12), st.integers(10, 30))
def test_diffuse_3d_kernel_matches_numpy_reference(seed: int, depth: int, side: int) -> None:
    labels = random_touching_volume((depth, side, side), diameter=6, seed=seed)
    np.testing.assert_allclose(labels_to_flows(labels), diffuse_reference_3d(labels), atol=1e-5)


def test_3d_flows_are_unit_inside_zero_outside_and_permutation_free() -> None:
    labels = random_touching_volume((12, 40, 40), diameter=9, seed=3)
    flows = labels_to_flows(labels)
    norm = np.sqrt((flows**2).sum(axis=0))
    assert flows.shape == (3, 12, 40, 40) and np.all(norm[labels == 0] == 0)
    assert (np.abs(norm[labels > 0] - 1) < 1e-5).mean() > 0.99  # all but each cell's source
    shuffled = np.random.default_rng(0).permutation(int(labels.max()) + 1)[1:] + 7
    permuted = np.where(labels > 0, np.concatenate([[0], shuffled])[labels], 0)
    np.testing.assert_array_equal(labels_to_flows(permuted), flows)
    flipped = labels_to_flows(labels[::-1])  # a flip along z negates dz only
    expected = flows[:, ::-1] * np.array([-1, 1, 1])[:, None, None, None]
    # Mirroring moves a cell's source where two voxels tie for nearest its centre: compare cells
    # whose source stays put, which is nearly all of them.
    close = np.abs(flipped - expected).max(axis=0) < 1e-4
    assert close[labels[::-1] > 0].mean() > 0.9


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 30))
def test_euler_3d_kernel_matches_numpy_reference(seed: int, niter: int) -> None:
    rng = np.random.default_rng(seed)
    noise = ndimage.gaussian_filter(rng.normal(0, 1, (3, 9, 17, 19)), (0, 2, 2, 2))
    flows = (noise / noise.std() * FLOW_SCALE).astype(np.float32)
    mask = ndimage.gaussian_filter(rng.random((9, 17, 19)), 2) < 0.55
    np.testing.assert_allclose(follow_flows(flows, mask, niter=niter),
                               euler_reference(flows, mask, niter), atol=3 * REST_DRIFT)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000))
def test_grow_3d_kernel_matches_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    hist = np.zeros((30, 30, 30), np.int32)
    # Sinks at least 2 * GROW_RADIUS + 3 apart (nearer ones make legitimate tie differences).
    grid = np.array(list(itertools.product((7, 22), repeat=3)))
    for centre in grid + rng.integers(-1, 2, grid.shape):
        hist[tuple(centre)] += rng.integers(20, 200)
        near = np.clip(rng.normal(centre, 1.2, (25, 3)).round().astype(int), 0, 29)
        np.add.at(hist, tuple(near.T), 1)
    np.add.at(hist, tuple(rng.integers(0, 30, (6, 3)).T), 1)  # lone end points
    owner = _grow_seeds_3d(hist, SEED_RADIUS, GROW_RADIUS, np.empty(hist.size, np.int32),
                           np.empty(hist.size, np.uint8))
    np.testing.assert_array_equal(owner, grow_reference(hist))


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_binning_3d_kernel_matches_numpy_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shape = (7, 11, 13)
    ends = rng.uniform(-3, 15, (3, *shape)).astype(np.float32)
    ends[:, 0, 0, :3] = [[2.5], [3.5], [4.5]]  # halves round to even, as np.rint does
    mask = rng.random(shape) < 0.6
    bins = np.empty(shape, np.int32)
    hist = np.zeros(shape, np.int32)
    _bin_endpoints_3d(ends, mask, bins, hist)
    index = [np.clip(np.rint(ends[d]), 0, n - 1).astype(int) for d, n in enumerate(shape)]
    expected = np.where(mask, np.ravel_multi_index(index, shape), -1)
    np.testing.assert_array_equal(bins, expected)
    np.testing.assert_array_equal(hist.ravel(), np.bincount(expected[mask], minlength=mask.size))


def test_3d_binning_by_clustering_end_points() -> None:
    mask = np.ones((6, 10, 10), bool)
    ends = np.zeros((3, 6, 10, 10), np.float32)
    ends[:, :, :, :5] = np.array([2.4, 3.0, 2.0])[:, None, None, None]  # rounds to one voxel
    ends[:, :, :, 5:] = np.array([2.0, 3.0, 8.6])[:, None, None, None]  # 7 voxels away
    labels = cluster_endpoints(ends, mask)
    assert labels.max() == 2 and len(np.unique(labels[..., :5])) == 1
    assert len(np.unique(labels[..., 5:])) == 1 and labels[0, 0, 0] != labels[0, 0, 9]


@settings(max_examples=10, deadline=None)
@given(st.integers(0, 10_000))
def test_fill_holes_in_3d_matches_numpy_reference(seed: int) -> None:
    labels = random_touching_volume((12, 24, 24), diameter=8, seed=seed)
    labels[np.random.default_rng(seed).random(labels.shape) < 0.05] = 0  # punch holes
    np.testing.assert_array_equal(fill_holes(labels), fill_holes_reference(labels))


def test_fill_holes_in_3d_spares_a_cell_inside_a_cell() -> None:
    labels = np.zeros((12, 12, 12), np.uint32)
    labels[1:11, 1:11, 1:11] = 1
    labels[3:9, 3:9, 3:9] = 0
    labels[5:7, 5:7, 5:7] = 2
    labels[2, 2, 2] = 0
    filled = fill_holes(labels)
    assert filled[2, 2, 2] == 1 and filled[4, 4, 4] == 0 and filled[5, 5, 5] == 2


def shapes_volume() -> np.ndarray:
    """Touching ball, ellipsoid and elongated cell, a lone 1-voxel cell, and packed small cells."""
    labels = np.zeros((24, 64, 96), np.uint32)
    for k, (radii, corner) in enumerate([((7, 7, 7), (2, 4, 4)), ((5, 9, 13), (4, 4, 18)),
                                         ((3, 4, 22), (6, 24, 10))], start=1):
        body = ellipsoid(*radii)[1:-1, 1:-1, 1:-1]
        view = labels[tuple(slice(c, c + n) for c, n in zip(corner, body.shape, strict=True))]
        view[body & (view == 0)] = k
    labels[22, 2, 2] = 4
    packed = random_touching_volume((14, 30, 40), diameter=7, seed=5)
    labels[8:22, 34:64, 50:90] = np.where(packed > 0, packed + 4, 0)
    return labels


def test_round_trip_on_touching_3d_shapes() -> None:
    labels = shapes_volume()
    masks = round_trip(labels, MaskConfig(min_size=0))
    scores = match_labels(labels, masks)
    assert scores.f1 >= 0.995 and scores.mean_iou >= 0.98, scores
    assert masks[22, 2, 2] > 0 and masks.dtype == np.uint32 and masks.shape == labels.shape
    assert round_trip(labels)[22, 2, 2] == 0  # min_size counts voxels


def test_round_trip_on_the_real_sub_volume(shared_volume: tuple) -> None:
    labels = read_labels(shared_volume[1], ndim=3)
    scores = match_labels(labels, round_trip(labels))
    assert labels.ndim == 3 and scores.f1 >= 0.995 and scores.mean_iou >= 0.98, scores


def test_one_plane_volume_gives_the_2d_answer() -> None:
    labels = random_touching_labels((80, 90), diameter=(10, 20), seed=2)
    flows = labels_to_flows(labels) * FLOW_SCALE
    cellprob = np.where(labels > 0, 4.0, -4.0)
    volume_flows = np.concatenate([np.zeros((1, 1, 80, 90)), flows[:, None]])
    np.testing.assert_array_equal(masks_from_flows(volume_flows, cellprob[None])[0],
                                  masks_from_flows(flows, cellprob))


def test_3d_flow_errors_and_bad_shapes() -> None:
    labels = random_touching_volume((8, 24, 24), diameter=7, seed=1)
    flows = labels_to_flows(labels) * FLOW_SCALE
    assert np.all(flow_errors(labels, flows) < 1e-10)
    assert np.all(flow_errors(labels, -flows)[np.bincount(labels.ravel())[1:] > 1] > 1)
    with pytest.raises(ValueError, match=r"\(3, Z, Y, X\)"):
        masks_from_flows(flows[:2], np.zeros(labels.shape))
    with pytest.raises(ValueError, match=r"\(3, Z, Y, X\)"):
        follow_flows(flows, np.zeros((8, 24, 23), bool))
