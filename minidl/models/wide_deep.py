"""The lectures' wide-and-deep network: two inputs, two outputs, Keras functional API.

Cheng et al. (2016)'s idea in the form of Geron's California-housing example: the *wide*
input goes straight to the output, the *deep* input goes through two hidden layers; the
main output sees both (concatenated), and an auxiliary output on the deep path alone is a
regulariser (trained with loss weights 0.9 / 0.1).

    >>> from minidl.models import wide_and_deep
    >>> model = wide_and_deep()
    >>> model.num_parameters()
    1207
"""
from __future__ import annotations

from typing import Any

from ..keras import Input, Model
from ..nn import Concat, Linear

__all__ = ["wide_and_deep"]


def wide_and_deep(wide_features: int = 5, deep_features: int = 6, hidden: int = 30,
                  outputs: int = 1, compile: bool = False, **compile_kw: Any) -> Model:
    """Inputs ``[wide (N, wide_features), deep (N, deep_features)]`` -> outputs
    ``[main (N, outputs), aux (N, outputs)]``.

    ``main = Linear(concat(wide, h2))`` with ``h2 = relu(Linear(relu(Linear(deep))))`` and
    ``aux = Linear(h2)``. With ``compile=True`` the model is compiled with MSE on both
    outputs, ``loss_weights=[0.9, 0.1]`` and Adam (override with ``compile_kw``).
    """
    input_wide = Input((wide_features,), name="wide_input")
    input_deep = Input((deep_features,), name="deep_input")
    h1 = Linear(deep_features, hidden, activation="relu", name="hidden1")(input_deep)
    h2 = Linear(hidden, hidden, activation="relu", name="hidden2")(h1)
    concat = Concat(axis=1, name="concat")(input_wide, h2)
    main = Linear(wide_features + hidden, outputs, name="main_output")(concat)
    aux = Linear(hidden, outputs, name="aux_output")(h2)
    model = Model(inputs=[input_wide, input_deep], outputs=[main, aux], name="wide_and_deep")
    model.input_shape = [(wide_features,), (deep_features,)]
    if compile:
        kw = {"loss": ["mse", "mse"], "loss_weights": [0.9, 0.1], "optimizer": "adam"}
        kw.update(compile_kw)
        model.compile(**kw)
    return model
