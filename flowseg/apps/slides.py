"""Whole-slide images on a Dask cluster, block by block.

A large image (a TIFF read lazily through tifffile's zarr interface, a zarr array, a dask or a
numpy array) is cut into square cores. The client first chooses the scale as one process does:
the automatic diameter from the same crops with the same function
(:func:`flowseg.inference.estimate.estimate_diameter`), or the diameter given. Each core becomes
one task: it reads the core with a margin, and around that the network's context, normalises it
with percentiles computed once over the whole image, resizes it to the network's scale window by
window, runs the network over it in tiles (its output over the core and margin is then that of a
whole-image run, to float rounding: :func:`flowseg.inference.scaling.run_region`), brings the
output back to the image's scale and turns the flows into masks, then keeps the masks whose
centre of mass lies in its core (as :mod:`flowseg.inference.blocks` does in one process). A
resized run whose cells ask for another scale runs again at it, as in one process
(:func:`flowseg.inference.estimate.second_look`). Flow following is local, so a cell
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

import functools
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from flowseg.apps.slide_tasks import (
    block_features,
    open_image,
    segment_block,
    worker_model,
    write_chunk,
)
from flowseg.errors import InputError
from flowseg.inference.blocks import core_grid, extend
from flowseg.inference.scaling import mask_margin
from flowseg.inference.tiling import TileConfig
from flowseg.io.lazy import LazyPixels
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


def segment_large(
    source: Any, output: str | os.PathLike[str], *, client: Any, model: str | None = None,
    blocks: BlockConfig = BlockConfig(), tiles: TileConfig = TileConfig(),
    masks: MaskConfig | None = None, device: str = "auto", tiff: str | os.PathLike[str] | None = None,
    ranges: npt.ArrayLike | None = None, diameter: float | None = None,
    geojson: str | os.PathLike[str] | None = None, pixel_size: Any = None,
    ome_zarr: str | os.PathLike[str] | None = None,
) -> Path:
    """Segment a large 2-D image on a Dask cluster into a zarr array of labels.

    The labels are those one process gives the same image (:func:`flowseg.inference.pipeline.segment`):
    the same scale, chosen the same way, and the network's output over every block that of a
    whole-image run; only cells larger than the block margin can differ.

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
        ``margin`` is in pixels at the network's scale: a shrunk image's blocks get a margin
        that many times wider, its cells being that many times larger.
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
    diameter : float, optional
        Typical cell diameter in pixels; None or 0 estimates it here, in the client, from the
        crops one process would read.
    geojson : str or PathLike, optional
        Also write the cells as a QuPath GeoJSON FeatureCollection (:mod:`flowseg.apps.geojson`):
        each block's features are made by its own task into a part file, and the parts are
        joined line by line, so no process holds the polygons of more than a block.
    pixel_size : PixelSize, optional
        The slide's (:func:`flowseg.io.pixelsize.read_pixel_size`): written into the label TIFF
        and, in micrometres, into the GeoJSON measurements.
    ome_zarr : str or PathLike, optional
        Also write the labels as an NGFF image-label with its pyramid in this new OME-Zarr store
        (:func:`flowseg.io.omezarr.write_ome_zarr_labels`), chunk by chunk from ``output``.

    Returns
    -------
    output : Path

    Raises
    ------
    RuntimeError
        If a block still fails after its retries; the message names the block.
    ValueError
        If ``diameter`` is negative or resizes the image beyond what fits.
    """
    import zarr

    from flowseg.inference.estimate import auto_scale, diameter_of_sizes, look_again
    from flowseg.inference.normalize import channel_ranges
    from flowseg.inference.scaling import training_diameter
    from flowseg.io import write_labels_tiled

    if diameter is not None and not diameter >= 0:
        raise InputError(f"diameter must be positive (or 0 for automatic), got {diameter}")
    net = worker_model(model, device)
    config = masks or MaskConfig(**net.metadata.get("thresholds", {}))
    trained = training_diameter(net)
    output = Path(output)
    with open_image(source) as image:
        shape = tuple(int(n) for n in image.shape[1:])
        if ranges is None:
            step = max(1, int(np.ceil(np.sqrt(shape[0] * shape[1] / (1 << 22)))))
            # Read here, chunk by chunk: a file's handle cannot travel to the workers.
            ranges = channel_ranges(image[:, ::step, ::step].compute(scheduler="synchronous"))
        ranges = np.asarray(ranges, np.float64)
        scale, used = _first_scale(net, image, ranges, diameter, tiles, config, device)
        log.info("%s: cell diameter %.1f px, run at %.2fx", output, used, scale)
        # An array travels to the tasks as dask slices; a file is opened by each task itself.
        lazy = None if isinstance(source, (str, os.PathLike)) else image
        run = functools.partial(_run_scale, client, source, lazy, shape, ranges, output, model,
                                blocks, tiles, config, device, net.stride)
        scratch, counts, whole, cut = run(scale)
        try:
            found, cells = diameter_of_sizes(np.concatenate(whole), np.concatenate(whole + cut))
            again = look_again(found, cells, shape, scale, trained) if scale != 1.0 else None
            if again is not None:  # as one process: the resized run's cells ask for another
                scale = auto_scale(shape, trained / again)
                log.info("%s: cells of %.1f px, running again at %.2fx", output, again, scale)
                shutil.rmtree(scratch, ignore_errors=True)
                scratch, counts, whole, cut = run(scale)
            cores = core_grid(shape, blocks.block)  # type: ignore[arg-type]
            exts = [extend(c, shape, mask_margin(blocks.margin, scale)) for c in cores]  # type: ignore[arg-type]
            offsets = _compose(client, output, shape, blocks, cores, exts, counts, scratch)
            if geojson is not None:
                regions = [source if lazy is None else lazy[:, e[0]:e[1], e[2]:e[3]] for e in exts]
                _write_geojson(client, regions, cores, exts, offsets, scratch, blocks, pixel_size,
                               geojson)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    log.info("%s: %d cells in %d blocks", output, sum(counts), len(cores))
    if tiff is not None:
        write_labels_tiled(zarr.open_array(str(output), mode="r"), tiff, pixel_size=pixel_size)
    if ome_zarr is not None:
        import dask.array as da

        from flowseg.io.omezarr import write_ome_zarr_labels

        with dask_config_synchronous():
            write_ome_zarr_labels(da.from_zarr(str(output)), ome_zarr, pixel_size=pixel_size)
    return output


def _first_scale(net: Any, image: Any, ranges: npt.NDArray[np.float64], diameter: float | None,
                 tiles: TileConfig, config: MaskConfig, device: str) -> tuple[float, float]:
    """Return the scale one process starts at (the diameter given, or the crops' estimate)."""
    from flowseg.inference.estimate import estimate_diameter, scale_for
    from flowseg.inference.normalize import PreparedView
    from flowseg.inference.scaling import check_scale, training_diameter
    from flowseg.model.execution import plan_execution

    shape = tuple(int(n) for n in image.shape[1:])
    trained = training_diameter(net)
    if diameter:
        check_scale(shape, trained / diameter, diameter)
        return trained / diameter, float(diameter)
    # read in this process (a file's handle cannot travel to the workers)
    view = PreparedView(LazyPixels(image), ranges=ranges)  # type: ignore[arg-type]
    guess = estimate_diameter(net, view, tiles=tiles, masks=config,
                              execution=plan_execution(device))
    return scale_for(guess, trained, shape)


def _compose(client: Any, output: Path, shape: tuple[int, ...], blocks: BlockConfig,
             cores: list[tuple[int, int, int, int]], exts: list[tuple[int, int, int, int]],
             counts: list[int], scratch: str) -> list[int]:
    """Write the output zarr chunk by chunk from the blocks' labels; return each block's id offset."""
    import zarr

    offsets = list(np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(int))
    if output.exists():
        shutil.rmtree(output)
    zarr.create_array(str(output), shape=shape, chunks=(blocks.block, blocks.block),
                      dtype="uint32", fill_value=0)
    jobs = [client.submit(write_chunk, core, _overlapping(core, exts), offsets, scratch,
                          str(output), retries=blocks.retries, pure=False) for core in cores]
    _gather(client, jobs, cores)
    return offsets


def _write_geojson(client: Any, regions: list[Any], cores: list[tuple[int, int, int, int]],
                   exts: list[tuple[int, int, int, int]], offsets: list[int], scratch: str,
                   blocks: BlockConfig, pixel_size: Any, path: str | os.PathLike[str]) -> None:
    """Have every block write its cells' features, then join the parts into ``path``."""
    micrometres = pixel_size.mean if pixel_size is not None else None
    jobs = [client.submit(block_features, index, region, core, ext, offsets[index], scratch,
                          micrometres, retries=blocks.retries, pure=False)
            for index, (core, ext, region) in enumerate(zip(cores, exts, regions, strict=True))]
    _join_features(_gather(client, jobs, cores), path)


def dask_config_synchronous() -> Any:
    """Compute dask graphs in this process (a pyramid of labels read from the scratch zarr)."""
    import dask

    return dask.config.set(scheduler="synchronous")


def _run_scale(client: Any, source: Any, lazy: Any, shape: tuple[int, int],
               ranges: npt.NDArray[np.float64], output: Path, model: str | None,
               blocks: BlockConfig, tiles: TileConfig, config: MaskConfig, device: str,
               stride: int, scale: float) -> tuple[str, list[int], list[Any], list[Any]]:
    """Segment every block at ``scale`` into a new scratch group; return it, counts and areas."""
    from flowseg.inference.scaling import plan_region, scale_min_size

    cores = core_grid(shape, blocks.block)
    exts = [extend(c, shape, mask_margin(blocks.margin, scale)) for c in cores]
    scratch = tempfile.mkdtemp(prefix=f".{output.name[:100]}.", suffix=".parts", dir=output.parent)
    config = replace(config, min_size=scale_min_size(config.min_size, scale))
    jobs = []
    try:
        for index, (core, ext) in enumerate(zip(cores, exts, strict=True)):
            reads = plan_region(shape, scale, ext, tiles.context, stride).reads
            region = source if lazy is None else lazy[:, reads[0]:reads[1], reads[2]:reads[3]]
            local = replace(config, max_size_fraction=config.max_size_fraction * shape[0]
                            * shape[1] / ((ext[1] - ext[0]) * (ext[3] - ext[2])))
            jobs.append(client.submit(segment_block, region, core, ext, reads, shape, scale,
                                      ranges, scratch, index, model, tiles, local, device,
                                      retries=blocks.retries, pure=False))
        results = _gather(client, jobs, cores)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return (scratch, [int(r[0]) for r in results], [r[1] for r in results],
            [r[2] for r in results])


def _join_features(parts: list[str], path: str | os.PathLike[str]) -> None:
    """Join the blocks' feature lines into one FeatureCollection, atomically, line by line."""
    from flowseg.apps.geojson import GeoJsonWriter
    from flowseg.io import write_atomic

    def write(tmp: Path) -> None:
        with open(tmp, "w") as out:
            writer = GeoJsonWriter(out)
            for part in parts:
                with open(part) as stream:
                    writer.add_json(stream)
            writer.close()

    write_atomic(path, write)


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






