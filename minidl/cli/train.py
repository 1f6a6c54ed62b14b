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
from .train_plan import PLAN_DEFAULTS, PlanError, resolve_plan

DATASETS = ("mnist-subset", "mnist", "fashion-mnist", "cifar10", "spirals")


def add_parser(subparsers: Any) -> None:
    """Add this subcommand to the ``minidl`` parser's ``subparsers``."""
    d = PLAN_DEFAULTS
    p = subparsers.add_parser(
        "train", formatter_class=Formatter, help="train a zoo model on a dataset",
        description=wrap("Train MODEL on a dataset. A validation split carved from the "
                    "training data (--val-split) is evaluated after every epoch and picks "
                    "the best epoch; the test split is evaluated once, at the end, on that "
                    "best model. Writes OUT/checkpoint.npz (best validation accuracy), "
                    "OUT/checkpoint.last.npz (every epoch, and where Ctrl-C or SIGTERM stop "
                    "mid-epoch; --resume continues from it exactly), OUT/history.csv and "
                    "OUT/curves.png. A resumed run takes the options not given from its "
                    "checkpoint. MNIST, Fashion-MNIST and CIFAR-10 are read from --data-root "
                    "(see --download); mnist-subset is bundled and spirals is generated. "
                    "MODEL 'mlp' is a two-hidden-layer perceptron (for spirals, or flattened "
                    "images). Exit codes: 0 done, 1 the loss diverged, 2 a usage error, 130 "
                    "stopped by Ctrl-C, 143 stopped by SIGTERM."),
        epilog="examples:\n"
               "  minidl train lenet5 --dataset mnist-subset --epochs 10 --optimizer adam \\\n"
               "      --lr 3e-3 --schedule onecycle --augment\n"
               "  minidl train mlp --dataset spirals --epochs 50 --lr 0.02\n"
               "  minidl train cifar_resnet20 --dataset cifar10 --download --epochs 30 \\\n"
               "      --optimizer sgd --lr 0.1 --schedule onecycle --augment --device cuda\n"
               "  minidl train lenet5 --resume   # continue an interrupted run exactly")
    p.add_argument("model", metavar="MODEL", help=models_help() + ", or 'mlp'")
    p.add_argument("--dataset", choices=DATASETS, default=None,
                   help=f"dataset (default: {d['dataset']})")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"total epochs of the run (default: {d['epochs']})")
    p.add_argument("--batch-size", type=positive_int, default=None,
                   help=f"batch size (default: {d['batch_size']})")
    p.add_argument("--lr", type=float, default=None,
                   help=f"learning rate, the peak with --schedule onecycle (default: {d['lr']})")
    p.add_argument("--optimizer", choices=("sgd", "adam", "adamw", "nadam"), default=None,
                   help=f"optimizer (default: {d['optimizer']})")
    p.add_argument("--momentum", type=float, default=None,
                   help=f"SGD momentum (default: {d['momentum']})")
    p.add_argument("--weight-decay", type=float, default=None,
                   help=f"weight decay (default: {d['weight_decay']})")
    p.add_argument("--schedule", choices=("none", "onecycle", "cosine", "step"), default=None,
                   help=f"learning-rate schedule (default: {d['schedule']})")
    p.add_argument("--augment", action="store_true", default=None,
                   help="random shifts (and flips for CIFAR-10)")
    p.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm")
    p.add_argument("--val-split", type=_fraction, default=None, metavar="F",
                   help=f"fraction of the training data held out for validation, which picks "
                        f"the best epoch; 0: none, pick by training accuracy (default: "
                        f"{d['val_split']})")
    add_device_option(p)
    add_run_options(p, out="minidl-run", blas_threads=0,
                    blas_advice="Try 1 for small models on a busy machine", resumable=True)
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


def _fraction(text: str) -> float:
    """An argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), got {text!r}")
    return value


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
    """Train MODEL on --dataset; exit code 0, 1 when the loss diverged, 2 on a usage error,
    130 / 143 when stopped by SIGINT / SIGTERM (the state saved for --resume)."""
    from ..train import NonFiniteLossError  # noqa: PLC0415

    device = device_or_none(args.device, "train")
    if device is None:
        return 2
    try:
        cfg, state = _plan(args)
        run_ = _Run(cfg, device)
    except _Refused as e:
        print(f"minidl train: {e}", file=sys.stderr)
        return 2
    if state is not None:
        run_.trainer.load_state_dict(state, run_.train_loader)
        print(f"resuming from {run_.resume_path} after epoch {run_.trainer.epoch}"
              + _mid_epoch(state))
    try:
        with blas_threads(args.blas_threads):
            history = run_.trainer.fit(run_.train_loader, epochs=cfg.epochs,
                                       val_loader=run_.val_loader)
    except NonFiniteLossError as e:
        hint = " (see --lr and --grad-clip)" if e.cause == "training" else ""
        print(f"minidl train: {e}{hint}", file=sys.stderr)
        return 1
    run_.report(history)
    return 0


def _plan(args: argparse.Namespace) -> tuple[argparse.Namespace, dict[str, Any] | None]:
    """The options of the run (command line, else the checkpoint's, else the defaults) and
    the checkpoint state to resume from (None for a fresh run)."""
    from ..train import load_checkpoint  # noqa: PLC0415

    path = Path(args.out) / "checkpoint.last.npz"
    state = None
    if args.resume:
        if path.exists():
            state = load_checkpoint(path)
        else:
            print(f"--resume: no checkpoint at {path} yet; starting afresh")
    saved = (state.get("meta") or {}).get("plan") if state is not None else None
    if state is not None and saved is None:
        raise _Refused(f"--resume: {path} was written without its run's options (by an older "
                       f"minidl or by Python code); resume it with Trainer.fit(..., "
                       f"resume=path), or give another --out for a new run")
    try:
        plan = resolve_plan(args, saved, str(path))
    except PlanError as e:
        raise _Refused(str(e)) from None
    if state is not None and int(state["epoch"]) >= plan["epochs"]:
        more = ("its --schedule cannot be stretched, so give another --out for a new run"
                if plan["schedule"] in ("onecycle", "cosine") else
                "give a larger --epochs to train on")
        raise _Refused(f"--resume: the run in {args.out} has done {int(state['epoch'])} of "
                       f"--epochs {plan['epochs']} already; {more}")
    cfg = argparse.Namespace(**{**vars(args), **plan})
    return cfg, state


def _mid_epoch(state: dict[str, Any]) -> str:
    progress = state.get("progress")
    return f", in epoch {int(progress['epoch']) + 1} at step {int(progress['step'])}" \
        if progress else ""


class _Run:
    """The pieces of one ``minidl train`` run: data splits, loaders, model, trainer."""

    def __init__(self, cfg: argparse.Namespace, device: str) -> None:
        import minidl as md  # noqa: PLC0415

        from ..data import DataLoader  # noqa: PLC0415
        from ..train import CSVLogger, ModelCheckpoint, TensorBoard, Trainer  # noqa: PLC0415

        self.cfg, self.out = cfg, Path(cfg.out)
        md.manual_seed(cfg.seed)
        (x_train, y_train), (x_val, y_val), (x_test, y_test), classes = _data(cfg)
        images = x_train.ndim == 4
        model, (x_train, x_val, x_test) = _model(cfg, (x_train, x_val, x_test), classes)
        train_tf, test_tf = _transforms(cfg, x_train) if images else (None, None)
        big = max(cfg.batch_size, 256)
        model, sampler, batch_size = _data_parallel(model, cfg, len(y_train))
        self.train_loader = DataLoader((x_train, y_train), batch_size=batch_size,
                                       shuffle=sampler is None, seed=cfg.seed, device=device,
                                       transform=train_tf, sampler=sampler)
        self.val_loader = DataLoader((x_val, y_val), batch_size=big, device=device,
                                     transform=test_tf) if len(x_val) else None
        self.test_loader = DataLoader((x_test, y_test), batch_size=big, device=device,
                                      transform=test_tf)
        optimizer = _make_optimizer(cfg.optimizer, model.parameters(), cfg.lr, cfg.momentum,
                                    cfg.weight_decay)
        scheduler = _make_scheduler(cfg.schedule, optimizer, cfg.lr, cfg.schedule_epochs,
                                    len(self.train_loader))
        self.out.mkdir(parents=True, exist_ok=True)
        self.checkpoint = ModelCheckpoint(
            self.out / "checkpoint.npz",
            monitor="val_accuracy" if self.val_loader is not None else "accuracy")
        self.resume_path = self.checkpoint.last_path
        metrics = ["accuracy"] + (["top5"] if classes > 5 else [])
        callbacks = [self.checkpoint, CSVLogger(self.out / "history.csv")]
        if cfg.tensorboard:
            callbacks.append(TensorBoard(cfg.tensorboard))
        self.trainer = Trainer(model, optimizer, "cross_entropy", metrics=metrics,
                               device=device, scheduler=scheduler, callbacks=callbacks,
                               verbose=1 if sys.stderr.isatty() else 2,
                               grad_clip=cfg.grad_clip)
        plan = {k: getattr(cfg, k) for k in ("model", *PLAN_DEFAULTS, "schedule_epochs")}
        self.trainer.meta = {"plan": plan}
        self.trainer.resume_command = _resume_command(cfg)
        print(f"minidl train: {cfg.model} ({model.num_parameters():,} parameters) on "
              f"{cfg.dataset} ({len(x_train):,} train / {len(x_val):,} validation / "
              f"{len(x_test):,} test), {cfg.optimizer} lr {cfg.lr:g}"
              + (f" + {cfg.schedule}" if cfg.schedule != "none" else "")
              + f", batch {cfg.batch_size}, {cfg.epochs} epochs, on {device}")

    def report(self, history: Any) -> None:
        """The test accuracy of the best epoch's model (the one evaluation of the test
        set), the curves and the list of files written."""
        from ..distributed import is_main_process  # noqa: PLC0415
        from ..train import load_checkpoint  # noqa: PLC0415

        ck, trainer = self.checkpoint, self.trainer
        best = ck.best_path or ck.last_path
        if best is not None and Path(best).exists():
            trainer.model.load_state_dict(load_checkpoint(best)["model"])
        test = trainer.evaluate(self.test_loader)
        picked = "validation" if self.val_loader is not None else "training"
        best_epoch = _best_epoch(history, f"{'val_' if self.val_loader else ''}accuracy")
        print(f"final: test accuracy {test['accuracy']:.2%}, test loss {test['loss']:.4f} "
              f"of the best epoch ({best_epoch}, by {picked} accuracy "
              f"{ck.best if ck.best is not None else float('nan'):.2%}; saved in {best})")
        if is_main_process():  # every rank evaluates (a collective); rank 0 writes
            plot_curves(history, self.out / "curves.png",
                        f"{self.cfg.model} on {self.cfg.dataset}", val_label="validation")
        print(f"wrote {self.out}/: checkpoint.npz (best), checkpoint.last.npz (resume with "
              f"--resume), history.csv"
              + (", curves.png" if (self.out / "curves.png").exists() else ""))


def _best_epoch(history: Any, key: str) -> int | str:
    values = history.get(key, [])
    if not values:
        return "-"
    return int(history["epoch"][int(np.nanargmax(np.asarray(values, dtype=np.float64)))])


def _resume_command(cfg: argparse.Namespace) -> str:
    """The command that continues this run (its options come from the checkpoint)."""
    extra = "".join(f" {flag} {value}" for flag, value in (("--data-root", cfg.data_root),
                                                           ("--device", cfg.device)) if value)
    return f"minidl train {cfg.model} --out {cfg.out}{extra} --resume"


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


def _data(cfg: argparse.Namespace) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(train, validation, test) arrays of ``--dataset`` cut to ``--limit``, the
    validation split carved from the training data by a permutation of ``--seed``; and
    the number of classes (last)."""
    try:
        (x_train, y_train), (x_test, y_test), classes = _load_dataset(
            cfg.dataset, cfg.data_root, cfg.download)
    except FileNotFoundError as e:
        raise _Refused(f"{e}\n(on the command line: --data-root DIR, or --download)") from None
    if cfg.limit:
        x_train, y_train = x_train[:cfg.limit], y_train[:cfg.limit]
        x_test, y_test = x_test[:max(1, cfg.limit // 4)], y_test[:max(1, cfg.limit // 4)]
    n = len(x_train)
    n_val = max(1, round(n * cfg.val_split)) if cfg.val_split > 0 else 0
    if n - n_val < 1:
        raise _Refused(f"--val-split {cfg.val_split} leaves no training samples of {n}; "
                       f"use a smaller --val-split or a larger --limit")
    order = np.random.default_rng(cfg.seed).permutation(n)
    val, train = np.sort(order[:n_val]), np.sort(order[n_val:])
    return ((x_train[train], y_train[train]), (x_train[val], y_train[val]), (x_test, y_test),
            classes)


def _model(cfg: argparse.Namespace, splits: tuple[np.ndarray, ...],
           classes: int) -> tuple[Any, tuple[np.ndarray, ...]]:
    """The model of ``MODEL``, and the input splits in the shape it reads (padded to 32x32
    for LeNet). The MLP flattens images itself, so that they are normalised and augmented
    as images first."""
    x_train = splits[0]
    images = x_train.ndim == 4
    if cfg.model == "mlp":
        return _mlp(int(np.prod(x_train.shape[1:])), classes, flatten=images), splits
    if not images:
        raise _Refused(f"{cfg.model} needs image data; use the 'mlp' model for {cfg.dataset}")
    try:
        model = build_model(cfg.model, num_classes=classes, in_channels=x_train.shape[1])
    except (KeyError, TypeError, ValueError) as e:
        raise _Refused(str(e).strip("'\"")) from None
    if cfg.model.startswith("lenet"):
        splits = tuple(pad_to(x, 32) for x in splits)
    return model, splits


def _transforms(cfg: argparse.Namespace, x_train: np.ndarray) -> tuple[Any, Any]:
    """(train, test) transforms of NCHW images: normalise with the dataset's statistics;
    with ``--augment`` the training images are also shifted (and flipped, for CIFAR-10)."""
    from ..data import datasets as ds  # noqa: PLC0415
    from ..data.transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip  # noqa: PLC0415

    stats = {"cifar10": (ds.CIFAR10_MEAN, ds.CIFAR10_STD),
             "fashion-mnist": (ds.FASHION_MNIST_MEAN, ds.FASHION_MNIST_STD)}
    mean, std = stats.get(cfg.dataset, (ds.MNIST_MEAN, ds.MNIST_STD))
    test_tf = Normalize(mean, std)
    steps = [test_tf]
    if cfg.augment:
        size = x_train.shape[-1]
        shift = [RandomCrop(size, padding=4 if cfg.dataset == "cifar10" else 2)]
        flip = [RandomHorizontalFlip()] if cfg.dataset == "cifar10" else []
        steps = shift + flip + steps
    return Compose(steps), test_tf
