"""The mask settings (cell-probability and flow thresholds) on real training images.

    python benchmarks/bench_mask_thresholds.py [--model PATH] [--per-modality 24 8 6]
        [--settings 0,0.4 -1,0.4 0,0.4,60 ...]

The bundled model's saved thresholds (cellprob 0, flow 0.4) against lower logit thresholds
and a looser flow check (or the ``CELLPROB,FLOW[,MIN_SIZE]`` settings that ``--settings`` names;
the smallest mask kept in pixels at the network's scale, 15 when not given), on the first
images by name of scripts/real_data.py's training split of each modality (never its validation
split: choosing a setting there would tune on it). F1 at IoU 0.5 and 0.75 of the matches pooled
per modality, with the automatic diameter, one thread.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
from real_data import real_pairs

from flowseg.inference.pipeline import load_model, segment_with_outputs
from flowseg.io import read_image, read_labels
from flowseg.metrics import challenge_scores
from flowseg.representation.masks import MaskConfig

MIN_SIZE = MaskConfig.min_size
SETTINGS = tuple((cellprob, flow, MIN_SIZE) for cellprob, flow in
                 ((0.0, 0.4), (-1.0, 0.4), (-2.0, 0.4), (0.0, 0.8), (-1.0, 0.8)))


def setting(text: str) -> tuple[float, float, int]:
    """Parse ``CELLPROB,FLOW[,MIN_SIZE]`` (``--settings``) into all three."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected CELLPROB,FLOW[,MIN_SIZE], got {text!r}")
    return values[0], values[1], int(values[2]) if len(values) == 3 else MIN_SIZE


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--per-modality", type=int, nargs=3, default=[24, 8, 6],
                        metavar=("FLUORESCENCE", "TISSUE", "PHASE"))
    parser.add_argument("--settings", type=setting, nargs="+", default=list(SETTINGS),
                        metavar="CELLPROB,FLOW[,MIN_SIZE]")
    args = parser.parse_args()
    torch.set_num_threads(1)
    want = dict(zip(("fluorescence", "tissue", "phase"), args.per_modality, strict=True))
    net = load_model(args.model)
    seen = dict.fromkeys(want, 0)
    # per (modality, setting): true positives at 0.5, at 0.75, and true + predicted cells
    counts = {(m, s): [0, 0, 0] for m in want for s in args.settings}
    for _, modality, image_path, label_path in sorted(real_pairs("train"),
                                                      key=lambda p: p[2].name):
        if modality not in want or seen[modality] >= want[modality]:
            continue
        seen[modality] += 1
        image, labels = read_image(image_path), read_labels(label_path)
        for pair in args.settings:
            config = MaskConfig(cellprob_threshold=pair[0], flow_threshold=pair[1],
                                min_size=pair[2])
            result = segment_with_outputs(image, net, channel_axis=0, device="cpu", masks=config)
            at50 = challenge_scores(labels, result.labels)
            at75 = challenge_scores(labels, result.labels, threshold=0.75)
            count = counts[(modality, pair)]
            count[0] += at50.tp
            count[1] += at75.tp
            count[2] += 2 * at50.tp + at50.fp + at50.fn
    print(f"model {args.model or 'bundled'}; training split, first images by name: {seen}")
    print("| modality | cellprob | flow | min size | F1@0.5 | F1@0.75 |")
    print("|---|---|---|---|---|---|")
    for (modality, pair), (tp50, tp75, cells) in counts.items():
        print(f"| {modality} | {pair[0]:g} | {pair[1]:g} | {pair[2]} | {2 * tp50 / max(cells, 1):.3f} | "
              f"{2 * tp75 / max(cells, 1):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
