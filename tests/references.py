"""Plain numpy references for the numba kernels of flowseg.representation.masks, 2-D and 3-D."""

from __future__ import annotations

import itertools

import numpy as np
from scipy import ndimage

from flowseg.representation.flows import FLOW_SCALE, labels_to_flows
from flowseg.representation.masks import (
    GROW_RADIUS,
    REST_DRIFT,
    SEED_RADIUS,
    MaskConfig,
    masks_from_flows,
)


def round_trip(labels: np.ndarray, config: MaskConfig = MaskConfig()) -> np.ndarray:
    flows = labels_to_flows(labels) * FLOW_SCALE
    return masks_from_flows(flows, np.where(labels > 0, 4.0, -4.0), config=config)


def euler_reference(flows: np.ndarray, mask: np.ndarray, niter: int) -> np.ndarray:
    """Vectorised numpy Euler integration in any dimension: multilinear rule, same rest test."""
    shape = np.array(mask.shape)
    field = (flows * mask).astype(np.float32)
    points = np.argwhere(mask).T.astype(np.float32)
    back1, back2 = points.copy(), np.full_like(points, -1e9)
    active = np.ones(points.shape[1], bool)
    for _ in range(niter):
        low = points.astype(int)
        frac = points - low
        step = np.zeros_like(points)
        for corner in itertools.product((0, 1), repeat=mask.ndim):
            index = tuple(np.minimum(low[d] + c, shape[d] - 1) for d, c in enumerate(corner))
            weight = np.prod([frac[d] if c else 1 - frac[d] for d, c in enumerate(corner)], axis=0)
            step += weight * field[(slice(None), *index)]
        new = np.clip(points + step * np.float32(1 / FLOW_SCALE), 0, (shape - 1)[:, None])
        back2[:, active], back1[:, active] = back1[:, active], points[:, active]
        points[:, active] = new[:, active]
        active &= ((points - back2) ** 2).sum(axis=0) >= REST_DRIFT**2
    out = np.stack(np.indices(mask.shape)).astype(np.float32)
    out[(slice(None), *np.nonzero(mask))] = points
    return out


def grow_reference(hist: np.ndarray) -> np.ndarray:
    """Seeds by 5-wide maxima and suppression, then each bin to the nearest seed (any dimension)."""
    peaks = (hist > 0) & (hist == ndimage.maximum_filter(hist, size=5, mode="constant"))
    found = np.argwhere(peaks)
    order = np.argsort(-hist[tuple(found.T)], kind="stable")
    seeds: list[np.ndarray] = []
    for point in found[order]:
        if all(np.abs(point - s).max() > SEED_RADIUS for s in seeds):
            seeds.append(point)
    owner = np.zeros(hist.shape, np.int32)
    best = np.full(hist.shape, GROW_RADIUS + 1)
    grid = np.indices(hist.shape)
    for k, seed in enumerate(seeds, start=1):
        d = np.abs(grid - seed.reshape(-1, *([1] * hist.ndim))).max(axis=0)
        win = d < best
        owner[win], best[win] = k, d[win]
    return owner


def hole_owner_reference(labels: np.ndarray) -> np.ndarray:
    holes, n = ndimage.label(labels == 0)
    owner = np.zeros(n + 1, np.int64)
    for h in range(1, n + 1):
        region = holes == h
        ring = ndimage.binary_dilation(region) & ~region
        ids = np.unique(labels[ring])
        edge = any(np.take(region, i, axis=a).any() for a in range(region.ndim) for i in (0, -1))
        owner[h] = -1 if edge or ids.size != 1 else ids[0]
    return owner


def fill_holes_reference(labels: np.ndarray) -> np.ndarray:
    """Each enclosed background region takes the one id around it (see hole_owner_reference)."""
    holes, _ = ndimage.label(labels == 0)
    owner = hole_owner_reference(labels)
    fill = np.where(owner > 0, owner, 0)[holes]
    return np.where(fill > 0, fill, labels).astype(np.uint32)
