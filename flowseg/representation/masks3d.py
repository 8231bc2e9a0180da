"""The 3-D kernels of :mod:`flowseg.representation.masks`: flow following and end-point seeds in volumes.

Private to the masks stage: :func:`flowseg.representation.masks.masks_from_flows` and its steps validate
their inputs and call these when the flows are ``(3, Z, Y, X)``. They mirror the 2-D kernels beside their
wrappers in :mod:`flowseg.representation.masks` (trilinear instead of bilinear interpolation, a 5 x 5 x 5
seed window); they live here so that each module stays one screenful of kernels.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True, nogil=True, parallel=True)
def _euler_steps_3d(flows, mask, niter, scale, rest, endpoints):  # type: ignore[no-untyped-def]
    depth, height, width = mask.shape
    for z in prange(depth):
        for y in range(height):
            for x in range(width):
                pz, py, px = np.float32(z), np.float32(y), np.float32(x)
                if mask[z, y, x]:
                    # Positions one and two steps back, to stop at rest or in a sink's 2-cycle.
                    qz, qy, qx = pz, py, px
                    rz, ry, rx = np.float32(-1e9), np.float32(-1e9), np.float32(-1e9)
                    for _ in range(niter):
                        dz, dy, dx = _interpolate_3d(flows, mask, pz, py, px)
                        rz, ry, rx, qz, qy, qx = qz, qy, qx, pz, py, px
                        pz = min(max(pz + dz * scale, 0.0), depth - 1.0)
                        py = min(max(py + dy * scale, 0.0), height - 1.0)
                        px = min(max(px + dx * scale, 0.0), width - 1.0)
                        if (pz - rz) ** 2 + (py - ry) ** 2 + (px - rx) ** 2 < rest:
                            break
                endpoints[0, z, y, x] = pz
                endpoints[1, z, y, x] = py
                endpoints[2, z, y, x] = px


@njit(cache=True, nogil=True, inline="always")
def _interpolate_3d(flows, mask, pz, py, px):  # type: ignore[no-untyped-def]
    """Trilinear interpolation of the flows at a point; voxels off the mask count as zero."""
    depth, height, width = mask.shape
    z0, y0, x0 = int(pz), int(py), int(px)
    fz, fy, fx = pz - z0, py - y0, px - x0
    out = np.zeros(3, np.float32)
    for a in range(2):
        z = min(z0 + a, depth - 1)
        wz = fz if a else 1 - fz
        for b in range(2):
            y = min(y0 + b, height - 1)
            wy = fy if b else 1 - fy
            for c in range(2):
                x = min(x0 + c, width - 1)
                w = wz * wy * (fx if c else 1 - fx) * mask[z, y, x]
                for k in range(3):
                    out[k] += w * flows[k, z, y, x]
    return out[0], out[1], out[2]


@njit(cache=True, nogil=True)
def _bin_endpoints_3d(endpoints, mask, bins, hist):  # type: ignore[no-untyped-def]
    """Round each foreground end point to its voxel bin (-1 elsewhere) and count per bin."""
    depth, height, width = mask.shape
    for z in range(depth):
        for y in range(height):
            for x in range(width):
                if mask[z, y, x]:
                    bz = min(max(int(np.rint(endpoints[0, z, y, x])), 0), depth - 1)
                    by = min(max(int(np.rint(endpoints[1, z, y, x])), 0), height - 1)
                    bx = min(max(int(np.rint(endpoints[2, z, y, x])), 0), width - 1)
                    bins[z, y, x] = (bz * height + by) * width + bx
                    hist[bz, by, bx] += 1
                else:
                    bins[z, y, x] = -1


@njit(cache=True, nogil=True)
def _grow_seeds_3d(hist, seed_radius, grow_radius, queue, steps):  # type: ignore[no-untyped-def]
    """Seeds at the fullest bins of their 5 x 5 x 5 window; bins join the nearest seed."""
    depth, height, width = hist.shape
    plane = height * width
    cand, counts = [], []
    for z in range(depth):
        for y in range(height):
            for x in range(width):
                n = hist[z, y, x]
                if n > 0 and n >= _window_max(hist, z, y, x, 2):
                    cand.append((z * height + y) * width + x)
                    counts.append(n)
    order = np.argsort(-np.array(counts, dtype=np.int64), kind="mergesort")
    owner = np.zeros((depth, height, width), np.int32)
    head = tail = 0
    seeds = 0
    for i in order:
        z, y, x = cand[i] // plane, cand[i] % plane // width, cand[i] % width
        if _window_max(owner, z, y, x, seed_radius) > 0:
            continue
        seeds += 1
        owner[z, y, x] = seeds
        queue[tail] = cand[i]
        steps[tail] = 0
        tail += 1
    while head < tail:  # breadth first from all seeds at once: each bin joins the nearest seed
        z, y, x = queue[head] // plane, queue[head] % plane // width, queue[head] % width
        d = steps[head]
        head += 1
        if d == grow_radius:
            continue
        for w in range(max(0, z - 1), min(depth, z + 2)):
            for v in range(max(0, y - 1), min(height, y + 2)):
                for u in range(max(0, x - 1), min(width, x + 2)):
                    if owner[w, v, u] == 0:
                        owner[w, v, u] = owner[z, y, x]
                        queue[tail] = (w * height + v) * width + u
                        steps[tail] = d + 1
                        tail += 1
    return owner


@njit(cache=True, nogil=True, inline="always")
def _window_max(array, z, y, x, radius):  # type: ignore[no-untyped-def]
    depth, height, width = array.shape
    best = array[z, y, x]
    for w in range(max(0, z - radius), min(depth, z + radius + 1)):
        for v in range(max(0, y - radius), min(height, y + radius + 1)):
            for u in range(max(0, x - radius), min(width, x + radius + 1)):
                best = max(best, array[w, v, u])
    return best
