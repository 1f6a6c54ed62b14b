"""Keras' layer names on minidl layers (the home of Dense, Conv2D, ...; today: Input)."""
from __future__ import annotations

from ..nn.symbolic import Input

__all__ = ["Input"]
