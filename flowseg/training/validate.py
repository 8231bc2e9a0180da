"""Validation during training: the network on whole images, scored with the challenge F1."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from skimage.transform import resize
from torch.nn import functional as F

from flowseg.inference.normalize import prepare_image
from flowseg.inference.pipeline import segment_with_outputs
from flowseg.io import read_image, read_labels
from flowseg.metrics import challenge_scores
from flowseg.model.net import FlowUNet
from flowseg.representation.masks import masks_from_flows
from flowseg.training.dataset import label_diameter, span_window

# Validation images larger than this are scored on a centred crop of this side.
VAL_CROP = 1024


@torch.no_grad()
def validate(net: FlowUNet, pairs: list[tuple[Path, Path]], device: torch.device,
             diameter: float | None = None, span: tuple[float, float] | None = None) -> float:
    """Return the mean challenge F1 of the network's masks on validation pairs.

    Images larger than ``VAL_CROP`` on a side are scored on a crop of that side, centred on
    the image (on the scored part, for a ``span``).

    Parameters
    ----------
    net : FlowUNet
    pairs : list of (Path, Path)
    device : torch.device
    diameter : float, optional
        The training diameter: each image (and its labels) is first rescaled so that its median
        cell diameter becomes this, as the training crops are (:class:`FlowDataset`); None
        scores images at their own scale.
    span : (float, float), optional
        Score only the cells that lie mostly in this part of every image's longer side
        (:func:`held_out_cells`): the part a training held out. The network sees the rest too,
        as context, and a cell is not dropped for touching the part's edge inside the image.

    Returns
    -------
    f1 : float
        NaN if no image has a cell, true or found, to score.
    """
    was_training = net.training
    net.eval()
    scores = []
    for image_path, label_path in pairs:
        image, labels = prepare_image(read_image(image_path)), read_labels(label_path)
        if diameter:
            image, labels = _at_diameter(image, labels, diameter)
        window = _crop_around(labels.shape, span_window(labels.shape, span), VAL_CROP)
        inside = span_mask(labels.shape, span)[window] if span is not None else None
        image, labels = image[(slice(None), *window)], labels[window]
        output = predict_whole(net, image, device)
        scores.append(_part_f1(labels, masks_from_flows(output[:2], output[2]), inside))
    net.train(was_training)
    return _mean(scores)


def automatic_f1(net: FlowUNet, pairs: list[tuple[Path, Path]], device: torch.device,
                 span: tuple[float, float] | None = None) -> float:
    """Return the mean challenge F1 of predict's masks (no option given: the automatic diameter).

    Whole images through :func:`flowseg.inference.pipeline.segment_with_outputs`, its size
    head, estimate and tiling included; with a ``span``, only the cells that lie mostly in that
    part of each image's longer side are scored (:func:`held_out_cells`).

    Parameters
    ----------
    net : FlowUNet
    pairs : list of (Path, Path)
    device : torch.device
    span : (float, float), optional

    Returns
    -------
    f1 : float
        NaN if no image has a cell, true or found, to score.
    """
    scores = []
    for image_path, label_path in pairs:
        labels = read_labels(label_path)
        found = segment_with_outputs(read_image(image_path), net, channel_axis=0,
                                     device=device.type).labels
        inside = span_mask(labels.shape, span) if span is not None else None
        scores.append(_part_f1(labels, found, inside))
    return _mean(scores)


def span_mask(shape: tuple[int, ...], span: tuple[float, float]) -> np.ndarray:
    """Return a boolean image, True where a span of the longer side lies (:func:`span_window`)."""
    inside = np.zeros(shape, bool)
    inside[span_window(shape, span)] = True
    return inside


def _part_f1(labels: np.ndarray, found: np.ndarray, inside: np.ndarray | None) -> float | None:
    """Challenge F1 of the cells and masks mostly ``inside`` (all if None); None if there are none."""
    if inside is not None:
        labels, found = held_out_cells(labels, inside), held_out_cells(found, inside)
        if not labels.any() and not found.any():
            return None
    return challenge_scores(labels, found).f1


def _mean(scores: list[float | None]) -> float:
    kept = [f1 for f1 in scores if f1 is not None]
    return float(np.mean(kept)) if kept else float("nan")


def held_out_cells(labels: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Keep the cells (or masks) that have more than half of their pixels where ``inside`` is set.

    Parameters
    ----------
    labels : (H, W) ndarray of int
    inside : (H, W) ndarray of bool

    Returns
    -------
    kept : (H, W) ndarray
        ``labels`` with every other cell set to 0.

    Examples
    --------
    >>> labels = np.array([[1, 1, 2, 2, 2]])
    >>> held_out_cells(labels, np.array([[False, True, True, True, False]]))
    array([[0, 0, 2, 2, 2]])
    """
    flat = labels.reshape(-1)
    total = np.bincount(flat)
    within = np.bincount(flat[inside.reshape(-1)], minlength=total.size)
    keep = 2 * within > total
    keep[0] = False
    return np.where(keep[labels], labels, 0).astype(labels.dtype)


def _at_diameter(image: np.ndarray, labels: np.ndarray,
                 diameter: float) -> tuple[np.ndarray, np.ndarray]:
    """Rescale an image and its labels so that the median cell diameter becomes ``diameter``.

    The median is FlowDataset's (:func:`label_diameter`); bilinear for the image, nearest
    neighbour for the labels.
    """
    median, cells = label_diameter(labels)
    if not cells:
        return image, labels
    factor = diameter / median
    shape = tuple(max(1, round(n * factor)) for n in labels.shape)
    if shape == labels.shape:
        return image, labels
    resized = resize(image, (image.shape[0], *shape), order=1, preserve_range=True,
                     anti_aliasing=factor < 1).astype(np.float32)
    nearest = resize(labels, shape, order=0, preserve_range=True, anti_aliasing=False)
    return resized, nearest.astype(labels.dtype)


def _crop_around(shape: tuple[int, ...], part: tuple[slice, slice],
                 side: int) -> tuple[slice, slice]:
    """Return a window of at most ``side`` a side, centred on ``part`` and kept inside the image."""
    window = []
    for n, cut in zip(shape, part, strict=True):
        low, high = cut.start or 0, n if cut.stop is None else cut.stop
        start = min(max(0, (low + high - side) // 2), max(0, n - side))
        window.append(slice(start, min(n, start + side)))
    return tuple(window)  # type: ignore[return-value]


@torch.no_grad()
def predict_whole(net: FlowUNet, image: np.ndarray, device: torch.device) -> np.ndarray:
    """Run the network on a whole (small) image, padded by reflection to its stride.

    Parameters
    ----------
    net : FlowUNet
    image : (3, H, W) ndarray of float32
    device : torch.device

    Returns
    -------
    output : (3, H, W) ndarray of float32
        Flows in ``FLOW_SCALE`` units and the logit.
    """
    height, width = image.shape[1:]
    pad_h, pad_w = -height % net.stride, -width % net.stride
    x = torch.from_numpy(np.ascontiguousarray(image, np.float32))[None].to(device)
    mode = "reflect" if min(height, width) > max(pad_h, pad_w) else "replicate"
    x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return net(x)[0, :, :height, :width].float().cpu().numpy()
