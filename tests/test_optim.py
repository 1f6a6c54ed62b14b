"""Optimisers against hand-written NumPy references, state dicts, groups, schedulers,
regularizers and constraints, and small networks that must learn."""
from __future__ import annotations

import math

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
import minidl.nn as nn
import minidl.optim as optim
from minidl.optim import constraints, lr_scheduler, regularizers

STEPS = 6
RNG = np.random.default_rng(42)
A = RNG.uniform(0.5, 2.0, size=(3, 4))
C = RNG.normal(size=(3, 4))
P0 = RNG.normal(size=(3, 4))


def grad_of(p):
    """Gradient of the test problem 0.5 * sum(A p^2) + sum(C p) + 0.05 * sum(p^3)."""
    return A * p + C + 0.15 * p * p


def loss_of(p):
    return (0.5 * md.tensor(A) * p * p).sum() + (md.tensor(C) * p).sum() + (0.05 * p * p * p).sum()


# ---- NumPy references (written from the published update rules) ---------------------------

def _sign(maximize):
    """torch's ``maximize=True`` follows the negated gradient."""
    return -1.0 if maximize else 1.0


def ref_sgd(lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False, maximize=False):
    p, buf, out = P0.copy(), None, []
    for _ in range(STEPS):
        g = _sign(maximize) * grad_of(p) + weight_decay * p
        if momentum:
            buf = g.copy() if buf is None else momentum * buf + (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p = p - lr * g
        out.append(p.copy())
    return out


def ref_adam(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled=False,
             maximize=False):
    p, m, v, vmax, out = P0.copy(), 0 * P0, 0 * P0, 0 * P0, []
    for t in range(1, STEPS + 1):
        g = _sign(maximize) * grad_of(p)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1 ** t)
        vmax = np.maximum(vmax, v)
        vhat = (vmax if amsgrad else v) / (1 - b2 ** t)
        p = p - lr * mhat / (np.sqrt(vhat) + eps)
        out.append(p.copy())
    return out


def ref_nadam(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, psi=4e-3, maximize=False):
    p, m, v, prod, out = P0.copy(), 0 * P0, 0 * P0, 1.0, []
    for t in range(1, STEPS + 1):
        g = _sign(maximize) * grad_of(p) + weight_decay * p
        mu_t = b1 * (1 - 0.5 * 0.96 ** (t * psi))
        mu_t1 = b1 * (1 - 0.5 * 0.96 ** ((t + 1) * psi))
        prod *= mu_t
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        vhat = v / (1 - b2 ** t)
        p = p - lr * (mu_t1 * m / (1 - prod * mu_t1) + (1 - mu_t) * g / (1 - prod)) / (
            np.sqrt(vhat) + eps)
        out.append(p.copy())
    return out


def ref_rmsprop(lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=False,
                maximize=False):
    p, sq, ga, buf, out = P0.copy(), 0 * P0, 0 * P0, 0 * P0, []
    for _ in range(STEPS):
        g = _sign(maximize) * grad_of(p) + weight_decay * p
        sq = alpha * sq + (1 - alpha) * g * g
        if centered:
            ga = alpha * ga + (1 - alpha) * g
            denom = np.sqrt(sq - ga * ga) + eps
        else:
            denom = np.sqrt(sq) + eps
        if momentum:
            buf = momentum * buf + g / denom
            p = p - lr * buf
        else:
            p = p - lr * g / denom
        out.append(p.copy())
    return out


def ref_adagrad(lr, lr_decay=0.0, weight_decay=0.0, init=0.0, eps=1e-10, maximize=False):
    p, s, out = P0.copy(), np.full_like(P0, init), []
    for t in range(1, STEPS + 1):
        g = _sign(maximize) * grad_of(p) + weight_decay * p
        s = s + g * g
        p = p - lr / (1 + (t - 1) * lr_decay) * g / (np.sqrt(s) + eps)
        out.append(p.copy())
    return out


def ref_radam(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, decoupled=False, maximize=False,
              steps=STEPS):
    """torch's RAdam documentation (Liu et al. 2020 with eps outside the root)."""
    p, m, v, out = P0.copy(), 0 * P0, 0 * P0, []
    rho_inf = 2 / (1 - b2) - 1
    for t in range(1, steps + 1):
        g = _sign(maximize) * grad_of(p)
        if decoupled:
            p = p * (1 - lr * weight_decay)
        else:
            g = g + weight_decay * p
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mhat = m / (1 - b1 ** t)
        rho_t = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho_t > 5:
            l_t = np.sqrt(1 - b2 ** t) / (np.sqrt(v) + eps)
            r_t = np.sqrt((rho_t - 4) * (rho_t - 2) * rho_inf
                          / ((rho_inf - 4) * (rho_inf - 2) * rho_t))
            p = p - lr * mhat * r_t * l_t
        else:
            p = p - lr * mhat
        out.append(p.copy())
    return out


def ref_adamax(lr, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0, maximize=False):
    """Kingma & Ba 2015, algorithm 2, with torch's eps inside the max."""
    p, m, u, out = P0.copy(), 0 * P0, 0 * P0, []
    for t in range(1, STEPS + 1):
        g = _sign(maximize) * grad_of(p) + weight_decay * p
        m = b1 * m + (1 - b1) * g
        u = np.maximum(b2 * u, np.abs(g) + eps)
        p = p - lr / (1 - b1 ** t) * m / u
        out.append(p.copy())
    return out


def ref_adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0, maximize=False):
    """Zeiler 2012, algorithm 1, with torch's lr on the update."""
    p, v, u, out = P0.copy(), 0 * P0, 0 * P0, []
    for _ in range(STEPS):
        g = _sign(maximize) * grad_of(p) + weight_decay * p
        v = rho * v + (1 - rho) * g * g
        delta = np.sqrt(u + eps) / np.sqrt(v + eps) * g
        u = rho * u + (1 - rho) * delta * delta
        p = p - lr * delta
        out.append(p.copy())
    return out


CASES = [
    ("sgd", lambda ps: optim.SGD(ps, lr=0.1), lambda: ref_sgd(0.1)),
    ("sgd-momentum", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9),
     lambda: ref_sgd(0.05, momentum=0.9)),
    ("sgd-dampening-wd", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.3,
                                              weight_decay=0.01),
     lambda: ref_sgd(0.05, momentum=0.8, dampening=0.3, weight_decay=0.01)),
    ("sgd-nesterov", lambda ps: optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True,
                                          weight_decay=0.1),
     lambda: ref_sgd(0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("adam", lambda ps: optim.Adam(ps, lr=0.1), lambda: ref_adam(0.1)),
    ("adam-wd-amsgrad", lambda ps: optim.Adam(ps, lr=0.05, betas=(0.8, 0.9), weight_decay=0.1,
                                              amsgrad=True),
     lambda: ref_adam(0.05, 0.8, 0.9, weight_decay=0.1, amsgrad=True)),
    ("adamw", lambda ps: optim.AdamW(ps, lr=0.1), lambda: ref_adam(0.1, weight_decay=1e-2,
                                                                   decoupled=True)),
    ("nadam", lambda ps: optim.Nadam(ps, lr=0.1), lambda: ref_nadam(0.1)),
    ("nadam-wd", lambda ps: optim.Nadam(ps, lr=0.05, weight_decay=0.1, momentum_decay=0.01),
     lambda: ref_nadam(0.05, weight_decay=0.1, psi=0.01)),
    ("rmsprop", lambda ps: optim.RMSprop(ps, lr=0.01), lambda: ref_rmsprop(0.01)),
    ("rmsprop-centered-momentum", lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.9,
                                                           centered=True, weight_decay=0.1),
     lambda: ref_rmsprop(0.01, momentum=0.9, centered=True, weight_decay=0.1)),
    ("adagrad", lambda ps: optim.Adagrad(ps, lr=0.1), lambda: ref_adagrad(0.1)),
    ("adagrad-decay", lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.1, weight_decay=0.1,
                                               initial_accumulator_value=0.5),
     lambda: ref_adagrad(0.1, lr_decay=0.1, weight_decay=0.1, init=0.5)),
    ("radam", lambda ps: optim.RAdam(ps, lr=0.1), lambda: ref_radam(0.1)),
    # beta2 = 0.9: the rectified step switches on at step 6 (rho_t = 5.39)
    ("radam-rectified-wd", lambda ps: optim.RAdam(ps, lr=0.05, betas=(0.8, 0.9),
                                                  weight_decay=0.1),
     lambda: ref_radam(0.05, 0.8, 0.9, weight_decay=0.1)),
    ("radam-decoupled", lambda ps: optim.RAdam(ps, lr=0.05, betas=(0.8, 0.9), weight_decay=0.1,
                                               decoupled_weight_decay=True),
     lambda: ref_radam(0.05, 0.8, 0.9, weight_decay=0.1, decoupled=True)),
    ("adamax", lambda ps: optim.Adamax(ps, lr=0.1), lambda: ref_adamax(0.1)),
    ("adamax-wd", lambda ps: optim.Adamax(ps, lr=0.05, betas=(0.8, 0.9), eps=1e-3,
                                          weight_decay=0.1),
     lambda: ref_adamax(0.05, 0.8, 0.9, eps=1e-3, weight_decay=0.1)),
    ("adadelta", lambda ps: optim.Adadelta(ps), lambda: ref_adadelta()),
    ("adadelta-wd", lambda ps: optim.Adadelta(ps, lr=0.5, rho=0.8, eps=1e-4, weight_decay=0.1),
     lambda: ref_adadelta(0.5, 0.8, 1e-4, weight_decay=0.1)),
    # maximize=True on every optimiser: the negated gradient, before weight decay
    ("sgd-maximize", lambda ps: optim.SGD(ps, lr=0.02, momentum=0.9, nesterov=True,
                                          weight_decay=0.1, maximize=True),
     lambda: ref_sgd(0.02, momentum=0.9, nesterov=True, weight_decay=0.1, maximize=True)),
    ("adam-maximize", lambda ps: optim.Adam(ps, lr=0.05, weight_decay=0.1, amsgrad=True,
                                            maximize=True),
     lambda: ref_adam(0.05, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("adamw-maximize", lambda ps: optim.AdamW(ps, lr=0.05, maximize=True),
     lambda: ref_adam(0.05, weight_decay=1e-2, decoupled=True, maximize=True)),
    ("nadam-maximize", lambda ps: optim.Nadam(ps, lr=0.05, weight_decay=0.1, maximize=True),
     lambda: ref_nadam(0.05, weight_decay=0.1, maximize=True)),
    ("rmsprop-maximize", lambda ps: optim.RMSprop(ps, lr=0.01, momentum=0.9, centered=True,
                                                  weight_decay=0.1, maximize=True),
     lambda: ref_rmsprop(0.01, momentum=0.9, centered=True, weight_decay=0.1, maximize=True)),
    ("adagrad-maximize", lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.1, weight_decay=0.1,
                                                  maximize=True),
     lambda: ref_adagrad(0.1, lr_decay=0.1, weight_decay=0.1, maximize=True)),
    ("radam-maximize", lambda ps: optim.RAdam(ps, lr=0.05, betas=(0.8, 0.9), weight_decay=0.1,
                                              decoupled_weight_decay=True, maximize=True),
     lambda: ref_radam(0.05, 0.8, 0.9, weight_decay=0.1, decoupled=True, maximize=True)),
    ("adamax-maximize", lambda ps: optim.Adamax(ps, lr=0.05, weight_decay=0.1, maximize=True),
     lambda: ref_adamax(0.05, weight_decay=0.1, maximize=True)),
    ("adadelta-maximize", lambda ps: optim.Adadelta(ps, weight_decay=0.1, maximize=True),
     lambda: ref_adadelta(weight_decay=0.1, maximize=True)),
]


@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
def test_update_matches_numpy_reference(name, make, ref, device):
    p = nn.Parameter(md.tensor(P0.copy(), device=device))      # float64
    opt = make([p])
    expected = ref()
    assert all(np.isfinite(e).all() for e in expected)
    for step in range(STEPS):
        opt.zero_grad()
        loss_of_dev(p, device).backward()
        data_before = p.data
        opt.step()
        assert p.data is data_before                   # updated in place
        np.testing.assert_allclose(p.numpy(), expected[step], rtol=1e-10, atol=1e-12,
                                   err_msg=f"{name}, step {step + 1}")


def loss_of_dev(p, device):
    a, c = md.tensor(A, device=device), md.tensor(C, device=device)
    return (0.5 * a * p * p).sum() + (c * p).sum() + (0.05 * p * p * p).sum()


@pytest.mark.torch
@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
def test_update_matches_torch(name, make, ref):
    torch = pytest.importorskip("torch")
    kinds = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "nadam": "NAdam",
             "rmsprop": "RMSprop", "adagrad": "Adagrad", "radam": "RAdam", "adamax": "Adamax",
             "adadelta": "Adadelta"}
    p = nn.Parameter(md.tensor(P0.copy()))
    opt = make([p])
    hyper = {k: v for k, v in opt.param_groups[0].items() if k not in ("params",)}
    tp = torch.tensor(P0, requires_grad=True)
    topt = getattr(torch.optim, kinds[name.split("-")[0]])([tp], **hyper)
    for _ in range(STEPS):
        opt.zero_grad()
        loss_of(p).backward()
        opt.step()
        topt.zero_grad()
        ta, tc = torch.tensor(A), torch.tensor(C)
        ((0.5 * ta * tp * tp).sum() + (tc * tp).sum() + (0.05 * tp ** 3).sum()).backward()
        topt.step()
    # torch keeps NAdam's mu_product in a float32 scalar; we keep it in float64
    rtol = 1e-6 if name.startswith("nadam") else 1e-9
    np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=rtol, atol=1e-12)


def test_float32_parameters_stay_float32():
    for _name, make, _ref in CASES:
        p = nn.Parameter(md.tensor(P0.astype(np.float32)))
        opt = make([p])
        for _ in range(2):
            opt.zero_grad()
            (0.5 * p * p).sum().backward()
            opt.step()
        assert p.dtype == np.float32
        assert all(v.dtype == np.float32 for v in opt.state[p].values() if hasattr(v, "dtype"))


def test_defaults_match_torch():
    p = [nn.Parameter(md.zeros(1))]
    assert optim.SGD(p).defaults == dict(lr=1e-3, momentum=0.0, dampening=0.0,
                                         weight_decay=0.0, nesterov=False, maximize=False)
    assert optim.Adam(p).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                                          weight_decay=0.0, amsgrad=False, maximize=False)
    assert optim.AdamW(p).defaults["weight_decay"] == 1e-2
    assert optim.Nadam(p).defaults["lr"] == 2e-3
    assert optim.Nadam(p).defaults["momentum_decay"] == 4e-3
    assert optim.RMSprop(p).defaults == dict(lr=1e-2, alpha=0.99, eps=1e-8, weight_decay=0.0,
                                             momentum=0.0, centered=False, maximize=False)
    assert optim.Adagrad(p).defaults == dict(lr=1e-2, lr_decay=0.0, weight_decay=0.0,
                                             initial_accumulator_value=0.0, eps=1e-10,
                                             maximize=False)
    assert optim.RAdam(p).defaults == dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8,
                                           weight_decay=0.0, decoupled_weight_decay=False,
                                           maximize=False)
    assert optim.Adamax(p).defaults == dict(lr=2e-3, betas=(0.9, 0.999), eps=1e-8,
                                            weight_decay=0.0, maximize=False)
    assert optim.Adadelta(p).defaults == dict(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0.0,
                                              maximize=False)
    for cls in (optim.SGD, optim.Adam, optim.AdamW, optim.Nadam, optim.RMSprop,
                optim.Adagrad, optim.RAdam, optim.Adamax, optim.Adadelta):
        assert cls(p, maximize=True).defaults["maximize"] is True, cls.__name__


def test_param_groups_have_their_own_lr():
    a, b = nn.Parameter(md.ones(2)), nn.Parameter(md.ones(2))
    opt = optim.SGD([{"params": [a], "lr": 0.01}, {"params": [b]}], lr=0.5, momentum=0.0)
    assert opt.param_groups[0]["lr"] == 0.01 and opt.param_groups[1]["lr"] == 0.5
    assert opt.param_groups[0]["momentum"] == 0.0
    (a.sum() + b.sum()).backward()
    opt.step()
    np.testing.assert_allclose(a.numpy(), [0.99, 0.99], rtol=1e-6)
    np.testing.assert_allclose(b.numpy(), [0.5, 0.5], rtol=1e-6)
    with pytest.raises(ValueError, match="more than one group"):
        optim.SGD([{"params": [a]}, {"params": [a]}], lr=0.1)
    with pytest.raises(TypeError, match="single Tensor"):
        optim.Adam(a)
    with pytest.raises(ValueError, match="empty"):
        optim.Adam([])
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="learning rate"):
        optim.SGD([a], lr=-1.0)


def test_radam_switches_from_momentum_to_rectified_steps():
    """Over 12 steps with beta2 = 0.9, steps 1-5 are plain momentum SGD (rho_t <= 5) and
    steps 6-12 rectified Adam; each is checked against the documented formula."""
    b2 = 0.9
    rho_inf = 2 / (1 - b2) - 1
    rho = [rho_inf - 2 * t * b2 ** t / (1 - b2 ** t) for t in range(1, 13)]
    assert [r > 5 for r in rho] == [False] * 5 + [True] * 7
    expected = ref_radam(0.05, 0.8, b2, steps=12)
    p = nn.Parameter(md.tensor(P0.copy()))
    opt = optim.RAdam([p], lr=0.05, betas=(0.8, b2))
    for step in range(12):
        opt.zero_grad()
        loss_of(p).backward()
        opt.step()
        np.testing.assert_allclose(p.numpy(), expected[step], rtol=1e-10, atol=1e-12,
                                   err_msg=f"step {step + 1}")


GROUP_CASES = [
    ("radam", optim.RAdam, dict(lr=0.05, betas=(0.8, 0.9), weight_decay=0.1),
     dict(lr=0.01, decoupled_weight_decay=True, maximize=True), ref_radam,
     lambda kw: dict(lr=kw["lr"], b1=kw["betas"][0], b2=kw["betas"][1],
                     weight_decay=kw["weight_decay"],
                     decoupled=kw.get("decoupled_weight_decay", False),
                     maximize=kw.get("maximize", False))),
    ("adamax", optim.Adamax, dict(lr=0.05, weight_decay=0.1), dict(lr=0.2, betas=(0.5, 0.7)),
     ref_adamax,
     lambda kw: dict(lr=kw["lr"], b1=kw.get("betas", (0.9, 0.999))[0],
                     b2=kw.get("betas", (0.9, 0.999))[1], weight_decay=kw["weight_decay"])),
    ("adadelta", optim.Adadelta, dict(lr=1.0, weight_decay=0.1), dict(lr=0.3, rho=0.5),
     ref_adadelta,
     lambda kw: dict(lr=kw["lr"], rho=kw.get("rho", 0.9), weight_decay=kw["weight_decay"])),
]


@pytest.mark.parametrize("name,cls,defaults,override,ref,ref_kw", GROUP_CASES,
                         ids=[c[0] for c in GROUP_CASES])
def test_new_optimisers_with_parameter_groups(name, cls, defaults, override, ref, ref_kw):
    """Two groups over copies of the test problem: each follows the reference computed with
    its own hyper-parameters (the second group's override the defaults)."""
    a, b = nn.Parameter(md.tensor(P0.copy())), nn.Parameter(md.tensor(P0.copy()))
    opt = cls([{"params": [a]}, {"params": [b], **override}], **defaults)
    want_a, want_b = ref(**ref_kw(defaults)), ref(**ref_kw({**defaults, **override}))
    assert not np.allclose(want_a[-1], want_b[-1])  # the groups really differ
    for step in range(STEPS):
        opt.zero_grad()
        (loss_of(a) + loss_of(b)).backward()
        opt.step()
        np.testing.assert_allclose(a.numpy(), want_a[step], rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b.numpy(), want_b[step], rtol=1e-10, atol=1e-12)


def test_torch_implementation_switches_and_unknown_keywords():
    p = [nn.Parameter(md.zeros(2))]
    for cls in (optim.SGD, optim.Adam, optim.AdamW, optim.Nadam, optim.RAdam, optim.Adamax,
                optim.RMSprop, optim.Adagrad, optim.Adadelta):
        # torch's foreach/fused pick how torch runs the same update: accepted, no effect
        opt = cls(p, foreach=True, fused=False, capturable=False, differentiable=False)
        assert "foreach" not in opt.defaults and opt.defaults == cls(p).defaults
        with pytest.raises(ValueError, match=rf"{cls.__name__}: differentiable=True is not "
                                             "supported.*drop differentiable="):
            cls(p, differentiable=True)
    with pytest.raises(TypeError, match="AdamW: unexpected keyword 'learning_rate'; did you "
                                        "mean 'lr'\\? it takes lr, betas, eps"):
        optim.AdamW(p, learning_rate=0.1)
    with pytest.raises(TypeError, match="SGD: unexpected keyword 'momentun'; did you mean "
                                        "'momentum'"):
        optim.SGD(p, lr=0.1, momentun=0.9)
    with pytest.raises(TypeError, match="Adadelta: unexpected keyword 'zzz'; it takes lr, rho"):
        optim.Adadelta(p, zzz=1)


def test_step_with_a_closure_as_in_torch():
    """``opt.step(closure)`` recomputes loss and gradients first and returns the loss,
    with gradients enabled even inside no_grad (torch's contract)."""
    p = nn.Parameter(md.tensor(P0.copy()))
    opt = optim.SGD([p], lr=0.1)
    calls = []

    def closure():
        opt.zero_grad()
        loss = loss_of(p)
        loss.backward()
        calls.append(float(loss.item()))
        return loss

    with md.no_grad():
        loss = opt.step(closure)
    assert calls and loss.item() == calls[0]
    np.testing.assert_allclose(p.numpy(), ref_sgd(0.1)[0], rtol=1e-12)
    assert opt.step() is None


def test_fine_tuning_groups_with_a_module():
    md.manual_seed(0)
    backbone, head = nn.Linear(3, 4), nn.Linear(4, 2)
    opt = optim.Adam([{"params": backbone.parameters(), "lr": 1e-5},
                      {"params": head.parameters(), "lr": 1e-2}])
    w0, h0 = backbone.weight.numpy().copy(), head.weight.numpy().copy()
    head(F.relu(backbone(md.randn(5, 3)))).sum().backward()
    opt.step()
    # Adam's first step moves every weight by about lr
    assert np.abs(backbone.weight.numpy() - w0).max() <= 1.01e-5
    assert np.abs(head.weight.numpy() - h0).max() > 0.5e-2


def test_parameters_without_grad_are_skipped():
    a, b = nn.Parameter(md.ones(2)), nn.Parameter(md.ones(2))
    opt = optim.AdamW([a, b], lr=0.1, weight_decay=0.5)
    a.sum().backward()
    opt.step()
    np.testing.assert_array_equal(b.numpy(), [1.0, 1.0])   # no grad: no decay either
    assert b not in opt.state


def test_constraint_applied_after_step():
    lin = nn.Linear(3, 2, weight_constraint=constraints.max_norm(0.5))
    with md.no_grad():
        lin.weight.data = np.array([[3.0, 4.0, 0.0], [0.1, 0.1, 0.1]], dtype=np.float32)
    opt = optim.SGD(lin.parameters(), lr=0.0)
    lin(md.ones(1, 3)).sum().backward()
    opt.step()
    w = lin.weight.numpy()
    np.testing.assert_allclose(w[0], [0.3, 0.4, 0.0], rtol=1e-6)   # scaled to norm 0.5
    np.testing.assert_allclose(w[1], [0.1, 0.1, 0.1], rtol=1e-6)   # under the cap: untouched


def test_max_norm_axes_for_conv_weights():
    w = RNG.normal(size=(4, 3, 2, 2)).astype(np.float32) * 3
    out = constraints.max_norm(1.0)(w)
    norms = np.sqrt((out ** 2).sum(axis=(1, 2, 3)))
    np.testing.assert_allclose(norms, np.minimum(np.sqrt((w ** 2).sum(axis=(1, 2, 3))), 1.0),
                               rtol=1e-5)
    assert out.dtype == np.float32
    cols = constraints.max_norm(1.0, axis=0)(w[:, :, 0, 0])
    assert np.all(np.sqrt((cols ** 2).sum(axis=0)) <= 1.0 + 1e-6)
    assert np.all(constraints.non_neg()(w) >= 0)
    np.testing.assert_allclose(np.sqrt((constraints.unit_norm()(w) ** 2).sum(axis=(1, 2, 3))),
                               1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        constraints.max_norm(0.0)


def test_regularizers_values_and_gradients():
    w = md.tensor(np.array([[1.0, -2.0], [0.5, 0.0]]), requires_grad=True)
    assert regularizers.l1(0.1)(w).item() == pytest.approx(0.1 * 3.5)
    assert regularizers.l2(0.1)(w).item() == pytest.approx(0.1 * 5.25)
    assert regularizers.l1_l2(0.1, 0.2)(w).item() == pytest.approx(0.35 + 0.2 * 5.25)
    regularizers.l2(0.5)(w).backward()
    np.testing.assert_allclose(w.grad.numpy(), w.numpy())
    assert regularizers.Regularizer()(w).item() == 0.0
    assert repr(regularizers.l1_l2(0.1, 0.2)) == "l1_l2(l1=0.1, l2=0.2)"
    with pytest.raises(ValueError, match=">= 0"):
        regularizers.l2(-1)


def _train(opt_factory, steps, p=None):
    p = p if p is not None else nn.Parameter(md.tensor(P0.copy()))
    opt = opt_factory([p])
    for _ in range(steps):
        opt.zero_grad()
        loss_of(p).backward()
        opt.step()
    return p, opt


@pytest.mark.parametrize("name,make,ref", CASES, ids=[c[0] for c in CASES])
def test_state_dict_resumes_exactly(name, make, ref, tmp_path):
    import minidl.io as mio
    full, _ = _train(make, STEPS)
    half, opt = _train(make, STEPS // 2)
    mio.save({"p": half, "opt": opt}, tmp_path / "ck.npz")
    # the snapshot is a copy: further steps must not change it
    sd = opt.state_dict()
    before = {k: v.copy() for k, v in sd["state"][0].items() if hasattr(v, "copy")}
    opt.zero_grad()
    loss_of(half).backward()
    opt.step()
    for k, v in before.items():
        np.testing.assert_array_equal(sd["state"][0][k], v)
    ck = mio.load(tmp_path / "ck.npz")
    resumed = nn.Parameter(md.tensor(ck["p"]))
    opt2 = make([resumed])
    opt2.load_state_dict(ck["opt"])
    for _ in range(STEPS - STEPS // 2):
        opt2.zero_grad()
        loss_of(resumed).backward()
        opt2.step()
    np.testing.assert_array_equal(resumed.numpy(), full.numpy())


def test_load_state_dict_checks_before_changing():
    a, b = nn.Parameter(md.ones(2)), nn.Parameter(md.ones(3))
    opt = optim.Adam([a, b], lr=0.1)
    (a.sum() + b.sum()).backward()
    opt.step()
    sd = opt.state_dict()
    other = optim.Adam([nn.Parameter(md.ones(2))], lr=0.5)
    with pytest.raises(ValueError, match="group 0 has 2 parameters"):
        other.load_state_dict(sd)
    assert other.param_groups[0]["lr"] == 0.5 and other.state == {}
    swapped = optim.Adam([nn.Parameter(md.ones(3)), nn.Parameter(md.ones(2))], lr=0.5)
    with pytest.raises(ValueError, match="shape"):
        swapped.load_state_dict(sd)
    assert swapped.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match="not an optimizer state dict"):
        other.load_state_dict({"weight": 1})
    two = optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)
    with pytest.raises(ValueError, match="checkpoint has 1 parameter groups"):
        two.load_state_dict(sd)



def test_load_state_dict_bad_last_state_changes_nothing():
    """Only the last parameter's state is wrong: a loader that restores state per parameter,
    or group settings before the state, would leave a trace."""
    def make(lr):
        params = [nn.Parameter(md.ones(2)), nn.Parameter(md.ones(3))]
        opt = optim.Adam(params, lr=lr)
        sum(p.sum() for p in params).backward()
        opt.step()
        return opt, params
    source, _ = make(0.1)
    sd = source.state_dict()
    last = max(sd["state"], key=int)
    sd["state"][last] = {**sd["state"][last], "exp_avg": np.zeros(7, np.float32)}
    target, params = make(0.5)
    before = {i: {k: np.array(v, copy=True) for k, v in target.state[p].items()}
              for i, p in enumerate(params)}
    with pytest.raises(ValueError, match=r"shape \(7,\)"):
        target.load_state_dict(sd)
    assert target.param_groups[0]["lr"] == 0.5
    for i, p in enumerate(params):
        for k, v in before[i].items():
            np.testing.assert_array_equal(np.asarray(target.state[p][k]), v, err_msg=k)

# ---- schedulers ------------------------------------------------------------------------

def _lrs(sched, opt, n):
    out = [opt.param_groups[0]["lr"]]
    for _ in range(n):
        opt.step()
        sched.step()
        out.append(opt.param_groups[0]["lr"])
    return out


def _opt(lr=0.1, cls=optim.SGD, **kw):
    return cls([nn.Parameter(md.ones(1))], lr=lr, **kw)


def test_step_lr_formula():
    opt = _opt(0.1)
    got = _lrs(lr_scheduler.StepLR(opt, step_size=3, gamma=0.5), opt, 10)
    np.testing.assert_allclose(got, [0.1 * 0.5 ** (e // 3) for e in range(11)])


def test_multistep_and_exponential_and_lambda():
    opt = _opt(1.0)
    got = _lrs(lr_scheduler.MultiStepLR(opt, [2, 5], gamma=0.1), opt, 6)
    np.testing.assert_allclose(got, [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01])
    opt = _opt(1.0)
    np.testing.assert_allclose(_lrs(lr_scheduler.ExponentialLR(opt, 0.5), opt, 3),
                               [1, 0.5, 0.25, 0.125])
    opt = _opt(2.0)
    np.testing.assert_allclose(_lrs(lr_scheduler.LambdaLR(opt, lambda e: 1 / (e + 1)), opt, 3),
                               [2, 1, 2 / 3, 0.5])


def test_cosine_annealing_formula():
    opt = _opt(0.1)
    sched = lr_scheduler.CosineAnnealingLR(opt, T_max=8, eta_min=0.001)
    got = _lrs(sched, opt, 8)
    want = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * e / 8)) / 2 for e in range(9)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert sched.get_last_lr() == [got[-1]]


def _one_cycle_reference(step, total, max_lr, pct=0.3, div=25.0, final_div=1e4):
    initial, peak = max_lr / div, max_lr
    final = initial / final_div
    end1 = pct * total - 1

    def cos(a, b, t):
        return b + (a - b) / 2 * (math.cos(math.pi * t) + 1)
    if step <= end1:
        return cos(initial, peak, step / end1)
    return cos(peak, final, (step - end1) / (total - 1 - end1))


def test_one_cycle_formula_and_momentum():
    total = 20
    opt = _opt(0.5, momentum=0.9)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=0.5, total_steps=total)
    lrs, moms = [opt.param_groups[0]["lr"]], [opt.param_groups[0]["momentum"]]
    for _ in range(total - 1):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
    want = [_one_cycle_reference(s, total, 0.5) for s in range(total)]
    np.testing.assert_allclose(lrs, want, rtol=1e-12)
    assert lrs[0] == pytest.approx(0.5 / 25) and max(lrs) == pytest.approx(0.5, rel=1e-2)
    assert lrs[-1] == pytest.approx(0.5 / 25 / 1e4)
    assert moms[0] == pytest.approx(0.95) and min(moms) == pytest.approx(0.85, abs=2e-3)
    # lr high <-> momentum low
    assert int(np.argmax(lrs)) == int(np.argmin(moms))
    with pytest.raises(ValueError, match="total steps"):
        sched.step()
        sched.step()


def test_one_cycle_with_adam_cycles_beta1_and_groups():
    opt = optim.Adam([{"params": [nn.Parameter(md.ones(1))]},
                      {"params": [nn.Parameter(md.ones(1))]}], lr=1e-3)
    sched = lr_scheduler.OneCycleLR(opt, max_lr=[0.1, 0.01], epochs=2, steps_per_epoch=5,
                                    anneal_strategy="linear")
    assert opt.param_groups[0]["betas"] == (0.95, 0.999)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1 / 25, 0.01 / 25])
    for _ in range(2):
        sched.step()
    # linear warm-up ends at step pct*10 - 1 = 2
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.1, 0.01])
    assert opt.param_groups[0]["betas"][0] == pytest.approx(0.85)
    with pytest.raises(ValueError, match="total_steps"):
        lr_scheduler.OneCycleLR(opt, max_lr=0.1)
    with pytest.raises(ValueError, match="momentum"):
        lr_scheduler.OneCycleLR(_opt(cls=optim.Adagrad), max_lr=0.1, total_steps=5)


@pytest.mark.torch
def test_schedulers_match_torch():
    torch = pytest.importorskip("torch")
    tp = torch.nn.Parameter(torch.ones(1))

    def torch_lrs(make, n):
        topt = torch.optim.SGD([tp], lr=0.3, momentum=0.9)
        s = make(topt)
        out = [topt.param_groups[0]["lr"]]
        for _ in range(n):
            topt.step()
            s.step()
            out.append(topt.param_groups[0]["lr"])
        return out

    pairs = [
        (lambda o: torch.optim.lr_scheduler.StepLR(o, 4, 0.3),
         lambda o: lr_scheduler.StepLR(o, 4, 0.3), 12),
        (lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, 7, 0.01),
         lambda o: lr_scheduler.CosineAnnealingLR(o, 7, 0.01), 7),
        (lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.3, total_steps=23),
         lambda o: lr_scheduler.OneCycleLR(o, 0.3, total_steps=23), 22),
        (lambda o: torch.optim.lr_scheduler.OneCycleLR(o, 0.3, total_steps=23, three_phase=True),
         lambda o: lr_scheduler.OneCycleLR(o, 0.3, total_steps=23, three_phase=True), 22),
    ]
    for tmake, mmake, n in pairs:
        opt = optim.SGD([nn.Parameter(md.ones(1))], lr=0.3, momentum=0.9)
        np.testing.assert_allclose(_lrs(mmake(opt), opt, n), torch_lrs(tmake, n), rtol=1e-10)


def test_scheduler_state_dict_resume():
    opt = _opt(0.2)
    sched = lr_scheduler.StepLR(opt, 2, 0.5)
    for _ in range(3):
        sched.step()
    state, opt_state = sched.state_dict(), opt.state_dict()
    opt2 = _opt(0.2)
    sched2 = lr_scheduler.StepLR(opt2, 2, 0.5)
    # as in torch, the schedule is chainable: the optimiser's state holds the current lr
    opt2.load_state_dict(opt_state)
    sched2.load_state_dict(state)
    sched.step()
    sched2.step()
    assert opt.param_groups[0]["lr"] == opt2.param_groups[0]["lr"] == pytest.approx(0.05)


def test_reduce_lr_on_plateau():
    opt = _opt(1.0)
    sched = lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=1, min_lr=0.2)
    lrs = []
    for metric in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95, 0.95]:
        sched.step(metric)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25, 0.2, 0.2]


# ---- networks that learn ---------------------------------------------------------------

def _blobs(n=400, classes=3, dim=2, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(classes, dim))
    y = rng.integers(0, classes, size=n)
    x = centers[y] + rng.normal(size=(n, dim))
    return x.astype(np.float32), y.astype(np.int64)


def _spirals(n=300, seed=0):
    """Two interleaved spirals: not linearly separable, needs a hidden layer."""
    rng = np.random.default_rng(seed)
    t = rng.uniform(0.5, 3 * np.pi / 1.2, size=n)
    y = rng.integers(0, 2, size=n)
    r = t / 3
    x = np.stack([r * np.cos(t + np.pi * y), r * np.sin(t + np.pi * y)], 1)
    return (x + rng.normal(scale=0.03, size=x.shape)).astype(np.float32), y.astype(np.int64)


def _fit(model, opt, data, epochs, batch=32):
    """Train on ``data(seed=0)``; return the accuracy on held-out ``data(seed=1)``."""
    x, y = data(seed=0)
    for epoch in range(epochs):
        perm = np.random.default_rng(epoch).permutation(len(x))
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            opt.zero_grad()
            F.cross_entropy(model(md.tensor(x[idx])), md.tensor(y[idx])).backward()
            opt.step()
    model.eval()
    xt, yt = data(seed=1)
    with md.no_grad():
        return float((model(md.tensor(xt)).numpy().argmax(1) == yt).mean())


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_mlp_learns_spirals(opt_name):
    md.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(),
                          nn.Linear(64, 2))
    opt = (optim.SGD(model.parameters(), lr=0.1, momentum=0.9) if opt_name == "sgd"
           else optim.Adam(model.parameters(), lr=0.01))
    acc = _fit(model, opt, _spirals, epochs=60)
    assert acc >= 0.95, acc


def _bars(n=240, seed=0):
    """8x8 images with a vertical (class 0), horizontal (1) or diagonal (2) bar + noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(scale=0.3, size=(n, 1, 8, 8)).astype(np.float32)
    y = rng.integers(0, 3, size=n)
    for i in range(n):
        k = rng.integers(1, 7)
        if y[i] == 0:
            x[i, 0, :, k] += 1.5
        elif y[i] == 1:
            x[i, 0, k, :] += 1.5
        else:
            x[i, 0][np.eye(8, k=int(k) - 3, dtype=bool)] += 1.5
    return x, y.astype(np.int64)


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_cnn_learns_bars(opt_name):
    md.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    opt = (optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if opt_name == "sgd"
           else optim.Adam(model.parameters(), lr=0.01))
    acc = _fit(model, opt, _bars, epochs=15)
    assert acc >= 0.95, acc


def test_blobs_with_regularization_still_learn():
    md.manual_seed(0)
    x, y = _blobs()
    model = nn.Sequential(nn.Linear(2, 16, weight_regularizer=regularizers.l2(1e-3)), nn.ReLU(),
                          nn.Linear(16, 3, weight_constraint=constraints.max_norm(3.0)))
    opt = optim.Adam(model.parameters(), lr=0.02)
    for _ in range(30):
        for i in range(0, len(x), 50):
            opt.zero_grad()
            loss = F.cross_entropy(model(md.tensor(x[i:i + 50])), md.tensor(y[i:i + 50]))
            (loss + model.regularization_loss()).backward()
            opt.step()
    assert np.all(np.linalg.norm(model[2].weight.numpy(), axis=1) <= 3.0 + 1e-5)
    with md.no_grad():
        assert (model(md.tensor(x)).numpy().argmax(1) == y).mean() > 0.9


def test_get_optimizer_by_name():
    params = [nn.Parameter(md.ones(2))]
    assert set(optim.OPTIMIZERS) == {"sgd", "adam", "adamw", "nadam", "radam", "adamax",
                                     "rmsprop", "adagrad", "adadelta"}
    for name, cls in optim.OPTIMIZERS.items():
        opt = optim.get_optimizer(name.upper(), params, lr=0.5)
        assert type(opt) is cls and opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(ValueError, match=r"unknown optimizer 'lbfgs'; expected one of \['adadelta'"):
        optim.get_optimizer("lbfgs", params, lr=0.1)
    with pytest.raises(ValueError, match="unknown optimizer 3"):
        optim.get_optimizer(3, params, lr=0.1)
