"""Training data: image/label pairs, cached targets, and augmentation that keeps flows correct.

Each pair is prepared once (image normalised to three channels, flows computed) and cached on
disk as float16 arrays named by a hash of the two files' contents, so that a second run starts at
once; samples are then read from memory-mapped caches.

A sample is a random crop seen through one affine map: scale, rotation by any angle and an optional
mirror. Images are resampled bilinearly; labels-derived targets by nearest neighbour, so that no
flow is ever averaged across two cells, and each flow vector is turned by the same map (a mirror
negates one component) and renormalised. Some crops are then blurred as a picture taken at a
lower resolution and enlarged looks (what predict does to small cells); intensities get a gain, an
offset and a gamma per channel, and channels are shuffled or merged to gray, so that one network
sees every modality.
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
from scipy import ndimage
from tqdm import tqdm

from flowseg.errors import InputError
from flowseg.files import find_pairs
from flowseg.flows import labels_to_targets
from flowseg.io import read_image, read_labels, write_atomic
from flowseg.normalize import prepare_image

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
        Labels to target maps; :func:`flowseg.flows.labels_to_targets` by default. Another
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
    sizes = np.bincount(labels.reshape(-1))[1:]
    sizes = sizes[sizes > 0]
    entry = {"image": str(cache_dir / f"{key}.image.npy"),
             "targets": str(cache_dir / f"{key}.targets.npy"),
             "diameter": float(np.median(2 * np.sqrt(sizes / np.pi))) if sizes.size else 0.0,
             "cells": int(sizes.size), "name": image_path.stem}
    cache_dir.mkdir(parents=True, exist_ok=True)
    _save_npy(prepare_image(image).astype(np.float16), Path(str(entry["image"])))
    _save_npy(targets(labels).astype(np.float16), Path(str(entry["targets"])))
    write_atomic(meta_path, json.dumps(entry).encode())
    return entry


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
    """

    def __init__(self, pairs: list[tuple[Path, Path]], config: DataConfig = DataConfig(),
                 cache_dir: Path | None = None, *, targets: Targets = labels_to_targets,
                 flows: bool = True):
        if not pairs:
            raise InputError("no image/label pairs to train on")
        self.config, self.flows = config, flows
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


def augment(
    image: npt.NDArray[np.floating], targets: npt.NDArray[np.floating], *, crop: int, zoom: float,
    rng: np.random.Generator, rotate: bool = True, mirror: bool = True, flows: bool = True,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Cut one randomly placed, zoomed, rotated and mirrored crop.

    Parameters
    ----------
    image : (C, H, W) array
    targets : (K, H, W) array
        ``dy, dx, foreground`` when ``flows``; otherwise any maps, resampled as they are.
    crop : int
        Output side.
    zoom : float
        Output pixels per input pixel.
    rng : numpy.random.Generator
    rotate, mirror : bool
    flows : bool
        Turn the first two target channels as vectors.

    Returns
    -------
    image : (C, crop, crop) ndarray of float32
    targets : (K, crop, crop) ndarray of float32
        Resampled by nearest neighbour; flows are unit vectors turned by the same map, 0 outside
        cells.
    """
    angle = rng.uniform(0, 2 * np.pi) if rotate else 0.0
    flip = -1.0 if mirror and rng.random() < 0.5 else 1.0
    # forward map (input y, x) -> output: zoom * R(angle) * diag(1, flip)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = zoom * rot @ np.diag([1.0, flip])
    inverse = np.linalg.inv(forward)
    height, width = image.shape[1:]
    # Centre the crop on a random input point (so the window always overlaps the image, and small
    # images get padded around).
    centre = np.array([rng.uniform(0, height - 1), rng.uniform(0, width - 1)])
    out = np.mgrid[:crop, :crop].reshape(2, -1) - (crop - 1) / 2
    coords = inverse @ out + centre[:, None]
    lo = np.floor(coords.min(axis=1)).astype(int) - 1
    hi = np.ceil(coords.max(axis=1)).astype(int) + 2
    lo_c, hi_c = np.maximum(lo, 0), np.minimum(hi, (height, width))
    # Read only the window the crop touches (the arrays may be memory-mapped).
    window = (slice(None), slice(lo_c[0], hi_c[0]), slice(lo_c[1], hi_c[1]))
    local = coords - lo_c[:, None]
    img = np.asarray(image[window], np.float32)
    tgt = np.asarray(targets[window], np.float32)
    x = np.stack([ndimage.map_coordinates(c, local, order=1, cval=0.0) for c in img])
    y = np.stack([ndimage.map_coordinates(c, local, order=0, cval=0.0) for c in tgt])
    x = x.reshape(-1, crop, crop)
    y = y.reshape(-1, crop, crop)
    if not flows:
        return x.astype(np.float32), y.astype(np.float32)
    turned = np.tensordot(forward, y[:2], axes=1)
    norm = np.sqrt((turned**2).sum(axis=0))
    y[:2] = np.where(norm > 0, turned / np.maximum(norm, 1e-12), 0.0) * (y[2] > 0)
    return x.astype(np.float32), y.astype(np.float32)


def degrade_resolution(image: npt.NDArray[np.float32], factor: float) -> npt.NDArray[np.float32]:
    """Blur a ``(C, H, W)`` crop as a picture ``factor`` times coarser, enlarged back, looks.

    The pixels are averaged down (a Gaussian of 0.4 coarse pixels, then bilinear sampling at the
    coarse pixel centres) and enlarged again bilinearly with aligned pixel centres, as
    :func:`flowseg.normalize.resize_to` enlarges an image of small cells; the geometry, hence every
    target, is unchanged. scipy only: it runs in data-loader workers, where numba's OpenMP threads
    must not start after a fork.

    Parameters
    ----------
    image : (C, H, W) ndarray of float32
    factor : float
        Coarse pixel size in crop pixels (>= 1).

    Returns
    -------
    image : (C, H, W) ndarray of float32

    Examples
    --------
    >>> crop = np.zeros((1, 64, 64), np.float32); crop[0, 32, 32] = 1
    >>> soft = degrade_resolution(crop, 4.0)
    >>> soft.shape, bool(soft.max() < 0.2), bool(abs(soft.sum() - 1) < 0.2)
    ((1, 64, 64), True, True)
    """
    height, width = image.shape[1:]
    small = (max(1, round(height / factor)), max(1, round(width / factor)))
    blurred = ndimage.gaussian_filter(image, (0, 0.4 * factor, 0.4 * factor))
    coarse = np.stack([_resample(c, small) for c in blurred])
    return np.stack([_resample(c, (height, width)) for c in coarse]).astype(np.float32)


def _resample(plane: npt.NDArray[np.float32], shape: tuple[int, int]) -> npt.NDArray[np.float32]:
    """Bilinear resize of one plane with aligned pixel centres and clamped edges."""
    axes = [np.clip((np.arange(n) + 0.5) * (old / n) - 0.5, 0, old - 1)
            for n, old in zip(shape, plane.shape, strict=True)]
    grid = np.meshgrid(*axes, indexing="ij")
    return ndimage.map_coordinates(plane, grid, order=1, mode="nearest").astype(np.float32)


def jitter_intensity(
    image: npt.NDArray[np.float32], config: DataConfig, rng: np.random.Generator
) -> npt.NDArray[np.float32]:
    """Apply random gain, offset and gamma per channel, then channel shuffle or gray.

    Parameters
    ----------
    image : (C, H, W) ndarray of float32
        Normalised (1st and 99th percentiles near 0 and 1).
    config : DataConfig
    rng : numpy.random.Generator

    Returns
    -------
    image : (C, H, W) ndarray of float32
    """
    channels = image.shape[0]
    gain = rng.uniform(1 - config.gain, 1 + config.gain, (channels, 1, 1))
    offset = rng.uniform(-config.gain / 2, config.gain / 2, (channels, 1, 1))
    gamma = rng.uniform(*config.gamma, (channels, 1, 1))
    out = np.power(np.clip(image, 0, None), gamma) * gain + offset
    if rng.random() < config.shuffle_channels:
        out = out[rng.permutation(channels)]
    if rng.random() < config.gray:
        out = np.repeat(out.mean(axis=0, keepdims=True), channels, axis=0)
    return np.ascontiguousarray(out, dtype=np.float32)


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
