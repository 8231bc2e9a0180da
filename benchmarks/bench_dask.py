"""A whole-slide-sized image on a Dask LocalCluster with 1 and 2 workers, beside one process.

    python benchmarks/bench_dask.py [--size 10000] [--blocks 2048] [--workers 1 2] [--cells D]
    python benchmarks/bench_dask.py --pyramid --one-process-reads

A synthetic fluorescence image of touching cells (size x size, written as a tiled TIFF; cells of
``--cells`` px, the generator's typical 22 px when omitted) is segmented (a) by the
single-process pipeline, in a fresh process, and (b) by ``flowseg.apps.slides.segment_large`` on
a LocalCluster of 1 worker (all cores) and of 2 workers (a core each), for every block size
given. Both take the automatic diameter: cells of 60 px, say, are shrunk to the network's 30.
Reported: wall time, cells found, peak RSS of the single process and of each worker process, and
the agreement (F1, mean matched IoU) between the blocked and the single-process labels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from memory import peak_rss_mb


def make_tiff(size: int, folder: Path, cells: float | None, pyramid: bool = False) -> Path:
    import tifffile

    from flowseg.training.synthetic import make_sample

    kind = "_pyramid.ome" if pyramid else ""
    path = folder / f"slide_{size}{f'_{cells:g}px' if cells else ''}{kind}.tif"
    if not path.exists():
        # The sample bench_predict uses (gray, 16-bit), stored here as a whole-slide file would be.
        image, _ = make_sample((size, size), "fluorescence", seed=size, diameter=cells)
        assert image.ndim == 2, "a multi-channel sample needs an explicit channel axis in the TIFF"
        if not pyramid:
            tifffile.imwrite(path, image, tile=(512, 512), compression="zlib",
                             photometric="minisblack")
            return path
        # An OME-TIFF slide as converters write it: SubIFD levels, the pixel size in OME-XML.
        with tifffile.TiffWriter(path, bigtiff=True) as tif:
            tif.write(image, subifds=3, tile=(512, 512), compression="zlib",
                      photometric="minisblack", metadata={
                          "axes": "YX", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
            for k in (2, 4, 8):
                tif.write(image[::k, ::k], subfiletype=1, tile=(512, 512),
                          compression="zlib", photometric="minisblack")
    return path


def single_process(path: Path, out: Path, read: str = "whole") -> dict[str, float]:
    """predict's one-process path: the file read whole, or window by window (``read="lazy"``)."""
    from flowseg.inference.pipeline import segment_with_outputs
    from flowseg.io import read_pixels, write_labels
    from flowseg.io.lazy import open_lazily

    start = time.perf_counter()
    image = read_pixels(path) if read == "whole" else open_lazily(path)
    result = segment_with_outputs(image, device="cpu", channel_axis=0)
    seconds = time.perf_counter() - start
    write_labels(result.labels, out)
    return {"seconds": seconds, "cells": int(result.labels.max()), "rss_mb": peak_rss_mb(),
            "threads": torch_threads(), "diameter": result.diameter}


def on_cluster(path: Path, workers: int, block: int, out: Path,
               extras: bool = False) -> dict[str, object]:
    import cloudpickle
    import memory
    from distributed import Client

    from flowseg.apps.cluster import local_cluster
    from flowseg.apps.slides import BlockConfig, segment_large

    cloudpickle.register_pickle_by_value(memory)  # the workers need not find benchmarks/
    with local_cluster(workers) as cluster, \
            Client(cluster) as client:
        start = time.perf_counter()
        from flowseg.io.pixelsize import read_pixel_size

        more = {} if not extras else {
            "geojson": out.with_suffix(".geojson"), "ome_zarr": out.with_name(
                f"{out.stem}_labels.ome.zarr"), "pixel_size": read_pixel_size(path)}
        segment_large(path, out, client=client, blocks=BlockConfig(block=block), device="cpu",
                      **more)
        seconds = time.perf_counter() - start
        rss = client.run(peak_rss_mb)
        threads = set(client.run(torch_threads).values())
    return {"seconds": seconds, "worker_rss_mb": sorted(rss.values()), "threads": threads}


def run_single(path: Path, out: Path, read: str) -> dict[str, float]:
    proc = subprocess.run([sys.executable, __file__, "--single", str(path), str(out), read],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def compare_reads(args: argparse.Namespace) -> int:
    """One process, the slide read whole against window by window: time, peak RSS, labels."""
    from flowseg.io import read_labels

    args.folder.mkdir(parents=True, exist_ok=True)
    path = make_tiff(args.size, args.folder, args.cells, args.pyramid)
    mp = args.size**2 / 1e6
    print(f"{path.name}: {args.size}^2 ({mp:.0f} MP), one process, {os.cpu_count()} CPUs")
    print("| read | wall s | s/MP | cells | peak RSS MB | labels equal to the whole read |")
    print("|---|---|---|---|---|---|")
    labels = {}
    for read in ("whole", "lazy"):
        out = args.folder / f"single_{read}_{path.stem}_label.tiff"
        result = run_single(path, out, read)
        labels[read] = read_labels(out)
        same = "-" if read == "whole" else str(bool(np.array_equal(labels[read], labels["whole"])))
        print(f"| {read} | {result['seconds']:.1f} | {result['seconds'] / mp:.2f} "
              f"| {result['cells']} | {result['rss_mb']:.0f} | {same} |", flush=True)
    return 0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000)
    parser.add_argument("--blocks", type=int, nargs="+", default=[2048])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--cells", type=float, default=None, help="cell diameter of the sample")
    parser.add_argument("--pyramid", action="store_true",
                        help="store the slide as a pyramidal OME-TIFF (SubIFDs, 0.5 um pixels)")
    parser.add_argument("--extras", action="store_true",
                        help="also run each cluster writing GeoJSON and OME-Zarr labels")
    parser.add_argument("--folder", type=Path, default=Path(tempfile.gettempdir()) / "flowseg-bench")
    parser.add_argument("--one-process-reads", action="store_true",
                        help="only the single process, reading the file whole and then window "
                             "by window (flowseg.io.lazy), each in a fresh process")
    parser.add_argument("--single", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single:
        print(json.dumps(single_process(Path(args.single[0]), Path(args.single[1]),
                                        args.single[2])))
        return 0
    if args.one_process_reads:
        return compare_reads(args)
    import zarr

    from flowseg.io import read_labels
    from flowseg.metrics import match_labels

    args.folder.mkdir(parents=True, exist_ok=True)
    path = make_tiff(args.size, args.folder, args.cells, args.pyramid)
    single_out = args.folder / f"single_{path.stem}_label.tiff"
    single = run_single(path, single_out, "whole")
    reference = read_labels(single_out)
    mp = args.size**2 / 1e6
    print(f"{args.size}^2 synthetic fluorescence ({mp:.0f} MP), cells of "
          f"{args.cells or 'about 22'} px, run at a diameter of {single['diameter']:.1f} px, "
          f"{os.cpu_count()} CPUs, CPU only")
    print("| run | block | wall s | s/MP | cells | peak RSS MB per process | torch threads per "
          "process | F1 vs single process | mean matched IoU |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(f"| single process | - | {single['seconds']:.1f} | {single['seconds'] / mp:.2f} "
          f"| {single['cells']} | {single['rss_mb']:.0f} | {single['threads']} | - | - |", flush=True)
    runs = [(b, w, e) for b in args.blocks for w in args.workers
            for e in ((False, True) if args.extras else (False,))]
    for block, workers, extras in runs:
        out = args.folder / f"dask_{workers}.zarr"
        result = on_cluster(path, workers, block, out, extras)
        labels = np.asarray(zarr.open_array(str(out), mode="r")[:])
        match = match_labels(reference, labels)
        rss = ", ".join(f"{r:.0f}" for r in result["worker_rss_mb"])  # type: ignore[attr-defined]
        threads = ", ".join(map(str, sorted(result["threads"])))  # type: ignore[call-overload]
        what = " + GeoJSON + OME-Zarr" if extras else ""
        print(f"| LocalCluster, {workers} worker{'s' if workers > 1 else ''}{what} | {block} "
              f"| {result['seconds']:.1f} | {float(result['seconds']) / mp:.2f} "  # type: ignore[arg-type]
              f"| {int(labels.max())} | {rss} | {threads} | {match.f1:.4f} "
              f"| {match.mean_iou:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
