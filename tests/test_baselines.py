"""The 3-class baseline of benchmarks/compare_representations.py: its targets and its instances."""

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
    classes_to_instances,
    labels_to_classes,
    perfect_logits,
)

from flowseg.metrics import match_labels
from flowseg.synthetic import random_touching_labels


def test_classes_separate_touching_cells() -> None:
    labels = np.zeros((12, 12), np.uint32)
    labels[2:10, 2:6], labels[2:10, 6:10] = 1, 2
    classes = labels_to_classes(labels)[0]
    assert classes.shape == (12, 12) and classes[0, 0] == 0
    # the shared border is boundary on both sides; the cores are interior
    assert (classes[3:9, 5] == BOUNDARY).all() and (classes[3:9, 6] == BOUNDARY).all()
    assert classes[5, 3] == INTERIOR and classes[5, 8] == INTERIOR


def test_perfect_targets_give_back_the_cells() -> None:
    labels = random_touching_labels((256, 256), density=1.0, seed=3)
    pred = classes_to_instances(perfect_logits(labels))
    scores = match_labels(labels, pred)
    assert scores.f1 > 0.99 and scores.mean_iou > 0.99
    assert classes_to_instances(perfect_logits(np.zeros((32, 32), np.uint32))).max() == 0


def test_loss_is_small_for_the_true_classes() -> None:
    labels = random_touching_labels((64, 64), seed=1)
    target = torch.from_numpy(labels_to_classes(labels))[None]
    good = class_loss(torch.from_numpy(perfect_logits(labels))[None], target)
    bad = class_loss(torch.zeros(1, 3, 64, 64), target)
    assert float(good) < 1e-3 < float(bad)
