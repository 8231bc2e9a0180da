"""Large images read window by window: level 0 of a big or pyramidal TIFF, or of an OME-Zarr image.

One process segments a whole slide without holding its pixels: tiled inference, the automatic
diameter's crops and the normalisation's percentiles each read only what they use, through
tifffile's zarr interface (tile by tile, any pyramid's level 0) or zarr itself. Needs zarr and
dask (the ``dask`` or ``ome`` extra); without them such files are read whole, with the same result.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile

from flowseg.errors import InputError
from flowseg.io.headers import TIFF_SUFFIXES, image_size
from flowseg.io.images import MAX_CHANNELS, MAX_PIXELS, check_pixel_budget, check_planes, read_pixels

log = logging.getLogger(__name__)

# Level 0 pixels from which a TIFF is read window by window (a 4096^2 image and smaller is read
# whole: one read is faster, and its pixels are a small part of predict's memory).
LAZY_FROM = 4096 * 4096


class LazyPixels:
    """An image file's pixels as ``(C, H, W)``, read where sliced.

    Slicing returns an ndarray of the file's dtype; ``np.asarray`` reads the whole (for outputs
    that need every pixel, such as overlays). Close it (or use it in a ``with`` block) to close
    the file.

    Parameters
    ----------
    array : dask.array.Array
        ``(C, H, W)``.
    path : Path, optional
        The file it reads, where it reads one.
    store : object, optional
        The file's zarr store, closed with this object.
    """

    def __init__(self, array: Any, path: Path | None = None, store: Any = None) -> None:
        self.array, self.path, self.store = array, path, store
        self.shape: tuple[int, int, int] = tuple(int(n) for n in array.shape)  # type: ignore[assignment]
        self.ndim = 3
        self.dtype = np.dtype(array.dtype)

    def __getitem__(self, key: Any) -> npt.NDArray[Any]:
        return np.asarray(self.array[key].compute(scheduler="synchronous"))

    def __array__(self, dtype: Any = None, copy: Any = None) -> npt.NDArray[Any]:
        whole = self[:, :, :]
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def close(self) -> None:
        """Close the file (a no-op for an OME-Zarr image, which holds none open)."""
        if self.store is not None:
            self.store.close()
            self.store = None

    def __enter__(self) -> LazyPixels:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def lazy_available() -> bool:
    """Tell whether zarr and dask, which lazy reading needs, are installed."""
    try:
        import dask.array  # noqa: F401
        import zarr  # noqa: F401
    except ImportError:
        return False
    return True


def read_or_open(path: str | os.PathLike[str], *,
                 max_pixels: int = MAX_PIXELS) -> npt.NDArray[Any] | LazyPixels:
    """Read an image whole, or open it lazily where it is a large TIFF or an OME-Zarr image.

    Lazily (:func:`open_lazily`): an OME-Zarr folder, or a TIFF whose level 0 holds at least
    :data:`LAZY_FROM` pixels, where zarr and dask are installed. Otherwise
    :func:`flowseg.io.images.read_pixels`. Either way the pixel budget is checked first.

    Parameters
    ----------
    path : str or PathLike
    max_pixels : int

    Returns
    -------
    pixels : (C, H, W) ndarray or LazyPixels
        Close a LazyPixels when done.

    Raises
    ------
    FileNotFoundError, ValueError
        As :func:`flowseg.io.images.read_pixels`.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    lazy = ((suffix == ".zarr" and path.is_dir())
            or (suffix in TIFF_SUFFIXES and path.is_file() and _tiff_pixels(path) >= LAZY_FROM)
            ) and lazy_available()  # dask's import, only for the files that need it
    if not lazy:
        return read_pixels(path, max_pixels=max_pixels)
    pixels = open_lazily(path)
    try:
        check_pixel_budget(path, *pixels.shape[1:], max_pixels)
    except InputError:
        pixels.close()
        raise
    return pixels


def _tiff_pixels(path: Path) -> int:
    try:
        height, width = image_size(path)
    except (InputError, OSError):
        return 0  # read_pixels says what is wrong with it
    return height * width


def open_lazily(path: str | os.PathLike[str]) -> LazyPixels:
    """Open a TIFF's (or a TIFF pyramid's) or an OME-Zarr image's level 0 lazily as ``(C, H, W)``.

    A TIFF's axes come from tifffile (OME and ImageJ name them; pages without names, ``Q`` or
    ``I``, and RGB samples, ``S``, are channels); axes of size 1 are dropped.

    Parameters
    ----------
    path : str or PathLike
        A ``.tif``/``.tiff`` file or an OME-Zarr folder.

    Returns
    -------
    pixels : LazyPixels

    Raises
    ------
    FileNotFoundError
        If the path does not exist.
    ValueError
        If the file is not a 2-D image with at most one channel axis (z-stacks and time series
        are refused, naming the axis), or cannot be opened (one line naming it).
    """
    import dask.array as da
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    if path.suffix.lower() not in TIFF_SUFFIXES:
        from flowseg.io.omezarr import as_cyx
        from flowseg.io.omezarr import open_level0 as open_ome_level0

        array, axes, _, _ = open_ome_level0(path)
        return LazyPixels(as_cyx(array, axes, path), path)
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            axes, shape, levels = series.axes.upper(), series.shape, len(series.levels)
        store = tifffile.imread(path, aszarr=True, level=0)
    except Exception as err:  # tifffile raises many types; the user needs the file and the reason
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise InputError(f"{path}: cannot open image ({reason})") from err
    try:
        index, order = _cyx_index(axes, shape, path)
        array = da.from_zarr(zarr.open(store, mode="r"))[index]
        array = array.transpose(order) if order else array[None]
    except BaseException:
        store.close()
        raise
    if levels > 1:
        log.debug("%s: a pyramid of %d levels; reading level 0 window by window", path.name, levels)
    return LazyPixels(array, path, store)


def _cyx_index(axes: str, shape: tuple[int, ...], path: Path) -> tuple[tuple[Any, ...], tuple[int, ...]]:
    """Index that drops a TIFF series' axes of size 1, and the transpose to ``(C, Y, X)``."""
    if "Y" not in axes or "X" not in axes:
        raise InputError(f"{path}: axes {axes} have no Y and X")
    check_planes(axes, shape, path)  # z and time refused by name, as a whole read does
    index: list[Any] = []
    kept: list[str] = []
    for axis, size in zip(axes, shape, strict=True):
        if axis in "YX":
            index.append(slice(None))
            kept.append(axis)
        elif size == 1:
            index.append(0)
        else:
            index.append(slice(None))
            kept.append("C")
    channels = [size for axis, size in zip(axes, shape, strict=True) if axis not in "YXZT"
                and size > 1]
    if len(channels) > 1 or (channels and channels[0] > MAX_CHANNELS):
        raise InputError(f"{path}: axes {axes} of shape {shape} are not a 2-D image with at "
                         f"most {MAX_CHANNELS} channels on one axis")
    if "C" not in kept:
        return tuple(index), ()
    return tuple(index), tuple(kept.index(axis) for axis in "CYX")
