"""Instruments: a per-layer, per-step gradient-flow ``Recorder`` and ``gradient_ratio``.

    >>> import numpy as np, minidl as md, minidl.nn as nn, minidl.functional as F
    >>> from minidl.flow import Recorder
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.Sigmoid(), nn.Linear(8, 3))
    >>> x, y = md.randn(16, 4), md.tensor([0, 1, 2, 0] * 4)
    >>> with Recorder(net) as rec:
    ...     F.cross_entropy(net(x), y).backward()
    >>> [r["layer"] for r in rec.rows]
    ['0', '1', '2']
    >>> bool(np.isclose(rec.rows[0]["w_grad_norm"], np.linalg.norm(net[0].weight.grad.numpy())))
    True

A *step* starts with every forward pass of the model run with gradients enabled (so
evaluation under ``no_grad`` is not recorded); the gradients of the backward that follows
belong to it.
"""
from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, TextIO

from .. import functional as F
from .. import nn
from ..autograd import Tensor, grad, is_grad_enabled
from ..backend import get_array_module
from .plots import layer_norm_plot, new_figure, save_figure
from .result import format_table, write_csv

__all__ = ["Recorder", "gradient_ratio", "weight_layers", "COLUMNS"]

#: the columns of a Recorder row, in table order
COLUMNS = ["step", "layer", "type", "w_grad_norm", "w_grad_mean_abs", "out_grad_norm",
           "act_mean", "act_std", "saturated", "dead_relu"]


_ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.Sigmoid, nn.Tanh)


def _own_weight(module: Any) -> Any:
    w = module._parameters.get("weight")
    return w if isinstance(w, Tensor) else None


def _default_layers(model: Any) -> list[tuple[str, Any]]:
    chosen = []
    for name, m in model.named_modules():
        owns = any(p is not None for p in m._parameters.values())
        if owns or isinstance(m, _ACTIVATIONS):
            chosen.append((name or type(m).__name__, m))
    return chosen


def _select(model: Any, layers: Any) -> list[tuple[str, Any]]:
    if layers is None:
        return _default_layers(model)
    named = [(name or type(m).__name__, m) for name, m in model.named_modules()]
    if isinstance(layers, type) or (isinstance(layers, tuple) and
                                    all(isinstance(t, type) for t in layers)):
        return [(n, m) for n, m in named if isinstance(m, layers)]
    if callable(layers):
        return [(n, m) for n, m in named if layers(n, m)]
    wanted = list(layers)
    by_name = dict(named)
    out = []
    for item in wanted:
        if isinstance(item, str):
            if item not in by_name:
                raise ValueError(f"Recorder: no submodule named {item!r}; names are "
                                 f"{[n for n, _ in named][:20]}")
            out.append((item, by_name[item]))
        else:
            match = [n for n, m in named if m is item]
            if not match:
                raise ValueError(f"Recorder: {type(item).__name__} is not a submodule of the model")
            out.append((match[0], item))
    return out


def _norm(a: Any) -> float:
    xp = get_array_module(a)
    return float(xp.sqrt((a.astype(xp.float64) ** 2).sum()))


class Recorder:
    """Record per-layer gradient-flow statistics at every training step (a context manager).

    ``layers`` picks what to watch: None (default) = every module that owns parameters plus
    every activation module (ReLU, LeakyReLU, ELU, Sigmoid, Tanh); or a module type (tuple
    of types), a list of submodule names or modules, or a predicate ``(name, module) ->
    bool``. One row per watched layer per step, with the columns of :data:`COLUMNS`:

    - ``w_grad_norm``, ``w_grad_mean_abs``: L2 norm and mean |g| of the gradient of the
      layer's own ``weight`` (summed over all uses in the step);
    - ``out_grad_norm``: L2 norm of the gradient arriving at the layer's output;
    - ``act_mean``, ``act_std``: of the layer's output;
    - ``saturated``: fraction of outputs with |tanh| > 0.99 (Tanh) or sigmoid < 0.01 or
      > 0.99 (Sigmoid);
    - ``dead_relu``: fraction of ReLU units (features, or channels of (N, C, H, W)) that
      output 0 for every example and position of the batch.

    Values that do not apply are None. ``rows`` holds every row; ``table()``, ``to_csv()``
    and ``plot()`` present them.

    ``tensorboard`` (a log folder, or an open ``tensorboardX.SummaryWriter``) also writes
    every finished step's figures as TensorBoard scalars ``<NN>_<layer>/<column>`` (NN the
    layer's place in the watch list, so TensorBoard lists layers input first), at x =
    ``tensorboard_step`` + step; a step is finished when the next one starts or the Recorder
    detaches. One folder per run (``runs/depth10``, ``runs/depth50``) compares runs.
    """

    def __init__(self, model: Any, layers: Any = None,
                 tensorboard: str | os.PathLike | Any | None = None,
                 tensorboard_step: int = 0) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"Recorder: expected an nn.Module, got {type(model).__name__}")
        self.model = model
        self.layers = _select(model, layers)
        if not self.layers:
            raise ValueError("Recorder: no layers selected to watch")
        self.step = -1
        self._rows: list[dict[str, Any]] = []
        self._current: dict[str, dict[str, Any]] = {}
        self._pending: dict[str, Any] = {}     # layer name -> this step's summed weight grad
        self._handles: list[Any] = []
        self._active = False
        if tensorboard is not None and not isinstance(tensorboard, (str, os.PathLike)) and \
                not hasattr(tensorboard, "add_scalar"):
            raise TypeError(f"Recorder: tensorboard must be a log folder or a SummaryWriter, "
                            f"got {type(tensorboard).__name__}")
        self._tensorboard = tensorboard
        self._writer: Any = None
        self._tensorboard_step = tensorboard_step
        self._logged_steps = 0                 # steps already written to TensorBoard
        self._logged_rows = 0                  # rows already looked at for TensorBoard

    # ---- attaching ----------------------------------------------------------------------
    def __enter__(self) -> Recorder:
        self.attach()
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def attach(self) -> Recorder:
        """Install the hooks (done by ``with``); safe to call once per Recorder."""
        if self._handles:
            return self
        if isinstance(self._tensorboard, (str, os.PathLike)):
            from ..train.tensorboard import summary_writer  # noqa: PLC0415 - optional

            self._writer = summary_writer(self._tensorboard)
        else:
            self._writer = self._tensorboard
        self._handles.append(self.model.register_forward_pre_hook(self._begin_step))
        for name, module in self.layers:
            self._handles.append(module.register_forward_hook(self._layer_hook(name)))
            w = _own_weight(module)
            if w is not None and w.requires_grad:
                self._handles.append(w.register_hook(self._weight_hook(name)))
        return self

    def detach(self) -> None:
        """Remove every hook; the rows recorded so far stay."""
        self._finalize()
        self._log_finished_steps(self.num_steps)
        if self._writer is not None:
            self._writer.flush()
            if self._writer is not self._tensorboard:  # opened here, so closed here
                self._writer.close()
            self._writer = None
        for h in self._handles:
            h.remove()
        self._handles = []
        self._active = False

    # ---- hooks --------------------------------------------------------------------------
    def _begin_step(self, module: Any, inputs: tuple) -> None:
        if not is_grad_enabled():
            self._active = False
            return
        self._finalize()
        self._log_finished_steps(self.step + 1)
        self._pending = {}
        self._current = {}
        self.step += 1
        self._active = True

    def _layer_hook(self, name: str) -> Callable:
        def hook(module: Any, inputs: tuple, out: Any) -> None:
            if not self._active or not isinstance(out, Tensor):
                return
            key = name
            k = 2
            while key in self._current:  # a layer called twice in one step gets two rows
                key, k = f"{name}#{k}", k + 1
            data = out.data
            xp = get_array_module(data)
            row: dict[str, Any] = dict.fromkeys(COLUMNS)
            row.update(step=self.step, layer=key, type=type(module).__name__)
            if data.size and data.dtype.kind == "f":
                d64 = data.astype(xp.float64)
                row["act_mean"] = float(d64.mean())
                row["act_std"] = float(d64.std())
                if isinstance(module, nn.Sigmoid):
                    row["saturated"] = float(((data < 0.01) | (data > 0.99)).mean())
                elif isinstance(module, nn.Tanh):
                    row["saturated"] = float((xp.abs(data) > 0.99).mean())
                elif isinstance(module, nn.ReLU):
                    axis = 1 if data.ndim >= 2 else 0
                    others = tuple(a for a in range(data.ndim) if a != axis)
                    alive = (data > 0).any(axis=others) if others else data > 0
                    row["dead_relu"] = 1.0 - float(alive.mean())
            if out.requires_grad:
                out.register_hook(self._out_grad_hook(row))
            self._rows.append(row)
            self._current[key] = row
        return hook

    @staticmethod
    def _out_grad_hook(row: dict[str, Any]) -> Callable:
        def hook(g: Tensor) -> None:
            n = _norm(g.data)
            prev = row["out_grad_norm"]
            row["out_grad_norm"] = n if prev is None else math.hypot(prev, n)
        return hook

    def _weight_hook(self, name: str) -> Callable:
        def hook(g: Tensor) -> None:
            if name not in self._current:  # the layer did not run in this step
                return
            prev = self._pending.get(name)
            self._pending[name] = g.data.copy() if prev is None else prev + g.data
        return hook

    def _finalize(self) -> None:
        """Write this step's weight-gradient norms into its rows (idempotent)."""
        for name, g in self._pending.items():
            row = self._current.get(name)
            if row is None:
                continue
            xp = get_array_module(g)
            row["w_grad_norm"] = _norm(g)
            row["w_grad_mean_abs"] = float(xp.abs(g).astype(xp.float64).mean()) if g.size else 0.0

    def _log_finished_steps(self, upto: int) -> None:
        """Write the rows of steps ``_logged_steps .. upto - 1`` to TensorBoard."""
        if self._writer is None or upto <= self._logged_steps:
            return
        place = {name: i for i, (name, _) in enumerate(self.layers)}
        rows = self._rows[self._logged_rows:]  # rows are appended in step order
        for row in rows:
            if row["step"] >= upto:
                break
            self._logged_rows += 1
            if row["step"] >= self._logged_steps:
                base = row["layer"].split("#")[0]
                tag = f"{place.get(base, len(place)):02d}_{row['layer']}"
                for column in COLUMNS[3:]:
                    if row[column] is not None:
                        self._writer.add_scalar(f"{tag}/{column}", row[column],
                                                self._tensorboard_step + row["step"])
        self._logged_steps = upto

    # ---- results ------------------------------------------------------------------------
    @property
    def rows(self) -> list[dict[str, Any]]:
        """Every row recorded so far (dicts keyed by :data:`COLUMNS`)."""
        self._finalize()
        return self._rows

    @property
    def num_steps(self) -> int:
        return self.step + 1

    def _resolve_step(self, step: int) -> int:
        s = self.num_steps + step if step < 0 else step
        if not 0 <= s < self.num_steps:
            raise IndexError(f"Recorder: step {step} out of range ({self.num_steps} recorded)")
        return s

    def step_rows(self, step: int = -1) -> list[dict[str, Any]]:
        """The rows of one step (negative counts from the last)."""
        s = self._resolve_step(step)
        return [r for r in self.rows if r["step"] == s]

    def series(self, column: str = "w_grad_norm", step: int = -1
               ) -> tuple[list[str], list[float | None]]:
        """``(layer names, values)`` of ``column`` at ``step``, skipping layers without it."""
        if column not in COLUMNS[3:]:
            raise ValueError(f"Recorder.series: unknown column {column!r}; one of {COLUMNS[3:]}")
        rows = [r for r in self.step_rows(step) if r[column] is not None]
        return [r["layer"] for r in rows], [r[column] for r in rows]

    def table(self, step: int | str | None = None, columns: Sequence[str] | None = None,
              file: TextIO | None | Literal["stdout"] = "stdout") -> str:
        """Print (to ``file``: the standard output of the moment by default, None to only
        return) and return the table of one step (default: the last), or of every step with
        ``step='all'``."""
        if self.num_steps == 0:
            text = "(Recorder: nothing recorded yet; run a forward and backward pass)"
        else:
            rows = self.rows if step == "all" else self.step_rows(-1 if step is None else step)
            text = format_table(rows, list(columns or COLUMNS))
        if file is not None:
            print(text, file=sys.stdout if isinstance(file, str) else file)
        return text

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write every row as CSV; returns the path."""
        return write_csv(path, self.rows, COLUMNS)

    def plot(self, path: str | os.PathLike, column: str = "w_grad_norm",
             steps: Iterable[int] | None = None, title: str | None = None) -> Path:
        """Per-layer ``column`` (default the weight-gradient norm) on a log scale, one line
        per step (default: up to 6 steps spread over the run). Needs matplotlib."""
        if self.num_steps == 0:
            raise ValueError("Recorder.plot: nothing recorded yet")
        if steps is None:
            n = self.num_steps
            steps = sorted({round(i * (n - 1) / 5) for i in range(6)}) if n > 1 else [0]
        series, names = {}, []
        for s in steps:
            names, values = self.series(column, s)
            series[f"step {self._resolve_step(s)}"] = values
        fig, (ax,) = new_figure(size=(6.0, 3.8))
        layer_norm_plot(ax, series, title or f"{column} per layer", ylabel=column)
        if names and len(names) <= 24:
            ax.set_xticks(range(1, len(names) + 1))
            ax.set_xticklabels(names, rotation=60, fontsize=7)
        return save_figure(fig, path)


def weight_layers(model: Any) -> list[tuple[str, Any]]:
    """``(name, weight)`` of every module owning a trainable ``weight`` of 2 or more dims
    (Linear, Conv: not BatchNorm's scale), in registration order."""
    out = []
    for name, m in model.named_modules():
        w = _own_weight(m)
        if w is not None and w.ndim >= 2 and w.requires_grad:
            out.append((name or type(m).__name__, w))
    return out


def gradient_ratio(model: Any, x: Any, y: Any, loss: Callable[[Tensor, Any], Tensor] | None = None
                   ) -> float:
    """``||dL/dW_first|| / ||dL/dW_last||``: the single number for "how vanished".

    ``W_first``/``W_last`` are the first and last weight matrices (or conv kernels) of the
    model in registration order; ``L = loss(model(x), y)`` (default cross-entropy). Uses
    :func:`minidl.grad`, so the parameters' ``.grad`` are left untouched. (A BatchNorm layer
    in training mode still updates its running statistics during the forward pass.)
    """
    layers = weight_layers(model)
    if len(layers) < 2:
        raise ValueError(f"gradient_ratio: the model has {len(layers)} weight layer(s); "
                         "need at least two")
    if loss is None:
        loss = F.cross_entropy
    value = loss(model(x), y)
    if not isinstance(value, Tensor) or value.size != 1:
        raise ValueError(f"gradient_ratio: loss must return a scalar Tensor, got "
                         f"{getattr(value, 'shape', type(value).__name__)}")
    first, last = layers[0][1], layers[-1][1]
    g_first, g_last = grad(value, [first, last])
    return _norm(g_first.data) / _norm(g_last.data)
