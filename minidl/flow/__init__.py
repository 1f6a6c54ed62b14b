"""The gradient-flow lab: instruments, experiments and figures.

- :class:`Recorder` (a context manager) records per-layer, per-step gradient and activation
  statistics through module and tensor hooks;
- :func:`gradient_ratio` is the single number for "how vanished": first-to-last layer
  weight-gradient norm ratio;
- :mod:`minidl.flow.experiments` has the lectures' experiments (``neuron``, ``depth``,
  ``parallel``, ``residual``, ``bn``) and ``demo_figure``; each also runs from the command
  line as ``minidl flow NAME``.

See ``docs/gradient-flow.md`` for the story and the measured numbers.
"""
from .recorder import COLUMNS, Recorder, gradient_ratio, weight_layers
from .result import FlowResult

__all__ = ["COLUMNS", "FlowResult", "Recorder", "gradient_ratio", "weight_layers",
           "experiments"]


def __getattr__(name: str):  # experiments pull in nn and the data; load them on first use
    if name == "experiments":
        import importlib  # noqa: PLC0415

        return importlib.import_module(".experiments", __name__)
    raise AttributeError(f"module 'minidl.flow' has no attribute {name!r}")
