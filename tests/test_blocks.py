from __future__ import annotations

import numpy as np
import pytest

from flowseg.inference import blocks as blocks_module
from flowseg.inference.blocks import masks_in_blocks
from flowseg.metrics import match_labels
from flowseg.representation.flows import FLOW_SCALE, labels_to_flows
from flowseg.representation.masks import MaskConfig, masks_from_flows
from flowseg.training.synthetic import random_touching_labels, random_touching_volume


def test_blocks_match_one_pass_and_cut_no_cell() -> None:
    truth = random_touching_labels((900, 700), diameter=(15, 40), seed=4)
    flows = labels_to_flows(truth) * FLOW_SCALE
    cellprob = np.where(truth > 0, 5.0, -5.0).astype(np.float32)
    whole = masks_from_flows(flows, cellprob)
    blocks = masks_in_blocks(flows, cellprob, block=256, margin=64)
    assert match_labels(whole, blocks).f1 >= 0.999
    assert match_labels(truth, blocks).f1 >= 0.995
    # No true cell that crosses a block border is split into two or more masks.
    crossing = set(np.unique(truth[255:257, :])) | set(np.unique(truth[:, 255:257]))
    for cell in crossing - {0}:
        ids = np.unique(blocks[truth == cell])
        assert len(ids[ids > 0]) == 1, cell
    assert np.array_equal(np.unique(blocks), np.arange(blocks.max() + 1))


def test_small_image_is_one_block_and_bad_arguments() -> None:
    truth = random_touching_labels((100, 120), seed=1)
    flows = labels_to_flows(truth) * FLOW_SCALE
    cellprob = np.where(truth > 0, 5.0, -5.0)
    assert np.array_equal(masks_in_blocks(flows, cellprob), masks_from_flows(flows, cellprob))
    with pytest.raises(ValueError, match="positive"):
        masks_in_blocks(flows, cellprob, block=0)
    with pytest.raises(ValueError, match="flows"):
        masks_in_blocks(flows[:1], cellprob)


def test_cells_larger_than_the_margin_are_reported(caplog: pytest.LogCaptureFixture) -> None:
    truth = np.zeros((300, 300), np.uint32)
    truth[20:280, 120:180] = 1  # 260 px tall, across the block border at 150, margin 40
    flows = labels_to_flows(truth) * FLOW_SCALE
    cellprob = np.where(truth > 0, 5.0, -5.0)
    # With the flow check on, the cut pieces disagree with their flows and are dropped...
    config = MaskConfig(max_size_fraction=1.0)
    assert masks_in_blocks(flows, cellprob, config=config, block=150, margin=40).max() == 0
    # ...without it, a cut piece is kept, and the cut is reported.
    config = MaskConfig(max_size_fraction=1.0, flow_threshold=0)
    assert masks_in_blocks(flows, cellprob, config=config, block=150, margin=40).max() >= 1
    assert "block margin" in caplog.text


def test_volume_blocks_match_one_pass_and_cut_no_cell() -> None:
    truth = random_touching_volume((16, 96, 80), diameter=12, seed=5)
    flows = labels_to_flows(truth) * FLOW_SCALE
    cellprob = np.where(truth > 0, 5.0, -5.0).astype(np.float32)
    config = MaskConfig(flow_threshold=0.8)
    whole = masks_from_flows(flows, cellprob, config=config)
    blocks = masks_in_blocks(flows, cellprob, config=config, block=40, margin=16)
    assert blocks.shape == truth.shape and blocks.dtype == np.uint32
    assert match_labels(whole, blocks).f1 >= 0.999 and match_labels(truth, blocks).f1 >= 0.995
    crossing = set(np.unique(truth[:, 39:41])) | set(np.unique(truth[..., 39:41]))
    for cell in crossing - {0}:  # none split at a block border in y or x
        ids = np.unique(blocks[truth == cell])
        assert len(ids[ids > 0]) == 1, cell
    assert np.array_equal(np.unique(blocks), np.arange(blocks.max() + 1))


def test_volume_blocks_are_sized_by_voxels(monkeypatch: pytest.MonkeyPatch) -> None:
    truth = random_touching_volume((8, 64, 64), diameter=10, seed=6)
    flows = labels_to_flows(truth) * FLOW_SCALE
    cellprob = np.where(truth > 0, 5.0, -5.0).astype(np.float32)
    seen: list[tuple[int, ...]] = []

    def spy(flows: np.ndarray, cellprob: np.ndarray, **kwargs: object) -> np.ndarray:
        seen.append(cellprob.shape)
        return masks_from_flows(flows, cellprob, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(blocks_module, "BLOCK_VOXELS", 8 * 48 * 48)
    monkeypatch.setattr(blocks_module, "masks_from_flows", spy)
    labels = masks_in_blocks(flows, cellprob, margin=8)  # cores of 48 - 2 x 8 = 32: 2 x 2 blocks
    assert len(seen) == 4 and all(s[0] == 8 and s[1] * s[2] <= 48 * 48 for s in seen)
    assert match_labels(truth, labels).f1 >= 0.995
