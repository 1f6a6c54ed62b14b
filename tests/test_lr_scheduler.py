"""LR schedulers: torch's chainable composition, each schedule against its paper's or torch's
documented formula (computed here in plain Python/NumPy), parameter groups, momentum
cycling, and state-dict round trips mid-run that continue bit for bit."""
from __future__ import annotations

import math

import numpy as np
import pytest

import minidl as md
import minidl.nn as nn
import minidl.optim as optim
from minidl.optim import lr_scheduler as L

LRS = (0.1, 0.03)  # two parameter groups, so every schedule is checked per group


def _opt(cls=optim.SGD, lrs=LRS, **kw):
    return cls([{"params": [nn.Parameter(md.ones(1))], "lr": lr} for lr in lrs], **kw)


def _run(opt, scheds, n, key="lr"):
    """The group values (lr, or momentum) at epochs 0..n, stepping ``scheds`` in order."""
    scheds = scheds if isinstance(scheds, list) else [scheds]
    out = [[g[key] for g in opt.param_groups]]
    for _ in range(n):
        opt.step()
        for s in scheds:
            s.step()
        out.append([g[key] for g in opt.param_groups])
    return np.array(out)


def _per_group(fn, n, lrs=LRS):
    """Reference table: ``fn(base_lr, epoch)`` for epochs 0..n and every group."""
    return np.array([[fn(b, e) for b in lrs] for e in range(n + 1)])


# ---- chaining -------------------------------------------------------------------------------

def test_step_and_exponential_compose_as_in_torch():
    """The issue's case: torch gives 0.1 * 0.5**2 * 0.9**4 after 4 epochs (each scheduler
    multiplies the current lr); a closed-form implementation gave 0.1 * 0.9**4."""
    opt = _opt()
    got = _run(opt, [L.StepLR(opt, step_size=2, gamma=0.5), L.ExponentialLR(opt, gamma=0.9)], 4)
    np.testing.assert_allclose(got[-1], [b * 0.5 ** 2 * 0.9 ** 4 for b in LRS], rtol=1e-14)
    np.testing.assert_allclose(got, _per_group(lambda b, e: b * 0.5 ** (e // 2) * 0.9 ** e, 4),
                               rtol=1e-14)


def test_multistep_and_cosine_compose():
    """MultiStepLR's factor scales the cosine curve's distance to eta_min = 0."""
    opt = _opt()
    got = _run(opt, [L.CosineAnnealingLR(opt, T_max=10), L.MultiStepLR(opt, [3, 6], 0.1)], 8)
    want = _per_group(lambda b, e: b * (1 + math.cos(math.pi * e / 10)) / 2
                      * 0.1 ** sum(e >= m for m in (3, 6)), 8)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_get_last_lr_and_closed_form_and_step_epoch():
    opt = _opt()
    s = L.StepLR(opt, step_size=3, gamma=0.5)
    _run(opt, s, 4)
    assert s.get_last_lr() == [g["lr"] for g in opt.param_groups]
    s.last_epoch = 7
    assert s._get_closed_form_lr() == [b * 0.5 ** 2 for b in LRS]
    with pytest.warns(UserWarning, match="deprecated"):
        s.step(9)  # torch's deprecated step(epoch): the closed form at epoch 9
    assert [g["lr"] for g in opt.param_groups] == [b * 0.5 ** 3 for b in LRS]
    assert [g["initial_lr"] for g in opt.param_groups] == list(LRS)


# ---- each schedule against its formula ---------------------------------------------------

def _linear(b, e, start=0.25, end=0.9, total=4):
    return b * (start + (end - start) * min(e, total) / total)


FORMULAS = [
    ("step", lambda o: L.StepLR(o, 3, 0.5), lambda b, e: b * 0.5 ** (e // 3)),
    ("multistep-repeated", lambda o: L.MultiStepLR(o, [2, 5, 5], 0.1),
     lambda b, e: b * 0.1 ** sum(e >= m for m in (2, 5, 5))),
    ("constant", lambda o: L.ConstantLR(o, factor=0.5, total_iters=4),
     lambda b, e: b * (0.5 if e < 4 else 1.0)),
    ("constant-defaults", lambda o: L.ConstantLR(o), lambda b, e: b * (1 / 3 if e < 5 else 1.0)),
    ("linear", lambda o: L.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=4),
     _linear),
    ("linear-defaults", lambda o: L.LinearLR(o),
     lambda b, e: _linear(b, e, start=1 / 3, end=1.0, total=5)),
    ("exponential", lambda o: L.ExponentialLR(o, 0.8), lambda b, e: b * 0.8 ** e),
    ("polynomial", lambda o: L.PolynomialLR(o, total_iters=6, power=2.0),
     lambda b, e: b * (1 - min(e, 6) / 6) ** 2),
    ("polynomial-defaults", lambda o: L.PolynomialLR(o), lambda b, e: b * (1 - min(e, 5) / 5)),
    # past T_max torch's curve climbs back (the cosine is periodic): 2 T_max + 3 epochs
    ("cosine", lambda o: L.CosineAnnealingLR(o, T_max=5, eta_min=0.001),
     lambda b, e: 0.001 + (b - 0.001) * (1 + math.cos(math.pi * e / 5)) / 2),
    ("lambda", lambda o: L.LambdaLR(o, [lambda e: 1 / (e + 1), lambda e: 0.9 ** e]),
     None),
    ("multiplicative", lambda o: L.MultiplicativeLR(o, lambda e: 1 - 0.1 * e), None),
]


def _reference(name, formula, n):
    if name == "lambda":
        return np.array([[LRS[0] / (e + 1), LRS[1] * 0.9 ** e] for e in range(n + 1)])
    if name == "multiplicative":  # lr_e = lr_0 * prod_{k=1..e} (1 - 0.1 k)
        return _per_group(lambda b, e: b * math.prod(1 - 0.1 * k for k in range(1, e + 1)), n)
    return _per_group(formula, n)


@pytest.mark.parametrize("name,make,formula", FORMULAS, ids=[f[0] for f in FORMULAS])
def test_schedule_matches_its_formula(name, make, formula):
    n = 13
    opt = _opt()
    got = _run(opt, make(opt), n)
    np.testing.assert_allclose(got, _reference(name, formula, n), rtol=1e-12, atol=1e-15)


def test_schedulers_check_their_arguments():
    with pytest.raises(ValueError, match="start_factor"):
        L.LinearLR(_opt(), start_factor=0.0)
    with pytest.raises(ValueError, match="factor"):
        L.ConstantLR(_opt(), factor=1.5)
    with pytest.raises(ValueError, match="2 functions for 1"):
        L.MultiplicativeLR(_opt(lrs=(0.1,)), [lambda e: 1.0] * 2)
    with pytest.raises(KeyError, match="initial_lr"):
        L.ExponentialLR(_opt(), 0.9, last_epoch=3)
    with pytest.raises(TypeError, match="minidl optimizer"):
        L.StepLR(object(), 2)


def test_resuming_with_last_epoch_keeps_the_restored_lr():
    """torch's protocol: the optimiser's state restores lr and initial_lr, a scheduler built
    with last_epoch=k continues from there (its construction step applies no factor)."""
    opt = _opt()
    s = L.ExponentialLR(opt, 0.5)
    _run(opt, s, 3)
    opt2 = _opt(lrs=(1.0, 1.0))
    opt2.load_state_dict(opt.state_dict())
    s2 = L.ExponentialLR(opt2, 0.5, last_epoch=3)
    assert [g["lr"] for g in opt2.param_groups] == [b * 0.5 ** 3 for b in LRS]
    s.step()
    s2.step()
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]


# ---- cyclical schedules ----------------------------------------------------------------------

def _clr_paper(it, base, peak, step_size, scale):
    """Smith 2017, section 3.1: the triangular policy, amplitude times ``scale``."""
    cycle = math.floor(1 + it / (2 * step_size))
    x = abs(it / step_size - 2 * cycle + 1)
    return base + (peak - base) * max(0.0, 1 - x) * scale(cycle, it)


MODES = [
    ("triangular", {}, lambda c, it: 1.0),
    ("triangular2", {}, lambda c, it: 1 / 2 ** (c - 1)),
    ("exp_range", {"gamma": 0.97}, lambda c, it: 0.97 ** it),
]


@pytest.mark.parametrize("mode,kw,scale", MODES, ids=[m[0] for m in MODES])
def test_cyclic_lr_modes_and_momentum_match_the_paper(mode, kw, scale):
    n, step_size, bases, peaks = 20, 3, (0.01, 0.002), (0.1, 0.05)
    opt = _opt(momentum=0.5)
    s = L.CyclicLR(opt, base_lr=list(bases), max_lr=list(peaks), step_size_up=step_size,
                   mode=mode, **kw)
    lrs, moms = [], []
    for _ in range(n):
        lrs.append([g["lr"] for g in opt.param_groups])
        moms.append([g["momentum"] for g in opt.param_groups])
        opt.step()
        s.step()
    want = [[_clr_paper(it, b, p, step_size, scale) for b, p in zip(bases, peaks)]
            for it in range(n)]
    np.testing.assert_allclose(lrs, want, rtol=1e-12)
    # momentum cycles the other way between max_momentum 0.9 and base_momentum 0.8
    want_m = [[0.9 - (_clr_paper(it, 0.8, 0.9, step_size, scale) - 0.8) for _ in bases]
              for it in range(n)]
    np.testing.assert_allclose(moms, want_m, rtol=1e-12)
    assert lrs[0] == list(bases) and moms[0] == [0.9, 0.9]
    assert s.get_last_lr() == [g["lr"] for g in opt.param_groups]


def test_cyclic_lr_asymmetric_custom_scale_and_adam_beta1():
    """2 steps up, 4 down; scale_fn on iterations; Adam's beta1 cycles, beta2 stays."""
    opt = _opt(optim.Adam)
    s = L.CyclicLR(opt, 0.01, 0.1, step_size_up=2, step_size_down=4,
                   scale_fn=lambda x: 0.9 ** x, scale_mode="iterations")
    got = _run(opt, s, 13)
    tri = [0, 0.5, 1, 0.75, 0.5, 0.25] * 3  # the shape of one 6-step cycle
    want = [[0.01 + 0.09 * tri[e] * 0.9 ** e] * 2 for e in range(14)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    beta1 = [g["betas"][0] for g in opt.param_groups]
    np.testing.assert_allclose(beta1, [0.9 - 0.1 * tri[13] * 0.9 ** 13] * 2, rtol=1e-12)
    assert all(g["betas"][1] == 0.999 for g in opt.param_groups)


def test_cyclic_lr_errors():
    with pytest.raises(ValueError, match="mode"):
        L.CyclicLR(_opt(), 0.01, 0.1, mode="sine")
    with pytest.raises(ValueError, match="cycle_momentum=False"):
        L.CyclicLR(_opt(optim.Adagrad), 0.01, 0.1)
    with pytest.raises(ValueError, match="3 values for 2 parameter groups"):
        L.CyclicLR(_opt(), [0.01] * 3, 0.1)
    L.CyclicLR(_opt(optim.Adagrad), 0.01, 0.1, cycle_momentum=False)  # no momentum: fine


def _sgdr_reference(epoch, base, T_0, T_mult, eta_min):  # noqa: N803
    """Loshchilov & Hutter 2017, eq. 5: find the run containing ``epoch`` by walking the
    restarts, then the cosine over T_cur / T_i."""
    start, t_i = 0.0, T_0
    while epoch >= start + t_i:
        start, t_i = start + t_i, t_i * T_mult
    return eta_min + (base - eta_min) * (1 + math.cos(math.pi * (epoch - start) / t_i)) / 2


@pytest.mark.parametrize("T_mult", [1, 2])
def test_warm_restarts_per_epoch_and_fractional(T_mult):  # noqa: N803
    n = 25
    opt = _opt()
    s = L.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=T_mult, eta_min=0.001)
    got = _run(opt, s, n)
    want = _per_group(lambda b, e: _sgdr_reference(e, b, 3, T_mult, 0.001), n)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    # per batch, as torch's docstring shows: step(epoch + i / iters)
    opt = _opt()
    s = L.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=T_mult, eta_min=0.001)
    for epoch in range(8):
        for i in range(4):
            s.step(epoch + i / 4)
            want = [_sgdr_reference(epoch + i / 4, b, 3, T_mult, 0.001) for b in LRS]
            np.testing.assert_allclose([g["lr"] for g in opt.param_groups], want, rtol=1e-12)
            assert s.last_epoch == epoch
    with pytest.raises(ValueError, match="T_0"):
        L.CosineAnnealingWarmRestarts(_opt(), T_0=2.5)
    with pytest.raises(ValueError, match="T_mult"):
        L.CosineAnnealingWarmRestarts(_opt(), T_0=2, T_mult=0)


# ---- composite schedulers ---------------------------------------------------------------------

def test_sequential_warmup_then_cosine():
    opt = _opt()
    warm = L.LinearLR(opt, start_factor=0.1, total_iters=3)
    cos = L.CosineAnnealingLR(opt, T_max=5)
    s = L.SequentialLR(opt, [warm, cos], milestones=[3])
    got = _run(opt, s, 10)

    def want(b, e):
        if e < 3:
            return b * (0.1 + 0.9 * e / 3)
        return b * (1 + math.cos(math.pi * (e - 3) / 5)) / 2  # the cosine restarts at 3
    np.testing.assert_allclose(got, _per_group(want, 10), rtol=1e-12, atol=1e-16)
    assert s.get_last_lr() == [g["lr"] for g in opt.param_groups]


def test_sequential_and_chained_match_torchs_documented_example():
    """torch's docstrings: ConstantLR(factor=0.1, total_iters=20) then ExponentialLR(0.9)."""
    opt = _opt(lrs=(0.05,))
    s = L.SequentialLR(opt, [L.ConstantLR(opt, factor=0.1, total_iters=20),
                             L.ExponentialLR(opt, gamma=0.9)], milestones=[20])
    got = _run(opt, s, 24)[:, 0]
    want = [0.005] * 20 + [0.05 * 0.9 ** k for k in range(5)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    opt = _opt(lrs=(0.05,))
    c = L.ChainedScheduler([L.ConstantLR(opt, factor=0.1, total_iters=20),
                            L.ExponentialLR(opt, gamma=0.9)], optimizer=opt)
    got = _run(opt, c, 24)[:, 0]
    want = [0.05 * 0.9 ** e * (0.1 if e < 20 else 1.0) for e in range(25)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_composite_errors():
    opt = _opt()
    with pytest.raises(ValueError, match="expected 1 milestones for 2 schedulers"):
        L.SequentialLR(opt, [L.StepLR(opt, 2), L.StepLR(opt, 3)], milestones=[])
    with pytest.raises(ValueError, match="ReduceLROnPlateau"):
        L.ChainedScheduler([L.ReduceLROnPlateau(opt)])
    with pytest.raises(ValueError, match="another optimizer"):
        L.ChainedScheduler([L.StepLR(opt, 2), L.StepLR(_opt(), 2)])
    with pytest.raises(ValueError, match="at least one"):
        L.SequentialLR(opt, [], milestones=[])


# ---- state dicts mid-run -----------------------------------------------------------------

def _cyclic(o):
    return L.CyclicLR(o, [0.01, 0.02], [0.1, 0.2], step_size_up=3, mode="triangular2")


class _Halving:
    """A callable object: torch saves its attributes in the state dict."""

    def __init__(self):
        self.factor = 0.5

    def __call__(self, epoch):
        return self.factor


RESUMABLE = [
    ("step+exponential", lambda o: [L.StepLR(o, 2, 0.5), L.ExponentialLR(o, 0.9)]),
    ("multistep", lambda o: [L.MultiStepLR(o, [2, 7], 0.3)]),
    ("constant+linear", lambda o: [L.ConstantLR(o, 0.5, 6), L.LinearLR(o, 0.2, 1.0, 8)]),
    ("polynomial", lambda o: [L.PolynomialLR(o, 9, 1.5)]),
    ("cosine", lambda o: [L.CosineAnnealingLR(o, 4, 0.001)]),
    ("multiplicative-object", lambda o: [L.MultiplicativeLR(o, _Halving())]),
    ("lambda", lambda o: [L.LambdaLR(o, lambda e: 1 / (1 + e))]),
    ("warm-restarts", lambda o: [L.CosineAnnealingWarmRestarts(o, 2, 2, 0.001)]),
    ("cyclic", lambda o: [_cyclic(o)]),
    ("one-cycle", lambda o: [L.OneCycleLR(o, [0.5, 0.2], total_steps=12)]),
    ("sequential", lambda o: [L.SequentialLR(o, [L.LinearLR(o, 0.1, total_iters=3),
                                                 L.ExponentialLR(o, 0.8)], [3])]),
    ("chained", lambda o: [L.ChainedScheduler([L.ConstantLR(o, 0.5, 5),
                                               L.CosineAnnealingLR(o, 6)])]),
]


def _mutate(name, scheds):
    """Mid-run change of a callable object's own state, which its state dict must carry."""
    if name == "multiplicative-object":
        scheds[0].lr_lambdas[0].factor = 0.8


@pytest.mark.parametrize("name,make", RESUMABLE, ids=[r[0] for r in RESUMABLE])
def test_state_dict_round_trip_mid_run_continues_bit_for_bit(name, make, tmp_path):
    import minidl.io as mio

    n, k = 11, 5
    opt = _opt(momentum=0.9)
    scheds = make(opt)
    _run(opt, scheds, k)
    _mutate(name, scheds)
    full = _run(opt, scheds, n - k)
    full_m = [g["momentum"] for g in opt.param_groups]

    opt = _opt(momentum=0.9)
    scheds = make(opt)
    _run(opt, scheds, k)
    _mutate(name, scheds)
    mio.save({"opt": opt.state_dict(), "scheds": [s.state_dict() for s in scheds]},
             tmp_path / "ck.npz")
    ck = mio.load(tmp_path / "ck.npz")

    opt2 = _opt(momentum=0.9, lrs=(1.0, 1.0))
    scheds2 = make(opt2)  # a fresh run: its construction sets other rates, then the loads
    opt2.load_state_dict(ck["opt"])
    for s, st in zip(scheds2, ck["scheds"]):
        s.load_state_dict(st)
    rest = _run(opt2, scheds2, n - k)
    assert rest.tolist() == full.tolist()  # bit for bit
    assert [g["momentum"] for g in opt2.param_groups] == full_m
    assert scheds2[-1].get_last_lr() == rest[-1].tolist()


def test_state_dict_is_a_snapshot():
    opt = _opt()
    s = L.MultiStepLR(opt, [2, 4])
    sd = s.state_dict()
    _run(opt, s, 3)
    assert sd["last_epoch"] == 0 and sd["milestones"] == [2, 4]
    assert "optimizer" not in sd


def test_trainer_steps_cyclic_lr_per_batch():
    from minidl.data import DataLoader, TensorDataset
    from minidl.train import Trainer

    x = np.random.default_rng(0).normal(size=(24, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    model = nn.Linear(3, 2)
    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    s = L.CyclicLR(opt, 0.01, 0.1, step_size_up=2)
    Trainer(model, opt, "cross_entropy", scheduler=s, metrics=[], verbose=0).fit(loader,
                                                                                 epochs=2)
    assert s.last_epoch == 2 * len(loader)
