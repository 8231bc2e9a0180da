"""A size head: the typical cell diameter read from the network's pooled encoder features.

cellpose 1-3 estimated the cell size by a linear regression from the network's style vector; this
is the same idea on a network that pools nothing globally. :func:`head_features` runs the network
once on a central crop of an image at the image's own scale (``HEAD_CROP`` pixels a side at most)
and averages every encoder channel over it; a ridge regression (:func:`fit_size_head`, fitted by
``scripts/train_default_model.py`` on images of known cell size and stored in the checkpoint's
metadata as ``size_head``) maps those features to the logarithm of the median cell diameter.

It does not depend on the segmentation at the image's own scale: a network that cuts cells
several times its training size into nucleus-sized pieces still sees, in its deeper features,
that the picture is of large cells. flowseg.inference.estimate uses it to catch a first pass whose masks
are far from the head's estimate. Weights that change (fine-tuning) make the head stale:
flowseg.training.train drops it, and the automatic diameter goes on without it.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from flowseg.inference.normalize import PreparedView
from flowseg.inference.tiling import mirror_indices
from flowseg.model.execution import Execution, plan_execution
from flowseg.model.runtime import Model, OnnxModel

if TYPE_CHECKING:
    from flowseg.model.net import FlowUNet

log = logging.getLogger(__name__)

# Side of the central crop the features are pooled over: 512 holds a dozen 150-px cells and
# costs one untiled forward of a quarter megapixel.
HEAD_CROP = 512
# Ridge penalty on the standardised features. On synthetic tuning images (8 generators, cells of
# 8-150 px) penalties 1-10 gave the lowest median error of log(diameter) (RESULTS.md).
HEAD_PENALTY = 3.0


def head_features(net: Model, image: PreparedView | npt.NDArray[np.floating], *,
                  execution: Execution | None = None) -> npt.NDArray[np.float32]:
    """Pool the network's encoder features over the image's central crop.

    Parameters
    ----------
    net : FlowUNet or OnnxModel
    image : PreparedView or (3, H, W) ndarray
        Normalised network input.
    execution : Execution, optional

    Returns
    -------
    features : (F,) ndarray of float32
    """
    height, width = image.shape[1:]
    top, left = max(0, (height - HEAD_CROP) // 2), max(0, (width - HEAD_CROP) // 2)
    crop = np.asarray(image[:, top:top + HEAD_CROP, left:left + HEAD_CROP], np.float32)
    return pool_features(net, crop, execution=execution)


def fit_size_head(features: npt.ArrayLike, diameters: npt.ArrayLike, *,
                  penalty: float = HEAD_PENALTY) -> dict[str, Any]:
    """Fit a ridge regression from pooled features to the log of the cell diameter.

    Parameters
    ----------
    features : (N, F) array_like
        :func:`head_features` of N images.
    diameters : (N,) array_like
        Their median cell diameters in pixels (all positive).
    penalty : float
        Ridge penalty on the standardised features.

    Returns
    -------
    head : dict
        ``mean``, ``scale``, ``weights`` (lists of F floats) and ``bias``: JSON-ready, for a
        checkpoint's metadata.

    Raises
    ------
    ValueError
        If the shapes disagree, or a diameter is not positive.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.normal(size=(40, 3)); d = np.exp(1 + x[:, 0])
    >>> head = fit_size_head(x, d, penalty=1e-6)
    >>> round(predict_diameter(head, x[0]) / float(d[0]), 3)
    1.0
    """
    x = np.asarray(features, np.float64)
    d = np.asarray(diameters, np.float64)
    if x.ndim != 2 or d.shape != (x.shape[0],) or x.shape[0] < 2:
        raise ValueError(f"features must be (N, F) and diameters (N,), N >= 2; got "
                         f"{x.shape} and {d.shape}")
    if not np.all(d > 0):
        raise ValueError("every diameter must be positive")
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    z = (x - mean) / scale
    target = np.log(d)
    centre = target.mean()
    weights = np.linalg.solve(z.T @ z + penalty * np.eye(z.shape[1]), z.T @ (target - centre))
    return {"mean": mean.tolist(), "scale": scale.tolist(), "weights": weights.tolist(),
            "bias": float(centre)}


def predict_diameter(head: dict[str, Any], features: npt.ArrayLike) -> float:
    """Return the cell diameter, in pixels, that a fitted head reads from one image's features.

    Parameters
    ----------
    head : dict
        From :func:`fit_size_head`.
    features : (F,) array_like

    Returns
    -------
    diameter : float
    """
    z = (np.asarray(features, np.float64) - head["mean"]) / np.asarray(head["scale"])
    with np.errstate(over="ignore"):  # a reading beyond float range is inf, set aside by callers
        return float(np.exp(z @ np.asarray(head["weights"]) + head["bias"]))


def head_diameter(net: Model, image: PreparedView | npt.NDArray[np.floating], *,
                  execution: Execution | None = None) -> float | None:
    """Estimate an image's cell diameter with the model's size head, if it has one.

    Parameters
    ----------
    net : FlowUNet or OnnxModel
    image : PreparedView or (3, H, W) ndarray
    execution : Execution, optional

    Returns
    -------
    diameter : float or None
        In pixels of the image; None for a model without a head, or with one that does not fit
        this network (another feature count, missing or malformed fields: logged).
    """
    head = net.metadata.get("size_head")
    if not head:
        return None
    features = head_features(net, image, execution=execution)
    try:
        if len(head["weights"]) != features.size:
            raise ValueError(f"{len(head['weights'])} weights for {features.size} features")
        diameter = predict_diameter(head, features)
    except (KeyError, TypeError, ValueError) as err:
        log.warning("the model's size head is not used: %s", err)
        return None
    if not 0 < diameter < float("inf"):
        log.warning("the model's size head read %s px: not used", diameter)
        return None
    log.debug("size head: cells of %.1f px", diameter)
    return diameter


def pool_features(net: FlowUNet | OnnxModel, image: npt.NDArray[np.floating], *,
                  execution: Execution | None = None) -> npt.NDArray[np.float32]:
    """Return the network's encoder features averaged over one whole (small) image.

    The image is mirrored out to a multiple of the network's stride and run once, untiled, in
    float32 (``FlowUNet.forward_pooled``; the ``pooled`` output of an ONNX export).

    Parameters
    ----------
    net : FlowUNet or OnnxModel
    image : (3, H, W) ndarray
        Normalised network input; a crop of a few hundred pixels a side.
    execution : Execution, optional

    Returns
    -------
    pooled : (F,) ndarray of float32
        One mean per channel of every encoder level.
    """
    execution = execution or plan_execution("auto")
    stride = net.stride
    height, width = image.shape[1:]
    rows = mirror_indices(0, -(-height // stride) * stride, height)
    cols = mirror_indices(0, -(-width // stride) * stride, width)
    batch = np.ascontiguousarray(np.asarray(image, np.float32)[None][:, :, rows][:, :, :, cols])
    if isinstance(net, OnnxModel):
        return net.run_pooled(batch)[0]
    import torch

    placed: FlowUNet = execution.place(net).eval()
    with torch.inference_mode():
        pooled = placed.forward_pooled(execution.prepare(torch.from_numpy(batch)))[1]
    return pooled[0].float().cpu().numpy()
