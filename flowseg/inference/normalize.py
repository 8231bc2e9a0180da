"""Per-channel percentile normalisation, the mapping of any channel count to three, and resizing.

The network sees three channels whose 1st and 99th percentiles sit at 0 and 1, whatever the
modality, bit depth or channel count of the file; images are resized (bilinear, numba) so that
cells look the size the model was trained at.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit, prange

from flowseg.errors import InputError

NET_CHANNELS = 3
LOWER_PERCENTILE = 1.0
UPPER_PERCENTILE = 99.0
# Percentiles of larger channels are estimated on an evenly strided subsample of about this many
# pixels: exact enough for a 1-99 stretch and linear in nothing but this number.
PERCENTILE_SAMPLE = 1 << 22


def channel_ranges(
    image: npt.ArrayLike, *, lower: float = LOWER_PERCENTILE, upper: float = UPPER_PERCENTILE
) -> npt.NDArray[np.float64]:
    """Return each channel's ``lower`` and ``upper`` percentiles.

    Parameters
    ----------
    image : (C, H, W) array_like
    lower, upper : float
        Percentiles, ``0 <= lower < upper <= 100``.

    Returns
    -------
    ranges : (C, 2) ndarray of float64

    Raises
    ------
    ValueError
        If the image is not 3-D, is empty, or holds NaN or infinite values.
    """
    if not 0 <= lower < upper <= 100:
        raise InputError(f"percentiles must satisfy 0 <= lower < upper <= 100, got {lower}, {upper}")
    step = 1
    if not isinstance(image, np.ndarray) and len(getattr(image, "shape", ())) == 3:
        # read window by window (flowseg.io.lazy.LazyPixels): only the sample _percentiles
        # would take, so the ranges are those of the whole image read into memory
        step = _sample_step(image.shape[1] * image.shape[2])
        image = image[:, ::step, ::step]
    image = np.asarray(image)
    if image.ndim != 3 or image.size == 0:
        raise InputError(f"image must be a non-empty (C, H, W) array, got shape {image.shape}")
    ranges = np.zeros((image.shape[0], 2))
    for c, channel in enumerate(image):
        if channel.dtype.kind == "f" and not np.isfinite(channel).all():
            raise InputError("image holds NaN or infinite values")
        ranges[c] = _percentiles(channel, lower, upper, step=1 if step > 1 else None)
    return ranges


class PreparedView:
    """The network's input, normalised and mapped to three channels window by window.

    Slicing ``view[:, y0:y1, x0:x1]`` returns that window as :func:`prepare_image` would, from
    percentiles computed once over the whole image, so that tiled inference never holds a
    normalised copy of a whole-slide image.

    Parameters
    ----------
    image : (C, H, W) ndarray
        Raw pixel values, any numeric dtype.
    ranges : (C, 2) ndarray, optional
        Per-channel percentiles to use (those of a larger image this is a part of, say);
        computed from ``image`` when omitted.

    Raises
    ------
    ValueError
        As :func:`channel_ranges`.
    """

    def __init__(self, image: npt.NDArray[Any], *, ranges: npt.NDArray[np.float64] | None = None):
        self.image = image
        self.ranges = channel_ranges(image) if ranges is None else np.asarray(ranges)
        self.shape = (NET_CHANNELS, *image.shape[1:])
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> npt.NDArray[np.float32]:
        window = np.asarray(self.image[(slice(None), *key[1:])], np.float32)
        out = np.empty_like(window)
        for c, (low, high) in enumerate(self.ranges):
            if high > low:
                np.multiply(window[c] - np.float32(low), np.float32(1.0 / (high - low)),
                            out=out[c])
            else:
                out[c] = 0.0
        return to_three_channels(out)[key[0]]


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
    ranges = channel_ranges(image, lower=lower, upper=upper)
    out = np.array(image, dtype=np.float32)  # always a copy: the caller's array is never modified
    for channel, (low, high) in zip(out, ranges, strict=True):
        if high > low:
            channel -= low
            channel *= 1.0 / (high - low)
        else:
            channel[...] = 0.0
    return out


def _sample_step(pixels: int) -> int:
    """Stride of the 2-D subsample the percentiles are taken from, for a channel of ``pixels``."""
    return max(1, int(np.ceil(np.sqrt(pixels / PERCENTILE_SAMPLE))))


def _percentiles(channel: npt.NDArray[Any], lower: float, upper: float,
                 step: int | None = None) -> tuple[float, float]:
    # A strided 2-D subsample: no copy of a large channel, even a non-contiguous one.
    step = _sample_step(channel.size) if step is None else step
    low, high = np.percentile(channel[::step, ::step], [lower, upper])
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
        raise InputError(f"image must be a (C, H, W) array with C >= 1, got shape {image.shape}")
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


def scaled_shape(shape: tuple[int, ...], factor: float) -> tuple[int, int]:
    """Return the ``(H, W)`` of an image of ``shape`` resized by ``factor`` (at least 1 x 1)."""
    return max(1, round(shape[0] * factor)), max(1, round(shape[1] * factor))


def resize_to(image: npt.NDArray[np.floating], shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Resize a ``(C, H, W)`` array to ``(C, *shape)`` with bilinear interpolation.

    Pixel centres are aligned, without antialiasing: ``torch.nn.functional.interpolate``'s
    ``bilinear`` with ``align_corners=False``, to float rounding.

    Parameters
    ----------
    image : (C, H, W) ndarray
    shape : (int, int)

    Returns
    -------
    resized : (C, shape[0], shape[1]) ndarray of float32
    """
    image = np.ascontiguousarray(image, np.float32)
    if tuple(image.shape[1:]) == tuple(shape):
        return image.copy()
    return ResizedView(image, shape)[:, :, :]


def resize_labels_to(labels: npt.NDArray[Any], shape: tuple[int, ...]) -> npt.NDArray[Any]:
    """Resample labels (any number of axes) to ``shape`` by nearest neighbour, pixel centres aligned.

    Parameters
    ----------
    labels : ndarray of int
    shape : tuple of int
        One size per axis of ``labels``.

    Returns
    -------
    resized : ndarray
        ``labels`` itself when the shape is already ``shape``.

    Examples
    --------
    >>> resize_labels_to(np.array([[1, 2], [3, 4]]), (4, 4))[1:3, 1:3]
    array([[1, 2],
           [3, 4]])
    """
    if labels.shape == tuple(shape):
        return labels
    index = [np.minimum(((np.arange(n) + 0.5) * m / n).astype(np.intp), m - 1)
             for n, m in zip(shape, labels.shape, strict=True)]
    return labels[np.ix_(*index)]


class ResizedView:
    """An image resized as :func:`resize_to` does, computed window by window when sliced.

    Slicing ``view[:, y0:y1, x0:x1]`` reads only the part of ``image`` those pixels interpolate
    from, so a run over an enlarged whole-slide image never holds the enlarged copy; the values
    are those of :func:`resize_to` on the whole image, exactly.

    Parameters
    ----------
    image : (C, H, W) ndarray or PreparedView
        Anything sliced ``image[:, y0:y1, x0:x1]``.
    shape : (int, int)
        The resized height and width.
    """

    def __init__(self, image: npt.NDArray[np.floating] | PreparedView, shape: tuple[int, int]):
        self.image = image
        self.shape = (image.shape[0], int(shape[0]), int(shape[1]))
        self.ndim = 3

    def __getitem__(self, key: tuple[slice, slice, slice]) -> npt.NDArray[np.float32]:
        (h, w), (height, width) = self.image.shape[1:], self.shape[1:]
        y0, y1, _ = key[1].indices(height)
        x0, x1, _ = key[2].indices(width)
        sy0, sy1 = source_span(y0, y1, h, height)
        sx0, sx1 = source_span(x0, x1, w, width)
        window = np.ascontiguousarray(self.image[:, sy0:sy1, sx0:sx1], np.float32)
        return _bilinear(window, h, w, height, width, y0, max(y0, y1), x0, max(x0, x1),
                         sy0, sx0)[key[0]]


def source_span(start: int, stop: int, n: int, size: int) -> tuple[int, int]:
    """Return the rows ``[first, last)`` of an axis of ``n`` that a resize to ``size`` reads.

    Outputs ``start .. stop - 1`` of :func:`resize_to` interpolate from these input rows only.

    Examples
    --------
    >>> source_span(0, 4, 2, 8)
    (0, 2)
    """
    if stop <= start:
        return 0, 0
    scale = n / size
    first = min(int(max((start + 0.5) * scale - 0.5, 0.0)), n - 1)
    last = min(int(max((stop - 0.5) * scale - 0.5, 0.0)) + 1, n - 1)
    return first, last + 1


def resize_volume_to(volume: Any, shape: tuple[int, int, int], *,
                     dtype: npt.DTypeLike = np.float32, out: Any = None) -> Any:
    """Resize a ``(C, Z, Y, X)`` array to ``(C, *shape)`` with trilinear interpolation.

    As ``torch.nn.functional.interpolate``'s ``trilinear`` with ``align_corners=False``: z first,
    then each plane as :func:`resize_to`. The input is read one plane ``volume[:, z]`` at a time,
    so it may be anything that slices so (planes normalised on demand, a memory map).

    Parameters
    ----------
    volume : (C, Z, Y, X) ndarray, or an object with ``shape`` and ``volume[:, z]``
    shape : (int, int, int)
    dtype : numpy dtype
        Of the result (float16 halves a stack that is only read plane by plane afterwards).
    out : (C, *shape) array, optional
        Where to write it, plane by plane (a :class:`~flowseg.inference.scratch.ScratchArray`,
        say); a new array when omitted.

    Returns
    -------
    resized : (C, shape[0], shape[1], shape[2]) ndarray of ``dtype``, or ``out``
    """
    if out is None and isinstance(volume, np.ndarray) and volume.dtype == dtype and \
            tuple(volume.shape[1:]) == tuple(shape):
        return volume
    depth = volume.shape[1]
    if out is None:
        out = np.empty((volume.shape[0], *shape), dtype)
    same = tuple(volume.shape[2:]) == tuple(shape[1:])
    for z, (z0, z1, weight) in enumerate(zip(*_linear_sources(depth, shape[0]), strict=True)):
        plane = np.asarray(volume[:, z0], np.float32)
        if weight:
            plane = plane * (1 - weight) + np.asarray(volume[:, z1], np.float32) * weight
        out[:, z] = plane if same else resize_to(plane, shape[1:])
    return out


def _linear_sources(n: int, size: int) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp],
                                                npt.NDArray[np.float32]]:
    """For each of ``size`` outputs along an axis of ``n``: the two inputs and the second's weight."""
    src = np.maximum((np.arange(size) + 0.5) * (n / size) - 0.5, 0.0)
    first = np.minimum(np.floor(src).astype(np.intp), n - 1)
    return first, np.minimum(first + 1, n - 1), (src - first).astype(np.float32)


@njit(parallel=True, cache=True)
def _bilinear(window: npt.NDArray[np.float32], h: int, w: int, height: int, width: int,
              y_start: int, y_stop: int, x_start: int, x_stop: int, y_origin: int,
              x_origin: int) -> npt.NDArray[np.float32]:  # pragma: no cover (numba)
    """Compute outputs ``[y_start, y_stop) x [x_start, x_stop)`` of an ``(h, w) -> (height, width)``.

    The resize is bilinear, and ``window`` is the part of the input that starts at
    ``(y_origin, x_origin)``.
    """
    channels = window.shape[0]
    out = np.empty((channels, y_stop - y_start, x_stop - x_start), np.float32)
    sy, sx = h / height, w / width
    for i in prange(y_stop - y_start):
        fy = max((y_start + i + 0.5) * sy - 0.5, 0.0)
        y0 = min(int(fy), h - 1)
        y1 = min(y0 + 1, h - 1)
        ly = np.float32(fy - y0)
        y0 -= y_origin
        y1 -= y_origin
        for j in range(x_stop - x_start):
            fx = max((x_start + j + 0.5) * sx - 0.5, 0.0)
            x0 = min(int(fx), w - 1)
            x1 = min(x0 + 1, w - 1)
            lx = np.float32(fx - x0)
            x0 -= x_origin
            x1 -= x_origin
            for c in range(channels):
                top = window[c, y0, x0] * (1 - lx) + window[c, y0, x1] * lx
                bottom = window[c, y1, x0] * (1 - lx) + window[c, y1, x1] * lx
                out[c, i, j] = top * (1 - ly) + bottom * ly
    return out
