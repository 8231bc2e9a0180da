"""The representation: instance labels become unit flow fields by heat diffusion.

For each cell, heat is released at the cell pixel nearest its centre of mass and diffuses inside the
cell (the outside is held at zero). The normalised gradient of the heat is a unit vector ``(dy, dx)``
that points, from every pixel of the cell, along a path that stays inside the cell and ends at its
source. Following these flows from every pixel (``flowseg.representation.masks``) groups the pixels of a
cell together, which separates touching cells that a foreground map alone cannot.

Each cell diffuses on its own bounding box, for ``2 * (height + width + 2)`` steps (as cellpose),
so the cost grows with the cells' areas and sizes, not with the image area times the largest cell.

Volumes work the same way: ``(Z, Y, X)`` labels give ``(3, Z, Y, X)`` flows ``(dz, dy, dx)``. In 3-D
the heat spreads with a 7-point stencil (the voxel and its 6 face neighbours) over the cell's own
voxels only, a quarter of the work of a 27-point one, which matters at the fourth power of the
cell's size.
"""

from __future__ import annotations

import fastremap
import numpy as np
import numpy.typing as npt
from numba import njit, prange

from flowseg.errors import InputError

# The network predicts flows multiplied by this, so that its flow outputs have a spread similar to
# its cell-probability logit; masks_from_flows divides it out again.
FLOW_SCALE = 5.0
NINTH, SEVENTH = 1.0 / 9.0, 1.0 / 7.0  # a product is faster than a division in the inner loops


def labels_to_flows(labels: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Compute the unit flow field of an instance label image.

    Parameters
    ----------
    labels : (H, W) or (Z, Y, X) array_like of non-negative integers
        Instance ids, 0 = background. Ids need not be consecutive and may be as large as uint32
        allows. Each id should form one connected region: a second piece of the same id receives
        no heat and so zero flow.

    Returns
    -------
    flows : (2, H, W) or (3, Z, Y, X) ndarray of float32
        ``(dy, dx)`` (``(dz, dy, dx)`` for a volume) of unit norm inside cells, 0 on the
        background and at each cell's source pixel (where the gradient vanishes, as it does for
        a 1-pixel cell).

    Raises
    ------
    ValueError
        If ``labels`` is not 2-D or 3-D or holds negative or non-integer values.

    Examples
    --------
    >>> labels = np.zeros((5, 7), np.uint16)
    >>> labels[1:4, 1:6] = 9
    >>> flows = labels_to_flows(labels)
    >>> flows.shape, float(flows[1, 2, 1]) > 0.7, float(flows[1, 2, 5]) < -0.7
    ((2, 5, 7), True, True)
    """
    cells = _consecutive_labels(labels)
    flows = np.zeros((cells.ndim, *cells.shape), np.float32)
    count = int(cells.max()) if cells.size else 0
    if count and cells.ndim == 2:
        _diffuse(cells, _bounding_boxes(cells, count), flows)
    elif count:
        _diffuse_3d(cells, _bounding_boxes_3d(cells, count), flows)
    return flows


def labels_to_targets(labels: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Compute the training target of a label image: unit flows and the foreground.

    Parameters
    ----------
    labels : (H, W) or (Z, Y, X) array_like of non-negative integers

    Returns
    -------
    targets : (3, H, W) or (4, Z, Y, X) ndarray of float32
        The unit flows (not yet multiplied by ``FLOW_SCALE``) and the foreground (1 in cells, 0
        outside).

    Raises
    ------
    ValueError
        As :func:`labels_to_flows`.
    """
    cells = _consecutive_labels(labels)
    targets = np.zeros((cells.ndim + 1, *cells.shape), np.float32)
    targets[:-1] = labels_to_flows(cells)
    targets[-1] = cells > 0
    return targets


def _consecutive_labels(labels: npt.ArrayLike) -> npt.NDArray[np.int32]:
    array = np.asarray(labels)
    if array.ndim not in (2, 3) or array.dtype.kind not in "uib":
        raise InputError(f"labels must be a 2-D or 3-D integer array, got shape {array.shape} "
                         f"and dtype {array.dtype}")
    if array.size and array.dtype.kind == "i" and array.min() < 0:
        raise InputError(f"labels hold a negative id ({array.min()})")
    if array.size == 0:
        return np.zeros(array.shape, np.int32)
    renumbered, _ = fastremap.renumber(array, preserve_zero=True, in_place=False)
    return np.ascontiguousarray(renumbered, dtype=np.int32)


@njit(cache=True, nogil=True)
def _bounding_boxes(cells: npt.NDArray[np.int32], count: int) -> npt.NDArray[np.int64]:
    """Return ``(count, 4)`` boxes ``y0, y1, x0, x1`` (stop exclusive) of ids ``1..count``."""
    height, width = cells.shape
    boxes = np.empty((count, 4), np.int64)
    boxes[:, 0] = height
    boxes[:, 1] = -1
    boxes[:, 2] = width
    boxes[:, 3] = -1
    for y in range(height):
        for x in range(width):
            k = cells[y, x] - 1
            if k >= 0:
                boxes[k, 0] = min(boxes[k, 0], y)
                boxes[k, 1] = max(boxes[k, 1], y + 1)
                boxes[k, 2] = min(boxes[k, 2], x)
                boxes[k, 3] = max(boxes[k, 3], x + 1)
    return boxes


@njit(cache=True, nogil=True, parallel=True)
def _diffuse(
    cells: npt.NDArray[np.int32], boxes: npt.NDArray[np.int64], flows: npt.NDArray[np.float32]
) -> None:
    """Write the unit flows of every cell into ``flows``; cells own disjoint pixels."""
    for k in prange(boxes.shape[0]):
        _diffuse_cell(cells, k + 1, boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3], flows)


@njit(cache=True, nogil=True)
def _diffuse_cell(cells, cell, y0, y1, x0, x1, flows):  # type: ignore[no-untyped-def]
    # Local frame: the bounding box with a margin of one zero pixel on every side.
    ly, lx = y1 - y0 + 2, x1 - x0 + 2
    inside = np.zeros((ly, lx), np.float64)
    # Each row's first and last column in the cell: pixels outside that span stay at zero heat in
    # both buffers, so the diffusion need not update them.
    first = np.full(ly, lx, np.int64)
    last = np.zeros(ly, np.int64)
    sum_y = sum_x = 0.0
    for y in range(y0, y1):
        for x in range(x0, x1):
            if cells[y, x] == cell:
                inside[y - y0 + 1, x - x0 + 1] = 1.0
                sum_y += y - y0 + 1
                sum_x += x - x0 + 1
                first[y - y0 + 1] = min(first[y - y0 + 1], x - x0 + 1)
                last[y - y0 + 1] = x - x0 + 2
    area = inside.sum()
    mean_y, mean_x = sum_y / area, sum_x / area
    cy, cx = int(np.round(mean_y)), int(np.round(mean_x))
    if inside[cy, cx] == 0.0:  # non-convex cell: its mean lies outside; take the nearest pixel in it
        best = np.inf
        for y in range(1, ly - 1):
            for x in range(1, lx - 1):
                d = (y - mean_y) ** 2 + (x - mean_x) ** 2
                if inside[y, x] > 0.0 and d < best:
                    best, cy, cx = d, y, x
    heat = np.zeros((ly, lx), np.float64)
    spare = np.zeros((ly, lx), np.float64)
    for t in range(2 * (ly + lx - 2)):
        heat[cy, cx] += 1.0
        # After t steps heat has spread at most t pixels from the source: update only that window.
        # Rows as 1-D views, and a product in place of a division: 18% faster on 6,200 cells.
        for y in range(max(1, cy - t - 1), min(ly - 1, cy + t + 2)):
            up, row, down, out, own = heat[y - 1], heat[y], heat[y + 1], spare[y], inside[y]
            for x in range(max(first[y], cx - t - 1), min(last[y], cx + t + 2)):
                out[x] = own[x] * (up[x - 1] + up[x] + up[x + 1] + row[x - 1] + row[x]
                                   + row[x + 1] + down[x - 1] + down[x] + down[x + 1]) * NINTH
        heat, spare = spare, heat
    for y in range(1, ly - 1):
        for x in range(1, lx - 1):
            if inside[y, x] > 0.0:
                dy = heat[y + 1, x] - heat[y - 1, x]
                dx = heat[y, x + 1] - heat[y, x - 1]
                norm = np.sqrt(dy * dy + dx * dx)
                if norm > 0.0:
                    flows[0, y0 + y - 1, x0 + x - 1] = dy / norm
                    flows[1, y0 + y - 1, x0 + x - 1] = dx / norm


@njit(cache=True, nogil=True)
def _bounding_boxes_3d(cells: npt.NDArray[np.int32], count: int) -> npt.NDArray[np.int64]:
    """Return ``(count, 6)`` boxes ``z0, z1, y0, y1, x0, x1`` (stop exclusive) of ids ``1..count``."""
    boxes = np.empty((count, 6), np.int64)
    for axis in range(3):
        boxes[:, 2 * axis] = cells.shape[axis]
        boxes[:, 2 * axis + 1] = -1
    for z in range(cells.shape[0]):
        for y in range(cells.shape[1]):
            for x in range(cells.shape[2]):
                k = cells[z, y, x] - 1
                if k >= 0:
                    for axis, v in ((0, z), (1, y), (2, x)):
                        boxes[k, 2 * axis] = min(boxes[k, 2 * axis], v)
                        boxes[k, 2 * axis + 1] = max(boxes[k, 2 * axis + 1], v + 1)
    return boxes


@njit(cache=True, nogil=True, parallel=True)
def _diffuse_3d(
    cells: npt.NDArray[np.int32], boxes: npt.NDArray[np.int64], flows: npt.NDArray[np.float32]
) -> None:
    """Write the unit flows of every cell of a volume into ``flows``."""
    for k in prange(boxes.shape[0]):
        _diffuse_cell_3d(cells, k + 1, boxes[k], flows)


@njit(cache=True, nogil=True)
def _diffuse_cell_3d(cells, cell, box, flows):  # type: ignore[no-untyped-def]
    # Local frame: the box with one zero voxel on every side, flattened; the cell's own voxels are
    # listed once, so each step touches only them (the rest of the box stays at zero heat).
    z0, y0, x0 = box[0], box[2], box[4]
    lz, ly, lx = box[1] - z0 + 2, box[3] - y0 + 2, box[5] - x0 + 2
    sz, sy = ly * lx, lx
    voxels = np.empty((box[1] - z0) * (box[3] - y0) * (box[5] - x0), np.int64)
    n = 0
    mean = np.zeros(3)
    for z in range(z0, box[1]):
        for y in range(y0, box[3]):
            for x in range(x0, box[5]):
                if cells[z, y, x] == cell:
                    voxels[n] = (z - z0 + 1) * sz + (y - y0 + 1) * sy + (x - x0 + 1)
                    mean += np.array([z - z0 + 1.0, y - y0 + 1.0, x - x0 + 1.0])
                    n += 1
    voxels = voxels[:n]
    mean /= n
    source, best = voxels[0], np.inf
    for i in voxels:  # the cell's voxel nearest its centre of mass
        d = (i // sz - mean[0]) ** 2 + (i % sz // sy - mean[1]) ** 2 + (i % sy - mean[2]) ** 2
        if d < best:
            best, source = d, i
    heat = np.zeros(lz * sz, np.float64)
    spare = np.zeros(lz * sz, np.float64)
    for _ in range(2 * (lz + ly + lx - 3)):
        heat[source] += 1.0
        for i in voxels:
            spare[i] = (heat[i] + heat[i - 1] + heat[i + 1] + heat[i - sy] + heat[i + sy]
                        + heat[i - sz] + heat[i + sz]) * SEVENTH
        heat, spare = spare, heat
    for i in voxels:
        dz = heat[i + sz] - heat[i - sz]
        dy = heat[i + sy] - heat[i - sy]
        dx = heat[i + 1] - heat[i - 1]
        norm = np.sqrt(dz * dz + dy * dy + dx * dx)
        if norm > 0.0:
            z, y, x = z0 + i // sz - 1, y0 + i % sz // sy - 1, x0 + i % sy - 1
            flows[0, z, y, x] = dz / norm
            flows[1, z, y, x] = dy / norm
            flows[2, z, y, x] = dx / norm
