"""The Keras front end: ``from minidl import keras`` runs the lectures' Keras code on minidl.

``keras.layers`` (Dense, Conv2D, Dropout, concatenate, ...), ``keras.Model(inputs, outputs)``
/ ``keras.Sequential`` with ``compile`` / ``fit`` / ``evaluate`` / ``predict`` / ``summary``
and Keras's weight methods, ``keras.optimizers`` (Keras's update rules and defaults),
``keras.losses`` / ``keras.metrics`` (the one table of minidl.train), ``keras.regularizers``,
``keras.constraints``, ``keras.initializers``, ``keras.callbacks``, ``keras.config``. Built on
:mod:`minidl.nn` and :mod:`minidl.train`; see docs/keras.md.

    >>> import numpy as np
    >>> from minidl import keras
    >>> model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    >>> model.compile(loss="mse", optimizer="sgd")
    >>> x = np.ones((8, 3), np.float32)
    >>> len(model.fit(x, x[:, :1], epochs=2, verbose=0).history["loss"])
    2
"""
from . import (
    activations,
    backend,
    callbacks,
    config,
    constraints,
    initializers,
    layers,
    losses,
    metrics,
    models,
    optimizers,
    regularizers,
    utils,
)
from .layers import Input
from .models import Model, Sequential

__all__ = ["Input", "Model", "Sequential", "activations", "backend", "callbacks", "config",
           "constraints", "initializers", "layers", "losses", "metrics", "models",
           "optimizers", "regularizers", "utils"]
