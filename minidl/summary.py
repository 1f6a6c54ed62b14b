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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .autograd import Tensor, no_grad, randn

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
    from . import nn  # noqa: PLC0415 - summary sits above nn; nn is imported lazily

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
        direct = [p for p in module._parameters.values() if p is not None]
        if not any(True for _ in module.children()):
            direct = list(module.parameters())
        bufs = [b for b in module._buffers.values() if b is not None]
        name = names.get(id(module), "?") or type(model).__name__
        rows.append(LayerRow(
            name=name, type=type(module).__name__, output_shape=_shapes(output),
            params=sum(int(p.size) for p in direct),
            trainable_params=sum(int(p.size) for p in direct if p.requires_grad),
            buffers=sum(int(b.size) for b in bufs),
            macs=count_macs(module, inputs, output), output_bytes=_bytes(output),
            depth=name.count(".") if name else 0))

    for m in model.modules():
        if _is_row(m):
            handles.append(m.register_forward_hook(hook))
    was_training = model.training
    model.eval()
    try:
        xs = [randn(batch_size, *s, dtype=dtype, device=device) for s in shapes]
        with no_grad():
            out = model(*xs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)

    params = list(model.parameters())
    s = Summary(model_name=getattr(model, "name", None) or type(model).__name__,
                input_shapes=shapes, rows=rows, output_shapes=_shapes(out))
    s.total_params = sum(int(p.size) for p in params)
    s.trainable_params = sum(int(p.size) for p in params if p.requires_grad)
    s.frozen_params = s.total_params - s.trainable_params
    s.total_buffers = sum(int(b.size) for b in model.buffers())
    s.total_macs = sum(r.macs for r in rows)
    s.activation_bytes = sum(r.output_bytes for r in rows)
    s.input_bytes = sum(int(np.prod(sh)) * batch_size * np.dtype(dtype).itemsize
                        for sh in shapes)
    s.param_bytes = sum(int(p.size) * p.dtype.itemsize for p in params)
    if verbose:
        print_fn(s.table(max_rows=max_rows))
    return s


# Published figures: parameters from the papers / torchvision's model cards, GMACs from
# torchvision's "GFLOPS" column (which counts multiply-adds). None: no published figure.
PUBLISHED: dict[str, tuple[dict[str, Any], int | str | None, float | None]] = {
    "lenet5": ({}, 61_706, None),
    "lenet5 (1998)": ({"variant": "1998"}, 60_000, None),
    "alexnet": ({}, 61_100_840, 0.714),
    # Sze et al. 2017 ("Efficient processing of deep neural networks"): 61 M, 724 M MACs
    "alexnet (original, groups=2)": ({"variant": "original", "groups": 2}, 60_965_224, 0.724),
    "vgg11": ({}, 132_863_336, 7.609), "vgg11_bn": ({}, 132_868_840, 7.609),
    "vgg13": ({}, 133_047_848, 11.308), "vgg13_bn": ({}, 133_053_736, 11.308),
    "vgg16": ({}, 138_357_544, 15.470), "vgg16_bn": ({}, 138_365_992, 15.470),
    "vgg19": ({}, 143_667_240, 19.632), "vgg19_bn": ({}, 143_678_248, 19.632),
    "vgg (C)": ({"config": "C"}, "about 134 M", None),
    "googlenet": ({"aux_logits": False}, 6_624_904, 1.498),
    "googlenet (aux)": ({"aux_logits": True}, 13_004_888, 1.498),
    "googlenet (faithful)": ({"aux_logits": False, "faithful": True}, 6_998_552, None),
    "resnet18": ({}, 11_689_512, 1.814), "resnet34": ({}, 21_797_672, 3.664),
    "resnet50": ({}, 25_557_032, 4.089), "resnet101": ({}, 44_549_160, 7.801),
    "resnet152": ({}, 60_192_808, 11.514),
    "plain18": ({}, None, None), "plain34": ({}, None, None),
    "cifar_resnet20": ({}, "0.27 M", None), "cifar_resnet32": ({}, "0.46 M", None),
    "cifar_resnet44": ({}, "0.66 M", None), "cifar_resnet56": ({}, "0.85 M", None),
    "cifar_resnet110": ({}, "1.7 M", None),
    "densenet121": ({}, 7_978_856, 2.834), "densenet169": ({}, 14_149_480, 3.360),
    "densenet201": ({}, 20_013_928, 4.291),
    "densenet_cifar (BC, L=100, k=12)": ({"depth": 100, "growth_rate": 12}, "0.8 M", None),
    "dcgan_generator (28x28)": ({}, None, None),
    "dcgan_discriminator (28x28)": ({}, None, None),
    "wide_and_deep": ({}, None, None),
}


def zoo_table(names: Sequence[str] | None = None) -> str:
    """A Markdown table of the zoo: measured parameters and GMACs (this module's
    :func:`summary` at batch 1) next to the published figures."""
    from . import models  # noqa: PLC0415

    def macs(g: float | None) -> str:
        if g is None:
            return "-"
        return f"{g:.3f} G" if g >= 0.1 else f"{g * 1e3:.3f} M"

    lines = ["| model | input | params (measured) | params (published) | MACs (measured) "
             "| MACs (published) |", "|---|---|---:|---:|---:|---:|"]
    for label in names or PUBLISHED:
        kw, p_pub, g_pub = PUBLISHED[label]
        name = label.split(" ")[0]
        with models.skip_init():
            model = models.get_model(name, **kw)
        s = summary(model, model.input_shape, verbose=False)
        trainable = s.trainable_params
        shown = f"{trainable:,}" if trainable == s.total_params else \
            f"{trainable:,} (+{s.frozen_params:,} fixed)"
        pub = "-" if p_pub is None else p_pub if isinstance(p_pub, str) else f"{p_pub:,}"
        lines.append(
            f"| {label} | {'+'.join('x'.join(map(str, sh)) for sh in s.input_shapes)} "
            f"| {shown} | {pub} | {macs(s.gmacs)} | {macs(g_pub)} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m minidl.summary MODEL [--input C,H,W] [--zoo-table]``."""
    import argparse  # noqa: PLC0415

    from . import models  # noqa: PLC0415

    ap = argparse.ArgumentParser(prog="minidl summary",
                                 description="Layer table of a model of the zoo.")
    ap.add_argument("model", nargs="?", help="a name from minidl.models.list_models()")
    ap.add_argument("--input", help="input shape without batch, e.g. 3,224,224")
    ap.add_argument("--zoo-table", action="store_true",
                    help="print the Markdown table of every model (docs/models.md)")
    ap.add_argument("--max-rows", type=int, default=None)
    args = ap.parse_args(argv)
    if args.zoo_table:
        print(zoo_table())
        return 0
    if not args.model:
        ap.error("give a model name (or --zoo-table); models: "
                 + ", ".join(models.list_models()))
    with models.skip_init():  # the table does not depend on the weights' values
        model = models.get_model(args.model)
    shape = (tuple(int(v) for v in args.input.split(",")) if args.input
             else getattr(model, "input_shape", None))
    if shape is None:
        ap.error(f"give the input shape of {args.model} with --input C,H,W")
    summary(model, shape, max_rows=args.max_rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
