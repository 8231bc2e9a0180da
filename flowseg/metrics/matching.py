"""One-to-one matching of two label images, and the counts it gives.

:func:`match_labels` pairs cells by their shared pixels only and solves the assignment per
connected group of candidate pairs (:class:`_Overlaps`, :func:`_assign`), so that ten thousand
cells cost no dense ten-thousand-square matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import fastremap
import numpy as np
import numpy.typing as npt
from numba import njit
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from flowseg.errors import InputError

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
    check_threshold(threshold)
    scores, _, _ = _Overlaps.count(true, pred).match(threshold)
    return scores


def check_threshold(threshold: float) -> None:
    """Refuse an IoU threshold outside (0, 1] in one line."""
    if not 0 < threshold <= 1:
        raise InputError(f"IoU threshold must be in (0, 1], got {threshold}")


@dataclass(frozen=True)
class _Overlaps:
    """Areas of the cells of two label images, and the pixels shared by each overlapping pair."""

    area_true: npt.NDArray[np.int64]  # by consecutive id, 0 = background
    area_pred: npt.NDArray[np.int64]
    ti: npt.NDArray[np.int64]  # pair k: true cell ti[k] + 1 and predicted cell pj[k] + 1 ...
    pj: npt.NDArray[np.int64]
    inter: npt.NDArray[np.float64]  # ... share inter[k] pixels

    def match(self, threshold: float) -> tuple[Scores, npt.NDArray[np.intp],
                                               npt.NDArray[np.intp]]:
        """Match one to one at IoU >= ``threshold``.

        Returns the counts, and the matched true and predicted indices (ids - 1).
        """
        ti, pj, inter = self.ti, self.pj, self.inter
        n_true, n_pred = len(self.area_true) - 1, len(self.area_pred) - 1
        iou = inter / (self.area_true[ti + 1] + self.area_pred[pj + 1] - inter)
        keep = iou >= threshold
        rows, cols, matched = _assign(ti[keep], pj[keep], iou[keep], n_true, n_pred)
        tp = len(matched)
        return Scores(tp, n_pred - tp, n_true - tp, float(matched.sum())), rows, cols

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
