"""``minidl summary MODEL``: the layer table of a zoo model; ``--zoo-table``: every model."""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..summary import summary
from .common import build_model
from .options import Formatter, models_help, positive_int, wrap


def add_parser(subparsers: Any) -> None:
    """Add this subcommand to the ``minidl`` parser's ``subparsers``."""
    p = subparsers.add_parser(
        "summary", formatter_class=Formatter,
        help="print a model's layer table (output shapes, parameters, MACs)",
        description=wrap("Build MODEL from the zoo and print one row per layer: output shape, "
                    "parameters, buffers and multiply-accumulates for one input of shape "
                    "--input (default: the model's own input shape). With --zoo-table, "
                    "print the Markdown table of every zoo model, measured against the "
                    "published figures (docs/models.md)."),
        epilog="examples:\n"
               "  minidl summary lenet5 --input 1,32,32\n"
               "  minidl summary resnet18 --input 3,224,224\n"
               "  minidl summary cifar_resnet56 --input 3,32,32 --num-classes 100\n"
               "  minidl summary cifar_resnet20 --max-rows 10\n"
               "  minidl summary --zoo-table     # every model; a minute or two")
    p.add_argument("model", metavar="MODEL", nargs="?", help=models_help())
    p.add_argument("--input", type=_parse_shape, default=None, metavar="C,H,W",
                   help="shape of one input sample, e.g. 3,224,224")
    p.add_argument("--num-classes", type=positive_int, default=None, help="classifier outputs")
    p.add_argument("--max-rows", type=positive_int, default=None, metavar="N",
                   help="show only the first and last N/2 rows of a longer table")
    p.add_argument("--zoo-table", action="store_true",
                   help="print the Markdown table of every zoo model instead")
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
    """Print the layer table (or the zoo table); exit code 0, 2 on a usage error."""
    from .. import models  # noqa: PLC0415 - the zoo loads only when a summary is asked for

    if args.zoo_table:
        if args.model is not None:
            print(f"minidl summary: give MODEL ({args.model}) or --zoo-table, not both",
                  file=sys.stderr)
            return 2
        print(zoo_table())
        return 0
    if args.model is None:
        print("minidl summary: give a MODEL (or --zoo-table)", file=sys.stderr)
        return 2
    wanted = {}
    if args.num_classes is not None:
        wanted["num_classes"] = args.num_classes
    try:
        with models.skip_init():  # the table does not depend on the weights' values
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
    summary(model, tuple(shape), max_rows=args.max_rows)
    return 0


# Published figures: parameters from the papers / torchvision's model cards, GMACs from
# torchvision's "GFLOPS" column (which counts multiply-adds). None: no published figure.
PUBLISHED: dict[str, tuple[dict[str, Any], int | str | None, float | None]] = {
    "lenet5": ({}, 61_706, None),
    "lenet5 (1998)": ({"variant": "1998"}, 60_000, None),
    "alexnet": ({}, 61_100_840, 0.714),
    # Sze et al. 2017 ("Efficient processing of deep neural networks"): 61 M, 724 M MACs
    "alexnet (original, groups=2)": ({"variant": "original", "groups": 2}, 60_965_224, 0.724),
    "vgg11": ({}, 132_863_336, 7.609), "vgg11_bn": ({}, 132_868_840, 7.609),
    "vgg13": ({}, 133_047_848, 11.308), "vgg13_bn": ({}, 133_053_736, 11.308),
    "vgg16": ({}, 138_357_544, 15.470), "vgg16_bn": ({}, 138_365_992, 15.470),
    "vgg19": ({}, 143_667_240, 19.632), "vgg19_bn": ({}, 143_678_248, 19.632),
    "vgg (C)": ({"config": "C"}, "about 134 M", None),
    "googlenet": ({"aux_logits": False}, 6_624_904, 1.498),
    "googlenet (aux)": ({"aux_logits": True}, 13_004_888, 1.498),
    "googlenet (faithful)": ({"aux_logits": False, "faithful": True}, 6_998_552, None),
    "resnet18": ({}, 11_689_512, 1.814), "resnet34": ({}, 21_797_672, 3.664),
    "resnet50": ({}, 25_557_032, 4.089), "resnet101": ({}, 44_549_160, 7.801),
    "resnet152": ({}, 60_192_808, 11.514),
    "plain18": ({}, None, None), "plain34": ({}, None, None),
    "cifar_resnet20": ({}, "0.27 M", None), "cifar_resnet32": ({}, "0.46 M", None),
    "cifar_resnet44": ({}, "0.66 M", None), "cifar_resnet56": ({}, "0.85 M", None),
    "cifar_resnet110": ({}, "1.7 M", None),
    "densenet121": ({}, 7_978_856, 2.834), "densenet169": ({}, 14_149_480, 3.360),
    "densenet201": ({}, 20_013_928, 4.291),
    "densenet_cifar (BC, L=100, k=12)": ({"depth": 100, "growth_rate": 12}, "0.8 M", None),
    "dcgan_generator (28x28)": ({}, None, None),
    "dcgan_discriminator (28x28)": ({}, None, None),
    "wide_and_deep": ({}, None, None),
}


def zoo_table(names: Sequence[str] | None = None) -> str:
    """A Markdown table of the zoo (``names``: keys of :data:`PUBLISHED`, default all):
    parameters and GMACs measured by :func:`minidl.summary.summary` at batch 1, next to
    the published figures. This is the table of docs/models.md."""
    from .. import models  # noqa: PLC0415 - the zoo loads when the table is asked for

    def macs(g: float | None) -> str:
        if g is None:
            return "-"
        return f"{g:.3f} G" if g >= 0.1 else f"{g * 1e3:.3f} M"

    lines = ["| model | input | params (measured) | params (published) | MACs (measured) "
             "| MACs (published) |", "|---|---|---:|---:|---:|---:|"]
    for label in names or PUBLISHED:
        kw, p_pub, g_pub = PUBLISHED[label]
        name = label.split(" ")[0]
        with models.skip_init():
            model = models.get_model(name, **kw)
        s = summary(model, model.input_shape, verbose=False)
        trainable = s.trainable_params
        shown = f"{trainable:,}" if trainable == s.total_params else \
            f"{trainable:,} (+{s.frozen_params:,} fixed)"
        pub = "-" if p_pub is None else p_pub if isinstance(p_pub, str) else f"{p_pub:,}"
        lines.append(
            f"| {label} | {'+'.join('x'.join(map(str, sh)) for sh in s.input_shapes)} "
            f"| {shown} | {pub} | {macs(s.gmacs)} | {macs(g_pub)} |")
    return "\n".join(lines)
