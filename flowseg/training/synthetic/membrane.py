"""Whole cells in tissue with a membrane stain and a nuclear channel (TissueNet-like).

What the real training data lacks: multiplexed tissue images, where one channel outlines every
cell's membrane (bright rings that neighbours share) and another stains its nucleus, and the
labels are whole cells, not nuclei. Cells are packed, a few are cut by the section (no nucleus in
the plane), membranes are patchy and the nuclear channel bleeds a little into the membrane one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.ndimage import distance_transform_edt, gaussian_filter

from flowseg.training.synthetic.labels import (
    drawn_cells,
    label_edges,
    median_cell_diameter,
    nuclei_in_cells,
)
from flowseg.training.synthetic.optics import (
    camera,
    defocus,
    illumination,
    per_cell,
    quantize,
    smooth_noise,
    texture,
)


def tissue_cell_labels(shape: tuple[int, int], diameter: float,
                       rng: np.random.Generator) -> npt.NDArray[np.uint32]:
    """Whole cells packed as in a tissue section, round to elongated, with few gaps."""
    return drawn_cells(shape, diameter, rng, density=(0.8, 1.0), elongation=(1.0, 2.2))


def render_membrane(labels: npt.NDArray[np.uint32],
                    rng: np.random.Generator) -> npt.NDArray[np.integer]:
    """Render a membrane stain with a nuclear channel: two 16-bit channels or green + blue RGB.

    The membrane channel is brightest on the cell borders (shared by neighbours), patchy along
    them and faint inside; the nuclear channel holds one textured nucleus per cell, except for
    cells the section cut above or below their nucleus (5-25 %). Unlabelled stroma (faint smooth
    signal in the gaps) and a few bright extracellular specks sit between the cells.
    """
    count = int(labels.max())
    diameter = median_cell_diameter(labels)
    edges = label_edges(labels) & (labels > 0)
    width = rng.uniform(0.6, 1.2) * max(1.0, diameter / 25)
    ring = np.clip(gaussian_filter(edges.astype(float), width) * 2.5 * width, 0, 1)
    patchy = np.clip(1 + rng.uniform(0.3, 0.7) * smooth_noise(labels.shape, diameter / 4, rng),
                     0.15, None)
    bright = per_cell(labels, np.exp(rng.uniform(np.log(0.3), 0.0, count)))
    # A cell's own brightness spreads into the ring around it, so rings differ from cell to cell.
    membrane = ring * patchy * np.maximum(gaussian_filter(bright, width), 0.2)
    membrane += rng.uniform(0.03, 0.15) * bright * np.clip(texture(labels, rng, scale=diameter,
                                                                   grain=0.5), 0, None)
    nuclei = nuclei_in_cells(labels, size=(0.45, 0.75), rng=rng)
    cut = np.r_[False, rng.random(count) < rng.uniform(0.05, 0.25)]
    nuclei[cut[nuclei]] = 0
    depth = distance_transform_edt(nuclei > 0)
    rounded = np.clip(0.4 + depth / max(1.0, 0.15 * diameter), 0, 1) * (nuclei > 0)
    nuc = per_cell(nuclei, np.exp(rng.uniform(np.log(0.2), 0.0, count))) * rounded
    nuc *= np.clip(texture(nuclei, rng, scale=diameter * 0.4, grain=0.3), 0.2, None)
    gaps = labels == 0
    stroma = rng.uniform(0, 0.12) * np.clip(smooth_noise(labels.shape, diameter / 2, rng) + 1,
                                            0, None) * gaps
    specks = (rng.random(labels.shape) < rng.uniform(0, 2e-4)).astype(float)
    specks = np.clip(gaussian_filter(specks, 1.0) * 6, 0, 1.5)
    stack = np.stack([membrane + stroma + specks + 0.1 * nuc, nuc + 0.05 * membrane], axis=-1)
    stack = defocus(stack, rng, (0.4, 0.4 + 0.03 * diameter))
    light = illumination(labels.shape, rng.uniform(0, 0.3), rng)[..., None]
    image = camera((stack + rng.uniform(0.0, 0.05)) * light, rng)
    if rng.integers(2):
        return quantize(image, np.uint16, rng)
    zeros = np.zeros(labels.shape)
    return quantize(np.stack([zeros, image[..., 0], image[..., 1]], axis=-1), np.uint8, rng)
