"""Whole-slide images on a Dask cluster, block by block.

A large image (a TIFF read lazily through tifffile's zarr interface, a zarr array, a dask or a
numpy array) is cut into square cores. Each core becomes one task: it reads the core with a margin
of context, normalises it with percentiles computed once over the whole image, runs the network
over it in tiles and turns the flows into masks, then keeps the masks whose centre of mass lies in
its core (as :mod:`flowseg.inference.blocks` does in one process). Flow following is local, so a cell
smaller than the margin comes out whole in every block that sees it, and exactly one block keeps it: no
cell is cut at a block border and none is counted twice. Kept masks go to a scratch zarr group;
once every block is done, their ids are made global by a running sum of the counts, and a second
pass writes each output chunk from the blocks that reach into it. No worker ever holds more than a
block and its neighbours' margins, and the output is written as a zarr array, chunk by chunk (and
optionally copied into a tiled, compressed TIFF, tile by tile).

Failed tasks are retried (``retries``); a block that still fails stops the run with an error that
names it, so that no hole is ever left silently. Tasks of a worker that dies are rerun by Dask.

Needs the ``dask`` extra: ``pip install "flowseg[dask]"``.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError
from flowseg.inference.blocks import core_grid, extend, keep_centred
from flowseg.inference.tiling import TileConfig
from flowseg.representation.masks import MaskConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BlockConfig:
    """How a large image is cut into tasks.

    Attributes
    ----------
    block : int
        Core side in pixels; also the output's chunk side.
    margin : int
        Context on every side of a core, in pixels: at least a couple of cell diameters, and
        cells larger than this may be cut. 128 covers cells up to about 100 pixels.
    retries : int
        How often a failed block is retried before the run stops.
    """

    block: int = 2048
    margin: int = 128
    retries: int = 2

    def __post_init__(self) -> None:
        if self.block < 64 or self.margin < 16 or self.retries < 0:
            raise InputError(f"invalid blocks: block={self.block} (>= 64), "
                             f"margin={self.margin} (>= 16), retries={self.retries} (>= 0)")


@contextlib.contextmanager
def open_image(source: Any) -> Iterator[Any]:
    """Open an image lazily as a ``(C, H, W)`` dask array, for the length of a ``with`` block.

    Parameters
    ----------
    source : str, PathLike, zarr array, dask array or ndarray
        A TIFF file (read through tifffile's zarr interface, tile by tile; closed when the block
        ends), a ``.zarr`` path, or an array of shape ``(H, W)``, ``(C, H, W)`` or ``(H, W, C)``
        (C at most 16).

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
    import zarr

    store = None
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"{path}: no such file")
        if path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            store = tifffile.imread(path, aszarr=True)
            array = da.from_zarr(zarr.open(store, mode="r"))
        else:
            array = da.from_zarr(str(path))
    else:
        array = source if isinstance(source, da.Array) else da.asarray(source)
    try:
        if array.ndim == 2:
            array = array[None]
        if array.ndim != 3 or min(array.shape[0], array.shape[-1]) > 16:
            raise InputError(f"{source!s:.80}: shape {array.shape} is not a 2-D image with "
                             "channels")
        yield array if array.shape[0] <= array.shape[-1] else da.moveaxis(array, -1, 0)
    finally:
        if store is not None:
            store.close()


@functools.lru_cache(maxsize=4)
def _worker_model(model_path: str | None, device: str) -> Any:
    """Load the network once per worker process (the bundled export where ONNX Runtime runs)."""
    from flowseg.inference.pipeline import load_model
    from flowseg.model.execution import plan_execution

    return load_model(model_path, execution=plan_execution(device))


def segment_block(
    region: npt.NDArray[Any] | str | os.PathLike[str], core: tuple[int, int, int, int],
    ext: tuple[int, int, int, int], ranges: npt.NDArray[np.float64], scratch: str, index: int,
    model_path: str | None, tiles: TileConfig, masks: MaskConfig, device: str,
) -> int:
    """Segment one block with its context; store the masks centred in its core; return their count.

    Parameters
    ----------
    region : (C, h, w) ndarray, or str
        The image over ``ext``, or the path of the image file to read it from.
    core, ext : (int, int, int, int)
        ``y0, y1, x0, x1`` of the core and of the region around it, in image coordinates.
    ranges : (C, 2) ndarray
        Per-channel percentiles of the whole image.
    scratch : str
        Zarr group where the block's labels go, as array ``str(index)``.
    index : int
    model_path : str or None
        Checkpoint; the bundled model when None.
    tiles : TileConfig
    masks : MaskConfig
        ``max_size_fraction`` already scaled to the region.
    device : str

    Returns
    -------
    count : int
        Masks kept (ids ``1..count`` in the stored array).
    """
    import zarr

    from flowseg.inference.normalize import PreparedView
    from flowseg.inference.tiling import run_tiled
    from flowseg.model.execution import plan_execution
    from flowseg.representation.masks import masks_from_flows

    if isinstance(region, (str, os.PathLike)):
        with open_image(region) as image:
            region = image[:, ext[0]:ext[1], ext[2]:ext[3]].compute(scheduler="synchronous")
    view = PreparedView(np.asarray(region), ranges=ranges)
    output = run_tiled(_worker_model(model_path, device), view, config=tiles,
                       execution=plan_execution(device))
    local = masks_from_flows(output[:2], output[2], config=masks)
    kept = keep_centred(local, core, ext)
    zarr.open_group(scratch, mode="a").create_array(
        str(index), data=kept, chunks=kept.shape, overwrite=True)
    return int(kept.max())


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


def segment_large(
    source: Any, output: str | os.PathLike[str], *, client: Any, model: str | None = None,
    blocks: BlockConfig = BlockConfig(), tiles: TileConfig = TileConfig(),
    masks: MaskConfig | None = None, device: str = "auto", tiff: str | os.PathLike[str] | None = None,
    ranges: npt.ArrayLike | None = None,
) -> Path:
    """Segment a large 2-D image on a Dask cluster into a zarr array of labels.

    Parameters
    ----------
    source : str, PathLike, zarr array, dask array or ndarray
        As :func:`open_image`.
    output : str or PathLike
        The ``.zarr`` array to write (uint32, chunks of ``blocks.block``); replaced if present.
    client : distributed.Client
    model : str, optional
        Checkpoint path readable by every worker; the bundled model when None.
    blocks : BlockConfig
    tiles : TileConfig
    masks : MaskConfig, optional
        The model's saved thresholds when None.
    device : {"auto", "cpu", "cuda"}
        Where each worker runs the network.
    tiff : str or PathLike, optional
        Also write the labels as a tiled, compressed TIFF (``<name>_label.tiff``), tile by tile.
    ranges : (C, 2) array_like, optional
        Per-channel 1st and 99th percentiles to normalise with (to treat a series of slides
        alike); estimated from a strided subsample of the image when omitted.

    Returns
    -------
    output : Path

    Raises
    ------
    RuntimeError
        If a block still fails after its retries; the message names the block.
    """
    import zarr

    from flowseg.inference.normalize import channel_ranges
    from flowseg.io import write_labels_tiled

    with open_image(source) as image:
        shape = tuple(int(n) for n in image.shape[1:])
        if ranges is None:
            step = max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / (1 << 22)))))
            # Read here, chunk by chunk: a file's handle cannot travel to the workers.
            ranges = channel_ranges(image[:, ::step, ::step].compute(scheduler="synchronous"))
        ranges = np.asarray(ranges, np.float64)
        cores = core_grid(shape, blocks.block)  # type: ignore[arg-type]
        exts = [extend(c, shape, blocks.margin) for c in cores]  # type: ignore[arg-type]
        # An array travels to the tasks as dask slices; a file is opened by each task itself.
        regions = [source if isinstance(source, (str, os.PathLike))
                   else image[:, e[0]:e[1], e[2]:e[3]] for e in exts]
    config = masks or MaskConfig(**_worker_model(model, device).metadata.get("thresholds", {}))
    output = Path(output)
    scratch = tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".parts", dir=output.parent)
    try:
        counts = _run_blocks(client, regions, cores, exts, ranges, scratch, model, tiles,
                             config, device, blocks.retries, shape[0] * shape[1])
        offsets = list(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int))
        if output.exists():
            shutil.rmtree(output)
        zarr.create_array(str(output), shape=shape, chunks=(blocks.block, blocks.block),
                          dtype="uint32", fill_value=0)
        jobs = [client.submit(write_chunk, core, _overlapping(core, exts), offsets, scratch,
                              str(output), retries=blocks.retries, pure=False) for core in cores]
        _gather(client, jobs, cores)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("%s: %d cells in %d blocks", output, sum(counts), len(cores))
    if tiff is not None:
        write_labels_tiled(zarr.open_array(str(output), mode="r"), tiff)
    return output


def _run_blocks(client: Any, regions: list[Any], cores: list[tuple[int, int, int, int]],
                exts: list[tuple[int, int, int, int]], ranges: npt.NDArray[np.float64],
                scratch: str, model: str | None, tiles: TileConfig, config: MaskConfig,
                device: str, retries: int, pixels: int) -> list[int]:
    jobs = []
    for index, (core, ext, region) in enumerate(zip(cores, exts, regions, strict=True)):
        local = replace(config, max_size_fraction=config.max_size_fraction * pixels
                        / ((ext[1] - ext[0]) * (ext[3] - ext[2])))
        jobs.append(client.submit(segment_block, region, core, ext, ranges, scratch, index,
                                  model, tiles, local, device, retries=retries, pure=False))
    return [int(n) for n in _gather(client, jobs, cores)]


def _gather(client: Any, jobs: list[Any], cores: list[tuple[int, int, int, int]]) -> list[Any]:
    from distributed import wait

    wait(jobs)
    for job, core in zip(jobs, cores, strict=True):
        if job.status != "finished":
            err = job.exception()
            raise RuntimeError(f"block rows {core[0]}:{core[1]}, columns {core[2]}:{core[3]} "
                               f"failed after its retries: {type(err).__name__}: {err}")
    return list(client.gather(jobs))


def _overlapping(core: tuple[int, int, int, int],
                 exts: list[tuple[int, int, int, int]]) -> list[tuple[int, tuple[int, int, int, int]]]:
    y0, y1, x0, x1 = core
    return [(i, e) for i, e in enumerate(exts)
            if e[0] < y1 and e[1] > y0 and e[2] < x1 and e[3] > x0]






