"""Layer table of a model: output shapes, parameters, buffers and multiply-adds (MACs).

    >>> import minidl as md
    >>> from minidl.models import lenet5
    >>> s = md.summary.summary(lenet5(), (1, 32, 32), verbose=False)
    >>> s.total_params, s.total_macs
    (61706, 416520)

``summary`` runs one forward pass at batch size 1 in eval mode and without gradient
recording, with a forward hook on every module, and records one row per leaf layer (and per
module that owns parameters of its own). Counting conventions:

* MACs (multiply-accumulates) count only convolutions, their transposes and linear layers,
  as torchvision's "GFLOPS" column does: a Conv2d output element costs
  ``in_channels / groups * kh * kw`` MACs; a ConvTranspose2d *input* element costs
  ``out_channels / groups * kh * kw``; a Linear output element costs ``in_features``.
  A module can report its own count with a method ``macs(inputs, output) -> int``.
* Activation memory is the size of every recorded layer's output at batch 1 (in bytes of
  the output dtype): what a training step would keep for backward, to first order.
"""
from __future__ import annotations

import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import nn
from .autograd import Tensor, no_grad
from .factories import randn

__all__ = ["summary", "Summary", "LayerRow", "count_macs"]


@dataclass
class LayerRow:
    """One row of the table: a layer call."""

    name: str
    type: str
    output_shape: list[tuple[int, ...]]
    params: int
    trainable_params: int
    buffers: int
    macs: int
    output_bytes: int
    depth: int = 0


@dataclass
class Summary:
    """What :func:`summary` measured; ``str(s)`` is the table."""

    model_name: str
    input_shapes: list[tuple[int, ...]]
    rows: list[LayerRow] = field(default_factory=list)
    output_shapes: list[tuple[int, ...]] = field(default_factory=list)
    total_params: int = 0
    trainable_params: int = 0
    frozen_params: int = 0
    total_buffers: int = 0
    total_macs: int = 0
    activation_bytes: int = 0
    input_bytes: int = 0
    param_bytes: int = 0

    @property
    def gmacs(self) -> float:
        """Total multiply-adds in units of 10^9."""
        return self.total_macs / 1e9

    def table(self, max_rows: int | None = None) -> str:
        """The table as text; ``max_rows`` elides the middle of very long tables."""
        header = ("Layer (type)", "Output shape", "Params", "Buffers", "MACs")
        body = []
        for r in self.rows:
            shape = ", ".join(str(tuple(s)) for s in r.output_shape)
            body.append((f"{'  ' * r.depth}{r.name} ({r.type})", shape, f"{r.params:,}",
                         f"{r.buffers:,}" if r.buffers else "-",
                         f"{r.macs:,}" if r.macs else "-"))
        if max_rows is not None and len(body) > max_rows:
            half = max_rows // 2
            body = body[:half] + [("...", "", "", "", "")] + body[-half:]
        widths = [max(len(h), *(len(row[i]) for row in body)) if body else len(h)
                  for i, h in enumerate(header)]
        line = "-" * (sum(widths) + 2 * (len(widths) - 1))

        def fmt(cols: Sequence[str]) -> str:
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                             for i, (c, w) in enumerate(zip(cols, widths)))

        mb = 1024 ** 2
        out = [f"{self.model_name}  input {', '.join(str(s) for s in self.input_shapes)}  "
               f"output {', '.join(str(s) for s in self.output_shapes)}",
               line, fmt(header), line, *(fmt(b) for b in body), line,
               f"Total params:         {self.total_params:,}",
               f"Trainable params:     {self.trainable_params:,}",
               f"Frozen params:        {self.frozen_params:,}",
               f"Buffers:              {self.total_buffers:,}",
               f"MACs (batch 1):       {self.total_macs:,} ({self.gmacs:.3f} G)",
               f"Activations (batch 1): {self.activation_bytes / mb:.2f} MB",
               f"Input / params:       {self.input_bytes / mb:.2f} MB / "
               f"{self.param_bytes / mb:.2f} MB",
               line]
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()

    def __repr__(self) -> str:
        return self.table()


def _shapes(out: Any) -> list[tuple[int, ...]]:
    """Shapes of every Tensor inside a (possibly nested) output."""
    if isinstance(out, Tensor):
        return [tuple(out.shape)]
    if isinstance(out, (tuple, list)):
        return [s for o in out for s in _shapes(o)]
    if isinstance(out, dict):
        return [s for o in out.values() for s in _shapes(o)]
    return []


def _bytes(out: Any) -> int:
    if isinstance(out, Tensor):
        return int(out.size) * out.dtype.itemsize
    if isinstance(out, (tuple, list)):
        return sum(_bytes(o) for o in out)
    if isinstance(out, dict):
        return sum(_bytes(o) for o in out.values())
    return 0


def count_macs(module: Any, inputs: tuple, output: Any) -> int:
    """Multiply-adds of one call of ``module`` (0 for layers that do no conv/linear work)."""
    custom = getattr(module, "macs", None)
    if callable(custom):
        return int(custom(inputs, output))
    weight = getattr(module, "weight", None)
    if weight is None or not isinstance(output, Tensor):
        return 0
    per = int(np.prod(weight.shape[1:]))
    if isinstance(module, nn.ConvTranspose2d):
        return int(inputs[0].size) * per
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        return int(output.size) * per
    return 0


def _is_row(module: Any) -> bool:
    """Leaves, and modules that own parameters directly, get a row."""
    has_children = any(True for _ in module.children())
    own = any(p is not None for p in module._parameters.values()) or any(
        b is not None for b in module._buffers.values())
    return not has_children or own


def summary(model: Any, input_shape: Sequence[int] | Sequence[Sequence[int]],
            batch_size: int = 1, dtype: Any = np.float32, device: str | None = None,
            verbose: bool = True, print_fn: Callable[[str], None] = print,
            max_rows: int | None = None) -> Summary:
    """Run one forward at batch 1 and tabulate every layer.

    ``input_shape`` is one sample's shape, e.g. ``(3, 224, 224)``, or a list of shapes for a
    model with several inputs. Returns a :class:`Summary` (``.rows``, ``.total_params``,
    ``.trainable_params``, ``.frozen_params``, ``.total_macs``, ``.activation_bytes``, ...)
    and prints its table unless ``verbose=False``. The model's train/eval mode is restored.
    MACs and activation bytes are per forward of ``batch_size`` samples.
    """
    shapes = ([tuple(int(d) for d in input_shape)]
              if all(isinstance(d, (int, np.integer)) for d in input_shape)
              else [tuple(int(d) for d in s) for s in input_shape])  # type: ignore[union-attr]
    if device is None:
        device = model.device
    names = {id(m): n for n, m in model.named_modules()}
    rows: list[LayerRow] = []
    handles = []

    def hook(module: Any, inputs: tuple, output: Any) -> None:
        name = names.get(id(module), "?") or type(model).__name__
        rows.append(_layer_row(name, module, inputs, output))

    for m in model.modules():
        if _is_row(m):
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        xs = [randn(batch_size, *s, dtype=dtype, device=device) for s in shapes]
        with no_grad():
            out = model(*xs)
    except (ValueError, TypeError) as e:
        raise _shape_error(e, model, names, shapes, rows) from None
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    s = _totals(model, shapes, rows, _shapes(out), batch_size * np.dtype(dtype).itemsize)
    if verbose:
        print_fn(s.table(max_rows=max_rows))
    return s


def _shape_error(e: Exception, model: Any, names: dict[int, str],
                 shapes: list[tuple[int, ...]], rows: list[LayerRow]) -> ValueError:
    """The error of a forward that failed: which layer (the innermost module on the
    traceback), after which row, for which input shape, and what to change."""
    failing = None
    for frame, _ in traceback.walk_tb(e.__traceback__):
        owner = frame.f_locals.get("self")
        if owner is not None and id(owner) in names and names[id(owner)]:
            failing = f"layer {names[id(owner)]} ({type(owner).__name__})"
    after = (f" after {rows[-1].name} gave {', '.join(map(str, rows[-1].output_shape))}"
             if rows else "")
    own = getattr(model, "input_shape", None)
    fix = f"an input shape the model reads, e.g. its own {tuple(own)}" if own else \
        "an input shape the model reads"
    detail = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    shown = ", ".join(map(str, shapes))
    return ValueError(f"summary: {failing or 'the model'} fails for input shape {shown}"
                      f"{after}: {detail}; give {fix}")


def _layer_row(name: str, module: Any, inputs: tuple, output: Any) -> LayerRow:
    """One table row: a leaf counts all its parameters, a container only its own."""
    direct = [p for p in module._parameters.values() if p is not None]
    if not any(True for _ in module.children()):
        direct = list(module.parameters())
    bufs = [b for b in module._buffers.values() if b is not None]
    return LayerRow(
        name=name, type=type(module).__name__, output_shape=_shapes(output),
        params=sum(int(p.size) for p in direct),
        trainable_params=sum(int(p.size) for p in direct if p.requires_grad),
        buffers=sum(int(b.size) for b in bufs),
        macs=count_macs(module, inputs, output), output_bytes=_bytes(output),
        depth=name.count(".") if name else 0)


def _totals(model: Any, shapes: list[tuple[int, ...]], rows: list[LayerRow],
            output_shapes: Any, batch_bytes: int) -> Summary:
    """The Summary of ``rows`` with the model-wide counts; ``batch_bytes`` is what one input
    number takes over the whole batch (batch size times item size)."""
    params = list(model.parameters())
    s = Summary(model_name=getattr(model, "name", None) or type(model).__name__,
                input_shapes=shapes, rows=rows, output_shapes=output_shapes)
    s.total_params = sum(int(p.size) for p in params)
    s.trainable_params = sum(int(p.size) for p in params if p.requires_grad)
    s.frozen_params = s.total_params - s.trainable_params
    s.total_buffers = sum(int(b.size) for b in model.buffers())
    s.total_macs = sum(r.macs for r in rows)
    s.activation_bytes = sum(r.output_bytes for r in rows)
    s.input_bytes = sum(int(np.prod(sh)) * batch_bytes for sh in shapes)
    s.param_bytes = sum(int(p.size) * p.dtype.itemsize for p in params)
    return s


if __name__ == "__main__":  # the command moved to the CLI, which sits above the zoo
    import sys

    sys.exit("python -m minidl.summary has moved: run `minidl summary MODEL` "
             "(or `python -m minidl.cli summary MODEL`; `--zoo-table` for every model)")
