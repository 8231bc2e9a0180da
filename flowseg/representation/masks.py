"""From flows and cell probability to instance labels.

1. Foreground: pixels whose cell-probability logit exceeds ``cellprob_threshold``.
2. :func:`follow_flows`: every foreground pixel moves along the flows (Euler steps of at most one
   pixel, bilinear interpolation, flows zero outside the foreground) for up to ``niter`` steps.
3. :func:`cluster_endpoints`: pixels whose end points gather at one place form one cell. Seeds are
   the fullest end-point bins (local maxima in a 5 x 5 window, fullest first, none within 2 pixels of
   a fuller one); each end point joins the nearest seed within ``GROW_RADIUS`` pixels.
4. Masks larger than ``max_size_fraction`` of the image are dropped.
5. :func:`~flowseg.representation.cleanup.remove_bad_flow_masks`: the flows of each mask are
   recomputed from its shape; a mask whose mean squared difference to the given flows exceeds
   ``flow_threshold`` is dropped.
6. :func:`~flowseg.representation.cleanup.fill_holes`, then masks under ``min_size`` pixels are
   dropped; ids are made consecutive.

Volumes take the same steps: ``(3, Z, Y, X)`` flows and ``(Z, Y, X)`` cell probability give
``(Z, Y, X)`` labels, with the 3-D kernels of :mod:`flowseg.representation.masks3d` (trilinear
interpolation, a 5 x 5 x 5 seed window, 6-connected holes) and the same thresholds (``min_size`` in
voxels).

Steps 4-6 live in :mod:`flowseg.representation.cleanup`. Numpy and numba only: this runs without torch.
"""

from __future__ import annotations

from dataclasses import dataclass

import fastremap
import numpy as np
import numpy.typing as npt
from numba import njit, prange

from flowseg.errors import InputError
from flowseg.representation.cleanup import (
    fill_holes,
    flow_errors,
    remove_bad_flow_masks,
    remove_masks_by_size,
)
from flowseg.representation.flows import FLOW_SCALE
from flowseg.representation.masks3d import (
    _bin_endpoints_3d,
    _euler_steps_3d,
    _grow_seeds_3d,
)

__all__ = ["MaskConfig", "cluster_endpoints", "fill_holes", "flow_errors", "follow_flows",
           "masks_from_flows", "remove_bad_flow_masks"]

# End points within this chessboard distance of a seed's bin join that seed (cellpose grows its
# seeds for 5 iterations of a 3 x 3 dilation: the same reach).
GROW_RADIUS = 5
# A seed suppresses weaker local maxima within this chessboard distance (a 5 x 5 window).
SEED_RADIUS = 2
# A pixel that moved less than this many pixels over its last two steps is at rest at a sink, or in
# the 2-cycle that sinks produce, and stops early: its end point can differ from that after all niter
# steps by at most niter / 2 * REST_DRIFT pixels (1 pixel for the default niter).
REST_DRIFT = 0.01


@dataclass(frozen=True)
class MaskConfig:
    """Settings of :func:`masks_from_flows`.

    Attributes
    ----------
    cellprob_threshold : float
        Pixels whose cell-probability logit exceeds this are foreground.
    flow_threshold : float
        Masks whose flows differ from their recomputed flows by a larger mean squared error are
        dropped; 0 turns the check off.
    min_size : int
        Masks with fewer pixels (after filling holes) are dropped. Pipelines that resize an
        image for the network count it at the network's scale
        (:func:`flowseg.inference.scaling.scale_min_size`).
    niter : int
        Most Euler steps a pixel takes.
    max_size_fraction : float
        Masks larger than this fraction of the image are dropped.
    """

    cellprob_threshold: float = 0.0
    flow_threshold: float = 0.4
    min_size: int = 15
    niter: int = 200
    max_size_fraction: float = 0.4


def masks_from_flows(
    flows: npt.ArrayLike, cellprob: npt.ArrayLike, *, config: MaskConfig = MaskConfig()
) -> npt.NDArray[np.uint32]:
    """Turn flows and cell probability into instance labels.

    Parameters
    ----------
    flows : (2, H, W) or (3, Z, Y, X) array_like of float
        ``(dy, dx)`` (``(dz, dy, dx)``) in ``FLOW_SCALE`` units, as the network predicts them
        (unit flows times ``FLOW_SCALE``).
    cellprob : (H, W) or (Z, Y, X) array_like of float
        Cell-probability logits.
    config : MaskConfig
        Thresholds and iteration count.

    Returns
    -------
    labels : (H, W) or (Z, Y, X) ndarray of uint32
        Consecutive ids ``1..N``, 0 = background.

    Raises
    ------
    ValueError
        If the shapes disagree or the inputs hold NaN or infinite values.

    Examples
    --------
    >>> from flowseg.representation.flows import labels_to_flows
    >>> truth = np.zeros((40, 40), np.uint32)
    >>> truth[5:20, 5:20], truth[5:20, 20:35] = 7, 3
    >>> labels = masks_from_flows(labels_to_flows(truth) * FLOW_SCALE, np.where(truth > 0, 5.0, -5.0))
    >>> int(labels.max()), bool(np.all((labels > 0) == (truth > 0)))
    (2, True)
    """
    flows, cellprob = _check_inputs(flows, cellprob)
    if cellprob.ndim == 3 and cellprob.shape[0] == 1:  # a 1-plane volume is an image
        return masks_from_flows(flows[1:, 0], cellprob[0], config=config)[None]
    foreground = cellprob > config.cellprob_threshold
    if not foreground.any():
        return np.zeros(cellprob.shape, np.uint32)
    endpoints = follow_flows(flows, foreground, niter=config.niter)
    labels = cluster_endpoints(endpoints, foreground)
    labels = remove_masks_by_size(labels, high=config.max_size_fraction * labels.size)
    if config.flow_threshold > 0:
        labels = remove_bad_flow_masks(labels, flows, threshold=config.flow_threshold)
    labels = fill_holes(labels)
    labels = remove_masks_by_size(labels, low=config.min_size)
    renumbered, _ = fastremap.renumber(labels, preserve_zero=True, in_place=True)
    return np.asarray(renumbered, dtype=np.uint32)


def _check_inputs(
    flows: npt.ArrayLike, cellprob: npt.ArrayLike
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    flows = np.ascontiguousarray(flows, dtype=np.float32)
    cellprob = np.asarray(cellprob, dtype=np.float32)
    if not _fits(flows, cellprob.shape):
        raise InputError(f"flows must be (2, H, W) with cellprob (H, W), or (3, Z, Y, X) with "
                         f"(Z, Y, X), got {flows.shape} and {cellprob.shape}")
    if not (np.isfinite(flows).all() and np.isfinite(cellprob).all()):
        raise InputError("flows or cellprob hold NaN or infinite values")
    return flows, cellprob


def _fits(flows: npt.NDArray[np.generic], shape: tuple[int, ...]) -> bool:
    """Whether ``flows`` is ``(2, H, W)`` or ``(3, Z, Y, X)`` over an image of ``shape``."""
    return len(shape) in (2, 3) and flows.shape == (len(shape), *shape)


def follow_flows(
    flows: npt.ArrayLike, foreground: npt.ArrayLike, *, niter: int = 200
) -> npt.NDArray[np.float32]:
    """Move every foreground pixel along the flows and return where it ends.

    Each step adds the flow at the current position, bilinearly interpolated from the pixels
    around it (flows count as zero outside the foreground) and divided by ``FLOW_SCALE``; positions
    are kept inside the image. A pixel stops early once it is back within ``REST_DRIFT`` of where
    it was two steps before (at rest, or oscillating around a sink).

    Parameters
    ----------
    flows : (2, H, W) or (3, Z, Y, X) array_like of float
        ``(dy, dx)`` (``(dz, dy, dx)``) in ``FLOW_SCALE`` units.
    foreground : (H, W) or (Z, Y, X) array_like of bool
        The pixels to move; the others stay where they are.
    niter : int
        Most steps per pixel.

    Returns
    -------
    endpoints : (2, H, W) or (3, Z, Y, X) ndarray of float32
        Final position (``(y, x)`` or ``(z, y, x)``) of the pixel that started at each position.

    Raises
    ------
    ValueError
        If the shapes disagree or ``niter`` is negative.
    """
    flows = np.ascontiguousarray(flows, dtype=np.float32)
    mask = np.ascontiguousarray(foreground, dtype=np.bool_)
    if not _fits(flows, mask.shape):
        raise InputError(f"flows must be (2, H, W) with foreground (H, W), or (3, Z, Y, X) with "
                         f"(Z, Y, X), got {flows.shape} and {mask.shape}")
    if niter < 0:
        raise InputError(f"niter must be >= 0, got {niter}")
    endpoints = np.empty(flows.shape, np.float32)
    scale = np.float32(1.0 / FLOW_SCALE)
    if mask.ndim == 2:
        # Zeroed outside the foreground once, so that each step reads 8 values, not 12.
        _euler_steps(flows * mask, mask, int(niter), scale, endpoints)
    else:
        _euler_steps_3d(flows, mask, int(niter), scale, np.float32(REST_DRIFT**2), endpoints)
    return endpoints


@njit(cache=True, nogil=True, parallel=True)
def _euler_steps(flows, mask, niter, scale, endpoints):  # type: ignore[no-untyped-def]
    height, width = mask.shape
    rest = REST_DRIFT * REST_DRIFT
    for y in prange(height):
        for x in range(width):
            py, px = np.float32(y), np.float32(x)
            if mask[y, x]:
                # Positions one and two steps back: a point that comes back to where it was two
                # steps ago is at rest or caught in the 2-cycle that sinks produce.
                qy, qx = py, px
                ry, rx = np.float32(-1e9), np.float32(-1e9)
                for _ in range(niter):
                    dy, dx = _interpolate(flows, py, px)
                    ry, rx, qy, qx = qy, qx, py, px
                    py = min(max(py + dy * scale, 0.0), height - 1.0)
                    px = min(max(px + dx * scale, 0.0), width - 1.0)
                    if (py - ry) ** 2 + (px - rx) ** 2 < rest:
                        break
            endpoints[0, y, x] = py
            endpoints[1, y, x] = px


@njit(cache=True, nogil=True, inline="always")
def _interpolate(flows, py, px):  # type: ignore[no-untyped-def]
    height, width = flows.shape[1:]
    y0, x0 = int(py), int(px)
    y1, x1 = min(y0 + 1, height - 1), min(x0 + 1, width - 1)
    fy, fx = py - y0, px - x0
    w00 = (1 - fy) * (1 - fx)
    w01 = (1 - fy) * fx
    w10 = fy * (1 - fx)
    w11 = fy * fx
    dy = (w00 * flows[0, y0, x0] + w01 * flows[0, y0, x1]
          + w10 * flows[0, y1, x0] + w11 * flows[0, y1, x1])
    dx = (w00 * flows[1, y0, x0] + w01 * flows[1, y0, x1]
          + w10 * flows[1, y1, x0] + w11 * flows[1, y1, x1])
    return dy, dx


def cluster_endpoints(
    endpoints: npt.ArrayLike, foreground: npt.ArrayLike
) -> npt.NDArray[np.uint32]:
    """Group foreground pixels whose end points gather at one place.

    End points are counted per pixel bin. Seeds are bins that hold the most end points in their
    5 x 5 window, taken fullest first, and a seed within ``SEED_RADIUS`` of a fuller one is merged
    into it. Every bin within ``GROW_RADIUS`` (chessboard distance) of a seed joins the nearest one
    (the fuller seed on a tie); a pixel takes the id of the bin where it ended.

    Parameters
    ----------
    endpoints : (2, H, W) or (3, Z, Y, X) array_like of float
        Final positions from :func:`follow_flows`.
    foreground : (H, W) or (Z, Y, X) array_like of bool

    Returns
    -------
    labels : (H, W) or (Z, Y, X) ndarray of uint32
        Ids ``1..N`` in seed order (not yet filtered), 0 = background or not near any seed.

    Raises
    ------
    ValueError
        If the shapes disagree.
    """
    endpoints = np.asarray(endpoints)
    mask = np.asarray(foreground, dtype=bool)
    if not _fits(endpoints, mask.shape):
        raise InputError(f"endpoints must be (2, H, W) over foreground (H, W), or (3, Z, Y, X) "
                         f"over (Z, Y, X), got {endpoints.shape} and {mask.shape}")
    # 4-byte bin indices while they fit: with the counts and the owners, 14 bytes a pixel here.
    index = np.int32 if mask.size < 2**31 else np.int64
    bins = np.empty(mask.shape, index)
    hist = np.zeros(mask.shape, np.int32)
    points = np.ascontiguousarray(endpoints, np.float32)
    queue, steps = np.empty(mask.size, index), np.empty(mask.size, np.uint8)
    if mask.ndim == 2:
        _bin_endpoints(points, np.ascontiguousarray(mask), bins, hist)
        owner = _grow_seeds(hist, SEED_RADIUS, GROW_RADIUS, queue, steps)
    else:
        _bin_endpoints_3d(points, np.ascontiguousarray(mask), bins, hist)
        owner = _grow_seeds_3d(hist, SEED_RADIUS, GROW_RADIUS, queue, steps)
    del hist, queue, steps
    labels = np.zeros(mask.size, np.uint32)
    _take_owners(bins.reshape(-1), owner.reshape(-1), labels)
    return labels.reshape(mask.shape)


@njit(cache=True, nogil=True)
def _bin_endpoints(endpoints, mask, bins, hist):  # type: ignore[no-untyped-def]
    """Round each foreground end point to its pixel bin (-1 elsewhere) and count per bin."""
    height, width = mask.shape
    for y in range(height):
        for x in range(width):
            if mask[y, x]:
                by = min(max(int(np.rint(endpoints[0, y, x])), 0), height - 1)
                bx = min(max(int(np.rint(endpoints[1, y, x])), 0), width - 1)
                bins[y, x] = by * width + bx
                hist[by, bx] += 1
            else:
                bins[y, x] = -1


@njit(cache=True, nogil=True)
def _take_owners(bins, owner, labels):  # type: ignore[no-untyped-def]
    """Give each pixel its bin's owner (``bins``, ``owner`` and ``labels`` flattened)."""
    for i in range(bins.size):
        if bins[i] >= 0:
            labels[i] = owner[bins[i]]


@njit(cache=True, nogil=True)
def _grow_seeds(hist, seed_radius, grow_radius, queue, depth):  # type: ignore[no-untyped-def]
    height, width = hist.shape
    cand_y, cand_x, cand_n = [], [], []
    for y in range(height):
        for x in range(width):
            n = hist[y, x]
            if n == 0:
                continue
            peak = True
            for v in range(max(0, y - 2), min(height, y + 3)):
                for u in range(max(0, x - 2), min(width, x + 3)):
                    if hist[v, u] > n:
                        peak = False
            if peak:
                cand_y.append(y)
                cand_x.append(x)
                cand_n.append(n)
    order = np.argsort(-np.array(cand_n, dtype=np.int64), kind="mergesort")
    owner = np.zeros((height, width), np.int32)
    head = tail = 0
    seeds = 0
    for i in order:
        y, x = cand_y[i], cand_x[i]
        taken = False
        for v in range(max(0, y - seed_radius), min(height, y + seed_radius + 1)):
            for u in range(max(0, x - seed_radius), min(width, x + seed_radius + 1)):
                if owner[v, u] > 0:
                    taken = True
        if not taken:
            seeds += 1
            owner[y, x] = seeds
            queue[tail] = y * width + x
            depth[tail] = 0
            tail += 1
    while head < tail:  # breadth first from all seeds at once: each bin joins the nearest seed
        y, x = queue[head] // width, queue[head] % width
        d = depth[head]
        head += 1
        if d == grow_radius:
            continue
        for v in range(max(0, y - 1), min(height, y + 2)):
            for u in range(max(0, x - 1), min(width, x + 2)):
                if owner[v, u] == 0:
                    owner[v, u] = owner[y, x]
                    queue[tail] = v * width + u
                    depth[tail] = d + 1
                    tail += 1
    return owner
