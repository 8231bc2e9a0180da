"""The 3-class baselines of benchmarks/compare_representations.py: their targets and instances."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from baselines.three_class import (
    BOUNDARY,
    INTERIOR,
    class_loss,
    create_interior_map,
    grown_instances,
    one_pixel_boundary_classes,
    perfect_logits,
    seed_instances,
)

from flowseg.metrics import match_labels
from flowseg.training.synthetic import random_touching_labels


def seed_example() -> tuple[np.ndarray, np.ndarray]:
    """Two touching 9 x 9 cells, a 7 x 7 cell and a 2 x 2 speck; the seed's classes, by hand.

    The seed's boundary is every cell pixel next (4-neighbours) to another id or the background,
    thickened by one pixel in the 4 directions (into the cell and into the background); what is
    left of a cell is interior, unless that piece is under 16 pixels.
    """
    labels = np.zeros((15, 30), np.uint32)
    labels[1:10, 1:10] = 1  # rows 1-9, cols 1-9
    labels[1:10, 10:19] = 2  # rows 1-9, cols 10-18: touches cell 1 along cols 9 | 10
    labels[1:8, 21:28] = 4  # rows 1-7, cols 21-27
    labels[12:14, 3:5] = 3  # the speck: rows 12-13, cols 3-4
    expected = np.zeros((15, 30), np.uint8)
    # Cells 1 and 2: a frame two pixels thick inside, one pixel outside (no corners outside,
    # which are diagonal to the cells), and the 5 x 5 interior of each.
    expected[0, 1:19] = 2
    expected[10, 1:19] = 2
    expected[1:10, 0] = 2
    expected[1:10, 19] = 2
    expected[1:10, 1:19] = 2
    expected[3:8, 3:8] = 1  # cell 1: rows 3-7, cols 3-7 (25 pixels)
    expected[3:8, 12:17] = 1  # cell 2: rows 3-7, cols 12-16 (25 pixels)
    # Cell 4: the same frame; its 3 x 3 interior (9 pixels, under 16) becomes background.
    expected[0, 21:28] = 2
    expected[8, 21:28] = 2
    expected[1:8, 20] = 2
    expected[1:8, 28] = 2
    expected[1:8, 21:28] = 2
    expected[3:6, 23:26] = 0
    # The speck is all boundary, one pixel wider in the 4 directions.
    expected[12:14, 3:5] = 2
    expected[11, 3:5] = 2
    expected[14, 3:5] = 2
    expected[12:14, 2] = 2
    expected[12:14, 5] = 2
    return labels, expected


def test_seed_targets_match_the_hand_written_classes() -> None:
    labels, expected = seed_example()
    classes = create_interior_map(labels)
    assert classes.shape == (1, 15, 30) and classes.dtype == np.float32
    np.testing.assert_array_equal(classes[0].astype(np.uint8), expected)


def test_seed_instances_are_8_connected_interiors_not_grown() -> None:
    interior = np.zeros((20, 20), np.uint8)
    interior[1:6, 1:6] = 1  # 25 pixels
    interior[6:11, 6:11] = 1  # touches the first at one corner only: 8-connected, one instance
    interior[3, 3] = 0  # a hole: filled
    interior[14:17, 14:17] = 1  # 9 pixels: under 16, removed
    interior[13:19, 1:7] = 1  # 36 pixels, alone
    logits = 10.0 * np.eye(3, dtype=np.float32)[interior].transpose(2, 0, 1)
    labels = seed_instances(logits)
    assert labels.max() == 2 and labels[1, 1] == labels[10, 10] == labels[3, 3] > 0
    assert labels[15, 15] == 0 and labels[13, 1] > 0
    assert (labels > 0).sum() == 25 + 25 + 36  # nothing grown back over the boundary


def test_thin_variant_separates_touching_cells() -> None:
    labels = np.zeros((12, 12), np.uint32)
    labels[2:10, 2:6], labels[2:10, 6:10] = 1, 2
    classes = one_pixel_boundary_classes(labels)[0]
    assert classes.shape == (12, 12) and classes[0, 0] == 0
    # the shared border is boundary on both sides; the cores are interior
    assert (classes[3:9, 5] == BOUNDARY).all() and (classes[3:9, 6] == BOUNDARY).all()
    assert classes[5, 3] == INTERIOR and classes[5, 8] == INTERIOR


def test_perfect_targets_give_back_the_cells() -> None:
    labels = random_touching_labels((256, 256), density=1.0, seed=3)
    pred = grown_instances(perfect_logits(one_pixel_boundary_classes(labels)))
    scores = match_labels(labels, pred)
    assert scores.f1 > 0.99 and scores.mean_iou > 0.99
    empty = np.zeros((32, 32), np.uint32)
    assert grown_instances(perfect_logits(one_pixel_boundary_classes(empty))).max() == 0
    # The seed's instances are the interiors only: every cell found, each about a rim short.
    seed = match_labels(labels, seed_instances(perfect_logits(create_interior_map(labels))))
    assert seed.f1 > 0.9 and seed.mean_iou < scores.mean_iou


def test_loss_is_small_for_the_true_classes() -> None:
    labels = random_touching_labels((64, 64), seed=1)
    for classes in (one_pixel_boundary_classes(labels), create_interior_map(labels)):
        target = torch.from_numpy(classes)[None]
        good = class_loss(torch.from_numpy(perfect_logits(classes))[None], target)
        bad = class_loss(torch.zeros(1, 3, 64, 64), target)
        assert float(good) < 1e-3 < float(bad)
