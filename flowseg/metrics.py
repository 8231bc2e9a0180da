"""The challenge's metric: F1 of instances matched one to one at IoU >= 0.5.

As the NeurIPS 2022 cell segmentation challenge scores a prediction:

- cells that touch a band ``BORDER`` pixels wide along the image edge are removed from both the
  truth and the prediction, and the ids renumbered;
- each true cell is matched to at most one predicted cell (Hungarian assignment), and a match with
  IoU >= 0.5 is a true positive; FP = predictions - TP, FN = true cells - TP;
- an image of ``PATCH_PIXELS`` pixels or more is zero-padded to a multiple of ``PATCH`` and scored
  in ``PATCH x PATCH`` patches (each with its own border removal), whose counts are added.

Where the challenge's script divides zero by zero (no prediction, or no true cell), we return 1 when
both are empty and 0 otherwise.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import fastremap
import numpy as np
import numpy.typing as npt
from numba import njit
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from flowseg.errors import InputError

log = logging.getLogger(__name__)

BORDER = 2
PATCH = 2000
PATCH_PIXELS = 25_000_000
IOU_THRESHOLD = 0.5


@dataclass(frozen=True)
class Scores:
    """Counts and rates of one comparison.

    Attributes
    ----------
    tp, fp, fn : int
        Matched, unmatched predicted, and unmatched true cells.
    iou_sum : float
        Sum of the IoU of the matched pairs (to average across patches or images).
    """

    tp: int
    fp: int
    fn: int
    iou_sum: float = 0.0

    def __add__(self, other: Scores) -> Scores:
        return Scores(self.tp + other.tp, self.fp + other.fp, self.fn + other.fn,
                      self.iou_sum + other.iou_sum)

    @property
    def precision(self) -> float:
        """TP / (TP + FP); 1 when nothing was predicted and nothing was there."""
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else float(self.fn == 0)

    @property
    def recall(self) -> float:
        """TP / (TP + FN); 1 when there was nothing to find and nothing was predicted."""
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else float(self.fp == 0)

    @property
    def f1(self) -> float:
        """2 TP / (2 TP + FP + FN), the harmonic mean of precision and recall."""
        total = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / total if total else 1.0

    @property
    def mean_iou(self) -> float:
        """Mean IoU of the matched pairs (NaN when none matched)."""
        return self.iou_sum / self.tp if self.tp else math.nan


def label_overlap(x: npt.ArrayLike, y: npt.ArrayLike) -> npt.NDArray[np.uint32]:
    """Count the pixels shared by every pair of ids.

    Parameters
    ----------
    x, y : (H, W) array_like of non-negative integers
        Two label images of one shape. Ids index the result, so renumber huge ids first.

    Returns
    -------
    overlap : (x.max() + 1, y.max() + 1) ndarray of uint32
        ``overlap[i, j]`` pixels have id ``i`` in ``x`` and ``j`` in ``y``.

    Raises
    ------
    ValueError
        If the shapes differ.

    Examples
    --------
    >>> label_overlap(np.array([[0, 1, 1]]), np.array([[1, 1, 0]])).tolist()
    [[0, 1], [1, 1]]
    """
    x, y = np.asarray(x), np.asarray(y)
    if x.shape != y.shape:
        raise InputError(f"label images differ in shape: {x.shape} and {y.shape}")
    x = np.ascontiguousarray(x.reshape(-1), dtype=np.int64)
    y = np.ascontiguousarray(y.reshape(-1), dtype=np.int64)
    x_max = int(x.max()) if x.size else 0
    y_max = int(y.max()) if y.size else 0
    overlap = np.zeros((x_max + 1, y_max + 1), np.uint32)
    _label_overlap(x, y, overlap)
    return overlap


@njit(cache=True, nogil=True)
def _label_overlap(x, y, overlap):  # type: ignore[no-untyped-def]
    for i in range(x.size):
        overlap[x[i], y[i]] += 1


def match_labels(
    true: npt.ArrayLike, pred: npt.ArrayLike, *, threshold: float = IOU_THRESHOLD
) -> Scores:
    """Match cells one to one and count those matched at IoU >= ``threshold``.

    The assignment maximises the number of pairs at or above the threshold, then their summed IoU,
    as the challenge's Hungarian cost does. Pairs are found from the overlapping pixels only, and
    the assignment is solved per connected group of candidate pairs, so that ten thousand cells
    cost no dense ten-thousand-square matrix.

    Parameters
    ----------
    true, pred : (H, W) array_like of non-negative integers
        Ground truth and prediction; ids need not be consecutive.
    threshold : float
        IoU a pair needs to count as a match, in (0, 1].

    Returns
    -------
    scores : Scores

    Raises
    ------
    ValueError
        If the shapes differ or ``threshold`` is outside (0, 1].

    Examples
    --------
    >>> t = np.array([[1, 1, 0, 2, 2]])
    >>> p = np.array([[5, 5, 5, 0, 0]])
    >>> s = match_labels(t, p)
    >>> s.tp, s.fp, s.fn, round(s.f1, 3)
    (1, 0, 1, 0.667)
    """
    if not 0 < threshold <= 1:
        raise InputError(f"IoU threshold must be in (0, 1], got {threshold}")
    pairs = _Overlaps.count(true, pred)
    n_true, n_pred = len(pairs.area_true) - 1, len(pairs.area_pred) - 1
    if n_true == 0 or n_pred == 0:
        return Scores(0, n_pred, n_true)
    _, _, matched = pairs.matched(threshold)
    return Scores(len(matched), n_pred - len(matched), n_true - len(matched), float(matched.sum()))


def merges_and_splits(true: npt.ArrayLike, pred: npt.ArrayLike) -> tuple[int, int]:
    """Count merges and splits of cells.

    A merge is a predicted mask that holds most of the pixels of two or more true cells; a split
    is a true cell that holds most of the pixels of two or more predicted masks.

    Parameters
    ----------
    true, pred : (H, W) array_like of non-negative integers

    Returns
    -------
    merges, splits : int

    Raises
    ------
    ValueError
        If the shapes differ.

    Examples
    --------
    >>> true = np.array([[1, 1, 2, 2, 3, 3, 3, 3]])
    >>> pred = np.array([[7, 7, 7, 7, 4, 4, 5, 5]])
    >>> merges_and_splits(true, pred)
    (1, 1)
    """
    pairs = _Overlaps.count(true, pred)
    ti, pj, inter = pairs.ti, pairs.pj, pairs.inter
    true_inside = inter > 0.5 * pairs.area_true[ti + 1]  # most of true cell ti lies in pj
    pred_inside = inter > 0.5 * pairs.area_pred[pj + 1]  # most of prediction pj lies in ti
    merges = int((np.bincount(pj[true_inside], minlength=1) >= 2).sum())
    splits = int((np.bincount(ti[pred_inside], minlength=1) >= 2).sum())
    return merges, splits


@dataclass(frozen=True)
class Errors:
    """Where a prediction's errors are: its missed cells and false objects, by kind.

    Attributes
    ----------
    merged : int
        Missed cells most of whose pixels lie in a predicted mask that also holds most of another
        true cell (a merge, as :func:`merges_and_splits` counts them).
    misdrawn : int
        Other missed cells, at least half covered by predicted masks: found, but outlined too
        small, too large or in pieces to reach the IoU threshold.
    undetected : int
        Missed cells less than half covered by any predicted mask.
    pieces : int
        False objects at least half on true cells (a cell's piece, or a misdrawn outline).
    spurious : int
        False objects mostly on background (debris, halos, what the annotators left out).
    """

    merged: int = 0
    misdrawn: int = 0
    undetected: int = 0
    pieces: int = 0
    spurious: int = 0

    def __add__(self, other: Errors) -> Errors:
        return Errors(self.merged + other.merged, self.misdrawn + other.misdrawn,
                      self.undetected + other.undetected, self.pieces + other.pieces,
                      self.spurious + other.spurious)


def error_kinds(
    true: npt.ArrayLike, pred: npt.ArrayLike, *, threshold: float = IOU_THRESHOLD
) -> Errors:
    """Sort the unmatched cells of a one-to-one matching by kind.

    The matching is :func:`match_labels`'s, so that ``merged + misdrawn + undetected`` is its FN
    and ``pieces + spurious`` its FP.

    Parameters
    ----------
    true, pred : (H, W) array_like of non-negative integers
    threshold : float
        IoU a pair needs to count as a match.

    Returns
    -------
    errors : Errors

    Examples
    --------
    Mask 7 holds cells 1 and 2 (one of them matches it at IoU 0.5, the other is merged), mask 4
    is a piece of cell 3, which is undetected, and mask 5 lies on background:

    >>> true = np.array([[1, 1, 2, 2, 0, 3, 3, 3, 3, 0, 0]])
    >>> pred = np.array([[7, 7, 7, 7, 0, 0, 0, 0, 4, 0, 5]])
    >>> error_kinds(true, pred)
    Errors(merged=1, misdrawn=0, undetected=1, pieces=1, spurious=1)
    """
    if not 0 < threshold <= 1:
        raise InputError(f"IoU threshold must be in (0, 1], got {threshold}")
    pairs = _Overlaps.count(true, pred)
    n_true, n_pred = len(pairs.area_true) - 1, len(pairs.area_pred) - 1
    ti, pj, inter = pairs.ti, pairs.pj, pairs.inter
    hit_true, hit_pred, _ = pairs.matched(threshold)
    missed = np.ones(n_true, bool)
    missed[hit_true] = False
    false = np.ones(n_pred, bool)
    false[hit_pred] = False
    true_inside = inter > 0.5 * pairs.area_true[ti + 1]  # most of true cell ti lies in pj
    merging = np.bincount(pj[true_inside], minlength=n_pred) >= 2
    merged = np.zeros(n_true, bool)
    merged[ti[true_inside & merging[pj]]] = True
    covered = np.bincount(ti, weights=inter, minlength=n_true) >= 0.5 * pairs.area_true[1:]
    on_cells = np.bincount(pj, weights=inter, minlength=n_pred) >= 0.5 * pairs.area_pred[1:]
    return Errors(merged=int((missed & merged).sum()),
                  misdrawn=int((missed & ~merged & covered).sum()),
                  undetected=int((missed & ~merged & ~covered).sum()),
                  pieces=int((false & on_cells).sum()), spurious=int((false & ~on_cells).sum()))


@dataclass(frozen=True)
class _Overlaps:
    """Areas of the cells of two label images, and the pixels shared by each overlapping pair."""

    area_true: npt.NDArray[np.int64]  # by consecutive id, 0 = background
    area_pred: npt.NDArray[np.int64]
    ti: npt.NDArray[np.int64]  # pair k: true cell ti[k] + 1 and predicted cell pj[k] + 1 ...
    pj: npt.NDArray[np.int64]
    inter: npt.NDArray[np.float64]  # ... share inter[k] pixels

    def matched(self, threshold: float) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp],
                                                 npt.NDArray[np.float64]]:
        """Match one to one at IoU >= ``threshold``: true index, predicted index, IoU per pair."""
        ti, pj, inter = self.ti, self.pj, self.inter
        iou = inter / (self.area_true[ti + 1] + self.area_pred[pj + 1] - inter)
        keep = iou >= threshold
        return _assign(ti[keep], pj[keep], iou[keep], len(self.area_true) - 1,
                       len(self.area_pred) - 1)

    @classmethod
    def count(cls, true: npt.ArrayLike, pred: npt.ArrayLike) -> _Overlaps:
        true_ids, _ = fastremap.renumber(np.asarray(true), in_place=False)
        pred_ids, _ = fastremap.renumber(np.asarray(pred), in_place=False)
        if true_ids.shape != pred_ids.shape:
            raise InputError(f"label images differ in shape: {true_ids.shape} and {pred_ids.shape}")
        t = true_ids.reshape(-1).astype(np.int64)
        p = pred_ids.reshape(-1).astype(np.int64)
        n_true, n_pred = int(t.max(initial=0)), int(p.max(initial=0))
        # Overlapping pairs only, from the pixels in both: memory grows with the pixels, never
        # with the product of the cell counts (a dense matrix of 100,000 cells would be 40 GB).
        both = (t > 0) & (p > 0)
        keys, counts = np.unique(t[both] * (n_pred + 1) + p[both], return_counts=True)
        return cls(np.bincount(t, minlength=n_true + 1), np.bincount(p, minlength=n_pred + 1),
                   keys // (n_pred + 1) - 1, keys % (n_pred + 1) - 1, counts.astype(np.float64))


def _assign(
    ti: npt.NDArray[np.intp], pj: npt.NDArray[np.intp], iou: npt.NDArray[np.float64],
    n_true: int, n_pred: int,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float64]]:
    """Return the pairs of a maximum, then IoU-heaviest, one-to-one matching.

    As three arrays: true index, predicted index and IoU of each chosen pair.
    """
    if ti.size == 0:
        return ti, pj, np.zeros(0)
    graph = coo_matrix((np.ones(ti.size), (ti, pj + n_true)), shape=(n_true + n_pred,) * 2)
    _, group = connected_components(graph, directed=False)
    groups = group[ti]
    sizes = np.bincount(groups, minlength=group.max() + 1)
    alone = sizes[groups] == 1  # a pair alone in its group is matched as it stands
    chosen = [(ti[alone], pj[alone], iou[alone])]
    from scipy.optimize import linear_sum_assignment  # here: slow to import

    for g in np.unique(groups[sizes[groups] > 1]):
        sel = groups == g
        rows, r = np.unique(ti[sel], return_inverse=True)
        cols, c = np.unique(pj[sel], return_inverse=True)
        # Each pair counts 1, plus IoU / (2 n) to prefer the better IoU among equal counts.
        cost = np.zeros((rows.size, cols.size))
        cost[r, c] = -1.0 - iou[sel] / (2 * min(rows.size, cols.size))
        a, b = linear_sum_assignment(cost)
        hit = cost[a, b] < 0
        pair_iou = np.zeros_like(cost)
        pair_iou[r, c] = iou[sel]
        chosen.append((rows[a[hit]], cols[b[hit]], pair_iou[a[hit], b[hit]]))
    rows, cols, ious = (np.concatenate(part) for part in zip(*chosen, strict=True))
    return rows, cols, ious


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


def challenge_errors(
    true: npt.ArrayLike, pred: npt.ArrayLike, *, threshold: float = IOU_THRESHOLD
) -> Errors:
    """:func:`error_kinds` of the cells :func:`challenge_scores` scores (the same FN and FP).

    Parameters
    ----------
    true, pred : (H, W) array_like of non-negative integers
    threshold : float

    Returns
    -------
    errors : Errors
        Summed over patches for images of ``PATCH_PIXELS`` pixels or more.

    Raises
    ------
    ValueError
        If the shapes differ.
    """
    total = Errors()
    for t, p in _scored_parts(true, pred):
        total += error_kinds(t, p, threshold=threshold)
    return total


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
