"""The gradient-flow lab: tests that demonstrate vanishing gradients, and that the
instruments measuring them report the true gradients.

Nets are small (8 inputs, width 8, 4 classes, 16 examples) so that a float64 gradcheck of
every parameter of a 10-layer MLP takes about a second.
"""
from __future__ import annotations

import argparse
import importlib.util
import math

import numpy as np
import pytest

import minidl as md
import minidl.flow as flow
import minidl.functional as F
import minidl.nn as nn
from minidl.flow import COLUMNS, Recorder, gradient_ratio, weight_layers
from minidl.flow.check import gradcheck_model, numeric_grad
from minidl.flow.measure import fit_decay
from minidl.train import model_accuracy

HAS_MPL = importlib.util.find_spec("matplotlib") is not None


def _batch(seed: int = 0):
    rng = np.random.default_rng(seed)
    return md.tensor(rng.standard_normal((16, 8))), md.tensor(rng.integers(0, 4, 16))


def _mlp10(**kw):
    """The 10-layer MLP of the lectures at test size, in float64."""
    return flow.make_mlp(10, width=8, in_features=8, classes=4, **kw).double()


def _weight_names(model):
    return [n for n, p in model.named_parameters() if n.endswith("weight") and p.ndim == 2]


# ---- vanishing, and its cures ---------------------------------------------------------------

def test_sigmoid_naive_init_vanishes_and_the_gradients_are_right():
    x, y = _batch()
    model = _mlp10(activation="sigmoid", init="naive")
    # the analytic gradients of all 20 parameters agree with finite differences, to 1e-8
    assert gradcheck_model(model, x, y)
    ratio = gradient_ratio(model, x, y)
    assert ratio < 1e-3
    # ... and the numbers alone (no backward pass) say the same: vanishing is real
    names = _weight_names(model)
    first = np.linalg.norm(numeric_grad(model, x, y, names[0]))
    last = np.linalg.norm(numeric_grad(model, x, y, names[-1]))
    assert last > 1e-3 and first < 1e-3 * last


@pytest.mark.parametrize("kind", ["relu_he", "sigmoid_bn", "sigmoid_residual"])
def test_cures_keep_the_ratio_within_a_decade(kind):
    x, y = _batch()
    kw = {"relu_he": dict(activation="relu", init="he"),
          "sigmoid_bn": dict(activation="sigmoid", init="naive", batchnorm=True),
          "sigmoid_residual": dict(activation="sigmoid", init="naive", residual=True)}[kind]
    model = _mlp10(**kw)
    assert 0.1 <= gradient_ratio(model, x, y) <= 10
    assert gradcheck_model(model, x, y)


def test_gradient_ratio_matches_direct_gradients_and_leaves_grad_alone():
    x, y = _batch(1)
    model = _mlp10(activation="tanh", init="glorot")
    ratio = gradient_ratio(model, x, y)
    assert all(p.grad is None for p in model.parameters())
    F.cross_entropy(model(x), y).backward()
    ws = [w for _, w in weight_layers(model)]
    assert len(ws) == 10
    direct = np.linalg.norm(ws[0].grad.numpy()) / np.linalg.norm(ws[-1].grad.numpy())
    assert ratio == pytest.approx(direct, rel=1e-12)
    with pytest.raises(ValueError, match="weight layer"):
        gradient_ratio(nn.Sequential(nn.Linear(3, 2)), md.randn(2, 3), md.tensor([0, 1]))


# ---- the single tanh neuron -------------------------------------------------------------------

def _neuron_grad(shift: float, w: float = 0.0) -> float:
    wt = md.tensor(np.float64(w), requires_grad=True)
    F.tanh(md.tensor(np.array([shift])) + wt).sum().backward()
    return float(wt.grad.item())


def test_single_neuron_saturates_at_shift_5():
    g0, g5 = _neuron_grad(0.0), _neuron_grad(5.0)
    assert g5 < 1e-3 * g0
    for s, w in [(0.0, 0.0), (5.0, 0.0), (5.0, 0.3), (-2.5, 1.0)]:
        assert abs(_neuron_grad(s, w) - (1 - np.tanh(s + w) ** 2)) < 1e-10


def test_neuron_experiment_table_and_normalization_restores_the_gradient():
    r = flow.neuron(shifts=[0.0, 2.0, 5.0], samples=256)
    rows = {row["shift"]: row for row in r.rows}
    assert rows[5.0]["dE/dw (x=shift)"] < 1e-3 * rows[0.0]["dE/dw (x=shift)"]
    assert max(row["|difference|"] for row in r.rows) < 1e-10
    # on shifted data the gradient collapses; Normalization.adapt gives it back
    assert rows[5.0]["dE/dw data"] < 0.01 * rows[0.0]["dE/dw data"]
    assert rows[5.0]["dE/dw data normalized"] == pytest.approx(
        rows[0.0]["dE/dw data normalized"], rel=1e-6)
    assert rows[5.0]["dE/dw data normalized"] > 0.5
    assert "shift 5" in r.table()


# ---- parallel paths ----------------------------------------------------------------------------

def test_parallel_gradient_is_the_sum_of_three_path_products():
    rng = np.random.default_rng(3)
    x, w = np.array([[0.7]]), np.array([[0.4]])
    v, c, u = (rng.standard_normal((1, 3)) for _ in range(3))
    products = flow.path_products(x, w, v, c, u)
    assert products.shape == (1, 3)
    # each path product written out by hand: dE/dp_k * dp_k/dh * dh/dw
    for k in range(3):
        p_k = np.tanh(v[0, k] * w[0, 0] * x[0, 0] + c[0, k])
        assert products[0, k] == pytest.approx(u[0, k] * (1 - p_k ** 2) * v[0, k] * x[0, 0])
    wt = md.tensor(w, requires_grad=True)
    flow.parallel_net(md.tensor(x), wt, md.tensor(v), md.tensor(c), md.tensor(u)).sum().backward()
    assert abs(wt.grad.item() - products.sum()) < 1e-12
    # and the backward pass itself is right, for every input of the network
    assert md.gradcheck(flow.parallel_net, *(md.tensor(a, requires_grad=True)
                                          for a in (x, w, v, c, u)))
    assert md.gradcheck(flow.sequential_net, *(md.tensor(a, requires_grad=True)
                                            for a in (x, w, v, c, u)))


def test_parallel_paths_vanish_less_often_than_a_chain():
    r = flow.parallel(max_paths=4, trials=1500)
    par = [row["P(dE/dw~0) parallel"] for row in r.rows]
    seq = [row["P(dE/dw~0) sequential"] for row in r.rows]
    assert par[0] == seq[0]                      # one unit: the same network
    assert par[-1] < par[0] < seq[-1]
    assert all(a >= b for a, b in zip(par, par[1:]))
    assert all(a <= b for a, b in zip(seq, seq[1:]))


# ---- the Recorder reports the true numbers ----------------------------------------------------------

def _recorded_net():
    return nn.Sequential(nn.Linear(8, 6), nn.Sigmoid(), nn.Linear(6, 6), nn.Tanh(),
                         nn.Linear(6, 6), nn.ReLU(), nn.Linear(6, 4)).double()


def test_recorder_numbers_equal_directly_computed_gradients():
    x, y = _batch(2)
    net = _recorded_net()
    for p in net.parameters():      # large weights: some saturation and dead units
        p.data = p.data * 3
    with Recorder(net) as rec:
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()
    rows = rec.step_rows(0)
    assert [r["layer"] for r in rows] == [str(i) for i in range(7)]
    assert all(set(r) == set(COLUMNS) for r in rows)

    # direct computation: the same forward, layer by layer, with md.grad on every output
    outs, h = [], x
    for layer in net:
        h = layer(h)
        outs.append(h)
    loss = F.cross_entropy(h, y)
    grads = md.grad(loss, outs + [net[i].weight for i in (0, 2, 4, 6)])
    g_out, g_w = grads[:7], grads[7:]
    for i, r in enumerate(rows):
        a = outs[i].numpy()
        assert r["out_grad_norm"] == pytest.approx(np.linalg.norm(g_out[i].numpy()), rel=1e-12)
        assert r["act_mean"] == pytest.approx(a.mean(), rel=1e-12)
        assert r["act_std"] == pytest.approx(a.std(), rel=1e-12)
    for i, g in zip((0, 2, 4, 6), g_w):
        assert rows[i]["w_grad_norm"] == pytest.approx(np.linalg.norm(g.numpy()), rel=1e-12)
        assert rows[i]["w_grad_mean_abs"] == pytest.approx(np.abs(g.numpy()).mean(), rel=1e-12)
        assert rows[i]["w_grad_norm"] == pytest.approx(
            np.linalg.norm(net[i].weight.grad.numpy()), rel=1e-12)
    sig, th, re = outs[1].numpy(), outs[3].numpy(), outs[5].numpy()
    assert rows[1]["saturated"] == ((sig < 0.01) | (sig > 0.99)).mean()
    assert rows[3]["saturated"] == (np.abs(th) > 0.99).mean()
    assert rows[5]["dead_relu"] == 1 - (re > 0).any(axis=0).mean()
    assert rows[5]["saturated"] is None and rows[1]["dead_relu"] is None
    assert rows[1]["w_grad_norm"] is None


def test_recorder_steps_eval_and_detach():
    x, y = _batch(3)
    net = _recorded_net()
    opt_lr = 0.1
    with Recorder(net, layers=nn.Linear) as rec:
        for _ in range(3):
            net.zero_grad()
            F.cross_entropy(net(x), y).backward()
            with md.no_grad():                       # not a training step: not recorded
                net(x)
            for p in net.parameters():
                p.data -= opt_lr * p.grad.data
        expected_last = [np.linalg.norm(net[i].weight.grad.numpy()) for i in (0, 2, 4, 6)]
    assert rec.num_steps == 3 and len(rec.rows) == 3 * 4
    names, values = rec.series("w_grad_norm", step=-1)
    assert names == ["0", "2", "4", "6"]
    assert values == pytest.approx(expected_last, rel=1e-12)
    # hooks are gone after the with block
    net.zero_grad()
    F.cross_entropy(net(x), y).backward()
    assert rec.num_steps == 3 and len(rec.rows) == 12
    assert not net[0].weight._hooks


def test_recorder_layer_selection_and_errors():
    net = _recorded_net()
    assert [n for n, _ in Recorder(net, layers=["1", "3"]).layers] == ["1", "3"]
    assert [n for n, _ in Recorder(net, layers=lambda n, m: n == "6").layers] == ["6"]
    assert len(Recorder(net).layers) == 7
    with pytest.raises(ValueError, match="no submodule named"):
        Recorder(net, layers=["9"])
    with pytest.raises(TypeError, match="nn.Module"):
        Recorder(lambda x: x)
    with pytest.raises(IndexError):
        Recorder(net).step_rows(0)


def test_recorder_table_prints_to_the_current_stdout(capsys):
    """The default is the standard output when table() runs, not when the module loaded."""
    x, y = _batch(4)
    net = _recorded_net()
    with Recorder(net) as rec:
        F.cross_entropy(net(x), y).backward()
    text = rec.table()
    assert capsys.readouterr().out == text + "\n"
    rec.table(file=None)
    assert capsys.readouterr().out == ""


def test_recorder_table_csv_and_plot(tmp_path):
    x, y = _batch(4)
    net = _recorded_net()
    with Recorder(net) as rec:
        for _ in range(2):
            net.zero_grad()
            F.cross_entropy(net(x), y).backward()
    text = rec.table(file=None)
    assert text.splitlines()[0].split() == COLUMNS
    assert len(text.splitlines()) == 2 + 7
    assert len(rec.table(step="all", file=None).splitlines()) == 2 + 14
    lines = rec.to_csv(tmp_path / "flow.csv").read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 15
    first = dict(zip(COLUMNS, lines[1].split(",")))
    assert float(first["w_grad_norm"]) == rec.rows[0]["w_grad_norm"]
    if HAS_MPL:
        out = rec.plot(tmp_path / "flow.png")
        assert out.read_bytes()[:4] == b"\x89PNG"


def test_recorder_on_a_residual_net_records_blocks():
    x, y = _batch(5)
    model = _mlp10(activation="sigmoid", init="glorot", residual=True)
    blocks = [m for m in model.modules() if isinstance(m, nn.Residual)]
    with Recorder(model, layers=nn.Residual) as rec:
        F.cross_entropy(model(x), y).backward()
    norms = rec.series("out_grad_norm")[1]
    assert len(norms) == len(blocks) == 4
    # through the identity path the gradient cannot shrink much from block to block
    assert max(norms) / min(norms) < 10


# ---- experiments, figures, CLI ----------------------------------------------------------------------

def test_fit_decay_recovers_a_geometric_factor():
    assert fit_decay([0.25 ** (5 - k) for k in range(6)]) == pytest.approx(0.25)
    assert math.isnan(fit_decay([0.0, 0.0]))


def test_depth_experiment_small():
    r = flow.depth(depths=(2, 6), activations=("sigmoid", "relu"), inits=("glorot",),
                batchnorm=(False,), width=8, steps=3, probe=32)
    assert len(r.rows) == 4
    sig6 = next(row for row in r.rows if row["depth"] == 6 and row["act"] == "sigmoid")
    assert sig6["act gain init"] <= 0.25            # sigmoid' <= 1/4
    assert sig6["decay/layer init"] < 0.5
    assert "never above the bound 1/4" in r.table()


def test_residual_and_bn_experiments_small():
    r = flow.residual(depths=(4, 8), width=8, steps=4, probe=32, batch=16)
    assert [row["net"] for row in r.rows] == ["plain-4", "resnet-4", "resnet-zero-4",
                                              "plain-8", "resnet-8", "resnet-zero-8"]
    assert [row["blocks"] for row in r.rows] == [1, 1, 1, 3, 3, 3]
    assert "resnet-zero: final loss" in r.table()
    # zero-initialised residual blocks start as the identity: flat block gradients
    zero8 = next(row for row in r.rows if row["net"] == "resnet-zero-8")
    assert zero8["grad first/last block"] == pytest.approx(1.0, rel=0.3)
    # the real CIFAR ResNet from the zoo, one step on 28x28 digits
    rc = flow.residual(depths=(8,), arch="cifar", width=8, steps=1, probe=8, batch=8,
                    zero_init=False)
    assert [row["net"] for row in rc.rows] == ["plain-8", "resnet-8"]
    b = flow.bn(depth=6, width=8, inits=("naive",), steps=3, probe=32)
    plain, with_bn = b.rows
    assert with_bn["|g first| init"] > 1e3 * plain["|g first| init"]


def test_sgd_train_is_plain_sgd_on_batches_drawn_with_replacement():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((40, 8)).astype(np.float32), rng.integers(0, 4, 40)
    nets = []
    for _ in range(2):
        md.manual_seed(0)
        nets.append(flow.make_mlp(4, 8, "tanh", "he", in_features=8, classes=4))
    trained, by_hand = nets
    losses = flow.sgd_train(trained, x, y, steps=5, lr=0.1, batch=6, seed=3)
    # the same five steps written out: the Trainer adds nothing to plain SGD
    draw, expected = np.random.default_rng(3), []
    for _ in range(5):
        idx = draw.integers(0, 40, 6)
        by_hand.zero_grad()
        loss = F.cross_entropy(by_hand(md.tensor(x[idx])), md.tensor(y[idx]))
        expected.append(loss.item())
        loss.backward()
        for p in by_hand.parameters():
            p.data -= 0.1 * p.grad.data
    assert losses == expected
    for a, b in zip(trained.parameters(), by_hand.parameters()):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    logits = by_hand(md.tensor(x)).numpy()
    assert model_accuracy(trained, x, y, batch_size=16) == (logits.argmax(1) == y).mean()
    with np.errstate(all="ignore"):   # a huge step: the weights overflow, the loss follows
        diverged = flow.sgd_train(trained, x, y, steps=6, lr=1e38, batch=6)
    assert len(diverged) == 6 and math.isfinite(diverged[0])
    assert not math.isfinite(diverged[1]) and all(math.isnan(v) for v in diverged[2:])
    assert flow.sgd_train(trained, x, y, steps=0) == []


def test_make_mlp_shapes_and_errors():
    assert len(weight_layers(flow.make_mlp(20, 8, "relu", "he", residual=True))) == 20
    assert len(weight_layers(flow.make_mlp(5, 8, batchnorm=True))) == 5
    with pytest.raises(ValueError, match="odd"):
        flow.make_mlp(5, residual=True)
    with pytest.raises(ValueError, match="activation"):
        flow.make_mlp(4, activation="gelu")
    with pytest.raises(ValueError, match="init"):
        flow.make_mlp(4, init="orthogonal")


@pytest.mark.skipif(not HAS_MPL, reason="matplotlib not installed")
def test_demo_figure_and_cli(tmp_path, capsys):
    import time

    from minidl.cli.flow import add_parser as add_flow_parser

    start = time.perf_counter()
    out = flow.demo_figure(tmp_path / "demo.png", probe=64)
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert time.perf_counter() - start < 10

    parser = argparse.ArgumentParser(prog="minidl")
    add_flow_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["flow", "parallel", "--max-paths", "3", "--trials", "200",
                              "--out", str(tmp_path / "p.png"), "--csv", str(tmp_path / "p.csv")])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "P(dE/dw~0) parallel" in printed and "path products" in printed
    assert (tmp_path / "p.png").exists() and (tmp_path / "p.csv").exists()
    with pytest.raises(SystemExit):
        parser.parse_args(["flow", "nonsense"])
