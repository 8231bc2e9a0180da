"""Read images, z-stacks and instance labels in the challenge's formats; write outputs atomically.

Images come as png, bmp, jpg/jpeg or tif/tiff, 8- or 16-bit (or float), gray, RGB(A) or
multi-channel; :func:`read_image` returns them as ``(C, H, W) float32`` with the original values
(no rescaling, so the full 16-bit range is kept). Labels are ``<name>_label.tiff`` files of instance
ids, 0 = background.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import numpy.typing as npt
import tifffile

from flowseg.errors import InputError
from flowseg.files import IMAGE_SUFFIXES
from flowseg.headers import TIFF_SUFFIXES, image_size

log = logging.getLogger(__name__)

# More channels than this on the first or last axis reads as a 3-D stack, which we refuse.
MAX_CHANNELS = 16
# Largest image decoded into memory, checked from the file's header before decoding: 250 MP is a
# 15,800^2 slide (0.75 GB as 8-bit RGB; predict's peak then stays near 5 GB). Larger images need
# --max-pixels or --dask (which reads TIFFs lazily, a block at a time).
MAX_PIXELS = 250_000_000


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
    image = _to_channels_first(array, path)
    if image.shape[1] < 1 or image.shape[2] < 1:
        raise InputError(f"{path}: empty image of shape {array.shape}")
    return image


def _decode(path: Path, max_pixels: int = MAX_PIXELS) -> npt.NDArray[np.generic]:
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise InputError(f"{path}: unsupported format '{suffix}' (expected one of "
                         f"{', '.join(IMAGE_SUFFIXES)})")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    height, width = image_size(path)
    if height * width > max_pixels:
        raise InputError(f"{path}: {height} x {width} pixels is more than the {max_pixels:,} "
                         "allowed (--max-pixels; --dask reads large TIFFs a block at a time)")
    try:
        if suffix in TIFF_SUFFIXES:
            array = np.asarray(tifffile.imread(path))
        else:
            array = _drop_alpha(np.asarray(imagecodecs.imread(str(path))))
    except Exception as err:  # decoders raise many types; the user needs the file and the reason
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: cannot decode image ({reason})") from err
    if array.size == 0:
        raise InputError(f"{path}: cannot decode image (no pixel data)")
    return array


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


def read_labels(path: str | os.PathLike[str], *, ndim: int = 2) -> npt.NDArray[np.uint32]:
    """Read an instance label image, or with ``ndim=3`` a label volume.

    Parameters
    ----------
    path : str or PathLike
        A TIFF (or png) of non-negative integer ids, 0 = background. Floating-point files are
        accepted when every value is a whole number.
    ndim : {2, 3}
        2 for ``(H, W)`` labels, 3 for ``(Z, Y, X)``.

    Returns
    -------
    labels : (H, W) or (Z, Y, X) ndarray of uint32

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If it cannot be decoded, has not ``ndim`` axes, or holds negative, fractional or too
        large ids.
    """
    path = Path(path)
    array = tifffile.imread(path) if ndim == 3 and path.is_file() else _decode(path)
    if array.ndim > ndim:
        array = array.squeeze()
    if array.ndim == 2 and ndim == 3:
        array = array[np.newaxis]
    if array.ndim != ndim:
        raise InputError(f"{path}: labels must be {ndim}-D, got shape {array.shape}")
    return as_labels(array, name=str(path), ndim=ndim)


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
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape = series.axes, series.shape
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
    else:
        array = array[np.newaxis]
    if array.ndim == 3:  # one plane with channels, or one channel and no planes
        array = array[:, np.newaxis]
    if array.ndim != 4 or array.shape[0] > MAX_CHANNELS:
        raise InputError(f"{path}: shape {original} (axes {axes}) is not a z-stack of "
                         f"(Z, Y, X) or (Z, C, Y, X)")
    return np.moveaxis(array, 0, 1)


def as_labels(array: npt.ArrayLike, *, name: str = "labels",
              ndim: int = 2) -> npt.NDArray[np.uint32]:
    """Check and convert an array of instance ids to ``(H, W) uint32`` (``(Z, Y, X)`` if ``ndim=3``).

    Parameters
    ----------
    array : (H, W) or (Z, Y, X) array_like
        Non-negative whole-number ids, 0 = background.
    name : str
        What to call the array in error messages (a file name, say).
    ndim : {2, 3}
        The number of axes the labels must have.

    Returns
    -------
    labels : (H, W) or (Z, Y, X) ndarray of uint32

    Raises
    ------
    ValueError
        If the array has not ``ndim`` axes, is not numeric, or holds negative, fractional or too
        large ids.
    """
    array = np.asarray(array)
    if array.ndim != ndim:
        raise InputError(f"{name}: labels must be {ndim}-D, got shape {array.shape}")
    if array.dtype == bool:
        return array.astype(np.uint32)
    if array.dtype.kind not in "uif":
        raise InputError(f"{name}: labels must be integers, got dtype {array.dtype}")
    if array.size == 0:
        return np.zeros(array.shape, np.uint32)
    if array.dtype.kind == "f" and not np.all(np.isfinite(array) & (array == np.round(array))):
        raise InputError(f"{name}: labels of dtype {array.dtype} hold non-integer values")
    low, high = array.min(), array.max()
    if low < 0:
        raise InputError(f"{name}: labels hold a negative id ({low})")
    if high > np.iinfo(np.uint32).max:
        raise InputError(f"{name}: label id {high} does not fit in uint32")
    return array.astype(np.uint32, copy=False)


def write_labels(labels: npt.ArrayLike, path: str | os.PathLike[str], *,
                 description: str | None = None) -> Path:
    """Write labels as a compressed TIFF, atomically.

    The data go to a temporary file in the same folder, which is then renamed over ``path``, so a
    reader (or a crash) never sees a half-written file.

    Parameters
    ----------
    labels : (H, W) or (Z, Y, X) array_like of non-negative integers
        A volume is written as a stack of planes, which napari and Fiji open as one.
    path : str or PathLike
        Destination; its folder is created if needed.
    description : str, optional
        Stored as the TIFF's ImageDescription (predict stores its settings there).

    Returns
    -------
    path : Path
        The file written: uint16 when every id fits, else uint32.

    Raises
    ------
    ValueError
        If ``labels`` are not 2-D or 3-D non-negative whole numbers.
    """
    data = as_labels(labels, name=str(path), ndim=3 if np.ndim(labels) >= 3 else 2)
    if data.size == 0 or data.max() <= np.iinfo(np.uint16).max:
        data = data.astype(np.uint16)
    # minisblack: a stack of 3 or 4 planes would otherwise be stored as one RGB(A) image.
    return write_atomic(path, lambda tmp: tifffile.imwrite(
        tmp, data, compression="zlib", description=description, metadata=None,
        photometric="minisblack"))


def read_description(path: str | os.PathLike[str]) -> str:
    """Return a TIFF's ImageDescription ("" when it has none or cannot be read).

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    description : str
    """
    try:
        with tifffile.TiffFile(path) as tif:
            return str(getattr(tif.pages[0], "description", "") or "")
    except (OSError, ValueError, IndexError, tifffile.TiffFileError):
        return ""


def write_atomic(path: str | os.PathLike[str], content: bytes | Callable[[Path], Any]) -> Path:
    """Write a file so that no reader and no crash ever sees it half-written.

    The content goes to a uniquely named temporary file in the destination's folder, which is
    then renamed over ``path``; on any failure the temporary file is removed.

    Parameters
    ----------
    path : str or PathLike
        Destination; its folder is created if needed.
    content : bytes, or callable
        The bytes, or a function that writes the file at the path it is given.

    Returns
    -------
    path : Path

    Examples
    --------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomic(folder / "a.txt", b"hi").read_bytes(), sorted(p.name for p in folder.iterdir())
    (b'hi', ['a.txt'])
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    try:
        if isinstance(content, bytes):
            tmp.write_bytes(content)
        else:
            content(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; outputs are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_labels_tiled(labels: Any, path: str | os.PathLike[str], *, tile: int = 512) -> Path:
    """Write a large label array as a tiled, compressed TIFF, a band of rows at a time, atomically.

    Parameters
    ----------
    labels : (H, W) array-like of non-negative integers
        Anything that slices into numpy arrays (a zarr array, a memory map, an ndarray); it is
        read ``tile`` rows at a time, so the whole never needs to fit in memory.
    path : str or PathLike
    tile : int
        TIFF tile side, a multiple of 16.

    Returns
    -------
    path : Path
        uint16 when every id fits, else uint32.
    """
    height, width = labels.shape
    top = max(int(np.asarray(labels[y: y + tile]).max(initial=0)) for y in range(0, height, tile))
    dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32

    def tiles() -> Iterator[npt.NDArray[Any]]:
        for y in range(0, height, tile):
            rows = np.asarray(labels[y: y + tile])
            for x in range(0, width, tile):
                part = np.zeros((tile, tile), dtype)
                block = rows[:, x: x + tile]
                part[: block.shape[0], : block.shape[1]] = block
                yield part

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tifffile.imwrite(tmp, tiles(), shape=(height, width), dtype=dtype, tile=(tile, tile),
                         compression="zlib")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
