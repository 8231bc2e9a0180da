"""Same image, same labels, however it is cut: whole vs tiles, TTA on and off, several contexts.

    python benchmarks/bench_tiling.py [--model PATH] [--size 1024] [--contexts 128]
                                      [--device cpu] [--precision auto]

For 1024^2 synthetic images of three modalities (seed 4), the masks of a whole-image run are
compared with runs in tiles whose kept cores are 256 and 512 px, with the same context, flip TTA
off and on: challenge-style matching at IoU 0.5 (F1) and the mean IoU of matched cells, plus the
largest absolute difference of the network outputs, and the pixels whose cell differs.
"""

from __future__ import annotations

import argparse

import numpy as np

from flowseg.inference.normalize import PreparedView
from flowseg.inference.pipeline import as_channels_first, load_model
from flowseg.inference.tiling import TileConfig, run_tiled
from flowseg.metrics import match_labels
from flowseg.model.execution import plan_execution
from flowseg.representation.masks import masks_from_flows
from flowseg.training.synthetic import make_sample


def differing(a: np.ndarray, b: np.ndarray) -> int:
    """Pixels whose cell differs between two label images, whatever ids the cells carry.

    Each cell of one image is paired with the cell of the other it overlaps most (background with
    background); a pixel differs where its pair is not that. The larger count of both directions.
    """
    def one_way(x: np.ndarray, y: np.ndarray) -> int:
        pairs, counts = np.unique(x.astype(np.uint64) * (int(y.max()) + 1) + y, return_counts=True)
        xs, ys = pairs // (int(y.max()) + 1), pairs % (int(y.max()) + 1)
        order = np.lexsort((-counts, xs))  # per x id, the largest overlap first
        first = np.r_[True, xs[order][1:] != xs[order][:-1]]
        best = np.zeros(int(x.max()) + 1, np.uint64)
        best[xs[order][first].astype(np.intp)] = ys[order][first]
        best[0] = 0
        return int((best[x] != y).sum())
    return max(one_way(a, b), one_way(b, a))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--contexts", type=int, nargs="+", default=[128])
    parser.add_argument("--modalities", nargs="+", default=["nuclei", "he", "phase"])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()
    plan = plan_execution(args.device, args.precision)
    net = load_model(args.model, execution=plan)
    print(f"device {plan.device}, precision {plan.precision}, runtime {plan.runtime}")
    print("| modality | context | core | TTA | F1 | mean matched IoU | pixels labelled differently "
          "| max abs output diff |")
    print("|---|---|---|---|---|---|---|---|")
    for modality in args.modalities:
        image, _ = make_sample((args.size, args.size), modality, seed=4)
        view = PreparedView(as_channels_first(image))
        for context in args.contexts:
            for tta in (False, True):
                whole = run_tiled(net, view, execution=plan, config=TileConfig(
                    tile=args.size + 64, context=context, flip_tta=tta))
                reference = masks_from_flows(whole[:2], whole[2])
                for core in (256, 512):
                    out = run_tiled(net, view, execution=plan, config=TileConfig(
                        tile=core, context=context, flip_tta=tta))
                    labels = masks_from_flows(out[:2], out[2])
                    m = match_labels(reference, labels)
                    print(f"| {modality} | {context} | {core} | {'on' if tta else 'off'} | "
                          f"{m.f1:.4f} | {m.mean_iou:.4f} | {differing(reference, labels)} | "
                          f"{np.abs(out - whole).max():.2g} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
