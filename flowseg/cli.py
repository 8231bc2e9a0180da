"""Command line: ``python -m flowseg evaluate``.

Heavy modules are imported inside the handlers, after parsing, so that ``--help`` answers at once.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

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
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    evaluate = commands.add_parser(
        "evaluate", help="score predicted labels against ground truth (challenge F1)",
        description="Score <name>_label.tiff predictions against ground truth as the NeurIPS 2022 "
                    "cell segmentation challenge does: F1 at IoU >= 0.5, border cells removed.")
    evaluate.add_argument("--pred", required=True, help="folder of predicted <name>_label.tiff")
    evaluate.add_argument("--gt", required=True, help="folder of true <name>_label.tiff")
    evaluate.add_argument("--csv", help="also write the per-image table to this CSV file")
    evaluate.add_argument("--threshold", type=float, default=0.5,
                          help="IoU a match needs (default: 0.5)")
    evaluate.set_defaults(handler=_evaluate)
    return parser


def _evaluate(args: argparse.Namespace) -> int:
    from flowseg.metrics import evaluate_folder

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
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(message)s")
    try:
        return int(args.handler(args))
    except (FileNotFoundError, ValueError) as err:
        print(f"flowseg {args.command}: error: {err}", file=sys.stderr)
        return 1
