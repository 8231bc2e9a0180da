"""The seed's representation: background / interior / boundary classes, instances from the interior.

Labels become three classes: the boundary is every cell pixel that touches another id or the
background (``skimage.segmentation.find_boundaries(mode="inner")``), the interior is the rest of
each cell. The network (the same ``FlowUNet``, its three output channels read as class logits) is
trained with cross-entropy. Instances are the 4-connected components of the predicted interior
(probability above one half, small holes filled and specks removed, as the seed did), grown back
over the predicted cell area (interior or boundary), since the interior alone misses each cell's
rim. The growth reaches at most ``GROW`` pixels from a component, and masks smaller than
``min_size`` are dropped, as ``flowseg.masks`` drops them.
"""

from __future__ import annotations

import fastremap
import numpy as np
import numpy.typing as npt
import torch
from skimage.measure import label as connected_components
from skimage.morphology import remove_small_holes, remove_small_objects
from skimage.segmentation import expand_labels, find_boundaries
from torch.nn import functional as F

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
GROW = 4  # pixels a component may grow back over the predicted cell area
SPECK = 16  # interior components under this many pixels are dropped (the seed's value)
HOLE = 64  # holes in the interior under this many pixels are filled (the seed's value)


def labels_to_classes(labels: npt.NDArray[np.uint32]) -> npt.NDArray[np.float32]:
    """Return the ``(1, H, W)`` class map: 0 background, 1 interior, 2 boundary."""
    classes = np.where(labels > 0, INTERIOR, BACKGROUND).astype(np.float32)
    classes[find_boundaries(labels, mode="inner") & (labels > 0)] = BOUNDARY
    return classes[None]


def class_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the ``(B, 3, H, W)`` logits against the ``(B, 1, H, W)`` class map."""
    return F.cross_entropy(output.float(), target[:, 0].long())


def classes_to_instances(logits: npt.NDArray[np.floating], *, min_size: int = 15,
                         ) -> npt.NDArray[np.uint32]:
    """Turn ``(3, H, W)`` class logits into instance labels.

    Parameters
    ----------
    logits : (3, H, W) ndarray
        Background, interior, boundary.
    min_size : int
        Masks with fewer pixels after growing are removed.

    Returns
    -------
    labels : (H, W) ndarray of uint32
        Consecutive ids, 0 = background.
    """
    prob = torch.softmax(torch.as_tensor(np.asarray(logits, np.float32)), dim=0).numpy()
    interior = remove_small_holes(prob[INTERIOR] > 0.5, max_size=HOLE - 1)
    interior = remove_small_objects(interior, max_size=SPECK - 1)
    seeds = connected_components(interior, connectivity=1)
    cells = prob[BACKGROUND] < 0.5
    grown = np.where(cells | (seeds > 0), expand_labels(seeds, distance=GROW), 0)
    sizes = np.bincount(grown.reshape(-1))
    grown[sizes[grown] < min_size] = 0
    renumbered, _ = fastremap.renumber(grown, preserve_zero=True, in_place=True)
    return np.asarray(renumbered, np.uint32)


def perfect_logits(labels: npt.NDArray[np.uint32]) -> npt.NDArray[np.float32]:
    """Logits that a perfect network would give: the true classes, with certainty."""
    classes = labels_to_classes(labels)[0].astype(np.intp)
    return (10.0 * np.eye(3, dtype=np.float32)[classes]).transpose(2, 0, 1)
