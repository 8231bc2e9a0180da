"""Instance labels: read, check and write ``<name>_label.tiff`` files (0 = background).

Labels are written atomically (:mod:`flowseg.io.atomic`), whole or tile by tile, with the run's
settings in the TIFF description so that a rerun can tell what made them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile

from flowseg.errors import InputError
from flowseg.io.atomic import write_atomic
from flowseg.io.images import _decode


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
                 description: str | None = None, pixel_size: Any = None) -> Path:
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
    pixel_size : PixelSize, optional
        The image's pixel size (:func:`flowseg.io.pixelsize.read_pixel_size`), so that the labels
        overlay the image at its scale: as ImageJ metadata in micrometres (uint16 labels; the
        ``description`` then goes to a private tag, :data:`SETTINGS_TAG`), or as resolution tags
        in centimetres (uint32 labels, which ImageJ's format cannot hold).

    2-D labels with a side over :data:`PYRAMID_FROM` pixels (a slide's) are written by
    :func:`write_labels_tiled`: tiled, with a pyramid, as an OME-TIFF.

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
    if data.ndim == 2 and max(data.shape) > PYRAMID_FROM:  # a slide's: tiled, with a pyramid
        return write_labels_tiled(data, path, description=description, pixel_size=pixel_size)
    if data.size == 0 or data.max() <= np.iinfo(np.uint16).max:
        data = data.astype(np.uint16)
    # minisblack: a stack of 3 or 4 planes would otherwise be stored as one RGB(A) image.
    if pixel_size is not None and data.dtype == np.uint16:
        # ImageJ's own metadata, so that Fiji shows the scale in um; predict's settings move to
        # a private tag (read_description reads either).
        axes = "ZYX" if data.ndim == 3 else "YX"
        settings = [(SETTINGS_TAG, "s", 0, description, True)] if description else []
        return write_atomic(path, lambda tmp: tifffile.imwrite(
            tmp, data, compression="zlib", imagej=True,
            resolution=(1 / pixel_size.x, 1 / pixel_size.y),
            metadata={"unit": "um", "axes": axes}, extratags=settings))
    return write_atomic(path, lambda tmp: tifffile.imwrite(
        tmp, data, compression="zlib", description=description, metadata=None,
        photometric="minisblack", **_resolution(pixel_size)))


def _ome_metadata(pixel_size: Any) -> dict[str, Any]:
    """OME-XML fields of a label image: its axes and, where known, its pixel size in um."""
    if pixel_size is None:
        return {"axes": "YX"}
    return {"axes": "YX", "PhysicalSizeX": float(pixel_size.x), "PhysicalSizeY": float(pixel_size.y),
            "PhysicalSizeXUnit": "µm", "PhysicalSizeYUnit": "µm"}


def _resolution(pixel_size: Any, step: int = 1) -> dict[str, Any]:
    """TIFF resolution tags (pixels per centimetre) for a pixel size in micrometres, x ``step``."""
    if pixel_size is None:
        return {}
    return {"resolution": (1e4 / (pixel_size.x * step), 1e4 / (pixel_size.y * step)),
            "resolutionunit": "CENTIMETER"}


# A private TIFF tag (65000-65535 are free for any use) holding predict's settings where the
# ImageDescription holds ImageJ's metadata.
SETTINGS_TAG = 65010


def read_description(path: str | os.PathLike[str]) -> str:
    """Return the description write_labels stored ("" when none, or the file cannot be read).

    The private :data:`SETTINGS_TAG` where the file has it, else the ImageDescription.

    Parameters
    ----------
    path : str or PathLike

    Returns
    -------
    description : str
    """
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            private = page.tags.get(SETTINGS_TAG)
            if private is not None:
                return str(private.value)
            return str(getattr(page, "description", "") or "")
    except (OSError, ValueError, IndexError, tifffile.TiffFileError):
        return ""




def write_labels_tiled(labels: Any, path: str | os.PathLike[str], *, tile: int = 512,
                       pixel_size: Any = None, description: str | None = None) -> Path:
    """Write a large label array as a tiled, compressed OME-TIFF, a band of rows at a time, atomically.

    Labels larger than ``PYRAMID_FROM`` pixels a side get a pyramid in SubIFDs (as OME-TIFF
    slides have it): each level half the one before, by nearest neighbour (every other pixel, so
    ids stay ids), down to ``PYRAMID_FROM / 2``; slide viewers and QuPath then open them at any
    zoom without reading level 0. The OME-XML names the axes and, where known, the pixel size
    in micrometres (QuPath and Bio-Formats read it); the resolution tags repeat it for readers
    of plain TIFF.

    Parameters
    ----------
    labels : (H, W) array-like of non-negative integers
        Anything that slices into numpy arrays (a zarr array, a memory map, an ndarray); it is
        read ``tile`` rows at a time (``tile`` x 2^k rows for level k), so the whole never
        needs to fit in memory.
    path : str or PathLike
    tile : int
        TIFF tile side, a multiple of 16.
    pixel_size : PixelSize, optional
        Stored in the OME-XML (PhysicalSizeX/Y in um) and as resolution tags in centimetres, as
        :func:`write_labels` does (each level's scaled to it).
    description : str, optional
        predict's settings, stored in the private tag :data:`SETTINGS_TAG` (the ImageDescription
        holds the OME-XML); :func:`read_description` reads it.

    Returns
    -------
    path : Path
        uint16 when every id fits, else uint32.
    """
    height, width = labels.shape
    top = max(int(np.asarray(labels[y: y + tile]).max(initial=0)) for y in range(0, height, tile))
    dtype = np.uint16 if top <= np.iinfo(np.uint16).max else np.uint32
    levels = 0
    while max(height, width) // 2 ** levels > PYRAMID_FROM:
        levels += 1

    def tiles(step: int) -> Iterator[npt.NDArray[Any]]:
        rows_per_band = tile * step
        for y in range(0, height, rows_per_band):
            rows = np.asarray(labels[y: y + rows_per_band])[::step, ::step]
            for x in range(0, rows.shape[1], tile):
                part = np.zeros((tile, tile), dtype)
                block = rows[:, x: x + tile]
                part[: block.shape[0], : block.shape[1]] = block
                yield part

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name[:100]}.{os.getpid()}.tmp")
    try:
        with tifffile.TiffWriter(tmp, bigtiff=height * width * 4 > 2**31, ome=True) as tif:
            tif.write(tiles(1), shape=(height, width), dtype=dtype, tile=(tile, tile),
                      compression="zlib", subifds=levels, photometric="minisblack",
                      metadata=_ome_metadata(pixel_size),
                      extratags=[(SETTINGS_TAG, "s", 0, description, True)] if description else [],
                      **_resolution(pixel_size))
            for k in range(1, levels + 1):
                step = 2 ** k
                shape = (-(-height // step), -(-width // step))
                tif.write(tiles(step), shape=shape, dtype=dtype, tile=(tile, tile),
                          compression="zlib", subfiletype=1,
                          **_resolution(pixel_size, step))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# Label TIFFs with a side over this many pixels get a pyramid (write_labels_tiled).
PYRAMID_FROM = 4096
