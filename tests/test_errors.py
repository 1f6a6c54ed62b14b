"""One test per bad input of issue 15: each gets a one-line error that names the layer, op or
argument, the values and the fix (the CLI prints it without a traceback and exits 2)."""
from __future__ import annotations

import os
import subprocess
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl import nn, optim
from minidl.cli import main
from minidl.data import DataLoader
from minidl.io import CheckpointError, load_torch_state_dict
from minidl.train import LambdaCallback, ModelCheckpoint, NonFiniteLossError, Trainer

ROOT = Path(__file__).resolve().parents[1]


def _data(n=32, nan_at=None, device="cpu"):
    g = np.random.default_rng(0)
    x = g.standard_normal((n, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    if nan_at is not None:
        x[nan_at] = np.nan
    return x, y


def _trainer(device="cpu", sync_every=None, **kw):
    md.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    return Trainer(model, optim.SGD(model.parameters(), lr=0.1), metrics=[], verbose=0,
                   device=device, sync_every=sync_every, **kw)


@pytest.mark.parametrize("sync_every", [1, 4])
def test_nan_in_the_training_data_blames_the_data_not_the_learning_rate(device, sync_every):
    x, y = _data(nan_at=(13, 1))                       # batch 2 (of 8), sample 5, feature 1
    trainer = _trainer(device, sync_every)
    with pytest.raises(NonFiniteLossError) as e:
        trainer.fit(DataLoader((x, y), batch_size=8, device=device), epochs=1)
    msg = str(e.value)
    assert msg.startswith("the input batch contains NaN at epoch 1, step 2 of 4")
    assert "learning rate" not in msg and "np.nan_to_num" in msg
    assert e.value.cause == "data" and "\n" not in msg
    if sync_every == 1:   # the batch is still at hand: where in it
        assert "sample 5 of the batch at index (1,)" in msg


def test_nan_in_the_validation_data_names_validation_not_zero_epochs(device):
    x, y = _data()
    xv, yv = _data(16, nan_at=(9, 0))
    trainer = _trainer(device)
    with pytest.raises(NonFiniteLossError) as e:
        trainer.fit(DataLoader((x, y), batch_size=8, device=device), epochs=1,
                    val_loader=DataLoader((xv, yv), batch_size=8, device=device))
    msg = str(e.value)
    assert msg.startswith("the validation batch contains NaN at epoch 1 (validation step 2 "
                          "of 2)")
    assert "after 0 epochs" not in msg and "learning rate" not in msg
    with pytest.raises(NonFiniteLossError, match=r"^the evaluation batch contains NaN at step "
                                                 r"2 of 2 \(NaN in the input, sample 1"):
        trainer.evaluate(DataLoader((xv, yv), batch_size=8, device=device))


def test_a_diverging_loss_on_finite_data_still_suggests_the_learning_rate(device):
    x, y = _data()
    md.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    trainer = Trainer(model, optim.SGD(model.parameters(), lr=1e12), metrics=[], verbose=0,
                      device=device)
    with np.errstate(all="ignore"), pytest.raises(NonFiniteLossError) as e:
        trainer.fit(DataLoader((x * 1e3, y), batch_size=8, device=device), epochs=3)
    assert "lower learning rate" in str(e.value) and e.value.cause == "training"


def test_conv2d_kernel_size_zero_is_a_clear_error_not_zero_division():
    with pytest.raises(ValueError, match=r"^Conv2d: kernel_size must be a positive int or "
                                         r"pair, got \(0, 0\)$"):
        nn.Conv2d(1, 1, 0)


def test_linear_with_zero_features_behaves_as_in_torch(device):
    with pytest.warns(UserWarning, match="zero-element tensor"):
        lin = nn.Linear(0, 3, device=device)
    assert lin.weight.shape == (3, 0)
    np.testing.assert_array_equal(lin.bias.numpy(), np.zeros(3))   # bound 0, as in torch
    x = md.zeros(2, 0, device=device, requires_grad=True)
    y = lin(x)
    assert y.shape == (2, 3)
    y.sum().backward()
    assert lin.weight.grad.shape == (3, 0) and x.grad.shape == (2, 0)
    np.testing.assert_array_equal(lin.bias.grad.numpy(), [2, 2, 2])
    with pytest.warns(UserWarning, match=r"zero-element tensor of shape \(0, 3\)"):
        empty = nn.Linear(3, 0, device=device)
    assert empty(md.ones(4, 2, 3, device=device)).shape == (4, 2, 0)


def test_memory_error_names_the_layer_and_a_smaller_batch(monkeypatch, device):
    def oom(*a, **k):
        raise MemoryError("Unable to allocate 3.2 GiB for an array with shape (8, 3, 2)")
    monkeypatch.setattr(F, "linear", oom)
    x, y = _data()
    trainer = _trainer(device)
    with pytest.raises(MemoryError) as e:
        trainer.fit(DataLoader((x, y), batch_size=8, device=device), epochs=1)
    msg = str(e.value)
    assert msg.startswith("epoch 1, step 1 of 4: out of memory in layer 0 (Linear) for a batch "
                          "of input shape (8, 3) (Unable to allocate 3.2 GiB")
    assert "use a smaller batch size (e.g. 4 instead of 8)" in msg


def test_bad_minidl_num_threads_does_not_kill_minidl_help():
    res = subprocess.run([sys.executable, "-m", "minidl.cli", "--help"], capture_output=True,
                         text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT),
                                                       MINIDL_NUM_THREADS="abc"))
    assert res.returncode == 0 and "usage: minidl" in res.stdout
    assert "MINIDL_NUM_THREADS must be a positive integer, got 'abc'" in res.stderr
    with pytest.raises(ValueError, match="set_num_threads: expected a positive int"):
        md.parallel.set_num_threads(0)   # asked for in code: still an error


def test_bad_flow_arguments_print_one_line(capsys):
    assert main(["flow", "depth", "--depths", "1", "--no-plot"]) == 2
    err = capsys.readouterr().err
    assert err == "minidl flow: make_mlp: depth must be at least 2, got 1\n"
    with pytest.raises(SystemExit) as e:
        main(["flow", "depth", "--depths", "a"])
    assert e.value.code == 2
    assert "--depths: must be comma-separated integers such as 2,10,50, got 'a'" in \
        capsys.readouterr().err


def test_bad_summary_arguments_name_the_layer_and_the_fix(capsys):
    assert main(["summary", "vgg11", "--input", "3,8,8"]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("minidl summary: layer features.")
    assert "(MaxPool2d) fails for input shape (3, 8, 8)" in err
    assert "give an input shape the model reads, e.g. its own (3, 224, 224)" in err
    assert main(["summary", "nosuch"]) == 2
    assert "unknown model 'nosuch'" in capsys.readouterr().err


def test_corrupt_torch_file_raises_checkpoint_error_not_bad_zip_file(tmp_path, monkeypatch):
    def load(*a, **k):   # what torch.load raises on a damaged zip-format .pth
        raise zipfile.BadZipFile("File is not a zip file")
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(load=load))
    path = tmp_path / "w.pth"
    path.write_bytes(b"PK\x03\x04 garbage")
    with pytest.raises(CheckpointError, match=r"w.pth is not a readable torch checkpoint "
                                              r"\(corrupt or truncated\? BadZipFile: File is "
                                              r"not a zip file\); download or export it again"):
        load_torch_state_dict(nn.Linear(2, 2), path)


def test_corrupt_resume_checkpoint_is_one_line_exit_2(capsys, tmp_path):
    (tmp_path / "checkpoint.last.npz").write_bytes(b"not a zip")
    rc = main(["train", "mlp", "--dataset", "spirals", "--out", str(tmp_path), "--resume"])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.splitlines()) == 1
    assert "checkpoint.last.npz is not a readable .npz checkpoint" in err


def test_a_one_cycle_schedule_too_short_for_the_run_is_refused_before_training():
    x, y = _data()
    md.manual_seed(0)
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=8)   # 2 epochs of 4
    trainer = Trainer(model, opt, metrics=[], verbose=0, scheduler=sched)
    with pytest.raises(ValueError, match=r"OneCycleLR covers 8 steps but epochs=3 x 4 batches "
                                         r"needs 12; a one-cycle schedule cannot be stretched"):
        trainer.fit(DataLoader((x, y), batch_size=8), epochs=3)
    assert trainer.global_step == 0


def test_resuming_with_other_callbacks_says_how_to_build_the_trainer(tmp_path):
    x, y = _data()
    loader = DataLoader((x, y), batch_size=8)
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1)
    Trainer(model, opt, metrics=[], verbose=0,
            scheduler=optim.lr_scheduler.StepLR(opt, 1),
            callbacks=[ModelCheckpoint(tmp_path / "ck.npz", monitor="loss")]).fit(loader, 1)
    other = Trainer(model, opt, metrics=[], verbose=0,
                    callbacks=[ModelCheckpoint(tmp_path / "ck.npz", monitor="loss")])
    with pytest.raises(ValueError, match=r"with callbacks \['LRSchedulerStep', "
                                         r"'ModelCheckpoint'\], this one has "
                                         r"\['ModelCheckpoint'\]; build the Trainer with the "
                                         r"same callbacks and scheduler"):
        other.fit(loader, 2, resume=tmp_path / "ck.last.npz")


def test_sigint_without_a_checkpoint_says_none_was_written(capsys):
    import signal

    x, y = _data()
    stop = LambdaCallback(on_batch_end=lambda t, s: s == 2 and os.kill(os.getpid(),
                                                                        signal.SIGINT))
    trainer = _trainer(callbacks=[stop])
    with pytest.raises(SystemExit) as e:
        trainer.fit(DataLoader((x, y), batch_size=8), epochs=2)
    assert e.value.code == 130 and trainer.global_step == 2
    err = capsys.readouterr().err
    assert err == ("Trainer.fit: stopped by SIGINT at epoch 1, step 2 of 4; no checkpoint "
                   "written (add ModelCheckpoint(path) to the callbacks to make runs "
                   "resumable)\n")


def test_memory_error_in_predict_and_in_backward_name_where(monkeypatch):
    from minidl.functional import linalg

    trainer = _trainer()
    real = F.linear
    monkeypatch.setattr(F, "linear", lambda *a, **k: (_ for _ in ()).throw(MemoryError()))
    with pytest.raises(MemoryError, match=r"^Trainer.predict: out of memory in layer 0 "
                                          r"\(Linear\) for a batch of input shape \(16, 3\) "
                                          r"\(no detail\); use a smaller batch size \(e.g. 8 "
                                          r"instead of 16\)"):
        trainer.predict(_data(16)[0], batch_size=16)
    monkeypatch.setattr(F, "linear", real)

    def backward_oom(self, gy):
        raise MemoryError("Unable to allocate")
    monkeypatch.setattr(linalg.Linear, "backward", backward_oom)
    x, y = _data()
    with pytest.raises(MemoryError, match=r"out of memory in the backward of Linear"):
        trainer.fit(DataLoader((x, y), batch_size=8), epochs=1)
