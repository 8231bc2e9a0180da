"""Folders on a Dask cluster.

Large TIFFs go block by block (:mod:`flowseg.apps.slides`), the other images one task each, as
one process segments them.

Needs the ``dask`` extra: ``pip install "flowseg[dask]"``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from flowseg.apps.slide_tasks import worker_model
from flowseg.apps.slides import BlockConfig, segment_large
from flowseg.errors import InputError
from flowseg.inference.tiling import TileConfig
from flowseg.io.omezarr import LABELS_SUFFIX, write_ome_zarr_labels
from flowseg.io.pixelsize import read_pixel_size
from flowseg.representation.masks import MaskConfig

log = logging.getLogger(__name__)


def predict_with_dask(
    in_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, client: Any,
    model: str | None = None, blocks: BlockConfig = BlockConfig(), tiles: TileConfig = TileConfig(),
    masks: MaskConfig | None = None, device: str = "auto", overwrite: bool = False,
    diameter: float | None = None, geojson: bool = False, diameter_um: float | None = None,
    ome_zarr: bool = False,
) -> dict[str, list[str]]:
    """Segment a folder on a cluster: whole-slide TIFFs in blocks, other images one per task.

    A TIFF of more than four blocks' worth of pixels goes through :func:`segment_large`; the other
    images are mapped across the workers, each segmented as :func:`flowseg.inference.pipeline.segment`
    does. Either way the result is ``<name>_label.tiff``, as the single-process predict writes it.

    Parameters
    ----------
    in_dir, out_dir : str or PathLike
    client : distributed.Client
    model : str, optional
        Checkpoint path readable by every worker; the bundled model when None.
    blocks : BlockConfig
    tiles, masks, device
        As for :func:`flowseg.inference.pipeline.segment`.
    overwrite : bool
        Redo images whose label file exists.
    diameter : float, optional
        Typical cell diameter in pixels; None or 0: estimated per image, as one process does.
    geojson : bool
        Also write ``<name>_cells.geojson`` (QuPath detections, :mod:`flowseg.apps.geojson`).
    diameter_um : float, optional
        Typical cell diameter in micrometres, converted per image with its file's pixel size;
        an image without one is reported as failed.
    ome_zarr : bool
        Also write ``<name>_labels.ome.zarr`` (NGFF labels with their pyramid).

    Returns
    -------
    report : dict
        ``written``, ``skipped`` and ``failed`` (``name: reason``) lists of file names.

    Raises
    ------
    FileNotFoundError, ValueError
        If the folder does not exist or holds no image.
    """
    from flowseg.io.files import label_path, list_images

    images = list_images(in_dir)
    if not images:
        raise InputError(f"{in_dir}: no images")
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    report: dict[str, list[str]] = {"written": [], "skipped": [], "failed": []}
    todo = [p for p in images if overwrite or not label_path(p, out_dir).exists()]
    report["skipped"] = [p.name for p in images if p not in todo]
    sizes = {p: read_pixel_size(p) for p in todo}
    if diameter_um:
        report["failed"] += [f"{p.name}: --diameter-um needs the pixel size, and this file gives "
                             "none" for p in todo if sizes[p] is None]
        todo = [p for p in todo if sizes[p] is not None]
    wanted = {p: diameter_um / sizes[p].mean if diameter_um else diameter  # type: ignore[union-attr]
              for p in todo}
    large = [p for p in todo if _pixels(p) > 4 * blocks.block**2]
    small = [p for p in todo if p not in large]
    for path in large:
        # A folder of its own (a fixed name could be someone else's, and was removed after)
        scratch = Path(tempfile.mkdtemp(prefix=f".{path.stem[:100]}.", suffix=".parts",
                                        dir=out_dir)) / "labels.zarr"
        try:
            segment_large(path, scratch, client=client, model=model, blocks=blocks, tiles=tiles,
                          masks=masks, device=device, tiff=label_path(path, out_dir),
                          diameter=wanted[path], geojson=_geojson_path(path, out_dir) if geojson
                          else None, pixel_size=sizes[path],
                          ome_zarr=_sibling(path, out_dir, LABELS_SUFFIX) if ome_zarr else None)
            report["written"].append(path.name)
            log.info("%s: written, block by block", path.name)
        except (OSError, ValueError, RuntimeError) as err:
            report["failed"].append(f"{path.name}: {str(err).splitlines()[0]}")
        finally:
            shutil.rmtree(scratch.parent, ignore_errors=True)
    jobs = client.map(_predict_file, [str(p) for p in small], [wanted[p] for p in small],
                      out_dir=str(out_dir), model=model, tiles=tiles, masks=masks, device=device,
                      geojson=geojson, ome_zarr=ome_zarr, pure=False, retries=1)
    for path, job in zip(small, jobs, strict=True):
        try:
            problem = job.result()
        except Exception as err:  # a worker lost or out of memory: reported per file too
            problem = str(err).splitlines()[0] if str(err) else repr(err)
        if problem:
            report["failed"].append(f"{path.name}: {problem.replace(str(path) + ': ', '')}")
        else:
            report["written"].append(path.name)
            log.info("%s: written", path.name)
    return report


def _sibling(path: Path, out_dir: str | os.PathLike[str], suffix: str) -> Path:
    return Path(out_dir) / f"{path.stem}{suffix}"


def _geojson_path(path: Path, out_dir: str | os.PathLike[str]) -> Path:
    return _sibling(path, out_dir, "_cells.geojson")


def _pixels(path: Path) -> int:
    """Pixels of a TIFF or OME-Zarr image from its metadata (0 for others and unreadable ones)."""
    import tifffile

    if path.suffix.lower() == ".zarr":
        from flowseg.io.omezarr import as_cyx, open_level0

        try:
            array, axes, _, _ = open_level0(path)
            return int(np.prod(as_cyx(array, axes, path).shape[1:]))
        except (OSError, ValueError):
            return 0
    if path.suffix.lower() not in (".tif", ".tiff"):
        return 0
    try:
        with tifffile.TiffFile(path) as tif:
            return int(np.prod(sorted(tif.series[0].shape)[-2:]))
    except Exception:  # unreadable: the per-image task reports it
        return 0


def _predict_file(path: str, diameter: float | None, *, out_dir: str, model: str | None,
                  tiles: TileConfig, masks: MaskConfig | None, device: str, geojson: bool,
                  ome_zarr: bool) -> str:
    """Segment one file on a worker; return "" when written, else why not.

    A bad file is an answer, not a task failure: raising would make the worker log a traceback
    and Dask retry the task, printing it twice for an unreadable image.
    """
    from flowseg.inference.pipeline import segment
    from flowseg.io import read_pixels, write_labels
    from flowseg.io.files import label_path

    try:
        image = read_pixels(path)
        labels = segment(image, worker_model(model, device), tiles=tiles, masks=masks,
                         device=device, channel_axis=0, diameter=diameter)
        size = read_pixel_size(path)
        if geojson:
            from flowseg.apps.geojson import write_geojson

            write_geojson(labels, _geojson_path(Path(path), out_dir), image=image,
                          pixel_size=size.mean if size else None)
        if ome_zarr:
            write_ome_zarr_labels(labels, _sibling(Path(path), out_dir, LABELS_SUFFIX),
                                  pixel_size=size)
        write_labels(labels, label_path(path, out_dir), pixel_size=size)
    except (OSError, ValueError, MemoryError) as err:
        return str(err).splitlines()[0] if str(err) else type(err).__name__
    return ""
