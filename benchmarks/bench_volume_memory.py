"""Peak memory of predict --3d (3-D flows) against the stack's size, with the labels it gives.

    python benchmarks/bench_volume_memory.py [--shapes 64x512 100x1024] [--folder DIR]

For each ``DEPTHxSIDE``, a synthetic 16-bit nuclei stack (bench_predict's ``make_volume``: touching
24-voxel nuclei, dim seams, blur, noise) is segmented in a fresh process by
``flowseg.inference.volume.segment_volume`` at a diameter of 30 px (the network's own scale, as a
stack of 20-60 px nuclei runs), CPU only. Reported: seconds, cells, peak RSS (``VmHWM``), and the
bound issue 32 sets, 1 GB + 16 bytes a voxel of the stack. ``--labels DIR`` keeps each stack's
labels (to compare two versions of the code: run one with ``PYTHONPATH`` at the other checkout).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_predict import make_volume
from memory import peak_rss_mb


def single(path: Path, labels_out: Path | None) -> dict[str, float]:
    import tifffile

    from flowseg.inference.volume import segment_volume
    from flowseg.io import read_volume

    stack = read_volume(path)
    start = time.perf_counter()
    labels = segment_volume(stack, device="cpu", diameter=30.0)
    seconds = time.perf_counter() - start
    if labels_out is not None:
        tifffile.imwrite(labels_out, labels, compression="zlib")
    return {"seconds": seconds, "cells": int(labels.max()), "rss_mb": peak_rss_mb(),
            "voxels": int(labels.size)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shapes", nargs="+", default=["64x512", "100x1024"])
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "flowseg-bench")
    parser.add_argument("--labels", type=Path, default=None)
    parser.add_argument("--single", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        out = Path(args.single[1]) if args.single[1] != "-" else None
        print(json.dumps(single(Path(args.single[0]), out)))
        return 0
    args.folder.mkdir(parents=True, exist_ok=True)
    print("| stack | voxels (M) | seconds | cells | peak RSS MB | bound: 1 GB + 16 B/voxel, MB |")
    print("|---|---|---|---|---|---|")
    for shape in args.shapes:
        path = make_volume(shape, args.folder)
        out = "-" if args.labels is None else str(args.labels / f"labels_{shape}.tif")
        if args.labels is not None:
            args.labels.mkdir(parents=True, exist_ok=True)
        proc = subprocess.run([sys.executable, __file__, "--single", str(path), out],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        bound = 1024 + 16 * r["voxels"] / 2**20
        print(f"| {shape.replace('x', ' x ')}^2 | {r['voxels'] / 1e6:.1f} | {r['seconds']:.1f} | "
              f"{r['cells']} | {r['rss_mb']:.0f} | {bound:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
