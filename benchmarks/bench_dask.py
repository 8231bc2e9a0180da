"""A whole-slide-sized image on a Dask LocalCluster with 1 and 2 workers, beside one process.

    python benchmarks/bench_dask.py [--size 10000] [--block 2048]

A synthetic fluorescence image of touching cells (size x size, written as a tiled TIFF) is
segmented (a) by the single-process pipeline, in a fresh process, and (b) by
``flowseg.distributed.segment_large`` on a LocalCluster of 1 worker (all cores) and of 2 workers
(a core each). Reported: wall time, cells found, peak RSS of the single process and of each
worker process, and the agreement (F1) between the blocked and the single-process labels.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def make_tiff(size: int, folder: Path) -> Path:
    import tifffile

    from flowseg.synthetic import make_sample

    path = folder / f"slide_{size}.tif"
    if not path.exists():
        image, _ = make_sample((size, size), "fluorescence", seed=size + 1)
        tifffile.imwrite(path, image, tile=(512, 512), compression="zlib",
                         photometric="minisblack")
    return path


def single_process(path: Path, out: Path) -> dict[str, float]:
    from flowseg.io import read_pixels, write_labels
    from flowseg.pipeline import segment

    start = time.perf_counter()
    labels = segment(read_pixels(path), device="cpu")
    seconds = time.perf_counter() - start
    write_labels(labels, out)
    return {"seconds": seconds, "cells": int(labels.max()),
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def on_cluster(path: Path, workers: int, block: int, out: Path) -> dict[str, object]:
    from distributed import Client, LocalCluster

    from flowseg.distributed import BlockConfig, segment_large

    threads = max(1, (os.cpu_count() or 1) // workers)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=None, env={"OMP_NUM_THREADS": str(threads)}) as cluster, \
            Client(cluster) as client:
        start = time.perf_counter()
        segment_large(path, out, client=client, blocks=BlockConfig(block=block), device="cpu")
        seconds = time.perf_counter() - start
        rss = client.run(peak_rss_mb)
    return {"seconds": seconds, "worker_rss_mb": sorted(rss.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--block", type=int, default=2048)
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "flowseg-bench")
    parser.add_argument("--single", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(single_process(Path(args.single[0]), Path(args.single[1]))))
        return 0
    import zarr

    from flowseg.io import read_labels
    from flowseg.metrics import match_labels

    args.folder.mkdir(parents=True, exist_ok=True)
    path = make_tiff(args.size, args.folder)
    single_out = args.folder / f"single_{args.size}_label.tiff"
    proc = subprocess.run([sys.executable, __file__, "--single", str(path), str(single_out)],
                          capture_output=True, text=True, check=True)
    single = json.loads(proc.stdout.strip().splitlines()[-1])
    reference = read_labels(single_out)
    mp = args.size**2 / 1e6
    print(f"{args.size}^2 synthetic fluorescence ({mp:.0f} MP), block {args.block}, "
          f"{os.cpu_count()} CPUs, CPU only")
    print("| run | wall s | s/MP | cells | peak RSS MB per process | F1 vs single process |")
    print("|---|---|---|---|---|---|")
    print(f"| single process | {single['seconds']:.1f} | {single['seconds'] / mp:.2f} "
          f"| {single['cells']} | {single['rss_mb']:.0f} | - |", flush=True)
    for workers in (1, 2):
        out = args.folder / f"dask_{workers}.zarr"
        result = on_cluster(path, workers, args.block, out)
        labels = np.asarray(zarr.open_array(str(out), mode="r")[:])
        f1 = match_labels(reference, labels).f1
        rss = ", ".join(f"{r:.0f}" for r in result["worker_rss_mb"])  # type: ignore[attr-defined]
        print(f"| LocalCluster, {workers} worker{'s' if workers > 1 else ''} "
              f"| {result['seconds']:.1f} | {float(result['seconds']) / mp:.2f} "  # type: ignore[arg-type]
              f"| {int(labels.max())} | {rss} | {f1:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
