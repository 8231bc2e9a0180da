"""What a Dask worker runs for a whole-slide image: a block's labels, an output chunk, its features.

:mod:`flowseg.apps.slides` plans the blocks and gathers what these tasks return; each task opens
the image itself (a file's handle cannot travel) through :func:`open_image`, and loads the network
once per worker process (:func:`worker_model`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError
from flowseg.inference.blocks import Placed, keep_centred
from flowseg.inference.tiling import TileConfig
from flowseg.io.lazy import open_lazily
from flowseg.representation.masks import MaskConfig

log = logging.getLogger(__name__)


@contextlib.contextmanager
def open_image(source: Any) -> Iterator[Any]:
    """Open an image lazily as a ``(C, H, W)`` dask array, for the length of a ``with`` block.

    Parameters
    ----------
    source : str, PathLike, zarr array, dask array or ndarray
        A TIFF file or a ``.zarr`` path (an OME-Zarr image's level 0, or a zarr array), opened
        by :func:`flowseg.io.lazy.open_lazily` and closed when the block ends, or an array of
        shape ``(H, W)``, ``(C, H, W)`` or ``(H, W, C)`` (C at most 16).

    Yields
    ------
    image : dask.array.Array
        ``(C, H, W)``, in the source's dtype.

    Raises
    ------
    FileNotFoundError
        If a path does not exist.
    ValueError
        If the shape is not that of a 2-D image with channels.
    """
    import dask.array as da

    if isinstance(source, (str, os.PathLike)):
        # a TIFF's level 0 through tifffile's zarr interface, or an OME-Zarr image's level 0
        with open_lazily(source) as pixels:
            yield pixels.array
        return
    array = source if isinstance(source, da.Array) else da.asarray(source)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or min(array.shape[0], array.shape[-1]) > 16:
        raise InputError(f"{source!s:.80}: shape {array.shape} is not a 2-D image with channels")
    yield array if array.shape[0] <= array.shape[-1] else da.moveaxis(array, -1, 0)


@functools.lru_cache(maxsize=4)
def worker_model(model_path: str | None, device: str) -> Any:
    """Load the network once per worker process (the bundled export where ONNX Runtime runs)."""
    from flowseg.inference.pipeline import load_model
    from flowseg.model.execution import plan_execution

    return load_model(model_path, execution=plan_execution(device))


def segment_block(
    region: npt.NDArray[Any] | str | os.PathLike[str], core: tuple[int, int, int, int],
    ext: tuple[int, int, int, int], reads: tuple[int, int, int, int], shape: tuple[int, int],
    scale: float, ranges: npt.NDArray[np.float64], scratch: str, index: int,
    model_path: str | None, tiles: TileConfig, masks: MaskConfig, device: str,
) -> tuple[int, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Segment one block with its context; store the masks centred in its core.

    Parameters
    ----------
    region : (C, h, w) ndarray, or str
        The image over ``reads``, or the path of the image file to read it from.
    core, ext : (int, int, int, int)
        ``y0, y1, x0, x1`` of the core and of the region around it whose masks are made, in
        image coordinates.
    reads : (int, int, int, int)
        The part of the image the network's window reads (``plan_region(...).reads``).
    shape : (int, int)
        The whole image's height and width.
    scale : float
        Resize factor the network runs at.
    ranges : (C, 2) ndarray
        Per-channel percentiles of the whole image.
    scratch : str
        Zarr group where the block's labels go, as array ``str(index)``.
    index : int
    model_path : str or None
        Checkpoint; the bundled model when None.
    tiles : TileConfig
    masks : MaskConfig
        ``max_size_fraction`` already scaled to the region, ``min_size`` to the scale.
    device : str

    Returns
    -------
    count : int
        Masks kept (ids ``1..count`` in the stored array).
    whole, cut : ndarray of int64
        Areas of the kept masks, apart from and touching the image's edge.
    """
    import zarr

    from flowseg.inference.normalize import PreparedView
    from flowseg.inference.scaling import run_region
    from flowseg.model.execution import plan_execution
    from flowseg.representation.masks import masks_from_flows

    if isinstance(region, (str, os.PathLike)):
        with open_image(region) as image:
            region = image[:, reads[0]:reads[1], reads[2]:reads[3]].compute(
                scheduler="synchronous")
    view = PreparedView(Placed(np.asarray(region), (reads[0], reads[2]), shape), ranges=ranges)
    output = run_region(worker_model(model_path, device), view, scale, ext, tiles,
                        plan_execution(device))
    kept = keep_centred(masks_from_flows(output[:2], output[2], config=masks), core, ext)
    zarr.open_group(scratch, mode="a").create_array(
        str(index), data=kept, chunks=kept.shape, overwrite=True)
    areas = np.bincount(kept.reshape(-1)).astype(np.int64)
    edges = [kept[0] if ext[0] == 0 else None, kept[-1] if ext[1] == shape[0] else None,
             kept[:, 0] if ext[2] == 0 else None, kept[:, -1] if ext[3] == shape[1] else None]
    on_edge = np.zeros(areas.size, bool)
    for edge in edges:
        if edge is not None:
            on_edge[edge] = True
    on_edge[0] = True
    cut = areas[on_edge[:] & (np.arange(areas.size) > 0)]
    return int(kept.max()), areas[~on_edge], cut


def write_chunk(
    core: tuple[int, int, int, int], neighbours: list[tuple[int, tuple[int, int, int, int]]],
    offsets: list[int], scratch: str, output: str,
) -> int:
    """Compose one output chunk from the blocks reaching into it; return its labelled pixels.

    Parameters
    ----------
    core : (int, int, int, int)
        The chunk, in image coordinates.
    neighbours : list of (int, (int, int, int, int))
        Index and extended region of every block whose region overlaps the chunk, the chunk's
        own block included, in block order (the earlier block wins a disputed pixel).
    offsets : list of int
        Global id offset per block index.
    scratch, output : str
        Zarr group of block labels; zarr array of the result.

    Returns
    -------
    count : int
    """
    import zarr

    y0, y1, x0, x1 = core
    chunk = np.zeros((y1 - y0, x1 - x0), np.uint32)
    for index, (ey0, ey1, ex0, ex1) in reversed(neighbours):
        oy0, oy1, ox0, ox1 = max(y0, ey0), min(y1, ey1), max(x0, ex0), min(x1, ex1)
        stored = zarr.open_array(f"{scratch}/{index}", mode="r")
        part = np.asarray(stored[oy0 - ey0: oy1 - ey0, ox0 - ex0: ox1 - ex0])
        target = chunk[oy0 - y0: oy1 - y0, ox0 - x0: ox1 - x0]
        hit = part > 0
        target[hit] = part[hit] + np.uint32(offsets[index])
    zarr.open_array(output, mode="r+")[y0:y1, x0:x1] = chunk
    return int((chunk > 0).sum())


def block_features(index: int, region: npt.NDArray[Any] | str | os.PathLike[str],
                   core: tuple[int, int, int, int], ext: tuple[int, int, int, int], offset: int,
                   scratch: str, pixel_size: float | None = None) -> str:
    """Write the GeoJSON features of one block's kept cells, a line each; return the part's path.

    ``region`` is the image over ``ext`` (or the file to read it from), for the intensity
    measurements; ids are the global ones (``offset`` added).
    """
    import json

    import zarr

    from flowseg.apps.geojson import cell_features

    if isinstance(region, (str, os.PathLike)):
        with open_image(region) as image:
            region = image[:, ext[0]:ext[1], ext[2]:ext[3]].compute(scheduler="synchronous")
    kept = np.asarray(zarr.open_array(f"{scratch}/{index}", mode="r")[:])
    part = Path(scratch) / f"features_{index}.jsonl"
    with open(part, "w") as stream:
        for feature in cell_features(kept, image=np.asarray(region), origin=(ext[0], ext[2]),
                                     offset=offset, pixel_size=pixel_size):
            stream.write(json.dumps(feature) + "\n")
    return str(part)
