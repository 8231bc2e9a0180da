"""What a microscope and its camera do to an ideal picture: light, blur, noise, bit depth.

Shared by every generator: smooth random fields (uneven illumination, stroma, texture), defocus,
Poisson-Gaussian noise and quantisation to the 8- or 16-bit integers that files hold.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.ndimage import gaussian_filter, zoom


def smooth_noise(shape: tuple[int, ...], sigma: float,
                 rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Return Gaussian-filtered white noise with unit standard deviation.

    Parameters
    ----------
    shape : tuple of int
    sigma : float
        Correlation length in pixels; long ones are made on a coarse grid and interpolated.
    rng : numpy.random.Generator

    Returns
    -------
    noise : ndarray of float64, of ``shape``
    """
    if sigma > 16:
        coarse = [max(2, int(np.ceil(n / sigma * 4))) for n in shape]
        small = gaussian_filter(rng.normal(0, 1, coarse), 4)
        noise = zoom(small, [n / c for n, c in zip(shape, coarse, strict=True)], order=1)
        noise = noise[tuple(slice(0, n) for n in shape)]
    else:
        noise = gaussian_filter(rng.normal(0, 1, shape), sigma)
    return noise / (noise.std() + 1e-9)


def per_cell(labels: npt.NDArray[np.uint32], values: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Paint one value per cell: ``values[k - 1]`` on cell ``k``, 0 on background.

    Parameters
    ----------
    labels : (H, W) ndarray of uint32
    values : (labels.max(),) ndarray

    Returns
    -------
    image : (H, W) ndarray of float64
    """
    return np.r_[0.0, values][labels]


def illumination(shape: tuple[int, int], strength: float,
                 rng: np.random.Generator) -> npt.NDArray[np.float64]:
    """Return a smooth multiplicative field around 1 (vignetting, uneven lamps).

    Parameters
    ----------
    shape : (int, int)
    strength : float
        Standard deviation of the field.
    rng : numpy.random.Generator

    Returns
    -------
    field : (H, W) ndarray of float64, positive
    """
    field = 1 + strength * smooth_noise(shape, max(shape) / 3, rng)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ramp = (yy / shape[0] - 0.5) * rng.normal(0, strength) + (xx / shape[1] - 0.5) * rng.normal(
        0, strength)
    return np.clip(field + ramp, 0.2, None)


def defocus(image: npt.NDArray[np.float64], rng: np.random.Generator,
            sigma: tuple[float, float] = (0.5, 2.5)) -> npt.NDArray[np.float64]:
    """Blur the two spatial axes of ``(H, W)`` or ``(H, W, C)`` by a random Gaussian.

    Parameters
    ----------
    image : (H, W) or (H, W, C) ndarray
    rng : numpy.random.Generator
    sigma : (float, float)
        Range of the blur's standard deviation in pixels.

    Returns
    -------
    blurred : ndarray of float64, same shape
    """
    s = rng.uniform(*sigma)
    return gaussian_filter(image, (s, s) + (0,) * (image.ndim - 2))


def camera(signal: npt.NDArray[np.float64], rng: np.random.Generator, *,
           photons: tuple[float, float] = (30.0, 1000.0),
           read_noise: tuple[float, float] = (0.005, 0.03)) -> npt.NDArray[np.float64]:
    """Add Poisson (shot) and Gaussian (read) noise to a signal scaled about 0 to 1.

    Parameters
    ----------
    signal : ndarray
        Expected intensity, 1 near the brightest structures.
    rng : numpy.random.Generator
    photons : (float, float)
        Range of the photon count at intensity 1 (few photons: grainy).
    read_noise : (float, float)
        Range of the read noise's standard deviation, in units of intensity 1.

    Returns
    -------
    image : ndarray of float64, same shape
    """
    n = rng.uniform(*photons)
    shot = rng.poisson(np.clip(signal, 0, None) * n) / n
    return shot + rng.normal(0, rng.uniform(*read_noise), signal.shape)


def quantize(image: npt.NDArray[np.float64], dtype: type, rng: np.random.Generator, *,
             stretch: bool = True) -> npt.NDArray[np.integer]:
    """Store as integers: a random part of the range (fluorescence), or 0-1 as full range.

    Parameters
    ----------
    image : ndarray
    dtype : numpy integer type
    rng : numpy.random.Generator
    stretch : bool
        Scale the 99.9th percentile to a random 20-90% of the range, as exposure and bit depth
        vary; otherwise map 0-1 to the full range (transmitted light, stains).

    Returns
    -------
    pixels : ndarray of ``dtype``
    """
    top = np.iinfo(dtype).max
    if stretch:
        image = image / (np.percentile(image, 99.9) + 1e-9) * rng.uniform(0.2, 0.9) * top
    else:
        image = image * top
    return np.clip(np.rint(image), 0, top).astype(dtype)


def texture(labels: npt.NDArray[np.uint32], rng: np.random.Generator, *, scale: float,
            grain: float) -> npt.NDArray[np.float64]:
    """Return a multiplicative texture around 1, at a correlation length that follows cell size.

    Parameters
    ----------
    labels : (H, W) ndarray of uint32
    rng : numpy.random.Generator
    scale : float
        Typical cell diameter in pixels; the grain is a fraction of it (at least 0.7 px).
    grain : float
        Strength of the texture.

    Returns
    -------
    field : (H, W) ndarray of float64
    """
    return 1 + grain * smooth_noise(labels.shape, max(0.7, scale / 14), rng)
