"""``minidl train-gan``: a DCGAN on the bundled digits, a PNG grid of samples each epoch."""
from __future__ import annotations

import argparse
from typing import Any

from .options import Formatter, positive_int


def add_parser(subparsers: Any) -> None:
    """Add this subcommand to the ``minidl`` parser's ``subparsers``."""
    p = subparsers.add_parser(
        "train-gan", formatter_class=Formatter,
        help="train a DCGAN on the bundled digits; a PNG grid of samples each epoch",
        description="Train dcgan_generator/dcgan_discriminator with the non-saturating loss "
                    "(minidl.models.gan.GANTrainer) and write OUT/samples_epoch_K.png "
                    "sample grids.",
        epilog="example:\n  minidl train-gan --epochs 10 --out gan_out")
    p.add_argument("--dataset", default="mnist-subset", choices=["mnist-subset"],
                   help="training images")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="passes over the data (default: GANRecipe's, 20)")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help="images per step (default: GANRecipe's, 64)")
    p.add_argument("--out", default="gan_out", help="folder for the sample grids")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train the DCGAN, writing a sample grid each epoch; exit code 0."""
    from ..models.gan import train_gan  # noqa: PLC0415

    train_gan(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
              out_dir=args.out, seed=args.seed)
    return 0
