"""Command line: ``python -m flowseg train``, ``predict`` and ``evaluate``.

Heavy modules are imported inside the handlers, after parsing, so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flowseg.apps import arguments
from flowseg.errors import InputError

log = logging.getLogger("flowseg")


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one subcommand per task.

    Returns
    -------
    parser : argparse.ArgumentParser
    """
    from flowseg import __version__

    parser = argparse.ArgumentParser(
        prog="flowseg", description="Cell segmentation with flow fields.")
    parser.add_argument("--version", action="version", version=f"flowseg {__version__}")
    _add_verbosity(parser, default=0)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    _add_train(commands)
    _add_predict(commands)
    _add_evaluate(commands)
    return parser


def _add_verbosity(parser: argparse.ArgumentParser, default: Any) -> None:
    """Add -v/-q, accepted before and after the subcommand (the later one wins)."""
    parser.add_argument("-v", "--verbose", dest="verbosity", action="store_const", const=1,
                        default=default, help="also log details (and tracebacks of bugs)")
    parser.add_argument("-q", "--quiet", dest="verbosity", action="store_const", const=-1,
                        default=default, help="only warnings and errors")


def _add_train(commands: Any) -> None:
    train = commands.add_parser(
        "train", help="train a network on image/label pairs",
        description="Train flows + cell probability on DIR/images + DIR/labels "
                    "(<name>_label.tiff), or on one folder holding both.")
    train.add_argument("--data_path", required=True, type=arguments.path, help="training data folder")
    train.add_argument("--out", default="flowseg_run", type=arguments.path,
                       help="run folder (default: flowseg_run)")
    train.add_argument("--batch_size", type=int, default=8, help="images per step (default: 8)")
    train.add_argument("--epochs", type=int, default=100, help="passes over the data (default: 100)")
    train.add_argument("--lr", type=float, default=None,
                       help="peak learning rate (default: 2e-4 from a pretrained model, 2e-3 "
                            "from scratch)")
    train.add_argument("--crop", type=int, default=256, help="training crop side (default: 256)")
    train.add_argument("--val_fraction", type=float, default=0.1,
                       help="share of images held out for validation, rounded down: none "
                            "with fewer than 1/share images (default: 0.1)")
    train.add_argument("--val_every", type=int, default=5,
                       help="validate every N epochs (default: 5)")
    train.add_argument("--diameter", type=float, default=None,
                       help="rescale images so that their median cell diameter is this many "
                            "pixels (default: the pretrained model's training diameter, 30 px "
                            "for the bundled one; none from scratch)")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                       help="(default: auto, CUDA where there is one)")
    train.add_argument("--workers", type=arguments.within(0, 64), default=1,
                       help="data loader processes (default: 1)")
    train.add_argument("--seed", type=arguments.within(0, 2**32 - 1), default=0, help="(default: 0)")
    train.add_argument("--size-head", action=argparse.BooleanOptionalAction, default=True,
                       help="refit the automatic diameter's size head on the training images "
                            "at the end (default: on)")
    train.add_argument("--resume", action=argparse.BooleanOptionalAction, default=False,
                       help="continue from OUT/last.pt")
    train.add_argument("--pretrained", default="default", metavar="default|none|PATH",
                       help="start from the bundled model (default), from scratch (none), or "
                            "from a checkpoint")
    _add_verbosity(train, default=argparse.SUPPRESS)
    train.set_defaults(handler=_train)


def _add_predict(commands: Any) -> None:
    predict = commands.add_parser(
        "predict", help="segment every image of a folder",
        description="Write <name>_label.tiff for every png, bmp, jpg or tif image in IN.")
    predict.add_argument("-i", "--input", required=True, type=arguments.path,
                         help="a folder of images, one image file, or a quoted glob ('d/*.tif')")
    predict.add_argument("-o", "--output", required=True, type=arguments.path,
                         help="folder for <name>_label.tiff")
    predict.add_argument("--model", help="checkpoint to use (default: the bundled model)")
    predict.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    predict.add_argument("--precision", choices=("auto", "float32", "bfloat16", "float16"),
                         default="auto", help="auto: float16 on CUDA, float32 on the CPU")
    predict.add_argument("--runtime", choices=("auto", "torch", "onnxruntime"), default="auto",
                         help="what runs the network; auto: ONNX Runtime for float32 on the CPU "
                              "(1.3x faster than torch's best layout on an idle AVX2 CPU, more when the "
                              "CPU is shared), torch otherwise")
    _add_predict_network(predict)
    _add_predict_outputs(predict)
    _add_predict_stacks_and_clusters(predict)
    _add_verbosity(predict, default=argparse.SUPPRESS)
    predict.set_defaults(handler=_predict)


def _add_predict_network(predict: argparse.ArgumentParser) -> None:
    group = predict.add_argument_group("how the network runs")
    group.add_argument("--tile", type=arguments.within(128, 16384), default=1024,
                       help="largest kept inner tile side; the network sees 2 x 224 px more "
                            "(default: 1024)")
    group.add_argument("--batch", type=arguments.within(1, 256), default=1,
                       help="tiles per forward pass (default: 1)")
    group.add_argument("--border", type=arguments.within(0, 1024), default=32, metavar="PX",
                       help="empty background shown to the network past every image edge, as "
                            "in training, so that cells cut by the edge are segmented (default: "
                            "32); 0 mirrors the image there instead, which drops most of them")
    group.add_argument("--diameter", type=arguments.diameter, default=None, metavar="D|auto",
                       help="typical cell diameter in pixels; the image is resized so that "
                            "cells look the size the model was trained at (the bundled model: "
                            "30 px). auto or 0 (default): estimated per image, and the image "
                            "resized only if the estimate is outside 25.5-42 px (0.85-1.4x "
                            "the training diameter)")
    group.add_argument("--diameter-um", type=arguments.micrometres, default=None, metavar="UM",
                       help="typical cell diameter in micrometres (nuclei: about 6-10 at any "
                            "magnification), converted per image with the pixel size its file "
                            "gives (OME-TIFF, Aperio SVS, ImageJ or TIFF resolution tags); an "
                            "image without one is reported and skipped")
    group.add_argument("--tta", action=argparse.BooleanOptionalAction, default=False,
                       help="average over mirrored copies (4x slower)")
    group = predict.add_argument_group(
        "how flows become masks", "each defaults to the value saved with the model (the bundled "
        "model: 0, 0.4 and 15)")
    group.add_argument("--cellprob-threshold", type=arguments.finite, default=None, metavar="LOGIT",
                       help="pixels whose cell-probability logit exceeds this are cell: lower "
                            "(-1, -2) finds dimmer cells and draws masks wider, higher draws "
                            "them tighter")
    group.add_argument("--flow-threshold", type=arguments.at_least(0.0), default=None,
                       metavar="ERROR",
                       help="drop masks whose flows disagree with a mask's own by more than "
                            "this mean squared error; higher keeps more odd shapes, 0 keeps all")
    group.add_argument("--min-size", type=arguments.within(0, 10**9), default=None, metavar="PX",
                       help="drop masks of fewer pixels, counted at the network's scale")


def _add_predict_outputs(predict: argparse.ArgumentParser) -> None:
    group = predict.add_argument_group("outputs")
    group.add_argument("--save-flows", action=argparse.BooleanOptionalAction, default=False,
                       help="also write <name>_flows.tiff (dy, dx, cellprob)")
    group.add_argument("--save-overlays", action=argparse.BooleanOptionalAction, default=False,
                       help="also write <name>_overlay.png with the outlines drawn")
    group.add_argument("--save-csv", action=argparse.BooleanOptionalAction, default=False,
                       help="also write <name>_cells.csv: area, centroid, box, diameter, shape "
                            "and intensities per cell")
    group.add_argument("--save-rois", action=argparse.BooleanOptionalAction, default=False,
                       help="also write <name>_rois.zip: one ImageJ polygon ROI per cell")
    group.add_argument("--save-geojson", action=argparse.BooleanOptionalAction, default=False,
                       help="also write <name>_cells.geojson: one QuPath detection per cell "
                            "(polygon, holes kept, with the --save-csv measurements; File > "
                            "Import objects, or drag and drop); works with --dask")
    group.add_argument("--save-ome-zarr", action=argparse.BooleanOptionalAction, default=False,
                       help="also write <name>_labels.ome.zarr: the labels as an OME-NGFF "
                            "image-label with its pyramid, at the image's pixel size "
                            "(napari-ome-zarr opens it); works with --dask")
    group.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                       help="redo images whose label file exists")
    group.add_argument("--max-pixels", type=arguments.within(1, 10**12), default=250_000_000,
                       help="refuse larger images, by their header, before decoding "
                            "(default: 250,000,000)")


def _add_predict_stacks_and_clusters(predict: argparse.ArgumentParser) -> None:
    group = predict.add_argument_group("z-stacks and Dask")
    group.add_argument("--3d", dest="volume", action="store_true",
                       help="read each TIFF as a z-stack, (Z, Y, X) or (Z, C, Y, X), and find "
                            "3-D cells: the network on the XY, ZY and ZX planes, flows followed "
                            "in 3-D; writes a (Z, Y, X) <name>_label.tiff")
    group.add_argument("--stitch", type=float, default=None, metavar="IOU",
                       help="with --3d: segment plane by plane instead and link masks that "
                            "overlap at this IoU in neighbouring planes (3x less work)")
    group.add_argument("--anisotropy", type=arguments.anisotropy, default=1.0,
                       help="with --3d: z step over xy pixel size, 0.1 to 20 (default: 1)")
    group.add_argument("--dask", nargs="?", const="", default=None, metavar="ADDRESS",
                       help="run on a Dask cluster: a scheduler's address, or none to start a "
                            "local one (needs the dask extra)")
    group.add_argument("--block", type=arguments.within(64, 65536), default=2048,
                       help="with --dask: block side for whole-slide TIFFs (default: 2048)")
    group.add_argument("--workers", type=arguments.within(1, 1024), default=2,
                       help="with --dask and no address: local worker processes (default: 2)")


def _add_evaluate(commands: Any) -> None:
    evaluate = commands.add_parser(
        "evaluate", help="score predicted labels against ground truth (challenge F1)",
        description="Score <name>_label.tiff predictions against ground truth as the NeurIPS 2022 "
                    "cell segmentation challenge does: F1 at IoU >= 0.5, border cells removed. "
                    "Label stacks (from predict --3d) are matched in 3-D.")
    evaluate.add_argument("--pred", required=True, type=arguments.path,
                          help="folder of predicted <name>_label.tiff")
    evaluate.add_argument("--gt", required=True, type=arguments.path,
                          help="folder of true <name>_label.tiff")
    evaluate.add_argument("--csv", help="also write the per-image table to this CSV file")
    evaluate.add_argument("--threshold", type=float, default=0.5,
                          help="IoU a match needs (default: 0.5)")
    _add_verbosity(evaluate, default=argparse.SUPPRESS)
    evaluate.set_defaults(handler=_evaluate)


def _numba_cache_present() -> bool:
    """Whether the flow-following kernels were compiled before (numba's cache beside them)."""
    import flowseg.representation.masks as masks

    cache = Path(masks.__file__).parent / "__pycache__"
    return cache.is_dir() and any(cache.glob("masks.*.nbi"))


def _train(args: argparse.Namespace) -> int:
    from flowseg.training.dataset import DataConfig
    from flowseg.training.train import FINETUNE_LEARNING_RATE, TrainConfig, train

    pretrained = _pretrained(args.pretrained)
    rate = args.lr if args.lr is not None else (
        FINETUNE_LEARNING_RATE if pretrained else TrainConfig.learning_rate)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, learning_rate=rate,
                         val_fraction=args.val_fraction, val_every=args.val_every,
                         seed=args.seed, device=args.device, num_workers=args.workers,
                         size_head=args.size_head)
    diameter = args.diameter
    if diameter is None and pretrained is not None:  # keep the model's own scale convention
        from flowseg.model.net import read_checkpoint

        diameter = read_checkpoint(pretrained).get("diameter") or None
    data = DataConfig(crop=args.crop, diameter=diameter)
    best = train(args.data_path, args.out, config=config, data=data, resume=args.resume,
                 pretrained=pretrained)
    _say(args, f"trained: {best}")
    return 0


def _pretrained(name: str) -> str | None:
    from flowseg.inference.pipeline import default_model_path

    if name == "none":
        return None
    return str(default_model_path()) if name == "default" else name


def _predict(args: argparse.Namespace) -> int:
    if args.diameter and args.diameter_um:
        raise InputError("give --diameter (pixels) or --diameter-um (micrometres), not both")
    if args.dask is not None:
        return _predict_dask(args)
    from flowseg.apps.predict import Outputs, predict_folder
    from flowseg.model.execution import load_numba_without_scipy

    load_numba_without_scipy()
    if not _numba_cache_present():
        log.info("first run: compiling flowseg's numba kernels once (about 15 s; later runs "
                 "load them from the cache)")

    outputs = Outputs(flows=args.save_flows, overlays=args.save_overlays, csv=args.save_csv,
                      rois=args.save_rois, geojson=args.save_geojson,
                      ome_zarr=args.save_ome_zarr)
    report = predict_folder(
        args.input, args.output, model=args.model, device=args.device, diameter=args.diameter,
        diameter_um=args.diameter_um,
        precision=args.precision, tiles=_tiles(args), masks=_masks(args),
        overwrite=args.overwrite, outputs=outputs,
        max_pixels=args.max_pixels, volume=_volume(args), runtime=args.runtime)
    if report.ignored:
        _say(args, f"ignored: {', '.join(report.ignored)}")
    _say(args, f"{len(report.written)} written, {len(report.skipped)} already there (--overwrite "
               f"to redo), {len(report.failed)} failed"
               + (f": {', '.join(f.split(': ')[0] for f in report.failed)}" if report.failed
                  else ""))
    return 1 if report.failed else 0


def _say(args: argparse.Namespace, text: str) -> None:
    """Print a summary line, unless -q asked for warnings and errors only."""
    if args.verbosity >= 0:
        print(text)


def _volume(args: argparse.Namespace) -> Any:
    if not args.volume:
        if args.stitch is not None or args.anisotropy != 1.0:
            raise InputError("--stitch and --anisotropy apply to z-stacks: add --3d")
        return None
    from flowseg.inference.volume import VolumeConfig

    return VolumeConfig(anisotropy=args.anisotropy, stitch=args.stitch)


def _tiles(args: argparse.Namespace) -> Any:
    from flowseg.inference.tiling import TileConfig

    return TileConfig(tile=args.tile, batch=args.batch, flip_tta=args.tta, border=args.border)


def _masks(args: argparse.Namespace) -> Any:
    """Return the model's saved mask settings with the options given on top (None if none)."""
    given = {name: value for name in ("cellprob_threshold", "flow_threshold", "min_size")
             if (value := getattr(args, name)) is not None}
    if not given:
        return None
    from flowseg.inference.pipeline import default_model_path
    from flowseg.model.net import read_checkpoint
    from flowseg.representation.masks import MaskConfig

    saved = read_checkpoint(args.model or default_model_path()).get("thresholds", {})
    return MaskConfig(**{**saved, **given})


def _predict_dask(args: argparse.Namespace) -> int:
    if args.volume:
        raise InputError("--3d does not work with --dask: z-stacks run on one machine")
    ignored = [name for name, on in (("--save-flows", args.save_flows),
                                     ("--save-overlays", args.save_overlays),
                                     ("--save-csv", args.save_csv), ("--save-rois", args.save_rois))
               if on]
    if ignored:
        raise InputError(f"{', '.join(ignored)} do{'es' if len(ignored) == 1 else ''} not work "
                         "with --dask (--save-geojson does, with the --save-csv measurements)")
    if args.precision != "auto" or args.runtime != "auto":
        raise InputError("--precision and --runtime do not work with --dask: workers choose "
                         "their own (ONNX Runtime float32 on CPUs, float16 on CUDA)")
    from flowseg.apps.cluster import start_client
    from flowseg.apps.distributed import predict_with_dask
    from flowseg.apps.slides import BlockConfig

    with start_client(args.dask or None, workers=args.workers) as client:
        report = predict_with_dask(
            args.input, args.output, client=client, model=args.model, device=args.device,
            blocks=BlockConfig(block=args.block), overwrite=args.overwrite,
            tiles=_tiles(args), masks=_masks(args), diameter=args.diameter,
            geojson=args.save_geojson,
            diameter_um=args.diameter_um, ome_zarr=args.save_ome_zarr)
    _say(args, f"{len(report['written'])} written, {len(report['skipped'])} already there, "
               f"{len(report['failed'])} failed")
    for line in report["failed"]:
        print(f"failed: {line}", file=sys.stderr)
    return 1 if report["failed"] else 0


def _evaluate(args: argparse.Namespace) -> int:
    from flowseg.apps.evaluate import evaluate_folder

    if args.csv and Path(args.csv).is_dir():
        raise InputError(f"--csv {args.csv}: is a folder; give a file name (scores.csv, say)")
    result = evaluate_folder(args.pred, args.gt, threshold=args.threshold)
    print(result.to_table())
    if args.csv:
        result.write_csv(args.csv)
        log.info("wrote %s", args.csv)
    return 1 if result.failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Parameters
    ----------
    argv : sequence of str, optional
        Arguments without the program name; ``sys.argv[1:]`` when omitted.

    Returns
    -------
    code : int
        0 on success, 1 when the command failed or some inputs could not be used, 2 for usage
        errors.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    level = {-1: logging.WARNING, 0: logging.INFO, 1: logging.DEBUG}[args.verbosity]
    logging.basicConfig(level=level, format="%(message)s" if level > logging.DEBUG
                        else "%(levelname)s %(name)s: %(message)s", force=True)
    # tifffile logs what it finds wrong in a file at ERROR, and flowseg then raises its own
    # one-line error naming the file: keep tifffile's quiet unless -v.
    logging.getLogger("tifffile").setLevel(logging.DEBUG if args.verbosity > 0 else logging.CRITICAL)
    for name in ("distributed", "numba"):
        logging.getLogger(name).setLevel(logging.ERROR)
    # distributed sets its own loggers (distributed.scheduler, ...) to INFO: ~30 lines a --dask
    # run. Only their errors reach the console, unless -v.
    for handler in logging.getLogger().handlers if args.verbosity <= 0 else ():
        handler.addFilter(_quiet_dask)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:  # Ctrl-C: outputs are atomic, so nothing half-written is left
        print(f"flowseg {args.command}: interrupted; every file written so far is whole",
              file=sys.stderr)
        return 130
    except (InputError, OSError, MemoryError) as err:  # what the user can fix: one line
        if args.verbosity > 0:
            log.exception("flowseg %s failed", args.command)
        print(f"flowseg {args.command}: error: {_reason(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # a bug: its traceback with -v, one line saying so without
        if args.verbosity > 0:
            raise
        print(f"flowseg {args.command}: internal error: {_reason(err)} (a bug: run again with "
              "-v for the traceback, and report it)", file=sys.stderr)
        return 1


def _quiet_dask(record: logging.LogRecord) -> bool:
    return record.levelno >= logging.ERROR or not record.name.startswith(("distributed",
                                                                           "bokeh", "tornado"))


def _reason(err: BaseException) -> str:
    """Return the first line of an error, without OSError's ``[Errno N]`` prefix."""
    if isinstance(err, OSError) and err.strerror and err.filename:
        return f"{err.filename}: {err.strerror.lower()}"
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text
