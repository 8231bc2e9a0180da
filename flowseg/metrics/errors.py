"""Where a prediction goes wrong: merges and splits, and its misses and false objects by kind."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from flowseg.metrics.matching import IOU_THRESHOLD, Scores, _Overlaps, check_threshold


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
    pred_inside = pairs.inter > 0.5 * pairs.area_pred[pairs.pj + 1]  # most of pj lies in ti
    splits = int((np.bincount(pairs.ti[pred_inside], minlength=1) >= 2).sum())
    return int(_merging(pairs)[1].sum()), splits


def _merging(pairs: _Overlaps) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Per overlapping pair, whether most of its true cell lies in its mask; per mask, a merge.

    A merge is a predicted mask that holds most of the pixels of two or more true cells: the one
    rule behind :func:`merges_and_splits` and :attr:`Errors.merged`.
    """
    true_inside = pairs.inter > 0.5 * pairs.area_true[pairs.ti + 1]
    merging = np.bincount(pairs.pj[true_inside], minlength=len(pairs.area_pred) - 1) >= 2
    return true_inside, merging


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


def scores_and_errors(
    true: npt.ArrayLike, pred: npt.ArrayLike, *, threshold: float = IOU_THRESHOLD
) -> tuple[Scores, Errors]:
    """Match cells one to one, and sort the unmatched ones by kind, from one count of overlaps.

    The matching is :func:`~flowseg.metrics.match_labels`'s (its scores are returned too), so
    that ``merged + misdrawn + undetected`` is its FN and ``pieces + spurious`` its FP.

    Parameters
    ----------
    true, pred : (H, W) or (Z, H, W) array_like of non-negative integers
    threshold : float
        IoU a pair needs to count as a match, in (0, 1].

    Returns
    -------
    scores : Scores
    errors : Errors

    Raises
    ------
    ValueError
        If the shapes differ or ``threshold`` is outside (0, 1].

    Examples
    --------
    Mask 7 holds cells 1 and 2 (one of them matches it at IoU 0.5, the other is merged), mask 4
    is a piece of cell 3, which is undetected, and mask 5 lies on background:

    >>> true = np.array([[1, 1, 2, 2, 0, 3, 3, 3, 3, 0, 0]])
    >>> pred = np.array([[7, 7, 7, 7, 0, 0, 0, 0, 4, 0, 5]])
    >>> scores, errors = scores_and_errors(true, pred)
    >>> scores.tp, scores.fp, scores.fn
    (1, 2, 2)
    >>> errors
    Errors(merged=1, misdrawn=0, undetected=1, pieces=1, spurious=1)
    """
    check_threshold(threshold)
    pairs = _Overlaps.count(true, pred)
    scores, hit_true, hit_pred = pairs.match(threshold)
    n_true, n_pred = len(pairs.area_true) - 1, len(pairs.area_pred) - 1
    ti, pj, inter = pairs.ti, pairs.pj, pairs.inter
    missed = np.ones(n_true, bool)
    missed[hit_true] = False
    false = np.ones(n_pred, bool)
    false[hit_pred] = False
    true_inside, merging = _merging(pairs)
    merged = np.zeros(n_true, bool)
    merged[ti[true_inside & merging[pj]]] = True
    covered = np.bincount(ti, weights=inter, minlength=n_true) >= 0.5 * pairs.area_true[1:]
    on_cells = np.bincount(pj, weights=inter, minlength=n_pred) >= 0.5 * pairs.area_pred[1:]
    return scores, Errors(merged=int((missed & merged).sum()),
                          misdrawn=int((missed & ~merged & covered).sum()),
                          undetected=int((missed & ~merged & ~covered).sum()),
                          pieces=int((false & on_cells).sum()),
                          spurious=int((false & ~on_cells).sum()))
