"""Trainer: metrics, fit/evaluate/predict, callbacks, checkpoints, exact resume, NaN stops."""
from __future__ import annotations

import copy
import csv
import os

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import minidl as md
import minidl.functional as F
from minidl import nn, optim
from minidl import train as T
from minidl.backend import to_numpy
from minidl.data import DataLoader, blobs, spirals
from minidl.train import (
    Accuracy,
    CSVLogger,
    EarlyStopping,
    LambdaCallback,
    ModelCheckpoint,
    NonFiniteLossError,
    TopKAccuracy,
    Trainer,
    confusion_matrix,
    most_confused,
    train_step,
)
from minidl.train import epoch_state as epoch_state_module
from minidl.train import metrics as metrics_module
from minidl.train import progress as progress_module
from minidl.train import trainer as trainer_module

# ---- helpers --------------------------------------------------------------------------------



def mlp(seed: int = 0, dropout: float = 0.0, bn: bool = False, classes: int = 3) -> nn.Module:
    md.manual_seed(seed)
    layers = [nn.Linear(2, 32)]
    if bn:
        layers.append(nn.BatchNorm1d(32))
    layers += [nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers += [nn.Linear(32, classes)]
    return nn.Sequential(*layers)


def spiral_loaders(device: str = "cpu", n: int = 60, seed: int | None = 0):
    x, y = spirals(n)
    xv, yv = spirals(20, seed=1)
    train = DataLoader((x, y), batch_size=32, shuffle=True, seed=seed, device=device)
    val = DataLoader((xv, yv), batch_size=64, device=device)
    return train, val


def weights(model: nn.Module) -> dict[str, np.ndarray]:
    return {k: to_numpy(v.data).copy() for k, v in model.state_dict().items()}


def assert_same_weights(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


# ---- metrics on arrays ----------------------------------------------------------------------

@given(n=st.integers(1, 40), c=st.integers(2, 12), seed=st.integers(0, 2**31 - 1))
def test_accuracy_and_topk_match_a_sorting_oracle(n, c, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n, c))  # continuous: no ties
    y = rng.integers(0, c, n)
    assert T.accuracy(logits, y) == pytest.approx(np.mean(logits.argmax(1) == y))
    for k in (1, 2, 5):
        topk = np.argsort(-logits, axis=1)[:, :k]
        expected = np.mean([y[i] in topk[i] for i in range(n)])
        assert T.top_k_accuracy(logits, y, k) == pytest.approx(expected)


def test_metrics_accumulate_over_batches_on_the_device(device, xp):
    m, t = Accuracy(), TopKAccuracy(2)
    out = xp.asarray([[0.1, 0.9, 0.0], [0.8, 0.1, 0.1], [0.2, 0.3, 0.5]])
    y = xp.asarray([1, 2, 0])
    for metric in (m, t):
        metric.update(md.tensor(out), md.tensor(y))
        metric.update(md.tensor(out[:1]), md.tensor(y[:1]))
    if device == "cuda":  # running sums stay device arrays until compute()
        assert isinstance(m.total, xp.ndarray) and isinstance(t.total, xp.ndarray)
    assert m.compute() == pytest.approx(2 / 4)        # rows 0 and the repeated row 0
    assert t.compute() == pytest.approx(3 / 4)        # row 2: label 0 has the smallest score


def test_binary_one_hot_and_regression_metrics():
    assert T.accuracy(np.array([0.2, 0.7, 0.9]), np.array([0, 1, 0])) == pytest.approx(2 / 3)
    logits = Accuracy(threshold=0.0)
    logits.update(np.array([[-1.0], [2.0]]), np.array([0, 1]))
    assert logits.compute() == 1.0
    assert T.accuracy(np.eye(3)[[0, 2, 1]], np.eye(3)[[0, 2, 2]]) == pytest.approx(2 / 3)
    mae, mse = T.get_metric("mae"), T.get_metric("mse")
    for m in (mae, mse):
        m.update(np.array([[1.0], [3.0]]), np.array([2.0, 3.0]))
    assert mae.compute() == pytest.approx(0.5) and mse.compute() == pytest.approx(0.5)
    assert T.top_k_accuracy(np.zeros((4, 3)), np.arange(4) % 3, k=5) == 1.0  # k >= classes
    with pytest.raises(ValueError, match="unknown metric"):
        T.get_metric("f1")
    with pytest.raises(ValueError, match="accuracy: predictions have shape"):
        T.accuracy(np.zeros((4, 3)), np.zeros(5, dtype=int))


def test_metric_on_a_chosen_output_and_function_metric():
    out = (md.tensor(np.array([[0.0, 1.0], [1.0, 0.0]])), md.tensor(np.array([[1.0, 0.0]] * 2)))
    target = (md.tensor(np.array([1, 1])), md.tensor(np.array([0, 0])))
    a0, a1 = Accuracy(), Accuracy(output=1, name="aux_accuracy")
    for m in (a0, a1):
        m.update(out, target)
    assert (a0.compute(), a1.compute(), a1.name) == (0.5, 1.0, "aux_accuracy")
    fm = T.get_metric(lambda o, t: F.mean(F.abs(o - t)))
    fm.update(md.tensor(np.array([1.0, 2.0])), md.tensor(np.array([1.0, 0.0])))
    assert fm.compute() == pytest.approx(1.0)
    # get_metric(name=, output=): a fresh metric, or a copy of a given one
    assert T.get_metric("acc").name == "accuracy"
    aux = T.get_metric("top1", name="aux_top1", output=1)
    aux.update(out, target)
    assert (aux.name, aux.output, aux.compute()) == ("aux_top1", 1, 1.0)
    copied = T.get_metric(a0, output=1)
    assert copied is not a0 and copied.output == 1 and a0.output is None
    assert T.get_metric(a0) is a0


def test_function_metric_checks_the_output_index_as_other_metrics_do():
    one = md.tensor(np.array([[0.0, 1.0], [1.0, 0.0]]))
    two = (one, md.tensor(np.array([[1.0, 0.0]] * 2)))
    target = md.tensor(np.array([1.0, 1.0]))
    mean_abs = lambda o, t: F.mean(F.abs(o - t))  # noqa: E731
    for metric in (Accuracy(output=1), T.FunctionMetric(mean_abs, output=1)):
        with pytest.raises(ValueError, match="output=1 asked for, but the model gave 1"):
            metric.update(one, target)   # indexing the Tensor would pick its row 1
    for metric in (Accuracy(output=2), T.FunctionMetric(mean_abs, output=2)):
        with pytest.raises(ValueError, match="output=2 asked for, but the model gave 2"):
            metric.update(two, (target, target))
    picked = T.FunctionMetric(lambda o, t: F.mean(o), output=1)
    picked.update(two, (target, target))
    assert picked.compute() == pytest.approx(0.5)


def test_confusion_matrix_and_most_confused():
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    p = np.array([0, 1, 1, 2, 2, 2, 0, 0, 0])
    cm = confusion_matrix(y, p, 3)
    expected = np.zeros((3, 3), int)
    for a, b in zip(y, p):
        expected[a, b] += 1
    np.testing.assert_array_equal(cm, expected)
    assert most_confused(cm, 2) == [(2, 0, 3), (1, 2, 2)]
    scores = np.eye(3)[p]
    np.testing.assert_array_equal(confusion_matrix(y, scores), cm)
    assert most_confused(np.eye(3, dtype=int)) == []


# ---- fit / evaluate / predict ---------------------------------------------------------------

def test_fit_learns_and_records_history(device):
    train, val = spiral_loaders(device)
    md.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(),
                          nn.Linear(64, 3)).to(device)
    opt = optim.Adam(model.parameters(), lr=0.02)
    tr = Trainer(model, opt, "cross_entropy", metrics=["accuracy", "top5"], verbose=0)
    hist = tr.fit(train, epochs=20, val_loader=val)
    assert set(hist) == {"epoch", "loss", "accuracy", "top5", "val_loss", "val_accuracy",
                         "val_top5", "lr", "time"}
    assert all(len(v) == 20 for v in hist.values()) and hist["epoch"] == list(range(1, 21))
    assert hist["loss"][-1] < 0.2 * hist["loss"][0]
    assert hist["val_accuracy"][-1] > 0.9 and hist["top5"][-1] == 1.0
    res = tr.evaluate(val)
    assert res["loss"] == pytest.approx(hist["val_loss"][-1])
    assert res["accuracy"] == pytest.approx(hist["val_accuracy"][-1])
    # the epoch loss is the sample-weighted mean of the batch losses (eval: last batch smaller)
    xs, ys = spirals(20, seed=1)
    with md.no_grad():
        model.eval()
        direct = F.cross_entropy(model(md.tensor(xs, device=device)), md.tensor(ys, device=device))
    assert res["loss"] == pytest.approx(direct.item(), rel=1e-5)
    pred = tr.predict(xs, batch_size=7)
    assert isinstance(pred, np.ndarray) and pred.shape == (60, 3)
    with md.no_grad():
        np.testing.assert_allclose(pred, model(md.tensor(xs, device=device)).numpy(),
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tr.predict(val), pred, rtol=1e-5, atol=1e-5)


def test_evaluate_and_predict_restore_train_mode_and_take_no_grad():
    model = mlp(dropout=0.5)
    tr = Trainer(model, None, metrics=["accuracy"], verbose=0)
    x, y = spirals(10)
    model.train()
    a, b = tr.predict(x), tr.predict(x)
    np.testing.assert_array_equal(a, b)  # eval mode: dropout off
    tr.evaluate(DataLoader((x, y), batch_size=8))
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    with pytest.raises(ValueError, match="needs an optimizer"):
        tr.fit(DataLoader((x, y), batch_size=8), epochs=1)


def test_train_step_is_one_plain_sgd_update():
    model = mlp()
    x, y = spirals(4)
    xb, yb = md.tensor(x), md.tensor(y)
    before = weights(model)
    opt = optim.SGD(model.parameters(), lr=0.5)
    loss, out = train_step(model, (xb,), yb, F.cross_entropy, opt)
    assert out.shape == (12, 3) and loss.shape == () and not loss.requires_grad
    # the same update by hand
    ref = mlp()
    refloss = F.cross_entropy(ref(xb), yb)
    refloss.backward()
    for (k, p), q in zip(ref.named_parameters(), model.parameters()):
        np.testing.assert_allclose(q.numpy(), before[k] - 0.5 * p.grad.numpy(), rtol=1e-6)
    assert loss.item() == pytest.approx(refloss.item())


class TwoInputs(nn.Module):
    """Scores (N, 3) from xa (N, 2) and xb (N, 1); the first layer carries an L2 penalty."""

    def __init__(self):
        super().__init__()
        self.a = nn.Linear(2, 3, weight_regularizer=optim.regularizers.l2(1.0))
        self.b = nn.Linear(1, 3)

    def forward(self, xa, xb):
        return self.a(xa) + self.b(xb)


def test_regularization_loss_is_added_and_multi_input_models_work():
    md.manual_seed(0)
    model = TwoInputs()
    x, y = spirals(10)
    extra = np.ones((30, 1), np.float32)
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.0), metrics=[], verbose=0)
    res = tr.evaluate(DataLoader((x, extra, y), batch_size=30))
    with md.no_grad():
        plain = F.cross_entropy(model(md.tensor(x), md.tensor(extra)), md.tensor(y)).item()
    penalty = float(model.regularization_loss().item())
    assert penalty > 0 and res["loss"] == pytest.approx(plain + penalty, rel=1e-5)
    tr.regularization = False  # for loss callables that add the penalty themselves
    assert tr.evaluate(DataLoader((x, extra, y), batch_size=30))["loss"] == pytest.approx(plain)
    assert tr.predict((x, extra)).shape == (30, 3)


def test_predict_takes_a_list_of_input_arrays_like_a_tuple(device):
    x, _ = spirals(10)
    extra = np.linspace(0, 1, 30, dtype=np.float32)[:, None]
    one = Trainer(mlp().to(device), None, metrics=[], verbose=0)
    expected = one.predict(x, batch_size=7)
    np.testing.assert_array_equal(one.predict([x], batch_size=7), expected)
    np.testing.assert_array_equal(one.predict([md.tensor(x, device=device)], batch_size=7),
                                  expected)
    md.manual_seed(0)
    two = Trainer(TwoInputs().to(device), None, metrics=[], verbose=0)
    expected = two.predict((x, extra), batch_size=7)
    assert expected.shape == (30, 3)
    np.testing.assert_array_equal(two.predict([x, extra], batch_size=7), expected)
    # a list of (inputs, target) batches is still a loader
    batches = [(md.tensor(x[:16]), md.tensor(extra[:16])),
               (md.tensor(x[16:]), md.tensor(extra[16:]))]
    np.testing.assert_allclose(Trainer(two.model, None, metrics=[], verbose=0,
                                       num_inputs=2).predict(batches), expected, rtol=1e-6)


def test_scheduler_steps_per_batch_for_onecycle_and_per_epoch_otherwise():
    train, _ = spiral_loaders()
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=3 * len(train))
    Trainer(model, opt, scheduler=sched, metrics=[], verbose=0).fit(train, epochs=3)
    assert sched.last_epoch == 3 * len(train)
    opt = optim.SGD(model.parameters(), lr=1.0)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    hist = Trainer(model, opt, scheduler=sched, metrics=[], verbose=0).fit(train, epochs=3)
    assert hist["lr"] == [1.0, 0.5, 0.25]


def test_scheduler_subclasses_are_stepped_as_their_base_class():
    class MyOneCycle(optim.lr_scheduler.OneCycleLR):
        pass

    class MyPlateau(optim.lr_scheduler.ReduceLROnPlateau):
        def step(self, metric):
            self.seen.append(metric)
            super().step(metric)

    train, val = spiral_loaders()
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = MyOneCycle(opt, max_lr=0.1, total_steps=2 * len(train))
    Trainer(model, opt, scheduler=sched, metrics=[], verbose=0).fit(train, epochs=2)
    assert sched.last_epoch == 2 * len(train)   # per batch, as for OneCycleLR
    opt = optim.SGD(model.parameters(), lr=0.1)
    plateau = MyPlateau(opt, patience=0)
    plateau.seen = []
    hist = Trainer(model, opt, scheduler=plateau, metrics=[], verbose=0).fit(
        train, epochs=2, val_loader=val)
    assert plateau.seen == hist["val_loss"]     # stepped with the epoch's val_loss


def test_fit_counts_epochs_in_total_and_warns_when_done():
    train, _ = spiral_loaders()
    tr = Trainer(mlp(), None, metrics=[], verbose=0)
    tr.optimizer = optim.SGD(tr.model.parameters(), lr=0.1)
    tr.fit(train, epochs=2)
    tr.fit(train, epochs=3)
    assert tr.epoch == 3 and tr.history["epoch"] == [1, 2, 3]
    with pytest.warns(UserWarning, match="nothing to train"):
        tr.fit(train, epochs=3)


# ---- progress output and host syncs ---------------------------------------------------------

def test_verbosity(capsys, monkeypatch):
    train, _ = spiral_loaders()
    model = mlp()
    opt = optim.SGD(model.parameters(), lr=0.1)
    Trainer(model, opt, metrics=["accuracy"], verbose=0).fit(train, epochs=1)
    Trainer(model, opt, metrics=["accuracy"], verbose=1).fit(train, epochs=1)  # not a tty
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
    Trainer(model, opt, metrics=["accuracy"], verbose=2).fit(train, epochs=2)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("epoch 1/2") and "accuracy" in lines[0]
    monkeypatch.setattr(progress_module, "_isatty", lambda stream: True)
    Trainer(model, opt, metrics=["accuracy"], verbose=1).fit(train, epochs=1)
    err = capsys.readouterr().err
    assert "epoch 1/1" in err and "accuracy" in err and "batch" in err  # a tqdm bar


def test_every_progress_display_is_closed_once_and_the_epoch_line_has_validation(monkeypatch):
    shown = []

    class Recorded(progress_module.Progress):
        def __init__(self, verbose, total, desc, **kw):
            super().__init__(verbose, total, desc, **kw)
            self.desc, self.closes = desc, []
            shown.append(self)

        def close(self, logs=None, line=None):
            self.closes.append(line)
            super().close(logs, line)

    monkeypatch.setattr(trainer_module, "Progress", Recorded)
    train, val = spiral_loaders()
    model = mlp()
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=[], verbose=2)
    tr.fit(train, epochs=1, val_loader=val)
    tr.evaluate(val)
    tr.run_epoch(val, train=False)
    assert [len(p.closes) for p in shown] == [1, 1, 1, 1]   # train, val, evaluate, run_epoch
    assert shown[0].desc == "epoch 1/1" and "val_loss" in shown[0].closes[0]


def test_loss_and_metrics_are_read_back_only_every_sync_every_steps(monkeypatch):
    calls = []
    real = epoch_state_module.to_numpy
    for module in (epoch_state_module, metrics_module):   # loss and metric read-backs
        monkeypatch.setattr(module, "to_numpy", lambda a: calls.append(1) or real(a))
    x, y = spirals(100)                               # 300 samples, 30 batches of 10
    loader = DataLoader((x, y), batch_size=10)
    model = mlp()
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=["accuracy", "top5"],
                 verbose=0, sync_every=10)
    tr.fit(loader, epochs=1)
    # 3 loss read-backs (steps 10, 20, 30) + one per metric at the end of the epoch
    assert len(calls) == 3 + 2


# ---- NaN --------------------------------------------------------------------------------------

class NaNAt:
    """cross_entropy, but NaN at the given (epoch, step), counting calls in training mode."""

    def __init__(self, epoch: int, step: int, steps_per_epoch: int):
        self.at = (epoch - 1) * steps_per_epoch + step
        self.calls = 0

    def __call__(self, out, y):
        loss = F.cross_entropy(out, y)
        self.calls += 1
        return loss * float("nan") if self.calls == self.at else loss


@pytest.mark.parametrize("sync_every", [1, 4])
def test_nan_loss_stops_with_epoch_and_step_and_keeps_the_last_good_checkpoint(tmp_path,
                                                                                sync_every):
    x, y = spirals(40)                                 # 120 samples: 4 batches of 32
    loader = DataLoader((x, y), batch_size=32, shuffle=True, seed=0)
    model = mlp()
    ckpt = ModelCheckpoint(tmp_path / "ckpt.npz", monitor="loss", save_best_only=False)
    loss = NaNAt(epoch=2, step=3, steps_per_epoch=4)
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.1), loss, metrics=[], verbose=0,
                 callbacks=[ckpt], sync_every=sync_every)
    with pytest.raises(NonFiniteLossError) as info:
        tr.fit(loader, epochs=3)
    err = info.value
    assert (err.epoch, err.step) == (2, 3) and np.isnan(err.value)
    msg = str(err)
    assert "epoch 2, step 3 of 4" in msg and "ckpt" in msg and "(epoch 1)" in msg
    saved = T.load_checkpoint(tmp_path / "ckpt.npz")
    assert saved["epoch"] == 1 and tr.epoch == 1 and len(tr.history["loss"]) == 1
    assert all(np.isfinite(v).all() for v in saved["model"].values())
    if sync_every == 1:  # checked before the update: the weights are still good
        assert tr.weights_finite()


def test_checkpoint_refuses_non_finite_weights(tmp_path):
    model = mlp()
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=[], verbose=0)
    ck = ModelCheckpoint(tmp_path / "c.npz", monitor="loss", save_best_only=False)
    next(iter(model.parameters())).data[0, 0] = np.nan
    with pytest.warns(UserWarning, match="non-finite weights"):
        ck.on_epoch_end(tr, 0, {"loss": 1.0})
    assert not (tmp_path / "c.npz").exists()


class HostReads(np.ndarray):
    """A NumPy array that counts the reads that would each be a host sync on a GPU array
    (``bool``, ``item``, ``float``); functions of such arrays return such arrays."""

    reads = 0

    def __array_function__(self, func, types, args, kwargs):
        out = super().__array_function__(func, types, args, kwargs)
        return np.asarray(out).view(HostReads) if isinstance(out, (np.ndarray, np.generic)) else out

    def __bool__(self):
        HostReads.reads += 1
        return super().__bool__()

    def __float__(self):
        HostReads.reads += 1
        return super().__float__()

    def item(self, *args):
        HostReads.reads += 1
        return super().item(*args)


def test_weights_finite_reads_back_once(monkeypatch):
    model = mlp()
    params = list(model.parameters())
    assert len(params) == 4
    for p in params:
        p.data = p.data.view(HostReads)
    tr = Trainer(model, None, metrics=[], verbose=0)
    calls = []
    real = trainer_module.to_numpy
    monkeypatch.setattr(trainer_module, "to_numpy", lambda a: calls.append(1) or real(a))
    monkeypatch.setattr(HostReads, "reads", 0)
    assert tr.weights_finite() is True
    assert HostReads.reads + len(calls) == 1  # one read for the four parameters


def test_weights_finite_finds_nan_and_inf_in_any_parameter(device):
    model = mlp().to(device)
    tr = Trainer(model, None, metrics=[], verbose=0)
    assert tr.weights_finite() is True
    last = list(model.parameters())[-1]
    for bad in (np.nan, np.inf, -np.inf):
        last.data[0] = bad
        assert tr.weights_finite() is False
    last.data[0] = 0.0
    assert tr.weights_finite() is True
    assert Trainer(nn.ReLU(), None, metrics=[], verbose=0).weights_finite() is True


# ---- checkpoints and exact resume -------------------------------------------------------------

def make_run(tmp_path, seed=0, epochs_total=2, loader_seed=11, **kw):
    """A run with every source of state: dropout (RNG), BatchNorm buffers, SGD momentum,
    OneCycle per batch, a shuffling loader with its own seed, early-stopping counters."""
    model = mlp(seed=seed, dropout=0.3, bn=True)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    train, val = spiral_loaders(seed=loader_seed)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=epochs_total * len(train))
    cbs = [ModelCheckpoint(tmp_path / "best.npz", monitor="val_accuracy"),
           EarlyStopping(monitor="val_loss", patience=50), CSVLogger(tmp_path / "log.csv")]
    tr = Trainer(model, opt, "cross_entropy", metrics=["accuracy"], callbacks=cbs,
                 scheduler=sched, verbose=0, **kw)
    return tr, train, val


@pytest.mark.parametrize("sync_every", [1, 3])
def test_resume_continues_exactly(tmp_path, sync_every):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    full, train, val = make_run(a_dir, epochs_total=3, sync_every=sync_every)
    full.fit(train, epochs=3, val_loader=val)

    first, train1, val1 = make_run(b_dir, epochs_total=3, sync_every=sync_every)
    first.fit(train1, epochs=1, val_loader=val1)
    probe, _, _ = make_run(b_dir, seed=5, epochs_total=3)  # loading alone restores state
    probe.load_checkpoint(b_dir / "best.last.npz")
    assert probe.epoch == 1 and probe.history["loss"] == first.history["loss"]
    for a, b in zip(first.callbacks, probe.callbacks):
        assert a.state_dict().keys() == b.state_dict().keys()
        if isinstance(a, (ModelCheckpoint, EarlyStopping)):
            assert a.best == b.best is not None
    md.manual_seed(1234)               # disturb the global RNG: resume must restore it
    np.random.default_rng(5).random(3)
    # a different init and an unseeded loader: both must come from the checkpoint
    resumed, train2, val2 = make_run(b_dir, seed=99, epochs_total=3, loader_seed=None,
                                     sync_every=sync_every)
    resumed.fit(train2, epochs=3, val_loader=val2, resume=b_dir / "best.last.npz")

    assert_same_weights(weights(full.model), weights(resumed.model))
    assert resumed.epoch == 3 and resumed.global_step == full.global_step
    for k in ("loss", "accuracy", "val_loss", "val_accuracy", "lr"):
        assert resumed.history[k] == full.history[k], k
    fo, ro = full.optimizer.state_dict(), resumed.optimizer.state_dict()
    for i in fo["state"]:
        np.testing.assert_array_equal(fo["state"][i]["momentum_buffer"],
                                      ro["state"][i]["momentum_buffer"])
    assert full.scheduler.last_epoch == resumed.scheduler.last_epoch
    for a, b in zip(full.callbacks, resumed.callbacks):  # checkpoint and early-stopping state
        assert type(a) is type(b)
        if isinstance(a, (ModelCheckpoint, EarlyStopping)):
            assert a.best == b.best
        if isinstance(a, EarlyStopping):
            assert (a.wait, a.best_epoch) == (b.wait, b.best_epoch)
    rows = list(csv.DictReader(open(b_dir / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]  # the resumed run appended


def test_best_only_checkpoint_and_scripted_early_stopping_restore(tmp_path):
    script = [1.0, 0.5, 0.7, 0.8, 0.9, 0.95]
    snapshots = {}

    def fake_val(tr, epoch, logs):
        logs["val_loss"] = script[epoch]
        snapshots[epoch + 1] = weights(tr.model)

    model = mlp()
    es = EarlyStopping(monitor="val_loss", patience=2, restore_best=True)
    ck = ModelCheckpoint(tmp_path / "best.npz", monitor="val_loss")
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=[], verbose=0,
                 callbacks=[LambdaCallback(on_epoch_end=fake_val), es, ck])
    train, _ = spiral_loaders()
    tr.fit(train, epochs=6)
    assert tr.epoch == 4 and es.stopped_epoch == 4 and es.best_epoch == 2
    assert_same_weights(weights(model), snapshots[2])            # restore_best
    best = T.load_checkpoint(tmp_path / "best.npz")
    assert best["epoch"] == 2 and ck.best == 0.5
    assert_same_weights({k: np.asarray(v) for k, v in best["model"].items()}, snapshots[2])
    assert T.load_checkpoint(tmp_path / "best.last.npz")["epoch"] == 4


def test_monitor_falls_back_to_training_figures_with_a_warning(tmp_path):
    model = mlp()
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=[], verbose=0,
                 callbacks=[ModelCheckpoint(tmp_path / "c.npz")])
    with pytest.warns(UserWarning, match="monitoring 'loss' instead"):
        tr.fit(spiral_loaders()[0], epochs=1)
    assert (tmp_path / "c.npz").exists()
    with pytest.raises(KeyError, match="'val_f1' is not in the logs"):
        Trainer(model, tr.optimizer, metrics=[], verbose=0,
                callbacks=[EarlyStopping("val_f1")]).fit(spiral_loaders()[0], epochs=1)


def test_templated_checkpoint_paths(tmp_path):
    model = mlp()
    ck = ModelCheckpoint(tmp_path / "ck-{epoch:02d}.npz", monitor="loss", save_best_only=False)
    Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=[], verbose=0,
            callbacks=[ck]).fit(spiral_loaders()[0], epochs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ck-01.npz", "ck-02.npz", "last.npz"]


def test_bad_checkpoints_raise_and_change_nothing(tmp_path):
    model = mlp()
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=[], verbose=0)
    tr.epoch, tr.global_step = 3, 7  # so that a partial load would show in tr2's counters
    tr.save_checkpoint(tmp_path / "ok.npz")
    other = mlp(seed=3, classes=4)
    tr2 = Trainer(other, optim.SGD(other.parameters(), lr=0.1), metrics=[], verbose=0)
    before = weights(other)
    with pytest.raises(nn.StateDictError, match="shape mismatch"):
        tr2.load_checkpoint(tmp_path / "ok.npz")
    assert_same_weights(before, weights(other))
    assert (tr2.epoch, tr2.global_step) == (0, 0)
    md.io.save(model.state_dict(), tmp_path / "weights.npz")
    with pytest.raises(ValueError, match="not a minidl training checkpoint"):
        tr.load_checkpoint(tmp_path / "weights.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz"):
        tr.load_checkpoint(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        tr.load_checkpoint(tmp_path / "missing.npz")


def assert_same_tree(a, b, where: str = "state") -> None:
    """Nested dicts / lists / arrays / numbers are equal, value by value (NaN equals NaN)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), where
        for k in a:
            assert_same_tree(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (u, v) in enumerate(zip(a, b)):
            assert_same_tree(u, v, f"{where}[{i}]")
    elif hasattr(a, "shape"):
        np.testing.assert_array_equal(to_numpy(a), to_numpy(b), err_msg=where)
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def trainer_snapshot(tr: Trainer, loader: DataLoader) -> dict:
    """Every part of a trainer that load_state_dict changes, copied to host values."""
    return {"model": weights(tr.model), "optimizer": tr.optimizer.state_dict(),
            "callbacks": [copy.deepcopy(cb.state_dict()) for cb in tr.callbacks],
            "rng": md.backend.get_rng_state(), "loader": loader.state_dict(),
            "counters": (tr.epoch, tr.global_step),
            "history": {k: list(v) for k, v in tr.history.items()}}


@pytest.mark.parametrize("bad", ["last callback", "loader"])
def test_a_checkpoint_bad_in_its_last_part_loads_nothing(tmp_path, device, bad):
    model = mlp(dropout=0.3, bn=True).to(device)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    train, val = spiral_loaders(device)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.2, total_steps=3 * len(train))
    tr = Trainer(model, opt, metrics=["accuracy"], scheduler=sched, verbose=0,
                 callbacks=[ModelCheckpoint(tmp_path / "c.npz", monitor="val_loss"),
                            EarlyStopping(monitor="val_loss", patience=5)])
    tr.fit(train, epochs=1, val_loader=val)
    saved = trainer_snapshot(tr, train)
    state = T.load_checkpoint(tmp_path / "c.last.npz")
    tr.fit(train, epochs=3, val_loader=val)
    before = trainer_snapshot(tr, train)
    for key, part in before.items():  # else a partial load of that part would go unseen
        with pytest.raises(AssertionError):
            assert_same_tree(saved[key], part, key)
    for a, b in zip(saved["callbacks"], before["callbacks"]):
        with pytest.raises(AssertionError):
            assert_same_tree(a, b)
    if bad == "last callback":
        # EarlyStopping sets its best value before it reads the wait count
        state["callbacks"][-1]["wait"] = "soon"
        match = "invalid literal"
    else:
        state["loader"]["num_samples"] = 999
        match = "dataset of 999 samples"
    with pytest.raises(ValueError, match=match):
        tr.load_state_dict(state, train)
    assert_same_tree(before, trainer_snapshot(tr, train))


def test_an_interrupted_checkpoint_save_keeps_the_previous_file(tmp_path, monkeypatch):
    model = mlp()
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=[], verbose=0)
    path = tmp_path / "c.npz"
    tr.save_checkpoint(path)
    good = path.read_bytes()
    real = np.lib.format.write_array
    calls = []

    def dying(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt  # the user hits Ctrl-C in the middle of the save
        return real(*a, **k)

    monkeypatch.setattr(np.lib.format, "write_array", dying)
    tr.epoch = 7
    with pytest.raises(KeyboardInterrupt):
        tr.save_checkpoint(path)
    monkeypatch.undo()
    assert path.read_bytes() == good and T.load_checkpoint(path)["epoch"] == 0
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary left behind


def test_csv_logger_writes_one_row_per_epoch(tmp_path):
    model = mlp()
    path = tmp_path / "sub" / "h.csv"
    Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=["accuracy"], verbose=0,
            callbacks=[CSVLogger(path)]).fit(*spiral_loaders()[:1], epochs=2)
    rows = list(csv.DictReader(open(path)))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert set(rows[0]) == {"epoch", "loss", "accuracy", "lr", "time"}
    assert float(rows[1]["loss"]) > 0
    assert os.path.getsize(path) > 0


def test_blobs_binary_logit_output_with_bce():
    x, y = blobs(200)
    md.manual_seed(0)
    model = nn.Linear(2, 1)
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.5), "bce_with_logits",
                 metrics=[Accuracy(threshold=0.0)], verbose=0)
    loader = DataLoader((x, y[:, None].astype(np.float32)), batch_size=50, shuffle=True, seed=0)
    hist = tr.fit(loader, epochs=5)
    assert hist["accuracy"][-1] > 0.9


def test_empty_loader_and_bad_arguments_are_clear_errors():
    model = mlp()
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=[], verbose=0)
    with pytest.raises(ValueError, match="yielded no batches"):
        tr.evaluate([])
    with pytest.raises(ValueError, match="unknown loss"):
        Trainer(model, None, loss="hinge")
    with pytest.raises(ValueError, match="verbose must be 0, 1 or 2"):
        Trainer(model, None, verbose=3)
    with pytest.raises(ValueError, match="metric names must be distinct"):
        Trainer(model, None, metrics=["accuracy", "acc"])
    tr.loss_fn = lambda out, y: F.cross_entropy(out, y, reduction="none")
    with pytest.raises(ValueError, match=r"train_step: the loss must be a one-element Tensor, "
                                         r"got Tensor of shape \(32,\)"):
        tr.fit(spiral_loaders()[0], epochs=1)
    with pytest.raises(ValueError, match=r"evaluation: the loss must be a one-element Tensor, "
                                         r"got Tensor of shape \(32,\)"):
        tr.evaluate(spiral_loaders()[0])


def test_history_lists_stay_aligned_when_validation_comes_and_goes():
    train, val = spiral_loaders()
    model = mlp()
    tr = Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=[], verbose=0)
    tr.fit(train, epochs=1)
    tr.fit(train, epochs=2, val_loader=val)
    h = tr.fit(train, epochs=3)
    assert {len(v) for v in h.values()} == {3}
    assert np.isnan(h["val_loss"][0]) and np.isfinite(h["val_loss"][1]) and np.isnan(h["val_loss"][2])
    assert h.last()["epoch"] == 3


def test_grad_clip_bounds_each_update():
    x, y = spirals(20)
    loader = DataLoader((x, y), batch_size=60)
    model = mlp()
    before = weights(model)
    Trainer(model, optim.SGD(model.parameters(), lr=1.0), metrics=[], verbose=0,
            grad_clip=1e-3).fit(loader, epochs=1)
    step = np.sqrt(sum(((weights(model)[k] - before[k]) ** 2).sum() for k in before))
    assert 0 < step <= 1e-3 * (1 + 1e-4)   # one update of lr 1 with a gradient norm <= 1e-3
