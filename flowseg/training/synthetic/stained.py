"""Stained tissue sections: H&E, immunohistochemistry (hematoxylin + DAB), and layered skin.

Tissue is made of cells whose membranes and cytoplasm are visible but not labelled (the
honeycomb between nuclei is not a cell); a nucleus shows in most of them. Stroma regions hold
collagen fibres with clefts between bundles (also not cells) and sparse, elongated fibroblast
nuclei. Colours follow Beer-Lambert absorption of each stain, with stain strengths varied per
image as labs and scanners vary.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter

from flowseg.training.synthetic.labels import (
    add_small_cells,
    label_edges,
    median_cell_diameter,
    nuclei_in_cells,
    random_touching_labels,
    tidy_labels,
)
from flowseg.training.synthetic.optics import camera, defocus, per_cell, quantize, smooth_noise, texture

# Optical density of each stain in R, G, B (Ruifrok and Johnston's colour deconvolution vectors).
HEMATOXYLIN = np.array([0.65, 0.70, 0.29])
EOSIN = np.array([0.07, 0.99, 0.11])
DAB = np.array([0.27, 0.57, 0.78])


def make_he(shape: tuple[int, int], diameter: float,
            rng: np.random.Generator) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.uint32]]:
    """Make an H&E image of :func:`tissue_layout`, and its nuclei."""
    labels, cells, stroma = tissue_layout(shape, diameter, rng)
    return render_he(labels, rng, cells=cells, stroma=stroma), labels


def make_ihc(shape: tuple[int, int], diameter: float,
             rng: np.random.Generator) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.uint32]]:
    """Make an IHC image of :func:`tissue_layout`, and its nuclei."""
    labels, cells, stroma = tissue_layout(shape, diameter, rng)
    return render_ihc(labels, rng, cells=cells, stroma=stroma), labels


def make_skin(shape: tuple[int, int], diameter: float,
              rng: np.random.Generator) -> tuple[npt.NDArray[np.integer], npt.NDArray[np.uint32]]:
    """Make an H&E image of :func:`skin_layout`, and its nuclei."""
    labels, cells, dermis, corneum = skin_layout(shape, diameter, rng)
    return render_skin(labels, rng, cells=cells, dermis=dermis, corneum=corneum), labels


Layout = tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32], npt.NDArray[np.bool_]]


def tissue_layout(shape: tuple[int, int], diameter: float, rng: np.random.Generator,
                  stroma_share: float | None = None) -> Layout:
    """Return nuclei labels, the cells around them (unlabelled), and the stroma mask."""
    cells = random_touching_labels(shape, diameter=(1.8 * diameter, 2.8 * diameter), density=1.0,
                                   elongation=1.5, seed=int(rng.integers(1 << 31)))
    share = rng.uniform(0.0, 0.6) if stroma_share is None else stroma_share
    field = smooth_noise(shape, 4 * diameter, rng)
    stroma = field < np.quantile(field, share) if share > 0 else np.zeros(shape, bool)
    cells[stroma] = 0
    nuclei = nuclei_in_cells(cells, size=(0.45, 0.75), rng=rng)
    shown = np.r_[False, rng.random(int(cells.max())) < rng.uniform(0.6, 0.95)]
    nuclei[~shown[nuclei]] = 0
    fibroblasts = _sparse_nuclei(stroma, int(stroma.sum() / (6 * diameter) ** 2),
                                 (0.7 * diameter, 1.1 * diameter), rng)
    return tidy_labels(np.where(nuclei > 0, nuclei, fibroblasts)), cells, stroma


def render_he(labels: npt.NDArray[np.uint32], rng: np.random.Generator, *,
              cells: npt.NDArray[np.uint32] | None = None,
              stroma: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.integer]:
    """H&E: purple nuclei with chromatin, pink cytoplasm and collagen, white clefts; RGB 8-bit."""
    cells, stroma, diameter = _context(labels, rng, cells, stroma)
    hema = _hematoxylin(labels, diameter, rng)
    membranes = gaussian_filter(label_edges(cells).astype(float), 0.6) * (cells > 0)
    hema = hema + rng.uniform(0.05, 0.3) * membranes
    collagen = _collagen(labels.shape, diameter, rng) * stroma
    eosin = (cells > 0) * rng.uniform(0.3, 0.6) * np.clip(texture(labels, rng, scale=diameter,
                                                                   grain=0.2), 0, None)
    eosin = eosin + collagen * rng.uniform(0.5, 0.9)
    return _absorb([(hema, HEMATOXYLIN * rng.uniform(1.0, 1.8)),
                    (eosin, EOSIN * rng.uniform(0.4, 0.9))], labels, diameter, rng)


def render_ihc(labels: npt.NDArray[np.uint32], rng: np.random.Generator, *,
               cells: npt.NDArray[np.uint32] | None = None,
               stroma: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.integer]:
    """IHC: blue hematoxylin nuclei, some brown (DAB-positive), pale background; RGB 8-bit."""
    cells, stroma, diameter = _context(labels, rng, cells, stroma)
    hema = _hematoxylin(labels, diameter, rng) * rng.uniform(0.5, 0.9)
    positive = np.r_[0.0, (rng.random(int(labels.max())) < rng.uniform(0.1, 0.7))
                     * rng.uniform(0.5, 1.5, int(labels.max()))]
    dab = positive[labels] * np.clip(texture(labels, rng, scale=diameter, grain=0.3), 0, None)
    if rng.random() < 0.3:  # a membrane marker instead: brown outlines of the unlabelled cells
        dab = gaussian_filter(label_edges(cells).astype(float), 0.8) * rng.uniform(0.5, 1.2)
    background = 0.1 * (cells > 0) + 0.25 * _collagen(labels.shape, diameter, rng) * stroma
    return _absorb([(hema + background * 0.3, HEMATOXYLIN * 1.4), (dab, DAB * 1.2)],
                   labels, diameter, rng)


def skin_layout(shape: tuple[int, int], diameter: float, rng: np.random.Generator
                ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.uint32], npt.NDArray[np.bool_],
                           npt.NDArray[np.bool_]]:
    """Skin: glass, stratum corneum, epidermis dense with nuclei, dermis of collagen bundles."""
    height, width = shape
    wave = np.cumsum(rng.normal(0, 0.02 * height, width)) * 0.05
    top = height * rng.uniform(0.05, 0.3) + wave - wave.mean()
    depth = np.arange(height)[:, None] - top[None, :]
    thickness = height * rng.uniform(0.25, 0.5)
    corneum = (depth >= 0) & (depth < 0.12 * thickness)
    epidermis = (depth >= 0.12 * thickness) & (depth < thickness)
    cells = random_touching_labels(shape, diameter=(1.4 * diameter, 2.0 * diameter), density=1.0,
                                   elongation=1.6, seed=int(rng.integers(1 << 31)))
    cells[~epidermis] = 0
    nuclei = nuclei_in_cells(cells, size=(0.5, 0.8), rng=rng)
    dermis = depth >= thickness
    fibroblasts = _sparse_nuclei(dermis, int(dermis.sum() / (7 * diameter) ** 2),
                                 (0.6 * diameter, 1.0 * diameter), rng)
    return tidy_labels(np.where(nuclei > 0, nuclei, fibroblasts)), cells, dermis, corneum


def render_skin(labels: npt.NDArray[np.uint32], rng: np.random.Generator, *,
                cells: npt.NDArray[np.uint32] | None = None,
                dermis: npt.NDArray[np.bool_] | None = None,
                corneum: npt.NDArray[np.bool_] | None = None) -> npt.NDArray[np.integer]:
    """H&E of skin: flaky pink corneum, purple epidermis, dermis with clefts; RGB 8-bit."""
    cells, dermis, diameter = _context(labels, rng, cells, dermis)
    corneum = np.zeros(labels.shape, bool) if corneum is None else corneum
    hema = _hematoxylin(labels, diameter, rng) + 0.15 * gaussian_filter(
        label_edges(cells).astype(float), 0.6) * (cells > 0) + 0.1 * (cells > 0)
    flakes = np.clip(texture(labels, rng, scale=diameter * 2, grain=1.0), 0, None) * corneum
    eosin = (0.35 * (cells > 0) + 0.8 * _collagen(labels.shape, diameter, rng) * dermis
             + 0.6 * flakes)
    return _absorb([(hema, HEMATOXYLIN * rng.uniform(1.2, 1.8)), (eosin, EOSIN * rng.uniform(0.5, 0.9))],
                   labels, diameter, rng)


def _context(labels: npt.NDArray[np.uint32], rng: np.random.Generator,
             cells: npt.NDArray[np.uint32] | None,
             stroma: npt.NDArray[np.bool_] | None
             ) -> tuple[npt.NDArray[np.uint32], npt.NDArray[np.bool_], float]:
    """Median nucleus diameter; for labels drawn elsewhere, nuclei stand in for their cells."""
    diameter = median_cell_diameter(labels)
    if cells is None:
        from scipy.ndimage import grey_dilation

        cells = grey_dilation(labels, size=max(3, int(diameter)) | 1)
    if stroma is None:
        stroma = cells == 0
    return cells, stroma, diameter


def _hematoxylin(labels: npt.NDArray[np.uint32], diameter: float,
                 rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Nuclear stain: dense or vesicular (pale with a dark rim and nucleolus), with chromatin."""
    count = int(labels.max())
    density = rng.uniform(0.5, 1.3, count)
    vesicular = rng.random(count) < rng.uniform(0.0, 0.5)
    density[vesicular] *= 0.45
    chromatin = np.clip(texture(labels, rng, scale=diameter, grain=rng.uniform(0.15, 0.4)), 0.2, None)
    rim = (labels > 0) & label_edges(labels)
    nuc = (per_cell(labels, density) * chromatin
           + 0.5 * rim * per_cell(labels, vesicular.astype(np.float64)))
    return gaussian_filter(nuc, 0.5)


def _collagen(shape: tuple[int, int], diameter: float,
              rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Wavy fibre bundles with white clefts between them, 0 to 1."""
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(float)
    warp = smooth_noise(shape, 3 * diameter, rng) * diameter
    along = -yy * np.sin(angle) + xx * np.cos(angle)
    across = yy * np.cos(angle) + xx * np.sin(angle) + warp
    period = rng.uniform(1.5, 4.0) * diameter
    bundles = np.sin(2 * np.pi * across / period) + 0.3 * smooth_noise(shape, diameter / 2, rng)
    fibre = 0.8 + 0.2 * np.sin(2 * np.pi * (across + 0.1 * along) / max(2.0, diameter / 4))
    clefts = bundles < rng.uniform(-0.9, -0.4)
    return np.clip(fibre * ~clefts, 0, 1)


def _absorb(stains: list[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]],
            labels: npt.NDArray[np.uint32], diameter: float,
            rng: np.random.Generator) -> npt.NDArray[np.integer]:
    od = sum(amount[..., None] * vector for amount, vector in stains)
    rgb = np.exp(-np.asarray(od)) * rng.uniform(0.88, 1.0, 3)
    rgb = defocus(rgb, rng, (0.3, 0.3 + 0.03 * diameter))
    rgb = camera(rgb, rng, photons=(300.0, 3000.0), read_noise=(0.003, 0.015))
    return quantize(rgb, np.uint8, rng, stretch=False)


def _sparse_nuclei(region: npt.NDArray[np.bool_], count: int, diameter: tuple[float, float],
                   rng: np.random.Generator) -> npt.NDArray[np.uint32]:
    """Elongated nuclei (fibroblasts) wholly inside ``region``, ids offset past any nucleus."""
    blocked = (~region).astype(np.uint32)  # id 1 marks where they may not go
    placed, _ = add_small_cells(blocked, count, diameter, rng=rng, elongation=4.0)
    placed[placed == 1] = 0
    return np.where(placed > 0, placed + np.uint32(1 << 20), 0).astype(np.uint32)
