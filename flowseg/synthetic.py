"""Synthetic instance labels with answers known by construction, for tests, benchmarks and training.

Cells are placed on a jittered grid and grow as a multiplicatively weighted Voronoi partition:
a pixel belongs to the cell that minimises ``distance / radius``, within the cell's own wobbly
elliptical outline. Neighbours therefore touch along shared borders, sizes and elongations vary,
and outlines are irregular. Every id is one 4-connected region.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from skimage.measure import label as connected_regions

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
        raise ValueError(f"bad synthetic settings: shape={shape}, diameter={diameter}, "
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


MODALITIES = ("fluorescence", "brightfield", "tissue")


def make_sample(
    shape: tuple[int, int], modality: str, *, seed: int = 0
) -> tuple[npt.NDArray[np.generic], npt.NDArray[np.uint32]]:
    """Make one synthetic microscopy image and its exact instance labels.

    Parameters
    ----------
    shape : (int, int)
        Image height and width.
    modality : {"fluorescence", "brightfield", "tissue"}
        - fluorescence: bright cells of varied brightness on a dark, unevenly lit background,
          blurred, with shot and read noise; gray 16-bit, gray 8-bit or two-channel 16-bit;
        - brightfield: phase-contrast-like gray cells with dark rims, bright halos and a textured
          interior on a mid-gray background; 8-bit gray or RGB;
        - tissue: H&E-like RGB, densely packed purple nuclei (the labelled cells) in pink,
          textured stroma; 8-bit RGB.
    seed : int
        The same seed gives the same sample.

    Returns
    -------
    image : (H, W) or (H, W, C) ndarray of uint8 or uint16
        Laid out as it would be stored in a file.
    labels : (H, W) ndarray of uint32

    Raises
    ------
    ValueError
        If the modality is unknown.

    Examples
    --------
    >>> image, labels = make_sample((64, 64), "tissue", seed=0)
    >>> image.shape, image.dtype.name, labels.shape
    ((64, 64, 3), 'uint8', (64, 64))
    """
    _check_modality(modality)
    rng = np.random.default_rng(seed)
    sub_seed = int(rng.integers(1 << 31))
    if modality == "tissue":
        labels = random_touching_labels(shape, diameter=(9.0, 20.0), density=0.75, seed=sub_seed)
    else:
        labels = random_touching_labels(shape, diameter=(12.0, 40.0),
                                         density=rng.uniform(0.45, 1.0),
                                         elongation=rng.uniform(1.0, 2.5), seed=sub_seed)
    return _RENDERERS[modality](labels, rng), labels


def render(labels: npt.NDArray[np.uint32], modality: str, *, seed: int = 0) -> npt.NDArray[np.generic]:
    """Render an image of given labels in one modality (as :func:`make_sample` renders its own).

    Parameters
    ----------
    labels : (H, W) ndarray of uint32
        For example from :func:`random_touching_labels` with a chosen density or elongation.
    modality : {"fluorescence", "brightfield", "tissue"}
    seed : int

    Returns
    -------
    image : (H, W) or (H, W, C) ndarray of uint8 or uint16

    Raises
    ------
    ValueError
        If the modality is unknown.

    Examples
    --------
    >>> render(random_touching_labels((32, 32), seed=0), "brightfield").dtype.name
    'uint8'
    """
    _check_modality(modality)
    return _RENDERERS[modality](np.asarray(labels, np.uint32), np.random.default_rng(seed))


def _check_modality(modality: str) -> None:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; expected one of {MODALITIES}")


def _smooth_noise(shape: tuple[int, int], sigma: float, rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter, zoom

    if sigma > 200:  # slide-sized fields: filter a coarse grid, then interpolate up
        coarse = [max(2, int(np.ceil(n / sigma * 8))) for n in shape]
        small = gaussian_filter(rng.normal(0, 1, coarse), 8)
        noise = zoom(small, [n / c for n, c in zip(shape, coarse, strict=True)], order=1)
        noise = noise[: shape[0], : shape[1]]
    else:
        noise = gaussian_filter(rng.normal(0, 1, shape), sigma)
    return noise / (noise.std() + 1e-9)


def _per_cell(labels: npt.NDArray[np.uint32], low: float, high: float,
              rng: np.random.Generator) -> np.ndarray:
    values = np.r_[0.0, rng.uniform(low, high, int(labels.max()))]
    return values[labels]


def _render_fluorescence(labels: npt.NDArray[np.uint32], rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    cells = _per_cell(labels, 0.25, 1.0, rng) * (1 + 0.25 * _smooth_noise(labels.shape, 1.5, rng))
    signal = gaussian_filter(cells * (labels > 0), rng.uniform(0.7, 2.0))
    light = 1 + rng.uniform(0.1, 0.5) * _smooth_noise(labels.shape, max(labels.shape) / 4, rng)
    photons = rng.uniform(50, 800)
    image = rng.poisson(np.clip(signal * light, 0, None) * photons + photons * 0.05) / photons
    image = image + rng.normal(0, 0.02, labels.shape)
    kind = rng.integers(3)
    if kind == 0:
        return _quantize(image, np.uint8, rng)
    if kind == 1:
        return _quantize(image, np.uint16, rng)
    # a second channel: a cytoplasm-like stain, dimmer and blurrier, cells only
    other = gaussian_filter(_per_cell(labels, 0.1, 0.6, rng), 2.5) + rng.normal(0, 0.02, labels.shape)
    return _quantize(np.stack([image, other], axis=-1), np.uint16, rng)


def _render_brightfield(labels: npt.NDArray[np.uint32], rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter
    from skimage.segmentation import find_boundaries

    rim = find_boundaries(labels, mode="inner").astype(float)
    halo = find_boundaries(labels, mode="outer") & (labels == 0)
    inside = (labels > 0) * (_per_cell(labels, -0.15, 0.1, rng)
                             + 0.05 * _smooth_noise(labels.shape, 1.0, rng))
    image = 0.5 + inside - rng.uniform(0.15, 0.35) * rim + rng.uniform(0.05, 0.2) * halo
    image = gaussian_filter(image, rng.uniform(0.5, 1.2))
    image = image * (1 + 0.15 * _smooth_noise(labels.shape, max(labels.shape) / 3, rng))
    image = image + rng.normal(0, rng.uniform(0.01, 0.04), labels.shape)
    if rng.random() < 0.5:
        tint = rng.uniform(0.85, 1.15, 3)
        return _quantize(image[..., None] * tint, np.uint8, rng, stretch=False)
    return _quantize(image, np.uint8, rng, stretch=False)


def _render_tissue(labels: npt.NDArray[np.uint32], rng: np.random.Generator) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    stroma = 0.5 + 0.5 * np.clip(_smooth_noise(labels.shape, 3.0, rng), -1.5, 1.5) / 1.5
    hematoxylin = (labels > 0) * (_per_cell(labels, 0.6, 1.0, rng)
                                  * (1 + 0.2 * _smooth_noise(labels.shape, 1.0, rng)))
    hematoxylin = gaussian_filter(hematoxylin, 0.8)
    eosin = 0.35 + 0.35 * stroma
    # Optical densities of the two stains per RGB channel (Beer-Lambert), a little varied.
    h_od = np.array([0.65, 0.70, 0.29]) * rng.uniform(0.8, 1.2, 3) * 1.4
    e_od = np.array([0.07, 0.99, 0.11]) * rng.uniform(0.8, 1.2, 3) * 0.6
    od = hematoxylin[..., None] * h_od + eosin[..., None] * e_od
    rgb = np.exp(-od) + rng.normal(0, 0.015, (*labels.shape, 3))
    return _quantize(rgb, np.uint8, rng, stretch=False)


def _quantize(image: np.ndarray, dtype: type, rng: np.random.Generator,
              stretch: bool = True) -> np.ndarray:
    top = np.iinfo(dtype).max
    if stretch:  # use a random part of the range, as real cameras and bit depths do
        image = image / (np.percentile(image, 99.9) + 1e-9) * rng.uniform(0.2, 0.9) * top
    else:
        image = image * top
    return np.clip(np.rint(image), 0, top).astype(dtype)


_RENDERERS = {"fluorescence": _render_fluorescence, "brightfield": _render_brightfield,
              "tissue": _render_tissue}
