"""The ``minidl demo`` figure: sigmoid, ReLU, BatchNorm and residual MLPs at depth 20."""
from __future__ import annotations

from pathlib import Path

from ..backend import manual_seed
from .measure import flow_summary, measure_flow
from .nets import make_mlp, mnist_inputs
from .plots import layer_norm_plot, new_figure, save_figure

__all__ = ["demo_figure"]


def demo_figure(path: str | Path = "gradient-flow.png", depth: int = 20, width: int = 32,
                probe: int = 128, seed: int = 0) -> Path:
    """Sigmoid against ReLU against BatchNorm against residual at ``depth`` layers: the
    weight-gradient norm of every layer at initialisation, one line each (log scale).

    sigmoid: Glorot init; ReLU: He init; sigmoid + BN: Glorot; residual: sigmoid, Glorot,
    :func:`make_mlp` with ``residual=True``. Takes about a second. Returns the PNG path.
    """
    x, y = mnist_inputs("train")
    nets = {"sigmoid (Glorot)": dict(activation="sigmoid", init="glorot"),
            "ReLU (He)": dict(activation="relu", init="he"),
            "sigmoid + BatchNorm": dict(activation="sigmoid", init="glorot", batchnorm=True),
            "sigmoid, residual": dict(activation="sigmoid", init="glorot", residual=True)}
    series = {}
    for label, kw in nets.items():
        manual_seed(seed)
        model = make_mlp(depth, width, **kw)
        norms = flow_summary(measure_flow(model, x[:probe], y[:probe]))["norms"]
        ratio = norms[0] / norms[-1]
        series[f"{label}: first/last {ratio:.1e}"] = norms
    fig, (ax,) = new_figure(size=(6.4, 4.0))
    layer_norm_plot(ax, series, f"gradient flow at initialisation, {depth}-layer MLP on MNIST",
                    ylabel="weight-gradient L2 norm")
    return save_figure(fig, Path(path))
