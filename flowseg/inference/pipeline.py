"""One image in, one segmentation out: normalise, run the network in tiles, turn flows into masks.

:func:`segment` does one image in memory, at a given cell diameter or at one it estimates from a
first pass (:func:`flowseg.inference.estimate.estimate_diameter`). Folders of files are
:mod:`flowseg.apps.predict`'s job.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError
from flowseg.inference.estimate import estimate_diameter, run_estimated
from flowseg.inference.normalize import PreparedView
from flowseg.inference.scaling import Segmentation, check_scale, run_at_scale, training_diameter
from flowseg.inference.tiling import TileConfig
from flowseg.io.lazy import LazyPixels
from flowseg.model.execution import Execution, plan_execution
from flowseg.model.runtime import Model, OnnxModel, shipped_export
from flowseg.representation.masks import MaskConfig

__all__ = ["Segmentation", "as_channels_first", "default_model_path", "load_model", "segment",
           "segment_with_outputs", "training_diameter"]


DEFAULT_MODEL = "default.pt"


def default_model_path() -> Path:
    """Return the path of the model bundled with the package.

    Returns
    -------
    path : Path
    """
    return Path(str(resources.files("flowseg") / "models" / DEFAULT_MODEL))


def load_model(path: str | os.PathLike[str] | None = None, *,
               execution: Execution | None = None) -> Model:
    """Load a checkpoint, or the bundled default model when ``path`` is None.

    Parameters
    ----------
    path : str or PathLike, optional
    execution : Execution, optional
        Where the model will run. For the bundled model run by ONNX Runtime, its export is
        loaded (an :class:`~flowseg.model.runtime.OnnxModel`, without importing torch); otherwise
        the checkpoint (a :class:`~flowseg.model.net.FlowUNet`).

    Returns
    -------
    net : FlowUNet or OnnxModel

    Raises
    ------
    FileNotFoundError, ValueError
        If the file is missing or not a flowseg checkpoint (one line naming it).
    """
    if path is None and execution is not None and execution.runtime == "onnxruntime":
        shipped = shipped_export()
        if shipped is not None:
            return OnnxModel(shipped)
    from flowseg.model.net import load_net

    return load_net(default_model_path() if path is None else path)


def as_channels_first(image: npt.ArrayLike, *, channel_axis: int | None = None,
                      max_channels: int = 4) -> npt.NDArray[Any]:
    """Return an image as ``(C, H, W)``, deciding where its channels are.

    ``(H, W)`` is one channel. A 3-D array with ``channel_axis`` given has its channels there.
    Otherwise, the one axis, first or last, of at most ``max_channels`` entries holds the
    channels (``(3, H, W)``, ``(H, W, 3)``); when both or neither are that short the array is
    refused, since a z-stack or a time series must never be read as channels by accident.

    Parameters
    ----------
    image : array_like
    channel_axis : int, optional
    max_channels : int

    Returns
    -------
    image : (C, H, W) ndarray

    Raises
    ------
    ValueError
        If the shape is not 2-D or 3-D, the channel axis is ambiguous (the message says what
        to pass), or the pixels are not real numbers (complex, text); booleans count as 0 and 1.

    Examples
    --------
    >>> as_channels_first(np.zeros((5, 6, 3))).shape
    (3, 5, 6)
    >>> as_channels_first(np.zeros((5, 6))).shape
    (1, 5, 6)
    """
    array = np.asarray(image)
    if array.dtype == bool:  # a mask drawn as a picture: 0 and 1
        array = array.astype(np.uint8)
    elif array.dtype.kind not in "uif":
        raise InputError(f"image of dtype {array.dtype}: pixels must be real numbers "
                         "(integers or floats)")
    if array.ndim == 2 and channel_axis is None:
        return array[np.newaxis]
    if array.ndim != 3:
        raise InputError(f"image must be (H, W), (H, W, C) or (C, H, W), got shape {array.shape}")
    if channel_axis is not None:
        return np.moveaxis(array, channel_axis, 0)
    first, last = array.shape[0] <= max_channels, array.shape[-1] <= max_channels
    if first != last:
        return array if first else np.moveaxis(array, -1, 0)
    raise InputError(
        f"image of shape {array.shape}: cannot tell which axis holds the channels; pass "
        f"channel_axis=0 or -1 (a z-stack is segmented with "
        f"flowseg.inference.volume.segment_volume, not as channels)")


def segment_with_outputs(
    image: npt.ArrayLike, model: Model | None = None, *, tiles: TileConfig = TileConfig(),
    masks: MaskConfig | None = None, diameter: float | None = None, device: str = "auto",
    precision: str = "auto", channel_axis: int | None = None,
    execution: Execution | None = None,
) -> Segmentation:
    """Segment one image and keep the flows and cell probability.

    Parameters
    ----------
    image : (H, W), (H, W, C) or (C, H, W) array_like, or LazyPixels
        Raw pixel values, any channel count; see :func:`as_channels_first` for how the channel
        axis is found. A :class:`flowseg.io.lazy.LazyPixels` (a slide opened by
        :func:`flowseg.io.lazy.read_or_open`) is read window by window, never whole.
    model : FlowUNet or OnnxModel, optional
        The bundled default model when omitted.
    tiles : TileConfig
    masks : MaskConfig, optional
        The thresholds saved with the model when omitted.
    diameter : float, optional
        Typical cell diameter in pixels; the image is resized so that cells appear at the size
        the model was trained on (``model.metadata["diameter"]``). None or 0: estimated from a
        first pass (:func:`~flowseg.inference.estimate.estimate_diameter`), and the image runs at its own
        scale when the estimate is within what the model was trained on.
    device : {"auto", "cpu", "cuda"}
    precision : {"auto", "float32", "bfloat16", "float16"}
    channel_axis : int, optional
        Where the channels of a 3-D array are.
    execution : Execution, optional
        A plan made once for many images; overrides ``device`` and ``precision``.

    Returns
    -------
    segmentation : Segmentation

    Raises
    ------
    ValueError
        If the image's shape is not understood, it holds NaN or infinite values, or
        ``diameter`` is negative.
    """
    plan = execution or plan_execution(device, precision)
    net = model if model is not None else load_model(execution=plan)
    config = masks or MaskConfig(**net.metadata.get("thresholds", {}))
    # a file read window by window (flowseg.io.lazy) is (C, H, W) already
    raw = image if isinstance(image, LazyPixels) else as_channels_first(image, channel_axis=channel_axis)
    trained = training_diameter(net)
    if diameter is not None and not diameter >= 0:
        raise InputError(f"diameter must be positive (or 0 for automatic), got {diameter}")
    prepared = PreparedView(raw)  # normalised window by window: no whole normalised copy
    if diameter:
        check_scale(raw.shape[1:], trained / diameter, diameter)
        return run_at_scale(net, prepared, trained / diameter, tiles, config, plan, diameter)
    guess = estimate_diameter(net, prepared, tiles=tiles, masks=config, execution=plan)
    return run_estimated(net, prepared, guess, tiles, config, plan)


def segment(
    image: npt.ArrayLike, model: Model | None = None, *, tiles: TileConfig = TileConfig(),
    masks: MaskConfig | None = None, diameter: float | None = None, device: str = "auto",
    precision: str = "auto", channel_axis: int | None = None,
) -> npt.NDArray[np.uint32]:
    """Segment one image: normalise, run the network in tiles, turn flows into masks.

    Parameters
    ----------
    image : (H, W), (H, W, C) or (C, H, W) array_like
    model : FlowUNet or OnnxModel, optional
    tiles : TileConfig
    masks : MaskConfig, optional
    diameter : float, optional
        None or 0: estimated per image.
    device : {"auto", "cpu", "cuda"}
    precision : {"auto", "float32", "bfloat16", "float16"}
    channel_axis : int, optional

    Returns
    -------
    labels : (H, W) ndarray of uint32

    Raises
    ------
    ValueError
        As :func:`segment_with_outputs`.

    Examples
    --------
    >>> from flowseg.training.synthetic import make_sample
    >>> image, truth = make_sample((96, 96), "nuclei", seed=0)
    >>> segment(image).shape
    (96, 96)
    """
    return segment_with_outputs(image, model, tiles=tiles, masks=masks, diameter=diameter,
                                device=device, precision=precision,
                                channel_axis=channel_axis).labels
