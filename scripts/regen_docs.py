"""Regenerate the measured tables of the docs from the commands that print them, or check them.

A generated block in a page sits between two markers,

    <!-- regen:flow-bn: minidl flow bn -->
    ...the table...
    <!-- /regen:flow-bn -->

and is rewritten from what its command prints today (run as ``python -m minidl.cli ...`` in
a fresh process, in a temporary folder). Numbers are copied digit for digit; only columns and
rows are selected and renamed, and times (which vary from run to run) are left out.

    python scripts/regen_docs.py                        # rerun every command, rewrite the pages
    python scripts/regen_docs.py flow-bn demo-quick     # only these blocks
    python scripts/regen_docs.py --check                # compare only; exit 1 if a page differs
    python scripts/regen_docs.py --list                 # the blocks, their pages and commands

tests/test_docs_numbers.py reruns the cheap blocks (``CHEAP``) and compares them with the
pages; the others (the depth sweep, residual nets, the full demo, the zoo table) take minutes.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

__all__ = ["BLOCKS", "CHEAP", "parse_table", "page_block", "render", "run_command"]


# ---- running the commands and reading what they print ------------------------------------

_outputs: dict[tuple[str, ...], str] = {}


def run_command(argv: tuple[str, ...]) -> str:
    """stdout of ``minidl ARGV`` run in a fresh process in a temporary folder (cached)."""
    if argv not in _outputs:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])))
        with tempfile.TemporaryDirectory() as tmp:
            res = subprocess.run([sys.executable, "-m", "minidl.cli", *argv], cwd=tmp, env=env,
                                 capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"minidl {' '.join(argv)} failed:\n{res.stderr[-2000:]}")
        _outputs[argv] = res.stdout
    return _outputs[argv]


def parse_table(text: str) -> list[dict[str, str]]:
    """The first aligned table of a command's output (a header line, a line of dashes under
    each column, then rows) as dicts of the cells' exact text."""
    lines = text.splitlines()
    for i in range(1, len(lines)):
        if lines[i].startswith("-") and set(lines[i]) <= {"-", " "}:
            spans = [m.span() for m in re.finditer(r"-+", lines[i])]
            break
    else:
        raise ValueError("no table in the command's output")

    def cells(line: str) -> list[str]:
        # a cell lies inside its column's span: left- or right-justified to its width
        return [line[a:b].strip() for a, b in spans[:-1]] + [line[spans[-1][0]:].strip()]

    header = cells(lines[i - 1])
    rows = []
    for line in lines[i + 1:]:
        if not line.strip():
            break
        rows.append(dict(zip(header, cells(line))))
    return rows


def markdown_table(columns: dict[str, str], rows: list[dict[str, str]],
                   left: tuple[str, ...] = ()) -> str:
    """A Markdown table: ``columns`` maps the page's heading to the command's column (or to a
    function of the row); numbers right-aligned, the ``left`` headings left-aligned."""
    heads = list(columns)
    lines = ["| " + " | ".join(h.replace("|", "\\|") for h in heads) + " |",
             "|" + "|".join("---" if h in left else "---:" for h in heads) + "|"]
    for row in rows:
        values = [src(row) if callable(src) else row[src] for src in columns.values()]
        lines.append("| " + " | ".join(v.replace("|", "\\|") for v in values) + " |")
    return "\n".join(lines)


# ---- one renderer per block ----------------------------------------------------------------

def _neuron(out: str) -> str:
    rows = [r for r in parse_table(out) if "." not in r["shift"]]        # whole shifts only
    return markdown_table({"shift": "shift", "dE/dw, x = shift": "dE/dw (x=shift)",
                           "1 - tanh²(x + w)": "1-tanh^2(x+w)", "dE/dw, data": "dE/dw data",
                           "dE/dw, data + Normalization": "dE/dw data normalized"}, rows)


def _depth_rows(out: str, picks: list[tuple[str, str, str]]) -> list[dict[str, str]]:
    rows = {(r["depth"], r["act"], r["init"], r["BN"]): r for r in parse_table(out)}
    return [rows[(d, act, init, "no")] for d, act, init in picks]


def _depth_sigmoid(out: str) -> str:
    picks = [("5", "sigmoid", "naive"), ("10", "sigmoid", "naive"), ("20", "sigmoid", "naive"),
             ("50", "sigmoid", "naive"), ("10", "sigmoid", "glorot"),
             ("20", "sigmoid", "glorot"), ("50", "sigmoid", "glorot"), ("50", "sigmoid", "he")]
    return markdown_table({"depth": "depth", "init": "init", "first/last ratio": "ratio init",
                           "decay/layer": "decay/layer init", "sigmoid gain": "act gain init"},
                          _depth_rows(out, picks), left=("init",))


def _depth_acts(out: str) -> str:
    picks = [("20", "tanh", "naive"), ("20", "tanh", "glorot"), ("20", "relu", "naive"),
             ("20", "relu", "glorot"), ("20", "relu", "he"), ("50", "relu", "glorot"),
             ("50", "relu", "he")]
    return markdown_table({"depth": "depth", "act": "act", "init": "init",
                           "first-layer grad norm": "|g first| init",
                           "first/last ratio": "ratio init", "decay/layer": "decay/layer init",
                           "act gain": "act gain init", "loss after 100 steps": "loss last"},
                          _depth_rows(out, picks), left=("act", "init"))


def _depth_bn(out: str) -> str:
    """BatchNorm nets of the sweep: per activation and depth, the range over the three
    initialisations of the decay per layer, and of the first/last ratio at the largest depth."""
    rows = [r for r in parse_table(out) if r["BN"] == "yes" and r["depth"] != "2"]
    depths = list(dict.fromkeys(r["depth"] for r in rows))

    def span(cells: list[str]) -> str:
        cells = sorted(cells, key=float)
        return cells[0] if cells[0] == cells[-1] else f"{cells[0]}–{cells[-1]}"

    lines = ["| act | " + " | ".join(f"decay/layer, depth {d}" for d in depths)
             + f" | first/last, depth {depths[-1]} |",
             "|---|" + "---:|" * (len(depths) + 1)]
    for act in dict.fromkeys(r["act"] for r in rows):
        at = {d: [r for r in rows if r["act"] == act and r["depth"] == d] for d in depths}
        cells = [span([r["decay/layer init"] for r in at[d]]) for d in depths]
        cells.append(span([r["ratio init"] for r in at[depths[-1]]]))
        lines.append(f"| {act} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _bn(out: str) -> str:
    return markdown_table({"net": "net", "first-layer grad": "|g first| init",
                           "first/last": "ratio init", "decay/layer": "decay/layer",
                           "sigmoid std": "act std",
                           "loss start → end": lambda r: f"{r['loss start']} → {r['loss end']}",
                           "test acc": "test acc"}, parse_table(out), left=("net",))


def _parallel(out: str) -> str:
    rows = [r for r in parse_table(out) if r["units n"] in ("1", "2", "3", "4", "6", "8")]
    return markdown_table({"units n": "units n",
                           "P(dE/dw ≈ 0), parallel": "P(dE/dw~0) parallel",
                           "P(dE/dw ≈ 0), chain": "P(dE/dw~0) sequential",
                           "P(one path ≈ 0)": "P(one path ~0)",
                           "median |dE/dw| parallel": "median |dE/dw| parallel",
                           "median |dE/dw| chain": "median |dE/dw| sequential"}, rows)


def _residual(out: str) -> str:
    return markdown_table({"net": "net", "blocks": "blocks",
                           "block grad first/last at init": "grad first/last block",
                           "loss start": "loss start", "loss end": "loss end",
                           "test acc": "test acc"}, parse_table(out), left=("net",))


def _demo(out: str) -> str:
    """The accuracy and confusion lines, without the times."""
    keep = [re.sub(r"; training took .*$", "", line) for line in out.splitlines()
            if line.startswith(("test accuracy:", "most confused", "no digit"))]
    return "```\n" + "\n".join(keep) + "\n```"


def _demo_seeds(*outs: str) -> str:
    """The test accuracy of the full demo for each seed."""
    lines = ["| seed | test accuracy | most confused digits (true -> predicted: count) |",
             "|---:|---|---|"]
    for seed, out in enumerate(outs, start=1):
        acc = re.search(r"^test accuracy: (\S+ \(\d+/\d+ digits\))", out, re.M)
        confused = re.search(r"^most confused digits \(true -> predicted: count\): (.*)$", out,
                             re.M)
        lines.append(f"| {seed} | {acc.group(1) if acc else '?'} | "
                     f"{confused.group(1) if confused else '-'} |")
    return "\n".join(lines)


def _zoo(out: str) -> str:
    return out.strip()


def _text_table(out: str) -> str:
    """A lab's table exactly as it prints it (up to the first blank line), in a text fence."""
    table = out.split("\n\n", 1)[0].strip("\n")
    return f"```text\n{table}\n```"


def _lab_notes(out: str) -> str:
    """The notes a lab prints under its table, without the closing 'NAME: 12.3 s' line."""
    rest = out.split("\n\n", 1)[1] if "\n\n" in out else ""
    return "\n".join(line for line in rest.strip("\n").splitlines()
                     if not re.fullmatch(r"[\w-]+: [\d.]+ s", line))


def _text_notes(out: str) -> str:
    """A lab's notes, in a text fence."""
    return f"```text\n{_lab_notes(out)}\n```"


def _text_all(out: str) -> str:
    """A lab's table and notes, as printed, in one text fence."""
    table = out.split("\n\n", 1)[0].strip("\n")
    return f"```text\n{table}\n\n{_lab_notes(out)}\n```"


@dataclass(frozen=True)
class Block:
    """A generated block: its page, the command(s) whose output it shows, and the function
    that turns their outputs into the block's text."""
    page: str
    argv: tuple[str, ...]
    render: Callable[..., str]
    more: tuple[tuple[str, ...], ...] = ()      # further commands, their outputs passed too


BLOCKS: dict[str, Block] = {
    "flow-neuron": Block("docs/gradient-flow.md", ("flow", "neuron", "--no-plot"), _neuron),
    "flow-depth-sigmoid": Block("docs/gradient-flow.md", ("flow", "depth", "--no-plot"),
                                _depth_sigmoid),
    "flow-depth-acts": Block("docs/gradient-flow.md", ("flow", "depth", "--no-plot"),
                             _depth_acts),
    "flow-depth-bn": Block("docs/gradient-flow.md", ("flow", "depth", "--no-plot"), _depth_bn),
    "flow-bn": Block("docs/gradient-flow.md", ("flow", "bn", "--no-plot"), _bn),
    "flow-parallel": Block("docs/gradient-flow.md", ("flow", "parallel", "--no-plot"),
                           _parallel),
    "flow-residual": Block("docs/gradient-flow.md", ("flow", "residual", "--no-plot"),
                           _residual),
    "demo": Block("docs/training.md", ("demo",), _demo),
    "demo-quick": Block("docs/training.md", ("demo", "--quick"), _demo),
    "demo-seeds": Block("docs/training.md", ("demo", "--seed", "1"), _demo_seeds,
                        (("demo", "--seed", "2"), ("demo", "--seed", "3"))),
    "zoo-table": Block("docs/models.md", ("summary", "--zoo-table"), _zoo),
    **{f"lab-{name}": Block("docs/labs.md", ("lab", name, "--no-plot"), _text_table)
       for name in ("normalization", "regularization", "mc-dropout", "augmentation",
                    "optimizers")},
    "lab-transfer": Block("docs/labs.md", ("lab", "transfer", "--no-plot"), _text_table),
    "lab-transfer-notes": Block("docs/labs.md", ("lab", "transfer", "--no-plot"), _text_notes),
    "lab-gan": Block("docs/labs.md", ("lab", "gan", "--no-plot"), _text_all),
}
#: the blocks whose commands take seconds, rerun by tests/test_docs_numbers.py
CHEAP = ("flow-neuron", "flow-parallel", "flow-bn", "demo-quick")


def _pattern(name: str) -> re.Pattern[str]:
    return re.compile(rf"(<!-- regen:{re.escape(name)}:[^\n]*-->\n)(.*?)(\n<!-- /regen:"
                      rf"{re.escape(name)} -->)", re.S)


def page_block(name: str) -> str:
    """The text of block ``name`` as its page has it now."""
    block = BLOCKS[name]
    m = _pattern(name).search((ROOT / block.page).read_text(encoding="utf-8"))
    if m is None:
        raise ValueError(f"{block.page} has no <!-- regen:{name}: ... --> block")
    return m.group(2)


def render(name: str) -> str:
    """Block ``name`` as its command prints it today (runs the command)."""
    block = BLOCKS[name]
    return block.render(*(run_command(argv) for argv in (block.argv, *block.more)))


def write(name: str, text: str) -> bool:
    """Put ``text`` into block ``name`` of its page; whether the page changed."""
    path = ROOT / BLOCKS[name].page
    page = path.read_text(encoding="utf-8")
    new = _pattern(name).sub(lambda m: m.group(1) + text + m.group(3), page, count=1)
    if new != page:
        path.write_text(new, encoding="utf-8")
    return new != page


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("blocks", nargs="*", help=f"blocks to regenerate (default: all of "
                    f"{', '.join(BLOCKS)})")
    ap.add_argument("--check", action="store_true", help="compare only, write nothing")
    ap.add_argument("--list", action="store_true", help="list the blocks and exit")
    args = ap.parse_args()
    if args.list:
        for name, b in BLOCKS.items():
            commands = "; ".join("minidl " + " ".join(a) for a in (b.argv, *b.more))
            print(f"{name:20} {b.page:24} {commands}")
        return 0
    unknown = [n for n in args.blocks if n not in BLOCKS]
    if unknown:
        ap.error(f"unknown block(s) {', '.join(unknown)}; choose from {', '.join(BLOCKS)}")
    differ = []
    for name in args.blocks or list(BLOCKS):
        text = render(name)
        if args.check:
            same = text == page_block(name)
            if not same:
                differ.append(name)
            print(f"{name}: {'same' if same else 'DIFFERS'}", flush=True)
        else:
            print(f"{name}: {'rewritten' if write(name, text) else 'unchanged'}", flush=True)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
