"""The Keras front end: ``from minidl import keras`` runs the lectures' Keras code on minidl.

``keras.layers.Input``, ``keras.Model(inputs, outputs)`` / ``keras.models.Sequential`` with
``compile`` / ``fit`` / ``evaluate`` / ``predict`` / ``summary``; built on :mod:`minidl.nn`
and :mod:`minidl.train`.
"""
from . import layers, models
from .layers import Input
from .models import Model, Sequential

__all__ = ["Input", "Model", "Sequential", "layers", "models"]
