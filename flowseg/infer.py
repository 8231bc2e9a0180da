"""Tiled inference: any image size, bounded memory, no seams.

The image is cut into overlapping tiles of one size, run through the network in batches, and each
tile's output is added into a preallocated result after weighting by a separable taper window. The
windows ramp linearly near tile edges and are normalised per axis, so that at every pixel the
weights of the tiles covering it add up to exactly 1: no weight image and no division over the
image are needed, and tile borders leave no seam.

GPU memory depends on the tile size and batch only: tiles go to the device a batch at a time and
their outputs come straight back. The precision is decided here, once: float16 autocast on CUDA,
float32 on the CPU. (On this project's 2-core AMD EPYC, bfloat16 autocast ran a batch twice as
fast; it is not used until its effect on the masks is measured: see ``benchmarks/RESULTS.md``.)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional as F

from flowseg.net import OUT_CHANNELS, FlowUNet, pick_device
from flowseg.normalize import PreparedView

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TileConfig:
    """How an image is cut into tiles and run.

    Attributes
    ----------
    tile : int
        Tile side in pixels (rounded up to a multiple of the network's stride). An image with no
        more pixels than ``batch`` tiles runs whole, as one tile of its own shape.
    overlap : float
        Least fraction of a tile shared with each neighbour, at least 0.1.
    batch : int
        Tiles per forward pass.
    flip_tta : bool
        Also run the tiles mirrored vertically, horizontally and both, and average (4x work).
    """

    tile: int = 512
    overlap: float = 0.125
    batch: int = 4
    flip_tta: bool = False

    def __post_init__(self) -> None:
        if self.tile < 16 or not 0.1 <= self.overlap < 0.5 or self.batch < 1:
            raise ValueError(f"invalid tiling: tile={self.tile} (>= 16), overlap={self.overlap} "
                             f"(0.1 to 0.5), batch={self.batch} (>= 1)")


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Return tile start positions that cover ``[0, length)``, evenly spread.

    Parameters
    ----------
    length : int
        Image side.
    tile : int
        Tile side.
    overlap : int
        Least overlap between neighbours, in pixels.

    Returns
    -------
    starts : list of int
        One start (0) when the image fits in a tile; otherwise the first is 0, the last
        ``length - tile``, and neighbours overlap by at least ``overlap``.

    Examples
    --------
    >>> tile_starts(1000, 512, 64)
    [0, 244, 488]
    >>> tile_starts(300, 512, 64)
    [0]
    """
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tapers(length: int, starts: list[int], tile: int, margin: int) -> list[npt.NDArray[np.float32]]:
    """Return the 1-D blending weights of every tile along one axis; they sum to 1 everywhere.

    Each tile's raw weight ramps linearly over ``margin`` pixels at its edges inside the image
    (not at the image's own edges) and is 1 elsewhere; dividing by the sum of all raw weights
    makes any number of overlapping tiles add up to exactly 1, and the 2-D weights (products of
    the row and column weights) then do too.

    Parameters
    ----------
    length : int
        Image side.
    starts : list of int
        From :func:`tile_starts`.
    tile : int
    margin : int
        Ramp length in pixels.

    Returns
    -------
    weights : list of (min(tile, length),) ndarray of float32

    Examples
    --------
    >>> w = tapers(100, [0, 36], 64, 16)
    >>> float(w[0][0]), float(w[0][-1] + w[1][64 - 36 - 1])
    (1.0, 1.0)
    """
    size = min(tile, length)
    ramp = np.minimum(1.0, (np.arange(size) + 0.5) / margin)
    raw = []
    for i in range(len(starts)):
        w = np.ones(size)
        if i > 0:  # a neighbour before: ramp up
            w = np.minimum(w, ramp)
        if i < len(starts) - 1:  # a neighbour after: ramp down
            w = np.minimum(w, ramp[::-1])
        raw.append(w)
    total = np.zeros(length)
    for start, w in zip(starts, raw, strict=True):
        total[start: start + size] += w
    return [(w / total[start: start + size]).astype(np.float32)
            for start, w in zip(starts, raw, strict=True)]


def run_tiled(
    net: FlowUNet, image: npt.NDArray[np.floating] | PreparedView, *,
    config: TileConfig = TileConfig(),
    device: torch.device | None = None, out: npt.NDArray[np.float32] | None = None,
) -> npt.NDArray[np.float32]:
    """Run the network over an image of any size, tile by tile.

    Parameters
    ----------
    net : FlowUNet
    image : (3, H, W) ndarray or PreparedView
        Normalised network input (``flowseg.normalize.prepare_image``), or a view that
        normalises each tile as it is cut.
    config : TileConfig
    device : torch.device, optional
        Where the network runs; the network's own device when omitted.
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
    if image.ndim != 3 or image.shape[0] != net.config.in_channels:
        raise ValueError(f"image must be ({net.config.in_channels}, H, W), got {image.shape}")
    device = device or pick_device("auto")
    net = net.to(device).eval()
    height, width = image.shape[1:]
    tile = -(-config.tile // net.stride) * net.stride
    margin = max(1, math.ceil(config.overlap * tile))
    # An image whose padded pixels fit in one batch of tiles runs whole: the memory of one batch,
    # no seams, and no work spent on overlaps (512 tiles cover a 1024^2 image 3 x 3, 2.25x over).
    tile_h, tile_w = (-(-n // net.stride) * net.stride for n in (height, width))
    if tile_h * tile_w > config.batch * tile * tile:
        tile_h = tile_w = tile
    ys, xs = tile_starts(height, tile_h, margin), tile_starts(width, tile_w, margin)
    wy, wx = tapers(height, ys, tile_h, margin), tapers(width, xs, tile_w, margin)
    if out is None:
        out = np.zeros((OUT_CHANNELS, height, width), np.float32)
    grid = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
    for chunk in _chunks(grid, config.batch):
        batch = np.stack([_cut(image, ys[i], xs[j], tile_h, tile_w) for i, j in chunk])
        result = _forward(net, torch.from_numpy(batch), device, config.flip_tta)
        for (i, j), tile_out in zip(chunk, result, strict=True):
            h, w = len(wy[i]), len(wx[j])
            weight = wy[i][:, None] * wx[j][None, :]
            out[:, ys[i]: ys[i] + h, xs[j]: xs[j] + w] += tile_out[:, :h, :w] * weight
    return out


def _chunks(items: list[tuple[int, int]], size: int) -> Iterator[list[tuple[int, int]]]:
    for k in range(0, len(items), size):
        yield items[k: k + size]


def _cut(
    image: npt.NDArray[np.floating] | PreparedView, y: int, x: int, tile_h: int, tile_w: int
) -> npt.NDArray[np.float32]:
    """Cut a tile; a tile larger than the image is padded by reflection (edge copies if tiny)."""
    part = np.asarray(image[:, y: y + tile_h, x: x + tile_w], np.float32)
    pad_h, pad_w = tile_h - part.shape[1], tile_w - part.shape[2]
    if pad_h or pad_w:
        mode = "reflect" if min(part.shape[1:]) > max(pad_h, pad_w) else "edge"
        part = np.pad(part, ((0, 0), (0, pad_h), (0, pad_w)), mode=mode)  # type: ignore[call-overload]
    return part


@torch.inference_mode()
def _forward(net: FlowUNet, batch: torch.Tensor, device: torch.device,
             flip_tta: bool) -> npt.NDArray[np.float32]:
    x = batch.to(device, non_blocking=True)
    # float16 on CUDA halves activation memory and doubles throughput; the CPU stays in float32
    # (bfloat16 is faster on some CPUs, but its effect on the masks is not yet measured).
    with torch.autocast(device.type, dtype=torch.float16, enabled=device.type == "cuda"):
        if not flip_tta:
            y = net(x).float()
        else:
            y = torch.zeros(x.shape[0], OUT_CHANNELS, *x.shape[2:], device=device)
            for dims in ((), (2,), (3,), (2, 3)):
                z = net(torch.flip(x, dims) if dims else x).float()
                z = torch.flip(z, dims) if dims else z
                for d in dims:  # mirroring rows negates dy, columns negate dx
                    z[:, d - 2] = -z[:, d - 2]
                y += z / 4
    return y.cpu().numpy()


def rescale(image: npt.NDArray[np.floating], factor: float) -> npt.NDArray[np.float32]:
    """Resize a ``(C, H, W)`` image by ``factor`` with bilinear interpolation.

    Parameters
    ----------
    image : (C, H, W) ndarray
    factor : float
        New size over old size.

    Returns
    -------
    resized : (C, round(H * factor), round(W * factor)) ndarray of float32
    """
    return resize_to(image, (max(1, round(image.shape[1] * factor)),
                             max(1, round(image.shape[2] * factor))))


def resize_to(image: npt.NDArray[np.floating], shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Resize a ``(C, H, W)`` array to ``(C, *shape)`` with bilinear interpolation.

    Parameters
    ----------
    image : (C, H, W) ndarray
    shape : (int, int)

    Returns
    -------
    resized : (C, shape[0], shape[1]) ndarray of float32
    """
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None]
    return F.interpolate(x, size=shape, mode="bilinear", align_corners=False)[0].numpy()
