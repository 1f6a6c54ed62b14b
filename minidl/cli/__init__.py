"""The ``minidl`` command: ``demo``, ``train``, ``summary`` and ``info``.

Every subcommand imports what it needs when it runs, so ``minidl --help`` stays instant.
"""
from __future__ import annotations

import argparse
import platform
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..backend import blas_info, cupy_available, cupy_info, get_default_device, xp_for
from ..parallel import blas_threads

# The demo recipe: LeNet-5 as in the lectures (tanh, average pooling), Adam with a
# one-cycle schedule and +-2 pixel shifts. Measured on 2 CPU cores: see docs/training.md.
DEMO_EPOCHS = 12
DEMO_BATCH = 32
DEMO_LR = 3e-3


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keep the examples in epilogs as written (descriptions are wrapped by :func:`_wrap`)."""


def _wrap(text: str) -> str:
    return textwrap.fill(" ".join(text.split()), width=78)


# ============================================================================================
# info
# ============================================================================================

def _info(args: argparse.Namespace) -> int:
    print(f"minidl {__version__}")
    print(f"python {platform.python_version()} on {platform.platform()}")
    print(f"numpy {np.__version__} (BLAS: {blas_info()})")
    print(f"default device: {get_default_device()}")
    version, names = cupy_info()
    if version is None:
        print("cupy: not installed (pip install 'minidl[gpu]' for the 'cuda' device)")
    else:
        print(f"cupy {version}; GPUs: {', '.join(names) if names else 'none'}")
    print("devices: cpu" + (", cuda" if cupy_available() else ""))
    return 0


# ============================================================================================
# shared helpers
# ============================================================================================

def _pad_to(x: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad NCHW images symmetrically to ``size`` x ``size`` (28 -> 32 for LeNet-5)."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if h > size or w > size:
        raise ValueError(f"cannot pad images of {h}x{w} to {size}x{size}")
    ph, pw = size - h, size - w
    return np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))


def _make_optimizer(name: str, params: Any, lr: float, momentum: float = 0.9,
                    weight_decay: float = 0.0) -> Any:
    from .. import optim  # noqa: PLC0415

    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if name == "nadam":
        return optim.Nadam(params, lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}")


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


def _build_model(name: str, **wanted: Any) -> Any:
    """A zoo model by name, given only the keywords (num_classes, in_channels) it takes.

    ``in_channels`` is dropped for builders without it when it is 3 (their default).
    """
    from .. import models  # noqa: PLC0415

    try:
        return models.get_model(name, **wanted)
    except TypeError:
        if wanted.get("in_channels") == 3:
            return models.get_model(name, **{k: v for k, v in wanted.items()
                                             if k != "in_channels"})
        if "in_channels" in wanted:
            raise ValueError(f"model {name!r} takes no in_channels; it cannot read "
                             f"{wanted['in_channels']}-channel images") from None
        raise


def _plot_curves(history: dict[str, list[float]], path: Path, title: str) -> bool:
    """Loss and accuracy per epoch (train and validation) as a PNG; False without matplotlib."""
    try:
        import matplotlib  # noqa: PLC0415 - optional

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # noqa: PLC0415
    except Exception:
        return False
    epochs = history.get("epoch", [])
    panels = [("loss", "loss"), ("accuracy", "accuracy")]
    panels = [p for p in panels if p[0] in history]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.6), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        ax.plot(epochs, history[key], "o-", label=f"train {label}")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s-", label=f"test {label}")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _device_or_none(name: str | None, command: str) -> str | None:
    """The device to use ('cpu' or 'cuda'); None, with the reason printed, if unusable."""
    try:
        name = name or get_default_device()
        xp_for(name)  # raises with the fix (install CuPy, no GPU found) when unusable
        return name
    except (RuntimeError, ValueError) as e:
        print(f"minidl {command}: {e}", file=sys.stderr)
        return None


def _fmt_time(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


# ============================================================================================
# demo
# ============================================================================================

def _demo(args: argparse.Namespace) -> int:
    import minidl as md  # noqa: PLC0415

    from ..data import DataLoader, mnist_subset  # noqa: PLC0415
    from ..data.datasets import MNIST_MEAN, MNIST_STD  # noqa: PLC0415
    from ..data.transforms import Compose, Normalize, RandomCrop  # noqa: PLC0415
    from ..models import lenet5  # noqa: PLC0415
    from ..optim import Adam  # noqa: PLC0415
    from ..optim.lr_scheduler import OneCycleLR  # noqa: PLC0415
    from ..train import CSVLogger, Trainer, confusion_matrix, most_confused  # noqa: PLC0415

    start = time.perf_counter()
    device = _device_or_none(args.device, "demo")
    if device is None:
        return 2
    epochs = args.epochs if args.epochs is not None else (1 if args.quick else DEMO_EPOCHS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md.manual_seed(args.seed)

    x_train, y_train = mnist_subset("train")
    x_test, y_test = mnist_subset("test")
    if args.quick:  # a smoke test of the whole pipeline, in seconds
        x_train, y_train, x_test, y_test = x_train[:600], y_train[:600], x_test[:200], y_test[:200]
    # LeNet-5 reads 32x32 images: MNIST's 28x28 digits with a 2-pixel border, as in 1998.
    x_train, x_test = _pad_to(x_train, 32), _pad_to(x_test, 32)
    normalize = Normalize(MNIST_MEAN, MNIST_STD)
    augment = Compose([RandomCrop(32, padding=2), normalize])  # +-2 pixel shifts
    train_loader = DataLoader((x_train, y_train), batch_size=args.batch_size, shuffle=True,
                              seed=args.seed, device=device, transform=augment)
    test_loader = DataLoader((x_test, y_test), batch_size=500, device=device,
                             transform=normalize)

    model = lenet5()
    n_params = model.num_parameters()
    optimizer = Adam(model.parameters(), lr=args.lr)
    scheduler = OneCycleLR(optimizer, max_lr=args.lr, total_steps=epochs * len(train_loader))
    verbose = 1 if sys.stderr.isatty() else 2
    trainer = Trainer(model, optimizer, "cross_entropy", metrics=["accuracy"], device=device,
                      scheduler=scheduler, callbacks=[CSVLogger(out / "history.csv")],
                      verbose=verbose)
    plural = "s" if epochs != 1 else ""
    print(f"minidl demo: LeNet-5 (tanh, average pooling; {n_params:,} parameters) on "
          f"{len(x_train):,} MNIST digits, testing on {len(x_test):,} held-out ones; "
          f"{epochs} epoch{plural} of Adam + one-cycle (max lr {args.lr:g}), batch "
          f"{args.batch_size}, on {device}")
    with blas_threads(args.blas_threads):
        history = trainer.fit(train_loader, epochs=epochs, val_loader=test_loader)
        logits = trainer.predict(test_loader)
    train_time = sum(history["time"])

    pred = logits.argmax(axis=1)
    acc = float((pred == y_test).mean())
    cm = confusion_matrix(y_test, pred, 10)
    confused = most_confused(cm, 3)
    total_time = time.perf_counter() - start

    print(f"\ntest accuracy: {acc:.2%} ({int((pred == y_test).sum())}/{len(y_test)} digits) "
          f"after {epochs} epoch{plural}; training took {_fmt_time(train_time)}, "
          f"{_fmt_time(total_time)} in all")
    if confused:
        print("most confused digits (true -> predicted: count): "
              + ", ".join(f"{a} -> {b}: {n}" for a, b, n in confused))
    else:
        print("no digit was misclassified")

    from .. import io  # noqa: PLC0415

    io.save(model.state_dict(), out / "lenet5.npz")
    plotted = _plot_curves(history, out / "curves.png",
                           f"LeNet-5 on the MNIST subset: test accuracy {acc:.2%}")
    if plotted:  # matplotlib is present: add the gradient-flow lab's depth-20 figure
        from ..flow.experiments import demo_figure  # noqa: PLC0415

        demo_figure(out / "gradient-flow.png")
    _write_demo_report(out / "report.md", acc=acc, cm=cm, confused=confused, history=history,
                       epochs=epochs, n_train=len(x_train), n_test=len(x_test), device=device,
                       params=n_params, lr=args.lr, batch=args.batch_size,
                       train_time=train_time, total_time=total_time, plotted=plotted)
    written = ["report.md", "history.csv", "lenet5.npz"] + (
        ["curves.png", "gradient-flow.png"] if plotted else [])
    print(f"wrote {out}/: {', '.join(written)}"
          + ("" if plotted else " (install matplotlib for curves.png)"))
    return 0


def _write_demo_report(path: Path, *, acc: float, cm: np.ndarray, confused: list,
                       history: dict, epochs: int, n_train: int, n_test: int, device: str,
                       params: int, lr: float, batch: int, train_time: float,
                       total_time: float, plotted: bool) -> None:
    lines = [
        "# minidl demo: LeNet-5 on MNIST digits",
        "",
        f"- **Test accuracy: {acc:.2%}** on {n_test:,} held-out digits "
        f"(trained on {n_train:,}; the bundled MNIST subset).",
        f"- Model: LeNet-5 (tanh, average pooling, 32x32 input), {params:,} parameters.",
        f"- Training: {epochs} epoch{'s' if epochs != 1 else ''}, Adam with a one-cycle "
        f"schedule (max lr {lr:g}), batch {batch}, random +-2 pixel shifts; device "
        f"`{device}`.",
        f"- Time: {_fmt_time(train_time)} training, {_fmt_time(total_time)} in all.",
        "- The test set is only watched, never used to choose anything: the reported model "
        "is the one after the last epoch.",
        "",
        "## Per epoch",
        "",
        "| epoch | train loss | train acc | test loss | test acc | lr | time |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for i in range(len(history["epoch"])):
        lines.append(
            f"| {history['epoch'][i]} | {history['loss'][i]:.4f} | "
            f"{history['accuracy'][i]:.2%} | {history['val_loss'][i]:.4f} | "
            f"{history['val_accuracy'][i]:.2%} | {history['lr'][i]:.2e} | "
            f"{history['time'][i]:.1f} s |")
    lines += ["", "## Most confused digits", ""]
    if confused:
        lines += [f"- a true **{a}** read as **{b}**: {n} times" for a, b, n in confused]
    else:
        lines.append("- none: every test digit was classified correctly")
    lines += ["", "## Confusion matrix (rows: true digit, columns: predicted)", "",
              "| | " + " | ".join(str(j) for j in range(cm.shape[1])) + " |",
              "|---" * (cm.shape[1] + 1) + "|"]
    for i, row in enumerate(cm):
        lines.append(f"| **{i}** | " + " | ".join(str(int(v)) for v in row) + " |")
    if plotted:
        lines += ["", "## Training curves", "", "![training curves](curves.png)",
                  "", "## Gradient flow at depth 20",
                  "", "Per-layer weight-gradient norms at initialisation of a 20-layer MLP: "
                  "sigmoid vanishes; ReLU with He init, BatchNorm and residual connections "
                  "keep the signal (see docs/gradient-flow.md).",
                  "", "![gradient flow](gradient-flow.png)"]
    lines += ["", "MNIST by Y. LeCun, C. Cortes and C. Burges (CC BY-SA 3.0).", ""]
    path.write_text("\n".join(lines), encoding="utf-8")


# ============================================================================================
# train
# ============================================================================================

DATASETS = ("mnist-subset", "mnist", "fashion-mnist", "cifar10", "spirals")


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


def _mlp(in_features: int, classes: int, hidden: int = 64) -> Any:
    from .. import nn  # noqa: PLC0415

    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden),
                         nn.ReLU(), nn.Linear(hidden, classes))


def _train(args: argparse.Namespace) -> int:
    import minidl as md  # noqa: PLC0415

    from ..data import DataLoader  # noqa: PLC0415
    from ..data import datasets as ds  # noqa: PLC0415
    from ..data.transforms import Compose, Normalize, RandomCrop, RandomHorizontalFlip  # noqa: PLC0415
    from ..train import CSVLogger, ModelCheckpoint, NonFiniteLossError, Trainer  # noqa: PLC0415

    device = _device_or_none(args.device, "train")
    if device is None:
        return 2
    md.manual_seed(args.seed)
    try:
        (x_train, y_train), (x_test, y_test), classes = _load_dataset(
            args.dataset, args.data_root, args.download)
    except FileNotFoundError as e:
        print(f"minidl train: {e}\n(on the command line: --data-root DIR, or --download)",
              file=sys.stderr)
        return 2
    if args.limit:
        x_train, y_train = x_train[:args.limit], y_train[:args.limit]
        x_test, y_test = x_test[:max(1, args.limit // 4)], y_test[:max(1, args.limit // 4)]

    images = x_train.ndim == 4
    if args.model == "mlp":
        if images:
            x_train = x_train.reshape(len(x_train), -1)
            x_test = x_test.reshape(len(x_test), -1)
        model = _mlp(int(np.prod(x_train.shape[1:])), classes)
    else:
        if not images:
            print(f"minidl train: {args.model} needs image data; use the 'mlp' model for "
                  f"{args.dataset}", file=sys.stderr)
            return 2
        try:
            model = _build_model(args.model, num_classes=classes,
                                 in_channels=x_train.shape[1])
        except (TypeError, ValueError) as e:
            print(f"minidl train: {e}", file=sys.stderr)
            return 2
    if images and args.model.startswith("lenet"):
        x_train, x_test = _pad_to(x_train, 32), _pad_to(x_test, 32)

    train_tf = test_tf = None
    if images:
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
        train_tf = Compose(steps)

    train_loader = DataLoader((x_train, y_train), batch_size=args.batch_size, shuffle=True,
                              seed=args.seed, device=device, transform=train_tf)
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
    last = history.last() if history else {}
    if last:
        print(f"final: test accuracy {last.get('val_accuracy', float('nan')):.2%}, test loss "
              f"{last.get('val_loss', float('nan')):.4f}; best test accuracy "
              f"{checkpoint.best if checkpoint.best is not None else float('nan'):.2%} "
              f"(saved in {checkpoint.path})")
        _plot_curves(history, out / "curves.png", f"{args.model} on {args.dataset}")
    print(f"wrote {out}/: checkpoint.npz (best), checkpoint.last.npz (resume with --resume), "
          f"history.csv" + (", curves.png" if (out / "curves.png").exists() else ""))
    return 0


# ============================================================================================
# summary
# ============================================================================================

def _parse_shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.replace("x", ",").split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"--input must look like C,H,W (e.g. 3,224,224), "
                                         f"got {text!r}") from None
    if not shape or any(v <= 0 for v in shape):
        raise argparse.ArgumentTypeError(f"--input must be positive sizes, got {text!r}")
    return shape


def _summary(args: argparse.Namespace) -> int:
    from ..summary import summary  # noqa: PLC0415

    wanted = {}
    if args.num_classes is not None:
        wanted["num_classes"] = args.num_classes
    try:
        model = _build_model(args.model, **wanted)
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


# ============================================================================================
# parser
# ============================================================================================

def _models_help() -> str:
    return "a zoo model name (see `python -c 'import minidl; print(minidl.models.list_models())'`)"


def _train_gan(args: argparse.Namespace) -> int:
    from ..models.gan import train_gan  # noqa: PLC0415

    train_gan(dataset=args.dataset, epochs=args.epochs, batch_size=args.batch_size,
              out_dir=args.out, seed=args.seed)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``minidl`` command (one subparser per command)."""
    parser = argparse.ArgumentParser(
        prog="minidl", formatter_class=_Formatter,
        description="minidl: a deep-learning framework on NumPy and CuPy.\n"
                    "Run `minidl COMMAND --help` for the options of each command.",
        epilog="examples:\n"
               "  minidl demo                      # LeNet-5 on MNIST digits, under a minute\n"
               "  minidl train lenet5 --epochs 5   # the same, with every knob exposed\n"
               "  minidl summary resnet18 --input 3,224,224\n"
               "  minidl info")
    parser.add_argument("--version", action="version", version=f"minidl {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser(
        "train-gan", formatter_class=_Formatter,
        help="train a DCGAN on the bundled digits; a PNG grid of samples each epoch",
        description="Train dcgan_generator/dcgan_discriminator with the non-saturating loss "
                    "(minidl.models.gan.GANTrainer) and write OUT/samples_epoch_K.png "
                    "sample grids.",
        epilog="example:\n  minidl train-gan --epochs 10 --out gan_out")
    p.add_argument("--dataset", default="mnist-subset", choices=["mnist-subset"],
                   help="training images")
    p.add_argument("--epochs", type=int, default=15, help="passes over the data")
    p.add_argument("--batch-size", type=int, default=64, help="images per step")
    p.add_argument("--out", default="gan_out", help="folder for the sample grids")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.set_defaults(func=_train_gan)
    from .flow import add_flow_subcommands  # noqa: PLC0415 - experiments load lazily

    add_flow_subcommands(sub)

    p = sub.add_parser(
        "demo", formatter_class=_Formatter,
        help="train LeNet-5 on the bundled MNIST digits and report the test accuracy",
        description=_wrap(
                    "Train LeNet-5 (tanh, average pooling, as in the lectures) on the bundled "
                    "MNIST subset (4,000 training / 1,000 held-out digits; no download), show "
                    "the progress, print the test accuracy and the most-confused digit "
                    "pairs, and write OUT/report.md, OUT/history.csv, OUT/lenet5.npz and "
                    "(with matplotlib) OUT/curves.png. Under a minute on two CPU cores."),
        epilog="examples:\n"
               "  minidl demo\n"
               "  minidl demo --device cuda --out runs/demo\n"
               "  minidl demo --quick            # a few seconds: 600 digits, 1 epoch")
    p.add_argument("--epochs", type=int, default=None,
                   help=f"training epochs (default: {DEMO_EPOCHS}; 1 with --quick)")
    p.add_argument("--batch-size", type=int, default=DEMO_BATCH,
                   help="batch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=DEMO_LR,
                   help="peak learning rate of Adam (default: %(default)s)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where to train (default: $MINIDL_DEVICE or cpu)")
    p.add_argument("--out", default="minidl-demo", help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 600 training and 200 test digits, 1 epoch")
    p.add_argument("--blas-threads", type=int, default=1, metavar="N",
                   help="BLAS threads while training; 0 leaves NumPy's default. One is "
                        "fastest for LeNet's small matrix products (default: %(default)s)")
    p.set_defaults(func=_demo)

    p = sub.add_parser(
        "train", formatter_class=_Formatter, help="train a zoo model on a dataset",
        description=_wrap("Train MODEL on a dataset, evaluating on its test split after every "
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
    p.add_argument("model", metavar="MODEL", help=_models_help() + ", or 'mlp'")
    p.add_argument("--dataset", choices=DATASETS, default="mnist-subset",
                   help="dataset (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=10,
                   help="total epochs of the run (default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default: %(default)s)")
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
    p.add_argument("--device", choices=("cpu", "cuda"), default=None,
                   help="where to train (default: $MINIDL_DEVICE or cpu)")
    p.add_argument("--out", default="minidl-run", help="output folder (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue from OUT/checkpoint.last.npz when it exists")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None,
                   help="use only the first N training samples (and N/4 test samples)")
    p.add_argument("--data-root", default=None,
                   help="folder with the dataset files (default $MINIDL_DATA or "
                        "~/.minidl/datasets)")
    p.add_argument("--download", action="store_true",
                   help="download missing dataset files (checksums verified)")
    p.add_argument("--blas-threads", type=int, default=0, metavar="N",
                   help="BLAS threads while training; 0 leaves NumPy's default (try 1 for "
                        "small models on a busy machine) (default: %(default)s)")
    p.set_defaults(func=_train)

    p = sub.add_parser(
        "summary", formatter_class=_Formatter,
        help="print a model's layer table (output shapes, parameters, MACs)",
        description=_wrap("Build MODEL from the zoo and print one row per layer: output shape, "
                    "parameters, buffers and multiply-accumulates for one input of shape "
                    "--input."),
        epilog="examples:\n"
               "  minidl summary lenet5 --input 1,32,32\n"
               "  minidl summary resnet18 --input 3,224,224\n"
               "  minidl summary cifar_resnet56 --input 3,32,32 --num-classes 100")
    p.add_argument("model", metavar="MODEL", help=_models_help())
    p.add_argument("--input", type=_parse_shape, default=None, metavar="C,H,W",
                   help="shape of one input sample, e.g. 3,224,224")
    p.add_argument("--num-classes", type=int, default=None, help="classifier outputs")
    p.set_defaults(func=_summary)

    p = sub.add_parser("info", formatter_class=_Formatter,
                       help="print versions, devices and the BLAS in use",
                       description="Print the minidl, Python, NumPy/BLAS and CuPy versions and "
                       "the available devices.", epilog="example:\n  minidl info")
    p.set_defaults(func=_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``minidl`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        if args.command == "flow":  # small MLP GEMMs: one BLAS thread is faster (blas_threads)
            with blas_threads(1):
                return args.func(args)
        return args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130

