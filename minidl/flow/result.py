"""``FlowResult``: what every gradient-flow experiment returns (rows, notes, a figure)."""
from __future__ import annotations

import csv
import io
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

__all__ = ["FlowResult", "format_table", "write_csv"]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value == 0 or 1e-3 <= abs(value) < 1e4:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return str(value)


def format_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Rows of dicts as an aligned text table (numbers right-aligned, 4 significant digits)."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r.get(c), (int, float)) or r.get(c) is None for r in rows)
               for c in columns]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(row) for row in cells]
    return "\n".join(out)


def write_csv(path: str | os.PathLike, rows: list[dict[str, Any]],
              columns: list[str] | None = None) -> Path:
    """Write rows to ``path`` as CSV (atomically: a temporary file, then a rename)."""
    path = Path(path)
    columns = columns or (list(rows[0]) if rows else [])
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: ("" if r.get(c) is None else r.get(c)) for c in columns})
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)
    return path


@dataclass
class FlowResult:
    """The outcome of one experiment: a table (``rows``), conclusions (``notes``), raw
    arrays for plotting (``data``) and a figure function.

    ``print(result)`` shows the table and notes; ``result.plot(path)`` writes the PNG.
    """

    name: str
    rows: list[dict[str, Any]]
    columns: list[str]
    notes: list[str] = field(default_factory=list)
    data: dict[str, Any] = field(default_factory=dict)
    figure: Callable[[FlowResult, Path], Path] | None = field(default=None, repr=False)

    def table(self, file: TextIO | None = None) -> str:
        """The table and notes as text; printed to ``file`` too when one is given."""
        text = format_table(self.rows, self.columns)
        if self.notes:
            text += "\n\n" + "\n".join(self.notes)
        if file is not None:
            print(text, file=file)
        return text

    def __str__(self) -> str:
        return self.table()

    def to_csv(self, path: str | os.PathLike) -> Path:
        """Write the rows as CSV."""
        return write_csv(path, self.rows, self.columns)

    def plot(self, path: str | os.PathLike) -> Path:
        """Draw this experiment's figure to ``path`` (PNG; needs matplotlib)."""
        if self.figure is None:
            raise ValueError(f"{self.name}: this result has no figure")
        return self.figure(self, Path(path))

    def print(self) -> None:  # noqa: A003 - reads naturally: result.print()
        self.table(file=sys.stdout)
