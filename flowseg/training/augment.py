"""Augmentation that keeps flows correct: resolution loss, intensity jitter, one affine map.

A sample is a random crop seen through one affine map: scale, rotation by any angle and an optional
mirror. Images are resampled bilinearly; labels-derived targets by nearest neighbour, so that no
flow is ever averaged across two cells, and each flow vector is turned by the same map (a mirror
negates one component) and renormalised. Some crops are then blurred as a picture taken at a
lower resolution and enlarged looks (what predict does to small cells); intensities get a gain, an
offset and a gamma per channel, and channels are shuffled or merged to gray, so that one network
sees every modality.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from scipy import ndimage

if TYPE_CHECKING:
    from flowseg.training.dataset import DataConfig


def augment(
    image: npt.NDArray[np.floating], targets: npt.NDArray[np.floating], *, crop: int, zoom: float,
    rng: np.random.Generator, rotate: bool = True, mirror: bool = True, flows: bool = True,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Cut one randomly placed, zoomed, rotated and mirrored crop.

    Parameters
    ----------
    image : (C, H, W) array
    targets : (K, H, W) array
        ``dy, dx, foreground`` when ``flows``; otherwise any maps, resampled as they are.
    crop : int
        Output side.
    zoom : float
        Output pixels per input pixel.
    rng : numpy.random.Generator
    rotate, mirror : bool
    flows : bool
        Turn the first two target channels as vectors.

    Returns
    -------
    image : (C, crop, crop) ndarray of float32
    targets : (K, crop, crop) ndarray of float32
        Resampled by nearest neighbour; flows are unit vectors turned by the same map, 0 outside
        cells.
    """
    angle = rng.uniform(0, 2 * np.pi) if rotate else 0.0
    flip = -1.0 if mirror and rng.random() < 0.5 else 1.0
    # forward map (input y, x) -> output: zoom * R(angle) * diag(1, flip)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = zoom * rot @ np.diag([1.0, flip])
    inverse = np.linalg.inv(forward)
    height, width = image.shape[1:]
    # Centre the crop on a random input point (so the window always overlaps the image, and small
    # images get padded around).
    centre = np.array([rng.uniform(0, height - 1), rng.uniform(0, width - 1)])
    out = np.mgrid[:crop, :crop].reshape(2, -1) - (crop - 1) / 2
    coords = inverse @ out + centre[:, None]
    lo = np.floor(coords.min(axis=1)).astype(int) - 1
    hi = np.ceil(coords.max(axis=1)).astype(int) + 2
    lo_c, hi_c = np.maximum(lo, 0), np.minimum(hi, (height, width))
    # Read only the window the crop touches (the arrays may be memory-mapped).
    window = (slice(None), slice(lo_c[0], hi_c[0]), slice(lo_c[1], hi_c[1]))
    local = coords - lo_c[:, None]
    img = np.asarray(image[window], np.float32)
    tgt = np.asarray(targets[window], np.float32)
    x = np.stack([ndimage.map_coordinates(c, local, order=1, cval=0.0) for c in img])
    y = np.stack([ndimage.map_coordinates(c, local, order=0, cval=0.0) for c in tgt])
    x = x.reshape(-1, crop, crop)
    y = y.reshape(-1, crop, crop)
    if not flows:
        return x.astype(np.float32), y.astype(np.float32)
    turned = np.tensordot(forward, y[:2], axes=1)
    norm = np.sqrt((turned**2).sum(axis=0))
    y[:2] = np.where(norm > 0, turned / np.maximum(norm, 1e-12), 0.0) * (y[2] > 0)
    return x.astype(np.float32), y.astype(np.float32)


def degrade_resolution(image: npt.NDArray[np.float32], factor: float) -> npt.NDArray[np.float32]:
    """Blur a ``(C, H, W)`` crop as a picture ``factor`` times coarser, enlarged back, looks.

    The pixels are averaged down (a Gaussian of 0.4 coarse pixels, then bilinear sampling at the
    coarse pixel centres) and enlarged again bilinearly with aligned pixel centres, as
    :func:`flowseg.inference.normalize.resize_to` enlarges an image of small cells; the geometry, hence
    every target, is unchanged. scipy only: it runs in data-loader workers, where numba's OpenMP threads
    must not start after a fork.

    Parameters
    ----------
    image : (C, H, W) ndarray of float32
    factor : float
        Coarse pixel size in crop pixels (>= 1).

    Returns
    -------
    image : (C, H, W) ndarray of float32

    Examples
    --------
    >>> crop = np.zeros((1, 64, 64), np.float32); crop[0, 32, 32] = 1
    >>> soft = degrade_resolution(crop, 4.0)
    >>> soft.shape, bool(soft.max() < 0.2), bool(abs(soft.sum() - 1) < 0.2)
    ((1, 64, 64), True, True)
    """
    height, width = image.shape[1:]
    small = (max(1, round(height / factor)), max(1, round(width / factor)))
    blurred = ndimage.gaussian_filter(image, (0, 0.4 * factor, 0.4 * factor))
    coarse = np.stack([_resample(c, small) for c in blurred])
    return np.stack([_resample(c, (height, width)) for c in coarse]).astype(np.float32)


def _resample(plane: npt.NDArray[np.float32], shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Bilinear resize of one plane with aligned pixel centres and clamped edges."""
    axes = [np.clip((np.arange(n) + 0.5) * (old / n) - 0.5, 0, old - 1)
            for n, old in zip(shape, plane.shape, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij")
    return ndimage.map_coordinates(plane, grid, order=1, mode="nearest").astype(np.float32)


def jitter_intensity(
    image: npt.NDArray[np.float32], config: DataConfig, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Apply random gain, offset and gamma per channel, then channel shuffle or gray.

    Parameters
    ----------
    image : (C, H, W) ndarray of float32
        Normalised (1st and 99th percentiles near 0 and 1).
    config : DataConfig
    rng : numpy.random.Generator

    Returns
    -------
    image : (C, H, W) ndarray of float32
    """
    channels = image.shape[0]
    gain = rng.uniform(1 - config.gain, 1 + config.gain, (channels, 1, 1))
    offset = rng.uniform(-config.gain / 2, config.gain / 2, (channels, 1, 1))
    gamma = rng.uniform(*config.gamma, (channels, 1, 1))
    out = np.power(np.clip(image, 0, None), gamma) * gain + offset
    if rng.random() < config.shuffle_channels:
        out = out[rng.permutation(channels)]
    if rng.random() < config.gray:
        out = np.repeat(out.mean(axis=0, keepdims=True), channels, axis=0)
    return np.ascontiguousarray(out, dtype=np.float32)
