"""Rod-shaped bacteria: microcolonies of capsules lying side by side, straight or curved.

A shape no other generator draws (cells 2-6 times longer than wide, packed along a shared
orientation that turns slowly across a colony), rendered as phase contrast (dark bodies in bright
halos, :func:`flowseg.training.synthetic.transmitted.render_phase`) or as a fluorescent stain
(:func:`flowseg.training.synthetic.fluorescence.render_rods`, rods that may bend like vibrios).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from flowseg.training.synthetic.labels import tidy_labels

# A candidate rod may overlap cells already placed by this share of its area; it keeps only its
# free pixels, so neighbours touch along flat borders, as bacteria pressed together do.
MAX_OVERLAP = 0.15


def rod_labels(shape: tuple[int, int], diameter: float,
               rng: np.random.Generator, *, bend: float = 0.0) -> npt.NDArray[np.uint32]:
    """Draw touching rods whose median equivalent diameter is about ``diameter``.

    Parameters
    ----------
    shape : (int, int)
    diameter : float
        Equivalent diameter (of a disk of the same area) of a typical rod, in pixels.
    rng : numpy.random.Generator
    bend : float
        Largest sag of a rod's midline at its ends, as a fraction of its length (0: straight;
        each rod draws its own from -bend to bend).

    Returns
    -------
    labels : (H, W) ndarray of uint32
        Consecutive ids, 0 = background; each rod is one 4-connected region.

    Examples
    --------
    >>> labels = rod_labels((96, 96), 16.0, np.random.default_rng(0))
    >>> labels.dtype.name, int(labels.max()) > 5
    ('uint32', True)
    """
    height, width = shape
    colonies = _colony_mask(shape, diameter, rng)
    angle = _orientation_field(shape, diameter, rng)
    labels = np.zeros(shape, np.uint32)
    free = np.flatnonzero(colonies.reshape(-1))
    if free.size == 0:  # a flat noise field (a tiny image): the colony is the whole field
        free = np.arange(colonies.size)
    tries = int(4 * colonies.sum() / (np.pi * diameter ** 2 / 4)) + 1
    count = 0
    for cy, cx in zip(*np.unravel_index(rng.choice(free, tries), shape), strict=True):
        size = diameter * rng.uniform(0.75, 1.25)
        rod_width = size * rng.uniform(0.42, 0.62)
        area = np.pi * size ** 2 / 4
        length = (area - np.pi * rod_width ** 2 / 4) / rod_width + rod_width
        theta = angle[cy, cx] + rng.normal(0, 0.15)
        sag = rng.uniform(-bend, bend) if bend > 0 else 0.0
        box, mask = _capsule(cy, cx, length, rod_width, theta, (height, width), sag)
        if mask.sum() < 12:
            continue
        taken = labels[box] > 0
        if (mask & taken).sum() > MAX_OVERLAP * mask.sum():
            continue
        own = mask & ~taken
        if ndimage.label(own)[1] != 1:
            continue
        count += 1
        labels[box][own] = count
    return tidy_labels(labels)


def rods_bent(shape: tuple[int, int], diameter: float,
              rng: np.random.Generator) -> npt.NDArray[np.uint32]:
    """Rods of which half the images are curved (sag up to a quarter of the length)."""
    return rod_labels(shape, diameter, rng, bend=float(rng.choice([0.0, 0.25])))


def _capsule(cy: float, cx: float, length: float, width: float, theta: float,
             shape: tuple[int, int], sag: float = 0.0
             ) -> tuple[tuple[slice, slice], npt.NDArray[np.bool_]]:
    """Return the bounding box within ``shape`` and the mask of a capsule (a rod, round ends).

    ``sag`` bends the midline into a parabola whose ends lie ``sag * length`` off the chord.
    """
    reach = length / 2 + 1 + abs(sag) * length
    y0, y1 = max(0, int(cy - reach)), min(shape[0], int(cy + reach) + 2)
    x0, x1 = max(0, int(cx - reach)), min(shape[1], int(cx + reach) + 2)
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dy, dx = yy - cy, xx - cx
    along = dy * np.sin(theta) + dx * np.cos(theta)
    across = -dy * np.cos(theta) + dx * np.sin(theta)
    if sag:
        across = across - sag * length * (2 * along / max(length, 1.0)) ** 2
    half = max(0.0, (length - width) / 2)
    along = np.clip(np.abs(along) - half, 0, None)
    return (slice(y0, y1), slice(x0, x1)), along ** 2 + across ** 2 <= (width / 2) ** 2


def _colony_mask(shape: tuple[int, int], diameter: float,
                 rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    """Return where colonies grow: blobs from a third of the field to nearly all of it."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), 3 * diameter, mode="wrap")
    return noise > np.quantile(noise, rng.uniform(0.05, 0.65))


def _orientation_field(shape: tuple[int, int], diameter: float,
                       rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Return an angle per pixel that turns slowly: neighbouring rods lie roughly parallel."""
    smooth = rng.uniform(2, 6) * diameter
    vy, vx = (ndimage.gaussian_filter(rng.standard_normal(shape), smooth, mode="wrap")
              for _ in range(2))
    # Doubled angles: a rod and its reverse are the same orientation.
    return np.arctan2(vy, vx) / 2
