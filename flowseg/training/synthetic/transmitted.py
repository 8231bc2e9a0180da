"""Transmitted light: brightfield, phase contrast with halos, and DIC relief.

Each cell is given a thickness (a dome over its area, thinner at the border); what the camera
sees is a different function of that thickness in each technique: weak absorption and dark rims
(brightfield), a dark body in a bright halo (phase contrast), or shading along one direction (DIC).
Granules, a nucleus in some cells and unlabelled debris add detail.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.ndimage import binary_dilation, distance_transform_edt, gaussian_filter, maximum

from flowseg.training.synthetic.labels import (
    drawn_cells,
    label_edges,
    median_cell_diameter,
    nuclei_in_cells,
)
from flowseg.training.synthetic.optics import camera, defocus, illumination, per_cell, quantize, texture


def cell_labels(shape: tuple[int, int], diameter: float,
                rng: np.random.Generator) -> npt.NDArray[np.uint32]:
    """Cells from sparse to touching, round to elongated."""
    return drawn_cells(shape, diameter, rng, density=(0.3, 0.95), elongation=(1.0, 2.5))


def render_brightfield(labels: npt.NDArray[np.uint32],
                       rng: np.random.Generator) -> npt.NDArray[np.integer]:
    """Low-contrast cells with dark rims and granules on a bright field; gray or RGB 8-bit."""
    thick, diameter = _thickness(labels, rng)
    rim = gaussian_filter(label_edges(labels).astype(float), max(0.5, diameter / 40))
    grains = texture(labels, rng, scale=diameter * 0.6, grain=1.0)
    nucleus = nuclei_in_cells(labels, rng=rng) > 0
    absorb = (rng.uniform(0.05, 0.25) * thick + rng.uniform(0.05, 0.15) * (grains - 1) * thick
              + rng.uniform(0.0, 0.15) * nucleus * (rng.random() < 0.6))
    image = np.exp(-absorb) - rng.uniform(0.1, 0.35) * rim * rng.choice([-0.4, 1.0], p=[0.2, 0.8])
    return _finish(image * 0.8, labels, rng, diameter)


def render_phase(labels: npt.NDArray[np.uint32],
                 rng: np.random.Generator) -> npt.NDArray[np.integer]:
    """Phase contrast: dark cells with granules inside a bright halo; gray or RGB 8-bit."""
    thick, diameter = _thickness(labels, rng)
    width = rng.uniform(1.5, 3.5) * max(1.0, diameter / 25)
    fg = (labels > 0).astype(float)
    halo = np.clip(gaussian_filter(fg, width) - fg, 0, None) * 2
    grains = np.clip(texture(labels, rng, scale=diameter * 0.5, grain=0.6), 0, None)
    depth = rng.uniform(0.2, 0.45)
    image = (0.5 - depth * thick * grains + rng.uniform(0.3, 0.6) * halo
             - 0.1 * gaussian_filter(label_edges(labels).astype(float), 0.7))
    return _finish(image, labels, rng, diameter)


def render_dic(labels: npt.NDArray[np.uint32], rng: np.random.Generator) -> npt.NDArray[np.integer]:
    """Differential interference contrast: relief shading along a random shear direction."""
    thick, diameter = _thickness(labels, rng)
    path = gaussian_filter(thick * np.clip(texture(labels, rng, scale=diameter, grain=0.3), 0, None),
                           max(0.7, diameter / 30))
    gy, gx = np.gradient(path)
    angle = rng.uniform(0, 2 * np.pi)
    shade = gy * np.sin(angle) + gx * np.cos(angle)
    image = 0.5 + shade / (np.abs(shade).max() + 1e-9) * rng.uniform(0.2, 0.4)
    return _finish(image, labels, rng, diameter)


def debris_labels(shape: tuple[int, int], diameter: float,
                  rng: np.random.Generator) -> npt.NDArray[np.uint32]:
    """Sparse cells, round to elongated, with room between them for debris."""
    return drawn_cells(shape, diameter, rng, density=(0.15, 0.6), elongation=(1.0, 2.5))


def render_debris(labels: npt.NDArray[np.uint32],
                  rng: np.random.Generator) -> npt.NDArray[np.integer]:
    """Phase contrast or brightfield cells among debris, dust and halos that are not cells.

    Debris: specks and fragments a tenth to two fifths of a cell across, drawn like cells (dark
    bodies in halos) but left unlabelled, up to half as many as the cells; dust on the optics: large
    faint out-of-focus rings; a few bright halos with nothing inside (floating vesicles).
    """
    diameter = median_cell_diameter(labels)
    count = int(labels.max())
    room = ~binary_dilation(labels > 0, iterations=max(1, int(diameter / 6)))
    junk = drawn_cells(labels.shape, max(4.0, diameter * rng.uniform(0.1, 0.4)), rng,
                       density=(0.05, 0.3),
                       elongation=(1.0, 3.0))
    junk = np.where(room, junk, 0)
    ids = np.unique(junk)[1:]
    keep = rng.permutation(ids)[:max(1, count // 2)]
    junk = np.where(np.isin(junk, keep), junk, 0)
    both = labels.astype(np.uint32).copy()
    both[junk > 0] = count + junk[junk > 0]
    # Debris is drawn as the cells are (at most a third of the ids, so the median size that
    # sets halo width and grain stays the cells'): only its size and label tell it apart.
    draw = render_phase if rng.random() < 0.7 else render_brightfield
    image = draw(both, rng).astype(np.float64)
    yy, xx = np.ogrid[: labels.shape[0], : labels.shape[1]]
    rings = np.zeros(labels.shape)
    for _ in range(int(rng.integers(0, 4))):  # dust: large faint out-of-focus rings
        distance = np.hypot(yy - rng.uniform(0, labels.shape[0]), xx - rng.uniform(0, labels.shape[1]))
        radius = diameter * rng.uniform(0.8, 3.0)
        rings += np.exp(-((distance - radius) / (0.15 * radius)) ** 2) - 0.5 * (distance < radius)
    rings *= rng.uniform(0.03, 0.12)
    # Round floating debris (dead cells, vesicles): a bright halo around a small dark core.
    free = np.flatnonzero(room.reshape(-1))
    for index in rng.choice(free, min(free.size, int(rng.integers(0, 2 + count // 3)))):
        cy, cx = np.unravel_index(index, labels.shape)
        distance = np.hypot(yy - cy, xx - cx)
        radius = max(2.0, diameter * rng.uniform(0.08, 0.25))
        rings += rng.uniform(0.3, 0.8) * np.exp(-((distance - radius) / (0.35 * radius)) ** 2)
        rings -= rng.uniform(0.1, 0.4) * np.exp(-(distance / (0.6 * radius)) ** 2)
    shade = 255 * rings
    image += shade if image.ndim == 2 else shade[..., None]
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _thickness(labels: npt.NDArray[np.uint32],
               rng: np.random.Generator) -> tuple[npt.NDArray[np.float64], float]:
    """Return a dome per cell, 1 at its deepest point, and the median cell diameter."""
    edges = label_edges(labels) | (labels == 0)
    depth = distance_transform_edt(~edges)
    diameter = median_cell_diameter(labels)
    count = int(labels.max())
    peak = np.r_[1.0, maximum(depth, labels, np.arange(1, count + 1))] if count else np.ones(1)
    dome = depth / np.maximum(peak[labels], 1.0)
    thick = np.sqrt(np.clip(dome, 0, 1)) * per_cell(labels, rng.uniform(0.6, 1.0, int(labels.max())))
    return thick * (labels > 0), diameter


def _finish(image: npt.NDArray[np.float64], labels: npt.NDArray[np.uint32],
            rng: np.random.Generator, diameter: float) -> npt.NDArray[np.integer]:
    """Unlabelled dark debris, defocus, uneven light, noise; 8-bit gray or tinted RGB."""
    specks = (rng.random(labels.shape) < rng.uniform(0, 3e-4)) & (labels == 0)
    image = image - 0.3 * np.clip(gaussian_filter(specks.astype(float), 1.2) * 9, 0, 1)
    image = defocus(image, rng, (0.3, 0.3 + 0.03 * diameter))
    image = image * illumination(labels.shape, rng.uniform(0, 0.2), rng)
    image = camera(np.clip(image, 0, None), rng, photons=(200.0, 3000.0))
    if rng.random() < 0.5:
        return quantize(image[..., None] * rng.uniform(0.85, 1.15, 3), np.uint8, rng,
                        stretch=False)
    return quantize(image, np.uint8, rng, stretch=False)
