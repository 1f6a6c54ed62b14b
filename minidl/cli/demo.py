"""``minidl demo``: LeNet-5 on the bundled MNIST digits, with a report, curves and a figure."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..parallel import blas_threads
from .common import device_or_none, fmt_time, pad_to, plot_curves
from .lab import HELP as LAB_HELP
from .options import Formatter, add_device_option, add_run_options, positive_int, wrap

# The demo recipe: LeNet-5 as in the lectures (tanh, average pooling), Adam with a
# one-cycle schedule and +-2 pixel shifts. Measured on 2 CPU cores: see docs/training.md.
DEMO_EPOCHS = 12
DEMO_BATCH = 32
DEMO_LR = 3e-3


def add_parser(subparsers: Any) -> None:
    """Add this subcommand to the ``minidl`` parser's ``subparsers``."""
    p = subparsers.add_parser(
        "demo", formatter_class=Formatter,
        help="train LeNet-5 on the bundled MNIST digits and report the test accuracy",
        description=wrap(
                    "Train LeNet-5 (tanh, average pooling, as in the lectures) on the bundled "
                    "MNIST subset (4,000 training / 1,000 held-out digits; no download), show "
                    "the progress, print the test accuracy and the most-confused digit "
                    "pairs, and write OUT/report.md, OUT/history.csv, OUT/lenet5.npz and "
                    "(with matplotlib) OUT/curves.png. Under a minute on two CPU cores."),
        epilog="examples:\n"
               "  minidl demo\n"
               "  minidl demo --device cuda --out runs/demo\n"
               "  minidl demo --quick            # a few seconds: 600 digits, 1 epoch")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"training epochs (default: {DEMO_EPOCHS}; 1 with --quick)")
    p.add_argument("--batch-size", type=positive_int, default=DEMO_BATCH,
                   help="batch size (default: %(default)s)")
    p.add_argument("--lr", type=float, default=DEMO_LR,
                   help="peak learning rate of Adam (default: %(default)s)")
    add_device_option(p)
    add_run_options(p, out="minidl-demo", blas_threads=1,
                    blas_advice="One is fastest for LeNet's small matrix products")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 600 training and 200 test digits, 1 epoch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train LeNet-5, print the test accuracy, write OUT/; exit code 0 (2: unusable device)."""
    import minidl as md  # noqa: PLC0415

    from ..models import lenet5  # noqa: PLC0415
    from ..optim import Adam  # noqa: PLC0415
    from ..optim.lr_scheduler import OneCycleLR  # noqa: PLC0415
    from ..train import CSVLogger, Trainer, accuracy  # noqa: PLC0415

    start = time.perf_counter()
    device = device_or_none(args.device, "demo")
    if device is None:
        return 2
    epochs = args.epochs if args.epochs is not None else (1 if args.quick else DEMO_EPOCHS)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    md.manual_seed(args.seed)
    train_loader, test_loader, y_test = _loaders(args, device)

    model = lenet5()
    optimizer = Adam(model.parameters(), lr=args.lr)
    scheduler = OneCycleLR(optimizer, max_lr=args.lr, total_steps=epochs * len(train_loader))
    verbose = 1 if sys.stderr.isatty() else 2
    trainer = Trainer(model, optimizer, "cross_entropy", metrics=["accuracy"], device=device,
                      scheduler=scheduler, callbacks=[CSVLogger(out / "history.csv")],
                      verbose=verbose)
    facts = dict(epochs=epochs, n_train=len(train_loader.dataset), n_test=len(y_test),
                 device=device, params=model.num_parameters(), lr=args.lr,
                 batch=args.batch_size)
    print(f"minidl demo: LeNet-5 (tanh, average pooling; {facts['params']:,} parameters) on "
          f"{facts['n_train']:,} MNIST digits, testing on {facts['n_test']:,} held-out ones; "
          f"{epochs} epoch{_plural(epochs)} of Adam + one-cycle (max lr {args.lr:g}), batch "
          f"{args.batch_size}, on {device}")
    with blas_threads(args.blas_threads):
        history = trainer.fit(train_loader, epochs=epochs, val_loader=test_loader)
        logits = trainer.predict(test_loader)
    acc = accuracy(logits, y_test)
    _finish(out, model, history, logits.argmax(axis=1), y_test, acc, start, facts)
    return 0


def _plural(n: int) -> str:
    return "s" if n != 1 else ""


def _loaders(args: argparse.Namespace, device: str) -> tuple[Any, Any, np.ndarray]:
    """(train loader with +-2 pixel shifts, test loader, test labels) of the bundled digits,
    padded to LeNet-5's 32x32 and normalised."""
    from ..data import DataLoader, mnist_subset  # noqa: PLC0415
    from ..data.datasets import MNIST_MEAN, MNIST_STD  # noqa: PLC0415
    from ..data.transforms import Compose, Normalize, RandomCrop  # noqa: PLC0415

    x_train, y_train = mnist_subset("train")
    x_test, y_test = mnist_subset("test")
    if args.quick:  # a smoke test of the whole pipeline, in seconds
        x_train, y_train, x_test, y_test = x_train[:600], y_train[:600], x_test[:200], y_test[:200]
    # LeNet-5 reads 32x32 images: MNIST's 28x28 digits with a 2-pixel border, as in 1998.
    x_train, x_test = pad_to(x_train, 32), pad_to(x_test, 32)
    normalize = Normalize(MNIST_MEAN, MNIST_STD)
    augment = Compose([RandomCrop(32, padding=2), normalize])  # +-2 pixel shifts
    train_loader = DataLoader((x_train, y_train), batch_size=args.batch_size, shuffle=True,
                              seed=args.seed, device=device, transform=augment)
    test_loader = DataLoader((x_test, y_test), batch_size=500, device=device,
                             transform=normalize)
    return train_loader, test_loader, y_test


def _finish(out: Path, model: Any, history: Any, pred: np.ndarray, y_test: np.ndarray,
            acc: float, start: float, facts: dict[str, Any]) -> None:
    """Print the test accuracy and the most confused digits; write the weights, the curves,
    the gradient-flow figure (both with matplotlib) and the report."""
    from .. import io  # noqa: PLC0415
    from ..train import confusion_matrix, most_confused  # noqa: PLC0415

    cm = confusion_matrix(y_test, pred, 10)
    confused = most_confused(cm, 3)
    train_time = sum(history["time"])
    total_time = time.perf_counter() - start
    epochs = facts["epochs"]
    print(f"\ntest accuracy: {acc:.2%} ({int((pred == y_test).sum())}/{len(y_test)} digits) "
          f"after {epochs} epoch{_plural(epochs)}; training took {fmt_time(train_time)}, "
          f"{fmt_time(total_time)} in all")
    if confused:
        print("most confused digits (true -> predicted: count): "
              + ", ".join(f"{a} -> {b}: {n}" for a, b, n in confused))
    else:
        print("no digit was misclassified")

    io.save(model.state_dict(), out / "lenet5.npz")
    plotted = plot_curves(history, out / "curves.png",
                          f"LeNet-5 on the MNIST subset: test accuracy {acc:.2%}")
    if plotted:  # matplotlib is present: add the gradient-flow lab's depth-20 figure
        from ..flow import demo_figure  # noqa: PLC0415

        demo_figure(out / "gradient-flow.png")
    _write_report(out / "report.md", acc=acc, cm=cm, confused=confused, history=history,
                  train_time=train_time, total_time=total_time, plotted=plotted, **facts)
    written = ["report.md", "history.csv", "lenet5.npz"] + (
        ["curves.png", "gradient-flow.png"] if plotted else [])
    print(f"wrote {out}/: {', '.join(written)}"
          + ("" if plotted else " (install matplotlib for curves.png)"))


def _write_report(path: Path, *, acc: float, cm: np.ndarray, confused: list,
                       history: dict, epochs: int, n_train: int, n_test: int, device: str,
                       params: int, lr: float, batch: int, train_time: float,
                       total_time: float, plotted: bool) -> None:
    lines = [
        "# minidl demo: LeNet-5 on MNIST digits",
        "",
        f"- **Test accuracy: {acc:.2%}** on {n_test:,} held-out digits "
        f"(trained on {n_train:,}; the bundled MNIST subset).",
        f"- Model: LeNet-5 (tanh, average pooling, 32x32 input), {params:,} parameters.",
        f"- Training: {epochs} epoch{_plural(epochs)}, Adam with a one-cycle "
        f"schedule (max lr {lr:g}), batch {batch}, random +-2 pixel shifts; device "
        f"`{device}`.",
        f"- Time: {fmt_time(train_time)} training, {fmt_time(total_time)} in all.",
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
    lines += ["", "## Next: the lectures' labs", "",
              "Each runs in under two minutes on two CPU cores and writes its figure "
              "(docs/labs.md shows them all; `--quick` runs a small version in seconds):", ""]
    lines += [f"- `minidl lab {name}`: {text}" for name, text in LAB_HELP.items()]
    lines += ["- `minidl flow depth|residual|bn|neuron|parallel`: the gradient-flow lab "
              "(docs/gradient-flow.md)"]
    lines += ["", "MNIST by Y. LeCun, C. Cortes and C. Burges (CC BY-SA 3.0).", ""]
    path.write_text("\n".join(lines), encoding="utf-8")
