"""Z-stacks: 3-D cells from the 2-D network, by flows combined in 3-D or by masks linked across planes.

:func:`segment_volume` runs the 2-D network on every XY, ZY and ZX plane of the stack (resampled so
that voxels are cubes and cells have the size the model was trained at), averages the two
estimates of each flow component and the three of the cell probability, and follows the combined
``(dz, dy, dx)`` flows in 3-D (:func:`flowseg.representation.masks.masks_from_flows`, in blocks of all
planes by :func:`flowseg.inference.blocks.masks_in_blocks`), as cellpose's ``do_3D``. With
``stitch``, each plane is instead segmented in 2-D and masks that overlap by at least that IoU in
neighbouring planes share an id (:func:`stitch_planes`): a third of the network's work, for
cells that are large across the planes.

The network sees one plane at a time, tiled as in 2-D, so its memory is that of one plane; the
masks pass holds one block of at most ``BLOCK_VOXELS`` voxels (about 0.5 GB) whatever the stack's
size; what grows with the voxels at the network's scale (the network input, the combined
outputs, the labels of a resized stack) lies in scratch files mapped a slab of planes at a time
(:mod:`flowseg.inference.scratch`), so resident memory holds the stack, its labels and one block
(measured in benchmarks/RESULTS.md).
The normalisation's percentiles are computed once over the whole stack, so that a plane without
cells is not stretched into noise.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from flowseg.errors import InputError
from flowseg.inference.blocks import masks_in_blocks
from flowseg.inference.estimate import DiameterEstimate, estimate_diameter, scale_for, second_look
from flowseg.inference.normalize import (
    NET_CHANNELS,
    PreparedView,
    channel_ranges,
    resize_volume_to,
)
from flowseg.inference.pipeline import load_model
from flowseg.inference.scaling import run_at_scale, training_diameter
from flowseg.inference.scratch import ScratchArray
from flowseg.inference.tiling import TileConfig, run_tiled
from flowseg.model.execution import Execution, plan_execution
from flowseg.model.runtime import Model, release_memory
from flowseg.representation.flows import FLOW_SCALE
from flowseg.representation.masks import MaskConfig

log = logging.getLogger(__name__)

# The flow check's threshold in 3-D, where the model's 2-D one (0.4) rejected every cell of the
# shared 13-plane sub-volume: its errors sum three components of flows that the network saw in
# pieces (cellpose skips the check in 3-D). 0.8 kept the most cells whole there (F1 0.82).
VOLUME_FLOW_THRESHOLD = 0.8
# A stack whose estimated diameter lies within this share of the training diameter runs at its own
# scale: resampling a volume blurs the seams between nuclei in all three directions, and on the
# shared sub-volume (45 px nuclei) and a synthetic stack (24 px) every resampling towards 30 px
# scored worse than none (F1 0.18 against 0.82; 0.16 against 0.55).
VOLUME_NATIVE_RANGE = (0.5, 2.0)
# The 3-D network pass reads (and adds its outputs to) this many bytes of planes at a time, in
# float32: with the masks pass's block, what the process holds beyond the stack and its labels.
SLAB_BYTES = 128 << 20
# A stack resized (by anisotropy and diameter) to more voxels than this is refused before any
# work: its scratch files alone would take 26 GB of disk, its network pass hours on a laptop.
MAX_VOLUME_VOXELS = 1_000_000_000


@dataclass(frozen=True)
class VolumeConfig:
    """How a z-stack is segmented.

    Attributes
    ----------
    anisotropy : float
        Z step over xy pixel size (3 for 0.3 um pixels and 0.9 um steps): planes are
        interpolated so that voxels are cubes before the network sees them.
    stitch : float or None
        None: flows combined and followed in 3-D. A number in (0, 1]: each plane segmented in
        2-D and masks linked across planes at this IoU (:func:`stitch_planes`).

    Raises
    ------
    ValueError
        If ``anisotropy`` is not positive or ``stitch`` is outside (0, 1].
    """

    anisotropy: float = 1.0
    stitch: float | None = None

    def __post_init__(self) -> None:
        if not self.anisotropy > 0 or (self.stitch is not None and not 0 < self.stitch <= 1):
            raise InputError(f"anisotropy must be > 0 and stitch in (0, 1], got "
                             f"{self.anisotropy} and {self.stitch}")


def segment_volume(
    volume: npt.ArrayLike, model: Model | None = None, *, config: VolumeConfig = VolumeConfig(),
    diameter: float | None = None, tiles: TileConfig = TileConfig(),
    masks: MaskConfig | None = None, device: str = "auto", precision: str = "auto",
    execution: Execution | None = None, return_diameter: bool = False,
) -> Any:
    """Segment a z-stack into 3-D cells.

    Parameters
    ----------
    volume : (Z, Y, X) or (Z, C, Y, X) array_like
        Raw voxel values; channels on the second axis.
    model : FlowUNet or OnnxModel, optional
        The bundled default model when omitted.
    config : VolumeConfig
        Anisotropy, and 3-D flows or plane-by-plane stitching.
    diameter : float, optional
        Typical cell diameter in xy pixels; None or 0: estimated on the middle plane.
    tiles : TileConfig
    masks : MaskConfig, optional
        The model's thresholds, with ``VOLUME_FLOW_THRESHOLD``, when omitted; ``min_size``
        counts voxels at the network's scale.
    device : {"auto", "cpu", "cuda"}
    precision : {"auto", "float32", "bfloat16", "float16"}
    execution : Execution, optional
        Overrides ``device`` and ``precision``.
    return_diameter : bool
        Also return the diameter the stack was run for (the one given, or the estimate).

    Returns
    -------
    labels : (Z, Y, X) ndarray of uint32
        Consecutive ids, 0 = background.
    diameter : float
        Only with ``return_diameter``: in xy pixels of the stack as given.

    Raises
    ------
    ValueError
        If the volume's shape is not understood, it holds NaN or infinite values, or
        ``diameter`` is negative.

    Examples
    --------
    >>> from flowseg.training.synthetic import make_sample
    >>> image, _ = make_sample((64, 64), "nuclei", seed=0)
    >>> segment_volume(np.stack([image, image]), config=VolumeConfig(stitch=0.5)).shape
    (2, 64, 64)
    """
    raw = _as_zcyx(volume)
    stitch = config.stitch
    if diameter is not None and not diameter >= 0:
        raise InputError(f"diameter must be positive (or 0 for automatic), got {diameter}")
    plan = execution or plan_execution(device, precision)
    net = model if model is not None else load_model(execution=plan)
    mask_config = masks or MaskConfig(**net.metadata.get("thresholds", {}))
    if raw.shape[0] == 1 and stitch is None:  # one plane: the 2-D answer
        stitch = 1.0
    ranges = channel_ranges(np.moveaxis(raw, 1, 0).reshape(raw.shape[1], -1, raw.shape[3]))
    views = [PreparedView(plane, ranges=ranges) for plane in raw]
    trained = training_diameter(net)
    if diameter:
        scale = trained / diameter
    else:
        guess = estimate_diameter(net, views[len(views) // 2], tiles=tiles, masks=mask_config,
                                  execution=plan)
        scale, diameter = scale_for(guess, trained, raw.shape[2:])
        if scale != 1.0:  # the resized middle plane may see the cells otherwise (run_estimated)
            seen = run_at_scale(net, views[len(views) // 2], scale, tiles, mask_config, plan,
                                diameter)
            found = second_look(seen, scale, trained)
            if found is not None:
                scale, diameter = scale_for(DiameterEstimate(found, guess.cells), trained,
                                            raw.shape[2:])
        low, high = (f * trained for f in VOLUME_NATIVE_RANGE)
        if stitch is None and low <= diameter <= high:  # stitching resizes planes as 2-D does
            scale = 1.0
    log.debug("volume %s: diameter %.1f px, scale %.2f", raw.shape, diameter, scale)
    if stitch is not None:
        planes = [run_at_scale(net, v, scale, tiles, mask_config, plan, diameter).labels
                  for v in views]
        labels = stitch_planes(np.stack(planes), threshold=stitch)
        return (labels, float(diameter)) if return_diameter else labels
    labels = _flows_in_3d(net, raw, views, scale, diameter, config, tiles,
                          masks or replace(mask_config, flow_threshold=VOLUME_FLOW_THRESHOLD), plan)
    return (labels, float(diameter)) if return_diameter else labels


def _flows_in_3d(net: Model, raw: npt.NDArray[np.generic], views: list[PreparedView],
                 scale: float, diameter: float, config: VolumeConfig, tiles: TileConfig,
                 masks: MaskConfig, plan: Execution) -> npt.NDArray[np.uint32]:
    """Run the network on every plane of the stack resized to cubic voxels, follow 3-D flows."""
    native = (raw.shape[0], *raw.shape[2:])
    zoom = (config.anisotropy * scale, scale, scale)
    shape = tuple(max(1, round(n * f)) for n, f in zip(raw.shape[::2] + raw.shape[3:], zoom,
                                                       strict=True))
    if np.prod(shape, dtype=np.float64) > MAX_VOLUME_VOXELS:
        raise InputError(f"anisotropy {config.anisotropy:g} and diameter {diameter:.1f} px resize "
                         f"this {' x '.join(map(str, native))} stack to "
                         f"{' x '.join(map(str, shape))} voxels (at most {MAX_VOLUME_VOXELS:,}); "
                         "give a smaller anisotropy or a larger diameter, or --stitch")
    # What grows with the stack at the network's scale lies in scratch files, mapped a slab at a
    # time: the network input (float16, 6 bytes a voxel), the combined outputs (16) and, when the
    # stack was resized, the labels (4). The process holds the stack, its labels and one block.
    network_input = ScratchArray((NET_CHANNELS, *shape), np.float16)
    resize_volume_to(_Planes(views), shape, dtype=np.float16, out=network_input)
    combined = ScratchArray((4, *shape), np.float32)
    flows, cellprob = planes_to_flows(net, network_input, tiles=tiles, execution=plan,
                                      out=combined)
    del network_input
    release_memory(net)
    at_scale = ScratchArray(shape, np.uint32) if shape != native else None

    def release() -> None:
        combined.release()
        if at_scale is not None:
            at_scale.release()

    labels = masks_in_blocks(flows, cellprob, config=masks,
                             out=None if at_scale is None else at_scale.array, release=release)
    return labels if at_scale is None else _resize_planes(at_scale, native)


def _resize_planes(labels: ScratchArray, shape: tuple[int, ...]) -> npt.NDArray[np.uint32]:
    """Resize labels in a scratch file as ``normalize.resize_labels_to`` does, plane by plane."""
    out = np.empty(shape, np.uint32)
    index = [np.minimum(((np.arange(n) + 0.5) * m / n).astype(np.intp), m - 1)
             for n, m in zip(shape, labels.shape, strict=True)]
    rows = np.ix_(index[1], index[2])
    for z, source in enumerate(index[0]):
        out[z] = labels[int(source)][rows]
    labels.release()
    return out


class _Planes:
    """A stack of normalised planes read as a ``(3, Z, Y, X)`` array, one ``[:, z]`` at a time."""

    def __init__(self, views: list[PreparedView]):
        self.views = views
        self.shape = (NET_CHANNELS, len(views), *views[0].shape[1:])

    def __getitem__(self, key: tuple[slice, int]) -> npt.NDArray[np.float32]:
        return self.views[key[1]][:, :, :][key[0]]


def _as_zcyx(volume: npt.ArrayLike) -> npt.NDArray[np.generic]:
    array = np.asarray(volume)
    if array.ndim == 3:
        array = array[:, np.newaxis]
    if array.ndim != 4 or min(array.shape) < 1 or array.dtype.kind not in "uif":
        raise InputError(f"a volume must be a (Z, Y, X) or (Z, C, Y, X) numeric array, got "
                         f"shape {array.shape} and dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise InputError("the volume holds NaN or infinite values")
    return array


def planes_to_flows(
    net: Model, volume: Any, *, tiles: TileConfig = TileConfig(),
    execution: Execution | None = None, out: Any = None,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Run the 2-D network on every XY, ZY and ZX plane and combine the outputs in 3-D.

    Each flow component is seen by two of the three plane orientations (``dz`` by ZY and ZX,
    ``dy`` by XY and ZY, ``dx`` by XY and ZX): its two estimates are averaged, and the three
    cell-probability logits too. Where the estimates disagree their mean is short, so the combined
    flows are brought back to the length of a unit flow, ``FLOW_SCALE``. A plane that fits in one
    tile runs whole without mirrored context (padded to the network's stride only): on the shared
    sub-volume, whose 13-plane ZY and ZX planes are mostly context otherwise, that ran 5x fewer
    pixels and matched the true dz better (correlation 0.60 against 0.37).

    Planes are read, and their outputs added in, a slab of ``SLAB_BYTES`` at a time, so that
    ``volume`` and ``out`` may be :class:`~flowseg.inference.scratch.ScratchArray` files that
    never become resident whole.

    Parameters
    ----------
    net : FlowUNet or OnnxModel
    volume : (3, Z, Y, X) ndarray of float32 or float16, or ScratchArray
        The network's input, normalised, with cubic voxels.
    tiles : TileConfig
    execution : Execution, optional
    out : (4, Z, Y, X) float32 array or ScratchArray, optional
        Zero-filled; where the combined outputs go. A new array when omitted.

    Returns
    -------
    flows : (3, Z, Y, X) ndarray of float32
        ``dz, dy, dx`` in ``FLOW_SCALE`` units (a view of ``out``).
    cellprob : (Z, Y, X) ndarray of float32
    """
    if volume.ndim != 4 or volume.shape[0] != NET_CHANNELS:
        raise InputError(f"volume must be ({NET_CHANNELS}, Z, Y, X), got {volume.shape}")
    plan = execution or plan_execution("auto")
    if out is None:
        out = np.zeros((4, *volume.shape[1:]), np.float32)
    # Plane axis, then the volume axes that the plane's (dy, dx) outputs stand for.
    for axis, (first, second) in ((1, (1, 2)), (2, (0, 2)), (3, (0, 1))):
        plane_shape = [n for a, n in enumerate(volume.shape[1:], start=1) if a != axis]
        config = replace(tiles, context=0) if max(plane_shape) <= tiles.tile else tiles
        step = max(1, SLAB_BYTES // (4 * NET_CHANNELS * int(np.prod(plane_shape))))
        for s0 in range(0, volume.shape[axis], step):
            s1 = min(volume.shape[axis], s0 + step)
            slab = np.asarray(volume[(slice(None),) * axis + (slice(s0, s1),)], np.float32)
            _release(volume)
            added = np.zeros((3, *slab.shape[1:]), np.float32)  # first, second, cellprob
            for i in range(s1 - s0):
                plane = np.ascontiguousarray(np.take(slab, i, axis=axis))
                where = (slice(None),) * (axis - 1) + (i,)
                added[(slice(None), *where)] = run_tiled(net, plane, config=config, execution=plan)
            del slab
            part = (slice(None),) * (axis - 1) + (slice(s0, s1),)
            for channel, values in zip((first, second, 3), added, strict=True):
                out[(channel, *part)] = out[(channel, *part)] + values
            _release(out)
    for z in range(volume.shape[1]):
        plane = out[:3, z]
        plane *= np.float32(FLOW_SCALE) / np.maximum(np.sqrt((plane**2).sum(axis=0)), 1e-6)
        out[:3, z] = plane
        out[3, z] = out[3, z] / np.float32(3)
    _release(out)
    array = out.array if isinstance(out, ScratchArray) else out
    return array[:3], array[3]  # views: no copies of the whole volume


def _release(array: Any) -> None:
    if isinstance(array, ScratchArray):
        array.release()


def stitch_planes(labels: npt.ArrayLike, *, threshold: float = 0.25) -> npt.NDArray[np.uint32]:
    """Link 2-D masks across planes into 3-D cells.

    Plane by plane, each mask takes the id of the mask of the plane before with which it has the
    highest IoU, one to one (Hungarian assignment), when that IoU is at least ``threshold``;
    the others get new ids.

    Parameters
    ----------
    labels : (Z, Y, X) array_like of non-negative integers
        Independent 2-D masks per plane.
    threshold : float
        Least IoU for two masks in neighbouring planes to be one cell.

    Returns
    -------
    labels : (Z, Y, X) ndarray of uint32
        Ids consecutive from 1.

    Raises
    ------
    ValueError
        If ``labels`` is not 3-D.

    Examples
    --------
    >>> planes = np.zeros((3, 4, 4), np.uint32)
    >>> planes[0, :2, :2], planes[1, :2, :2], planes[1, 3, 3], planes[2, :2, :3] = 1, 5, 2, 9
    >>> stitch_planes(planes)[:, 0, 0].tolist(), int(stitch_planes(planes)[1, 3, 3])
    ([1, 1, 1], 2)
    """
    planes = np.asarray(labels)
    if planes.ndim != 3:
        raise InputError(f"labels must be (Z, Y, X), got shape {planes.shape}")
    out = np.zeros(planes.shape, np.uint32)
    next_id = 1
    for z, plane in enumerate(planes):
        ids, local = np.unique(plane, return_inverse=True)
        local = local.reshape(plane.shape)
        new = np.zeros(ids.size, np.uint32)  # local id -> stitched id (local 0 is background)
        if z and out[z - 1].any():
            new = _link(out[z - 1], local, threshold, new)
        fresh = np.flatnonzero((new == 0) & (ids > 0))
        new[fresh] = np.arange(next_id, next_id + fresh.size)
        next_id += fresh.size
        out[z] = new[local]
    return out


def _link(previous: npt.NDArray[np.uint32], local: npt.NDArray[np.intp], threshold: float,
          new: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint32]:
    """Give the masks of ``local`` the ids of ``previous`` they match one to one at ``threshold``."""
    # here: metrics and scipy.optimize bring scipy.sparse and scipy.optimize (0.2 s at start-up)
    from scipy.optimize import linear_sum_assignment

    from flowseg.metrics import label_overlap

    overlap = label_overlap(previous, local).astype(np.float64)
    union = overlap.sum(axis=1, keepdims=True) + overlap.sum(axis=0, keepdims=True) - overlap
    iou = np.where(union > 0, overlap / np.maximum(union, 1), 0.0)[1:, 1:]
    rows, cols = linear_sum_assignment(-iou)
    keep = iou[rows, cols] >= threshold
    new[cols[keep] + 1] = rows[keep] + 1
    return new
