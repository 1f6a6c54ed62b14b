"""``minidl summary MODEL``: the layer table of a zoo model."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from .common import build_model
from .options import Formatter, models_help, wrap


def add_parser(subparsers: Any) -> None:
    """Add this subcommand to the ``minidl`` parser's ``subparsers``."""
    p = subparsers.add_parser(
        "summary", formatter_class=Formatter,
        help="print a model's layer table (output shapes, parameters, MACs)",
        description=wrap("Build MODEL from the zoo and print one row per layer: output shape, "
                    "parameters, buffers and multiply-accumulates for one input of shape "
                    "--input."),
        epilog="examples:\n"
               "  minidl summary lenet5 --input 1,32,32\n"
               "  minidl summary resnet18 --input 3,224,224\n"
               "  minidl summary cifar_resnet56 --input 3,32,32 --num-classes 100")
    p.add_argument("model", metavar="MODEL", help=models_help())
    p.add_argument("--input", type=_parse_shape, default=None, metavar="C,H,W",
                   help="shape of one input sample, e.g. 3,224,224")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs")
    p.set_defaults(func=run)


def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input must look like C,H,W (e.g. 3,224,224), "
                                         f"got {text!r}") from None
    if not shape or any(v <= 0 for v in shape):
        raise argparse.ArgumentTypeError(f"--input must be positive sizes, got {text!r}")
    return shape


def run(args: argparse.Namespace) -> int:
    from ..summary import summary  # noqa: PLC0415

    wanted = {}
    if args.num_classes is not None:
        wanted["num_classes"] = args.num_classes
    try:
        model = build_model(args.model, **wanted)
    except (KeyError, TypeError, ValueError) as e:
        print(f"minidl summary: {e}", file=sys.stderr)
        return 2
    shape = args.input
    if shape is None:
        shape = getattr(model, "input_shape", None)
        if shape is None:
            print("minidl summary: give the input shape with --input C,H,W", file=sys.stderr)
            return 2
    summary(model, tuple(shape))
    return 0
