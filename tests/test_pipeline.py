from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from flowseg import pipeline
from flowseg.infer import TileConfig
from flowseg.metrics import match_labels
from flowseg.normalize import PreparedView, prepare_image
from flowseg.pipeline import (
    default_model_path,
    load_model,
    segment,
    segment_with_outputs,
)
from flowseg.synthetic import make_sample

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


def squares(shape: tuple[int, int], side: int) -> np.ndarray:
    """Labels tiling ``shape`` with squares of ``side`` px (diameter ~1.13 side)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy // side) * (shape[1] // side + 1) + xx // side + 1).astype(np.uint32)


@pytest.mark.parametrize(("half_side", "expected"), [(106, 120.0), (33, 37.2)])
def test_estimate_looks_at_half_size_for_pieces_of_large_cells(
        monkeypatch: pytest.MonkeyPatch, half_side: int, expected: float) -> None:
    # A network that cuts 120-px cells into 33-px pieces at their own size (a size inside the
    # band that runs as is) but sees them whole at half size: the estimate must not trust the
    # pieces. Where half size finds the same cells, the first pass stands (and is the answer).
    calls: list[float] = []

    def fake_run(net, image, scale, tiles, config, plan, diameter):  # type: ignore[no-untyped-def]
        calls.append(scale)
        shape = image.shape[1:]
        side = 33 if scale == 1.0 else half_side if scale == 0.5 else 106
        return pipeline.Segmentation(squares(shape, side), np.zeros((2, *shape), np.float32),
                                     np.zeros(shape, np.float32))

    monkeypatch.setattr(pipeline, "run_at_scale", fake_run)
    net = SimpleNamespace(metadata={"diameter": 30.0})
    guess = pipeline.estimate_diameter(net, PreparedView(np.zeros((3, 900, 900), np.float32)))
    assert guess.diameter == pytest.approx(expected, rel=0.05)
    assert calls[:2] == [1.0, 0.5]
    if expected < 42:  # same cells at half size: the first pass is kept as the answer
        assert guess.result is not None and len(calls) == 2
    else:  # then a pass at the scale those suggest
        assert len(calls) == 3 and calls[2] == pytest.approx(30 / expected, rel=0.05)
