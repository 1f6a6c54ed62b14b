"""Keras's layers on minidl: ``keras.layers.Dense``, ``Conv2D``, ``concatenate``, ...

Every layer is a :class:`minidl.nn.Module` (see :mod:`.base`): weights are created on the
first call from the input's shape, names are Keras's ('dense', 'dense_1', ...), and
``get_weights()`` / ``set_weights()`` use Keras's layouts.

    >>> from minidl import keras
    >>> inp = keras.layers.Input(shape=[6])
    >>> out = keras.layers.Dense(3, activation="relu")(inp)
    >>> out.shape, [w.shape for w in out.node.module.get_weights()]
    ((None, 3), [(6, 3), (3,)])
"""
from __future__ import annotations

from typing import Any

from ...nn.symbolic import Input, SymbolicTensor
from .base import Layer
from .conv import (
    AveragePooling2D,
    Conv2D,
    GlobalAveragePooling2D,
    GlobalMaxPooling2D,
    MaxPooling2D,
)
from .core import (
    ELU,
    Activation,
    Dense,
    Dropout,
    Flatten,
    Lambda,
    LeakyReLU,
    ReLU,
    Reshape,
    Softmax,
)
from .merging import (
    Add,
    Average,
    Concatenate,
    Maximum,
    Minimum,
    Multiply,
    Subtract,
    add,
    average,
    concatenate,
    maximum,
    minimum,
    multiply,
    subtract,
)
from .normalization import BatchNormalization, Normalization

# Keras's aliases
MaxPool2D, AvgPool2D, GlobalAvgPool2D, GlobalMaxPool2D = (
    MaxPooling2D, AveragePooling2D, GlobalAveragePooling2D, GlobalMaxPooling2D)
Convolution2D = Conv2D


def InputLayer(shape: Any = None, batch_size: int | None = None, dtype: Any = None,  # noqa: N802
               name: str | None = None, input_shape: Any = None) -> SymbolicTensor:
    """Keras's ``InputLayer(shape=...)`` (Keras 2's ``input_shape=`` too): the same symbolic
    input as :func:`Input`, for the head of a Sequential."""
    if batch_size is not None:
        raise ValueError("InputLayer: batch_size is not supported; minidl graphs take any "
                         "batch size")
    shape = shape if shape is not None else input_shape
    if shape is None:
        raise ValueError("InputLayer: pass shape=(...) (the shape of one sample)")
    return Input(shape, name=name) if dtype is None else Input(shape, name=name, dtype=dtype)


__all__ = [
    "Input", "InputLayer", "Layer", "Dense", "Activation", "ReLU", "LeakyReLU", "ELU", "Softmax",
    "Dropout", "Flatten", "Reshape", "Lambda", "Conv2D", "Convolution2D", "MaxPooling2D",
    "MaxPool2D", "AveragePooling2D", "AvgPool2D", "GlobalAveragePooling2D", "GlobalAvgPool2D",
    "GlobalMaxPooling2D", "GlobalMaxPool2D", "BatchNormalization", "Normalization", "Add",
    "Subtract", "Multiply", "Average", "Maximum", "Minimum", "Concatenate", "add", "subtract",
    "multiply", "average", "maximum", "minimum", "concatenate",
]
