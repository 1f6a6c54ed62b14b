"""``minidl lab NAME``: run one of the lectures' labs, print its table, write its PNG."""
from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from .common import show_result

__all__ = ["add_parser", "run", "HELP"]

#: every lab of ``minidl.flow.labs.LABS`` with its line of help, in the order --help lists
#: them (kept here, as flow.py keeps its own, so that building the parser imports no lab)
HELP = {
    "normalization": "a tanh net trained on inputs centred at 0, fine-tuned on inputs shifted "
                     "by 5 (the 'cloudy day'), with and without a Normalization layer adapted "
                     "to the new data",
    "regularization": "a small training set that overfits, then L1, L2, dropout and max-norm: "
                      "the train/test gap and what each does to the weights",
    "mc-dropout": "Monte Carlo dropout's mean and spread against one softmax pass: correct "
                  "vs. misclassified digits, blends of two digits, calibration",
    "optimizers": "SGD, momentum, Nesterov, Adam, Nadam and RMSprop with constant and 1cycle "
                  "schedules on LeNet-5, and a learning-rate range test",
    "augmentation": "the same small training set with and without random shifts and flips: "
                    "the train/test gap of LeNet-5",
    "transfer": "LeNet-5 pretrained on digits 0-4: accuracy on digits 5-9 (similar) and "
                "pixel-permuted 5-9 (different) against images per class, from scratch, CNN "
                "codes, fine-tuning the top or everything",
    "gan": "a DCGAN on the bundled digits, its samples judged by a LeNet-5 after every epoch: "
           "the share classified with confidence > 0.9, the digits present, the losses over "
           "steps",
}


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``lab`` with one sub-command per lab (:data:`HELP`) to ``subparsers``.

    Each sub-command sets ``func`` (``args.func(args)`` returns an exit code).
    """
    lab = subparsers.add_parser(
        "lab", help="the lectures' labs: run one, print its table, write its PNG",
        description="The lectures' experiments beyond gradient flow (see docs/labs.md). Each "
        "prints its table and writes a PNG with a title, axis labels and a legend (needs "
        "matplotlib); --quick runs a small version in seconds.",
        epilog="example: minidl lab normalization --quick --out norm.png")
    sub = lab.add_subparsers(dest="lab", metavar="NAME")
    sub.required = True
    for name, text in HELP.items():
        p = sub.add_parser(name, help=text, description=text,
                           epilog=f"example: minidl lab {name} --out {name}.png")
        p.add_argument("--quick", action="store_true",
                       help="a small version that runs in seconds")
        p.add_argument("--out", default=f"lab-{name}.png",
                       help="PNG to write (default: %(default)s); what the lab caches for "
                       "repeats goes beside it")
        p.add_argument("--csv", default=None, help="also write the table as CSV here")
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        p.add_argument("--no-plot", action="store_true", help="print the table only")
        p.set_defaults(func=run, lab=name)
    return lab


def run(args: argparse.Namespace) -> int:
    """Run ``args.lab``, print its table, write the PNG (and CSV); exit code 0."""
    from ..flow.labs import get_lab  # noqa: PLC0415

    start = time.perf_counter()
    out = Path(args.out)
    result = get_lab(args.lab)(quick=args.quick, seed=args.seed, cache_dir=out.parent)
    return show_result(result, args.csv, None if args.no_plot else out, args.lab, start)
