"""The last steps of masks: the flow check, hole filling and size limits.

:func:`remove_bad_flow_masks` recomputes each mask's flows from its shape (as
:func:`flowseg.representation.flows.labels_to_flows` makes training targets) and drops the masks whose
given flows disagree; :func:`fill_holes` gives each background region enclosed by one mask to that mask;
:func:`remove_masks_by_size` drops masks too small or too large. Images and volumes alike.
"""

from __future__ import annotations

import fastremap
import numpy as np
import numpy.typing as npt
from numba import njit

from flowseg.errors import InputError
from flowseg.representation.flows import FLOW_SCALE, labels_to_flows


def remove_bad_flow_masks(
    labels: npt.ArrayLike, flows: npt.ArrayLike, *, threshold: float = 0.4
) -> npt.NDArray[np.uint32]:
    """Drop masks whose given flows disagree with the flows of their own shape.

    Parameters
    ----------
    labels : (H, W) or (Z, Y, X) array_like of non-negative integers
    flows : (2, H, W) or (3, Z, Y, X) array_like of float
        The flows the masks came from, in ``FLOW_SCALE`` units.
    threshold : float
        Largest mean (over the mask) squared error between the unit flows of the mask's shape and
        ``flows / FLOW_SCALE``, summed over both components.

    Returns
    -------
    labels : (H, W) or (Z, Y, X) ndarray of uint32
        A copy without the rejected masks (ids otherwise unchanged).

    Raises
    ------
    ValueError
        If the shapes disagree.
    """
    labels = np.array(labels, dtype=np.uint32)
    flows = np.ascontiguousarray(flows, dtype=np.float32)
    if labels.ndim not in (2, 3) or flows.shape != (labels.ndim, *labels.shape):
        raise InputError(f"flows must be (2, H, W) over labels (H, W), or (3, Z, Y, X) over "
                         f"(Z, Y, X), got {flows.shape} and {labels.shape}")
    errors = flow_errors(labels, flows)
    bad = np.flatnonzero(errors > threshold) + 1
    if bad.size:
        labels = fastremap.mask(labels, bad)
    return labels


def flow_errors(labels: npt.ArrayLike, flows: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Mean squared error, per mask, between given flows and the flows of the mask's shape.

    Parameters
    ----------
    labels : (H, W) or (Z, Y, X) array_like of non-negative integers
    flows : (2, H, W) or (3, Z, Y, X) array_like of float
        In ``FLOW_SCALE`` units.

    Returns
    -------
    errors : (labels.max(),) ndarray of float64
        ``errors[i]`` belongs to id ``i + 1``; ids with no pixel get 0.

    Raises
    ------
    ValueError
        If ``labels`` is not a 2-D or 3-D integer array, or ``flows`` does not fit it.
    """
    labels = np.ascontiguousarray(labels, dtype=np.uint32)
    own = labels_to_flows(labels)
    flows = np.ascontiguousarray(flows, dtype=np.float32)
    if flows.shape != own.shape:
        raise InputError(f"flows of shape {flows.shape} do not fit labels of shape {labels.shape}")
    sums = np.zeros(int(labels.max()) + 1 if labels.size else 1, np.float64)
    counts = np.zeros_like(sums)
    _flow_error_sums(labels.reshape(-1), own.reshape(own.shape[0], -1),
                     flows.reshape(own.shape[0], -1), np.float32(1.0 / FLOW_SCALE), sums, counts)
    return (sums / np.maximum(counts, 1))[1:]


@njit(cache=True, nogil=True)
def _flow_error_sums(labels, own, flows, scale, sums, counts):  # type: ignore[no-untyped-def]
    """Sum squared flow errors per id over flattened ``labels`` and ``(D, N)`` flows."""
    for i in range(labels.size):
        k = labels[i]
        if k:
            error = 0.0
            for d in range(own.shape[0]):
                error += (own[d, i] - flows[d, i] * scale) ** 2
            sums[k] += error
            counts[k] += 1


def fill_holes(labels: npt.ArrayLike) -> npt.NDArray[np.uint32]:
    """Fill background regions that are enclosed by a single mask.

    A background region (4-connected; 6-connected in a volume) that touches the image border, or
    borders two masks or more, is left alone, so that a cell inside another cell's hole is never
    overwritten.

    Parameters
    ----------
    labels : (H, W) or (Z, Y, X) array_like of non-negative integers

    Returns
    -------
    labels : (H, W) or (Z, Y, X) ndarray of uint32

    Examples
    --------
    >>> ring = np.ones((5, 5), np.uint32)
    >>> ring[2, 2] = 0
    >>> int(fill_holes(ring)[2, 2])
    1
    """
    labels = np.array(labels, dtype=np.uint32)
    if labels.size:
        queue = np.empty(labels.size, np.int32 if labels.size < 2**31 else np.int64)
        _fill_enclosed(labels.reshape(-1), np.array(labels.shape, np.int64),
                       np.zeros(labels.size, np.bool_), queue)
    return labels


@njit(cache=True, nogil=True)
def _fill_enclosed(flat, shape, seen, queue):  # type: ignore[no-untyped-def]
    """Give each enclosed background region of the flattened ``flat`` the one id around it.

    Regions are flooded through face neighbours, in any number of dimensions; one that touches the
    border or meets two ids is left alone.
    """
    ndim = shape.size
    strides = np.ones(ndim, np.int64)
    for axis in range(ndim - 2, -1, -1):
        strides[axis] = strides[axis + 1] * shape[axis + 1]
    for start in range(flat.size):
        if flat[start] != 0 or seen[start]:
            continue
        seen[start] = True
        queue[0] = start
        head, tail, owner = 0, 1, 0  # owner: 0 none met yet, -1 border or two ids
        while head < tail:
            i = queue[head]
            head += 1
            rest = i
            for axis in range(ndim - 1, -1, -1):  # unravel i from its last axis
                c = rest
                if axis:
                    rest, c = divmod(rest, shape[axis])
                for step in (-1, 1):
                    if c + step < 0 or c + step >= shape[axis]:
                        owner = -1
                        continue
                    j = i + step * strides[axis]
                    k = flat[j]
                    if k == 0:
                        if not seen[j]:
                            seen[j] = True
                            queue[tail] = j
                            tail += 1
                    elif owner == 0:
                        owner = k
                    elif owner != k:
                        owner = -1
        if owner > 0:
            for n in range(tail):
                flat[queue[n]] = owner


def remove_masks_by_size(
    labels: npt.NDArray[np.uint32], *, low: float = 0, high: float = np.inf
) -> npt.NDArray[np.uint32]:
    """Drop masks of fewer than ``low`` or more than ``high`` pixels (ids otherwise unchanged)."""
    sizes = np.bincount(labels.reshape(-1))
    drop = np.flatnonzero((sizes > 0) & ((sizes < low) | (sizes > high)))
    drop = drop[drop > 0]
    return fastremap.mask(labels, drop) if drop.size else labels
