"""Running a model at one scale: resize the image, run the network in tiles, make masks.

:func:`run_at_scale` resizes an image by a factor (tile by tile, as the network reads it), runs
the network over it, brings the output back to the image's size and makes masks; the smallest
mask it keeps counts pixels at the network's scale (:func:`scale_min_size`). Which factor an
image needs is :mod:`flowseg.inference.estimate`'s question.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError
from flowseg.inference.blocks import MARGIN, Placed, Window, masks_in_blocks
from flowseg.inference.normalize import PreparedView, ResizedView, resize_to, scaled_shape, source_span
from flowseg.inference.tiling import TileConfig, run_tiled
from flowseg.model.execution import Execution
from flowseg.model.runtime import Model, release_memory
from flowseg.representation.masks import MaskConfig

log = logging.getLogger(__name__)


@dataclass
class Segmentation:
    """Labels of one image, with the network's outputs they came from.

    Attributes
    ----------
    labels : (H, W) ndarray of uint32
    flows : (2, H, W) ndarray of float32
        ``dy, dx`` in ``FLOW_SCALE`` units.
    cellprob : (H, W) ndarray of float32
        Logits.
    diameter : float
        The cell diameter the image was run for: the one given, or the estimate (the model's
        training diameter when too few cells were found to estimate one).
    """

    labels: npt.NDArray[np.uint32]
    flows: npt.NDArray[np.float32]
    cellprob: npt.NDArray[np.float32]
    diameter: float = 0.0


def training_diameter(net: Model) -> float:
    """Return the median cell diameter, in pixels, that the model was trained at (30 if unknown).

    Parameters
    ----------
    net : FlowUNet or OnnxModel

    Returns
    -------
    diameter : float
    """
    return float(net.metadata.get("diameter") or 30.0)


def check_scale(shape: tuple[int, ...], scale: float, diameter: float) -> None:
    """Refuse a rescaled run whose output would not fit in memory, before starting it."""
    pixels = shape[0] * shape[1] * scale * scale
    if pixels > MAX_RESCALED_PIXELS:
        raise InputError(f"diameter {diameter:g} resizes this {shape[0]} x {shape[1]} image by "
                         f"{scale:.3g}x to {pixels / 1e6:.0f} MP (at most "
                         f"{MAX_RESCALED_PIXELS / 1e6:.0f} MP); give a larger diameter")
    if min(shape) * scale < 1:
        raise InputError(f"diameter {diameter:g} shrinks this {shape[0]} x {shape[1]} image to "
                         f"less than one pixel; give a smaller diameter")


# The network's output at a rescaled size is held in memory (12 bytes a pixel; the rescaled input
# is read tile by tile, not held): beyond this many pixels the request is refused with a message.
MAX_RESCALED_PIXELS = 400_000_000


# ``MaskConfig.min_size`` counts pixels at the network's scale, where cells are about the training
# diameter; masks made at the image's own scale drop pieces under min_size / scale^2 pixels, but
# never under this many. Chosen on synthetic tuning images (seeds 800,100+, true diameter given):
# a fixed 15 px lost small cells when enlarged 4x (0.5x H&E 0.942, IHC 0.955, skin 0.808); the
# scaled size with a floor of 3 / 5 / 8 gave 0.976 / 0.976 / 0.968, 0.981 / 0.979 / 0.974 and
# 0.975 / 0.971 / 0.954, against 0.961 -> 0.959 on 8-px nuclei and 0.977 -> 0.969 / 0.970 / 0.973
# on 0.5x nuclei; shrunk images (100-150 px cells, 2x cytoplasm) equal or better (0.935 -> 0.943).
MIN_SIZE_FLOOR = 5


def scale_min_size(min_size: int, scale: float) -> int:
    """Smallest mask, in pixels of the image, for an image the network saw ``scale`` times enlarged.

    Examples
    --------
    >>> scale_min_size(15, 1.0), scale_min_size(15, 4.0), scale_min_size(15, 0.5)
    (15, 5, 60)
    """
    if abs(scale - 1.0) <= 1e-3 or min_size <= 0:
        return min_size
    return max(min(MIN_SIZE_FLOOR, min_size), round(min_size / scale**2))


def run_at_scale(net: Model, image: PreparedView | npt.NDArray[np.float32], scale: float,
                 tiles: TileConfig, config: MaskConfig, plan: Execution,
                 diameter: float, *, release: bool = True) -> Segmentation:
    """Run the network at ``scale``, bring its output back to the image's size, make masks.

    Parameters
    ----------
    net : FlowUNet or OnnxModel
    image : PreparedView or (3, H, W) ndarray of float32
        The network's input, normalised.
    scale : float
        Resize factor (training diameter over cell diameter).
    tiles : TileConfig
    config : MaskConfig
        ``min_size`` counts pixels at the network's scale (:func:`scale_min_size`).
    plan : Execution
    diameter : float
        Recorded in the result.
    release : bool
        Give ONNX Runtime's arena back before the masks (:func:`runtime.release_memory`); the
        automatic diameter's crops of a large image keep it, as the run that follows needs it
        again (releasing after each of the four cost 0.15 s of 1.17 at 2048^2).

    Returns
    -------
    segmentation : Segmentation
    """
    shape = image.shape[1:]
    source: PreparedView | ResizedView | npt.NDArray[np.float32] = image
    if abs(scale - 1.0) > 1e-3:
        check_scale(shape, scale, diameter)
        # Resized tile by tile as the network reads it: the resized copy is never held.
        source = ResizedView(image, scaled_shape(shape, scale))
    output = run_tiled(net, source, config=tiles, execution=plan)
    if release:
        release_memory(net)
    if output.shape[1:] != shape:
        output = resize_to(output, shape)
    config = replace(config, min_size=scale_min_size(config.min_size, scale))
    labels = masks_in_blocks(output[:2], output[2], config=config, margin=mask_margin(MARGIN, scale))
    return Segmentation(labels, output[:2], output[2], diameter)


def mask_margin(margin: int, scale: float) -> int:
    """Margin of a masks block, in image pixels, for an image run ``scale`` times resized.

    Cells are about the training diameter at the network's scale: shrunk images (scale < 1) hold
    cells larger in the image's own pixels, so the margin grows with them; it never shrinks.

    Examples
    --------
    >>> mask_margin(128, 2.0), mask_margin(128, 0.5)
    (128, 256)
    """
    return int(np.ceil(margin / min(scale, 1.0)))


def network_scale(shape: tuple[int, int], scale: float) -> tuple[int, int]:
    """Return the image's size at the network's scale (its own when ``scale`` is 1 within 0.1 %)."""
    return tuple(shape) if abs(scale - 1.0) <= 1e-3 else scaled_shape(shape, scale)  # type: ignore[return-value]


@dataclass(frozen=True)
class RegionPlan:
    """Where the network runs so that its output over one region is the whole image's run's.

    Attributes
    ----------
    full : (int, int)
        The image's size at the network's scale.
    needed : (int, int, int, int)
        ``y0, y1, x0, x1`` at the network's scale that the region's output interpolates from.
    window : (int, int, int, int)
        What runs: ``needed`` with the tiles' context on every side (clipped to the image),
        starting on the network's stride grid, as every tile of a whole run does.
    reads : (int, int, int, int)
        The part of the image (its own pixels) that the window is resized from.
    """

    full: tuple[int, int]
    needed: tuple[int, int, int, int]
    window: tuple[int, int, int, int]
    reads: tuple[int, int, int, int]


def plan_region(shape: tuple[int, int], scale: float, region: tuple[int, int, int, int],
                context: int, stride: int) -> RegionPlan:
    """Plan the network's run for ``region`` (``y0, y1, x0, x1`` of an image of ``shape``).

    The tiles' context covers the network's receptive field (:class:`TileConfig`), so outputs
    ``context`` pixels inside a window's cut edges are those of a whole-image run, to float
    rounding; at the image's own edges the window meets them as a whole run does.
    """
    full = network_scale(shape, scale)
    resized = full != tuple(shape)
    context = -(-context // stride) * stride
    needed, window, reads = [], [], []
    for axis, (start, stop) in enumerate(((region[0], region[1]), (region[2], region[3]))):
        n, size = shape[axis], full[axis]
        low, high = source_span(start, stop, size, n) if resized else (start, stop)
        w0, w1 = max(0, low - context) // stride * stride, min(size, high + context)
        needed += [low, high]
        window += [w0, w1]
        reads += list(source_span(w0, w1, n, size) if resized else (w0, w1))
    return RegionPlan(full, tuple(needed), tuple(window), tuple(reads))  # type: ignore[arg-type]


def run_region(net: Model, image: PreparedView, scale: float, region: tuple[int, int, int, int],
               tiles: TileConfig, plan: Execution) -> npt.NDArray[np.float32]:
    """Return the network's output over one region of an image, as a whole-image run has it.

    Parameters
    ----------
    net : FlowUNet or OnnxModel
    image : PreparedView
        The whole image (its raw array may be a :class:`~flowseg.inference.blocks.Placed` part
        holding only :func:`plan_region`'s ``reads``).
    scale : float
    region : (int, int, int, int)
        ``y0, y1, x0, x1`` in the image's pixels.
    tiles : TileConfig
    plan : Execution

    Returns
    -------
    output : (3, y1 - y0, x1 - x0) ndarray of float32
        Flows and cell-probability logit, brought back to the image's scale.
    """
    where = plan_region(image.shape[1:], scale, region, tiles.context, net.stride)
    source = image if where.full == tuple(image.shape[1:]) else ResizedView(image, where.full)
    out = run_tiled(net, Window(source, where.window), config=tiles, execution=plan)
    (ny0, ny1, nx0, nx1), (wy0, _, wx0, _) = where.needed, where.window
    part = out[:, ny0 - wy0: ny1 - wy0, nx0 - wx0: nx1 - wx0]
    if where.full == tuple(image.shape[1:]):
        return np.ascontiguousarray(part)
    back = ResizedView(Placed(part, (ny0, nx0), where.full), image.shape[1:])
    return back[:, region[0]:region[1], region[2]:region[3]]
