"""Opening TensorBoard event-file writers (tensorboardX, an optional dependency) for minidl.

tensorboardX writes the event format TensorBoard reads with only numpy and protobuf beneath
it (torch's ``torch.utils.tensorboard`` needs torch, TensorFlow's writer needs TensorFlow), so
it is the writer here; nothing else of minidl imports it, and only when a log is written.
"""
from __future__ import annotations

import os
from typing import Any

__all__ = ["summary_writer", "INSTALL_HINT"]

INSTALL_HINT = "pip install 'minidl[tensorboard]' (tensorboardX, and tensorboard to view the logs)"


def summary_writer(log_dir: str | os.PathLike) -> Any:
    """A ``tensorboardX.SummaryWriter`` writing event files into ``log_dir`` (created).

    Look at the logs with ``tensorboard --logdir DIR``; every run in a sub-folder of DIR is
    one run there, so runs can be compared side by side.
    """
    try:
        from tensorboardX import SummaryWriter  # noqa: PLC0415 - optional, loaded on use
    except ImportError:
        raise ImportError(f"TensorBoard logging needs tensorboardX: {INSTALL_HINT}") from None
    return SummaryWriter(logdir=os.fspath(log_dir), flush_secs=10)
