"""From image files to label files: normalise, run the network in tiles, turn flows into masks.

:func:`segment` does one image in memory; :func:`predict_folder` does a folder, writing one
``<name>_label.tiff`` per image atomically, going on past a bad file and reporting every failure
at the end.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import imagecodecs
import numpy as np
import numpy.typing as npt
import tifffile
from skimage.segmentation import find_boundaries
from tqdm import tqdm

from flowseg.blocks import masks_in_blocks
from flowseg.infer import TileConfig, rescale, resize_to, run_tiled
from flowseg.io import IMAGE_SUFFIXES, label_path, list_images, read_pixels, write_labels
from flowseg.masks import MaskConfig
from flowseg.net import FlowUNet, load_net, pick_device
from flowseg.normalize import PreparedView, prepare_image

log = logging.getLogger(__name__)

DEFAULT_MODEL = "default.pt"


def default_model_path() -> Path:
    """Return the path of the model bundled with the package.

    Returns
    -------
    path : Path
    """
    return Path(str(resources.files("flowseg") / "models" / DEFAULT_MODEL))


def load_model(path: str | os.PathLike[str] | None = None) -> FlowUNet:
    """Load a checkpoint, or the bundled default model when ``path`` is None.

    Parameters
    ----------
    path : str or PathLike, optional

    Returns
    -------
    net : FlowUNet

    Raises
    ------
    FileNotFoundError, ValueError
        If the file is missing or not a flowseg checkpoint (one line naming it).
    """
    return load_net(default_model_path() if path is None else path)


@dataclass
class Segmentation:
    """Labels of one image, with the network's outputs they came from.

    Attributes
    ----------
    labels : (H, W) ndarray of uint32
    flows : (2, H, W) ndarray of float32
        ``dy, dx`` in ``FLOW_SCALE`` units.
    cellprob : (H, W) ndarray of float32
        Logits.
    """

    labels: npt.NDArray[np.uint32]
    flows: npt.NDArray[np.float32]
    cellprob: npt.NDArray[np.float32]


def segment_with_outputs(
    image: npt.ArrayLike, model: FlowUNet | None = None, *, tiles: TileConfig = TileConfig(),
    masks: MaskConfig | None = None, diameter: float | None = None, device: str = "auto",
) -> Segmentation:
    """Segment one image and keep the flows and cell probability.

    Parameters
    ----------
    image : (C, H, W) array_like
        Raw pixel values, any channel count (as :func:`flowseg.io.read_image` returns them).
    model : FlowUNet, optional
        The bundled default model when omitted.
    tiles : TileConfig
    masks : MaskConfig, optional
        The thresholds saved with the model when omitted.
    diameter : float, optional
        Typical cell diameter in pixels; the image is resized so that cells appear at the size
        the model was trained on. None runs at the native scale.
    device : {"auto", "cpu", "cuda"}

    Returns
    -------
    segmentation : Segmentation

    Raises
    ------
    ValueError
        If the image is not ``(C, H, W)``, holds NaN or infinite values, or ``diameter`` is not
        positive.
    """
    net = model if model is not None else load_model()
    config = masks or MaskConfig(**net.metadata.get("thresholds", {}))
    raw = np.asarray(image)
    if raw.ndim != 3:
        raise ValueError(f"image must be (C, H, W), got shape {raw.shape}")
    shape = raw.shape[1:]
    # Normalised window by window: no normalised copy of the whole image is ever held.
    prepared: PreparedView | npt.NDArray[np.float32] = PreparedView(raw)
    if diameter is not None:
        if diameter <= 0:
            raise ValueError(f"diameter must be positive, got {diameter}")
        trained = float(net.metadata.get("diameter") or 30.0)
        prepared = rescale(prepare_image(raw), trained / diameter)
    output = run_tiled(net, prepared, config=tiles, device=pick_device(device))
    if output.shape[1:] != shape:
        output = resize_to(output, shape)
    labels = masks_in_blocks(output[:2], output[2], config=config)
    return Segmentation(labels, output[:2], output[2])


def segment(
    image: npt.ArrayLike, model: FlowUNet | None = None, *, tiles: TileConfig = TileConfig(),
    masks: MaskConfig | None = None, diameter: float | None = None, device: str = "auto",
) -> npt.NDArray[np.uint32]:
    """Segment one image: normalise, run the network in tiles, turn flows into masks.

    Parameters
    ----------
    image : (C, H, W) array_like
    model : FlowUNet, optional
    tiles : TileConfig
    masks : MaskConfig, optional
    diameter : float, optional
    device : {"auto", "cpu", "cuda"}

    Returns
    -------
    labels : (H, W) ndarray of uint32

    Raises
    ------
    ValueError
        As :func:`segment_with_outputs`.
    """
    return segment_with_outputs(image, model, tiles=tiles, masks=masks, diameter=diameter,
                                device=device).labels


@dataclass
class PredictReport:
    """What :func:`predict_folder` did.

    Attributes
    ----------
    written : list of Path
    skipped : list of Path
        Outputs that existed already (not overwritten).
    failed : list of str
        ``file: reason`` per image that could not be segmented.
    ignored : list of str
        Files in the folder that are not images.
    """

    written: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def predict_folder(
    in_dir: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
    model: FlowUNet | str | os.PathLike[str] | None = None, tiles: TileConfig = TileConfig(),
    masks: MaskConfig | None = None, diameter: float | None = None, device: str = "auto",
    overwrite: bool = False, save_flows: bool = False, save_overlays: bool = False,
) -> PredictReport:
    """Segment every image of a folder into ``<out_dir>/<name>_label.tiff``.

    Parameters
    ----------
    in_dir, out_dir : str or PathLike
    model : FlowUNet or path, optional
        A network, or a checkpoint to load once the folder is found to hold images; the bundled
        default model when omitted.
    tiles, masks, diameter, device
        As :func:`segment`.
    overwrite : bool
        Redo images whose label file exists already.
    save_flows : bool
        Also write ``<name>_flows.tiff``: ``(3, H, W)`` float32 ``dy, dx, cellprob``.
    save_overlays : bool
        Also write ``<name>_overlay.png``: mask outlines drawn on the image.

    Returns
    -------
    report : PredictReport

    Raises
    ------
    FileNotFoundError
        If ``in_dir`` or the model file does not exist.
    ValueError
        If ``in_dir`` holds no image, or the model file is not a flowseg checkpoint.
    """
    images = list_images(in_dir)
    report = PredictReport(ignored=sorted(
        p.name for p in Path(in_dir).iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() not in IMAGE_SUFFIXES))
    if not images:
        raise ValueError(f"{in_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
    net = model if isinstance(model, FlowUNet) else load_model(model)
    for path in tqdm(images, desc="segmenting", unit="image", disable=None):
        target = label_path(path, out_dir)
        if target.exists() and not overwrite:
            report.skipped.append(target)
            continue
        try:
            image = read_pixels(path)
            result = segment_with_outputs(image, net, tiles=tiles, masks=masks,
                                          diameter=diameter, device=device)
            write_labels(result.labels, target)
            if save_flows:
                _write_flows(result, Path(out_dir) / f"{path.stem}_flows.tiff")
            if save_overlays:
                _write_overlay(image, result.labels, Path(out_dir) / f"{path.stem}_overlay.png")
        except (OSError, ValueError, MemoryError, RuntimeError) as err:
            report.failed.append(f"{path.name}: {str(err).splitlines()[0] if str(err) else err!r}")
            log.warning("failed: %s", report.failed[-1])
            continue
        report.written.append(target)
    return report


def _write_flows(result: Segmentation, path: Path) -> None:
    stack = np.concatenate([result.flows, result.cellprob[None]]).astype(np.float32)
    tmp = path.with_name(f".{path.name}.tmp")
    tifffile.imwrite(tmp, stack, compression="zlib", photometric="minisblack")
    os.replace(tmp, path)


def _write_overlay(image: npt.NDArray[Any], labels: npt.NDArray[np.uint32],
                   path: Path) -> None:
    """Draw the mask outlines in yellow on the image, stretched to 8 bits."""
    rgb = np.clip(prepare_image(image), 0, 1)
    pixels = np.ascontiguousarray((np.moveaxis(rgb, 0, -1) * 255).astype(np.uint8))
    pixels[find_boundaries(labels, mode="inner")] = (255, 220, 0)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(imagecodecs.png_encode(pixels))
    os.replace(tmp, path)
