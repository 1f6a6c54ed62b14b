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


def test_transfer_lab(capsys, tmp_path: Path) -> None:
    rows = run_lab(capsys, tmp_path, "transfer")
    acc = {(r["task"].split()[0], r["method"]): r for r in rows}
    assert len(rows) == 14 and {t for t, _ in acc} == {"similar", "different"}
    assert all(0 <= r[c] <= 1 for r in rows for c in ("1/class", "20/class"))
    # one image per class of a similar task: the pretrained convolutions beat scratch
    conv, scratch = "conv codes (S4, 400-d) + linear", "from scratch"
    assert acc["similar", conv]["1/class"] > acc["similar", scratch]["1/class"] + 0.03
    # a different task (permuted pixels): the top layer's CNN codes describe nothing useful
    codes = "CNN codes (F6, 84-d) + linear"
    assert acc["different", codes]["20/class"] < acc["different", scratch]["20/class"] - 0.15
    assert (tmp_path / "lab-transfer-pretrained-s0-e1.npz").exists()  # cached for repeats


def test_transfer_pretraining_cache_survives_a_corrupt_file(tmp_path: Path) -> None:
    from minidl.flow.labs.common import digits
    from minidl.flow.labs.transfer import _pretrained

    x, y = digits("train", per_class=10, classes=range(5))
    path = tmp_path / "lab-transfer-pretrained-s0-e1.npz"
    path.write_bytes(b"not an archive")
    state, acc = _pretrained(x, y, 1, 0, tmp_path)  # retrained, not crashed on
    again, acc2 = _pretrained(x, y, 1, 0, tmp_path)  # read back from the rewritten file
    assert acc == acc2 and all((state[k] == again[k]).all() for k in state)
    other, _ = _pretrained(x[:25], y[:25], 1, 0, tmp_path)  # another data size: retrained
    assert any((state[k] != other[k]).any() for k in state)


def test_gan_lab(capsys, tmp_path: Path) -> None:
    rows = run_lab(capsys, tmp_path, "gan")
    assert [r["epoch"] for r in rows] == [1, 2] and rows[-1]["steps"] == 20
    for r in rows:
        assert 0 <= r["confident share"] <= 1 and 0 <= r["mean top prob"] <= 1
        assert r["digits present"] in range(11) and r["loss_d"] > 0 and r["loss_g"] > 0
    assert (tmp_path / "lab-gan-judge-s0-e1.npz").exists()


def test_gan_lab_samples_and_judge() -> None:
    import numpy as np

    from minidl.flow.labs.gan import NOT_A_DIGIT, gan, judge_samples, non_digits

    result = gan(quick=True, n_judged=16)
    assert sorted(result.data["grids"]) == [1, 2]
    assert all(g.shape == (16, 1, 28, 28) and np.abs(g).max() <= 1
               for g in result.data["grids"].values())
    images = np.random.default_rng(0).integers(0, 256, (8, 1, 28, 28), dtype=np.uint8)
    fake = non_digits(images, np.random.default_rng(1))
    assert fake.shape == images.shape and fake.dtype == np.uint8
    # the last quarter is digits cut in 7x7 patches and shuffled: the pixels of an input
    pixels = [np.sort(im.ravel()) for im in images]
    assert all(any((np.sort(f.ravel()) == p).all() for p in pixels) for f in fake[6:])

    class Fixed:  # a judge whose logits are the same for every image
        def __init__(self, digit3: float, other: float) -> None:
            self.digit3, self.other = digit3, other

        def eval(self) -> None:
            pass

        def __call__(self, x):
            import minidl as md
            logits = np.zeros((x.shape[0], NOT_A_DIGIT + 1), np.float32)
            logits[:, 3], logits[:, NOT_A_DIGIT] = self.digit3, self.other
            return md.tensor(logits)

    blank = np.zeros((10, 1, 28, 28), np.float32)
    verdict = judge_samples(Fixed(4.0, 2.0), blank)  # digit 3 at p = 0.77: not confident
    assert verdict["confident"] == 0.0 and verdict["digits"] == 0
    assert abs(verdict["mean_top"] - np.exp(4) / (np.exp(4) + np.exp(2) + 9)) < 1e-6
    verdict = judge_samples(Fixed(0.0, 9.0), blank)  # 'not a digit' never counts as a digit
    assert verdict["confident"] == 0.0 and verdict["mean_top"] < 0.01
    verdict = judge_samples(Fixed(9.0, 0.0), blank)  # digit 3 at p > 0.99, every sample
    assert verdict["confident"] == 1.0 and verdict["digits"] == 1
    assert verdict["counts"] == [0, 0, 0, 10, 0, 0, 0, 0, 0, 0]
