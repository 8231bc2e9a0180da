from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from flowseg.inference import estimate, scaling
from flowseg.inference.normalize import PreparedView


def squares(shape: tuple[int, int], side: int) -> np.ndarray:
    """Labels tiling ``shape`` with squares of ``side`` px (diameter ~1.13 side)."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return ((yy // side) * (shape[1] // side + 1) + xx // side + 1).astype(np.uint32)


def segmentation(labels: np.ndarray, foreground: bool = True,
                 diameter: float = 0.0) -> scaling.Segmentation:
    """What a fake run returns: ``labels``, no flows, everything (or nothing) foreground."""
    shape = labels.shape
    return scaling.Segmentation(labels, np.zeros((2, *shape), np.float32),
                                np.full(shape, 1.0 if foreground else 0.0, np.float32), diameter)


@pytest.mark.parametrize(("half_side", "expected"), [(106, 120.0), (33, 37.2)])
def test_estimate_looks_at_half_size_for_pieces_of_large_cells(
        monkeypatch: pytest.MonkeyPatch, half_side: int, expected: float) -> None:
    # A network that cuts 120-px cells into 33-px pieces at their own size (a size inside the
    # band that runs as is) but sees them whole at half size: the estimate must not trust the
    # pieces. Where half size finds the same cells, the first pass stands (and is the answer).
    calls: list[float] = []

    def fake_run(net, image, scale, tiles, config, plan, diameter, release=True):  # type: ignore[no-untyped-def]
        calls.append(scale)
        shape = image.shape[1:]
        side = 33 if scale == 1.0 else half_side if scale == 0.5 else 106
        return segmentation(squares(shape, side))  # all foreground

    monkeypatch.setattr(estimate, "run_at_scale", fake_run)
    net = SimpleNamespace(metadata={"diameter": 30.0})
    guess = estimate.estimate_diameter(net, PreparedView(np.zeros((3, 900, 900), np.float32)))
    assert guess.diameter == pytest.approx(expected, rel=0.05)
    assert calls[:2] == [1.0, 0.5]
    if expected < 42:  # same cells at half size: the first pass is kept as the answer
        assert guess.result is not None and len(calls) == 2
    else:  # then a pass at the scale those suggest
        assert len(calls) == 3 and calls[2] == pytest.approx(30 / expected, rel=0.05)


def test_median_diameter_leaves_out_cells_cut_by_the_edge() -> None:
    # 20-px squares on a 110-px image: the last row and column are cut to 10 px. Counting them
    # would pull the median down; with too few whole cells left, every cell counts.
    labels = squares((110, 110), 20)
    whole = 2 * np.sqrt(400 / np.pi)
    assert estimate.median_diameter(labels) == (pytest.approx(whole), 16)
    few = squares((50, 50), 20)  # every square touches the edge: none whole, all 9 count
    assert estimate.median_diameter(few)[1] == 9


@pytest.mark.parametrize(("scale", "expected"), [(1.0, 15), (2.0, 5), (4.0, 5), (1.5, 7),
                                                 (0.5, 60)])
def test_run_at_scale_counts_min_size_at_the_network_scale(
        monkeypatch: pytest.MonkeyPatch, scale: float, expected: int) -> None:
    seen: list[int] = []
    margins: list[int] = []

    def fake_masks(flows, cellprob, config, margin):  # type: ignore[no-untyped-def]
        seen.append(config.min_size)
        margins.append(margin)
        return np.zeros(cellprob.shape, np.uint32)

    monkeypatch.setattr(scaling, "masks_in_blocks", fake_masks)
    monkeypatch.setattr(scaling, "run_tiled", lambda net, image, config, execution: np.zeros(
        (3, *image.shape[1:]), np.float32))
    image = np.zeros((3, 40, 40), np.float32)
    scaling.run_at_scale(None, image, scale, scaling.TileConfig(), scaling.MaskConfig(),
                         None, 30.0)
    assert seen == [expected]
    # masks blocks keep a margin for cells as large as the image holds at this scale
    assert margins == [256 if scale == 0.5 else 128]


def test_estimate_distrusts_a_pass_whose_masks_miss_most_of_the_foreground(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # At its own scale the network marks 8-px cells as foreground but makes only a few 20-px
    # clumps of them (8 masks over a tenth of the foreground): the estimate must look at twice
    # the size, where it resolves them, rather than trust the clumps.
    calls: list[float] = []

    def fake_run(net, image, scale, tiles, config, plan, diameter, release=True):  # type: ignore[no-untyped-def]
        calls.append(scale)
        shape = image.shape[1:]
        if scale == 1.0:
            labels = np.zeros(shape, np.uint32)
            for i in range(8):
                labels[20 * i: 20 * i + 18, :18] = i + 1
        else:
            labels = squares(shape, 8)  # at the image's scale, as run_at_scale returns them
        return segmentation(labels)

    monkeypatch.setattr(estimate, "run_at_scale", fake_run)
    net = SimpleNamespace(metadata={"diameter": 30.0})
    guess = estimate.estimate_diameter(net, PreparedView(np.zeros((3, 300, 300), np.float32)))
    assert calls == [1.0, 2.0]
    assert guess.diameter == pytest.approx(2 * np.sqrt(64 / np.pi), rel=0.01)


@pytest.mark.parametrize(("found_side", "expected_scales"), [
    (8, [30 / 14, 30 / (2 * np.sqrt(64 / np.pi))]),  # 8-px squares, 9 px across: runs again
    (12, [30 / 14]),  # 13.5 px at 30 / 14: 29 px at the network's scale, inside the band
])
def test_a_resized_run_that_finds_other_cells_runs_again(
        monkeypatch: pytest.MonkeyPatch, found_side: int, expected_scales: list[float]) -> None:
    # The first pass took clumps of tiny cells for 14-px cells; the run at 30 / 14 sees the cells
    # themselves, and where they are far smaller the image runs once more at their scale.
    calls: list[float] = []

    def fake_run(net, image, scale, tiles, config, plan, diameter, release=True):  # type: ignore[no-untyped-def]
        calls.append(scale)
        shape = image.shape[1:]
        return segmentation(squares(shape, found_side), diameter=diameter)

    monkeypatch.setattr(estimate, "run_at_scale", fake_run)
    net = SimpleNamespace(metadata={"diameter": 30.0})
    guess = estimate.DiameterEstimate(14.0, 50)
    image = PreparedView(np.zeros((3, 200, 200), np.float32))
    result = estimate.run_estimated(net, image, guess, scaling.TileConfig(), scaling.MaskConfig(),
                                   None)
    assert calls == pytest.approx(expected_scales)
    assert result.diameter == pytest.approx(14.0 if len(calls) == 1 else 2 * np.sqrt(64 / np.pi))


@pytest.mark.parametrize(("head", "partial", "expected", "scales"), [
    (None, False, 14.7, [1.0]),
    (20.0, False, 14.7, [1.0]),
    (135.0, False, 135.4, [1.0, 30 / 135]),
    (None, True, 6.8, [1.0, 2.0]),  # too little of the foreground: the 2x look finds crumbs
    (135.0, True, 135.4, [1.0, 30 / 135]),
])
def test_estimate_takes_the_size_heads_scale_when_the_first_pass_finds_pieces(
        monkeypatch: pytest.MonkeyPatch, head: float | None, partial: bool, expected: float,
        scales: list[float]) -> None:
    # A network that cuts 135-px cells into 13-px pieces at their own size (too small for the
    # half-size check; with ``partial``, pieces over only a third of the foreground, so that the
    # pass does not count), into 6-px crumbs at twice the size, but sees them whole at the scale
    # a size head asks for. Without a head, or with one that agrees, the head changes nothing.
    calls: list[float] = []

    def fake_run(net, image, scale, tiles, config, plan, diameter, release=True):  # type: ignore[no-untyped-def]
        calls.append(scale)
        shape = image.shape[1:]
        labels = squares(shape, 13 if scale == 1.0 else 6 if scale == 2.0 else 120)
        if partial and scale == 1.0:
            labels[:, : 2 * shape[1] // 3] = 0
        return segmentation(labels)

    monkeypatch.setattr(estimate, "run_at_scale", fake_run)
    monkeypatch.setattr(estimate, "head_diameter", lambda net, image, execution: head)
    net = SimpleNamespace(metadata={"diameter": 30.0})
    guess = estimate.estimate_diameter(net, PreparedView(np.zeros((3, 960, 960), np.float32)))
    assert guess.diameter == pytest.approx(expected, rel=0.05)
    assert calls == [pytest.approx(s) for s in scales]


def test_the_size_head_is_not_run_when_the_first_pass_made_no_masks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_run(net, image, scale, tiles, config, plan, diameter, release=True):  # type: ignore[no-untyped-def]
        shape = image.shape[1:]
        return segmentation(np.zeros(shape, np.uint32), foreground=False)

    def no_head(net, image, execution):  # type: ignore[no-untyped-def]
        raise AssertionError("the head ran on an image without masks")

    monkeypatch.setattr(estimate, "run_at_scale", fake_run)
    monkeypatch.setattr(estimate, "head_diameter", no_head)
    guess = estimate.estimate_diameter(SimpleNamespace(metadata={"diameter": 30.0}),
                                      PreparedView(np.zeros((3, 200, 200), np.float32)))
    assert not guess.found


@pytest.mark.parametrize(("diameter", "expected"), [(20.0, 1.5), (24.0, 1.25), (26.0, 1.0),
                                                    (40.0, 1.0), (60.0, 0.5)])
def test_cells_a_little_under_the_training_diameter_are_enlarged_to_it(
        diameter: float, expected: float) -> None:
    # The ninth model scores cells of 22-28 px better resized to its 30 px than as they are:
    # images run as they are from 25.5 px (0.85 x 30) to 42 px, others resized to 30 px.
    guess = estimate.DiameterEstimate(diameter, cells=50)
    assert estimate.scale_for(guess, 30.0, (512, 512)) == (pytest.approx(expected), diameter)


def test_a_resized_run_within_the_looser_range_is_not_run_again() -> None:
    # Resized 1.5x, its cells measure 16 px (24 px at the network's scale): under AUTO_RANGE's
    # 25.5 px but within LOOK_RANGE's 21, so the run stands (a second run cost twice the time
    # for nothing); at 12 px (18 at the network's scale) it runs again at 30 / 12.
    side_16 = round(8 * float(np.sqrt(np.pi)))  # squares of the area of a 16-px disk
    side_12 = round(6 * float(np.sqrt(np.pi)))
    for side, expected in ((side_16, None), (side_12, 2 * np.sqrt(side_12**2 / np.pi))):
        found = estimate.second_look(segmentation(squares((300, 300), side)), 1.5, 30.0)
        assert found == (None if expected is None else pytest.approx(expected))


@pytest.mark.parametrize(("side", "released"), [(500, [True]), (1500, [False] * 4)])
def test_the_estimate_keeps_the_arena_between_the_crops_of_a_large_image(
        monkeypatch: pytest.MonkeyPatch, side: int, released: list[bool]) -> None:
    # A whole image's first pass may be the answer: its arena is given back before its masks.
    # The four crops of a larger one keep it, as the next crop and the image's run need it.
    seen: list[bool] = []

    def fake_run(net, image, scale, tiles, config, plan, diameter, release=True):  # type: ignore[no-untyped-def]
        seen.append(release)
        shape = image.shape[1:]
        return segmentation(squares(shape, 27))

    monkeypatch.setattr(estimate, "run_at_scale", fake_run)
    monkeypatch.setattr(estimate, "head_diameter", lambda net, image, execution: None)
    net = SimpleNamespace(metadata={"diameter": 30.0})
    estimate.estimate_diameter(net, PreparedView(np.zeros((3, side, side), np.float32)))
    assert seen[:len(released)] == released


@pytest.mark.parametrize("scale", [1.0, 2.1, 0.6])
def test_a_region_run_gives_the_whole_runs_output_there(scale: float) -> None:
    # What a Dask block computes: the network over its region plus context, resized window by
    # window from a part of the image, brought back: the whole-image run's values.
    from flowseg.inference.blocks import Placed
    from flowseg.inference.normalize import ResizedView, resize_to, scaled_shape
    from flowseg.inference.pipeline import as_channels_first, load_model
    from flowseg.inference.tiling import TileConfig, run_tiled
    from flowseg.model.execution import plan_execution
    from flowseg.training.synthetic import make_sample

    plan = plan_execution("cpu")
    net = load_model(execution=plan)
    raw = as_channels_first(make_sample((400, 460), "nuclei", seed=3, diameter=14)[0])
    view = PreparedView(raw)
    shape = raw.shape[1:]
    source = view if scale == 1.0 else ResizedView(view, scaled_shape(shape, scale))
    whole = run_tiled(net, source, config=TileConfig(), execution=plan)
    whole = whole if scale == 1.0 else resize_to(whole, shape)
    for region in [(100, 300, 150, 420), (0, 180, 300, 460), (250, 400, 0, 120)]:
        reads = scaling.plan_region(shape, scale, region, TileConfig().context, net.stride).reads
        part = Placed(raw[:, reads[0]:reads[1], reads[2]:reads[3]], (reads[0], reads[2]), shape)
        out = scaling.run_region(net, PreparedView(part, ranges=view.ranges), scale, region,
                                 TileConfig(), plan)
        expected = whole[:, region[0]:region[1], region[2]:region[3]]
        assert out.shape == expected.shape
        assert np.abs(out - expected).max() < 1e-4, region
