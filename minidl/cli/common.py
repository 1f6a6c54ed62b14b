"""What several subcommands do alike: pick the device, pad images, build zoo models, plot."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import get_default_device, xp_for


def pad_to(x: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad NCHW images symmetrically to ``size`` x ``size`` (28 -> 32 for LeNet-5)."""
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x
    if h > size or w > size:
        raise ValueError(f"cannot pad images of {h}x{w} to {size}x{size}")
    ph, pw = size - h, size - w
    return np.pad(x, ((0, 0), (0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)))


def build_model(name: str, **wanted: Any) -> Any:
    """A zoo model by name, given only the keywords (num_classes, in_channels) it takes.

    ``in_channels`` is dropped for builders without it when it is 3 (their default).
    """
    from .. import models  # noqa: PLC0415

    try:
        return models.get_model(name, **wanted)
    except TypeError as e:
        # The builders pass **kwargs down, so only the call itself tells whether the model
        # takes in_channels; any other TypeError is a real error and goes up unchanged.
        if "in_channels" not in wanted or "'in_channels'" not in str(e):
            raise
    if wanted["in_channels"] != 3:
        raise ValueError(f"model {name!r} takes no in_channels; it cannot read "
                         f"{wanted['in_channels']}-channel images")
    return models.get_model(name, **{k: v for k, v in wanted.items() if k != "in_channels"})


def plot_curves(history: dict[str, list[float]], path: Path, title: str,
                val_label: str = "test") -> bool:
    """Loss and accuracy per epoch (train, and the ``val_`` figures labelled ``val_label``)
    as a PNG; False without matplotlib."""
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
            ax.plot(epochs, history[f"val_{key}"], "s-", label=f"{val_label} {label}")
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


def device_or_none(name: str | None, command: str) -> str | None:
    """The device to use ('cpu' or 'cuda'); None, with the reason printed, if unusable."""
    try:
        name = name or get_default_device()
        xp_for(name)  # raises with the fix (install CuPy, no GPU found) when unusable
        return name
    except (RuntimeError, ValueError) as e:
        print(f"minidl {command}: {e}", file=sys.stderr)
        return None


def fmt_time(seconds: float) -> str:
    """``12.3 s``, or ``2.5 min`` from two minutes on."""
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


def show_result(result: Any, csv: str | None, png: str | Path | None, name: str,
                start: float) -> int:
    """Print an experiment's table (a ``FlowResult``), write its CSV and its PNG (``png``
    None: no figure), then the seconds since ``start``; exit code 0."""
    print(result.table())
    if csv:
        print(f"wrote {result.to_csv(csv)}")
    if png is not None:
        try:
            print(f"wrote {result.plot(png)}")
        except ImportError as e:
            print(f"no figure: {e}")
    print(f"{name}: {time.perf_counter() - start:.1f} s")
    return 0
