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

The pieces: :mod:`flowseg.metrics.matching` (the one-to-one matching and its counts),
:mod:`flowseg.metrics.errors` (merges, splits, and the misses and false objects by kind),
:mod:`flowseg.metrics.challenge` (border removal and patches, as the challenge scores).
"""

from flowseg.metrics.challenge import (
    BORDER,
    PATCH,
    PATCH_PIXELS,
    challenge_scores,
    challenge_scores_and_errors,
    remove_border_cells,
)
from flowseg.metrics.errors import Errors, merges_and_splits, scores_and_errors
from flowseg.metrics.matching import IOU_THRESHOLD, Scores, label_overlap, match_labels

__all__ = ["BORDER", "IOU_THRESHOLD", "PATCH", "PATCH_PIXELS", "Errors", "Scores",
           "challenge_scores", "challenge_scores_and_errors", "label_overlap", "match_labels",
           "merges_and_splits", "remove_border_cells", "scores_and_errors"]
