"""The lectures' labs (``minidl lab NAME``): each --quick run shows the direction of the effect
it exists to show, and writes its figure."""
from __future__ import annotations

import csv
from pathlib import Path

import pytest

from minidl.cli import build_parser, main
from minidl.cli.lab import HELP
from minidl.flow.labs import LABS, get_lab


def test_every_lab_is_a_command_with_the_common_options() -> None:
    assert list(HELP) == list(LABS)  # the command lists exactly the labs there are
    parser = build_parser()
    for name in LABS:
        args = parser.parse_args(["lab", name, "--quick", "--out", "x.png", "--seed", "3"])
        assert (args.lab, args.quick, args.out, args.seed) == (name, True, "x.png", 3)
        assert callable(get_lab(name))
    with pytest.raises(ValueError, match="unknown lab 'nope'; the labs are normalization, "):
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


def test_regularization_lab(capsys, tmp_path: Path) -> None:
    rows = {r["method"]: r for r in run_lab(capsys, tmp_path, "regularization")}
    none, l1, l2 = rows["none"], rows["L1 (5e-4)"], rows["L2 (5e-3)"]
    assert none["train acc"] > 0.99 and none["gap"] > 0.1        # the small set overfits
    assert l1["|w| < 0.001"] > 3 * l2["|w| < 0.001"]             # L1 zeroes, L2 shrinks
    assert l1["|W1|"] < none["|W1|"] and l2["|W1|"] < none["|W1|"]
    assert rows["max-norm (0.5)"]["max unit norm"] <= 0.5 + 1e-5


def test_mc_dropout_lab(capsys, tmp_path: Path) -> None:
    correct, wrong, blend = run_lab(capsys, tmp_path, "mc-dropout")
    assert (correct["inputs"], wrong["inputs"]) == ("correct", "misclassified")
    assert wrong["MC std"] > correct["MC std"] and blend["MC std"] > correct["MC std"]
    assert wrong["MC entropy"] > correct["MC entropy"]
    assert correct["count"] + wrong["count"] == 1000


def test_augmentation_lab(capsys, tmp_path: Path) -> None:
    none, shifts, flips = run_lab(capsys, tmp_path, "augmentation")
    # augmented batches are harder to fit: the train/test gap shrinks
    assert shifts["gap"] < none["gap"] and flips["gap"] < none["gap"]


def test_optimizers_lab(capsys, tmp_path: Path) -> None:
    rows = {(r["optimizer"], r["schedule"]): r for r in run_lab(capsys, tmp_path, "optimizers")}
    assert len(rows) == 12
    # in a tiny budget the adaptive optimiser is far ahead of plain SGD at its constant rate
    assert rows[("Adam", "constant")]["test acc"] > rows[("SGD", "constant")]["test acc"] + 0.2


def test_augmentation_shifts_move_in_blank_background() -> None:
    """The digits are standardised, so a shift must pad with the background value, not 0."""
    import numpy as np

    from minidl.flow.labs.augmentation import ARMS, BACKGROUND
    from minidl.flow.labs.common import digits

    x, _ = digits("train", 2)
    assert np.isclose(BACKGROUND, x.min()) and BACKGROUND < -0.4
    shifted = ARMS["random shifts (+-2 px)"](x, rng=np.random.default_rng(0))
    assert np.isclose(shifted.min(), BACKGROUND)   # no grey frame of zeros
    border = np.concatenate([shifted[..., 0, :].ravel(), shifted[..., -1, :].ravel()])
    assert not np.any(np.isclose(border, 0.0))
