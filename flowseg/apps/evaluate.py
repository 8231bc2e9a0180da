"""Scoring a folder of predictions against a folder of ground truth, as ``flowseg evaluate`` does.

Images are scored with the challenge's metric (:func:`flowseg.metrics.challenge_scores`); label
stacks ``(Z, H, W)``, as ``predict --3d`` writes them, by matching 3-D cells at the same IoU with
the cells touching the y and x faces removed. Per-image rows, a table and a CSV file; the misses
and false objects are also sorted by kind (:func:`flowseg.metrics.scores_and_errors`).
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError
from flowseg.io import read_labels, write_atomic
from flowseg.io.files import LABEL_SUFFIX
from flowseg.metrics import (
    IOU_THRESHOLD,
    Errors,
    challenge_scores_and_errors,
    remove_border_cells,
    scores_and_errors,
)


@dataclass
class Evaluation:
    """Result of :func:`evaluate_folder`.

    Attributes
    ----------
    rows : list of dict
        One per ground-truth image: name, f1, precision, recall, tp, fp, fn, mean_iou, status
        (``ok``, ``missing`` or an error message for an unreadable prediction), and the fn and fp
        by kind (the fields of :class:`flowseg.metrics.Errors`: merged, misdrawn, undetected,
        pieces, spurious).
    missing : list of str
        Names with no prediction (scored as empty).
    failed : list of str
        ``name: reason`` for images that could not be scored at all (unreadable ground truth).
    """

    rows: list[dict[str, object]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Return the mean and median F1 over the scored images (NaN when none was scored)."""
        f1 = np.array([float(r["f1"]) for r in self.rows])  # type: ignore[arg-type]
        if f1.size == 0:
            return {"mean_f1": math.nan, "median_f1": math.nan}
        return {"mean_f1": float(f1.mean()), "median_f1": float(np.median(f1))}

    def to_table(self) -> str:
        """Return the per-image table, the mean and median F1, and what was missing or failed."""
        wide = max([32, *(len(str(r["name"])) for r in self.rows)])
        lines = [f"{'image':<{wide}} {'F1':>6} {'prec':>6} {'recall':>6} {'TP':>6} {'FP':>6} "
                 f"{'FN':>6} {'mIoU':>6}  status"]
        for r in self.rows:
            lines.append(f"{r['name']!s:<{wide}} {r['f1']:6.3f} {r['precision']:6.3f} "
                         f"{r['recall']:6.3f} {r['tp']:6d} {r['fp']:6d} {r['fn']:6d} "
                         f"{r['mean_iou']:6.3f}  {r['status']}")
        s = self.summary()
        lines.append(f"{len(self.rows)} images: mean F1 {s['mean_f1']:.4f}, "
                     f"median F1 {s['median_f1']:.4f}")
        kinds = {k: sum(int(r[k]) for r in self.rows) for k in Errors.__dataclass_fields__}
        lines.append(f"missed: {kinds['merged']} in a merge, {kinds['misdrawn']} found but "
                     f"misdrawn, {kinds['undetected']} undetected; false: {kinds['pieces']} "
                     f"pieces of cells, {kinds['spurious']} on background")
        if self.missing:
            lines.append(f"missing predictions (scored as empty): {', '.join(self.missing)}")
        lines += [f"failed: {reason}" for reason in self.failed]
        return "\n".join(lines)

    def write_csv(self, path: str | os.PathLike[str]) -> None:
        """Write the per-image rows as CSV, atomically (:func:`flowseg.io.write_atomic`)."""
        def dump(tmp: Path) -> None:
            with open(tmp, "w", newline="") as stream:
                writer = csv.DictWriter(stream, fieldnames=list(_CSV_FIELDS))
                writer.writeheader()
                writer.writerows(self.rows)

        write_atomic(path, dump)


_CSV_FIELDS = ("name", "f1", "precision", "recall", "tp", "fp", "fn", "mean_iou", "status",
               *Errors.__dataclass_fields__)


def _read_image_or_stack(path: Path) -> npt.NDArray[np.uint32]:
    """Read a label image, or a ``(Z, H, W)`` label stack where the file holds one."""
    try:
        return read_labels(path)
    except InputError:
        stack = read_labels(path, ndim=3)  # raises its own one-line error if not a stack either
        if stack.shape[0] < 2:
            raise
        return stack


def evaluate_folder(
    pred_dir: str | os.PathLike[str],
    gt_dir: str | os.PathLike[str],
    *,
    threshold: float = IOU_THRESHOLD,
) -> Evaluation:
    """Score every ``<name>_label.tiff`` of ``gt_dir`` against the same name in ``pred_dir``.

    Images as the challenge does (:func:`challenge_scores`); label stacks ``(Z, H, W)`` (from
    ``predict --3d``) by matching 3-D cells at the same IoU, those touching the y and x faces
    removed (:func:`remove_border_cells`).

    A missing prediction counts as an empty one and is listed; an unreadable or misshapen
    prediction counts as empty too, its row says why and it is listed in ``failed`` (so that the
    command exits non-zero); an unreadable ground truth is listed in ``failed`` and not scored.

    Parameters
    ----------
    pred_dir, gt_dir : str or PathLike
        Folders of ``<name>_label.tiff`` files.
    threshold : float
        IoU of a match.

    Returns
    -------
    evaluation : Evaluation

    Raises
    ------
    FileNotFoundError
        If a folder does not exist.
    ValueError
        If ``gt_dir`` or ``pred_dir`` holds no label file.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    for folder in (pred_dir, gt_dir):
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder}: no such folder")
    truths = sorted(gt_dir.glob(f"*{LABEL_SUFFIX}"))
    if not truths:
        raise InputError(f"{gt_dir}: no *{LABEL_SUFFIX} files")
    if not any(pred_dir.glob(f"*{LABEL_SUFFIX}")):
        # Every image would score 0 as "missing": a wrong folder, not a result.
        raise InputError(f"{pred_dir}: no *{LABEL_SUFFIX} files to score (--pred is the folder "
                         "that predict wrote)")
    result = Evaluation()
    for truth_path in truths:
        name = truth_path.name[: -len(LABEL_SUFFIX)]
        try:
            truth = _read_image_or_stack(truth_path)
        except (OSError, ValueError) as err:
            result.failed.append(f"{name}: {err}")
            continue
        pred, status = np.zeros_like(truth), "ok"
        pred_path = pred_dir / truth_path.name
        if not pred_path.exists():
            result.missing.append(name)
            status = "missing"
        else:
            try:
                pred = read_labels(pred_path, ndim=truth.ndim)
                if pred.shape != truth.shape:
                    raise InputError(f"{pred_path}: shape {pred.shape}, truth has {truth.shape}")
            except (OSError, ValueError) as err:
                pred, status = np.zeros_like(truth), f"unreadable: {err}"
                result.failed.append(f"{name}: prediction unreadable ({err})")
        if truth.ndim == 3:  # a stack: border cells (y and x faces) out, matched in 3-D
            scores, errors = scores_and_errors(remove_border_cells(truth),
                                               remove_border_cells(pred), threshold=threshold)
        else:
            scores, errors = challenge_scores_and_errors(truth, pred, threshold=threshold)
        result.rows.append({"name": name, "f1": scores.f1, "precision": scores.precision,
                            "recall": scores.recall, "tp": scores.tp, "fp": scores.fp,
                            "fn": scores.fn, "mean_iou": scores.mean_iou, "status": status,
                            **vars(errors)})
    return result
