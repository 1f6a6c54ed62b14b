"""The lectures' labs (``minidl lab NAME``): each --quick run shows the direction of the effect
it exists to show, and writes its figure."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from minidl.cli import build_parser, main
from minidl.flow.labs import LABS, get_lab


def test_every_lab_is_a_command_with_the_common_options() -> None:
    parser = build_parser()
    for name in LABS:
        args = parser.parse_args(["lab", name, "--quick", "--out", "x.png", "--seed", "3"])
        assert (args.lab, args.quick, args.out, args.seed) == (name, True, "x.png", 3)
        assert callable(get_lab(name))
    with pytest.raises(ValueError, match="unknown lab 'nope'; the labs are normalization"):
        get_lab("nope")


def run_lab(capsys, tmp_path: Path, name: str) -> list[dict[str, object]]:
    """``minidl lab NAME --quick`` into tmp_path: checks the figure, returns the table rows."""
    png, table = tmp_path / f"{name}.png", tmp_path / f"{name}.csv"
    assert main(["lab", name, "--quick", "--out", str(png), "--csv", str(table)]) == 0
    out = capsys.readouterr().out
    assert f"wrote {png}" in out and png.stat().st_size > 10_000
    return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(open(table))]


def _number(text: str) -> object:
    try:
        return float(text)
    except ValueError:
        return text or None


def test_normalization_lab(capsys, tmp_path: Path) -> None:
    base, as_is, adapted = run_lab(capsys, tmp_path, "normalization")
    # the shift saturates the first tanh layer and the pretrained net drops to about chance
    assert as_is["saturated"] > 2 * base["saturated"]
    assert as_is["test acc before fine-tune"] < 0.3 < base["test acc before fine-tune"]
    # one adapted Normalization undoes the shift: the pretrained weights work again at once
    assert abs(adapted["test acc before fine-tune"] - base["test acc before fine-tune"]) < 0.02
    assert adapted["test acc after fine-tune"] > as_is["test acc after fine-tune"] + 0.3
