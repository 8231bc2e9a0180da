"""Train the generalist model that ships in flowseg/models/default.pt, reproducibly.

    python scripts/train_default_model.py [--work DIR] [--epochs 60] [--device auto|cpu|cuda]

Training data (written under --work on the first run, then reused):
- synthetic: ``--per-modality`` images of 320^2 for every generator in flowseg.training.synthetic but the
  one ``--hold-out`` names (``bacteria`` by default; the twelfth and thirteenth models hold out
  none, since fine-tuning is now measured on real images; the eleventh held out bacteria, those
  before it DIC), seeds 1000 m + i for the m-th generator (the three generators added for the
  thirteenth, membrane, fluobacteria and debris, come last, so the others' samples are
  unchanged), cell diameters log-uniform from half to twice the modality's typical size (>= 8 px);
- z-stack planes: ``--volumes`` synthetic nuclei stacks (flowseg.training.synthetic.make_nuclei_volume),
  three ZY and three ZX planes of each, half of them after the z-sampling that predict --3d's
  ``--anisotropy`` undoes (every 2nd or 3rd plane, interpolated back), so that the network has
  seen the planes it runs on in 3-D;
- real annotated images of ../shared/data_real (DSB 2018 stage-1 train and test, CC0; Usiigaci
  phase contrast, MIT): the training split of scripts/real_data.py (nine tenths of every source;
  the tenth chosen by a hash of the name is benchmarks/bench_real.py's validation split and is
  never read here), linked ``DATA_REAL_COPIES`` times per modality so that stained tissue,
  brightfield and phase contrast weigh in beside the 515 fluorescence images;
- real: the top half of each image in ../shared/data, and planes 22-28 of
  ../shared/data3d/cells3d_nuclei_z22-34, repeated so that real pixels weigh in; every copy but
  the first with each nucleus's contrast times its own random gain (0.15-1.5), some saturated, as
  dim and saturated nuclei sit among the others in the held-out halves. Held out for
  benchmarks/bench_accuracy.py: the bottom halves, and planes 32-34 (29-31 are left out of both,
  as neighbours of the held-out planes and of plane 30, which ../shared/data holds).

Every image is rescaled so that its median cell diameter is ``--diameter`` (30 px), then
zoomed by a log-uniform factor from 0.5 to 2 (``--zoom``): the network sees cells of 15 to 60 px,
and predict's automatic diameter brings other sizes into that range. A quarter of the crops are
blurred as if taken at 1.5-4x coarser resolution (``--lowres``), as an image of small cells looks
once enlarged.
``--hard-copies N`` adds up to N copies of each real training image (fluorescence by default) by
how many cells the ``--pretrained`` model gets wrong on it. ``--pack FILE`` writes what this
script reads from ../shared into one file that travels with the working tree to a lent GPU
machine (64 MiB in all; scripts/training_pack.py), and ``--shared FILE`` there reads the real
images from it.
The run resumes where it stopped (run it again after a kill). ``--average-with CHECKPOINT``
ships the mean of the trained weights and that checkpoint's (how the eleventh model was made from
its run and the ninth). When it ends, the network's size
head (flowseg.inference.sizehead) is fitted on images of known cell size (``head_samples``; ``--fit-head
CHECKPOINT`` does only that, for a checkpoint trained before), and the lean float16 copy is
installed into the package.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import time
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import tifffile
import torch
from scipy import ndimage
from skimage import segmentation
from skimage.transform import resize

sys.path.insert(0, str(Path(__file__).resolve().parent))
import real_data
import training_pack
from make_synthetic_data import write_image
from real_data import real_pairs

from flowseg.errors import InputError
from flowseg.inference.estimate import median_diameter
from flowseg.inference.normalize import PreparedView, resize_volume_to
from flowseg.inference.pipeline import as_channels_first, default_model_path
from flowseg.inference.sizehead import HEAD_CROP, fit_size_head, head_features
from flowseg.io import read_image, read_labels, write_labels
from flowseg.io.files import find_pairs
from flowseg.model.device import resolve_device
from flowseg.model.net import NetConfig, deepened, load_net, save_net
from flowseg.model.runtime import MODELS, export_path, write_export
from flowseg.training.dataset import DataConfig, label_diameter
from flowseg.training.synthetic import MODALITIES, TYPICAL_DIAMETER, make_nuclei_volume, make_sample
from flowseg.training.synthetic.labels import tidy_labels
from flowseg.training.train import TrainConfig, train

SHARED = real_data.SHARED  # ../shared, unless --shared names another (a training pack)
TRAIN_DIAMETER = 30.0
TRAIN_PLANES = range(0, 7)  # planes 22-28 of the 13-plane sub-volume (z = 22 + index)
# Copies of each real image: real pixels are about a fifth of the training set (the second
# generalist, warm-started from the first, which had them at a twelfth and underfit real nuclei).
REAL_COPIES = {"dsb2018_nuclei_left": 30, "cells3d_nuclei_z30": 12, "plane": 8}
# Copies of each training image of ../shared/data_real per modality, so that the rarer ones weigh
# in: 515 fluorescence, 105 stained tissue, 15 brightfield and 25 phase-contrast images give
# about 515 / 315 / 75 / 200 crops an epoch (the twelfth model).
DATA_REAL_COPIES = {"fluorescence": 1, "tissue": 3, "brightfield": 5, "phase": 8}
# One extra copy of a real training image per this many misses and false objects of the model
# it starts from (--hard-copies): 197 of the 515 fluorescence images get one or more with 5.
HARD_UNIT = 5
HEAD_REAL = 24  # real training images per (source, modality) for the size head
LOWRES = 0.25  # share of crops shown at a lower resolution, enlarged back
ZOOM = (0.5, 2.0)  # log-uniform random zoom: the network sees cells of 15 to 60 px
VOLUME_SHAPE = (96, 160, 160)
HEAD_IMAGES = 40  # synthetic images per generator for the size head
HEAD_SEED = 600_000


def write_synthetic(out: Path, per_modality: int, size: int, seed: int, held_out: str) -> int:
    (out / "images").mkdir(parents=True, exist_ok=True)
    count = 0
    for m, modality in enumerate(MODALITIES):
        if modality == held_out:
            continue
        for i in range(per_modality):
            sample_seed = seed + 1000 * m + i
            rng = np.random.default_rng(sample_seed)
            diameter = max(8.0, TYPICAL_DIAMETER[modality] * float(np.exp(rng.uniform(-0.69, 0.69))))
            image, labels = make_sample((size, size), modality, seed=sample_seed, diameter=diameter)
            name = f"synth_{modality}_{i:04d}"
            write_image(out / "images", name, image, i)
            write_labels(labels, out / "labels" / f"{name}_label.tiff")
            count += 1
    return count


def write_volume_planes(out: Path, volumes: int, seed: int) -> int:
    """ZY and ZX planes of synthetic nuclei stacks, some sampled coarsely in z and interpolated."""
    count = 0
    for i in range(volumes):
        rng = np.random.default_rng(seed + i)
        image, labels = make_nuclei_volume(VOLUME_SHAPE, float(rng.uniform(16, 34)), rng)
        step = int(rng.choice([1, 1, 2, 3]))
        if step > 1:  # as predict --3d --anisotropy STEP resamples a stack taken every STEP planes
            coarse = image[::step].astype(np.float32)[None]
            image = resize_volume_to(coarse, image.shape)[0].astype(np.uint16)
        for axis in (1, 2):
            for position in rng.integers(VOLUME_SHAPE[axis] // 6, VOLUME_SHAPE[axis] * 5 // 6, 3):
                plane = np.take(image, position, axis=axis)
                name = f"synth_stack_{i:03d}_{'yx'[axis - 1]}{position:03d}"
                tifffile.imwrite(out / "images" / f"{name}.tif", plane)
                write_labels(tidy_labels(np.take(labels, position, axis=axis), min_size=15),
                             out / "labels" / f"{name}_label.tiff")
                count += 1
    return count


def write_real(out: Path, plane_copies: int = REAL_COPIES["plane"]) -> int:
    """Top halves of ../shared/data and planes 22-28 of the z-stack, repeated."""
    count = 0
    data = real_data.SHARED / "data"
    if not (data / "images").is_dir():
        print(f"no real samples at {data}: training on synthetic data only")
        return 0
    for name, image, labels in real_parts(named=True):
        copies = (plane_copies if "_plane" in name
                  else REAL_COPIES.get(name.removesuffix("_top"), 4))
        count += _repeat(out, f"real_{name}", image, labels, copies)
    return count


def write_data_real(out: Path, copies: dict[str, int] = DATA_REAL_COPIES,
                    extra: dict[str, int] | None = None) -> int:
    """Link the training split of ../shared/data_real (scripts/real_data.py), repeated per modality.

    ``extra`` adds copies of single images, by file stem (:func:`hard_examples`). The validation
    split (a tenth of every source, by name hash) is never linked.
    """
    count = 0
    for source, modality, image_path, label_path in real_pairs("train"):
        for k in range(copies[modality] + (extra or {}).get(image_path.stem, 0)):
            name = f"dr_{source}_{image_path.stem}_{k:02d}"
            (out / "images" / f"{name}{image_path.suffix}").symlink_to(image_path.resolve())
            (out / "labels" / f"{name}_label.tiff").symlink_to(label_path.resolve())
            count += 1
    if not count:
        print("no real images at ../shared/data_real: training without them")
    return count


def hard_examples(model: Path, modalities: list[str], most: int, table: Path,
                  device: str = "auto") -> dict[str, int]:
    """Extra copies of the real training images that ``model`` gets most wrong.

    Every training image of ``modalities`` is segmented at its true median diameter and scored
    as the challenge scores (flowseg.metrics.challenge_scores_and_errors); an image gets one extra
    copy per ``HARD_UNIT`` misses and false objects, at most ``most``. The scores are kept in
    ``table`` (a CSV named after the model's content, reused when present: about 0.3 s an image
    on one core).
    """
    import csv

    from flowseg.inference.pipeline import load_model, segment
    from flowseg.metrics import challenge_scores_and_errors

    fields = ["source", "modality", "name", "cells", "tp", "fn", "fp", "merged", "misdrawn",
              "undetected", "pieces", "spurious"]
    if not table.is_file():
        net, rows = load_model(model), []
        for source, modality, image_path, label_path in real_pairs("train"):
            if modality not in modalities:
                continue
            labels = read_labels(label_path)
            diameter, cells = label_diameter(labels)  # as training rescales it
            found = segment(read_image(image_path), net, channel_axis=0, device=device,
                            diameter=diameter if diameter > 0 else None)
            scores, errors = challenge_scores_and_errors(labels, found)
            rows.append([source, modality, image_path.stem, cells, scores.tp, scores.fn, scores.fp,
                         errors.merged, errors.misdrawn, errors.undetected, errors.pieces,
                         errors.spurious])
        with open(table.with_suffix(".tmp"), "w", newline="") as stream:
            csv.writer(stream).writerows([fields, *rows])
        table.with_suffix(".tmp").replace(table)
    with open(table) as stream:
        rows = list(csv.DictReader(stream))
    return {row["name"]: min(most, (int(row["fn"]) + int(row["fp"])) // HARD_UNIT)
            for row in rows if row["modality"] in modalities}


def real_parts(named: bool = False):
    """Yield the real training parts: (image, labels), or (name, image, labels) if ``named``."""
    data, stack = real_data.SHARED / "data", real_data.SHARED / "data3d"
    if (data / "images").is_dir():
        for image_path, label_path in find_pairs(data / "images", data / "labels"):
            image, labels = tifffile.imread(image_path), read_labels(label_path)
            half = labels.shape[0] // 2
            part = (image[:half], labels[:half])
            yield (f"{image_path.stem}_top", *part) if named else part
    if (stack / "images").is_dir():
        for image_path, label_path in find_pairs(stack / "images", stack / "labels"):
            volume, labels = tifffile.imread(image_path), tifffile.imread(label_path)
            for z in TRAIN_PLANES:
                part = (volume[z], tidy_labels(labels[z], min_size=15))
                yield (f"{image_path.stem}_plane{z:02d}", *part) if named else part


def vary_contrast(image: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each nucleus's contrast over the background times its own gain; sometimes saturate.

    The gain (log-uniform 0.15-1.5) spreads 3 px beyond each label and is smoothed by 1 px, so that
    blurred rims follow their nucleus; a third of the copies are clipped at a high percentile of
    the nuclei, as an exposure that saturates the brightest ones.
    """
    pixels = image.astype(np.float64)
    background = float(np.median(pixels[labels == 0])) if (labels == 0).any() else 0.0
    gains = np.r_[1.0, np.exp(rng.uniform(np.log(0.15), np.log(1.5), int(labels.max())))]
    field = ndimage.gaussian_filter(gains[segmentation.expand_labels(labels, 3)], 1.0)
    pixels = background + (pixels - background) * field
    if rng.random() < 1 / 3 and labels.any():
        pixels = np.minimum(pixels, np.percentile(pixels[labels > 0], rng.uniform(85, 99)))
    top = np.iinfo(image.dtype).max if image.dtype.kind in "ui" else None
    return np.clip(np.rint(pixels), 0, top).astype(image.dtype)


def _repeat(out: Path, name: str, image: np.ndarray, labels: np.ndarray, copies: int) -> int:
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    for k in range(copies):
        varied = image if k == 0 or image.ndim != 2 else vary_contrast(image, labels, rng)
        tifffile.imwrite(out / "images" / f"{name}_{k:02d}.tif", varied)
        write_labels(labels, out / "labels" / f"{name}_{k:02d}_label.tiff")
    return copies


def head_samples(held_out: str):
    """Images of known cell size for the size head (flowseg.inference.sizehead), as (image, diameter).

    ``HEAD_IMAGES`` synthetic crops of ``HEAD_CROP`` pixels per trained generator, cells
    log-uniform from 8 to 150 px (seeds 600,000 + 1000 m + i, used by nothing else), and the real
    training parts of ../shared at 0.5x, 1x and 2x. The diameter is what the automatic diameter
    measures on masks: the median over whole cells (flowseg.inference.estimate.median_diameter).
    """
    rng = np.random.default_rng(HEAD_SEED)
    for m, modality in enumerate(MODALITIES):
        if modality == held_out:
            continue
        for i in range(HEAD_IMAGES):
            size = float(np.exp(rng.uniform(np.log(8), np.log(150))))
            image, labels = make_sample((HEAD_CROP, HEAD_CROP), modality,
                                        seed=HEAD_SEED + 1000 * m + i, diameter=size)
            yield image, median_diameter(labels)[0]
    for image, labels in [*real_parts(), *data_real_head_parts()]:
        for factor in (0.5, 1.0, 2.0):
            shape = tuple(round(n * factor) for n in labels.shape)
            small = resize(image.astype(np.float32), shape, order=1, anti_aliasing=factor < 1)
            nearest = resize(labels, shape, order=0, preserve_range=True, anti_aliasing=False)
            yield small, median_diameter(nearest.astype(np.uint32))[0]


def data_real_head_parts():
    """Up to ``HEAD_REAL`` training images of each (source, modality) of ../shared/data_real."""
    seen: dict[tuple[str, str], int] = {}
    for source, modality, image_path, label_path in real_pairs("train"):
        if seen.setdefault((source, modality), 0) < HEAD_REAL:
            seen[(source, modality)] += 1
            image = np.moveaxis(read_image(image_path), 0, -1)  # (H, W, C), as resize expects
            yield (image[..., 0] if image.shape[-1] == 1 else image), read_labels(label_path)


def fit_head(net) -> dict:
    """Fit the size head of ``net`` on :func:`head_samples` and return it (metadata-ready)."""
    features, diameters = [], []
    for image, diameter in head_samples(net.metadata.get("training", {}).get(
            "held_out_modality", "dic")):
        features.append(head_features(net, PreparedView(as_channels_first(image))))
        diameters.append(diameter)
    head = fit_size_head(np.array(features), np.array(diameters))
    head.update(images=len(diameters), crop=HEAD_CROP, seed=HEAD_SEED)
    return head


def run_totals(log_csv: Path) -> tuple[int, float]:
    """Steps taken and wall seconds spent, summed over every invocation of a resumed run."""
    import csv

    with open(log_csv) as stream:
        rows = list(csv.DictReader(stream))
    wall, last = 0.0, 0.0
    for row in rows:
        seconds = float(row["seconds"])
        if seconds < last:  # a new invocation: its clock starts again
            wall += last
        last = seconds
    return (int(rows[-1]["step"]) if rows else 0), wall + last


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("default_model_run"))
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--per-modality", type=int, default=60)
    parser.add_argument("--size", type=int, default=320)
    parser.add_argument("--volumes", type=int, default=12,
                        help="synthetic z-stacks to take ZY/ZX training planes from (6 each)")
    parser.add_argument("--hold-out", default="bacteria", choices=("none", *MODALITIES),
                        help="a synthetic modality left out of training (to measure fine-tuning)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--boundary-weight", type=float, default=0.0,
                        help="extra weight of the flow error where two cells touch "
                             "(flowseg.training.loss.touching_band; a fifth training, not "
                             "shipped, used 9)")
    parser.add_argument("--prob-weight", type=float, default=1.0,
                        help="weight of the cell probability's loss against the flows' (an "
                             "eighth-session training, not shipped, used 2)")
    parser.add_argument("--diameter", type=float, default=TRAIN_DIAMETER,
                        help="median cell diameter, in px, every image is rescaled to before the "
                             "zoom: the model's working scale (issue 31 point 4 compared 30 and 17)")
    parser.add_argument("--zoom", type=float, nargs=2, default=ZOOM, metavar=("LOW", "HIGH"),
                        help="range of the random zoom after rescaling to the training diameter")
    parser.add_argument("--lowres", type=float, default=LOWRES,
                        help="share of crops shown at a 1.5-4x lower resolution, enlarged back")
    parser.add_argument("--real-copies", nargs="+", default=[], metavar="MODALITY=N",
                        type=_modality_copies,
                        help="copies of each ../shared/data_real training image of a modality "
                             f"(default {DATA_REAL_COPIES}); read when --work's data is written")
    parser.add_argument("--plane-copies", type=_copies, default=REAL_COPIES["plane"], metavar="N",
                        help="copies of each real z-stack training plane (planes 22-28 of "
                             "../shared/data3d; default %(default)s); read when --work's data "
                             "is written")
    parser.add_argument("--hard-copies", type=_copies, default=0, metavar="N",
                        help="up to N extra copies of each real training image by how many "
                             f"cells --pretrained gets wrong on it (one per {HARD_UNIT}); read when "
                             "--work's data is written")
    parser.add_argument("--hard-modalities", nargs="+", default=["fluorescence"],
                        choices=list(DATA_REAL_COPIES), metavar="MODALITY",
                        help="the modalities --hard-copies weighs (default: fluorescence)")
    parser.add_argument("--pretrained", type=Path, default=None,
                        help="warm start from these weights (a previous default.pt, say)")
    parser.add_argument("--blocks", type=_blocks, default=None, metavar="N[,N...]",
                        help="residual blocks per encoder level, one number or one per level "
                             "(1,1,2,2,2, say); with --pretrained, its network gets the added "
                             "blocks as identities (flowseg.model.net.deepened), trained from there")
    parser.add_argument("--average-with", type=Path, default=None, metavar="CHECKPOINT",
                        help="ship the mean of the trained weights and these (the eleventh "
                             "model: its run and the ninth's weights it started from)")
    parser.add_argument("--fit-head", type=Path, default=None, metavar="CHECKPOINT",
                        help="only fit the size head of this checkpoint (into --work/default.pt)")
    parser.add_argument("--export-only", action="store_true",
                        help="only write the installed model's ONNX export into flowseg/models")
    parser.add_argument("--pack", type=Path, default=None, metavar="FILE",
                        help="only write the real images this training reads into FILE, to "
                             "train elsewhere (it must fit beside the working tree in the 64 MiB "
                             "that travel to a lent GPU; scripts/training_pack.py)")
    parser.add_argument("--shared", type=Path, default=None, metavar="PATH",
                        help="read the real images from PATH: a folder laid out as ../shared, "
                             "or a file written by --pack (unpacked into --work/shared)")
    parser.add_argument("--install", action=argparse.BooleanOptionalAction, default=True,
                        help="copy the result to flowseg/models/default.pt")
    args = parser.parse_args()
    if args.export_only:
        install_export()
        return 0
    if args.hard_copies and not args.pretrained:
        parser.error("--hard-copies needs --pretrained: the model whose errors choose the images")
    try:
        resolve_device(args.device)  # before any data is written
        if args.shared:
            if not args.shared.exists():
                raise InputError(f"--shared {args.shared}: no such file or folder")
            real_data.use_shared(args.shared if args.shared.is_dir()
                                 else training_pack.unpack(args.shared, args.work / "shared"))
        if args.pack:
            budget = training_pack.travel_budget(Path(__file__).resolve().parents[1])
            summary = training_pack.write_pack(args.pack, planes=TRAIN_PLANES, limit=budget)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.pack:
        print(f"packed {summary['images']} images and their labels ({summary['quantised']} "
              f"quantised, the network's input changed by at most {summary['largest_change']:.4f}) "
              f"and ../shared's data and data3d: {summary['bytes'] / 2**20:.1f} MiB in {args.pack} "
              f"({budget / 2**20:.1f} MiB may travel beside the working tree)")
        return 0
    if args.fit_head:
        return finish(load_net(args.fit_head), args)
    torch.manual_seed(0)
    work = args.work
    try:  # every setting checked before any data is written
        # The size head is fitted below on its own samples (head_samples), not by train().
        config = TrainConfig(epochs=args.epochs, batch_size=8, learning_rate=args.learning_rate,
                             val_fraction=0.0, seed=0, device=args.device, num_workers=1,
                             boundary_weight=args.boundary_weight, prob_weight=args.prob_weight,
                             size_head=False)
        data = DataConfig(crop=256, diameter=args.diameter, scale=tuple(args.zoom),
                          lowres=args.lowres)
        pretrained, net_config = deepen_start(args)
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if not (work / "train" / "labels").is_dir():
        synthetic = write_synthetic(work / "train", args.per_modality, args.size, seed=1,
                                    held_out=args.hold_out)
        planes = write_volume_planes(work / "train", args.volumes, seed=500_000)
        copies = DATA_REAL_COPIES | dict(args.real_copies)
        extra = (hard_examples(args.pretrained, args.hard_modalities, args.hard_copies,
                               work / f"hard_examples_{_digest(args.pretrained)}.csv",
                               args.device) if args.hard_copies else None)
        real = (write_real(work / "train", args.plane_copies)
                + write_data_real(work / "train", copies, extra))
        print(f"training set: {synthetic} synthetic, {planes} z-stack planes and {real} real "
              "images (with repeats)")
    start = time.perf_counter()
    last = train(work / "train", work / "run", config=config, data=data, resume=True,
                 pretrained=pretrained, net_config=net_config, cache_dir=work / "cache")
    seconds = time.perf_counter() - start
    print(f"trained in {seconds:.0f} s (this invocation): {last}")
    net = load_net(last)
    if args.average_with:
        average_weights(net, load_net(args.average_with))
    steps, wall = run_totals(work / "run" / "log.csv")
    net.metadata["training"].update(
        command=" ".join(["python", *sys.argv]), held_out_modality=args.hold_out,
        warm_start=str(args.pretrained) if args.pretrained else None,
        steps=steps, wall_seconds=round(wall), training_diameter_px=args.diameter,
        lowres=args.lowres, zoom=list(args.zoom), volume_planes=6 * args.volumes,
        averaged_with=str(args.average_with) if args.average_with else None)
    return finish(net, args)


def deepen_start(args: argparse.Namespace) -> tuple[Path | None, NetConfig]:
    """The weights to start from and the shape to build: --pretrained deepened to --blocks.

    The shape is --pretrained's (the bundled one without it) with --blocks' residual blocks.
    """
    if args.blocks is None:
        return args.pretrained, NetConfig()
    base = load_net(args.pretrained) if args.pretrained is not None else None
    try:
        net_config = replace(base.config if base is not None else NetConfig(), blocks=args.blocks)
        if base is None or base.config.level_blocks == net_config.level_blocks:
            return args.pretrained, net_config
        start = args.work / "deepened.pt"
        if not start.is_file():
            save_net(deepened(base, args.blocks), start)
    except InputError as error:
        raise InputError(f"--blocks {args.blocks}: {error}") from None
    return start, net_config


def _digest(path: Path) -> str:
    """A short name for a file's content (a model's scores are kept under it)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _blocks(text: str) -> int | tuple[int, ...]:
    """Residual blocks per encoder level for --blocks: one whole number, or one per level."""
    parts = text.split(",")
    if not all(p.strip().isdigit() and int(p) >= 1 for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole numbers of at least 1, "
                                         "separated by commas")
    return int(parts[0]) if len(parts) == 1 else tuple(int(p) for p in parts)


def _copies(text: str) -> int:
    """A number of copies, 0 or more, for --plane-copies."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of copies, 0 or more")
    return int(text)


def _modality_copies(text: str) -> tuple[str, int]:
    """``phase=16`` -> ("phase", 16), for --real-copies."""
    modality, _, copies = text.partition("=")
    if modality not in DATA_REAL_COPIES or not copies.isdigit():
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected MODALITY=N with MODALITY one of {', '.join(DATA_REAL_COPIES)}")
    return modality, int(copies)


def average_weights(net: torch.nn.Module, other: torch.nn.Module) -> None:
    """Set ``net``'s weights (and normalisation statistics) to the mean of its own and ``other``'s.

    Two runs of one architecture, the second started from the first, average into weights that
    keep what each learnt best (a "model soup"): the eleventh model is the mean of a run that
    added DIC to the training data and the ninth model it started from (benchmarks/RESULTS.md).
    """
    theirs = other.state_dict()
    net.load_state_dict({key: (value + theirs[key].to(value.dtype)) / 2
                         if value.is_floating_point() else value
                         for key, value in net.state_dict().items()})


def finish(net, args: argparse.Namespace) -> int:
    """Fit the size head of the trained network, save its lean copy and install it."""
    # The head reads the weights as shipped: float16, as load_net restores them.
    lean = save_net(net, args.work / "default.pt", half=True)
    net = load_net(lean)
    start = time.perf_counter()
    net.metadata["size_head"] = fit_head(net)
    print(f"size head fitted on {net.metadata['size_head']['images']} images in "
          f"{time.perf_counter() - start:.0f} s")
    # Ship a lean copy: weights in float16 (load_net restores float32), no optimizer state.
    lean = save_net(net, args.work / "default.pt", half=True)
    if args.install:
        shutil.copyfile(lean, default_model_path())
        print(f"installed {default_model_path()} ({lean.stat().st_size / 1e6:.1f} MB)")
        install_export()
    return 0


def install_export() -> None:
    """Ship the bundled model's ONNX export beside it, so that its first use exports nothing."""
    for old in MODELS.glob("flowunet-*.onnx"):
        old.unlink()
    path = write_export(net := load_net(default_model_path()), export_path(net, folder=MODELS))
    print(f"installed {path} ({path.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    raise SystemExit(main())
