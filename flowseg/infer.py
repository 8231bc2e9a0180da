"""Tiled inference: any image size, bounded memory, and the same answer however it is cut.

The image is covered by overlapping tiles, run through the network in batches, and each tile's
output is added into a preallocated result after weighting by a separable window. Three rules
make the result independent of the tiling (the tile size, the batch, whole image or not, a Dask
block or one process):

1. Context is thrown away. Every tile reaches ``TileConfig.context`` pixels beyond the part of it
   that is kept (its core), except at the image's top and left edges, which every run meets
   the same way; past the bottom and right edges the image is extended by mirroring by as much
   (for a whole-image run too), so that every kept pixel saw the same neighbourhood whether the
   image ran whole or in pieces.
2. Tiles sit on the network's grid. Every tile starts at a multiple of the network's stride, so
   the pooling windows of every tile line up with those of a whole-image run.
3. Cores blend. Neighbouring cores overlap by ``TileConfig.ramp`` pixels, where the windows ramp
   linearly; they are normalised per axis so that the weights at every pixel add up to exactly 1.

The network itself pools nothing over the whole input (``NetConfig.style`` is off), so the only
differences left come from beyond the context: measured in benchmarks/RESULTS.md.

Memory depends on the tile size and batch only: tiles go to the device a batch at a time and
their outputs come straight back. Runtime, precision and memory layout come from an
:class:`~flowseg.execution.Execution`: float16 autocast on CUDA, float32 on the CPU (through ONNX
Runtime where it is installed). torch is imported only where torch runs the network.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError
from flowseg.execution import Execution, plan_execution
from flowseg.normalize import PreparedView
from flowseg.runtime import OnnxModel, onnx_runner

if TYPE_CHECKING:
    from flowseg.net import FlowUNet

OUT_CHANNELS = 3  # dy, dx, cell-probability logit (as flowseg.net.OUT_CHANNELS)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileConfig:
    """How an image is cut into tiles and run.

    Attributes
    ----------
    tile : int
        Largest side of the part of a tile that is kept (its core), in pixels; the network sees
        ``tile + 2 * context`` (rounded up to its stride), and memory follows that. Cores are
        made as small as covering the image allows; an image that fits in ``batch`` tiles runs
        whole, as one tile of its own shape.
    context : int
        Pixels at each tile edge that are computed but not kept (rounded up to a multiple of
        the network's stride).
    ramp : int
        Overlap of neighbouring kept cores, over which they blend.
    batch : int
        Tiles per forward pass.
    flip_tta : bool
        Also run the tiles mirrored vertically, horizontally and both, and average (4x work).
    """

    tile: int = 1024
    context: int = 96
    ramp: int = 32
    batch: int = 1
    flip_tta: bool = False

    def __post_init__(self) -> None:
        if self.batch < 1 or self.context < 0 or self.ramp < 1 or self.tile < 2 * self.ramp + 64:
            raise InputError(
                f"invalid tiling: tile={self.tile} (at least 2 x ramp + 64), "
                f"context={self.context} (>= 0), ramp={self.ramp} (>= 1), batch={self.batch} (>= 1)")


def tile_starts(length: int, core: int, ramp: int, stride: int = 1) -> list[int]:
    """Return core start positions on the ``stride`` grid that cover ``[0, length)``.

    Parameters
    ----------
    length : int
        Image side.
    core : int
        Kept part of a tile, a multiple of ``stride``.
    ramp : int
        Least overlap between neighbouring cores.
    stride : int
        Starts are multiples of this.

    Returns
    -------
    starts : list of int
        The first is 0; the last core reaches ``length`` or beyond (by less than ``stride``);
        neighbours overlap by at least ``ramp``.

    Examples
    --------
    >>> tile_starts(1000, 512, 64)
    [0, 244, 488]
    >>> tile_starts(1000, 512, 64, stride=32)
    [0, 256, 512]
    >>> tile_starts(300, 512, 64)
    [0]
    """
    if length <= core:
        return [0]
    if stride == 1:
        count = math.ceil((length - ramp) / (core - ramp))
        return [round(i * (length - core) / (count - 1)) for i in range(count)]
    # Evenly spread, then moved to the grid: a gap grows by less than ``stride`` in rounding.
    last = -(-(length - core) // stride) * stride
    count = math.ceil(last / (core - ramp - stride)) + 1
    return [round(i * last / (count - 1) / stride) * stride for i in range(count)]


def tapers(length: int, starts: list[int], core: int, ramp: int) -> list[npt.NDArray[np.float32]]:
    """Return the 1-D blending weights of every core along one axis; they sum to 1 everywhere.

    Each core's raw weight ramps linearly over ``ramp`` pixels at its edges that face another
    core, and is 1 elsewhere; dividing by the sum of all raw weights makes any number of
    overlapping cores add up to exactly 1, and the 2-D weights (products of the row and column
    weights) then do too.

    Parameters
    ----------
    length : int
        Extent covered: at least ``starts[-1] + min(core, length)``.
    starts : list of int
        From :func:`tile_starts`.
    core : int
    ramp : int

    Returns
    -------
    weights : list of (min(core, length),) ndarray of float32

    Examples
    --------
    >>> w = tapers(100, [0, 36], 64, 16)
    >>> float(w[0][0]), float(w[0][-1] + w[1][64 - 36 - 1])
    (1.0, 1.0)
    """
    size = min(core, length)
    slope = np.minimum(1.0, (np.arange(size) + 0.5) / ramp)
    raw = []
    for i in range(len(starts)):
        w = np.ones(size)
        if i > 0:  # a neighbour before: ramp up
            w = np.minimum(w, slope)
        if i < len(starts) - 1:  # a neighbour after: ramp down
            w = np.minimum(w, slope[::-1])
        raw.append(w)
    total = np.zeros(max(length, starts[-1] + size))
    for start, w in zip(starts, raw, strict=True):
        total[start: start + size] += w
    return [(w / total[start: start + size]).astype(np.float32)
            for start, w in zip(starts, raw, strict=True)]


@dataclass(frozen=True)
class _Axis:
    """The tiling of one image axis: core starts, core size, weights."""

    starts: list[int]
    core: int
    weights: list[npt.NDArray[np.float32]]

    @classmethod
    def plan(cls, length: int, tile: int, ramp: int, stride: int) -> _Axis:
        """Cover ``length`` with cores of at most ``tile``, as small as covering allows."""
        most = max(tile, ramp + 2 * stride)
        count = len(tile_starts(length, most, ramp, stride))
        # The fewest tiles of the largest size, then the smallest cores that still cover.
        core = most
        while core - stride >= ramp + 2 * stride and \
                len(tile_starts(length, core - stride, ramp, stride)) == count:
            core -= stride
        starts = tile_starts(length, core, ramp, stride)
        return cls(starts, core, tapers(length, starts, core, ramp))


def run_tiled(
    net: FlowUNet | OnnxModel, image: npt.NDArray[np.floating] | PreparedView, *,
    config: TileConfig = TileConfig(), execution: Execution | None = None,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Run the network over an image of any size, tile by tile.

    Parameters
    ----------
    net : FlowUNet or OnnxModel
    image : (3, H, W) ndarray or PreparedView
        Normalised network input (``flowseg.normalize.prepare_image``), or a view that
        normalises each tile as it is cut.
    config : TileConfig
    execution : Execution, optional
        Device, precision and layout; :func:`flowseg.execution.plan_execution` when omitted.
    out : (3, H, W) ndarray of float32, optional
        Where to accumulate (a memory map, say); must be zero-filled.

    Returns
    -------
    output : (3, H, W) ndarray of float32
        ``dy, dx`` in ``FLOW_SCALE`` units and the cell-probability logit.

    Raises
    ------
    ValueError
        If the image is not ``(C, H, W)`` with the network's channel count.
    """
    if image.ndim != 3 or image.shape[0] != net.in_channels:
        raise InputError(f"image must be ({net.in_channels}, H, W), got {image.shape}")
    execution = execution or plan_execution("auto")
    net = execution.place(net).eval()
    height, width = image.shape[1:]
    # Context rounded up to the stride: every tile then starts on the grid of a whole-image run.
    stride = net.stride
    context = -(-config.context // stride) * stride
    tile = -(-(config.tile + 2 * context) // stride) * stride
    whole_h, whole_w = (-(-(n + context) // stride) * stride for n in (height, width))
    if whole_h * whole_w <= config.batch * tile * tile:
        # The mirrored image fits in one batch of tiles: one tile of its own shape, no seams.
        rows = _Axis([0], height, [np.ones(height, np.float32)])
        cols = _Axis([0], width, [np.ones(width, np.float32)])
    else:
        rows = _Axis.plan(height, config.tile, config.ramp, stride)
        cols = _Axis.plan(width, config.tile, config.ramp, stride)
    if out is None:
        out = np.zeros((OUT_CHANNELS, height, width), np.float32)
    size_h = -(-(rows.core + (2 if len(rows.starts) > 1 else 1) * context) // stride) * stride
    size_w = -(-(cols.core + (2 if len(cols.starts) > 1 else 1) * context) // stride) * stride
    grid = [(i, j) for i in range(len(rows.starts)) for j in range(len(cols.starts))]
    for chunk in _chunks(grid, config.batch):
        origins = [(_origin(rows.starts[i], context), _origin(cols.starts[j], context))
                   for i, j in chunk]
        batch = np.stack([_cut(image, y, x, size_h, size_w) for y, x in origins])
        result = _forward(net, batch, execution, config.flip_tta)
        for (i, j), (oy, ox), tile_out in zip(chunk, origins, result, strict=True):
            y, x = rows.starts[i], cols.starts[j]
            h, w = min(rows.core, height - y), min(cols.core, width - x)
            weight = rows.weights[i][:h, None] * cols.weights[j][None, :w]
            out[:, y: y + h, x: x + w] += tile_out[:, y - oy: y - oy + h, x - ox: x - ox + w] * weight
    return out


def _origin(start: int, context: int) -> int:
    """Where a tile whose core starts at ``start`` begins: ``context`` before, or at the edge.

    A tile never reaches above or left of the image: there, like a whole-image run, it meets the
    image's own edge. Below and right it reaches ``context`` past the image, mirrored.
    """
    return start - context if start > 0 else 0


def _chunks(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for k in range(0, len(items), size):
        yield items[k: k + size]


def mirror_indices(start: int, size: int, length: int) -> npt.NDArray[np.intp]:
    """Fold indices ``start .. start + size - 1`` into ``[0, length)`` by mirroring.

    Parameters
    ----------
    start : int
        May be negative.
    size : int
    length : int

    Returns
    -------
    indices : (size,) ndarray of intp

    Examples
    --------
    >>> mirror_indices(-2, 7, 3).tolist()
    [2, 1, 0, 1, 2, 1, 0]
    """
    if length == 1:
        return np.zeros(size, np.intp)
    period = 2 * (length - 1)
    folded = np.mod(np.arange(start, start + size), period)
    return np.where(folded < length, folded, period - folded).astype(np.intp)


def _cut(image: npt.NDArray[np.floating] | PreparedView, y: int, x: int, tile_h: int,
         tile_w: int) -> npt.NDArray[np.float32]:
    """Cut a tile at ``(y, x)``; whatever lies outside the image is its mirror image."""
    height, width = image.shape[1:]
    rows, cols = mirror_indices(y, tile_h, height), mirror_indices(x, tile_w, width)
    y0, y1, x0, x1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    window = np.asarray(image[:, y0:y1, x0:x1], np.float32)
    inside = 0 <= y and y + tile_h <= height and 0 <= x and x + tile_w <= width
    return window if inside else window[:, rows - y0][:, :, cols - x0]


def _forward(net: FlowUNet | OnnxModel, batch: npt.NDArray[np.float32], execution: Execution,
             flip_tta: bool) -> npt.NDArray[np.float32]:
    fast = onnx_runner(net) if execution.runtime == "onnxruntime" else None

    def run(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        return fast(x) if fast is not None else _torch_forward(net, x, execution)
    if not flip_tta:
        return run(batch)
    total = np.zeros((batch.shape[0], OUT_CHANNELS, *batch.shape[2:]), np.float32)
    for axes in ((), (2,), (3,), (2, 3)):
        z = run(np.ascontiguousarray(np.flip(batch, axes)) if axes else batch)
        z = np.flip(z, axes) if axes else z
        for axis in axes:  # mirroring rows negates dy, columns negate dx
            z[:, axis - 2] = -z[:, axis - 2]
        total += z / 4
    return total


def _torch_forward(net: FlowUNet | OnnxModel, batch: npt.NDArray[np.float32],
                   execution: Execution) -> npt.NDArray[np.float32]:
    import torch

    if isinstance(net, OnnxModel):
        raise InputError("an ONNX export runs in ONNX Runtime only: load the checkpoint for torch")
    x = execution.prepare(torch.from_numpy(batch))
    dtype = execution.autocast_dtype
    with torch.inference_mode(), torch.autocast(execution.device, dtype=dtype,
                                                enabled=dtype is not None):
        return net(x).float().cpu().numpy()
