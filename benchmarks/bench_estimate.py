"""How well the automatic diameter is estimated, and at what cost, by the size of its first pass.

    python benchmarks/bench_estimate.py [--size 2048] [--pixels 2097152 1048576] [--model PATH]

Synthetic images of five modalities with cells of 12, 30, 60 and 120 px (tuning seeds 900,000+,
never used for training or the held-out sets) are large enough that the estimate runs on four
crops; for each first-pass size (``ESTIMATE_PIXELS``) the table gives the estimated diameter, the
scale the image would then run at, and the seconds ``estimate_diameter`` took (network and masks
of the first pass, and of the second pass for large cells).
"""

from __future__ import annotations

import argparse
import time

from flowseg.inference import estimate, pipeline, scaling
from flowseg.inference.normalize import PreparedView
from flowseg.training.synthetic import make_sample

MODALITIES = ("nuclei", "cytoplasm", "phase", "he", "brightfield")
DIAMETERS = (12, 30, 60, 120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--pixels", type=int, nargs="+", default=[1 << 21, 1 << 20])
    parser.add_argument("--model", default=None)
    args = parser.parse_args()
    net = pipeline.load_model(args.model)
    trained = scaling.training_diameter(net)
    heads = " | ".join(f"{p / 2**20:g} MP: estimate, scale, s" for p in args.pixels)
    print(f"| modality | cells px | true median px | {heads} |")
    print("|---" * (3 + len(args.pixels)) + "|")
    for modality in MODALITIES:
        for k, diameter in enumerate(DIAMETERS):
            image, truth = make_sample((args.size, args.size), modality, seed=900_000 + k,
                                       diameter=diameter)
            view = PreparedView(pipeline.as_channels_first(image))
            cells = [f"{estimate.median_diameter(truth)[0]:.1f}"]
            for pixels in args.pixels:
                estimate.ESTIMATE_PIXELS = pixels
                start = time.perf_counter()
                guess = estimate.estimate_diameter(net, view)
                scale, chosen = estimate.scale_for(guess, trained, (args.size, args.size))
                cells.append(f"{chosen:.1f}, {scale:.2f}, {time.perf_counter() - start:.1f}")
            print(f"| {modality} | {diameter} | {' | '.join(cells)} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
