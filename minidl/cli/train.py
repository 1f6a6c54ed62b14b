"""``minidl train MODEL``: a zoo model (or an MLP) on a dataset, with checkpoints and resume."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..parallel import blas_threads
from .common import build_model, device_or_none, pad_to, plot_curves
from .options import Formatter, add_device_option, add_run_options, models_help, positive_int, wrap

DATASETS = ("mnist-subset", "mnist", "fashion-mnist", "cifar10", "spirals")


def add_parser(subparsers: Any) -> None:
    """Add this subcommand to the ``minidl`` parser's ``subparsers``."""
    p = subparsers.add_parser(
        "train", formatter_class=Formatter, help="train a zoo model on a dataset",
        description=wrap("Train MODEL on a dataset, evaluating on its test split after every "
                    "epoch. Writes OUT/checkpoint.npz (best test accuracy), "
                    "OUT/checkpoint.last.npz (every epoch; --resume continues from it "
                    "exactly), OUT/history.csv and OUT/curves.png. MNIST, Fashion-MNIST and "
                    "CIFAR-10 are read from --data-root (see --download); mnist-subset is "
                    "bundled and spirals is generated. MODEL 'mlp' is a two-hidden-layer "
                    "perceptron (for spirals, or flattened images)."),
        epilog="examples:\n"
               "  minidl train lenet5 --dataset mnist-subset --epochs 10 --optimizer adam \\\n"
               "      --lr 3e-3 --schedule onecycle --augment\n"
               "  minidl train mlp --dataset spirals --epochs 50 --lr 0.02\n"
               "  minidl train cifar_resnet20 --dataset cifar10 --download --epochs 30 \\\n"
               "      --optimizer sgd --lr 0.1 --schedule onecycle --augment --device cuda\n"
               "  minidl train lenet5 --epochs 20 --resume   # continue an interrupted run")
    p.add_argument("model", metavar="MODEL", help=models_help() + ", or 'mlp'")
    p.add_argument("--dataset", choices=DATASETS, default="mnist-subset",
                   help="dataset (default: %(default)s)")
    p.add_argument("--epochs", type=positive_int, default=10,
                   help="total epochs of the run (default: %(default)s)")
    p.add_argument("--batch-size", type=positive_int, default=64,
                   help="batch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="learning rate, the peak with --schedule onecycle (default: %(default)s)")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "nadam"), default="adam",
                   help="optimizer (default: %(default)s)")
    p.add_argument("--momentum", type=float, default=0.9,
                   help="SGD momentum (default: %(default)s)")
    p.add_argument("--weight-decay", type=float, default=0.0,
                   help="weight decay (default: %(default)s)")
    p.add_argument("--schedule", choices=("none", "onecycle", "cosine", "step"),
                   default="none",
                   help="learning-rate schedule (default: %(default)s)")
    p.add_argument("--augment", action="store_true",
                   help="random shifts (and flips for CIFAR-10)")
    p.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm")
    add_device_option(p)
    add_run_options(p, out="minidl-run", blas_threads=0,
                    blas_advice="Try 1 for small models on a busy machine")
    p.add_argument("--tensorboard", metavar="DIR", default=None,
                   help="also log loss, metrics and learning rate per step and epoch to "
                   "TensorBoard in DIR (needs tensorboardX; view: tensorboard --logdir DIR)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.last.npz when it exists")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only the first N training samples (and N/4 test samples)")
    p.add_argument("--data-root", default=None,
                   help="folder with the dataset files (default $MINIDL_DATA or "
                        "~/.minidl/datasets)")
    p.add_argument("--download", action="store_true",
                   help="download missing dataset files (checksums verified)")
    p.set_defaults(func=run)


def _load_dataset(name: str, root: str | None, download: bool
                  ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], int]:
    """(train arrays, test arrays, number of classes) of a dataset name."""
    from .. import data  # noqa: PLC0415

    if name == "mnist-subset":
        return data.mnist_subset("train"), data.mnist_subset("test"), 10
    if name in ("mnist", "fashion-mnist"):
        load = data.mnist if name == "mnist" else data.fashion_mnist
        return (load(root=root, train=True, download=download),
                load(root=root, train=False, download=download), 10)
    if name == "cifar10":
        return (data.cifar10(root=root, train=True, download=download),
                data.cifar10(root=root, train=False, download=download), 10)
    if name == "spirals":
        return (data.spirals(n_per_class=300, classes=3, seed=0),
                data.spirals(n_per_class=100, classes=3, seed=1), 3)
    raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")


def _mlp(in_features: int, classes: int, hidden: int = 64, flatten: bool = False) -> Any:
    """Two hidden ReLU layers: (N, in_features) -> (N, classes); with ``flatten`` it reads
    images (N, C, H, W), C*H*W = in_features, through an ``nn.Flatten`` first."""
    from .. import nn  # noqa: PLC0415

    first = [nn.Flatten()] if flatten else []
    return nn.Sequential(*first, nn.Linear(in_features, hidden), nn.ReLU(),
                         nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, classes))


def _make_optimizer(name: str, params: Any, lr: float, momentum: float = 0.9,
                    weight_decay: float = 0.0) -> Any:
    from .. import optim  # noqa: PLC0415

    extra = {"momentum": momentum} if name == "sgd" else {}
    return optim.get_optimizer(name, params, lr=lr, weight_decay=weight_decay, **extra)


def _make_scheduler(name: str, optimizer: Any, lr: float, epochs: int, steps: int) -> Any:
    from ..optim import lr_scheduler  # noqa: PLC0415

    if name == "none":
        return None
    if name == "onecycle":
        return lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=epochs * steps)
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    if name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(1, epochs // 3), gamma=0.1)
    raise ValueError(f"unknown schedule {name!r}")


class _Refused(Exception):
    """A reason not to train, printed as ``minidl train: <reason>`` with exit code 2."""


def run(args: argparse.Namespace) -> int:
    """Train MODEL on --dataset; exit code 0, 1 when the loss diverged, 2 on a usage error."""
    import minidl as md  # noqa: PLC0415

    from ..data import DataLoader  # noqa: PLC0415
    from ..train import (  # noqa: PLC0415
        CSVLogger,
        ModelCheckpoint,
        NonFiniteLossError,
        TensorBoard,
        Trainer,
    )

    device = device_or_none(args.device, "train")
    if device is None:
        return 2
    md.manual_seed(args.seed)
    try:
        (x_train, y_train), (x_test, y_test), classes = _data(args)
        images = x_train.ndim == 4
        model, x_train, x_test = _model(args, x_train, x_test, classes)
    except _Refused as e:
        print(f"minidl train: {e}", file=sys.stderr)
        return 2
    train_tf, test_tf = _transforms(args, x_train) if images else (None, None)
    try:
        model, sampler, batch_size = _data_parallel(model, args, len(y_train))
    except _Refused as e:
        print(f"minidl train: {e}", file=sys.stderr)
        return 2
    train_loader = DataLoader((x_train, y_train), batch_size=batch_size,
                              shuffle=sampler is None, seed=args.seed, device=device,
                              transform=train_tf, sampler=sampler)
    test_loader = DataLoader((x_test, y_test), batch_size=max(args.batch_size, 256),
                             device=device, transform=test_tf)
    optimizer = _make_optimizer(args.optimizer, model.parameters(), args.lr, args.momentum,
                                args.weight_decay)
    scheduler = _make_scheduler(args.schedule, optimizer, args.lr, args.epochs,
                                len(train_loader))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = ModelCheckpoint(out / "checkpoint.npz", monitor="val_accuracy")
    callbacks = [checkpoint, CSVLogger(out / "history.csv")]
    if args.tensorboard:
        callbacks.append(TensorBoard(args.tensorboard))
    metrics = ["accuracy"] + (["top5"] if classes > 5 else [])
    trainer = Trainer(model, optimizer, "cross_entropy", metrics=metrics, device=device,
                      callbacks=callbacks, scheduler=scheduler,
                      verbose=1 if sys.stderr.isatty() else 2, grad_clip=args.grad_clip)
    print(f"minidl train: {args.model} ({model.num_parameters():,} parameters) on "
          f"{args.dataset} ({len(x_train):,} train / {len(x_test):,} test), {args.optimizer}"
          f" lr {args.lr:g}" + (f" + {args.schedule}" if args.schedule != "none" else "")
          + f", batch {args.batch_size}, {args.epochs} epochs, on {device}")
    if args.resume:
        resume = Path(str(checkpoint.last_path))
        if resume.exists():
            trainer.load_checkpoint(resume, train_loader)
            print(f"resuming from {resume} after epoch {trainer.epoch}")
        else:
            print(f"--resume: no checkpoint at {resume} yet; starting afresh")
    try:
        with blas_threads(args.blas_threads):
            history = trainer.fit(train_loader, epochs=args.epochs, val_loader=test_loader)
    except NonFiniteLossError as e:
        print(f"minidl train: {e} (see --lr and --grad-clip)", file=sys.stderr)
        return 1
    from ..distributed import is_main_process  # noqa: PLC0415

    if is_main_process():
        _report(args, history, checkpoint, out)
    return 0


def _data_parallel(model: Any, args: argparse.Namespace, n: int) -> tuple[Any, Any, int]:
    """Under ``mpiexec -n K`` (K > 1): the model with SyncBatchNorm in DDP, each rank's
    sampler, and the per-rank batch size that keeps ``--batch-size`` the global batch."""
    from .. import distributed as dist  # noqa: PLC0415

    k = dist.get_world_size()
    if k == 1:
        return model, None, args.batch_size
    if args.batch_size % k:
        raise _Refused(f"--batch-size {args.batch_size} is the global batch; it must be a "
                       f"multiple of the {k} ranks")
    model = dist.DistributedDataParallel(dist.convert_sync_batchnorm(model))
    if dist.get_rank() != 0:   # rank 0 speaks (and writes the curves) for the job
        sys.stdout = open(os.devnull, "w", encoding="utf-8")  # noqa: SIM115
    return model, dist.DistributedSampler(range(n), seed=args.seed), args.batch_size // k


def _data(args: argparse.Namespace) -> tuple[tuple[np.ndarray, np.ndarray],
                                             tuple[np.ndarray, np.ndarray], int]:
    """(train arrays, test arrays, classes) of ``--dataset``, cut to ``--limit``."""
    try:
        (x_train, y_train), (x_test, y_test), classes = _load_dataset(
            args.dataset, args.data_root, args.download)
    except FileNotFoundError as e:
        raise _Refused(f"{e}\n(on the command line: --data-root DIR, or --download)") from None
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
        x_test, y_test = x_test[:max(1, args.limit // 4)], y_test[:max(1, args.limit // 4)]
    return (x_train, y_train), (x_test, y_test), classes


def _model(args: argparse.Namespace, x_train: np.ndarray, x_test: np.ndarray,
           classes: int) -> tuple[Any, np.ndarray, np.ndarray]:
    """The model of ``MODEL``, and the inputs in the shape it reads (padded to 32x32 for
    LeNet). The MLP flattens images itself, so that they are normalised and augmented as
    images first."""
    images = x_train.ndim == 4
    if args.model == "mlp":
        return (_mlp(int(np.prod(x_train.shape[1:])), classes, flatten=images), x_train,
                x_test)
    if not images:
        raise _Refused(f"{args.model} needs image data; use the 'mlp' model for "
                       f"{args.dataset}")
    try:
        model = build_model(args.model, num_classes=classes, in_channels=x_train.shape[1])
    except (TypeError, ValueError) as e:
        raise _Refused(str(e)) from None
    if args.model.startswith("lenet"):
        x_train, x_test = pad_to(x_train, 32), pad_to(x_test, 32)
    return model, x_train, x_test


def _transforms(args: argparse.Namespace, x_train: np.ndarray) -> tuple[Any, Any]:
    """(train, test) transforms of NCHW images: normalise with the dataset's statistics;
    with ``--augment`` the training images are also shifted (and flipped, for CIFAR-10)."""
    from ..data import datasets as ds  # noqa: PLC0415
    from ..data.transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip  # noqa: PLC0415

    stats = {"cifar10": (ds.CIFAR10_MEAN, ds.CIFAR10_STD),
             "fashion-mnist": (ds.FASHION_MNIST_MEAN, ds.FASHION_MNIST_STD)}
    mean, std = stats.get(args.dataset, (ds.MNIST_MEAN, ds.MNIST_STD))
    test_tf = Normalize(mean, std)
    steps = [test_tf]
    if args.augment:
        size = x_train.shape[-1]
        shift = [RandomCrop(size, padding=4 if args.dataset == "cifar10" else 2)]
        flip = [RandomHorizontalFlip()] if args.dataset == "cifar10" else []
        steps = shift + flip + steps
    return Compose(steps), test_tf


def _report(args: argparse.Namespace, history: Any, checkpoint: Any, out: Path) -> None:
    """The final line, the curves and the list of files written."""
    last = history.last() if history else {}
    if last:
        print(f"final: test accuracy {last.get('val_accuracy', float('nan')):.2%}, test loss "
              f"{last.get('val_loss', float('nan')):.4f}; best test accuracy "
              f"{checkpoint.best if checkpoint.best is not None else float('nan'):.2%} "
              f"(saved in {checkpoint.path})")
        plot_curves(history, out / "curves.png", f"{args.model} on {args.dataset}")
    print(f"wrote {out}/: checkpoint.npz (best), checkpoint.last.npz (resume with --resume), "
          f"history.csv" + (", curves.png" if (out / "curves.png").exists() else ""))
