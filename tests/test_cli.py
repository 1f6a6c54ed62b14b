"""The `minidl` command: help texts, info, the demo end to end, train with resume, summary."""
from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minidl
import minidl.nn as nn
from minidl.cli import build_parser, main
from minidl.train import load_checkpoint


def run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.parametrize("command, options", [
    (None, ["demo", "train", "summary", "info", "--version"]),
    ("demo", ["--epochs", "--batch-size", "--lr", "--device", "--out", "--seed", "--quick",
              "--blas-threads"]),
    ("train", ["MODEL", "--dataset", "mnist-subset", "fashion-mnist", "cifar10", "spirals",
               "--epochs", "--batch-size", "--lr", "--optimizer", "nadam", "--schedule",
               "onecycle", "--device", "--out", "--resume", "--data-root", "--download",
               "--blas-threads", "--val-split", "Exit codes", "130", "143"]),
    ("summary", ["MODEL", "--input", "C,H,W", "--num-classes", "--max-rows", "--zoo-table"]),
    ("info", []),
])
def test_every_help_is_complete_with_an_example(capsys, command, options):
    with pytest.raises(SystemExit) as e:
        main(([command] if command else []) + ["--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    assert "example" in text and f"minidl {command or ''}".strip() in text
    for opt in options:
        assert opt in text, opt
    assert "(default: None)" not in text


def test_version_and_info(capsys):
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.strip() == f"minidl {minidl.__version__}"
    rc, out, _ = run(capsys, "info")
    assert rc == 0 and f"minidl {minidl.__version__}" in out and "devices: cpu" in out
    rc, out, _ = run(capsys)  # no command: the overview
    assert rc == 0 and "COMMAND" in out


def test_bad_arguments_exit_with_usage(capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "lenet5", "--dataset", "imagenet"])
    assert e.value.code == 2 and "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["summary", "lenet5", "--input", "1,a"])
    assert "--input must look like C,H,W" in capsys.readouterr().err


def test_demo_runs_end_to_end_at_reduced_size(capsys, tmp_path):
    out_dir = tmp_path / "demo"
    rc, out, _ = run(capsys, "demo", "--quick", "--out", str(out_dir))
    assert rc == 0
    assert "LeNet-5 (tanh, average pooling; 61,706 parameters)" in out
    assert "test accuracy:" in out and "/200 digits" in out
    assert "most confused digits" in out or "no digit was misclassified" in out
    acc = float(out.split("test accuracy:")[1].split("%")[0]) / 100
    assert acc > 0.3                              # one short epoch already beats chance (0.1)
    files = {p.name for p in out_dir.iterdir()}
    assert {"report.md", "history.csv", "lenet5.npz"} <= files
    pytest.importorskip("matplotlib")
    assert "curves.png" in files and (out_dir / "curves.png").read_bytes()[:4] == b"\x89PNG"
    report = (out_dir / "report.md").read_text()
    assert f"**Test accuracy: {acc:.2%}**" in report and "Confusion matrix" in report
    assert len(list(csv.DictReader(open(out_dir / "history.csv")))) == 1
    weights = minidl.io.load(out_dir / "lenet5.npz")
    assert sum(int(np.prod(v.shape)) for v in weights.values()) == 61706


def test_train_resumes_exactly_from_the_command_line(capsys, tmp_path):
    common = ["train", "mlp", "--dataset", "spirals", "--lr", "0.02", "--batch-size", "128"]
    rc, out, _ = run(capsys, *common, "--epochs", "3", "--out", str(tmp_path / "a"))
    assert rc == 0 and "final: test accuracy" in out
    rc, _, _ = run(capsys, *common, "--epochs", "2", "--out", str(tmp_path / "b"))
    rc, out, _ = run(capsys, *common, "--epochs", "3", "--out", str(tmp_path / "b"),
                     "--resume")
    assert rc == 0 and "resuming from" in out and "after epoch 2" in out
    a = load_checkpoint(tmp_path / "a" / "checkpoint.last.npz")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.last.npz")
    assert a["epoch"] == b["epoch"] == 3
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k], b["model"][k])
    rows = list(csv.DictReader(open(tmp_path / "b" / "history.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]


def test_train_a_zoo_model_on_the_bundled_digits(capsys, tmp_path):
    rc, out, _ = run(capsys, "train", "lenet5", "--limit", "128", "--epochs", "1",
                     "--optimizer", "nadam", "--schedule", "onecycle", "--lr", "3e-3",
                     "--augment", "--out", str(tmp_path))
    assert rc == 0 and "lenet5 (61,706 parameters) on mnist-subset (115 train / 13 validation / 32 test)" in out
    assert (tmp_path / "checkpoint.npz").exists() and (tmp_path / "checkpoint.last.npz").exists()


def test_train_an_mlp_on_images(capsys, tmp_path):
    # the MLP reads the images flattened, after they are normalised and shifted as images
    rc, out, err = run(capsys, "train", "mlp", "--limit", "128", "--epochs", "1", "--augment",
                       "--out", str(tmp_path))
    assert rc == 0, err
    assert "mlp (55,050 parameters) on mnist-subset (115 train / 13 validation / 32 test)" in out


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy's overflow warnings on the way
def test_train_reports_missing_files_and_divergence(capsys, tmp_path):
    rc, _, err = run(capsys, "train", "lenet5", "--dataset", "fashion-mnist", "--data-root",
                     str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert rc == 2 and "not found" in err and "--data-root" in err
    rc, _, err = run(capsys, "train", "mlp", "--dataset", "spirals", "--optimizer", "sgd",
                     "--lr", "1e12", "--epochs", "2", "--out", str(tmp_path / "nan"))
    assert rc == 1 and "loss became nan at epoch 1, step" in err
    assert not (tmp_path / "nan" / "history.csv").exists()   # no empty log left behind


def test_summary(capsys):
    rc, out, _ = run(capsys, "summary", "lenet5", "--input", "1,32,32")
    assert rc == 0 and "61,706" in out and "Conv2d" in out
    rc, _, err = run(capsys, "summary", "no_such_net", "--input", "3,32,32")
    assert rc == 2 and "unknown model" in err
    rc, _, err = run(capsys, "summary")
    assert rc == 2 and "give a MODEL (or --zoo-table)" in err
    # the model's own input shape, and a long table cut to its first and last rows
    rc, out, _ = run(capsys, "summary", "cifar_resnet20", "--max-rows", "10")
    assert rc == 0 and "269,722" in out and "..." in out
    assert len(out.splitlines()) < 30


def test_zoo_table_sets_measured_counts_beside_the_published_ones():
    from minidl.cli.summary import PUBLISHED, zoo_table

    text = zoo_table(["lenet5", "lenet5 (1998)", "cifar_resnet20"])
    rows = [line.split(" | ") for line in text.splitlines()[2:]]
    assert [r[0] for r in rows] == ["| lenet5", "| lenet5 (1998)", "| cifar_resnet20"]
    assert rows[0][1:4] == ["1x32x32", "61,706", "61,706"]      # measured == published
    assert rows[1][2:4] == ["60,000 (+840 fixed)", "60,000"]  # the fixed C3 connection codes
    assert rows[2][2:4] == ["269,722", "0.27 M"]
    assert len(PUBLISHED) > 30 and "resnet50" in PUBLISHED


def test_module_entry_point():
    res = subprocess.run([sys.executable, "-m", "minidl.cli", "--version"],
                         capture_output=True, text=True, check=True)
    assert res.stdout.strip() == f"minidl {minidl.__version__}"
    assert build_parser().prog == "minidl"


@pytest.mark.skipif(minidl.cupy_available(), reason="checks the message without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(capsys, tmp_path):
    for command in ("demo", "train"):
        argv = [command] + (["mlp"] if command == "train" else []) + [
            "--device", "cuda", "--out", str(tmp_path)]
        rc, _, err = run(capsys, *argv)
        assert rc == 2 and "cuda" in err and ("CuPy" in err or "GPU" in err)


def write_idx(path, array):
    """An IDX file (uint8 data) as LeCun's MNIST files are laid out, gzip-compressed."""
    import gzip

    header = bytes([0, 0, 0x08, array.ndim]) + np.array(array.shape, ">u4").tobytes()
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_train_reads_fashion_mnist_files_from_data_root(capsys, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "fashion-mnist"
    folder.mkdir(parents=True)
    for prefix, n in (("train", 64), ("t10k", 16)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)))
        write_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n))
    rc, out, err = run(capsys, "train", "lenet5", "--dataset", "fashion-mnist", "--data-root",
                       str(tmp_path / "data"), "--epochs", "1", "--batch-size", "32",
                       "--out", str(tmp_path / "run"))
    assert rc == 0, err
    assert "on fashion-mnist (58 train / 6 validation / 16 test)" in out



def test_old_summary_module_command_names_the_new_one():
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run([sys.executable, "-m", "minidl.summary", "lenet5"], capture_output=True,
                         text=True, cwd=root)
    assert out.returncode == 1 and out.stdout == ""
    assert "has moved: run `minidl summary MODEL`" in out.stderr
    assert "Traceback" not in out.stderr


def test_summary_refuses_a_model_with_zoo_table_and_a_non_positive_max_rows(capsys):
    assert main(["summary", "lenet5", "--zoo-table"]) == 2
    assert "give MODEL (lenet5) or --zoo-table, not both" in capsys.readouterr().err
    for bad in ("0", "-3", "x"):
        with pytest.raises(SystemExit) as e:
            main(["summary", "lenet5", "--max-rows", bad])
        assert e.value.code == 2
        assert f"must be a positive integer, got '{bad}'" in capsys.readouterr().err


def test_train_and_demo_share_out_seed_and_blas_threads():
    parser = build_parser()
    demo = parser.parse_args(["demo"])
    train = parser.parse_args(["train", "mlp"])
    assert (demo.out, demo.seed, demo.blas_threads) == ("minidl-demo", 0, 1)
    # train's seed is None until resolved: a resumed run takes its checkpoint's (0 if fresh)
    assert (train.out, train.seed, train.blas_threads) == ("minidl-run", None, 0)


def test_build_model_drops_in_channels_only_for_models_without_it(monkeypatch):
    from minidl import models
    from minidl.cli.common import build_model

    assert type(build_model("alexnet", num_classes=10, in_channels=3)).__name__ == "AlexNet"
    with pytest.raises(ValueError, match="'alexnet' takes no in_channels; it cannot read 1-"):
        build_model("alexnet", num_classes=10, in_channels=1)

    def broken(num_classes=10, **kw):   # takes in_channels, then trips over its own bug
        if "in_channels" in kw:
            raise TypeError("a bug inside the builder")
        return nn.Linear(1, num_classes)

    monkeypatch.setitem(models._REGISTRY, "broken", broken)
    with pytest.raises(TypeError, match="a bug inside the builder"):
        build_model("broken", num_classes=10, in_channels=3)


@pytest.mark.parametrize("argv", [["train", "mlp", "--epochs", "0"],
                                  ["train", "mlp", "--batch-size", "-1"],
                                  ["demo", "--epochs", "0"], ["train-gan", "--batch-size", "0"],
                                  ["flow", "depth", "--steps", "0"],
                                  ["flow", "parallel", "--trials", "-5"],
                                  ["summary", "lenet5", "--num-classes", "0"]])
def test_sizes_and_counts_must_be_positive(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "must be a positive integer" in err and "Traceback" not in err


# ---- resume, signals, validation split -----------------------------------------------------

SPIRALS = ["train", "mlp", "--dataset", "spirals", "--lr", "0.02", "--batch-size", "32"]


def _cli(*argv: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]),
               MINIDL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, "-m", "minidl.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)


def _weights(out: Path) -> dict[str, np.ndarray]:
    return load_checkpoint(out / "checkpoint.last.npz")["model"]


def test_ctrl_c_stops_train_with_one_line_and_resume_alone_continues_exactly(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    proc = _cli(*SPIRALS, "--epochs", "3", "--out", str(straight))
    assert proc.wait(timeout=120) == 0, proc.communicate()[1]
    proc = _cli(*SPIRALS, "--epochs", "3", "--out", str(stopped))
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("epoch 1/3"):
            proc.send_signal(signal.SIGINT)
            break
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("Trainer.fit: stopped by SIGINT at ")
    assert err.strip().endswith(f"saved to {stopped / 'checkpoint.last.npz'}; resume with: "
                                f"minidl train mlp --out {stopped} --resume")
    proc = _cli("train", "mlp", "--out", str(stopped), "--resume")   # the options: from it
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "resuming from" in out
    a, b = _weights(straight), _weights(stopped)
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    rows = list(csv.DictReader(open(stopped / "history.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]


def test_resume_with_a_changed_plan_continues_or_says_what_differs(capsys, tmp_path):
    one = str(tmp_path / "onecycle")
    assert run(capsys, *SPIRALS, "--epochs", "1", "--schedule", "onecycle", "--out", one)[0] == 0
    rc, _, err = run(capsys, "train", "mlp", "--out", one, "--resume", "--epochs", "3")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "--epochs 3 differs from the 1 epochs the --schedule onecycle" in err
    assert "a one-cycle schedule cannot be stretched" in err
    rc, _, err = run(capsys, "train", "mlp", "--out", one, "--resume", "--lr", "0.5")
    assert rc == 2 and "--lr 0.5 (the checkpoint has 0.02)" in err
    rc, _, err = run(capsys, "train", "lenet5", "--out", one, "--resume")
    assert rc == 2 and "holds a mlp run, not lenet5" in err
    # a constant schedule: more epochs continue, resuming with no options at all
    const = str(tmp_path / "const")
    assert run(capsys, *SPIRALS, "--epochs", "1", "--out", const)[0] == 0
    rc, out, err = run(capsys, "train", "mlp", "--out", const, "--resume", "--epochs", "2")
    assert rc == 0 and "resuming from" in out and "after epoch 1" in out, err
    assert load_checkpoint(Path(const) / "checkpoint.last.npz")["epoch"] == 2


def test_train_picks_its_best_epoch_on_a_validation_split_and_tests_once(capsys, tmp_path,
                                                                         monkeypatch):
    from minidl.train import Trainer

    evaluated = []
    real = Trainer.evaluate
    monkeypatch.setattr(Trainer, "evaluate",
                        lambda self, loader: evaluated.append(len(loader.dataset))
                        or real(self, loader))
    rc, out, _ = run(capsys, *SPIRALS, "--epochs", "2", "--val-split", "0.2", "--out",
                     str(tmp_path))
    assert rc == 0
    assert "(720 train / 180 validation / 300 test)" in out
    assert "by validation accuracy" in out
    assert evaluated == [300]          # the test split: once, at the end
    state = load_checkpoint(tmp_path / "checkpoint.last.npz")
    best = state["callbacks"][state["callback_types"].index("ModelCheckpoint")]["best"]
    assert best == max(state["history"]["val_accuracy"])
    with pytest.raises(SystemExit):
        main([*SPIRALS, "--val-split", "1.5"])
    assert "must be a fraction in [0, 1), got '1.5'" in capsys.readouterr().err
