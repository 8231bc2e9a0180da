from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowseg.inference.normalize import resize_to
from flowseg.inference.tiling import TileConfig, mirror_indices, plan_axis, run_tiled
from flowseg.model.execution import plan_execution
from flowseg.model.net import FlowUNet, NetConfig


class Echo(FlowUNet):
    """Returns its input: tiled output must then equal the image exactly."""

    def __init__(self) -> None:
        super().__init__(NetConfig(widths=(4, 4), full_res=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


CPU = plan_execution("cpu", channels_last=False, runtime="torch")  # tiling, not the runtime


@given(st.integers(1, 3000), st.integers(0, 200), st.integers(1, 64), st.sampled_from([1, 8, 32]),
       st.integers(0, 4))
def test_tiles_sit_on_the_grid_keep_context_cover_and_blend_to_one(
        length: int, extra: int, ramp: int, stride: int, context_strides: int) -> None:
    tile, context = 2 * ramp + stride + extra, context_strides * stride
    plan = plan_axis(length, tile, context, ramp, stride)
    origins, n = plan.origins, len(plan.origins)
    assert origins[0] == 0 and all(o % stride == 0 for o in origins) and plan.size % stride == 0
    assert origins[-1] + plan.size >= length + context  # the end's mirrored context, as whole
    largest = -(-(tile + 2 * context) // stride) * stride
    assert plan.size <= largest
    if n > 1:  # the fewest tiles: n - 1 of the largest size could not reach the end
        most = (largest - 2 * context - ramp) // stride * stride
        assert (n - 2) * most + largest < length + context
    total = np.zeros(length)
    for i, ((start, stop), w) in enumerate(zip(plan.cores, plan.weights, strict=True)):
        assert 0 <= start < stop <= length and len(w) == stop - start and np.all(w > 0)
        assert start >= origins[i] + (context if i > 0 else 0)
        assert stop <= origins[i] + plan.size - (context if i < n - 1 else 0)
        total[start:stop] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (7, 300), (300, 7), (517, 1030), (1024, 1024),
                                   (2500, 90)])
@pytest.mark.parametrize("tile", [128, 256])
def test_tiled_echo_returns_the_image(shape: tuple[int, int], tile: int) -> None:
    image = np.random.default_rng(0).random((3, *shape)).astype(np.float32)
    out = run_tiled(Echo(), image, config=TileConfig(tile=tile, batch=3, context=40),
                    execution=CPU)
    np.testing.assert_allclose(out, image, atol=1e-5)


def test_mirror_indices_fold_into_the_image() -> None:
    assert mirror_indices(-3, 10, 4).tolist() == [3, 2, 1, 0, 1, 2, 3, 2, 1, 0]
    assert mirror_indices(5, 3, 1).tolist() == [0, 0, 0]


def test_tiled_output_accumulates_into_a_given_array(tmp_path) -> None:  # type: ignore[no-untyped-def]
    image = np.random.default_rng(1).random((3, 200, 150)).astype(np.float32)
    target = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32,
                                       shape=(3, 200, 150))
    out = run_tiled(Echo(), image, config=TileConfig(tile=128), out=target, execution=CPU)
    assert out is target
    np.testing.assert_allclose(np.asarray(target), image, atol=1e-5)


def test_flip_tta_negates_flow_components() -> None:
    # An Echo sees mirrored inputs: after mirroring back, channels 0 and 1 flip sign on half the
    # passes (rows for dy, columns for dx) and cancel; channel 2 is kept.
    image = np.random.default_rng(2).random((3, 64, 64)).astype(np.float32)
    out = run_tiled(Echo(), image, config=TileConfig(tile=128, flip_tta=True), execution=CPU)
    np.testing.assert_allclose(out[:2], 0, atol=1e-5)
    np.testing.assert_allclose(out[2], image[2], atol=1e-5)


def test_tiles_and_whole_agree_with_a_real_network() -> None:
    # Tiles start on the network's grid and keep only their core: with context enough for this
    # small network's reach, tiled and whole runs give the same output (float rounding aside).
    net = FlowUNet(NetConfig(widths=(8, 16, 16), full_res=4)).eval()
    image = np.random.default_rng(3).random((3, 300, 260)).astype(np.float32)
    whole = run_tiled(net, image, config=TileConfig(tile=512, context=64), execution=CPU)
    for tile, batch in ((128, 1), (160, 3)):
        tiled = run_tiled(net, image, config=TileConfig(tile=tile, context=64, batch=batch),
                          execution=CPU)
        np.testing.assert_allclose(tiled, whole, atol=2e-3)
    flipped = run_tiled(net, image, config=TileConfig(tile=128, context=64, flip_tta=True),
                        execution=CPU)
    whole_tta = run_tiled(net, image, config=TileConfig(tile=512, context=64, flip_tta=True),
                          execution=CPU)
    np.testing.assert_allclose(flipped, whole_tta, atol=2e-3)


class Recorder(Echo):
    """An Echo that notes the shape of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return x.clone()


@pytest.mark.parametrize(("shape", "border", "expected"), [
    # fits in one batch of 4 tiles of 512 + 2 x 32 context: runs whole, with 32 mirrored px
    # below and right, padded to the stride (4)
    ((1024, 1024), 0, [(1, 3, 1056, 1056)]),
    ((300, 7), 0, [(1, 3, 332, 40)]),
    # too big: 3 x 3 tiles, as small as covering with 3 allows (508 px; the edge tiles keep
    # 476 px and need no context beyond the image's start)
    ((1300, 1300), 0, [(4, 3, 508, 508)] * 2 + [(1, 3, 508, 508)]),
    # 16 px of background before the image, and 32 px of context (background) past its end,
    # padded to the stride: 16 + 300 + 32 = 348 and 16 + 7 + 32 = 55 -> 56
    ((300, 7), 16, [(1, 3, 348, 56)]),
])
def test_an_image_that_fits_in_one_batch_runs_whole(shape: tuple[int, int], border: int,
                                                     expected: list[tuple[int, ...]]) -> None:
    net = Recorder()
    image = np.random.default_rng(4).random((3, *shape)).astype(np.float32)
    config = TileConfig(tile=512, batch=4, context=32, border=border)
    out = run_tiled(net, image, config=config, execution=CPU)
    assert net.shapes == expected
    np.testing.assert_allclose(out, image, atol=1e-5)


class Seer(Echo):
    """An Echo that keeps every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[np.ndarray] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.numpy().copy())
        return x.clone()


@pytest.mark.parametrize("tile", [128, 1024])
def test_the_network_sees_background_past_the_image_edges(tile: int) -> None:
    # Training crops reaching past their image are padded with zeros; the network must see the
    # same past every edge (left and top too), or cells cut by the edge lose their flows.
    image = 1 + np.random.default_rng(5).random((3, 200, 150)).astype(np.float32)  # never 0
    net = Seer()
    out = run_tiled(net, image, config=TileConfig(tile=tile, border=8), execution=CPU)
    np.testing.assert_allclose(out, image, atol=1e-5)
    seen = net.seen[0][0]
    assert np.all(seen[:, :8, :] == 0) and np.all(seen[:, :, :8] == 0)  # stride 4: 8 px
    np.testing.assert_array_equal(seen[:, 8:16, 8:16], image[:, :8, :8])
    last = net.seen[-1][-1]
    assert np.all(last[:, -8:, :] == 0) and np.all(last[:, :, -8:] == 0)
    mirrored = Seer()
    run_tiled(mirrored, image, config=TileConfig(tile=tile, border=0), execution=CPU)
    np.testing.assert_array_equal(mirrored.seen[0][0][:, :8, :8], image[:, :8, :8])


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="tiling"):
        TileConfig(tile=32)
    with pytest.raises(ValueError, match="tiling"):
        TileConfig(batch=0)
    with pytest.raises(ValueError, match="border"):
        TileConfig(border=-1)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        run_tiled(Echo(), np.zeros((1, 8, 8), np.float32))
    assert resize_to(np.ones((2, 10, 20), np.float32), (5, 10)).shape == (2, 5, 10)


@pytest.mark.parametrize("tta", [False, True])
def test_the_bundled_model_gives_the_same_labels_whatever_the_tiles(tta: bool) -> None:
    # The default context covers the bundled network's receptive field: tiles of 256 and 512 px
    # give the whole run's output to float rounding, and so the same cells, pixel for pixel.
    from flowseg.inference.normalize import PreparedView
    from flowseg.inference.pipeline import as_channels_first, load_model
    from flowseg.representation.masks import masks_from_flows
    from flowseg.training.synthetic import make_sample

    net = load_model(execution=CPU)
    image, _ = make_sample((576, 544), "nuclei", seed=4)
    view = PreparedView(as_channels_first(image))
    whole = run_tiled(net, view, config=TileConfig(tile=1024, flip_tta=tta), execution=CPU)
    reference = masks_from_flows(whole[:2], whole[2])
    for tile in (256, 512):
        out = run_tiled(net, view, config=TileConfig(tile=tile, flip_tta=tta), execution=CPU)
        assert np.abs(out - whole).max() < 1e-4, tile
        np.testing.assert_array_equal(masks_from_flows(out[:2], out[2]), reference)
    # The reason: with 128 px of context the outputs move by far more than float rounding.
    short = run_tiled(net, view, config=TileConfig(tile=256, context=128, flip_tta=tta),
                      execution=CPU)
    assert np.abs(short - whole).max() > 1e-2
