"""The challenge's scoring: cells at the image border removed, large images in patches."""

from __future__ import annotations

import fastremap
import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError
from flowseg.metrics.errors import Errors, scores_and_errors
from flowseg.metrics.matching import IOU_THRESHOLD, Scores, match_labels

BORDER = 2
PATCH = 2000
PATCH_PIXELS = 25_000_000


def remove_border_cells(labels: npt.ArrayLike, *, width: int = BORDER) -> npt.NDArray[np.uint32]:
    """Remove the cells that touch a band of ``width`` pixels along the image edge.

    In a ``(Z, H, W)`` stack the band runs along the y and x faces only: a stack of a few planes
    cuts nearly every nucleus at its top and bottom, and those are the cells it is taken for.

    Parameters
    ----------
    labels : (H, W) or (Z, H, W) array_like of non-negative integers
    width : int
        Band width in pixels; the challenge uses 2.

    Returns
    -------
    labels : (H, W) or (Z, H, W) ndarray of uint32
        Remaining cells renumbered ``1..N``.

    Examples
    --------
    >>> x = np.zeros((8, 8), int); x[0, 0] = 1; x[3:5, 3:5] = 2
    >>> remove_border_cells(x).max(), remove_border_cells(x)[3, 3]
    (np.uint32(1), np.uint32(1))
    """
    labels = np.array(labels, dtype=np.uint32)
    band = np.ones(labels.shape, bool)
    band[..., width:-width or None, width:-width or None] = False
    touching = np.unique(labels[band])
    touching = touching[touching > 0]
    if touching.size:
        labels = fastremap.mask(labels, touching)
    renumbered, _ = fastremap.renumber(labels, preserve_zero=True, in_place=True)
    return np.asarray(renumbered, dtype=np.uint32)


def challenge_scores(
    true: npt.ArrayLike, pred: npt.ArrayLike, *, threshold: float = IOU_THRESHOLD
) -> Scores:
    """Score a prediction as the challenge does (border cells removed, large images in patches).

    Parameters
    ----------
    true, pred : (H, W) array_like of non-negative integers
    threshold : float
        IoU of a match; the challenge uses 0.5.

    Returns
    -------
    scores : Scores
        Summed over patches for images of ``PATCH_PIXELS`` pixels or more.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    total = Scores(0, 0, 0)
    for t, p in _scored_parts(true, pred):
        total += match_labels(t, p, threshold=threshold)
    return total


def challenge_scores_and_errors(
    true: npt.ArrayLike, pred: npt.ArrayLike, *, threshold: float = IOU_THRESHOLD
) -> tuple[Scores, Errors]:
    """:func:`challenge_scores`, and its misses and false objects by kind, from one matching.

    See :func:`~flowseg.metrics.scores_and_errors`; border cells and patches as
    :func:`challenge_scores` takes them.

    Returns
    -------
    scores : Scores
    errors : Errors
        Each summed over patches for images of ``PATCH_PIXELS`` pixels or more.
    """
    scores, errors = Scores(0, 0, 0), Errors()
    for t, p in _scored_parts(true, pred):
        part_scores, part_errors = scores_and_errors(t, p, threshold=threshold)
        scores, errors = scores + part_scores, errors + part_errors
    return scores, errors


def _scored_parts(true: npt.ArrayLike, pred: npt.ArrayLike):  # type: ignore[no-untyped-def]
    """Yield the (truth, prediction) pairs the challenge scores, border cells removed."""
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape or true.ndim != 2:
        raise InputError(f"truth and prediction must be 2-D of one shape, got {true.shape} "
                         f"and {pred.shape}")
    if true.size < PATCH_PIXELS:
        yield remove_border_cells(true), remove_border_cells(pred)
        return
    height, width = true.shape
    for y in range(0, height, PATCH):
        for x in range(0, width, PATCH):
            # The challenge pads with zeros to whole patches: a patch cut by the image edge keeps
            # its PATCH size, and the padding is background.
            yield (remove_border_cells(_padded_patch(true, y, x)),
                   remove_border_cells(_padded_patch(pred, y, x)))


def _padded_patch(labels: npt.NDArray[np.generic], y: int, x: int) -> npt.NDArray[np.uint32]:
    patch = np.zeros((PATCH, PATCH), np.uint32)
    part = labels[y : y + PATCH, x : x + PATCH]
    patch[: part.shape[0], : part.shape[1]] = part
    return patch
