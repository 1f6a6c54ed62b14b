"""Keras' global settings: the image data format, epsilon, floatx, and layer-name counters.

``keras.config.set_image_data_format('channels_first')`` switches every Conv2D, pooling and
Flatten layer created afterwards (without an explicit ``data_format=``) to (N, C, H, W), as in
Keras; the default is Keras's 'channels_last' (N, H, W, C).
"""
from __future__ import annotations

__all__ = ["image_data_format", "set_image_data_format", "epsilon", "set_epsilon", "floatx",
           "unique_name", "clear_session"]

_FORMAT = "channels_last"
_EPSILON = 1e-7
_COUNTS: dict[str, int] = {}


def image_data_format() -> str:
    """'channels_last' (Keras's default) or 'channels_first'."""
    return _FORMAT


def set_image_data_format(data_format: str) -> None:
    """Set the default ``data_format`` of the image layers created from now on."""
    global _FORMAT
    _FORMAT = data_format_of(data_format, "set_image_data_format")


def data_format_of(value: str | None, owner: str) -> str:
    """``value`` checked ('channels_last' / 'channels_first'), or the global default."""
    if value is None:
        return _FORMAT
    if value not in ("channels_last", "channels_first"):
        raise ValueError(f"{owner}: data_format must be 'channels_last' or 'channels_first', "
                         f"got {value!r}")
    return value


def epsilon() -> float:
    """Keras's fuzz factor (1e-7), used by the probability clipping of the losses."""
    return _EPSILON


def set_epsilon(value: float) -> None:
    """Set :func:`epsilon` (only the Keras layers read it)."""
    global _EPSILON
    _EPSILON = float(value)


def floatx() -> str:
    """The float type of new weights: 'float32' (minidl's default dtype)."""
    return "float32"


def unique_name(base: str) -> str:
    """Keras's automatic layer names: 'dense', 'dense_1', 'dense_2', ... per session."""
    k = _COUNTS.get(base, 0)
    _COUNTS[base] = k + 1
    return base if k == 0 else f"{base}_{k}"


def clear_session() -> None:
    """Keras's ``clear_session``: restart the automatic layer names ('dense', ...)."""
    _COUNTS.clear()
