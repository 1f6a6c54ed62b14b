"""The gradient-flow lab: instruments, experiments and figures.

- :class:`Recorder` (a context manager) records per-layer, per-step gradient and activation
  statistics through module and tensor hooks;
- :func:`gradient_ratio` is the single number for "how vanished": first-to-last layer
  weight-gradient norm ratio;
- the lectures' experiments, one module each; each is a function returning a
  :class:`FlowResult` (``.table()``, ``.plot(path)``) and runs as ``minidl flow NAME``:

  - ``neuron`` (neuron.py): the single tanh neuron ``tanh(x + w)``, its input shifted 0..6;
  - ``depth`` (depth.py): MLP depth sweep, activation x init x BatchNorm, decay per layer;
  - ``parallel`` (paths.py): parallel paths (Inception) against a chain: how often dE/dw ~ 0;
  - ``residual`` (residual.py): plain against residual nets at depths 20 and 56;
  - ``bn`` (bn.py): a deep sigmoid net with and without BatchNorm;
  - ``demo_figure`` (demo.py): the figure of ``minidl demo``.

  The nets, data and SGD loop they share are in nets.py; one measured pass in measure.py.

Every experiment runs in under two minutes on two CPU cores at its default size.
See ``docs/gradient-flow.md`` for the story and the measured numbers.
"""
from .bn import bn
from .demo import demo_figure
from .depth import depth
from .measure import measure_flow
from .nets import (
    ACTIVATIONS,
    INITS,
    init_weights,
    make_mlp,
    make_resnet_mlp,
    mnist_inputs,
    sgd_train,
    zero_init_residual,
)
from .neuron import neuron
from .paths import parallel, parallel_net, path_products, sequential_net
from .recorder import COLUMNS, Recorder, gradient_ratio, weight_layers
from .residual import residual
from .result import FlowResult

__all__ = ["COLUMNS", "FlowResult", "Recorder", "gradient_ratio", "weight_layers",
           "neuron", "depth", "parallel", "residual", "bn", "demo_figure", "parallel_net",
           "sequential_net", "path_products", "make_mlp", "make_resnet_mlp", "init_weights",
           "mnist_inputs", "sgd_train", "measure_flow", "zero_init_residual", "ACTIVATIONS",
           "INITS"]
