from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from flowseg.infer import TileConfig, resize_to, run_tiled, tapers, tile_starts
from flowseg.net import FlowUNet, NetConfig


class Echo(FlowUNet):
    """Returns its input: tiled output must then equal the image exactly."""

    def __init__(self) -> None:
        super().__init__(NetConfig(widths=(4, 4), full_res=2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


@given(st.integers(1, 3000), st.integers(32, 600), st.floats(0.1, 0.45))
def test_tapers_sum_to_one_and_tiles_cover(length: int, tile: int, overlap: float) -> None:
    margin = max(1, int(np.ceil(overlap * tile)))
    starts = tile_starts(length, tile, margin)
    total = np.zeros(length)
    for s, w in zip(starts, tapers(length, starts, tile, margin), strict=True):
        assert np.all(w > 0)
        total[s : s + len(w)] += w
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert starts[0] == 0 and starts[-1] + min(tile, length) == length
    gaps = np.diff(starts)
    assert np.all(tile - gaps >= margin)


@pytest.mark.parametrize("shape", [(1, 1), (7, 300), (300, 7), (517, 1030), (1024, 1024)])
@pytest.mark.parametrize("tile", [64, 128])
def test_tiled_echo_returns_the_image(shape: tuple[int, int], tile: int) -> None:
    image = np.random.default_rng(0).random((3, *shape)).astype(np.float32)
    out = run_tiled(Echo(), image, config=TileConfig(tile=tile, batch=3), device=torch.device("cpu"))
    np.testing.assert_allclose(out, image, atol=1e-5)


def test_tiled_output_accumulates_into_a_given_array(tmp_path) -> None:  # type: ignore[no-untyped-def]
    image = np.random.default_rng(1).random((3, 200, 150)).astype(np.float32)
    target = np.lib.format.open_memmap(tmp_path / "out.npy", mode="w+", dtype=np.float32,
                                       shape=(3, 200, 150))
    out = run_tiled(Echo(), image, config=TileConfig(tile=64), out=target)
    assert out is target
    np.testing.assert_allclose(np.asarray(target), image, atol=1e-5)


def test_flip_tta_negates_flow_components() -> None:
    # An Echo sees mirrored inputs: after mirroring back, channels 0 and 1 flip sign on half the
    # passes (rows for dy, columns for dx) and cancel; channel 2 is kept.
    image = np.random.default_rng(2).random((3, 64, 64)).astype(np.float32)
    out = run_tiled(Echo(), image, config=TileConfig(tile=64, flip_tta=True))
    np.testing.assert_allclose(out[:2], 0, atol=1e-5)
    np.testing.assert_allclose(out[2], image[2], atol=1e-5)


def test_real_network_runs_in_tiles_and_whole() -> None:
    net = FlowUNet(NetConfig(widths=(8, 16), full_res=4, style=False)).eval()
    image = np.random.default_rng(3).random((3, 90, 70)).astype(np.float32)
    tiled = run_tiled(net, image, config=TileConfig(tile=64, batch=1))
    whole = run_tiled(net, image, config=TileConfig(tile=64, batch=4))
    assert tiled.shape == whole.shape == (3, 90, 70) and np.isfinite(tiled).all()
    # away from the padded edges the two agree closely (no style vector in this network)
    np.testing.assert_allclose(tiled[:, 20:70, 20:50], whole[:, 20:70, 20:50], atol=0.05)


class Recorder(Echo):
    """An Echo that notes the shape of every batch it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.shapes.append(tuple(x.shape))
        return x.clone()


@pytest.mark.parametrize(("shape", "expected"), [
    ((1024, 1024), [(1, 3, 1024, 1024)]),  # fits in one batch of 4 tiles of 512: runs whole
    ((300, 7), [(1, 3, 300, 8)]),  # padded to the network's stride (4) only
    ((1030, 1030), [(4, 3, 512, 512)] * 2 + [(1, 3, 512, 512)]),  # too big: 3 x 3 tiles
])
def test_an_image_that_fits_in_one_batch_runs_whole(shape: tuple[int, int],
                                                     expected: list[tuple[int, ...]]) -> None:
    net = Recorder()
    image = np.random.default_rng(4).random((3, *shape)).astype(np.float32)
    out = run_tiled(net, image, config=TileConfig(tile=512, batch=4), device=torch.device("cpu"))
    assert net.shapes == expected
    np.testing.assert_allclose(out, image, atol=1e-5)


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="overlap"):
        TileConfig(overlap=0.05)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        run_tiled(Echo(), np.zeros((1, 8, 8), np.float32))
    assert resize_to(np.ones((2, 10, 20), np.float32), (5, 10)).shape == (2, 5, 10)
