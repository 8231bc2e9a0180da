"""Synthetic instance labels with answers known by construction: the cells of every generator.

:func:`random_touching_labels`: cells are placed on a jittered grid and grow as a multiplicatively
weighted Voronoi partition: a pixel belongs to the cell that minimises ``distance / radius``,
within the cell's own wobbly elliptical outline. Neighbours therefore touch along shared
borders, sizes and elongations vary, and outlines are irregular. Every id is one 4-connected
region. :func:`add_small_cells` and :func:`nuclei_in_cells` add cells to such labels.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from skimage.measure import label as connected_regions

from flowseg.errors import InputError

# Pieces smaller than this (slivers left between neighbours) become background.
MIN_PIECE = 12


def random_touching_labels(
    shape: tuple[int, int],
    *,
    diameter: tuple[float, float] = (15.0, 40.0),
    density: float = 1.0,
    elongation: float = 1.6,
    seed: int = 0,
) -> npt.NDArray[np.uint32]:
    """Make a label image of touching, irregular cells.

    Parameters
    ----------
    shape : (int, int)
        Image height and width.
    diameter : (float, float)
        Range of cell diameters in pixels (drawn uniformly per cell).
    density : float
        1 packs cells so that most touch; 0.5 leaves about half the area as background gaps.
    elongation : float
        Largest ratio of a cell's long to short axis (1 = round cells).
    seed : int
        Seed of the random generator: the same seed gives the same image.

    Returns
    -------
    labels : (H, W) ndarray of uint32
        Consecutive ids, 0 = background.

    Raises
    ------
    ValueError
        If the shape, diameters, density or elongation are out of range.

    Examples
    --------
    >>> labels = random_touching_labels((128, 128), seed=1)
    >>> labels.shape, 10 < int(labels.max()) < 60
    ((128, 128), True)
    """
    low, high = diameter
    if min(shape) < 1 or not 0 < low <= high or not 0 < density <= 1 or elongation < 1:
        raise InputError(f"bad synthetic settings: shape={shape}, diameter={diameter}, "
                         f"density={density}, elongation={elongation}")
    rng = np.random.default_rng(seed)
    spacing = 0.5 * (low + high) / np.sqrt(density)
    centres = _jittered_grid(shape, spacing, rng)
    best = np.full(shape, np.inf, np.float32)
    labels = np.zeros(shape, np.uint32)
    for k, (cy, cx) in enumerate(centres, start=1):
        radius = 0.5 * rng.uniform(low, high)
        _paint_cell(labels, best, k, cy, cx, radius, rng, elongation)
    pieces = connected_regions(labels, background=0, connectivity=1)
    sizes = np.bincount(pieces.reshape(-1))
    pieces[sizes[pieces] < MIN_PIECE] = 0
    # Keep one piece per cell: the largest; the others (rare) become background.
    largest = _largest_piece_per_cell(labels, pieces, sizes)
    keep = np.isin(pieces, largest) & (pieces > 0)
    out = np.zeros(shape, np.uint32)
    _, out[keep] = np.unique(pieces[keep], return_inverse=True)
    out[keep] += 1
    return out


def _jittered_grid(
    shape: tuple[int, int], spacing: float, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    ys = np.arange(spacing / 2, shape[0] + spacing / 2, spacing)
    xs = np.arange(spacing / 2, shape[1] + spacing / 2, spacing)
    grid = np.stack(np.meshgrid(ys, xs, indexing="ij"), axis=-1).reshape(-1, 2)
    grid += rng.uniform(-0.35, 0.35, grid.shape) * spacing
    return grid[rng.permutation(len(grid))]


def _paint_cell(
    labels: npt.NDArray[np.uint32], best: npt.NDArray[np.float32], k: int, cy: float, cx: float,
    radius: float, rng: np.random.Generator, elongation: float,
) -> None:
    ratio = rng.uniform(1.0, elongation)
    angle = rng.uniform(0, np.pi)
    wobble_k = rng.integers(2, 6)
    wobble_a = rng.uniform(0.0, 0.15)
    wobble_phase = rng.uniform(0, 2 * np.pi)
    reach = int(np.ceil(radius * np.sqrt(ratio) * 1.3)) + 1
    y0, y1 = max(0, int(cy) - reach), min(labels.shape[0], int(cy) + reach + 1)
    x0, x1 = max(0, int(cx) - reach), min(labels.shape[1], int(cx) + reach + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = yy - cy, xx - cx
    u = dy * np.cos(angle) + dx * np.sin(angle)
    v = -dy * np.sin(angle) + dx * np.cos(angle)
    r = np.hypot(u / np.sqrt(ratio), v * np.sqrt(ratio))
    theta = np.arctan2(v, u)
    r = r / (radius * (1 + wobble_a * np.cos(wobble_k * theta + wobble_phase)))
    win_best = best[y0:y1, x0:x1]
    win = (r <= 1.0) & (r < win_best)
    win_best[win] = r[win]
    labels[y0:y1, x0:x1][win] = k


def _largest_piece_per_cell(
    labels: npt.NDArray[np.uint32], pieces: npt.NDArray[np.int64], sizes: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    flat_cells = labels.reshape(-1)
    flat_pieces = pieces.reshape(-1)
    fg = flat_pieces > 0
    cell_of_piece = np.zeros(sizes.size, np.int64)
    cell_of_piece[flat_pieces[fg]] = flat_cells[fg]
    ids = np.flatnonzero(cell_of_piece)
    order = np.lexsort((-sizes[ids], cell_of_piece[ids]))
    ids = ids[order]
    first = np.r_[True, cell_of_piece[ids][1:] != cell_of_piece[ids][:-1]]
    return ids[first]


def add_small_cells(
    labels: npt.NDArray[np.uint32], count: int, diameter: tuple[float, float], *,
    rng: np.random.Generator, elongation: float = 1.0,
) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32]]:
    """Add small cells (mitotic or apoptotic nuclei, say) where they fit in the background.

    Parameters
    ----------
    labels : (H, W) ndarray of uint32
        Consecutive ids; not modified.
    count : int
        Cells to try to place (those that would overlap a cell are skipped).
    diameter : (float, float)
        Range of their diameters in pixels.
    rng : numpy.random.Generator
    elongation : float
        Largest long-to-short axis ratio (about 3 draws metaphase plates).

    Returns
    -------
    labels : (H, W) ndarray of uint32
        A copy with the new cells, ids following the old ones.
    added : (K,) ndarray of uint32
        The new ids.

    Examples
    --------
    >>> base = np.zeros((64, 64), np.uint32)
    >>> out, new = add_small_cells(base, 3, (6, 8), rng=np.random.default_rng(0))
    >>> len(new) == out.max() and len(new) > 0
    True
    """
    out = labels.copy()
    added = []
    for _ in range(count):
        radius = 0.5 * rng.uniform(*diameter)
        ratio = rng.uniform(1.0, elongation)
        cy, cx = rng.uniform(0, out.shape[0]), rng.uniform(0, out.shape[1])
        reach = int(np.ceil(radius * np.sqrt(ratio))) + 2
        y0, x0 = max(0, int(cy) - reach), max(0, int(cx) - reach)
        yy, xx = np.mgrid[y0: min(out.shape[0], int(cy) + reach + 1),
                          x0: min(out.shape[1], int(cx) + reach + 1)]
        angle = rng.uniform(0, np.pi)
        u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
        v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
        disk = np.hypot(u / np.sqrt(ratio), v * np.sqrt(ratio)) <= radius
        window = out[y0: y0 + disk.shape[0], x0: x0 + disk.shape[1]]
        # Leave a one-pixel gap to every other cell, so that no id splits or merges.
        if disk.sum() < MIN_PIECE or window[_grow(disk)].any():
            continue
        new_id = int(out.max()) + 1
        window[disk] = new_id
        added.append(new_id)
    return out, np.array(added, np.uint32)


def _grow(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    from scipy.ndimage import binary_dilation

    return binary_dilation(mask, iterations=1)


def nuclei_in_cells(
    cells: npt.NDArray[np.uint32], *, size: tuple[float, float] = (0.5, 0.8),
    rng: np.random.Generator,
) -> npt.NDArray[np.uint32]:
    """Draw one elliptical nucleus inside every cell, near its centre, with the cell's id.

    Parameters
    ----------
    cells : (H, W) ndarray of uint32
    size : (float, float)
        Range of the nucleus radius as a fraction of the cell's inscribed radius.
    rng : numpy.random.Generator

    Returns
    -------
    nuclei : (H, W) ndarray of uint32
        0 outside nuclei; every nucleus lies inside its own cell.
    """
    from scipy.ndimage import distance_transform_edt, find_objects

    nuclei = np.zeros_like(cells)
    for k, box in enumerate(find_objects(cells), start=1):
        if box is None:
            continue
        cell = cells[box] == k
        depth = distance_transform_edt(np.pad(cell, 1))[1:-1, 1:-1]
        cy, cx = np.unravel_index(int(np.argmax(depth)), depth.shape)
        radius = float(depth.max()) * rng.uniform(*size)
        ratio, angle = rng.uniform(1.0, 1.5), rng.uniform(0, np.pi)
        yy, xx = np.mgrid[: cell.shape[0], : cell.shape[1]]
        u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
        v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
        inside = (np.hypot(u / np.sqrt(ratio), v * np.sqrt(ratio)) <= radius) & cell
        nuclei[box][inside] = k
    return nuclei


def label_edges(labels: npt.NDArray[np.uint32]) -> npt.NDArray[np.bool_]:
    """Mark pixels (voxels) with a face neighbour of another id (background included).

    Parameters
    ----------
    labels : (H, W) or (Z, Y, X) ndarray

    Returns
    -------
    edges : ndarray of bool, same shape

    Examples
    --------
    >>> label_edges(np.array([[1, 1, 2]])).tolist()
    [[False, True, True]]
    """
    edges = np.zeros(labels.shape, bool)
    for axis in range(labels.ndim):
        before = (slice(None),) * axis + (slice(None, -1),)
        after = (slice(None),) * axis + (slice(1, None),)
        step = labels[before] != labels[after]
        edges[before] |= step
        edges[after] |= step
    return edges


def tidy_labels(labels: npt.NDArray[np.integer], *,
                min_size: int = MIN_PIECE) -> npt.NDArray[np.uint32]:
    """Give every 4-connected piece its own id, drop pieces under ``min_size``, renumber 1..N.

    Also how a plane through 3-D cells becomes 2-D labels (``../shared/data`` drops pieces under
    15 px).

    Parameters
    ----------
    labels : (H, W) or (Z, Y, X) ndarray of integers
        In a volume, pieces are 6-connected.
    min_size : int
        Pixels (voxels) a piece needs to be kept.

    Returns
    -------
    labels : (H, W) or (Z, Y, X) ndarray of uint32

    Examples
    --------
    >>> tidy_labels(np.array([[5] * 20 + [0] + [5] * 20])).max()
    np.uint32(2)
    """
    pieces = connected_regions(labels, background=0, connectivity=1)
    sizes = np.bincount(pieces.reshape(-1))
    pieces[sizes[pieces] < min_size] = 0
    _, inverse = np.unique(pieces, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.uint32)


def drawn_cells(shape: tuple[int, int], diameter: float, rng: np.random.Generator, *,
                density: tuple[float, float], elongation: tuple[float, float]
                ) -> npt.NDArray[np.uint32]:
    """Draw :func:`random_touching_labels` around a typical diameter, density and shape drawn.

    Parameters
    ----------
    shape : (int, int)
    diameter : float
        Typical diameter; cells range from 0.7 to 1.3 times it.
    rng : numpy.random.Generator
    density, elongation : (float, float)
        Ranges that this image's density and largest elongation are drawn from.

    Returns
    -------
    labels : (H, W) ndarray of uint32
    """
    return random_touching_labels(
        shape, diameter=(0.7 * diameter, 1.3 * diameter), density=rng.uniform(*density),
        elongation=rng.uniform(*elongation), seed=int(rng.integers(1 << 31)))


def median_cell_diameter(labels: npt.NDArray[np.integer], *, default: float = 10.0) -> float:
    """Return the median equivalent diameter of the cells, or ``default`` when there is none.

    Parameters
    ----------
    labels : (H, W) ndarray of non-negative integers
    default : float

    Returns
    -------
    diameter : float

    Examples
    --------
    >>> labels = np.zeros((20, 20), np.uint32); labels[:10, :10] = 1
    >>> round(median_cell_diameter(labels), 2)
    11.28
    """
    sizes = np.bincount(np.asarray(labels).reshape(-1))[1:]
    sizes = sizes[sizes > 0]
    return float(np.median(2 * np.sqrt(sizes / np.pi))) if sizes.size else default


def random_touching_volume(
    shape: tuple[int, int, int],
    *,
    diameter: float = 12.0,
    stretch: tuple[float, float, float] = (1.0, 1.0, 1.0),
    seed: int = 0,
) -> npt.NDArray[np.uint32]:
    """Make a volume of packed, touching 3-D cells: a Voronoi tessellation cut to rounded cells.

    Cell centres lie on a jittered grid; every voxel belongs to its nearest centre (in units
    shrunk by ``stretch``, so that ``(1, 1, 3)`` makes cells three times longer along x), unless it
    is farther than 0.6 diameters, which rounds off the cells at the edge of the packing.

    Parameters
    ----------
    shape : (int, int, int)
        Depth, height and width in voxels.
    diameter : float
        Spacing of the centres (before stretching), about the cells' diameter.
    stretch : (float, float, float)
        How much longer cells are along z, y and x.
    seed : int

    Returns
    -------
    labels : (Z, Y, X) ndarray of uint32
        Consecutive ids, 0 = background; each id is one 6-connected piece.

    Raises
    ------
    ValueError
        If the shape, diameter or stretch are out of range.

    Examples
    --------
    >>> labels = random_touching_volume((16, 48, 48), diameter=10, seed=1)
    >>> labels.shape, int(labels.max()) > 20
    ((16, 48, 48), True)
    """
    if len(shape) != 3 or min(shape) < 1 or diameter < 2 or min(stretch) <= 0:
        raise InputError(f"bad synthetic volume: shape={shape}, diameter={diameter}, "
                         f"stretch={stretch}")
    rng = np.random.default_rng(seed)
    steps = [diameter * s for s in stretch]
    axes = [np.arange(step / 2, n, step) for n, step in zip(shape, steps, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    centres = grid + rng.uniform(-0.25, 0.25, grid.shape) * np.array(steps)
    centres = np.clip(np.rint(centres), 0, np.array(shape) - 1).astype(np.intp)
    markers = np.zeros(shape, np.int32)
    markers[tuple(centres.T)] = np.arange(1, len(centres) + 1)
    distance, nearest = ndimage.distance_transform_edt(markers == 0, sampling=1 / np.array(stretch),
                                                       return_indices=True)
    labels = markers[tuple(nearest)]
    labels[distance > 0.6 * diameter] = 0
    return tidy_labels(labels.astype(np.uint32))
