"""Per-channel percentile normalisation, and the mapping of any channel count to three.

Pure numpy. The network sees three channels whose 1st and 99th percentiles sit at 0 and 1, whatever
the modality, bit depth or channel count of the file.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

NET_CHANNELS = 3
LOWER_PERCENTILE = 1.0
UPPER_PERCENTILE = 99.0
# Percentiles of larger channels are estimated on an evenly strided subsample of about this many
# pixels: exact enough for a 1-99 stretch and linear in nothing but this number.
PERCENTILE_SAMPLE = 1 << 22


def normalize_image(
    image: npt.ArrayLike,
    *,
    lower: float = LOWER_PERCENTILE,
    upper: float = UPPER_PERCENTILE,
) -> npt.NDArray[np.float32]:
    """Stretch each channel so that its ``lower`` and ``upper`` percentiles become 0 and 1.

    Values outside the percentiles are not clipped. A channel whose percentiles are equal (a
    constant or nearly empty channel) becomes all zeros.

    Parameters
    ----------
    image : (C, H, W) array_like
        Raw pixel values of any numeric dtype.
    lower, upper : float
        Percentiles, ``0 <= lower < upper <= 100``.

    Returns
    -------
    normalized : (C, H, W) ndarray of float32

    Raises
    ------
    ValueError
        If the image is not 3-D, is empty, or holds NaN or infinite values.

    Examples
    --------
    >>> x = np.arange(101, dtype=np.float32).reshape(1, 1, 101)
    >>> y = normalize_image(x)
    >>> float(y[0, 0, 1]), float(y[0, 0, 99])
    (0.0, 1.0)
    """
    if not 0 <= lower < upper <= 100:
        raise ValueError(f"percentiles must satisfy 0 <= lower < upper <= 100, got {lower}, {upper}")
    image = np.asarray(image)
    if image.ndim != 3 or image.size == 0:
        raise ValueError(f"image must be a non-empty (C, H, W) array, got shape {image.shape}")
    out = image.astype(np.float32)  # always a copy: the caller's array is never modified
    for channel in out:
        if not np.isfinite(channel).all():
            raise ValueError("image holds NaN or infinite values")
        low, high = _percentiles(channel, lower, upper)
        if high > low:
            channel -= low
            channel *= 1.0 / (high - low)
        else:
            channel[...] = 0.0
    return out


def _percentiles(channel: npt.NDArray[np.float32], lower: float, upper: float) -> tuple[float, float]:
    flat = channel.reshape(-1)
    if flat.size > PERCENTILE_SAMPLE:
        flat = flat[:: flat.size // PERCENTILE_SAMPLE]
    low, high = np.percentile(flat, [lower, upper])
    return float(low), float(high)


def to_three_channels(image: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Map an image of any channel count to the network's three input channels.

    - 1 channel (gray): repeated three times, as for an RGB picture of a gray scene.
    - 2 channels: kept as channels 0 and 1; channel 2 is zero.
    - 3 channels: unchanged.
    - more: channel ``c`` is folded into output ``c % 3`` by a maximum, so that no stain is lost.
      Normalise first, so that the maximum compares like with like.

    Parameters
    ----------
    image : (C, H, W) array_like

    Returns
    -------
    image3 : (3, H, W) ndarray of float32

    Raises
    ------
    ValueError
        If the image is not 3-D or has no channel.

    Examples
    --------
    >>> to_three_channels(np.ones((1, 2, 2))).shape
    (3, 2, 2)
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[0] == 0:
        raise ValueError(f"image must be a (C, H, W) array with C >= 1, got shape {image.shape}")
    channels = image.shape[0]
    if channels == NET_CHANNELS:
        return image
    if channels == 1:
        return np.repeat(image, NET_CHANNELS, axis=0)
    out = np.zeros((NET_CHANNELS, *image.shape[1:]), np.float32)
    if channels == 2:
        out[:2] = image
        return out
    for k in range(NET_CHANNELS):
        np.max(image[k::NET_CHANNELS], axis=0, out=out[k])
    return out


def prepare_image(image: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """Normalise each channel, then map to three channels: what the network takes.

    Parameters
    ----------
    image : (C, H, W) array_like

    Returns
    -------
    image3 : (3, H, W) ndarray of float32

    Raises
    ------
    ValueError
        As :func:`normalize_image` and :func:`to_three_channels`.
    """
    return to_three_channels(normalize_image(image))
