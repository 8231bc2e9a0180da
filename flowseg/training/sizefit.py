"""The size head refitted at the end of training, on the run's own images at known rescalings.

New weights make a size head stale (its features change), so a fine-tuned checkpoint used to lose
its automatic diameter's anchor. As cellpose refits its size model after training, the head is
fitted again on the training images themselves, each resized by ``SIZE_FACTORS`` (0.5x to 2x):
the true median diameter of a resized image is known from its resized labels, so every image
gives several (features, diameter) samples without any annotation beyond the labels.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
from skimage.transform import resize

from flowseg.inference.estimate import median_diameter
from flowseg.inference.normalize import PreparedView, resize_labels_to, scaled_shape
from flowseg.inference.sizehead import HEAD_CROP, fit_size_head, head_features
from flowseg.io import read_image, read_labels
from flowseg.model.execution import plan_execution
from flowseg.model.runtime import Model

log = logging.getLogger(__name__)

# Rescalings of every training image, log-spaced from half to twice its size.
SIZE_FACTORS = (0.5, 0.63, 0.79, 1.0, 1.26, 1.59, 2.0)
# At most this many images are read (evenly spaced through the list): a few hundred forwards
# of a 512^2 crop at most: 19 s on two CPU cores for 48 real images (benchmarks/RESULTS.md).
SIZE_IMAGES = 48
# A resized image with fewer whole cells than this says too little about their size.
SIZE_MIN_CELLS = 3


def refit_size_head(net: Model, pairs: list[tuple[Path, Path]], *,
                    factors: tuple[float, ...] = SIZE_FACTORS,
                    max_images: int = SIZE_IMAGES) -> dict[str, Any] | None:
    """Fit ``net``'s size head on training pairs seen at several known scales.

    Parameters
    ----------
    net : FlowUNet or OnnxModel
        The trained network, as it will be shipped.
    pairs : list of (Path, Path)
        Image and label files.
    factors : tuple of float
        Rescalings of each image (bilinear image, nearest-neighbour labels).
    max_images : int
        Images read at most, evenly spaced through ``pairs``.

    Returns
    -------
    head : dict or None
        As :func:`~flowseg.inference.sizehead.fit_size_head` returns it, with ``images``,
        ``samples`` and ``crop``; None when fewer than two samples had cells to measure.
    """
    chosen = [pairs[int(i)] for i in
              np.unique(np.linspace(0, len(pairs) - 1, min(len(pairs), max_images)).round())]
    plan = plan_execution("auto")  # once, not per forward pass
    features, diameters = [], []
    for image_path, label_path in chosen:
        image, labels = read_image(image_path), read_labels(label_path)
        for factor in factors:
            shape = scaled_shape(labels.shape, factor)
            if min(shape) < 16:
                continue
            sized_labels = resize_labels_to(labels, shape)
            diameter, cells = median_diameter(sized_labels)
            if cells < SIZE_MIN_CELLS or not diameter > 0:
                continue
            # Smoothed when shrunk, as a picture taken at a lower magnification is.
            sized = image if shape == labels.shape else resize(
                image, (image.shape[0], *shape), order=1, anti_aliasing=factor < 1,
                preserve_range=True).astype(np.float32)
            features.append(head_features(net, PreparedView(sized), execution=plan))
            diameters.append(diameter)
    if len(diameters) < 2:
        log.info("size head not refitted: %d measurable samples", len(diameters))
        return None
    head = fit_size_head(np.array(features), np.array(diameters))
    head.update(images=len(chosen), samples=len(diameters), crop=HEAD_CROP,
                factors=list(factors))
    return head
