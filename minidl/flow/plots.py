"""Figures of the gradient-flow lab (matplotlib, imported only when a figure is drawn).

Figures are drawn on a bare ``matplotlib.figure.Figure`` with the Agg canvas, so plotting
never touches pyplot's global state or needs a display.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["new_figure", "save_figure", "layer_norm_plot", "style_for", "smooth"]


def _matplotlib() -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: PLC0415
        from matplotlib.figure import Figure  # noqa: PLC0415
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError("minidl.flow plots need matplotlib: pip install matplotlib "
                          "(or pip install 'minidl[plot]')") from e
    return Figure, FigureCanvasAgg


def new_figure(ncols: int = 1, nrows: int = 1, size: tuple[float, float] = (5.0, 3.6)) -> tuple:
    """A figure with an ``nrows`` x ``ncols`` grid of axes; returns ``(fig, axes_list)``."""
    Figure, FigureCanvasAgg = _matplotlib()
    fig = Figure(figsize=(size[0] * ncols, size[1] * nrows), dpi=80)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, [ax for row in axes for ax in row]


def save_figure(fig: Any, path: str | os.PathLike) -> Path:
    """Save ``fig`` as PNG (atomically) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix or '.png'}")
    fig.savefig(tmp, format=(path.suffix.lstrip(".") or "png"))
    os.replace(tmp, path)
    return path


def layer_norm_plot(ax: Any, series: dict[str, Sequence[float]], title: str,
                    ylabel: str = "gradient L2 norm", xlabel: str = "layer (input side = 1)",
                    styles: dict[str, dict[str, Any]] | None = None) -> None:
    """One line per entry of ``series`` (label -> per-layer values), log-scale y.

    ``styles`` maps a label to extra ``ax.plot`` keywords (color, linestyle, ...). Zeros
    and non-finite values (an underflowed gradient) are left out of the line.
    """
    from matplotlib.ticker import MaxNLocator  # noqa: PLC0415

    for label, values in series.items():
        xs = list(range(1, len(values) + 1))
        ys = [v if v is not None and v > 0 else float("nan") for v in values]
        kw = {"marker": "o" if len(xs) <= 30 else None, "markersize": 3, "linewidth": 1.4}
        kw.update((styles or {}).get(label, {}))
        ax.plot(xs, ys, label=label, **kw)
    ax.set_yscale("log")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=7)


def style_for(index: int, dashed: bool = False, dotted: bool = False) -> dict[str, Any]:
    """Colour ``index`` of matplotlib's default cycle, solid, dashed or dotted."""
    color = f"C{index % 10}"
    return {"color": color, "linestyle": ":" if dotted else ("--" if dashed else "-")}


def smooth(values: Sequence[float], k: int = 10) -> np.ndarray:
    """Moving average over ``k`` values (the curve as is when it is shorter than ``k``)."""
    v = np.asarray(values, dtype=np.float64)
    if len(v) < k:
        return v
    return np.convolve(v, np.ones(k) / k, mode="valid")
