"""Progress display: a tqdm bar per epoch on a terminal, or one line per epoch."""
from __future__ import annotations

import sys
from typing import Any

__all__ = ["Progress", "format_logs"]


def format_logs(logs: dict[str, float]) -> str:
    """One epoch's figures as a line: ``loss 0.1234  accuracy 0.9500  lr 0.01  1.2s``."""
    parts = []
    for k, v in logs.items():
        if k == "time":
            parts.append(f"{v:.1f}s")
        elif k == "lr":
            parts.append(f"lr {v:.3g}")
        else:
            parts.append(f"{k} {v:.4f}")
    return "  ".join(parts)


class Progress:
    """A tqdm bar on a terminal (verbose=1), or one line per epoch (verbose=2), or nothing.
    ``initial``: batches already done (an epoch resumed mid-way)."""

    def __init__(self, verbose: int, total: int | None, desc: str, initial: int = 0) -> None:
        self.bar = None
        self.verbose = verbose
        if verbose == 1 and _isatty(sys.stderr):
            from tqdm.auto import tqdm  # noqa: PLC0415 - lazy: only when a bar is shown

            self.bar = tqdm(total=total, desc=desc, unit="batch", leave=True, initial=initial,
                            dynamic_ncols=True, file=sys.stderr)

    @property
    def active(self) -> bool:
        return self.bar is not None

    def update(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def show(self, figures: dict[str, float]) -> None:
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4f}" for k, v in figures.items()}, refresh=False)

    def close(self, logs: dict[str, float] | None = None, line: str | None = None) -> None:
        """Finish the bar with the epoch's figures (or print ``line`` at verbose=2)."""
        if self.bar is not None:
            if logs is not None:
                shown = {k: v for k, v in logs.items() if k not in ("lr", "time")}
                self.bar.set_postfix_str(", ".join(f"{k}={v:.4g}" for k, v in shown.items()),
                                         refresh=True)
            self.bar.close()
            self.bar = None
        elif line is not None and self.verbose >= 2:
            print(line, flush=True)


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except Exception:
        return False
