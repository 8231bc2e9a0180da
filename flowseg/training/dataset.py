"""Training data: image/label pairs and cached targets.

Each pair is prepared once (image normalised to three channels, flows computed) and cached on
disk as float16 arrays named by a hash of the two files' contents, so that a second run starts at
once; samples are then read from memory-mapped caches and augmented
(:mod:`flowseg.training.augment`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
from tqdm import tqdm

from flowseg.errors import InputError
from flowseg.inference.normalize import prepare_image
from flowseg.io import read_image, read_labels, write_atomic
from flowseg.io.files import find_pairs
from flowseg.representation.flows import labels_to_targets
from flowseg.training.augment import augment, degrade_resolution, jitter_intensity

log = logging.getLogger(__name__)

CACHE_VERSION = "1"  # bump when the cached arrays change meaning

# labels (H, W) -> training targets (K, H, W); flowseg's own are dy, dx, foreground.
Targets = Callable[[npt.NDArray[np.uint32]], npt.NDArray[np.floating]]


@dataclass(frozen=True)
class DataConfig:
    """Sampling and augmentation settings.

    Attributes
    ----------
    crop : int
        Side of the square training crops; smaller images are padded with zeros.
    scale : tuple of float
        Range of the random zoom (after any diameter rescaling), drawn log-uniformly: (0.5, 2)
        shows cells at half to twice the size they have after rescaling.
    rotate : bool
        Rotate by a uniformly random angle.
    mirror : bool
        Mirror half of the samples.
    gain : float
        Per-channel intensity gain drawn from ``[1 - gain, 1 + gain]`` (offset from ``+-gain/2``).
    gamma : tuple of float
        Range of the per-channel gamma.
    shuffle_channels : float
        Probability of permuting the three channels.
    gray : float
        Probability of replacing all channels by their mean.
    diameter : float or None
        If set, images are first rescaled so that their median cell diameter becomes this many
        pixels (cellpose uses 30); None keeps the native scale.
    lowres : float
        Probability of showing a crop as if taken at a lower resolution and enlarged back (see
        :func:`degrade_resolution`), as predict enlarges images of small cells.
    lowres_factor : tuple of float
        Range of that resolution loss, drawn log-uniformly.
    """

    crop: int = 256
    scale: tuple[float, float] = (0.75, 1.33)
    rotate: bool = True
    mirror: bool = True
    gain: float = 0.3
    gamma: tuple[float, float] = (0.7, 1.4)
    shuffle_channels: float = 0.5
    gray: float = 0.2
    diameter: float | None = None
    lowres: float = 0.0
    lowres_factor: tuple[float, float] = (1.5, 4.0)

    def __post_init__(self) -> None:
        if self.crop < 32 or not 0 < self.scale[0] <= self.scale[1] or \
                (self.diameter is not None and not self.diameter > 0):
            raise InputError(f"invalid data settings: crop={self.crop} (>= 32), scale="
                             f"{self.scale} (0 < low <= high), diameter={self.diameter} (> 0)")


def discover_pairs(data_path: str | os.PathLike[str]) -> list[tuple[Path, Path]]:
    """Find image/label pairs in ``DIR/images`` + ``DIR/labels``, or in one folder holding both.

    Parameters
    ----------
    data_path : str or PathLike

    Returns
    -------
    pairs : list of (Path, Path)

    Raises
    ------
    FileNotFoundError
        If the folder does not exist.
    ValueError
        If no pair is found or files are unmatched (named in the message).
    """
    root = Path(data_path)
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return find_pairs(root / "images", root / "labels")
    return find_pairs(root, root)


def default_cache_dir() -> Path:
    """Return ``$FLOWSEG_CACHE`` or ``~/.cache/flowseg/targets``.

    Returns
    -------
    path : Path
    """
    env = os.environ.get("FLOWSEG_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "flowseg" / "targets"


def prepare_pair(image_path: Path, label_path: Path, cache_dir: Path,
                 targets: Targets = labels_to_targets) -> dict[str, object]:
    """Normalise an image, compute its targets, and cache both; reuse the cache when present.

    Parameters
    ----------
    image_path, label_path : Path
    cache_dir : Path
    targets : callable, optional
        Labels to target maps; :func:`flowseg.representation.flows.labels_to_targets` by default. Another
        representation (a baseline's) is cached under its own key, by the function's name.

    Returns
    -------
    entry : dict
        ``image`` and ``targets`` (paths of float16 ``.npy`` files: the ``(3, H, W)`` network
        input, and the targets, ``dy, dx, foreground`` by default), ``diameter`` (median cell
        diameter in pixels, 0 if no cell) and ``cells``.

    Raises
    ------
    ValueError
        If a file cannot be read, or the labels' shape differs from the image's.
    """
    digest = hashlib.sha256(CACHE_VERSION.encode())
    if targets is not labels_to_targets:
        digest.update(f"{targets.__module__}.{targets.__qualname__}".encode())
    for path in (image_path, label_path):
        digest.update(path.read_bytes())
    key = digest.hexdigest()[:32]
    meta_path = cache_dir / f"{key}.json"
    if meta_path.is_file():
        return dict(json.loads(meta_path.read_text()))
    image = read_image(image_path)
    labels = read_labels(label_path)
    if image.dtype.kind == "f" and not np.isfinite(image).all():
        raise InputError(f"{image_path}: image holds NaN or infinite values")
    if labels.shape != image.shape[1:]:
        raise InputError(f"{label_path}: labels of shape {labels.shape} do not fit image "
                         f"{image_path.name} of shape {image.shape[1:]}")
    diameter, cells = label_diameter(labels)
    entry = {"image": str(cache_dir / f"{key}.image.npy"),
             "targets": str(cache_dir / f"{key}.targets.npy"),
             "diameter": diameter, "cells": cells, "name": image_path.stem}
    cache_dir.mkdir(parents=True, exist_ok=True)
    _save_npy(prepare_image(image).astype(np.float16), Path(str(entry["image"])))
    _save_npy(targets(labels).astype(np.float16), Path(str(entry["targets"])))
    write_atomic(meta_path, json.dumps(entry).encode())
    return entry


def label_diameter(labels: npt.NDArray[np.integer]) -> tuple[float, int]:
    """Median equivalent-circle diameter of the labelled cells (0 if none), and their count.

    The size every training image is rescaled from to ``DataConfig.diameter``.
    """
    sizes = np.bincount(labels.reshape(-1))[1:]
    sizes = sizes[sizes > 0]
    return (float(np.median(2 * np.sqrt(sizes / np.pi))) if sizes.size else 0.0), int(sizes.size)


def _save_npy(array: np.ndarray, path: Path) -> None:
    def dump(tmp: Path) -> None:  # through a stream: np.save would add ".npy" to a file name
        with open(tmp, "wb") as stream:
            np.save(stream, array)

    write_atomic(path, dump)


class FlowDataset(torch.utils.data.Dataset):
    """Augmented crops of image/label pairs.

    Indexed by ``(pair_index, sample_seed)`` tuples: the same tuple always gives the same sample,
    whichever worker process draws it, which makes training runs repeatable and resumable.

    Parameters
    ----------
    pairs : list of (Path, Path)
        Image and label files.
    config : DataConfig
    cache_dir : Path, optional
        Where targets are cached; :func:`default_cache_dir` when omitted.
    targets : callable, optional
        Labels to target maps, as :func:`prepare_pair` takes; flowseg's flows by default.
    flows : bool
        The first two target channels are unit flows of the cells in the third (turned with the
        image); False resamples every target channel as it is (class maps, for instance).
    span : (float, float), optional
        Sample only this part of every image's longer side (:func:`span_window`), the rest
        being held out to validate on; None samples whole images.
    """

    def __init__(self, pairs: list[tuple[Path, Path]], config: DataConfig = DataConfig(),
                 cache_dir: Path | None = None, *, targets: Targets = labels_to_targets,
                 flows: bool = True, span: tuple[float, float] | None = None):
        if not pairs:
            raise InputError("no image/label pairs to train on")
        self.config, self.flows, self.span = config, flows, span
        cache = cache_dir or default_cache_dir()
        self.entries = [prepare_pair(i, lab, cache, targets)
                        for i, lab in tqdm(pairs, desc="preparing targets", leave=False,
                                                 disable=None)]
        if not any(int(e["cells"]) for e in self.entries):  # type: ignore[call-overload]
            raise InputError(f"no cells in any of the {len(pairs)} label images (all zero): "
                             "nothing to learn from")

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, item: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        index, seed = item
        entry = self.entries[index]
        image = np.load(str(entry["image"]), mmap_mode="r")
        targets = np.load(str(entry["targets"]), mmap_mode="r")
        window = (slice(None), *span_window(image.shape[1:], self.span))
        image, targets = image[window], targets[window]
        rng = np.random.default_rng(seed)
        zoom = float(np.exp(rng.uniform(*np.log(self.config.scale))))
        diameter = float(entry["diameter"])  # type: ignore[arg-type]
        if self.config.diameter and diameter > 0:
            zoom *= self.config.diameter / diameter
        x, y = augment(image, targets, crop=self.config.crop, zoom=zoom, rng=rng,
                       rotate=self.config.rotate, mirror=self.config.mirror, flows=self.flows)
        if self.config.lowres and rng.random() < self.config.lowres:
            x = degrade_resolution(x, float(np.exp(rng.uniform(*np.log(self.config.lowres_factor)))))
        x = jitter_intensity(x, self.config, rng)
        return torch.from_numpy(x), torch.from_numpy(y)


def span_window(shape: tuple[int, ...], span: tuple[float, float] | None) -> tuple[slice, slice]:
    """Return the part of an image ``(H, W)`` that a span of its longer side covers.

    Parameters
    ----------
    shape : (int, int)
    span : (float, float) or None
        Start and stop as fractions of the longer side; None covers the whole image.

    Returns
    -------
    window : (slice, slice)

    Examples
    --------
    >>> span_window((100, 40), (0.8, 1.0))
    (slice(80, 100, None), slice(None, None, None))
    >>> span_window((40, 100), (0.0, 0.8))
    (slice(None, None, None), slice(0, 80, None))
    """
    if span is None:
        return slice(None), slice(None)
    axis = 0 if shape[0] >= shape[1] else 1
    cut = slice(round(span[0] * shape[axis]), round(span[1] * shape[axis]))
    return (cut, slice(None)) if axis == 0 else (slice(None), cut)


def epoch_order(count: int, *, batch_size: int, epoch: int, seed: int) -> list[tuple[int, int]]:
    """Return the samples of one epoch: ``(pair_index, sample_seed)`` in training order.

    Every pair appears once (more when there are fewer pairs than a batch), and the list is cut to
    whole batches. The order and the seeds depend only on ``seed`` and ``epoch``.

    Parameters
    ----------
    count : int
        Number of pairs.
    batch_size : int
    epoch : int
    seed : int

    Returns
    -------
    order : list of (int, int)

    Examples
    --------
    >>> len(epoch_order(10, batch_size=4, epoch=0, seed=0))
    8
    """
    rng = np.random.default_rng([seed, epoch])
    repeats = -(-batch_size // count)
    indices = np.concatenate([rng.permutation(count) for _ in range(repeats)])
    usable = len(indices) // batch_size * batch_size
    seeds = rng.integers(0, 1 << 62, usable)
    return [(int(i), int(s)) for i, s in zip(indices[:usable], seeds, strict=True)]
