from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from flowseg.representation.flows import (
    FLOW_SCALE,
    _bounding_boxes,
    _consecutive_labels,
    _diffuse,
    labels_to_flows,
    labels_to_targets,
)
from flowseg.training.synthetic import random_touching_labels


def diffuse_reference(labels: np.ndarray) -> np.ndarray:
    """Plain numpy flows: per cell, the same heat diffusion on its padded bounding box."""
    flows = np.zeros((2, *labels.shape))
    for k, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        inside = np.pad(labels[box] == k, 1).astype(float)
        ys, xs = np.nonzero(inside)
        my, mx = ys.mean(), xs.mean()
        cy, cx = int(np.round(my)), int(np.round(mx))
        if not inside[cy, cx]:
            i = np.argmin((ys - my) ** 2 + (xs - mx) ** 2)
            cy, cx = ys[i], xs[i]
        heat = np.zeros_like(inside)
        ly, lx = inside.shape
        for _ in range(2 * (ly + lx - 2)):
            heat[cy, cx] += 1
            padded = np.pad(heat, 1)
            total = sum(padded[1 + dy : 1 + dy + ly, 1 + dx : 1 + dx + lx]
                        for dy in (-1, 0, 1) for dx in (-1, 0, 1))
            heat = inside * total / 9
        gy = np.zeros_like(heat)
        gx = np.zeros_like(heat)
        gy[1:-1] = heat[2:] - heat[:-2]
        gx[:, 1:-1] = heat[:, 2:] - heat[:, :-2]
        norm = np.hypot(gy, gx)
        ok = (inside > 0) & (norm > 0)
        sub = (slice(box[0].start - 1, box[0].stop + 1), slice(box[1].start - 1, box[1].stop + 1))
        for c, g in enumerate((gy, gx)):
            plane = np.zeros(inside.shape)
            plane[ok] = g[ok] / norm[ok]
            padded_flows = np.pad(flows[c], 1)
            rows = slice(sub[0].start + 1, sub[0].stop + 1)
            padded_flows[rows, sub[1].start + 1 : sub[1].stop + 1] += plane
            flows[c] = padded_flows[1:-1, 1:-1]
    return flows


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 10_000), st.integers(8, 40), st.integers(8, 40))
def test_diffuse_kernel_matches_numpy_reference(seed: int, h: int, w: int) -> None:
    labels = random_touching_labels((h, w), diameter=(4, 12), seed=seed)
    cells = _consecutive_labels(labels)
    flows = np.zeros((2, h, w), np.float32)
    if cells.max():
        _diffuse(cells, _bounding_boxes(cells, int(cells.max())), flows)
    np.testing.assert_allclose(flows, diffuse_reference(cells), atol=2e-5)


def test_bounding_boxes_match_find_objects() -> None:
    cells = _consecutive_labels(random_touching_labels((120, 90), seed=5))
    boxes = _bounding_boxes(cells, int(cells.max()))
    expected = [(s[0].start, s[0].stop, s[1].start, s[1].stop) for s in ndimage.find_objects(cells)]
    assert boxes.tolist() == [list(b) for b in expected]


def test_unit_norm_inside_zero_outside(synthetic_labels: np.ndarray) -> None:
    flows = labels_to_flows(synthetic_labels)
    assert flows.dtype == np.float32 and flows.shape == (2, *synthetic_labels.shape)
    norm = np.hypot(flows[0], flows[1])
    assert np.all(norm[synthetic_labels == 0] == 0)
    inside = norm[synthetic_labels > 0]
    unit = np.abs(inside - 1) < 1e-5
    # Only a cell's source pixel may have a vanishing gradient (a 1-pixel cell always does).
    assert np.all(unit | (inside == 0))
    assert (~unit).sum() <= len(np.unique(synthetic_labels)) - 1


def test_flows_point_inward_on_a_rectangle() -> None:
    labels = np.zeros((9, 21), np.uint8)
    labels[2:7, 3:18] = 1
    flows = labels_to_flows(labels)
    assert flows[1, 4, 3] > 0.9 and flows[1, 4, 17] < -0.9  # left end points right, right end left
    assert flows[0, 2, 10] > 0.5 and flows[0, 6, 10] < -0.5  # top row points down, bottom up


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.data())
def test_relabelling_ids_leaves_flows_unchanged(seed: int, data: st.DataObject) -> None:
    labels = random_touching_labels((64, 64), diameter=(8, 16), seed=seed)
    perm = data.draw(st.permutations(list(range(1, int(labels.max()) + 1))))
    lut = np.array([0, *[p * 1_000_003 % 4_000_000_000 for p in perm]], np.uint64)
    relabelled = lut[labels].astype(np.uint32)
    np.testing.assert_array_equal(labels_to_flows(labels), labels_to_flows(relabelled))


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 10_000), st.sampled_from([0, 1]))
def test_a_flip_negates_one_component(seed: int, axis: int) -> None:
    labels = random_touching_labels((48, 56), diameter=(6, 20), seed=seed)
    flows = labels_to_flows(labels)
    flipped = labels_to_flows(np.flip(labels, axis=axis))
    expected = np.flip(flows, axis=axis + 1).copy()
    expected[axis] *= -1
    # Mirroring moves a cell's source when its mean rounds on a half pixel; compare cells whose
    # source stays put, which is nearly all of them.
    close = np.abs(flipped - expected).max(axis=0) < 1e-4
    assert close[np.flip(labels, axis=axis) > 0].mean() > 0.9


def test_edge_cases(empty_labels: np.ndarray) -> None:
    assert not labels_to_flows(empty_labels).any()
    one = np.zeros((5, 5), np.uint32)
    one[0, 0] = 7  # a 1-pixel cell in the corner
    assert not labels_to_flows(one).any()
    border = np.zeros((6, 6), np.int64)
    border[:, :3] = 1
    border[:, 3:] = 2  # cells filling the image to every edge
    norm = np.hypot(*labels_to_flows(border))
    assert np.sum(np.abs(norm - 1) < 1e-5) >= border.size - 2
    assert labels_to_flows(np.zeros((0, 4), np.uint8)).shape == (2, 0, 4)


def test_ten_thousand_cells() -> None:
    labels = np.zeros((400, 500), np.uint32)
    labels[::4, ::5] = np.arange(1, 100 * 100 + 1).reshape(100, 100) * 7
    flows = labels_to_flows(labels)
    assert labels.max() == 70_000 and not flows.any()  # 10,000 single-pixel cells, all sources
    grown = ndimage.grey_dilation(labels, size=(3, 3))
    norm = np.hypot(*labels_to_flows(grown))
    assert (norm[grown > 0] > 0.99).mean() > 0.85


def test_targets_hold_flows_and_foreground(synthetic_labels: np.ndarray) -> None:
    targets = labels_to_targets(synthetic_labels)
    np.testing.assert_array_equal(targets[:2], labels_to_flows(synthetic_labels))
    np.testing.assert_array_equal(targets[2], synthetic_labels > 0)
    assert FLOW_SCALE == 5.0


@pytest.mark.parametrize("bad", [np.zeros((2, 3, 4, 5), np.uint8), np.full((4, 4), -1),
                                 np.zeros((4, 4), np.float32)])
def test_bad_labels_are_refused(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="labels"):
        labels_to_flows(bad)


def test_flows_leave_torch_on_the_threads_omp_num_threads_asks_for() -> None:
    # numba's OpenMP layer would set every core at its first parallel kernel (2 on the machine
    # this was found on), and torch shares OpenMP's setting.
    code = ("import numpy as np, torch\n"
            "from flowseg.representation.flows import labels_to_flows\n"
            "labels = np.zeros((64, 64), np.int32); labels[8:30, 8:30] = 1; labels[30:50, 8:40] = 2\n"
            "labels_to_flows(labels)\n"
            "print(torch.get_num_threads())\n")
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    env["OMP_NUM_THREADS"] = "1"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.split()[-1] == "1"
