"""Read images and z-stacks in the challenge's formats, with the pixel budget checked first.

Images come as png, bmp, jpg/jpeg or tif/tiff, 8- or 16-bit (or float), gray, RGB(A) or
multi-channel; :func:`read_image` returns them as ``(C, H, W) float32`` with the original values
(no rescaling, so the full 16-bit range is kept).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import imagecodecs
import numpy as np
import numpy.typing as npt
import tifffile

from flowseg.errors import InputError
from flowseg.io.files import IMAGE_SUFFIXES
from flowseg.io.headers import TIFF_SUFFIXES, decoded_bytes, image_size

log = logging.getLogger(__name__)

# More channels than this on the first or last axis reads as a 3-D stack, which we refuse.
MAX_CHANNELS = 16
# Pages of a TIFF whose axes are not named are read as channels in 2-D; more than this many may
# be a z-stack's planes, and a warning says so.
PAGES_AS_CHANNELS = 4
# Largest image one process segments, checked from the file's header before decoding: 250 MP is a
# 15,800^2 slide (0.75 GB as 8-bit RGB; predict's peak then stays near 5 GB). Larger images need
# --max-pixels or --dask (which bounds the memory a block at a time).
MAX_PIXELS = 250_000_000
# The decoded data may take this many bytes per pixel of that budget (1 GB by default): 8-bit RGB
# and 16-bit gray fit, a 16-bit RGBA image or a stack of pages of the same size does not.
BYTES_PER_PIXEL = 4
# What tifffile logs when pages of a stack are lost (the file cut short, an offset overwritten).
LOST_PAGES = ("invalid page offset", "failed to reshape", "truncat", "corrupt")


def read_image(path: str | os.PathLike[str]) -> npt.NDArray[np.float32]:
    """Read an image file as channel-first float32.

    Parameters
    ----------
    path : str or PathLike
        A png, bmp, jpg/jpeg or tif/tiff file: 2-D gray, RGB(A), or a multi-channel TIFF with the
        channels on the first or the last axis (the shorter one, at most ``MAX_CHANNELS``).

    Returns
    -------
    image : (C, H, W) ndarray of float32
        The pixel values unchanged (a 16-bit image keeps 0..65535). The alpha channel of a
        png/bmp is dropped; TIFF channels are all kept.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the format is not supported, the file cannot be decoded, or its shape is not that of a
        2-D image; the message names the file.

    Examples
    --------
    >>> import tempfile, pathlib, tifffile, numpy as np
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.tif"
    >>> tifffile.imwrite(p, np.full((4, 5, 3), 65535, np.uint16))
    >>> read_image(p).shape, float(read_image(p).max())
    ((3, 4, 5), 65535.0)
    """
    return read_pixels(path).astype(np.float32, copy=False)


def read_pixels(path: str | os.PathLike[str], *,
                max_pixels: int = MAX_PIXELS) -> npt.NDArray[np.generic]:
    """Read an image file channel-first, in the file's own dtype (uint8 stays 1 byte a sample).

    What :func:`read_image` does, without the float32 copy: for whole-slide images, where that
    copy would be most of the memory.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    image : (C, H, W) ndarray of an integer or floating dtype

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`read_image`.
    """
    path = Path(path)
    array = _decode(path, max_pixels)
    if array.dtype == bool or array.dtype.kind not in "uif":
        raise InputError(f"{path}: unsupported pixel type {array.dtype}")
    if path.suffix.lower() not in TIFF_SUFFIXES and array.ndim == 3:
        # png, bmp and jpg decode to (H, W, C) always: a 3 x 100 RGB picture is not 3 channels
        image = np.moveaxis(array, -1, 0)
    else:
        image = _to_channels_first(array, path)
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise InputError(f"{path}: empty image of shape {array.shape}")
    return image


def _decode(path: Path, max_pixels: int = MAX_PIXELS) -> npt.NDArray[np.generic]:
    suffix = path.suffix.lower()
    if suffix == ".zarr" and path.is_dir():  # an OME-Zarr image: level 0, (C, H, W)
        from flowseg.io.omezarr import read_ome_zarr

        return np.moveaxis(read_ome_zarr(path, max_pixels), 0, -1)
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: unsupported format '{suffix}' (expected one of "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    check_pixel_budget(path, *image_size(path), max_pixels)
    nbytes = decoded_bytes(path)
    if nbytes > BYTES_PER_PIXEL * max_pixels:
        raise InputError(f"{path}: decodes to {_size(nbytes)}, more than the "
                         f"{_size(BYTES_PER_PIXEL * max_pixels)} allowed ({BYTES_PER_PIXEL} bytes "
                         "a pixel of --max-pixels: many channels, pages or 16-bit samples)")
    try:
        if suffix in TIFF_SUFFIXES:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                if len(series.levels) > 1:
                    log.debug("%s: a pyramid of %d levels (%s); reading level 0", path.name,
                              len(series.levels), ", ".join(
                                  " x ".join(map(str, level.shape)) for level in series.levels))
                check_planes(series.axes, series.shape, path)
                array = np.asarray(series.asarray())
        else:
            array = _drop_alpha(np.asarray(imagecodecs.imread(str(path))))
    except InputError:
        raise
    except Exception as err:  # decoders raise many types; the user needs the file and the reason
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: cannot decode image ({reason})") from err
    if array.size == 0:
        raise InputError(f"{path}: cannot decode image (no pixel data)")
    return array


def check_pixel_budget(path: Path, height: int, width: int, max_pixels: int) -> None:
    """Refuse an image of more than ``max_pixels`` pixels, naming the file and the option."""
    if height * width > max_pixels:
        raise InputError(f"{path}: {height} x {width} pixels is more than the {max_pixels:,} "
                         "allowed (--max-pixels; --dask reads large images a block at a time)")


def check_planes(axes: str, shape: tuple[int, ...], path: Path) -> None:
    """Refuse a TIFF z-stack read as a 2-D image, and say so of pages that may be one.

    Axes the file names z or time (ImageJ, OME) never count as channels: refused. Pages without
    names (tifffile's ``Q``/``I``) are channels, as a multichannel image saved without metadata
    has them; beyond ``PAGES_AS_CHANNELS`` a warning names the file (a 13-plane stack was read as
    13 channels without a word).
    """
    for axis, size in zip(axes.upper(), shape, strict=True):
        if size > 1 and axis in "ZT":
            raise InputError(f"{path}: a stack of {size} planes along {axis} (axes {axes}); "
                             "segment it with --3d, or one plane at a time")
        if size > PAGES_AS_CHANNELS and axis in "QI":
            log.warning("%s: %d pages without axis names, read as %d channels; a z-stack or a "
                        "time series is segmented with --3d", path.name, size, size)


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.1f} GB" if nbytes >= 1e9 else f"{nbytes / 1e6:.1f} MB"


def _drop_alpha(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    # png/bmp/jpg store channels last; 2 channels are gray + alpha, 4 are RGB + alpha.
    if array.ndim == 3 and array.shape[-1] in (2, 4):
        return array[..., : array.shape[-1] - 1]
    return array


def _to_channels_first(array: npt.NDArray[np.generic], path: Path) -> npt.NDArray[np.generic]:
    squeezed = array.squeeze() if array.ndim > 2 else array
    if squeezed.ndim == 2:
        return squeezed[np.newaxis]
    if squeezed.ndim == 3:
        first, last = squeezed.shape[0], squeezed.shape[-1]
        if min(first, last) <= MAX_CHANNELS:
            return squeezed if first <= last else np.moveaxis(squeezed, -1, 0)
    raise InputError(f"{path}: shape {array.shape} is not a 2-D image with at most "
                     f"{MAX_CHANNELS} channels on its first or last axis")


def read_volume(path: str | os.PathLike[str], *,
                max_pixels: int = MAX_PIXELS) -> npt.NDArray[np.generic]:
    """Read a z-stack TIFF as ``(Z, C, Y, X)`` in the file's own dtype.

    The channel axis is the one the file calls ``C`` or ``S`` (ImageJ and OME hyperstacks say
    so); a 4-D stack without axis names is read as ``(Z, C, Y, X)`` when its second axis is short
    enough to be channels, else as ``(C, Z, Y, X)``. A 2-D image is a 1-plane volume.

    Parameters
    ----------
    path : str or PathLike
    max_pixels : int
        Larger stacks (voxels times channels, from the header) are refused before decoding.

    Returns
    -------
    volume : (Z, C, Y, X) ndarray

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it is not a TIFF, cannot be decoded, is too large, or its shape is not a stack.

    Examples
    --------
    >>> import tempfile, pathlib, tifffile, numpy as np
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "stack.tif"
    >>> tifffile.imwrite(p, np.zeros((5, 2, 16, 20), np.uint16), imagej=True, metadata={"axes": "ZCYX"})
    >>> read_volume(p).shape
    (5, 2, 16, 20)
    """
    path = Path(path)
    if path.suffix.lower() not in TIFF_SUFFIXES:
        raise InputError(f"{path}: a z-stack must be a TIFF file, not '{path.suffix}'")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        with tifffile.TiffFile(path) as tif, _tifffile_complaints() as complaints:
            series = tif.series[0]
            axes, shape = series.axes, series.shape
            if complaints:  # a stack cut short reads as its first pages, with only a log line
                raise OverflowError(f"a damaged or truncated stack ({complaints[0]})")
            if int(np.prod(shape, dtype=np.int64)) > max_pixels:
                raise OverflowError(f"{' x '.join(map(str, shape))} voxels is more than the "
                                    f"{max_pixels:,} allowed (--max-pixels)")
            array = np.asarray(series.asarray())
    except OverflowError as err:
        raise InputError(f"{path}: {err}") from err
    except Exception as err:  # decoders raise many types; the user needs the file and the reason
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: cannot decode image ({reason})") from err
    if array.dtype == bool or array.dtype.kind not in "uif":
        raise InputError(f"{path}: unsupported pixel type {array.dtype}")
    return _volume_axes(array, axes, path)


@contextlib.contextmanager
def _tifffile_complaints() -> Iterator[list[str]]:
    """Collect what tifffile logs meanwhile of pages it lost (an invalid page offset, say).

    Other warnings (an odd tag in a valid file) are not complaints about the data.
    """
    heard: list[str] = []

    class Listener(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            message = record.getMessage().splitlines()[0]
            if any(word in message for word in LOST_PAGES):
                heard.append(message)

    logger, listener = logging.getLogger("tifffile"), Listener(logging.WARNING)
    level, propagate = logger.level, logger.propagate
    logger.addHandler(listener)
    if logger.getEffectiveLevel() > logging.WARNING:  # quietened (predict without -v): hear,
        logger.setLevel(logging.WARNING)  # but pass nothing on; flowseg says it in one line
        logger.propagate = False
    try:
        yield heard
    finally:
        logger.removeHandler(listener)
        logger.setLevel(level)
        logger.propagate = propagate


def _volume_axes(array: npt.NDArray[np.generic], axes: str, path: Path) -> npt.NDArray[np.generic]:
    original = array.shape
    keep = [i for i, n in enumerate(array.shape) if n > 1 or i >= array.ndim - 2]
    array, axes = array.reshape([array.shape[i] for i in keep]), "".join(axes[i] for i in keep)
    # A named channel axis counts only beside three others: a lone extra axis is z, whatever the
    # file calls it (ImageJ names a plain stack's planes channels).
    channel = next((i for i, a in enumerate(axes) if a in "CS"), None) if array.ndim == 4 else None
    if channel is not None:
        array, axes = np.moveaxis(array, channel, 0), axes[channel] + axes.replace(axes[channel], "")
    elif array.ndim == 4:  # no names: (Z, C, Y, X) when the second axis can be channels
        array = np.moveaxis(array, 1, 0) if array.shape[1] <= MAX_CHANNELS else array
        log.info("%s: axes not named in the file; read as %d planes of %d channels (%s); name "
                 "them (ImageJ or OME axes) to choose otherwise", path.name, array.shape[1],
                 array.shape[0], "Z, C, Y, X" if original[1] <= MAX_CHANNELS else "C, Z, Y, X")
    else:
        array = array[np.newaxis]
    if array.ndim == 3:  # one plane with channels, or one channel and no planes
        array = array[:, np.newaxis]
    if array.ndim != 4 or array.shape[0] > MAX_CHANNELS:
        raise InputError(f"{path}: shape {original} (axes {axes}) is not a z-stack of "
                         f"(Z, Y, X) or (Z, C, Y, X)")
    return np.moveaxis(array, 0, 1)
