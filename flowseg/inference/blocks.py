"""Masks of images too large to process at once, block by block, without seams.

The image is cut into square cores; each core is processed with a margin of context around it by
:func:`flowseg.representation.masks.masks_from_flows`, and keeps the masks whose centre of mass lies in
the core. Flow following is local (a pixel's path stays inside its cell), so a cell smaller than the
margin comes out whole and the same in every block that sees it, and exactly one block (the one whose
core holds its centre) writes it: no cell is cut at a block border, none is counted twice. Memory grows
with the block size, not the image: only the output labels cover the whole image.

Volumes are cut the same way in y and x, every block holding all the planes; their blocks are sized
by voxel count (``BLOCK_VOXELS``), since a 3-D masks pass needs about 60 bytes a voxel.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError
from flowseg.representation.masks import MaskConfig, masks_from_flows

log = logging.getLogger(__name__)

# 2048 with 128 of context: masks of a block then take about 140 MB whatever the image size, for
# 27% more flow following than one pass; cells up to about 100 px come out whole.
BLOCK = 2048
MARGIN = 128
# A volume's block, margin included, holds at most this many voxels (about 0.5 GB in its masks
# pass; 2^24 put a 100 x 1024^2 stack's peak at 2.97 GB, past 1 GB + 16 B a voxel);
# its margin is in voxels at the network's scale, where cells are about 30 across.
BLOCK_VOXELS = 1 << 23
VOLUME_MARGIN = 64


def masks_in_blocks(
    flows: npt.NDArray[np.floating], cellprob: npt.NDArray[np.floating], *,
    config: MaskConfig = MaskConfig(), block: int | None = None, margin: int | None = None,
    out: npt.NDArray[np.uint32] | None = None, release: Callable[[], None] | None = None,
) -> npt.NDArray[np.uint32]:
    """Turn flows and cell probability into labels, a block at a time.

    Parameters
    ----------
    flows : (2, H, W) or (3, Z, Y, X) ndarray of float
        In ``FLOW_SCALE`` units.
    cellprob : (H, W) or (Z, Y, X) ndarray of float
        Logits.
    config : MaskConfig
        As for :func:`flowseg.representation.masks.masks_from_flows`; ``max_size_fraction`` stays
        relative to the whole image.
    block : int, optional
        Core side in pixels (y and x). ``BLOCK`` for an image; for a volume, the largest whose
        block with its margins holds at most ``BLOCK_VOXELS``.
    margin : int, optional
        Context around each core (``MARGIN``; ``VOLUME_MARGIN`` for a volume). A cell reaching
        further than this past its core is seen cut: the flow check then usually drops it; if
        kept, a warning says how many were cut.
    out : ndarray of uint32, optional
        Zero-filled, shaped as ``cellprob``: where the labels go (a scratch file's array, say).
    release : callable, optional
        Called after every block (to unmap the pages of scratch arrays that block touched).

    Returns
    -------
    labels : (H, W) or (Z, Y, X) ndarray of uint32
        Consecutive ids, 0 = background.

    Raises
    ------
    ValueError
        If the shapes disagree or ``block`` or ``margin`` is not positive.
    """
    if cellprob.ndim not in (2, 3) or flows.shape != (cellprob.ndim, *cellprob.shape):
        raise InputError(f"flows must be (2, H, W) with cellprob (H, W), or (3, Z, Y, X) with "
                         f"(Z, Y, X), got {flows.shape} and {cellprob.shape}")
    volume = cellprob.ndim == 3
    if margin is None:
        margin = VOLUME_MARGIN if volume else MARGIN
    if block is None:
        side = int(np.sqrt(BLOCK_VOXELS / cellprob.shape[0])) - 2 * margin
        block = max(side, 2 * margin) if volume else BLOCK
    if block < 1 or margin < 1:
        raise InputError(f"block and margin must be positive, got {block} and {margin}")
    height, width = cellprob.shape[-2:]
    if height <= block and width <= block:
        whole = masks_from_flows(flows, cellprob, config=config)
        if out is None:
            return whole
        out[...] = whole
        return out
    labels = np.zeros(cellprob.shape, np.uint32) if out is None else out
    count = cut = 0
    for core in core_grid((height, width), block):
        kept, truncated = _write_block(labels, flows, cellprob, core, margin, config, count)
        count += kept
        cut += truncated
        if release is not None:
            release()
    if cut:
        log.warning("%d cells reach past the %d-pixel block margin and may be cut; "
                    "raise the margin for cells this large", cut, margin)
    return labels


def core_grid(shape: tuple[int, int], block: int) -> list[tuple[int, int, int, int]]:
    """Return the cores ``(y0, y1, x0, x1)`` that tile an image, row by row.

    Parameters
    ----------
    shape : (int, int)
    block : int

    Returns
    -------
    cores : list of (int, int, int, int)

    Examples
    --------
    >>> core_grid((5, 3), 4)
    [(0, 4, 0, 3), (4, 5, 0, 3)]
    """
    height, width = shape
    return [(y, min(y + block, height), x, min(x + block, width))
            for y in range(0, height, block) for x in range(0, width, block)]


def extend(core: tuple[int, int, int, int], shape: tuple[int, int],
           margin: int) -> tuple[int, int, int, int]:
    """Return ``core`` grown by ``margin`` on every side, within the image.

    Parameters
    ----------
    core : (int, int, int, int)
        ``y0, y1, x0, x1``.
    shape : (int, int)
    margin : int

    Returns
    -------
    region : (int, int, int, int)
    """
    y0, y1, x0, x1 = core
    return (max(0, y0 - margin), min(shape[0], y1 + margin),
            max(0, x0 - margin), min(shape[1], x1 + margin))


def keep_centred(local: npt.NDArray[np.uint32], core: tuple[int, int, int, int],
                 region: tuple[int, int, int, int]) -> npt.NDArray[np.uint32]:
    """Keep the masks of a region whose centre of mass lies in its core, renumbered ``1..k``.

    Parameters
    ----------
    local : (h, w) or (z, h, w) ndarray of uint32
        Labels of ``region`` (of all its planes for a volume: the core is in y and x).
    core, region : (int, int, int, int)
        ``y0, y1, x0, x1`` in image coordinates.

    Returns
    -------
    kept : ndarray of uint32
        Shaped as ``local``.
    """
    n = int(local.max())
    if n == 0:
        return local
    where = np.nonzero(local)
    ys, xs = where[-2], where[-1]
    ids = local[where]
    size = np.maximum(np.bincount(ids, minlength=n + 1)[1:], 1)
    cy = np.bincount(ids, ys, minlength=n + 1)[1:] / size + region[0]
    cx = np.bincount(ids, xs, minlength=n + 1)[1:] / size + region[2]
    keep = np.flatnonzero((cy >= core[0]) & (cy < core[1]) & (cx >= core[2]) & (cx < core[3]))
    lut = np.zeros(n + 1, np.uint32)
    lut[keep + 1] = np.arange(1, keep.size + 1, dtype=np.uint32)
    return lut[local]


class Window:
    """A window ``[y0, y1) x [x0, x1)`` of a larger image or view, sliced in its own coordinates.

    Parameters
    ----------
    source : ndarray or view
        Anything sliced ``source[:, y0:y1, x0:x1]`` with a ``shape``.
    box : (int, int, int, int)
        ``y0, y1, x0, x1`` in ``source``'s coordinates.
    """

    def __init__(self, source: Any, box: tuple[int, int, int, int]) -> None:
        self.source, self.box = source, box
        self.shape = (source.shape[0], box[1] - box[0], box[3] - box[2])
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> npt.NDArray[Any]:
        y0, y1, _ = key[1].indices(self.shape[1])
        x0, x1, _ = key[2].indices(self.shape[2])
        oy, ox = self.box[0], self.box[2]
        return self.source[key[0], oy + y0: oy + max(y0, y1), ox + x0: ox + max(x0, x1)]


class Placed:
    """Part of a larger image, sliced in the larger image's coordinates (within the part only).

    Parameters
    ----------
    part : (C, h, w) ndarray
    origin : (int, int)
        Where ``part`` starts in the larger image.
    shape : (int, int)
        The larger image's height and width.
    """

    def __init__(self, part: npt.NDArray[Any], origin: tuple[int, int],
                 shape: tuple[int, int]) -> None:
        self.part, self.origin = part, origin
        self.shape = (part.shape[0], int(shape[0]), int(shape[1]))
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> npt.NDArray[Any]:
        y0, y1, _ = key[1].indices(self.shape[1])
        x0, x1, _ = key[2].indices(self.shape[2])
        oy, ox = self.origin
        h, w = self.part.shape[1:]
        if y0 < oy or x0 < ox or max(y0, y1) > oy + h or max(x0, x1) > ox + w:
            raise IndexError(f"rows {y0}:{y1}, columns {x0}:{x1} lie outside the part held "
                             f"(rows {oy}:{oy + h}, columns {ox}:{ox + w})")
        return self.part[key[0], y0 - oy: max(y0, y1) - oy, x0 - ox: max(x0, x1) - ox]


def _write_block(
    labels: npt.NDArray[np.uint32], flows: npt.NDArray[np.floating],
    cellprob: npt.NDArray[np.floating], core: tuple[int, int, int, int], margin: int,
    config: MaskConfig, offset: int,
) -> tuple[int, int]:
    """Segment one core with its margin; write the masks centred in the core; return counts."""
    height, width = labels.shape[-2:]
    ey0, ey1, ex0, ex1 = extend(core, (height, width), margin)
    area = (ey1 - ey0) * (ex1 - ex0)
    local_config = replace(config, max_size_fraction=config.max_size_fraction
                           * height * width / area)
    kept = keep_centred(masks_from_flows(flows[..., ey0:ey1, ex0:ex1],
                                         cellprob[..., ey0:ey1, ex0:ex1], config=local_config),
                        core, (ey0, ey1, ex0, ex1))
    count = int(kept.max())
    if count == 0:
        return 0, 0
    region = labels[..., ey0:ey1, ex0:ex1]
    region[kept > 0] = kept[kept > 0] + np.uint32(offset)
    # Kept cells touching an edge of the context window that is not the image's edge are cut.
    edges = [kept[..., 0, :] if ey0 > 0 else None, kept[..., -1, :] if ey1 < height else None,
             kept[..., :, 0] if ex0 > 0 else None, kept[..., :, -1] if ex1 < width else None]
    touching = np.unique(np.concatenate([e.reshape(-1) for e in edges if e is not None]
                                        or [np.zeros(0, np.uint32)]))
    return count, int((touching > 0).sum())
