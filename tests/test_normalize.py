from __future__ import annotations

import numpy as np
import pytest

from flowseg.inference.normalize import (
    PERCENTILE_SAMPLE,
    PreparedView,
    ResizedView,
    normalize_image,
    prepare_image,
    resize_to,
    resize_volume_to,
    to_three_channels,
)


def test_percentiles_map_to_zero_and_one() -> None:
    rng = np.random.default_rng(0)
    image = np.stack([rng.normal(100, 10, (64, 64)), rng.uniform(0, 65535, (64, 64))])
    out = normalize_image(image)
    for channel in out:
        low, high = np.percentile(channel, [1, 99])
        assert abs(low) < 1e-5 and abs(high - 1) < 1e-5
    assert out.dtype == np.float32 and out.min() < 0 and out.max() > 1  # not clipped


def test_constant_channel_becomes_zero_and_input_is_untouched() -> None:
    image = np.stack([np.full((8, 8), 7.0), np.arange(64.0).reshape(8, 8)])
    before = image.copy()
    out = normalize_image(image)
    assert not out[0].any() and out[1].max() > 0.9
    np.testing.assert_array_equal(image, before)


def test_large_channels_use_a_subsample_close_to_exact() -> None:
    rng = np.random.default_rng(1)
    image = rng.gamma(2.0, 100.0, (1, 2 * PERCENTILE_SAMPLE // 1024 + 7, 1024)).astype(np.float32)
    low, high = np.percentile(image, [1, 99])
    exact = (image - low) / (high - low)
    assert np.abs(normalize_image(image) - exact).max() < 0.01


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_refused(bad: float) -> None:
    image = np.ones((1, 4, 4))
    image[0, 1, 1] = bad
    with pytest.raises(ValueError, match="NaN or infinite"):
        normalize_image(image)


def test_bad_shapes_and_percentiles() -> None:
    with pytest.raises(ValueError, match="shape"):
        normalize_image(np.ones((4, 4)))
    with pytest.raises(ValueError, match="percentiles"):
        normalize_image(np.ones((1, 4, 4)), lower=50, upper=10)


def test_three_channel_mapping() -> None:
    a = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    gray = to_three_channels(a[:1])
    assert gray.shape == (3, 3, 4) and all(np.array_equal(c, a[0]) for c in gray)
    two = to_three_channels(a)
    assert np.array_equal(two[:2], a) and not two[2].any()
    rgb = np.random.default_rng(0).random((3, 3, 4)).astype(np.float32)
    assert to_three_channels(rgb) is rgb or np.array_equal(to_three_channels(rgb), rgb)
    five = np.zeros((5, 2, 2), np.float32)
    five[3, 0, 0] = 9  # folded into output 0, by maximum
    five[4, 1, 1] = 4  # folded into output 1
    out = to_three_channels(five)
    assert out[0, 0, 0] == 9 and out[1, 1, 1] == 4 and not out[2].any()
    with pytest.raises(ValueError, match="C >= 1"):
        to_three_channels(np.zeros((0, 2, 2)))


def test_prepare_image() -> None:
    image = np.random.default_rng(2).uniform(0, 4095, (1, 32, 32))
    out = prepare_image(image)
    assert out.shape == (3, 32, 32) and abs(np.percentile(out[2], 99) - 1) < 1e-5


@pytest.mark.parametrize("channels", [1, 2, 3, 5])
def test_prepared_view_matches_prepare_image(channels: int) -> None:
    from flowseg.inference.normalize import PreparedView

    image = np.random.default_rng(channels).integers(0, 4000, (channels, 50, 70)).astype(np.uint16)
    view = PreparedView(image)
    whole = prepare_image(image)
    assert view.shape == whole.shape
    np.testing.assert_allclose(view[:, 10:30, 5:60], whole[:, 10:30, 5:60], atol=1e-5)
    np.testing.assert_allclose(view[:, :, :], whole, atol=1e-5)


@pytest.mark.parametrize("shape", [(7, 9), (40, 13), (1, 1), (64, 64), (23, 100)])
def test_resize_matches_torch_bilinear(shape: tuple[int, int]) -> None:
    torch = pytest.importorskip("torch")
    image = np.random.default_rng(0).normal(size=(3, 23, 31)).astype(np.float32)
    expected = torch.nn.functional.interpolate(torch.from_numpy(image)[None], size=shape,
                                               mode="bilinear", align_corners=False)[0].numpy()
    np.testing.assert_allclose(resize_to(image, shape), expected, atol=1e-5)


@pytest.mark.parametrize("shape", [(80, 41), (144, 144), (32, 24), (17, 3), (4, 4)])
def test_a_resized_view_gives_every_window_of_the_whole_resize_exactly(
        shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(1)
    raw = (rng.random((1, 37, 53)) * 4000).astype(np.uint16)
    whole = resize_to(PreparedView(raw)[:, :, :], shape)  # the whole image, then resized
    view = ResizedView(PreparedView(raw), shape)  # normalised and resized per window
    assert view.shape == whole.shape
    np.testing.assert_array_equal(view[:, :, :], whole)
    for _ in range(25):
        (y0, y1), (x0, x1) = (sorted(rng.integers(0, n + 1, 2)) for n in shape)
        np.testing.assert_array_equal(view[:, y0:y1, x0:x1], whole[:, y0:y1, x0:x1])


def test_resize_volume_matches_torch_trilinear() -> None:
    torch = pytest.importorskip("torch")
    volume = np.random.default_rng(1).normal(size=(2, 9, 14, 11)).astype(np.float32)
    for shape in ((4, 20, 7), (17, 14, 11), (9, 5, 30)):
        expected = torch.nn.functional.interpolate(torch.from_numpy(volume)[None], size=shape,
                                                   mode="trilinear", align_corners=False)[0]
        np.testing.assert_allclose(resize_volume_to(volume, shape), expected.numpy(), atol=1e-5)
