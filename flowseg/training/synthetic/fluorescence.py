"""Fluorescence: nuclear stains, and cytoplasm stains with a nuclear channel.

Nuclei carry chromatin texture (fine grain, bright chromocentres, dark nucleoli) and brightness
spread over a 20x range within one image, so that dim cells sit beside bright ones; mitotic and
apoptotic nuclei are small, condensed and very bright. Unlabelled debris (specks, out-of-focus
smudges), uneven illumination, defocus and Poisson-Gaussian noise complete the picture. Packed
nuclei (:func:`render_packed`) touch neighbours of like brightness across faint seams. Z-stacks
of nuclei (:func:`make_nuclei_volume`) add a point spread longer along z than across.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.ndimage import distance_transform_edt, gaussian_filter

from flowseg.training.synthetic.labels import (
    add_small_cells,
    drawn_cells,
    label_edges,
    median_cell_diameter,
    nuclei_in_cells,
    random_touching_volume,
    tidy_labels,
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


def nuclei_labels(shape: tuple[int, int], diameter: float,
                  rng: np.random.Generator) -> npt.NDArray[np.uint32]:
    """Nuclei from sparse to touching, plus a few small mitotic or apoptotic ones."""
    labels = drawn_cells(shape, diameter, rng, density=(0.25, 0.9), elongation=(1.0, 1.8))
    small = max(1, int(labels.max() * rng.uniform(0.0, 0.08)))
    low = max(4.5, 0.3 * diameter)
    labels, _ = add_small_cells(labels, small, (low, max(low, 0.5 * diameter)), rng=rng,
                                elongation=3.0)
    return labels


def packed_labels(shape: tuple[int, int], diameter: float,
                  rng: np.random.Generator) -> npt.NDArray[np.uint32]:
    """Nuclei packed so densely that most of them touch a neighbour."""
    return drawn_cells(shape, diameter, rng, density=(0.75, 0.95), elongation=(1.0, 1.6))


def render_nuclei(labels: npt.NDArray[np.uint32], rng: np.random.Generator, *,
                  dimmest: float = 0.05, rim: float = 0.35) -> npt.NDArray[np.integer]:
    """Render a nuclear stain: gray 8/16-bit, or the blue channel of an RGB image.

    ``dimmest`` is the faintest nucleus's brightness relative to the brightest (log-uniform in
    between); ``rim`` is the brightness at a nucleus's border relative to its inside, so where two
    nuclei touch the seam between them is as dark as ``rim``.
    """
    sizes = np.bincount(labels.reshape(-1))[1:].astype(float)
    diameter = median_cell_diameter(labels)
    # Brightness log-uniform from `dimmest` (a 20x range by default) to 1; small condensed
    # nuclei are the brightest.
    bright = np.exp(rng.uniform(np.log(dimmest), 0.0, sizes.size))
    condensed = sizes < 0.3 * np.pi / 4 * diameter**2
    bright[condensed] = rng.uniform(1.2, 2.5, int(condensed.sum()))
    cells = per_cell(labels, bright) * _soft_inside(labels, diameter, rim)
    chromatin = texture(labels, rng, scale=diameter, grain=rng.uniform(0.1, 0.35))
    chromatin += 0.8 * _spots(labels.shape, labels > 0, 0.004, max(0.7, diameter / 18), rng)
    chromatin -= 0.5 * _spots(labels.shape, labels > 0, 0.0006, max(1.0, diameter / 10), rng)
    smooth = per_cell(labels, condensed.astype(float)) > 0  # condensed nuclei: no texture
    signal = cells * np.where(smooth, 1.0, np.clip(chromatin, 0.2, None))
    signal += _debris(labels, diameter, rng)
    signal = defocus(signal, rng, (0.4, 0.4 + 0.06 * diameter))
    background = rng.uniform(0.0, 0.08)
    image = camera((signal + background) * illumination(labels.shape, rng.uniform(0, 0.3), rng),
                   rng)
    kind = rng.integers(4)
    if kind == 3:  # a colour image with the stain in blue, as many cameras save it
        rgb = np.stack([0.1 * image, 0.15 * image, image], axis=-1)
        return quantize(rgb, np.uint8, rng)
    return quantize(image, (np.uint8, np.uint16, np.uint16)[kind], rng)


def render_packed(labels: npt.NDArray[np.uint32], rng: np.random.Generator) -> npt.NDArray[np.integer]:
    """Render packed nuclei of like brightness with faint seams: shape alone tells them apart.

    Many cultured-cell nuclear stains look like this; with the 20x brightness range and dark
    seams of :func:`render_nuclei`, neighbours would differ in brightness or be parted by a seam.
    """
    return render_nuclei(labels, rng, dimmest=rng.uniform(0.5, 0.85), rim=rng.uniform(0.55, 0.9))


def render_rods(labels: npt.NDArray[np.uint32], rng: np.random.Generator) -> npt.NDArray[np.integer]:
    """Render fluorescent bacteria: a cytoplasmic stain (even bodies) or a membrane dye (rings).

    Bodies are bright over a 3x range with a rounded profile that leaves a dim seam where rods
    touch; a third of the images stain the envelope instead, so each rod is a bright outline
    around a dimmer inside. Unlabelled specks, defocus and noise as in :func:`render_nuclei`.
    """
    count = int(labels.max())
    diameter = median_cell_diameter(labels)
    inside = _soft_inside(labels, diameter, rng.uniform(0.3, 0.7))
    if rng.random() < 1 / 3:  # membrane dye: bright envelope, dim inside
        inside = np.where(labels > 0, 1.2 - 0.8 * inside, 0.0)
    bright = per_cell(labels, np.exp(rng.uniform(np.log(1 / 3), 0.0, count)))
    grain = np.clip(texture(labels, rng, scale=diameter, grain=rng.uniform(0.05, 0.2)), 0.3, None)
    signal = bright * inside * grain + _debris(labels, diameter, rng)
    signal = defocus(signal, rng, (0.4, 0.4 + 0.05 * diameter))
    image = camera((signal + rng.uniform(0.0, 0.08)) * illumination(labels.shape,
                                                                     rng.uniform(0, 0.3), rng), rng)
    return quantize(image, (np.uint8, np.uint16)[int(rng.integers(2))], rng)


def make_nuclei_volume(shape: tuple[int, int, int], diameter: float, rng: np.random.Generator
                       ) -> tuple[npt.NDArray[np.uint16], npt.NDArray[np.uint32]]:
    """Make a z-stack of nuclei, sparse to packed, as the planes predict --3d runs on look.

    3-D chromatin texture, brightness over a 20x range, a rounded profile that leaves a dim seam
    between touching nuclei, a Gaussian point spread 1.5-3x longer along z than across, uneven
    depth (signal fading with z), Poisson-Gaussian noise; 16-bit.

    Parameters
    ----------
    shape : (int, int, int)
        Depth, height and width in voxels (isotropic).
    diameter : float
        Typical nucleus diameter in voxels.
    rng : numpy.random.Generator

    Returns
    -------
    image : (Z, Y, X) ndarray of uint16
    labels : (Z, Y, X) ndarray of uint32
        One id per 3-D nucleus, 0 = background.

    Examples
    --------
    >>> image, labels = make_nuclei_volume((24, 48, 48), 12, np.random.default_rng(0))
    >>> image.shape == labels.shape, image.dtype.name, int(labels.max()) > 5
    (True, 'uint16', True)
    """
    stretch = tuple(float(s) for s in rng.uniform(0.8, 1.4, 3))
    labels = random_touching_volume(shape, diameter=diameter, stretch=stretch,  # type: ignore[arg-type]
                                    seed=int(rng.integers(2**31)))
    keep = np.r_[False, rng.random(int(labels.max())) < rng.uniform(0.5, 1.0)]
    labels = tidy_labels(np.where(keep[labels], labels, 0).astype(np.uint32))
    bright = np.exp(rng.uniform(np.log(0.05), 0.0, int(labels.max())))
    chromatin = np.clip(texture(labels, rng, scale=diameter, grain=rng.uniform(0.1, 0.35)), 0.2, None)
    signal = per_cell(labels, bright) * _soft_inside(labels, diameter) * chromatin
    across = rng.uniform(0.5, 0.5 + 0.05 * diameter)
    signal = gaussian_filter(signal, (across * rng.uniform(1.5, 3.0), across, across))
    depth = np.linspace(1.0, rng.uniform(0.4, 1.0), shape[0])[:, None, None]
    image = camera((signal + rng.uniform(0.0, 0.06)) * depth, rng)
    return quantize(image, np.uint16, rng).astype(np.uint16), labels


def cytoplasm_labels(shape: tuple[int, int], diameter: float,
                     rng: np.random.Generator) -> npt.NDArray[np.uint32]:
    """Whole cells, mostly touching, often elongated."""
    return drawn_cells(shape, diameter, rng, density=(0.55, 1.0), elongation=(1.2, 3.0))


def render_cytoplasm(labels: npt.NDArray[np.uint32],
                     rng: np.random.Generator) -> npt.NDArray[np.integer]:
    """Render a cytoplasm stain with a nuclear channel (two 16-bit channels, or green + blue)."""
    sizes = np.bincount(labels.reshape(-1))[1:].astype(float)
    diameter = median_cell_diameter(labels)
    bright = np.exp(rng.uniform(np.log(0.15), 0.0, sizes.size))
    # Dimmer towards each cell's border, so that touching cells show a faint seam.
    seam = 0.45 + 0.55 * _soft_inside(labels, diameter)
    fibres = texture(labels, rng, scale=diameter * 0.5, grain=rng.uniform(0.15, 0.4))
    cyto = per_cell(labels, bright) * seam * np.clip(fibres, 0.2, None)
    nuclei = nuclei_in_cells(labels, rng=rng)
    nuc = per_cell(nuclei, np.exp(rng.uniform(np.log(0.2), 0.0, sizes.size)))
    nuc *= np.clip(texture(labels, rng, scale=diameter * 0.5, grain=0.25), 0.2, None)
    # Some cytoplasm leaks into the nuclear channel and back, as filters do.
    stack = np.stack([cyto + 0.3 * nuc, nuc + 0.05 * cyto], axis=-1)
    stack = defocus(stack, rng, (0.4, 0.4 + 0.04 * diameter))
    light = illumination(labels.shape, rng.uniform(0, 0.3), rng)[..., None]
    image = camera((stack + rng.uniform(0.0, 0.06)) * light, rng)
    kind = rng.integers(3)
    if kind == 0:
        return quantize(image, np.uint16, rng)
    if kind == 1:
        zeros = np.zeros(labels.shape)
        return quantize(np.stack([zeros, image[..., 0], image[..., 1]], axis=-1), np.uint8, rng)
    return quantize(image[..., 0], np.uint16, rng)  # cytoplasm alone


def _soft_inside(labels: npt.NDArray[np.uint32], diameter: float,
                 rim: float = 0.35) -> npt.NDArray[np.float64]:
    """``rim`` at each cell's border rising to 1 a quarter diameter in: rounded profiles."""
    depth = distance_transform_edt(~label_edges(labels))
    return np.clip(rim + depth / max(1.0, 0.25 * diameter), 0, 1) * (labels > 0)


def _spots(shape: tuple[int, int], where: npt.NDArray[np.bool_], density: float, sigma: float,
           rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Gaussian spots at random points of ``where``, peak about 1."""
    points = (rng.random(shape) < density) & where
    return np.clip(gaussian_filter(points.astype(float), sigma) * 2 * np.pi * sigma**2, 0, 2)


def _debris(labels: npt.NDArray[np.uint32], diameter: float,
            rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Unlabelled specks and out-of-focus smudges in the background."""
    free = labels == 0
    specks = _spots(labels.shape, free, rng.uniform(0, 4e-4), rng.uniform(0.6, 1.5), rng)
    smudge = np.clip(smooth_noise(labels.shape, max(2.0, diameter / 3), rng) - 2.0, 0, None)
    return (rng.uniform(0.2, 1.0) * specks + rng.uniform(0, 0.15) * smudge) * free
