"""Tiled inference: any image size, bounded memory, and the same answer however it is cut.

The image is covered by overlapping tiles, run through the network in batches, and each tile's
output is added into a preallocated result after weighting by a separable window. Three rules
make the result independent of the tiling (the tile size, the batch, whole image or not, a Dask
block or one process):

1. Context is thrown away. The image lies on a background of zeros (``TileConfig.border``
   pixels of it shown on each side, as training crops that reach past their image are padded),
   and every tile reaches ``TileConfig.context`` pixels beyond the part of it that is kept (its
   core), except at the background's top and left edges, which every run meets the same way;
   past the bottom and right edges there is background by as much (for a whole-image run too),
   so that every kept pixel saw the same neighbourhood whether the image ran whole or in
   pieces. (With ``border=0`` the image is extended by mirroring instead.)
2. Tiles sit on the network's grid. Every tile starts at a multiple of the network's stride, so
   the pooling windows of every tile line up with those of a whole-image run.
3. Cores blend. Neighbouring cores overlap by ``TileConfig.ramp`` pixels, where the windows ramp
   linearly; they are normalised per axis so that the weights at every pixel add up to exactly 1.

The network itself pools nothing over the whole input (``NetConfig.style`` is off), and the default
context (224 px) covers its receptive field: an output pixel changes by at most 2e-6 (float
rounding) whatever lies further than that, so tiles of any size give the whole run's output to
float rounding and, measured, the same labels (benchmarks/bench_tiling.py; with 128 px of context
outputs moved by up to 0.28 and a few cells in a thousand changed).

Memory depends on the tile size and batch only: tiles go to the device a batch at a time and
their outputs come straight back. Runtime, precision and memory layout come from an
:class:`~flowseg.model.execution.Execution`: float16 autocast on CUDA, float32 on the CPU (through ONNX
Runtime where it is installed). torch is imported only where torch runs the network.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError
from flowseg.inference.normalize import PreparedView, ResizedView
from flowseg.model.execution import Execution, plan_execution
from flowseg.model.runtime import OnnxModel, onnx_runner

if TYPE_CHECKING:
    from flowseg.model.net import FlowUNet

OUT_CHANNELS = 3  # dy, dx, cell-probability logit (as flowseg.model.net.OUT_CHANNELS)
# What the tiles are cut from: the normalised input, or a view that normalises (and resizes) the
# part each tile reads.
Source: TypeAlias = "npt.NDArray[np.floating] | PreparedView | ResizedView"

log = logging.getLogger(__name__)
# Background shown past an image's edges beyond this is work with nothing in it (and a border of
# 100,000 px ran for minutes on a 64-px image).
MAX_BORDER = 1024


@dataclass(frozen=True)
class TileConfig:
    """How an image is cut into tiles and run.

    Attributes
    ----------
    tile : int
        Largest side of the part of an inner tile that is kept (its core), in pixels; the
        network sees ``tile + 2 * context`` (rounded up to its stride), and memory follows that.
        Edge tiles keep ``context`` pixels more, having no context to keep beyond the image.
        Tiles are as few as this allows, then as small as that count allows
        (:func:`plan_axis`); an image that fits in ``batch`` tiles runs whole, as one tile of
        its own shape.
    context : int
        Pixels at each tile edge that are computed but not kept (rounded up to a multiple of
        the network's stride). The default covers the bundled network's receptive field
        (measured: 192 px moves outputs by up to 1e-3, 224 px by 2e-6, float rounding); less
        is faster but lets the tiling change a few cells.
    ramp : int
        Overlap of neighbouring kept cores, over which they blend.
    batch : int
        Tiles per forward pass.
    flip_tta : bool
        Also run the tiles mirrored vertically, horizontally and both, and average (4x work).
    border : int
        Pixels of background (zeros of the normalised input) shown beyond every image edge
        (rounded up to the network's stride); everything past them is background too. Training
        crops that reach past their image are padded so, and a cell cut by the image's edge then
        looks to the network like one it was trained on: its flows point to the part inside.
        0 instead extends the image by mirroring, as flowseg did before; there cells cut by the
        edge get flows pointing out of the image and fail the flow check.
    """

    tile: int = 1024
    context: int = 224
    ramp: int = 32
    batch: int = 1
    flip_tta: bool = False
    border: int = 32

    def __post_init__(self) -> None:
        if self.batch < 1 or self.context < 0 or self.ramp < 1 or self.tile < 2 * self.ramp + 64 \
                or not 0 <= self.border <= MAX_BORDER:
            raise InputError(
                f"invalid tiling: tile={self.tile} (at least 2 x ramp + 64), "
                f"context={self.context} (>= 0), ramp={self.ramp} (>= 1), batch={self.batch} "
                f"(>= 1), border={self.border} (0 to {MAX_BORDER})")


@dataclass(frozen=True)
class AxisTiles:
    """How one image axis is cut: where each tile starts, its size, the part kept and its weights.

    Attributes
    ----------
    origins : list of int
        Tile starts, multiples of the network's stride; the first is 0.
    size : int
        Tile extent (the same for every tile), a multiple of the stride.
    cores : list of (int, int)
        The kept part of each tile, ``[start, stop)`` in image coordinates; together they cover
        the axis, and neighbours overlap by ``ramp`` pixels.
    weights : list of ndarray of float32
        Blending weight of each core's pixels; they add up to 1 at every position of the axis.
    """

    origins: list[int]
    size: int
    cores: list[tuple[int, int]]
    weights: list[npt.NDArray[np.float32]]


def plan_axis(length: int, tile: int, context: int, ramp: int, stride: int = 1) -> AxisTiles:
    """Cut one axis into the fewest tiles of ``tile + 2 * context`` pixels that keep every rule.

    Every kept pixel has ``context`` pixels of the tile on each side, except towards the image's
    start, and the last tile reaches ``context`` past the end (mirrored, or background), as a whole run
    does; tiles start on the ``stride`` grid. The edge tiles keep ``context`` pixels more than
    the others, since nothing beyond the image's start needs context.

    Parameters
    ----------
    length : int
        Image side.
    tile : int
        Largest kept part of an inner tile; at least ``2 * ramp + stride``.
    context : int
        A multiple of ``stride``.
    ramp : int
        Overlap of neighbouring cores, over which their weights ramp linearly.
    stride : int

    Returns
    -------
    tiles : AxisTiles

    Examples
    --------
    >>> plan = plan_axis(2048, 1024, 96, 32, stride=32)
    >>> plan.origins, plan.size, plan.cores
    ([0, 960], 1184, [(0, 1088), (1056, 2048)])
    """
    whole = -(-(length + context) // stride) * stride
    size = -(-(tile + 2 * context) // stride) * stride
    if whole <= size:
        return AxisTiles([0], whole, [(0, length)], [np.ones(length, np.float32)])

    def steps(size: int) -> tuple[int, int, int]:
        """Largest step between tile starts, the last start, and the count, for tiles of size."""
        most = (size - 2 * context - ramp) // stride * stride
        last = -(-(whole - size) // stride) * stride
        return most, last, -(-last // most) + 1

    count = steps(size)[2]
    # As few tiles as the largest size allows, then as small as that count allows.
    while size - stride - 2 * context - ramp >= ramp + stride and steps(size - stride)[2] == count:
        size -= stride
    most, last, _ = steps(size)
    origins = [min(i * most, last) for i in range(count)]
    # Neighbours blend over ``ramp`` pixels in the middle of the part both may keep, each blend
    # at least ``ramp`` past the one before (steps of ``most`` >= ``ramp`` + ``stride`` allow it).
    blends: list[int] = []
    for before, after in itertools.pairwise(origins):
        low, high = after + context, min(before + size - context, length)
        middle = low + (high - low - ramp) // 2
        blends.append(min(max(middle, blends[-1] + ramp if blends else 0), high - ramp))
    up = ((np.arange(ramp) + 0.5) / ramp).astype(np.float32)
    cores, weights = [], []
    for i in range(count):
        start = blends[i - 1] if i > 0 else 0
        stop = blends[i] + ramp if i < count - 1 else length
        w = np.ones(stop - start, np.float32)
        if i > 0:
            w[:ramp] = up
        if i < count - 1:
            w[-ramp:] = 1 - up
        cores.append((start, stop))
        weights.append(w)
    return AxisTiles(origins, size, cores, weights)


def run_tiled(
    net: FlowUNet | OnnxModel, image: Source, *,
    config: TileConfig = TileConfig(), execution: Execution | None = None,
    out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Run the network over an image of any size, tile by tile.

    Parameters
    ----------
    net : FlowUNet or OnnxModel
    image : (3, H, W) ndarray, PreparedView or ResizedView
        Normalised network input (``flowseg.inference.normalize.prepare_image``), or a view that
        normalises (and resizes) each tile as it is cut.
    config : TileConfig
    execution : Execution, optional
        Device, precision and layout; :func:`flowseg.model.execution.plan_execution` when omitted.
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
    stride = net.stride
    border = -(-config.border // stride) * stride
    if out is None:
        out = np.zeros((OUT_CHANNELS, *image.shape[1:]), np.float32)
    # Tiles are planned over the image on a background canvas ``border`` wider on each side;
    # what they keep is written back at the image's own coordinates.
    source = _Canvas(image, border) if border else image
    _run_plan(net, source, config, execution, stride, out, border)
    return out


def _run_plan(net: FlowUNet | OnnxModel, image: Source | _Canvas,
              config: TileConfig, execution: Execution, stride: int,
              out: npt.NDArray[np.float32], shift: int) -> None:
    """Tile ``image``, run the network, add the kept cores into ``out`` moved by ``-shift``."""
    # The kept cores must cover the image, which lies at [shift, shift + n) of a canvas; past
    # the image the canvas is background all the way, so tiles need reach only ``context``
    # beyond the image's end, not beyond the border that follows it (at 4096^2: 4 x 4 tiles in
    # place of 5 x 5).
    height, width = (n - shift for n in image.shape[1:])
    # Context rounded up to the stride: every tile then starts on the grid of a whole-image run.
    context = -(-config.context // stride) * stride
    tile = -(-(config.tile + 2 * context) // stride) * stride
    whole_h, whole_w = (-(-(n + context) // stride) * stride for n in (height, width))
    if whole_h * whole_w <= config.batch * tile * tile:
        # The extended image fits in one batch of tiles: one tile of its own shape, no seams.
        rows = plan_axis(height, height, context, config.ramp, stride)
        cols = plan_axis(width, width, context, config.ramp, stride)
    else:
        rows = plan_axis(height, config.tile, context, config.ramp, stride)
        cols = plan_axis(width, config.tile, context, config.ramp, stride)
    grid = [(i, j) for i in range(len(rows.origins)) for j in range(len(cols.origins))]
    for chunk in _chunks(grid, config.batch):
        origins = [(rows.origins[i], cols.origins[j]) for i, j in chunk]
        batch = np.stack([_cut(image, y, x, rows.size, cols.size) for y, x in origins])
        result = _forward(net, batch, execution, config.flip_tta)
        for (i, j), (oy, ox), tile_out in zip(chunk, origins, result, strict=True):
            # The core, cut to the part that lies on the image (all of it when shift is 0).
            y0, y1 = (min(max(v, shift), height) for v in rows.cores[i])
            x0, x1 = (min(max(v, shift), width) for v in cols.cores[j])
            if y1 <= y0 or x1 <= x0:
                continue
            wy = rows.weights[i][y0 - rows.cores[i][0]: y1 - rows.cores[i][0]]
            wx = cols.weights[j][x0 - cols.cores[j][0]: x1 - cols.cores[j][0]]
            out[:, y0 - shift: y1 - shift, x0 - shift: x1 - shift] += (
                tile_out[:, y0 - oy: y1 - oy, x0 - ox: x1 - ox] * (wy[:, None] * wx[None, :]))


class _Canvas:
    """An image on a background of zeros: ``border`` pixels on each side, and beyond.

    Sliced as ``canvas[:, y0:y1, x0:x1]`` with any bounds (those past the canvas read zeros too),
    which :func:`_cut` then needs no mirroring for.
    """

    def __init__(self, image: Source, border: int) -> None:
        self.image, self.border = image, border
        channels, height, width = image.shape
        self.shape = (channels, height + 2 * border, width + 2 * border)
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> npt.NDArray[np.float32]:
        _, rows, cols = key
        (y0, y1), (x0, x1) = (rows.start, rows.stop), (cols.start, cols.stop)
        height, width = self.image.shape[1:]
        b = self.border
        iy0, iy1 = max(y0 - b, 0), min(y1 - b, height)
        ix0, ix1 = max(x0 - b, 0), min(x1 - b, width)
        if (iy0, iy1, ix0, ix1) == (y0 - b, y1 - b, x0 - b, x1 - b):  # all on the image
            return np.asarray(self.image[:, iy0:iy1, ix0:ix1], np.float32)
        window = np.zeros((self.shape[0], y1 - y0, x1 - x0), np.float32)
        if iy0 < iy1 and ix0 < ix1:
            window[:, iy0 + b - y0: iy1 + b - y0, ix0 + b - x0: ix1 + b - x0] = np.asarray(
                self.image[:, iy0:iy1, ix0:ix1], np.float32)
        return window


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


def _cut(image: Source | _Canvas, y: int, x: int, tile_h: int,
         tile_w: int) -> npt.NDArray[np.float32]:
    """Cut a tile at ``(y, x)``; whatever lies outside the image is its mirror image."""
    if isinstance(image, _Canvas):  # background all round
        return image[:, y: y + tile_h, x: x + tile_w]
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


