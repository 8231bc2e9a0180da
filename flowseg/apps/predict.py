"""From image files to label files: a folder (or a file, or a glob) segmented into another folder.

:func:`predict_folder` writes one ``<name>_label.tiff`` per image atomically, with the outputs asked
for beside it, records the model and settings in the label file so that a rerun redoes only what
changed, goes on past a bad file and reports every failure at the end. Images are segmented by
:func:`flowseg.inference.pipeline.segment_with_outputs`; z-stacks, with ``volume=``, by
:func:`flowseg.inference.volume.segment_volume`.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import tifffile
from tqdm import tqdm

from flowseg.errors import InputError
from flowseg.inference.normalize import prepare_image
from flowseg.inference.pipeline import load_model, segment_with_outputs
from flowseg.inference.scaling import Segmentation
from flowseg.inference.tiling import TileConfig
from flowseg.inference.volume import VolumeConfig, segment_volume
from flowseg.io import MAX_PIXELS, read_description, read_volume, write_atomic, write_labels
from flowseg.io.files import IMAGE_SUFFIXES, label_path, resolve_inputs
from flowseg.io.lazy import LazyPixels, read_or_open
from flowseg.io.pixelsize import PixelSize, read_pixel_size
from flowseg.model.execution import plan_execution
from flowseg.model.runtime import Model, model_fingerprint
from flowseg.representation.masks import MaskConfig

log = logging.getLogger(__name__)


@dataclass
class PredictReport:
    """What :func:`predict_folder` did.

    Attributes
    ----------
    written : list of Path
    skipped : list of Path
        Label files that existed already with every requested output (not redone).
    failed : list of str
        ``file: reason`` per image that could not be segmented.
    ignored : list of str
        Files found that are not images, with why.
    """

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


# The files written beside <name>_label.tiff, by Outputs attribute.
OUTPUT_SUFFIXES = {"flows": "_flows.tiff", "overlays": "_overlay.png", "csv": "_cells.csv",
                   "rois": "_rois.zip", "geojson": "_cells.geojson",
                   "ome_zarr": "_labels.ome.zarr"}


@dataclass(frozen=True)
class Outputs:
    """Which files :func:`predict_folder` writes beside each ``<name>_label.tiff``.

    Attributes
    ----------
    flows : bool
        ``<name>_flows.tiff``: ``(3, H, W)`` float32 ``dy, dx, cellprob``.
    overlays : bool
        ``<name>_overlay.png``: outlines drawn on the image in its own colours.
    csv : bool
        ``<name>_cells.csv``: one row per cell (:func:`flowseg.apps.measure.measure`).
    rois : bool
        ``<name>_rois.zip``: one ImageJ polygon ROI per cell, named by its label.
    geojson : bool
        ``<name>_cells.geojson``: one QuPath detection per cell, with the measurements of
        ``csv`` (:mod:`flowseg.apps.geojson`).
    ome_zarr : bool
        ``<name>_labels.ome.zarr``: the labels as an NGFF image-label with its pyramid
        (:func:`flowseg.io.omezarr.write_ome_zarr_labels`).
    """

    flows: bool = False
    overlays: bool = False
    csv: bool = False
    rois: bool = False
    geojson: bool = False
    ome_zarr: bool = False

    def paths(self, image: Path, out_dir: Path) -> dict[str, Path]:
        """Return every requested output's path, the labels first."""
        stem = image.stem
        wanted = {"labels": label_path(image, out_dir)}
        for name, suffix in OUTPUT_SUFFIXES.items():
            if getattr(self, name):
                wanted[name] = out_dir / f"{stem}{suffix}"
        return wanted

    def stale(self, image: Path, out_dir: Path) -> list[Path]:
        """List the outputs of an earlier run for this image that this run will not write anew."""
        return [out_dir / f"{image.stem}{suffix}" for name, suffix in OUTPUT_SUFFIXES.items()
                if not getattr(self, name) and (out_dir / f"{image.stem}{suffix}").exists()]



def predict_folder(
    in_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
    model: Model | str | os.PathLike[str] | None = None, tiles: TileConfig = TileConfig(),
    masks: MaskConfig | None = None, diameter: float | None = None, device: str = "auto",
    precision: str = "auto", overwrite: bool = False, outputs: Outputs = Outputs(),
    max_pixels: int = MAX_PIXELS, volume: VolumeConfig | None = None, runtime: str = "auto",
    diameter_um: float | None = None,
) -> PredictReport:
    """Segment every image of a folder (or one file, or a glob's matches) into ``out_dir``.

    Writes ``<out_dir>/<name>_label.tiff`` per image and the requested ``outputs``, each
    atomically; the label file's ImageDescription records the model (a hash of its weights) and
    the settings. An image whose label file and requested outputs all exist and were made with
    the same model and settings is skipped unless ``overwrite``; otherwise it is redone, and the
    log says why. One line per image is logged at INFO: cells found, size, diameter, seconds.

    Parameters
    ----------
    in_dir : str or PathLike
        A folder, an image file, or a glob pattern.
    out_dir : str or PathLike
    model : FlowUNet or path, optional
        A network, or a checkpoint to load once images are found; the bundled default model when
        omitted.
    tiles, masks, diameter, device, precision
        As :func:`segment`.
    overwrite : bool
        Redo images whose outputs exist already.
    outputs : Outputs
        Files to write beside the labels.
    max_pixels : int
        Larger images (by their header, before decoding) are refused, and reported.
    volume : VolumeConfig, optional
        Read every file as a z-stack TIFF (:func:`flowseg.io.read_volume`) and segment it in
        3-D (:func:`flowseg.inference.volume.segment_volume`); the label file is a ``(Z, Y, X)`` stack.
        Only the labels are written.
    runtime : {"auto", "torch", "onnxruntime"}
        What runs the network (:func:`flowseg.model.execution.plan_execution`): auto is ONNX Runtime for
        float32 on the CPU where it is installed, torch otherwise.
    diameter_um : float, optional
        Typical cell diameter in micrometres, converted per image with the pixel size its file
        gives (:func:`flowseg.io.pixelsize.read_pixel_size`); an image without one fails with a
        message naming it. Not with ``diameter``.

    Label files carry the image's pixel size, where it has one, as TIFF resolution tags in
    centimetres (Fiji, QuPath and tifffile read them); the per-image line gives the diameter in
    micrometres too.

    Returns
    -------
    report : PredictReport

    Raises
    ------
    FileNotFoundError
        If ``in_dir`` or the model file does not exist.
    NotADirectoryError
        If ``out_dir`` is a file.
    ValueError
        If no image is found, the model file is not a flowseg checkpoint, the device or
        precision cannot be used, or ``outputs`` are asked of volumes (all before any image is
        processed).
    """
    if volume is not None and outputs != Outputs():
        raise InputError("flows, overlays, csv and rois are written for 2-D images only, not "
                         "with z-stacks")
    images, ignored, clashes = resolve_inputs(in_dir)
    report = PredictReport(ignored=ignored, failed=clashes)
    for clash in clashes:
        log.warning("failed: %s", clash)
    if not images and clashes:
        return report
    if not images:
        raise InputError(f"{in_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out}: output path is a file, not a folder")
    _remove_leftovers(out)
    plan = plan_execution(device, precision, runtime=runtime)
    net = (load_model(model, execution=plan) if model is None or isinstance(model, (str, os.PathLike))
           else model)
    log.debug("running on %s in %s through %s%s", plan.device, plan.precision, plan.runtime,
              ", channels-last" if plan.channels_last else "")
    if diameter and diameter_um:
        raise InputError("give --diameter (pixels) or --diameter-um (micrometres), not both")
    asked = f"{diameter_um:g} um" if diameter_um else diameter
    settings = _settings(net, tiles, masks, asked, volume)
    segment_file = functools.partial(
        _segment_file, net=net, tiles=tiles, masks=masks, diameter=diameter,
        diameter_um=diameter_um, volume=volume, plan=plan, max_pixels=max_pixels,
        settings=settings)
    for path in tqdm(images, desc="segmenting", unit="image", disable=None):
        wanted = outputs.paths(path, out)
        if _up_to_date(path, wanted, outputs, out, overwrite, settings):
            report.skipped.append(wanted["labels"])
            continue
        start = time.perf_counter()
        try:
            labels, used = segment_file(path, wanted)
        except (OSError, ValueError, MemoryError, RuntimeError) as err:
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            report.failed.append(f"{path.name}: {reason.replace(str(path) + ': ', '')}")
            log.warning("failed: %s", report.failed[-1])
            continue
        report.written.append(wanted["labels"])
        log.info("%s: %d cells, %s, diameter %s, %.2f s", path.name, int(labels.max()),
                 " x ".join(map(str, labels.shape)), used, time.perf_counter() - start)
    return report


def _up_to_date(path: Path, wanted: dict[str, Path], outputs: Outputs, out: Path,
                overwrite: bool, settings: str) -> bool:
    """Tell whether an image's outputs all exist from these settings; clear stale ones if not.

    A redo leaves nothing of the run before it: outputs not asked for now would describe other
    labels (65 CSV rows beside a 62-cell label image).
    """
    if not overwrite and all(p.exists() for p in wanted.values()):
        if read_description(wanted["labels"]) == settings:
            return True
        log.info("%s: redoing, its labels were made with other settings or model", path.name)
    if wanted["labels"].exists():
        for old in outputs.stale(path, out):
            shutil.rmtree(old) if old.is_dir() else old.unlink()
            log.info("%s: removed %s, from the run before", path.name, old.name)
    return False


def _segment_file(path: Path, wanted: dict[str, Path], *, net: Model, tiles: TileConfig,
                  masks: MaskConfig | None, diameter: float | None, diameter_um: float | None,
                  volume: VolumeConfig | None, plan: Any, max_pixels: int,
                  settings: str) -> tuple[npt.NDArray[np.uint32], str]:
    """Segment one file and write its outputs; return its labels and the diameter used, said."""
    size = read_pixel_size(path)
    if size is not None:
        log.debug("%s: pixel size %.4g x %.4g um (%s)", path.name, size.y, size.x, size.source)
    wanted_px = _pixels_for(diameter_um, size, path) if diameter_um else diameter
    if volume is not None:
        stack = read_volume(path, max_pixels=max_pixels)
        labels, used_px = segment_volume(stack, net, config=volume, tiles=tiles, masks=masks,
                                         diameter=wanted_px, execution=plan,
                                         return_diameter=True)
        write_labels(labels, wanted["labels"], description=settings, pixel_size=size)
    else:
        # a slide (a large TIFF, an OME-Zarr image) is read window by window
        image = read_or_open(path, max_pixels=max_pixels)
        try:
            result = segment_with_outputs(image, net, tiles=tiles, masks=masks,
                                          diameter=wanted_px, channel_axis=0, execution=plan)
            _write_outputs(image, result, wanted, settings, size)
        finally:
            if isinstance(image, LazyPixels):
                image.close()
        labels, used_px = result.labels, result.diameter
    return labels, f"{used_px:.1f} px" + (f" ({used_px * size.mean:.1f} um)" if size else "")


def _remove_leftovers(out: Path) -> None:
    """Remove what an interrupted run left in the output folder: its temporary files.

    Outputs are written as ``.<name>.<random>.tmp`` and renamed into place (Dask's scratch is a
    ``.<name>.<random>.parts`` folder); SIGKILL or a power cut leaves them behind. They are
    never results, so the next run removes them and says so (two runs into one output folder at
    once are not supported: they would write the same files).
    """
    if not out.is_dir():
        return
    found = [p for p in out.iterdir() if p.name.startswith(".")
             and (p.name.endswith(".tmp") or (p.name.endswith(".parts") and p.is_dir()))]
    for path in found:
        shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)
    if found:
        log.info("removed %d temporary file%s left by an interrupted run: %s", len(found),
                 "s" * (len(found) > 1), ", ".join(sorted(p.name for p in found)[:3])
                 + (", ..." if len(found) > 3 else ""))


def _pixels_for(diameter_um: float, size: PixelSize | None, path: Path) -> float:
    """Convert a diameter in micrometres to pixels of this image (an error naming it if unknown)."""
    if size is None:
        raise InputError(f"{path}: --diameter-um needs the pixel size, and this file gives none "
                         "(OME-TIFF, Aperio SVS, ImageJ or TIFF resolution tags); give "
                         "--diameter in pixels")
    return diameter_um / size.mean


def _settings(net: Model, tiles: TileConfig, masks: MaskConfig | None,
              diameter: float | str | None, volume: VolumeConfig | None = None) -> str:
    """Describe what makes a label file, to store in it: a rerun with other settings redoes it."""
    import json
    from dataclasses import asdict

    masks_used = masks or MaskConfig(**net.metadata.get("thresholds", {}))
    return json.dumps({"flowseg": net.metadata.get("flowseg_version", ""),
                       "model": model_fingerprint(net), "diameter": diameter or "auto",
                       "tiles": asdict(tiles), "masks": asdict(masks_used),
                       "volume": asdict(volume) if volume else None}, sort_keys=True)


def _write_outputs(image: npt.NDArray[Any] | LazyPixels, result: Segmentation,
                   wanted: dict[str, Path], settings: str, size: PixelSize | None = None) -> None:
    """Write the labels and every requested output; the labels last, so a rerun sees the rest.

    Overlays, measurements and GeoJSON read every pixel: a lazily opened image is read whole
    for them (only when one of them is asked for).
    """
    from flowseg.apps.measure import measure, write_csv, write_rois

    if isinstance(image, LazyPixels) and {"overlays", "csv", "geojson"} & wanted.keys():
        image = np.asarray(image)
    if "flows" in wanted:
        _write_flows(result, wanted["flows"])
    if "overlays" in wanted:
        _write_overlay(image, result.labels, wanted["overlays"])
    if "csv" in wanted:
        write_csv(measure(result.labels, image), wanted["csv"])
    if "rois" in wanted:
        write_rois(result.labels, wanted["rois"])
    if "geojson" in wanted:
        from flowseg.apps.geojson import write_geojson

        write_geojson(result.labels, wanted["geojson"], image=image,
                      pixel_size=size.mean if size else None)
    if "ome_zarr" in wanted:
        from flowseg.io.omezarr import write_ome_zarr_labels

        write_ome_zarr_labels(result.labels, wanted["ome_zarr"], pixel_size=size)
    write_labels(result.labels, wanted["labels"], description=settings, pixel_size=size)


def _write_flows(result: Segmentation, path: Path) -> None:
    stack = np.concatenate([result.flows, result.cellprob[None]]).astype(np.float32)
    write_atomic(path, lambda tmp: tifffile.imwrite(tmp, stack, compression="zlib",
                                                    photometric="minisblack"))


def _write_overlay(image: npt.NDArray[Any], labels: npt.NDArray[np.uint32],
                   path: Path) -> None:
    """Draw the mask outlines on the image, stretched to 8 bits.

    A colour image keeps its colours (one stretch for all three channels, so H&E stays pink and
    purple); other channel counts are stretched per channel. Outlines are bright green, which
    stands out on dark fluorescence and on stained tissue alike.
    """
    import imagecodecs  # only here: imported lazily, they cost start-up time
    from skimage.segmentation import find_boundaries

    if image.shape[0] == 3:
        low, high = np.percentile(image[:, ::4, ::4], (0.5, 99.8))
        rgb = np.clip((image.astype(np.float32) - low) / max(high - low, 1e-9), 0, 1)
    else:
        rgb = np.clip(prepare_image(image), 0, 1)
    pixels = np.ascontiguousarray((np.moveaxis(rgb, 0, -1) * 255).astype(np.uint8))
    pixels[find_boundaries(labels, mode="inner")] = (0, 255, 64)
    write_atomic(path, bytes(imagecodecs.png_encode(pixels)))
