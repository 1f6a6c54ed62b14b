"""Shape ops (minidl/functional/shape.py): reshape, permute, squeeze, ..., indexing, cat, stack,
split and pad.

Forward against NumPy, float64 gradcheck over all of an op's inputs on hypothesis-generated
shapes (tests/op_checks.py has the shared helpers).
"""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from op_checks import close, fixture_ok, leaf, seeds

import minidl as md
import minidl.functional as F

# ---- shape ops --------------------------------------------------------------------------

@fixture_ok
@given(shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3), seed=seeds,
       data=st.data())
def test_reshape_and_permute(device, shape, seed, data):
    x = np.random.default_rng(seed).standard_normal(shape)
    tx = leaf(x, device)
    close(tx.reshape(-1), x.reshape(-1))
    assert md.gradcheck(lambda t: t.reshape(-1), tx)
    perm = tuple(data.draw(st.permutations(range(len(shape)))))
    close(tx.permute(*perm) if perm else F.permute(tx, perm), np.transpose(x, perm))
    assert md.gradcheck(lambda t: F.transpose(t, perm), tx)
    close(tx.T, x.T)
    assert md.gradcheck(lambda t: t.T, tx)


@fixture_ok
@given(shape=hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=3), seed=seeds)
def test_flatten_squeeze_unsqueeze_swapaxes(device, shape, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    tx = leaf(x, device)
    close(F.flatten(tx, 1), x.reshape(shape[0], -1))
    close(F.flatten(tx), x.reshape(-1))  # torch.flatten's default: every dim
    close(tx.flatten(), x.reshape(-1))
    close(tx.flatten(0, -1), x.reshape(-1))
    close(F.unsqueeze(tx, -1), x[..., None])
    close(tx.unsqueeze(0).squeeze(0), x)
    close(F.squeeze(tx), np.squeeze(x))
    close(F.swapaxes(tx, 0, -1), np.swapaxes(x, 0, -1))
    assert md.gradcheck(lambda t: F.squeeze(F.swapaxes(F.flatten(F.unsqueeze(t, 1), 1), 0, 1)), tx)


def test_squeeze_and_reshape_errors(device):
    x = leaf(np.ones((2, 3)), device)
    # NumPy's axis= keeps NumPy's meaning and refuses a dim of size 3 ...
    with pytest.raises(ValueError, match=r"squeeze: axis 1 of shape \(2, 3\) has size 3"):
        F.squeeze(x, axis=1)
    # ... torch's dim (positional or dim=) leaves it as it is, as torch.squeeze does
    assert F.squeeze(x, 1).shape == (2, 3) and x.squeeze(dim=1).shape == (2, 3)
    with pytest.raises(ValueError, match=r"squeeze: dim=2 is out of range"):
        x.squeeze(2)
    with pytest.raises(ValueError, match=r"reshape.*\(2, 3\).*\(4, 2\)"):
        x.reshape(4, 2)
    with pytest.raises(ValueError, match="permute"):
        x.permute(0, 0)


# ---- torch's spellings: transpose(d0, d1), dim= on squeeze/unsqueeze, view(-1) -------------

def test_transpose_two_ints_swap_as_torch_and_a_tuple_permutes_as_numpy(device):
    x = np.random.default_rng(0).standard_normal((2, 3, 4))
    tx = leaf(x, device)
    close(tx.transpose(0, 1), np.swapaxes(x, 0, 1))        # torch: swap dims 0 and 1
    close(tx.transpose(-1, 0), np.swapaxes(x, -1, 0))
    close(F.transpose(tx, 2, 1), np.swapaxes(x, 2, 1))
    close(tx.transpose((2, 0, 1)), np.transpose(x, (2, 0, 1)))  # NumPy: one full permutation
    close(tx.transpose(2, 0, 1), np.transpose(x, (2, 0, 1)))
    close(tx.transpose(axes=[1, 2, 0]), np.transpose(x, (1, 2, 0)))
    close(tx.transpose(), np.transpose(x))
    close(tx.permute(2, 0, 1), np.transpose(x, (2, 0, 1)))
    m = leaf(x[0], device)
    close(m.transpose(0, 1), x[0].T)  # both readings of (0, 1) on 2-D: torch's wins
    close(m.transpose(1, 0), x[0].T)
    close(m.T, x[0].T)
    assert md.gradcheck(lambda t: t.transpose(0, 2), tx)
    with pytest.raises(ValueError, match=r"transpose: dim 3 is out of range.*\(2, 3, 4\)"):
        tx.transpose(0, 3)
    with pytest.raises(TypeError, match=r"transpose: one dim \(1\) given"):
        tx.transpose(1)


def test_squeeze_unsqueeze_view_torch_style(device):
    x = np.random.default_rng(1).standard_normal((2, 1, 3, 1))
    tx = leaf(x, device)
    assert tx.squeeze(1).shape == (2, 3, 1) and tx.squeeze(dim=-1).shape == (2, 1, 3)
    assert tx.squeeze((1, 3)).shape == (2, 3) and tx.squeeze(0).shape == (2, 1, 3, 1)
    assert tx.squeeze(axis=(1, 3)).shape == (2, 3)
    assert tx.unsqueeze(dim=0).shape == (1, 2, 1, 3, 1)
    assert tx.unsqueeze(-1).shape == (2, 1, 3, 1, 1)
    assert F.unsqueeze(tx, axis=2).shape == (2, 1, 1, 3, 1)
    with pytest.raises(ValueError, match="unsqueeze: dim=6 is out of range"):
        tx.unsqueeze(6)
    close(tx.view(-1), x.reshape(-1))
    close(tx.view(3, -1), x.reshape(3, -1))
    close(tx.reshape((-1, 3)), x.reshape(-1, 3))
    close(tx.view(md.Size([6, 1])), x.reshape(6, 1))
    with pytest.raises(ValueError, match=r"flatten: start_dim=4 is out of range"):
        tx.flatten(4)
    assert md.tensor(3.0).flatten().shape == (1,)  # a 0-d tensor flattens to 1-D, as torch


def test_cat_stack_split_chunk_take_dim(device):
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((2, 3))
    ta, tb = leaf(a, device), leaf(b, device)
    close(md.cat([ta, tb], dim=1), np.concatenate([a, b], axis=1))
    close(md.cat([ta, tb], 1), np.concatenate([a, b], axis=1))
    close(md.cat([ta, tb], axis=1), np.concatenate([a, b], axis=1))
    close(md.stack([ta, tb], dim=2), np.stack([a, b], axis=2))
    close(F.stack([ta, tb], -1), np.stack([a, b], axis=-1))
    pieces = md.split(ta, 2, dim=1)
    assert [p.shape for p in pieces] == [(2, 2), (2, 1)]
    close(pieces[1], a[:, 2:])
    assert [p.shape for p in ta.split([1, 2], dim=1)] == [(2, 1), (2, 2)]
    chunks = md.arange(10.0, device=device).chunk(4)
    assert [c.tolist() for c in chunks] == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9]]
    assert [c.shape for c in ta.chunk(3, dim=1)] == [(2, 1)] * 3
    assert md.gradcheck(lambda u, v: md.cat(md.split(md.stack([u, v], dim=1), 1, dim=1), 2),
                        ta, tb)
    assert md.gradcheck(lambda u: F.chunk(u, 2, dim=1)[0] * 2, ta)
    with pytest.raises(TypeError, match="cat: got both dim=0 and axis=1"):
        md.cat([ta, tb], dim=0, axis=1)
    with pytest.raises(ValueError, match="chunk: chunks must be a positive int"):
        ta.chunk(0)


# ---- indexing ---------------------------------------------------------------------------

INDICES = {
    "int": 1,
    "negative_int": -1,
    "reversed_slice": slice(None, None, -2),
    "ellipsis": (Ellipsis, 1),
    "newaxis": (None, 0, slice(1, 3)),
    "int_array_with_repeats": [0, 2, 0, 0],
    "2d_int_array": np.array([[0, 1], [1, 0], [2, 2]]),
    "paired_arrays": ([0, 2, 2], [1, 1, 3]),
    "slice_then_array": (slice(None), [3, 3, 0]),
    "array_slice_array": ([1, 1], slice(None), [0, 1]),
    "bool_mask": np.array([True, False, True]),
    "bool_mask_2d": np.array([[True, False, True, False]] * 3),
    "empty_array": np.array([], dtype=np.int64),
}


@pytest.mark.parametrize("name", list(INDICES))
def test_getitem(device, xp, name):
    x = np.random.default_rng(0).standard_normal((3, 4, 2))
    index = INDICES[name]
    dev_index = tuple(xp.asarray(i) if isinstance(i, (list, np.ndarray)) else i
                      for i in index) if isinstance(index, tuple) else \
        xp.asarray(index) if isinstance(index, (list, np.ndarray)) else index
    tx = leaf(x, device)
    y = tx[dev_index]
    close(y, x[index])
    assert md.gradcheck(lambda t: t[dev_index], tx)
    assert md.gradgradcheck(lambda t: t[dev_index] * t[dev_index], tx)
    # the gradient of sum(x[index] * g) scatter-adds g into x's shape
    g = np.random.default_rng(1).standard_normal(y.shape)
    y.backward(md.tensor(g, device=device))
    expected = np.zeros_like(x)
    np.add.at(expected, index, g)
    close(tx.grad, expected)


def test_getitem_repeated_indices_accumulate(device, xp):
    x = leaf([10.0, 20.0, 30.0], device)
    y = x[xp.asarray([0, 0, 2, 0])]
    close(y, [10, 10, 30, 10])
    y.backward(md.tensor([1.0, 2.0, 3.0, 4.0], device=device))
    close(x.grad, [7, 0, 3])  # 1 + 2 + 4 into slot 0, not the last write only
    x2 = leaf(np.zeros((2, 2)), device)
    x2[xp.asarray([1, 1]), xp.asarray([0, 0])].sum().backward()
    close(x2.grad, [[0, 0], [2, 0]])


@fixture_ok
@given(n=st.integers(1, 4), m=st.integers(1, 3), seed=seeds, data=st.data())
def test_getitem_random_int_arrays(device, xp, n, m, seed, data):
    # negative and repeated indices included
    index = np.array(data.draw(st.lists(st.integers(-n, n - 1), max_size=6)), dtype=np.int64)
    x = np.random.default_rng(seed).standard_normal((n, m))
    tx = leaf(x, device)
    close(tx[xp.asarray(index)], x[index])
    assert md.gradcheck(lambda t: t[xp.asarray(index)], tx)


def test_getitem_with_tensor_index(device):
    x = leaf(np.arange(6.0).reshape(3, 2), device)
    idx = md.tensor([2, 0, 2], device=device)
    close(x[idx], [[4, 5], [0, 1], [4, 5]])
    x[idx].sum().backward()
    close(x.grad, [[1, 1], [0, 0], [2, 2]])


def test_getitem_out_of_range(device):
    with pytest.raises(IndexError, match=r"getitem.*\(3,\)"):
        leaf([1.0, 2.0, 3.0], device)[5]



def test_getitem_gradgradcheck(device):
    a = leaf(np.random.default_rng(0).uniform(0.5, 2, (2, 3)), device)
    assert md.gradgradcheck(lambda u: u[[0, 0, 1], 1:] ** 2, a)

# ---- joins ------------------------------------------------------------------------------

@fixture_ok
@given(shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=3), seed=seeds,
       data=st.data())
def test_cat_and_stack(device, shape, seed, data):
    rng = np.random.default_rng(seed)
    axis = data.draw(st.integers(-len(shape), len(shape) - 1))
    sizes = data.draw(st.lists(st.integers(0, 3), min_size=1, max_size=3))
    parts = []
    for k in sizes:
        s = list(shape)
        s[axis] = k
        parts.append(rng.standard_normal(s))
    ts = [leaf(p, device) for p in parts]
    close(md.cat(ts, axis=axis), np.concatenate(parts, axis=axis))
    assert md.gradcheck(lambda *xs: md.cat(list(xs), axis=axis), *ts)
    same = [leaf(rng.standard_normal(shape), device) for _ in range(len(sizes))]
    new_axis = data.draw(st.integers(-len(shape) - 1, len(shape)))
    close(md.stack(same, axis=new_axis), np.stack([t.numpy() for t in same], axis=new_axis))
    assert md.gradcheck(lambda *xs: md.stack(list(xs), axis=new_axis), *same)


@fixture_ok
@given(n=st.integers(1, 6), k=st.integers(1, 4), seed=seeds)
def test_split(device, n, k, seed):
    x = np.random.default_rng(seed).standard_normal((2, n))
    tx = leaf(x, device)
    pieces = md.split(tx, k, axis=1)
    expected = np.split(x, list(range(k, n, k)), axis=1)
    assert len(pieces) == len(expected)
    for p, e in zip(pieces, expected):
        close(p, e)
    assert md.gradcheck(lambda t: md.split(t, k, axis=1), tx)
    sections = [1, n - 1] if n > 1 else [1]
    assert [p.shape for p in F.split(tx, sections, axis=-1)] == [(2, s) for s in sections]
    assert md.gradcheck(lambda t: F.split(t, sections, axis=-1), tx)


def test_split_unused_pieces_get_zero_gradient(device):
    x = leaf(np.arange(6.0), device)
    a, b, c = md.split(x, 2)
    (b * 3).sum().backward()  # a and c receive no gradient; the engine fills zeros
    close(x.grad, [0, 0, 3, 3, 0, 0])


def test_join_errors(device):
    a, b = leaf(np.ones((2, 3)), device), leaf(np.ones((4, 2)), device)
    with pytest.raises(ValueError, match=r"cat: shapes \[\(2, 3\), \(4, 2\)\]"):
        md.cat([a, b])
    with pytest.raises(ValueError, match=r"stack.*\(2, 3\).*\(4, 2\)"):
        md.stack([a, b])
    with pytest.raises(ValueError, match="cat: expected a non-empty"):
        md.cat([])
    with pytest.raises(ValueError, match=r"split: sizes \[1, 1\] do not add up to 3"):
        F.split(a, [1, 1], axis=1)
    with pytest.raises(ValueError, match=r"pad: \(-4, 0\) crops more than the 3 elements"):
        F.pad(a, (-4, 0))
    with pytest.raises(ValueError, match="pad"):
        F.pad(a, (1, 1, 1, 1, 1, 1))


@pytest.mark.parametrize("widths", [(1, 2), (0, 1, 2, 0), (1, 1, 0, 0, 2, 1), ()])
def test_pad(device, widths):
    x = np.random.default_rng(0).standard_normal((2, 3, 2))
    tx = leaf(x, device)
    np_widths = [(0, 0)] * 3
    for i in range(len(widths) // 2):  # torch order: last dim first
        np_widths[2 - i] = (widths[2 * i], widths[2 * i + 1])
    close(F.pad(tx, widths, value=-1.5), np.pad(x, np_widths, constant_values=-1.5))
    assert md.gradcheck(lambda t: F.pad(t, widths, value=-1.5), tx)
    assert md.gradgradcheck(lambda t: F.pad(t * t, widths), tx)


# ---- pad modes and cropping ---------------------------------------------------------------

_NP_MODE = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
            "circular": "wrap"}


def np_pad(x, pads, mode, value=0.0):
    """NumPy's np.pad on the positive widths (torch order: last dim first), then the
    negative widths cropped off."""
    widths = [(0, 0)] * x.ndim
    for i in range(len(pads) // 2):
        widths[x.ndim - 1 - i] = (pads[2 * i], pads[2 * i + 1])
    kw = {"constant_values": value} if mode == "constant" else {}
    y = np.pad(x, [(max(b, 0), max(a, 0)) for b, a in widths], mode=_NP_MODE[mode], **kw)
    return y[tuple(slice(max(-b, 0), y.shape[d] - max(-a, 0)) for d, (b, a) in enumerate(widths))]


@st.composite
def pad_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=4)))
    mode = draw(st.sampled_from(["constant", "reflect", "replicate", "circular"]))
    k = draw(st.integers(1, len(shape)))
    pads = []
    for n in reversed(shape[-k:]):                    # torch order: last dim first
        hi = {"reflect": n - 1, "circular": n}.get(mode, 3)
        for _ in range(2):
            pads.append(draw(st.integers(-(n // 2), hi)))
    return shape, tuple(pads), mode


@fixture_ok
@given(case=pad_case(), seed=seeds)
def test_pad_modes_and_crops_match_numpy(device, case, seed):
    shape, pads, mode = case
    x = np.random.default_rng(seed).standard_normal(shape)
    tx = leaf(x, device)
    value = 0.5 if mode == "constant" else None
    close(F.pad(tx, pads, mode=mode, value=value), np_pad(x, pads, mode, value or 0.0))
    assert md.gradcheck(lambda t: F.pad(t, pads, mode=mode, value=value), tx)


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad_modes_gradgradcheck_on_images(device, mode):
    x = leaf(np.random.default_rng(1).standard_normal((2, 2, 3, 4)), device)
    pads = (2, -1, 1, 2)
    assert md.gradgradcheck(lambda t: F.pad(t * t, pads, mode=mode), x)


def test_pad_gradients_accumulate_into_their_sources(device):
    # reflect (2, 2) of [a, b, c] is [c, b, a, b, c, b, a]: a and c appear twice, b three times
    x = leaf([1.0, 2.0, 3.0], device)
    F.pad(x, (2, 2), mode="reflect").sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2, 3, 2])
    x = leaf([1.0, 2.0, 3.0], device)
    F.pad(x, (3, 1), mode="replicate").sum().backward()   # a a a a b c c
    np.testing.assert_array_equal(x.grad.numpy(), [4, 1, 2])
    x = leaf([1.0, 2.0, 3.0], device)
    F.pad(x, (3, -1), mode="circular").sum().backward()   # a b c a b
    np.testing.assert_array_equal(x.grad.numpy(), [2, 2, 1])
    x = leaf([1.0, 2.0, 3.0], device)
    (F.pad(x, (-1, 1), value=7.0) * md.tensor(np.array([1.0, 10.0, 100.0]), device=device)
     ).sum().backward()                                    # b c 7: a is cropped
    np.testing.assert_array_equal(x.grad.numpy(), [0, 1, 10])


def test_pad_mode_errors(device):
    x = leaf(np.ones((1, 2, 3)), device)
    with pytest.raises(ValueError, match=r"pad: mode='reflect' needs each pad smaller than its "
                                         r"dim, got pad \(3, 0\) for input shape \(1, 2, 3\)"):
        F.pad(x, (3, 0), mode="reflect")
    with pytest.raises(ValueError, match=r"pad: mode='circular' needs each pad at most its dim"):
        F.pad(x, (0, 0, 0, 3), mode="circular")
    with pytest.raises(ValueError, match=r"pad: mode must be one of .*got 'edge'; NumPy's "
                                         r"'edge' is mode='replicate' here"):
        F.pad(x, (1, 1), mode="edge")
    with pytest.raises(ValueError, match=r"pad: mode='replicate' takes no value"):
        F.pad(x, (1, 1), mode="replicate", value=1.0)
    assert F.pad(x, (1, 1, 1, 1), mode="replicate").shape == (1, 4, 5)


def test_padding_layers(device):
    import minidl.nn as nn
    x = np.random.default_rng(2).standard_normal((2, 3, 4, 5))
    tx = leaf(x, device)
    cases = [(nn.ZeroPad2d(2), (2, 2, 2, 2), "constant", 0.0),
             (nn.ZeroPad2d((1, 0, -1, 2)), (1, 0, -1, 2), "constant", 0.0),
             (nn.ConstantPad2d((0, 1, 2, 0), 3.5), (0, 1, 2, 0), "constant", 3.5),
             (nn.ReflectionPad2d(3), (3, 3, 3, 3), "reflect", 0.0),
             (nn.ReplicationPad2d((1, 2, 3, 4)), (1, 2, 3, 4), "replicate", 0.0),
             (nn.CircularPad2d(1), (1, 1, 1, 1), "circular", 0.0)]
    for layer, pads, mode, value in cases:
        close(layer(tx), np_pad(x, pads, mode, value))
        assert md.gradcheck(layer, tx)
    assert repr(nn.ReflectionPad2d(3)) == "ReflectionPad2d((3, 3, 3, 3))"
    with pytest.raises(ValueError, match=r"ZeroPad2d: padding must be an int or 4 ints "
                                         r"\(left, right, top, bottom\), got \(1, 2\)"):
        nn.ZeroPad2d((1, 2))


def test_pad_third_positional_argument_is_mode():
    """torch's F.pad(x, pad, mode, value): a number in mode's place names value=."""
    x = md.tensor(np.ones((1, 2)))
    with pytest.raises(TypeError, match=r"the third argument is mode .* pass value=0.5"):
        F.pad(x, (1, 1), 0.5)
    np.testing.assert_array_equal(F.pad(x, (1, 1), value=0.5).numpy(), [[0.5, 1, 1, 0.5]])
