"""TensorBoard logs of the Trainer callback, the Recorder and the CLI, read back with
tensorboard's own event reader and compared with what History and the Recorder report."""
from __future__ import annotations

import csv
import sys

import numpy as np
import pytest

pytest.importorskip("tensorboardX")
event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")

import minidl as md  # noqa: E402
import minidl.functional as F  # noqa: E402
import minidl.nn as nn  # noqa: E402
from minidl import optim  # noqa: E402
from minidl.cli import main  # noqa: E402
from minidl.data import DataLoader  # noqa: E402
from minidl.flow import COLUMNS, Recorder  # noqa: E402
from minidl.train import LambdaCallback, TensorBoard, Trainer  # noqa: E402


def read_events(log_dir) -> event_accumulator.EventAccumulator:
    acc = event_accumulator.EventAccumulator(str(log_dir), size_guidance={
        event_accumulator.SCALARS: 0, event_accumulator.HISTOGRAMS: 0})
    acc.Reload()
    return acc


def scalars(acc, tag: str) -> list[tuple[int, float]]:
    return [(e.step, e.value) for e in acc.Scalars(tag)]


def _data(n: int = 48):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, 4)).astype(np.float32)
    return x, (x[:, 0] > 0).astype(np.int64)


def test_trainer_callback_logs_what_history_and_the_steps_report(tmp_path):
    x, y = _data()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    opt = optim.SGD(model.parameters(), lr=0.1)
    scheduler = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    batch_losses, lrs = [], []
    seen = LambdaCallback(on_batch_end=lambda t, s: (batch_losses.append(t.batch_loss.item()),
                                                     lrs.append(opt.param_groups[0]["lr"])))
    trainer = Trainer(model, opt, "cross_entropy", metrics=["accuracy"], verbose=0,
                      scheduler=scheduler,
                      callbacks=[seen, TensorBoard(tmp_path, histogram_freq=2)])
    history = trainer.fit(DataLoader((x, y), batch_size=16), epochs=2,
                          val_loader=DataLoader((x[:16], y[:16]), batch_size=16))
    acc = read_events(tmp_path)
    assert scalars(acc, "step/loss") == [(i + 1, np.float32(v))
                                         for i, v in enumerate(batch_losses)]
    assert [v for _, v in scalars(acc, "step/lr")] == [np.float32(v) for v in lrs]
    assert lrs[0] != lrs[-1]  # the schedule moved, so the lr tag is not a constant by accident
    for name in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert scalars(acc, f"epoch/{name}") == [
            (e + 1, np.float32(v)) for e, v in enumerate(history[name])], name
    hist = acc.Tags()["histograms"]
    assert {"weights/0.weight", "gradients/0.weight", "weights/2.bias"} <= set(hist)
    assert [e.step for e in acc.Histograms("weights/0.weight")] == [2, 4, 6]
    last = acc.Histograms("weights/0.weight")[-1].histogram_value
    assert last.num == 32  # the 8x4 weight's entries
    assert "epoch/time" not in acc.Tags()["scalars"] and "epoch/epoch" not in acc.Tags()["scalars"]
    assert np.isclose(last.sum, model[0].weight.numpy().sum(), rtol=1e-5)


def test_recorder_writes_every_step_per_layer(tmp_path):
    md.manual_seed(0)
    net = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))
    x, y = _data(16)
    with Recorder(net, tensorboard=tmp_path / "run", tensorboard_step=100) as rec:
        for _ in range(3):
            net.zero_grad()
            F.cross_entropy(net(md.tensor(x)), md.tensor(y)).backward()
    acc = read_events(tmp_path / "run")
    tags = set(acc.Tags()["scalars"])
    assert {"00_0/w_grad_norm", "01_1/saturated", "02_2/act_std"} <= tags
    assert "01_1/w_grad_norm" not in tags  # Tanh has no weight: no made-up zero
    for row in rec.rows:
        place = ["0", "1", "2"].index(row["layer"])
        for column in COLUMNS[3:]:
            if row[column] is not None:
                events = dict(scalars(acc, f"{place:02d}_{row['layer']}/{column}"))
                assert events[100 + row["step"]] == np.float32(row[column]), (row, column)


def test_recorder_takes_an_open_writer_and_leaves_it_open(tmp_path):
    from tensorboardX import SummaryWriter

    net = nn.Sequential(nn.Linear(4, 2))
    x, y = _data(8)
    with SummaryWriter(logdir=str(tmp_path)) as writer:
        with Recorder(net, tensorboard=writer):
            F.cross_entropy(net(md.tensor(x)), md.tensor(y)).backward()
        writer.add_scalar("after/recorder", 1.0, 0)  # still open
    tags = set(read_events(tmp_path).Tags()["scalars"])
    assert {"00_0/w_grad_norm", "after/recorder"} <= tags
    with pytest.raises(TypeError, match="log folder or a SummaryWriter, got int"):
        Recorder(net, tensorboard=3)


def test_missing_tensorboardx_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboardX", None)
    net = nn.Sequential(nn.Linear(4, 2))
    with pytest.raises(ImportError, match=r"minidl\[tensorboard\]"):
        Recorder(net, tensorboard=tmp_path).attach()
    with pytest.raises(ValueError, match="update_freq must be a step count >= 0, got -1"):
        TensorBoard(tmp_path, update_freq=-1)


def test_cli_flow_and_train_write_runs(capsys, tmp_path):
    assert main(["flow", "bn", "--depth", "3", "--steps", "4", "--no-plot",
                 "--tensorboard", str(tmp_path / "flow")]) == 0
    runs = sorted(p.name for p in (tmp_path / "flow").iterdir())
    assert runs == ["glorot", "glorot-bn", "naive", "naive-bn"]
    acc = read_events(tmp_path / "flow" / "naive")
    assert [s for s, _ in scalars(acc, "00_0/w_grad_norm")] == [0, 1, 2, 3]
    assert main(["train", "mlp", "--dataset", "spirals", "--epochs", "2", "--out",
                 str(tmp_path / "out"), "--tensorboard", str(tmp_path / "train")]) == 0
    rows = list(csv.DictReader(open(tmp_path / "out" / "history.csv")))
    acc = read_events(tmp_path / "train")
    assert [v for _, v in scalars(acc, "epoch/loss")] == [np.float32(r["loss"]) for r in rows]
    assert len(scalars(acc, "step/loss")) > 2
