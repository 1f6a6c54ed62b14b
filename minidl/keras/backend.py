"""Keras's ``keras.backend`` names lecture code uses: ``clear_session``, ``epsilon``,
``image_data_format``, ``floatx``."""
from __future__ import annotations

from .config import clear_session, epsilon, floatx, image_data_format

__all__ = ["clear_session", "epsilon", "floatx", "image_data_format"]
