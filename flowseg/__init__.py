"""flowseg: cell segmentation across microscopy modalities with flow fields.

The public names are loaded on first use, so that ``python -m flowseg --help`` does not pay for
numba's or torch's import.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

__version__ = "0.1.0"

# numba's OpenMP threading layer sets OpenMP's thread count to its own (every core unless
# NUMBA_NUM_THREADS says otherwise) at its first parallel kernel, and torch shares that setting:
# a process started with OMP_NUM_THREADS=1 ran torch on every core once the first flows were
# computed (and a training killed and resumed no longer ended with the same weights). numba
# follows OMP_NUM_THREADS where only that is set.
_omp = os.environ.get("OMP_NUM_THREADS", "")
if _omp.isdigit() and int(_omp) > 0:
    os.environ.setdefault("NUMBA_NUM_THREADS", _omp)

_HOMES = {
    "FLOW_SCALE": "flowseg.representation.flows",
    "labels_to_flows": "flowseg.representation.flows",
    "labels_to_targets": "flowseg.representation.flows",
    "find_pairs": "flowseg.io.files",
    "read_image": "flowseg.io",
    "read_labels": "flowseg.io",
    "write_labels": "flowseg.io",
    "MaskConfig": "flowseg.representation.masks",
    "masks_from_flows": "flowseg.representation.masks",
    "challenge_scores": "flowseg.metrics",
    "challenge_scores_and_errors": "flowseg.metrics",
    "evaluate_folder": "flowseg.apps.evaluate",
    "match_labels": "flowseg.metrics",
    "normalize_image": "flowseg.inference.normalize",
    "to_three_channels": "flowseg.inference.normalize",
    "NetConfig": "flowseg.model.net",
    "FlowUNet": "flowseg.model.net",
    "load_net": "flowseg.model.net",
    "save_net": "flowseg.model.net",
    "DataConfig": "flowseg.training.dataset",
    "TrainConfig": "flowseg.training.train",
    "train": "flowseg.training.train",
    "TileConfig": "flowseg.inference.tiling",
    "run_tiled": "flowseg.inference.tiling",
    "load_model": "flowseg.inference.pipeline",
    "predict_folder": "flowseg.apps.predict",
    "segment": "flowseg.inference.pipeline",
    "segment_with_outputs": "flowseg.inference.pipeline",
    "read_pixels": "flowseg.io",
    "InputError": "flowseg.errors",
}

__all__ = ["__version__", *sorted(_HOMES)]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'flowseg' has no attribute {name!r}")
