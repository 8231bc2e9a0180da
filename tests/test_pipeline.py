from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from skimage.segmentation import clear_border

from flowseg.inference.normalize import prepare_image
from flowseg.inference.pipeline import (
    default_model_path,
    load_model,
    segment,
    segment_with_outputs,
)
from flowseg.inference.tiling import TileConfig
from flowseg.metrics import match_labels
from flowseg.training.synthetic import make_sample

RNG = np.random.default_rng(0)


def test_default_model_is_bundled_and_small() -> None:
    path = default_model_path()
    assert path.is_file() and path.stat().st_size < 8e6
    net = load_model()
    assert net.metadata["diameter"] > 0 and "thresholds" in net.metadata


@pytest.mark.parametrize(("modality", "tta"), [("nuclei", False), ("he", False),
                                               ("phase", True)])
def test_tiling_does_not_change_the_cells(modality: str, tta: bool) -> None:
    # One image, one answer: whole, or in tiles whose kept cores are 256 or 512 px, the bundled
    # model gives the same cells (issue 16's target: F1 >= 0.999, mean matched IoU >= 0.99).
    net = load_model()
    image, _ = make_sample((600, 560), modality, seed=5)
    whole = segment_with_outputs(image, net, tiles=TileConfig(tile=1024, flip_tta=tta),
                                 device="cpu", diameter=30)
    for core in (256, 512):
        tiled = segment_with_outputs(image, net, tiles=TileConfig(tile=core, flip_tta=tta),
                                     device="cpu", diameter=30)
        agreement = match_labels(whole.labels, tiled.labels)
        assert agreement.f1 >= 0.999 and agreement.mean_iou >= 0.99, (core, agreement)


def test_cells_cut_by_the_image_edge_are_found() -> None:
    # The bundled model, shown background past the edges as in training, segments nuclei cut by
    # the image's edge; extending the image by mirroring instead (border 0) lost most of them
    # (third model: 13 of 55 found here, 51 with the border; ninth: 17 and 48), which the
    # challenge's metric does not see. Three images, so that one cell is not 5% of the count.
    net = load_model()
    count, found = 0, {0: 0, TileConfig().border: 0}
    for seed in (7, 8, 9):
        image, truth = make_sample((256, 256), "nuclei", seed=seed)
        edge = np.where(clear_border(truth) > 0, 0, truth)
        count += len(np.unique(edge)) - 1
        for border in found:
            labels = segment_with_outputs(image, net, tiles=TileConfig(border=border),
                                          device="cpu").labels
            found[border] += match_labels(edge, labels).tp
    assert count >= 45 and found[TileConfig().border] >= 0.8 * count > 2 * found[0], (count, found)


def test_segment_with_diameter_and_bad_values(tiny_model: Path) -> None:
    net = load_model(tiny_model)
    image = RNG.random((1, 60, 80)).astype(np.float32)
    assert segment(image, net, diameter=15, device="cpu").shape == (60, 80)
    assert segment(image, net, diameter=0, device="cpu").shape == (60, 80)  # 0: automatic
    with pytest.raises(ValueError, match="diameter"):
        segment(image, net, diameter=-3, device="cpu")
    with pytest.raises(ValueError, match="MP"):
        segment(image, net, diameter=0.001, device="cpu")
    with pytest.raises(ValueError, match="NaN"):
        segment(np.full((1, 8, 8), np.nan), net, device="cpu")
    assert prepare_image(image).shape == (3, 60, 80)


def test_a_stack_is_refused_with_the_function_that_takes_it() -> None:
    import importlib
    import re

    from flowseg.inference.pipeline import as_channels_first

    with pytest.raises(ValueError, match="cannot tell which axis") as info:
        as_channels_first(np.zeros((5, 32, 32)))
    named = re.search(r"(flowseg(?:\.\w+)+)\.(\w+), not as channels", str(info.value))
    assert named and hasattr(importlib.import_module(named.group(1)), named.group(2))


def test_pixels_must_be_real_numbers_and_booleans_are_0_and_1() -> None:
    from flowseg.inference.pipeline import as_channels_first

    mask = np.zeros((40, 40), bool)
    mask[10:20, 10:20] = True
    assert as_channels_first(mask).dtype == np.uint8 and as_channels_first(mask).max() == 1
    for bad in (np.zeros((40, 40), complex), np.full((40, 40), "a"), np.zeros((40, 40), object)):
        with pytest.raises(ValueError, match=f"image of dtype {bad.dtype}: pixels must be real"):
            as_channels_first(bad)
