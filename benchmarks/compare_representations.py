"""Flows against the seed's 3-class representation: the ceiling, then equal training budgets.

    python benchmarks/compare_representations.py [--steps 1200] [--work DIR] [--figures DIR]
    python benchmarks/compare_representations.py --ceiling-only
    python benchmarks/compare_representations.py --baseline-steps 3600 --reuse   (3x the budget)
    python benchmarks/compare_representations.py --baseline-steps 3600 --only "3-class (seed)" \
        --no-ceiling --no-defaults   (one representation, in a second process; --reuse scores it)
    python benchmarks/compare_representations.py --check-thresholds 10   (defaults, more images)

(a) Ceiling: each representation's instances recovered from perfect targets (flows computed from
the true labels; the true classes with certainty), on the real samples in ../shared/data and on
synthetic sets of rising difficulty: isolated, touching, densely packed and elongated cells.

Two 3-class representations stand beside flows (benchmarks/baselines/three_class.py): the seed's
own (its boundary dilated by disk(1), 8-connected interiors, not grown back) and this project's
first reading of it (a 1-pixel boundary, 4-connected interiors grown back 4 px).

(b) Equal budget: the same FlowUNet (same initial weights) trained by one loop (AdamW, warm-up
and cosine decay, as flowseg.training.train), on the same samples in the same order (same crops, same
augmentation), for the same number of steps: on flows + cell probability, and on each 3-class
map with cross-entropy. Training data: synthetic
images of every category in three modalities, plus the top half of each real sample; held out:
other synthetic images of each category and the bottom half of each real sample. Scores: challenge
F1 at IoU 0.5, 0.75, 0.9, mean matched IoU, merges and splits, time per MP. Then the flow model's
mask settings are swept on a separate tuning set (never the test set), and overlays of both
methods on the same crops are written under --figures.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import imagecodecs
import numpy as np
import torch
from skimage.segmentation import find_boundaries

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from baselines.three_class import (
    class_loss,
    create_interior_map,
    grown_instances,
    one_pixel_boundary_classes,
    perfect_logits,
    seed_instances,
)
from make_synthetic_data import write_tiff
from train_default_model import SHARED as SHARED_ROOT

from flowseg.inference.normalize import prepare_image
from flowseg.inference.pipeline import load_model, segment
from flowseg.inference.tiling import TileConfig
from flowseg.io import read_image, read_labels, write_labels
from flowseg.io.files import find_pairs
from flowseg.metrics import challenge_scores, merges_and_splits
from flowseg.model.net import FlowUNet, NetConfig, count_parameters
from flowseg.representation.flows import FLOW_SCALE, labels_to_flows
from flowseg.representation.masks import MaskConfig, masks_from_flows
from flowseg.training.dataset import DataConfig, FlowDataset, discover_pairs, epoch_order
from flowseg.training.loss import flow_loss
from flowseg.training.synthetic import MODALITIES, random_touching_labels, render
from flowseg.training.train import TrainConfig, optimizer_and_schedule
from flowseg.training.validate import predict_whole

# The modalities this study rendered in turn (MODALITIES when it ran, before "packed"), so that
# its sets stay the ones RESULTS.md reports.
STUDY_MODALITIES = MODALITIES[:8]
# Synthetic categories: settings of random_touching_labels.
CATEGORIES: dict[str, dict[str, object]] = {
    "isolated": {"density": 0.3, "elongation": 1.3, "diameter": (15.0, 35.0)},
    "touching": {"density": 0.7, "elongation": 1.6, "diameter": (15.0, 35.0)},
    "dense": {"density": 1.0, "elongation": 1.6, "diameter": (10.0, 28.0)},
    "elongated": {"density": 0.9, "elongation": 4.0, "diameter": (10.0, 30.0)},
}
IOU_LEVELS = (0.5, 0.75, 0.9)
Recover = Callable[[np.ndarray], np.ndarray]  # network output (3, H, W) -> labels
REAL_COPIES = 4  # copies of each real top half in the training set
SHARED = SHARED_ROOT / "data"  # the real 2-D samples
SEED_3CLASS, THIN_3CLASS = "3-class (seed)", "3-class (1-px, grown)"
# Each 3-class variant: its targets and its instances.
VARIANTS = {SEED_3CLASS: (create_interior_map, seed_instances),
            THIN_3CLASS: (one_pixel_boundary_classes, grown_instances)}


def split_real(work: Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Put the top half of each real sample into the training set; return the bottom halves."""
    held_out: list[tuple[str, np.ndarray, np.ndarray]] = []
    if not (SHARED / "images").is_dir():
        print(f"no real samples at {SHARED}: synthetic data only")
        return held_out
    for image_path, label_path in find_pairs(SHARED / "images", SHARED / "labels"):
        image, labels = read_image(image_path), read_labels(label_path)
        half = labels.shape[0] // 2
        for k in range(REAL_COPIES):
            name = f"real_{image_path.stem}_top_{k:02d}"
            write_tiff(work / "train" / "images" / f"{name}.tif", image[:, :half])
            write_labels(labels[:half], work / "train" / "labels" / f"{name}_label.tiff")
        held_out.append((image_path.stem, image[:, half:], labels[half:]))
    return held_out


def touching_share(labels: np.ndarray) -> float:
    """Share of cells that touch another cell (4-neighbourhood)."""
    touching = set()
    for a, b in ((labels[1:], labels[:-1]), (labels[:, 1:], labels[:, :-1])):
        edge = (a != b) & (a > 0) & (b > 0)
        touching.update(a[edge].tolist())
        touching.update(b[edge].tolist())
    cells = len(np.unique(labels)) - 1
    return len(touching) / cells if cells else 0.0


def score(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """Challenge F1 at each IoU level, mean matched IoU (at 0.5), merges and splits."""
    row: dict[str, float] = {}
    for level in IOU_LEVELS:
        scores = challenge_scores(true, pred, threshold=level)
        row[f"f1@{level}"] = scores.f1
        if level == 0.5:
            row["iou"] = scores.mean_iou
    row["merges"], row["splits"] = merges_and_splits(true, pred)
    row["cells"] = int(len(np.unique(true)) - 1)
    return row


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean rates and summed counts over images."""
    out = {k: float(np.nanmean([r[k] for r in rows])) for k in rows[0] if k.startswith(("f1", "iou"))}
    out.update({k: float(sum(r[k] for r in rows)) for k in ("merges", "splits", "cells")})
    return out


def write_set(folder: Path, category: str, count: int, size: int, seed: int) -> None:
    """Write ``count`` images of one category, modalities in turn, in the challenge layout."""
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        settings = CATEGORIES[category]
        labels = random_touching_labels((size, size), seed=seed * 1000 + i,
                                        **settings)  # type: ignore[arg-type]
        modality = STUDY_MODALITIES[i % len(STUDY_MODALITIES)]
        image = render(labels, modality, seed=seed * 1000 + i)
        name = f"{category}_{modality}_{seed}_{i:03d}"
        write_tiff(folder / "images" / f"{name}.tif", image)
        write_labels(labels, folder / "labels" / f"{name}_label.tiff")


def ceiling(images: int, size: int) -> None:
    recover: dict[str, Recover] = {
        "flows": lambda labels: masks_from_flows(FLOW_SCALE * labels_to_flows(labels),
                                                 np.where(labels > 0, 5.0, -5.0)),
        **{name: (lambda labels, t=targets, i=instances: i(perfect_logits(t(labels))))
           for name, (targets, instances) in VARIANTS.items()},
    }
    sets: dict[str, list[np.ndarray]] = {
        name: [random_touching_labels((size, size), seed=900 + i, **settings)  # type: ignore[arg-type]
               for i in range(images)] for name, settings in CATEGORIES.items()}
    if (SHARED / "labels").is_dir():
        sets["real samples"] = [read_labels(p) for p in sorted((SHARED / "labels").iterdir())]
    print(f"(a) ceiling: instances from perfect targets ({images} synthetic images of {size}^2 "
          "per set; the real samples whole)\n")
    print("| set | cells | touching | representation | F1@0.5 | F1@0.75 | F1@0.9 | mean IoU "
          "| merges | splits |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, label_sets in sets.items():
        share = statistics.mean(touching_share(lab) for lab in label_sets)
        for rep, fn in recover.items():
            s = summarise([score(lab, fn(lab)) for lab in label_sets])
            print(f"| {name} | {s['cells']:.0f} | {share:.0%} | {rep} | {s['f1@0.5']:.4f} "
                  f"| {s['f1@0.75']:.4f} | {s['f1@0.9']:.4f} | {s['iou']:.4f} "
                  f"| {s['merges']:.0f} | {s['splits']:.0f} |", flush=True)


def fit(dataset: FlowDataset, loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
        *, steps: int, batch: int, seed: int) -> tuple[FlowUNet, float]:
    """Train a fresh FlowUNet for ``steps`` steps as flowseg.training.train does; return it, seconds."""
    config = TrainConfig(batch_size=batch, seed=seed)
    torch.manual_seed(seed)
    net = FlowUNet(NetConfig())
    optimizer, scheduler = optimizer_and_schedule(net, config, steps)
    order: list[tuple[int, int]] = []
    for epoch in itertools.count():
        if len(order) >= steps * batch:
            break
        order += epoch_order(len(dataset), batch_size=batch, epoch=epoch, seed=seed)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=order[:steps * batch],
                                         num_workers=1)
    net.train()
    start = time.perf_counter()
    for step, (x, y) in enumerate(loader, start=1):
        loss = loss_fn(net(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        if step % 100 == 0:
            print(f"  step {step}/{steps}: loss {float(loss.detach()):.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)
    net.eval()
    return net, time.perf_counter() - start


def flows_objective(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    flow, prob = flow_loss(output, target)
    return flow + prob


def held_out(work: Path, real: list[tuple[str, np.ndarray, np.ndarray]]
             ) -> dict[str, list[tuple[str, np.ndarray, np.ndarray]]]:
    """Test images by set: (name, prepared (3, H, W) image, labels)."""
    sets: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for category in CATEGORIES:
        pairs = find_pairs(work / "test" / category / "images", work / "test" / category / "labels")
        sets[category] = [(i.stem, prepare_image(read_image(i)), read_labels(lab)) for i, lab in pairs]
    if real:
        sets["real (bottom halves)"] = [(n, prepare_image(im), lab) for n, im, lab in real]
    return sets


def evaluate(nets: dict[str, tuple[FlowUNet, Recover]],
             sets: dict[str, list[tuple[str, np.ndarray, np.ndarray]]], figures: Path | None,
             ) -> None:
    device = torch.device("cpu")
    print("| set | cells | representation | F1@0.5 | F1@0.75 | F1@0.9 | mean IoU | merges "
          "| splits | network s/MP | masks s/MP |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    drawn: dict[str, dict[str, np.ndarray]] = {}
    for set_name, items in sets.items():
        for rep, (net, recover) in nets.items():
            rows, t_net, t_post, pixels = [], 0.0, 0.0, 0
            for name, image, labels in items:
                start = time.perf_counter()
                with torch.no_grad():
                    output = predict_whole(net, image, device)
                middle = time.perf_counter()
                pred = recover(output)
                t_net += middle - start
                t_post += time.perf_counter() - middle
                pixels += labels.size
                rows.append(score(labels, pred))
                if name == items[0][0]:
                    drawn.setdefault(set_name, {"image": image, "truth": labels})[rep] = pred
            s = summarise(rows)
            mp = pixels / 1e6
            print(f"| {set_name} | {s['cells']:.0f} | {rep} | {s['f1@0.5']:.4f} | {s['f1@0.75']:.4f} "
                  f"| {s['f1@0.9']:.4f} | {s['iou']:.4f} | {s['merges']:.0f} | {s['splits']:.0f} "
                  f"| {t_net / mp:.2f} | {t_post / mp:.2f} |", flush=True)
    if figures is not None:
        figures.mkdir(parents=True, exist_ok=True)
        for set_name, panels in drawn.items():
            path = figures / f"representations_{set_name.split()[0]}.png"
            path.write_bytes(imagecodecs.png_encode(overlay_panels(panels, list(nets))))
            print(f"figure: {path}")


def overlay_panels(panels: dict[str, np.ndarray], reps: list[str], crop: int = 256) -> np.ndarray:
    """Truth, then each representation's outlines, on the same crop, side by side (RGB uint8)."""
    image = panels["image"]
    gray = np.clip(image.mean(axis=0), 0, 1)
    height, width = gray.shape
    window = (slice(0, min(crop, height)), slice(0, min(crop, width)))
    palette = [(0, 255, 0), (255, 0, 255), (0, 200, 255)]
    colours = {"truth": (255, 255, 0), **dict(zip(reps, palette, strict=False))}
    tiles = []
    for key in ("truth", *reps):
        rgb = np.repeat((gray[window] * 255).astype(np.uint8)[..., None], 3, axis=-1)
        rgb[find_boundaries(panels[key][window], mode="inner")] = colours[key]
        tiles.append(rgb)
        tiles.append(np.full((rgb.shape[0], 4, 3), 255, np.uint8))
    return np.concatenate(tiles[:-1], axis=1)


def tune_context(net: FlowUNet, items: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """Segment images larger than a tile with several tile contexts: F1 and seconds."""
    print(f"\ntile context, {len(items)} images of {items[0][2].shape[0]}^2, tiles of "
          f"{TileConfig().tile}:")
    print("| context | mean F1@0.5 | mean IoU | s per image |")
    print("|---|---|---|---|")
    for context in (64, 96, 128):
        rows, seconds = [], []
        for _, image, labels in items:
            start = time.perf_counter()
            pred = segment(image, net, tiles=replace(TileConfig(), context=context), device="cpu")
            seconds.append(time.perf_counter() - start)
            rows.append(score(labels, pred))
        s = summarise(rows)
        print(f"| {context} | {s['f1@0.5']:.4f} | {s['iou']:.4f} | {statistics.median(seconds):.2f} |")


def tune_masks(net: FlowUNet, items: list[tuple[str, np.ndarray, np.ndarray]]) -> None:
    """Sweep a flow model's mask settings on the tuning set; print the best and the default."""
    outputs = [(predict_whole(net, image, torch.device("cpu")), labels) for _, image, labels in items]
    grid = itertools.product((-1.0, -0.5, 0.0, 0.5, 1.0), (0.2, 0.4, 0.6, 0.8, 1e9), (100, 200, 400))
    results = []
    for cellprob, flow, niter in grid:
        config = replace(MaskConfig(), cellprob_threshold=cellprob, flow_threshold=flow, niter=niter)
        f1 = statistics.mean(challenge_scores(labels, masks_from_flows(o[:2], o[2], config=config)).f1
                             for o, labels in outputs)
        results.append((f1, config))
    results.sort(key=lambda r: -r[0])
    default = next(f1 for f1, c in results if c == MaskConfig())
    print(f"\nmask settings swept on {len(items)} tuning images (flow_threshold 1e9 = no flow check):")
    print("| rank | cellprob | flow | niter | mean F1@0.5 |")
    print("|---|---|---|---|---|")
    for rank, (f1, c) in enumerate(results[:5], start=1):
        print(f"| {rank} | {c.cellprob_threshold} | {c.flow_threshold:g} | {c.niter} | {f1:.4f} |")
    print(f"| default | {MaskConfig().cellprob_threshold} | {MaskConfig().flow_threshold:g} "
          f"| {MaskConfig().niter} | {default:.4f} |")


def check_thresholds(work: Path, count: int) -> None:
    """The bundled model on ``count`` fresh images per set: the defaults against the sweep's picks."""
    folder = work / "check"
    if not (folder / "images").is_dir():
        for k, category in enumerate(CATEGORIES):
            write_set(folder, category, count, 384, seed=50 + k)
    net = load_model()
    cpu = torch.device("cpu")
    items = [(i.stem.split("_")[0], predict_whole(net, prepare_image(read_image(i)), cpu),
              read_labels(lab)) for i, lab in discover_pairs(folder)]
    print(f"mask thresholds, bundled model, {len(items)} fresh images of 384^2 ({count} per set):")
    print("| cellprob | flow | mean F1@0.5 | " + " | ".join(CATEGORIES) + " |")
    print("|---|---|---|" + "---|" * len(CATEGORIES))
    for cellprob, flow in ((0.0, 0.4), (0.0, 0.6), (0.5, 0.6), (1.0, 0.6), (1.0, 0.4), (0.0, 0.8)):
        config = replace(MaskConfig(), cellprob_threshold=cellprob, flow_threshold=flow)
        f1: dict[str, list[float]] = {c: [] for c in CATEGORIES}
        for category, output, labels in items:
            masks = masks_from_flows(output[:2], output[2], config=config)
            f1[category].append(challenge_scores(labels, masks).f1)
        every = [v for values in f1.values() for v in values]
        print(f"| {cellprob} | {flow} | {statistics.mean(every):.4f} | "
              + " | ".join(f"{statistics.mean(v):.4f}" for v in f1.values()) + " |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--crop", type=int, default=256)
    parser.add_argument("--train-images", type=int, default=64, help="per category")
    parser.add_argument("--test-images", type=int, default=6, help="per category")
    parser.add_argument("--ceiling-images", type=int, default=4, help="per category")
    parser.add_argument("--work", type=Path,
                        default=Path(tempfile.gettempdir()) / "flowseg-representations")
    parser.add_argument("--figures", type=Path, default=Path(__file__).resolve().parent / "figures")
    parser.add_argument("--ceiling-only", action="store_true")
    parser.add_argument("--baseline-steps", type=int,
                        help="train the 3-class model this many steps instead (a longer budget)")
    parser.add_argument("--reuse", action="store_true",
                        help="load a model trained before with the same steps from --work")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", action="append", choices=["flows", *VARIANTS],
                        help="train and score only this representation (repeat for more)")
    parser.add_argument("--no-ceiling", action="store_true", help="skip part (a)")
    parser.add_argument("--no-defaults", action="store_true",
                        help="skip part (c), the sweep of mask and tiling settings")
    parser.add_argument("--check-thresholds", type=int, metavar="N",
                        help="only score the bundled model's mask thresholds on N fresh images per set")
    args = parser.parse_args()
    if args.check_thresholds:
        check_thresholds(args.work, args.check_thresholds)
        return 0
    if not args.no_ceiling:
        ceiling(args.ceiling_images, 512)
    if args.ceiling_only:
        return 0
    work = args.work
    if not (work / "train" / "images").is_dir():
        for k, category in enumerate(CATEGORIES):
            write_set(work / "train", category, args.train_images, 256, seed=10 + k)
            write_set(work / "test" / category, category, args.test_images, 384, seed=20 + k)
            write_set(work / "tune", category, 2, 384, seed=30 + k)
            write_set(work / "large", category, 1, 1024, seed=40 + k)
    real = split_real(work)
    pairs = discover_pairs(work / "train")
    data = DataConfig(crop=args.crop)
    print(f"\n(b) equal budget: {len(pairs)} training images, {args.steps} steps of {args.batch} "
          f"crops of {args.crop}^2, FlowUNet {count_parameters(FlowUNet(NetConfig())):,} parameters")
    datasets = {"flows": FlowDataset(pairs, data, work / "cache")}
    objectives = {"flows": flows_objective}
    recovers: dict[str, Recover] = {"flows": lambda o: masks_from_flows(o[:2], o[2])}
    budgets = {"flows": args.steps}
    for name, (targets, instances) in VARIANTS.items():
        datasets[name] = FlowDataset(pairs, data, work / "cache", targets=targets, flows=False)
        objectives[name], recovers[name] = class_loss, instances
        budgets[name] = args.baseline_steps or args.steps
    if args.only:
        budgets = {rep: steps for rep, steps in budgets.items() if rep in args.only}
    nets = {}
    for rep, steps in budgets.items():
        saved = work / f"{rep.replace(' ', '_')}-{steps}.pt"
        if args.reuse and saved.is_file():
            print(f"{rep}: reusing {saved} ({steps} steps)")
            net = FlowUNet(NetConfig())
            net.load_state_dict(torch.load(saved, weights_only=True))
            net.eval()
        else:
            print(f"training {rep} ...", flush=True)
            net, seconds = fit(datasets[rep], objectives[rep], steps=steps, batch=args.batch,
                               seed=args.seed)
            print(f"{rep}: {steps} steps in {seconds:.0f} s", flush=True)
            torch.save(net.state_dict(), saved)
        nets[rep] = (net, recovers[rep])
    print()
    evaluate(nets, held_out(work, real), args.figures)
    if args.no_defaults or "flows" not in nets:
        return 0
    tune = [(i.stem, prepare_image(read_image(i)), read_labels(lab))
            for i, lab in discover_pairs(work / "tune")]
    print("\n(c) defaults, on tuning images apart from the test set; the flow model trained above:")
    tune_masks(nets["flows"][0], tune)
    print("\nthe bundled default model:")
    shipped = load_model()
    tune_masks(shipped, tune)
    tune_context(shipped, [(i.stem, read_image(i), read_labels(lab))
                           for i, lab in discover_pairs(work / "large")])
    print(f"\ndefaults: {asdict(MaskConfig())}, {asdict(TileConfig())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
