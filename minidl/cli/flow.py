"""``minidl flow NAME``: run one gradient-flow experiment, print its table, write its PNG.

The experiments are imported only when one runs, so building the parser stays cheap.
"""
from __future__ import annotations

import argparse
import time
from typing import Any

from ..parallel import blas_threads
from .common import show_result
from .options import positive_int

__all__ = ["add_parser", "run"]

_HELP = {
    "neuron": "the single tanh neuron tanh(x + w): dE/dw against the input shift 0..6, "
              "and Normalization restoring it",
    "depth": "MLP depth sweep (2..50 layers) x activation x init x BatchNorm: per-layer "
             "gradient norms at init and after training, decay factor per layer",
    "parallel": "parallel paths against a chain: how often dE/dw ~ 0 over random inits",
    "residual": "plain against residual nets at depths 20 and 56: block gradients at init "
                "and training loss",
    "bn": "a deep sigmoid net with and without BatchNorm",
}


def _ints(text: str) -> list[int]:
    """An argparse type: comma-separated integers, e.g. ``2,10,50``."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        values = []
    if not values:
        raise argparse.ArgumentTypeError(f"must be comma-separated integers such as 2,10,50, "
                                         f"got {text!r}")
    return values


def _words(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _bn_choice(text: str) -> list[bool]:
    choices = {"both": [False, True], "on": [True], "off": [False]}
    if text not in choices:
        raise argparse.ArgumentTypeError(f"--bn must be one of {sorted(choices)}, got {text!r}")
    return choices[text]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``flow`` with one sub-command per experiment to an argparse ``subparsers``.

    Each sub-command sets ``func`` (call ``args.func(args)``, which returns an exit code).
    Returns the ``flow`` parser.
    """
    flow = subparsers.add_parser(
        "flow", help="gradient-flow lab: run an experiment, print its table, write its PNG",
        description="Gradient-flow experiments of the lectures (see docs/gradient-flow.md). "
        "Each prints its table and writes a PNG (needs matplotlib).",
        epilog="example: minidl flow depth --depths 2,10,50 --out depth.png")
    sub = flow.add_subparsers(dest="experiment", metavar="NAME")
    sub.required = True
    for name, add_options in _OPTIONS.items():
        p = sub.add_parser(name, help=_HELP[name], description=_HELP[name],
                           epilog=f"example: minidl flow {name} --out {name}.png")
        p.add_argument("--out", default=f"flow-{name}.png",
                       help="PNG to write (default: %(default)s)")
        p.add_argument("--csv", default=None, help="also write the table as CSV here")
        p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
        p.add_argument("--no-plot", action="store_true", help="print the table only")
        if name in _LOGS_TRAINING:
            p.add_argument("--tensorboard", metavar="DIR", default=None,
                           help="log every training step's per-layer gradient flow to "
                           "TensorBoard, one run per net in DIR (needs tensorboardX)")
        add_options(p)
        p.set_defaults(func=run, experiment=name)
    return flow


def _neuron_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--samples", type=positive_int, default=512,
                   help="inputs per shift (default 512)")


def _depth_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depths", type=_ints, default=[2, 5, 10, 20, 50],
                   help="comma-separated depths (default 2,5,10,20,50)")
    p.add_argument("--acts", type=_words, default=["sigmoid", "tanh", "relu"],
                   help="activations (default sigmoid,tanh,relu)")
    p.add_argument("--inits", type=_words, default=["naive", "glorot", "he"],
                   help="initialisations (default naive,glorot,he)")
    p.add_argument("--bn", type=_bn_choice, default=[False, True],
                   help="BatchNorm: both, on or off (default both)")
    p.add_argument("--width", type=positive_int, default=32, help="hidden width (default 32)")
    p.add_argument("--steps", type=positive_int, default=100, help="SGD steps (default 100)")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")


def _parallel_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--max-paths", type=positive_int, default=8, help="largest n (default 8)")
    p.add_argument("--trials", type=positive_int, default=4000,
                   help="random inits per n (default 4000)")
    p.add_argument("--scale", type=float, default=2.0, help="weight std (default 2)")
    p.add_argument("--tol", type=float, default=1e-3, help="|dE/dw| below this is ~0")


def _residual_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depths", type=_ints, default=[20, 56], help="depths (default 20,56)")
    p.add_argument("--arch", choices=["mlp", "cifar"], default="mlp",
                   help="mlp: Linear twin of the CIFAR ResNet (default, fast); cifar: "
                   "minidl.models.cifar_resnet itself (slow on a CPU)")
    p.add_argument("--width", type=positive_int, default=32, help="width (default 32)")
    p.add_argument("--steps", type=positive_int, default=500, help="SGD steps (default 500)")
    p.add_argument("--no-zero-init", action="store_true",
                   help="skip the zero-init residual nets (each block starting as identity)")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")


def _bn_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--depth", type=positive_int, default=20, help="layers (default 20)")
    p.add_argument("--steps", type=positive_int, default=200, help="SGD steps (default 200)")
    p.add_argument("--lr", type=float, default=0.05, help="learning rate (default 0.05)")


# the experiments that train nets, whose steps --tensorboard can log
_LOGS_TRAINING = ("depth", "residual", "bn")

# the experiments in the order ``minidl flow --help`` lists them, each with its own options
_OPTIONS = {"neuron": _neuron_options, "depth": _depth_options,
            "parallel": _parallel_options, "residual": _residual_options, "bn": _bn_options}


def _run_experiment(args: argparse.Namespace) -> Any:
    from ..flow import bn, depth, neuron, parallel, residual  # noqa: PLC0415 - only when running

    name = args.experiment
    if name == "neuron":
        return neuron(samples=args.samples, seed=args.seed)
    if name == "depth":
        return depth(depths=args.depths, activations=args.acts, inits=args.inits,
                     batchnorm=args.bn, width=args.width, steps=args.steps, lr=args.lr,
                     seed=args.seed, tensorboard=args.tensorboard)
    if name == "parallel":
        return parallel(max_paths=args.max_paths, trials=args.trials, scale=args.scale,
                        tol=args.tol, seed=args.seed)
    if name == "residual":
        return residual(depths=args.depths, arch=args.arch, width=args.width,
                        steps=args.steps, lr=args.lr, zero_init=not args.no_zero_init,
                        seed=args.seed, tensorboard=args.tensorboard)
    if name == "bn":
        return bn(depth=args.depth, steps=args.steps, lr=args.lr, seed=args.seed,
                  tensorboard=args.tensorboard)
    raise ValueError(f"minidl flow: unknown experiment {name!r}")


def run(args: argparse.Namespace) -> int:
    """Run ``args.experiment``, print its table, write the PNG (and CSV); exit code 0."""
    start = time.perf_counter()
    with blas_threads(1):  # the lab's small MLP GEMMs run faster on one BLAS thread
        result = _run_experiment(args)
    return show_result(result, args.csv, None if args.no_plot else args.out, args.experiment,
                       start)
