"""Stopping a training run cleanly on SIGINT / SIGTERM: StopSignals and TrainingInterrupted."""
from __future__ import annotations

import signal
import sys
import threading
from types import FrameType
from typing import Any

__all__ = ["TrainingInterrupted", "StopSignals", "EXIT_CODES"]

#: the exit status a shell reports for a process ended by the signal (128 + its number)
EXIT_CODES = {"SIGINT": 130, "SIGTERM": 143}


class TrainingInterrupted(SystemExit):
    """``Trainer.fit`` stopped at a step boundary on SIGINT (Ctrl-C) or SIGTERM.

    A ``SystemExit``: uncaught, the process ends quietly with ``code`` (130 for SIGINT,
    143 for SIGTERM, what a shell reports for a process the signal ended), after the one
    line that says where the checkpoint is and how to resume. Catch it to carry on:
    ``signal`` ('SIGINT' or 'SIGTERM'), ``checkpoint`` (the path written, or None),
    ``epoch`` (from 1) and ``step`` (steps of that epoch done) say where the run stopped,
    ``message`` is the line that was printed.
    """

    def __init__(self, message: str, signal_name: str, checkpoint: str | None, epoch: int,
                 step: int) -> None:
        super().__init__(EXIT_CODES.get(signal_name, 1))
        self.message, self.signal, self.checkpoint = message, signal_name, checkpoint
        self.epoch, self.step = epoch, step

    def __str__(self) -> str:
        return self.message


class StopSignals:
    """Within the block, SIGINT and SIGTERM only set :attr:`received` (the signal's name);
    the loop polls it between steps and stops there. A second signal restores the previous
    handlers and is delivered again: Ctrl-C twice aborts at once, as it always did.

    Outside the main thread (where Python cannot install handlers) it does nothing.
    """

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signal.Signals(signum).name
            return
        self._restore()
        signal.raise_signal(signum)

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        self._previous.clear()

    def __exit__(self, *exc: Any) -> None:
        self._restore()


def announce(message: str) -> None:
    """Print the one line of an interrupted run on stderr (flushed: the process ends next)."""
    print(message, file=sys.stderr, flush=True)
