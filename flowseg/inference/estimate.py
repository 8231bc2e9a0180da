"""The automatic diameter: estimate an image's cell size, and choose the scale to run it at.

:func:`estimate_diameter` measures the typical cell diameter from a first pass at the image's
own scale (with a second look where that pass may be fooled, or where the model's size head
reads far larger cells), :func:`scale_for` turns the estimate into the factor (1 inside the
range the model does best on, its training diameter over the estimate outside it), and
:func:`run_estimated` runs the image at that factor, once more where the resized run's own cells
ask for another.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from flowseg.inference.normalize import PreparedView
from flowseg.inference.scaling import Segmentation, run_at_scale, training_diameter
from flowseg.inference.sizehead import head_diameter
from flowseg.inference.tiling import TileConfig
from flowseg.model.execution import Execution, plan_execution
from flowseg.model.runtime import Model
from flowseg.representation.masks import MaskConfig

log = logging.getLogger(__name__)


# The network was trained on cells of 0.5x to 2x its training diameter, but is at its best near
# the middle: an image whose estimated diameter lies within this share of the training diameter
# runs at its own scale, others are resized to it. Chosen on synthetic tuning sets (seeds
# 800,000+): (0.5, 1.9) gave F1 0.675 on brightfield at half size, (0.7, 1.4) 0.955 (first
# model). With the ninth, cells of 22-28 px resized to 30 scored F1 +0.006 to +0.012 (mean of six
# modalities) over running them as they are, cells of 34-42 px -0.004 to -0.008 (shrinking loses
# their pixels); the lower edge moved 0.7 -> 0.85, which also brought the real held-out nuclei
# at half size (24 px) from 0.904 to 0.929 (RESULTS.md, fourteenth session).
AUTO_RANGE = (0.85, 1.4)
# A resized run's own cells ask for another scale only outside this share (second_look): with
# AUTO_RANGE's lower edge, packed nuclei at half size ran again and took twice as long (6.8 -> 14.0
# s/MP) for F1 -0.001 (F1@0.75 -0.008).
LOOK_RANGE = (0.7, 1.4)
# Images up to this many pixels have their cell size estimated on the whole image (and that pass
# is the answer when it needs no rescaling); larger ones on four crops of ESTIMATE_PIXELS in all.
# 1 MP of crops chose the same scale as 2 MP (within 4%) on all 20 images of bench_estimate
# (2048^2, tuning seeds 900,000+) in 55% of the time, once the half-size check caught 120-px
# nuclei that 512^2 crops cut into 42-px pieces (RESULTS.md, eighth session).
ESTIMATE_WHOLE = 1 << 21
ESTIMATE_PIXELS = 1 << 20
# An estimate needs at least this many cells, and masks over at least this share of what the
# network calls foreground: where cells are too small to be told apart at the image's own scale,
# the network still marks them as foreground but the few masks it makes are clumps of them.
# Measured on synthetic tuning images (seeds 800,000+, 8 modalities at 0.5x, 1x and 2x): 0.81-1.00
# where the estimate was right (DIC, not yet trained on then, 0.28-0.94), 0.34-0.81 for 6-px skin nuclei
# read as 33-60 px clumps; 8-px phase contrast 0.06-0.11 (estimates of 14 and 20 px).
ESTIMATE_CELLS = 5
ESTIMATE_COVERAGE = 0.5
# Automatic rescaling enlarges an image at most this much (cells of 7.5 px to 30).
AUTO_MAX_UPSCALE = 4.0
# A first pass that finds cells near or above the training diameter (inside AUTO_RANGE) may have
# cut far larger cells into pieces of a size the network knows; a pass at half size then finds
# cells at least this many times larger. Measured on synthetic 1024^2 tuning images (seeds
# 910,000+, five modalities): half-size over first-pass diameter 0.95-1.22 for cells of 24-40 px
# (1.51 on 24-px brightfield, whose 12-px half-size cells are barely found), 2.0-4.0 for 120 px.
SPLIT_RATIO = 1.8
# A resized run whose cells ask for a scale more than this far (relative) from the one it ran at
# runs again at that scale (run_estimated). On tuning images (seeds 800,300+, 3 each) at 0.5x:
# IHC 0.979 -> 0.994, H&E 0.988 -> 0.990, skin 0.967 -> 0.962 (already at the 4x limit), nuclei,
# brightfield, phase, cytoplasm and the real held-out images unchanged; at 1x nothing reran.
REFINE_STEP = 0.1
# ... from this share of the training diameter up. Pieces of 150-px phase-contrast cells came out
# at a median of 30.0-40.7 px, so the check must start below 30 px: at 24 px (the smallest cells
# the ratios above were measured on) a 0.5x pass costs a quarter of the pixels more.
SPLIT_CHECK_FROM = 0.8
# A first pass whose cells the size head (flowseg.inference.sizehead) reads as at least this many times
# larger looked at pieces of them: the estimate is taken at the head's scale instead. On 99
# synthetic tuning images (seeds 810,000+, 9 generators, 8-150 px) and 15 real held-out ones, the
# third model's head read within 2.27x of the truth (median 1.11x); the pieces the first pass
# makes of 150-px cells came out 5.7-7.1x smaller than the cells (RESULTS.md).
HEAD_VETO = 2.5


def scale_for(guess: DiameterEstimate, trained: float,
              shape: tuple[int, ...]) -> tuple[float, float]:
    """Choose how to resize an image from an estimate of its cells' diameter.

    Parameters
    ----------
    guess : DiameterEstimate
    trained : float
        The model's training diameter.
    shape : tuple of int
        The image's (or plane's) size.

    Returns
    -------
    scale : float
        1 when the estimate is within what the model was trained on (``AUTO_RANGE``) or too
        few cells were found; otherwise ``trained / diameter``, bounded by ``AUTO_MAX_UPSCALE``.
    diameter : float
        The estimate, or the model's own diameter when too few cells were found.
    """
    chosen = guess.diameter if guess.found else trained
    log.debug("estimated cell diameter %.1f px (%s)", chosen,
              f"from {guess.cells} cells" if guess.found else "too few cells: model's own")
    low, high = (f * trained for f in AUTO_RANGE)
    if not guess.found or low <= guess.diameter <= high:
        return 1.0, chosen
    return auto_scale(shape, trained / guess.diameter), chosen


def run_estimated(net: Model, image: PreparedView, guess: DiameterEstimate, tiles: TileConfig,
                  config: MaskConfig, plan: Execution) -> Segmentation:
    """Run an image at the scale its estimate asks for, and once more if that was far off.

    A first pass at the image's own scale can read cells too small to tell apart as clumps of
    them (7-px nuclei of tissue at half magnification came out as 11-14 px). When the resized
    run finds cells that, at the network's scale, still lie outside ``LOOK_RANGE`` of the
    training diameter, and its own median asks for a scale more than ``REFINE_STEP`` away, the
    image runs again at that scale.

    Parameters
    ----------
    net : FlowUNet or OnnxModel
    image : PreparedView
    guess : DiameterEstimate
        From :func:`estimate_diameter` on this image.
    tiles : TileConfig
    config : MaskConfig
    plan : Execution

    Returns
    -------
    segmentation : Segmentation
    """
    trained = training_diameter(net)
    shape = image.shape[1:]
    scale, chosen = scale_for(guess, trained, shape)
    if scale == 1.0 and guess.result is not None:  # the first pass was the whole image as is
        return replace(guess.result, diameter=chosen)
    result = run_at_scale(net, image, scale, tiles, config, plan, chosen)
    found = second_look(result, scale, trained) if scale != 1.0 else None
    if found is None:
        return result
    again = auto_scale(shape, trained / found)
    log.debug("cells of %.1f px at scale %.2f: running again at %.2f", found, scale, again)
    return run_at_scale(net, image, again, tiles, config, plan, found)


def second_look(result: Segmentation, scale: float, trained: float) -> float | None:
    """Return the diameter a resized run's own cells have, if it asks for another scale.

    Parameters
    ----------
    result : Segmentation
        Of an image run at ``scale``, brought back to the image's size.
    scale : float
    trained : float
        The model's training diameter.

    Returns
    -------
    diameter : float or None
        The median diameter of ``result``'s cells, in pixels of the image, where they lie outside
        ``LOOK_RANGE`` of ``trained`` at the network's scale and ask for a scale more than
        ``REFINE_STEP`` from ``scale``; None where the run stands.
    """
    found, cells = median_diameter(result.labels)
    return look_again(found, cells, result.labels.shape, scale, trained)


def look_again(found: float, cells: int, shape: tuple[int, ...], scale: float,
               trained: float) -> float | None:
    """:func:`second_look` from a run's median cell diameter and cell count (a Dask run's, say)."""
    low, high = (f * trained for f in LOOK_RANGE)
    if cells < ESTIMATE_CELLS or low <= found * scale <= high:
        return None
    again = auto_scale(shape, trained / found)
    return None if abs(again / scale - 1) <= REFINE_STEP else found


def auto_scale(shape: tuple[int, ...], scale: float) -> float:
    """Bound an automatic rescaling: at most 4x up, and never below 32 px a side."""
    return float(np.clip(scale, min(1.0, 32 / min(shape)), AUTO_MAX_UPSCALE))


@dataclass
class DiameterEstimate:
    """What a first pass found: the median cell diameter, from how many cells.

    Attributes
    ----------
    diameter : float
    cells : int
    coverage : float
        Share of the foreground (cell probability above 0.5) that the masks cover.
    result : Segmentation or None
        The first pass itself when it covered the whole image at its own scale.
    """

    diameter: float
    cells: int
    coverage: float = 1.0
    result: Segmentation | None = None

    @property
    def found(self) -> bool:
        """Whether enough cells were found, covering enough of the foreground, to count."""
        return self.cells >= ESTIMATE_CELLS and self.coverage >= ESTIMATE_COVERAGE


def estimate_diameter(
    net: Model, image: PreparedView, *, tiles: TileConfig = TileConfig(),
    masks: MaskConfig = MaskConfig(), execution: Execution | None = None,
) -> DiameterEstimate:
    """Estimate the typical cell diameter: the median of a first pass's masks.

    The image runs at its own scale (up to ``ESTIMATE_WHOLE`` pixels whole; a larger one as four
    crops of ``ESTIMATE_PIXELS`` pixels in all). Where the model has a size head
    (flowseg.inference.sizehead) that reads cells at least ``HEAD_VETO`` times larger than that pass
    found, the pass looked at pieces of them: a pass at the head's scale gives the estimate. When the
    first pass finds cells larger than the model was trained on (where it tends to split them),
    a pass at the scale those suggest refines the estimate; when it finds cells near or a little
    above its training diameter, a pass at half size checks that they are not pieces of cells
    several times larger (``SPLIT_RATIO``); when
    it finds too few cells, or masks over too little of the foreground (``ESTIMATE_COVERAGE``),
    passes at twice and at half the size look for cells too small or too large to be seen at the
    image's own scale.

    Parameters
    ----------
    net : FlowUNet or OnnxModel
    image : PreparedView
    tiles : TileConfig
    masks : MaskConfig
    execution : Execution, optional

    Returns
    -------
    estimate : DiameterEstimate
    """
    plan = execution or plan_execution("auto")
    trained = training_diameter(net)
    height, width = image.shape[1:]
    whole = height * width <= ESTIMATE_WHOLE
    regions = [image] if whole else _crops(image)

    def look(scale: float) -> tuple[DiameterEstimate, list[Segmentation]]:
        passes = [run_at_scale(net, r, scale, tiles, masks, plan, trained / scale, release=whole)
                  for r in regions]
        foreground = [p.cellprob > 0 for p in passes]
        inside = sum(int(np.count_nonzero(p.labels[f])) for p, f in zip(passes, foreground, strict=True))
        total = sum(int(np.count_nonzero(f)) for f in foreground)
        return DiameterEstimate(*median_diameter(*(p.labels for p in passes)),
                                coverage=inside / total if total else 0.0), passes

    guess, first = look(1.0)
    if whole:
        guess.result = first[0]
    # No masks at all: nothing for the head to overrule (and its forward pass is saved).
    head = head_diameter(net, image, execution=plan) if guess.cells else None
    if head is not None and head >= HEAD_VETO * guess.diameter:
        # Pieces of cells the size head reads as far larger (however many masks they made, and
        # however much of the foreground: pieces cover it poorly): look where it says they are.
        log.debug("first pass found %.1f px cells, the size head reads %.1f px: looking again",
                  guess.diameter, head)
        checked, _ = look(auto_scale((height, width), trained / head))
        if checked.found:
            return checked
    high = AUTO_RANGE[1] * trained
    if guess.found and SPLIT_CHECK_FROM * trained <= guess.diameter <= high:
        # Pieces of much larger cells? At half size (a quarter of the pixels) the network sees
        # them whole.
        half, _ = look(auto_scale((height, width), 0.5))
        if not (half.found and half.diameter >= SPLIT_RATIO * guess.diameter):
            return guess
        log.debug("first pass found %.1f px cells, half size %.1f px: looking again",
                  guess.diameter, half.diameter)
        guess = half
    elif guess.found and guess.diameter <= high:
        return guess
    # Too few cells: they may be too small to see (look at twice the size) or too large (at
    # half); cells larger than the model knows: look again with them shrunk to its size.
    tries = [2.0, 0.5] if not guess.found else [trained / guess.diameter]
    for scale in (auto_scale((height, width), s) for s in tries):
        if abs(scale - 1.0) < 1e-3:
            continue
        refined, _ = look(scale)
        if refined.found and (not guess.found or refined.diameter > high):
            return refined
    return guess


def median_diameter(*labels: npt.NDArray[np.integer]) -> tuple[float, int]:
    """Median equivalent diameter (that of a disk of the same area) of the cells, and their count.

    Cells touching their image's edge are cut, so smaller than they are: they are left out
    unless fewer than ``ESTIMATE_CELLS`` cells would be left.

    Parameters
    ----------
    *labels : (H, W) ndarray of int
        One or more label images, pooled.

    Returns
    -------
    diameter : float
        0 when there is no cell.
    count : int

    Examples
    --------
    >>> labels = np.zeros((20, 20), np.uint32); labels[:10, :10] = 1
    >>> round(median_diameter(labels)[0], 2)
    11.28
    """
    every, whole = [], []
    for part in labels:
        part = np.asarray(part)
        counts = np.bincount(part.reshape(-1))
        counts[0] = 0
        every.append(counts[counts > 0])
        cut = np.unique(np.concatenate([part[0], part[-1], part[:, 0], part[:, -1]]))
        counts[cut] = 0
        whole.append(counts[counts > 0])
    return diameter_of_sizes(np.concatenate(whole), np.concatenate(every))


def diameter_of_sizes(whole: npt.NDArray[np.integer],
                      every: npt.NDArray[np.integer]) -> tuple[float, int]:
    """:func:`median_diameter` from cell areas: of whole cells, and of every cell (cut ones too).

    Examples
    --------
    >>> round(diameter_of_sizes(np.array([100] * 5), np.array([100] * 6))[0], 2)
    11.28
    """
    sizes = whole if whole.size >= ESTIMATE_CELLS else every
    if not sizes.size:
        return 0.0, 0
    return float(np.median(2 * np.sqrt(sizes / np.pi))), int(sizes.size)


def _crops(image: PreparedView) -> list[npt.NDArray[np.float32]]:
    """Four crops of ``ESTIMATE_PIXELS`` in all, a third of the way in from each corner."""
    height, width = image.shape[1:]
    side_h = min(height, int(np.sqrt(ESTIMATE_PIXELS / 4)))
    side_w = min(width, ESTIMATE_PIXELS // 4 // side_h)
    ys = [(height - side_h) // 3, 2 * (height - side_h) // 3]
    xs = [(width - side_w) // 3, 2 * (width - side_w) // 3]
    return [image[:, y: y + side_h, x: x + side_w] for y in ys for x in xs]
