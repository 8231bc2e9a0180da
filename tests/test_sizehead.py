from __future__ import annotations

import math

import numpy as np
import pytest

from flowseg.inference.sizehead import (
    HEAD_CROP,
    fit_size_head,
    head_diameter,
    head_features,
    predict_diameter,
)
from flowseg.model.net import FlowUNet, NetConfig


def test_fit_recovers_a_log_linear_size_from_noisy_features() -> None:
    # Features that carry log(diameter) plus noise, and distractors: the fitted head reads
    # held-out diameters to within a few percent.
    rng = np.random.default_rng(1)
    size = np.exp(rng.uniform(np.log(8), np.log(150), 400))
    features = np.c_[np.log(size) * 3 + rng.normal(0, 0.05, 400), rng.normal(size=(400, 20))]
    head = fit_size_head(features[:300], size[:300])
    read = np.array([predict_diameter(head, f) for f in features[300:]])
    assert np.max(np.abs(np.log(read / size[300:]))) < 0.1
    assert len(head["weights"]) == 21 and math.isfinite(head["bias"])


@pytest.mark.parametrize(("features", "diameters", "message"), [
    (np.ones((4, 3)), np.ones(5), "features must be"),
    (np.ones((4, 3)), np.array([1.0, 2.0, 0.0, 3.0]), "positive"),
    (np.ones((1, 3)), np.ones(1), "N >= 2"),
])
def test_fit_rejects_bad_input(features: np.ndarray, diameters: np.ndarray,
                               message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fit_size_head(features, diameters)


def test_features_pool_every_encoder_channel_over_the_central_crop() -> None:
    net = FlowUNet(NetConfig(widths=(8, 16, 32))).eval()
    image = np.random.default_rng(0).random((3, HEAD_CROP + 100, 70), dtype=np.float32)
    features = head_features(net, image)
    assert features.shape == (8 + 16 + 32,) and features.dtype == np.float32
    # Only the central HEAD_CROP rows count: changing rows outside it changes nothing.
    changed = image.copy()
    changed[:, :50] = 0
    assert np.array_equal(head_features(net, changed), features)


def test_head_diameter_needs_a_head_that_fits_the_network() -> None:
    net = FlowUNet(NetConfig(widths=(8, 16, 32))).eval()
    image = np.zeros((3, 64, 64), np.float32)
    assert head_diameter(net, image) is None  # no head
    count = 8 + 16 + 32
    net.metadata["size_head"] = {"mean": [0.0] * count, "scale": [1.0] * count,
                                 "weights": [0.0] * count, "bias": math.log(42.0)}
    assert head_diameter(net, image) == pytest.approx(42.0)
    net.metadata["size_head"] = {"mean": [0.0] * 3, "scale": [1.0] * 3, "weights": [0.0] * 3,
                                 "bias": 1.0}
    assert head_diameter(net, image) is None  # fitted on another network's features


@pytest.mark.parametrize("head", [
    {"weights": [0.0] * 56},  # fields missing
    {"mean": [0.0] * 5, "scale": [1.0] * 56, "weights": [0.0] * 56, "bias": 1.0},
    {"mean": None, "scale": [1.0] * 56, "weights": [0.0] * 56, "bias": 1.0},
    {"mean": [0.0] * 56, "scale": [1.0] * 56, "weights": [0.0] * 56, "bias": 1e6},  # inf
])
def test_a_malformed_head_is_set_aside_not_a_crash(head: dict,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    net = FlowUNet(NetConfig(widths=(8, 16, 32))).eval()
    net.metadata["size_head"] = head
    assert head_diameter(net, np.zeros((3, 64, 64), np.float32)) is None
    assert "size head" in caplog.text
