"""The seed's representation: background / interior / boundary classes, instances from the interior.

Two variants, trained the same way (the same ``FlowUNet``, its three outputs read as class logits,
cross-entropy):

- **the seed's own** (``create_interior_map``, ``seed_instances``), as the challenge's baseline
  (the ``cellseg-baseline`` 0.0.2 wheel: ``baseline/pre_process_3class.py``,
  ``baseline/predict.py``) wrote them: the inner boundary (``find_boundaries(mode="inner")``) is
  dilated by ``disk(1)`` (so it is 2 pixels thick inside a cell and reaches 1 pixel into the
  background), the rest of each cell is interior, and interior pieces under 16 pixels become
  background; instances are the 8-connected components of the predicted interior (probability
  over one half, holes under 64 pixels filled, pieces under 16 pixels removed), not grown back.
- **the thin, grown variant** (``one_pixel_boundary_classes``, ``grown_instances``), this
  project's first reading of it: a 1-pixel inner boundary; instances are the 4-connected
  components of the interior, grown back by at most ``GROW`` pixels over the predicted cell area
  (interior or boundary), masks under ``min_size`` dropped as ``flowseg.representation.masks`` drops
  them.
"""

from __future__ import annotations

import fastremap
import numpy as np
import numpy.typing as npt
import torch
from skimage.measure import label as connected_components
from skimage.morphology import dilation, disk, remove_small_holes, remove_small_objects
from skimage.segmentation import expand_labels, find_boundaries
from torch.nn import functional as F

BACKGROUND, INTERIOR, BOUNDARY = 0, 1, 2
GROW = 4  # pixels a component may grow back over the predicted cell area
SPECK = 16  # interior components under this many pixels are dropped (the seed's value)
HOLE = 64  # holes in the interior under this many pixels are filled (the seed's value)


def create_interior_map(labels: npt.NDArray[np.uint32]) -> npt.NDArray[np.float32]:
    """Return the seed's ``(1, H, W)`` class map: 0 background, 1 interior, 2 boundary.

    The boundary is the inner boundary dilated by ``disk(1)``; interior pieces (the rest of the
    cells) under ``SPECK`` pixels are background.
    """
    boundary = dilation(find_boundaries(labels, mode="inner"), disk(1))
    interior = remove_small_objects((labels > 0) & ~boundary, max_size=SPECK - 1)
    classes = np.full(labels.shape, BACKGROUND, np.float32)
    classes[interior] = INTERIOR
    classes[boundary] = BOUNDARY
    return classes[None]


def seed_instances(logits: npt.NDArray[np.floating]) -> npt.NDArray[np.uint32]:
    """Turn ``(3, H, W)`` class logits into instances as the seed's predict.py did.

    The 8-connected components of ``P(interior) > 0.5``, after holes under ``HOLE`` pixels are
    filled and pieces under ``SPECK`` pixels removed; no growing back, no other size limit.
    """
    prob = torch.softmax(torch.as_tensor(np.asarray(logits, np.float32)), dim=0).numpy()
    interior = remove_small_holes(prob[INTERIOR] > 0.5, max_size=HOLE - 1)
    interior = remove_small_objects(interior, max_size=SPECK - 1)
    return connected_components(interior, connectivity=2).astype(np.uint32)


def one_pixel_boundary_classes(labels: npt.NDArray[np.uint32]) -> npt.NDArray[np.float32]:
    """Return the thin variant's ``(1, H, W)`` class map: a 1-pixel inner boundary, no specks rule."""
    classes = np.where(labels > 0, INTERIOR, BACKGROUND).astype(np.float32)
    classes[find_boundaries(labels, mode="inner") & (labels > 0)] = BOUNDARY
    return classes[None]


def class_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the ``(B, 3, H, W)`` logits against the ``(B, 1, H, W)`` class map."""
    return F.cross_entropy(output.float(), target[:, 0].long())


def grown_instances(logits: npt.NDArray[np.floating], *, min_size: int = 15,
                    ) -> npt.NDArray[np.uint32]:
    """Turn ``(3, H, W)`` class logits into instances: 4-connected interiors grown back.

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


def perfect_logits(classes: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Logits that a perfect network would give for a ``(1, H, W)`` class map, with certainty."""
    index = np.asarray(classes)[0].astype(np.intp)
    return (10.0 * np.eye(3, dtype=np.float32)[index]).transpose(2, 0, 1)
