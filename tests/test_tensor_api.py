"""The PyTorch tensor API (minidl/functional/tensor_methods.py, factories.py, md.save/md.load):
each torch idiom does what torch does, checked against NumPy; the silent differences of old
(``x.max(1)``, biased ``x.var()``, float64 input to a float32 layer) each have a test here.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest
from op_checks import close, leaf

import minidl as md
import minidl.functional as F
from minidl import nn

# ---- sizes ---------------------------------------------------------------------------------

def test_size_numel_dim(device):
    x = md.zeros(2, 3, 4, device=device)
    assert x.size() == (2, 3, 4) and isinstance(x.size(), md.Size)
    assert x.size(0) == 2 and x.size(-1) == 4 and x.size(1) == 3
    assert x.numel() == 24 and x.dim() == 3 and x.size().numel() == 24
    assert x.size == 24  # NumPy's attribute: the element count
    assert repr(x.size()) == "Size([2, 3, 4])"
    assert md.tensor(5.0).size() == () and md.tensor(5.0).numel() == 1
    with pytest.raises(IndexError, match=r"size: dim 3 is out of range.*\(2, 3, 4\)"):
        x.size(3)


def test_python_scalars_from_one_element_tensors(device):
    t = md.tensor([[2.75]], device=device)
    assert float(t) == 2.75 and int(t) == 2 and bool(t) is True
    assert int(md.tensor(-3.9, device=device)) == -3  # truncation, as torch and Python
    assert bool(md.tensor([0.0], device=device)) is False
    with pytest.raises(ValueError, match=r"float\(tensor\): only one-element.*\(2,\)"):
        float(md.tensor([1.0, 2.0], device=device))
    with pytest.raises(ValueError, match=r"int\(tensor\): only one-element"):
        int(md.zeros(0, device=device))
    with pytest.raises(ValueError, match="ambiguous"):
        bool(md.tensor([1.0, 2.0], device=device))
    k = md.tensor(2, device=device)
    assert list(range(k)) == [0, 1] and "abc"[k] == "c"
    with pytest.raises(TypeError, match="only integer tensors of a single element"):
        "abc"[md.tensor(1.0, device=device)]


def test_numpy_interop_is_torch_like(device):
    x = md.tensor([1.0, 2.0])
    assert np.asarray(x) is x.data  # shares memory, as torch's tensor.__array__
    with pytest.raises(TypeError, match=r"requires grad.*x.detach\(\).numpy\(\)"):
        np.asarray(md.tensor([1.0], requires_grad=True))
    assert isinstance(np.ones(2) * x, md.Tensor)  # Tensor's operators still win
    if device == "cuda":
        with pytest.raises(TypeError, match=r"'cuda' tensor.*x\.cpu\(\)"):
            np.asarray(md.ones(2, device=device))


# ---- dtype methods and to() --------------------------------------------------------------

def test_dtype_methods_and_to(device):
    x = leaf([1.5, -2.5], device)
    for method, dtype in (("float", np.float32), ("double", np.float64), ("half", np.float16),
                          ("int", np.int32), ("long", np.int64), ("bool", np.bool_)):
        y = getattr(x, method)()
        assert y.dtype == dtype
        np.testing.assert_array_equal(y.numpy(), np.array([1.5, -2.5]).astype(dtype))
    assert x.to(md.float32).dtype == np.float32 and x.to(dtype=md.int64).dtype == np.int64
    assert x.to(device).device == device and x.to(device, md.float16).dtype == np.float16
    assert x.to(md.zeros(1, dtype=md.float32)).dtype == np.float32
    assert x.to("float32").dtype == np.float32
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        x.to("tpu")
    assert md.gradcheck(lambda t: t.to(md.float64) * 2, x)
    assert x.is_floating_point() and not x.long().is_floating_point()


def test_dtype_names_everywhere(device):
    assert md.float32 == np.float32 and md.float64 == np.float64 and md.int64 == np.int64
    assert md.float is md.float32 and md.double is md.float64 and md.long is md.int64
    assert md.half is md.float16 and md.int is md.int32 and md.bool is md.bool_
    assert md.zeros(2, dtype=md.int64, device=device).dtype == np.int64
    assert md.tensor([1, 2], dtype=md.float64, device=device).dtype == np.float64
    assert nn.Linear(2, 2, dtype=md.float64).weight.dtype == np.float64
    assert md.ones(2).dtype == md.float32
    # the torch aliases of builtins are not in __all__: `from minidl import *` keeps float
    assert "float" not in md.__all__ and "bool" not in md.__all__ and "int" not in md.__all__


# ---- methods torch has -------------------------------------------------------------------

def test_t_mm_clone_contiguous(device):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    ta, tb = leaf(a, device), leaf(b, device)
    close(ta.t(), a.T)
    close(ta.mm(tb), a @ b)
    close(F.mm(ta, tb), a @ b)
    assert md.gradcheck(lambda u, v: u.t().t().mm(v), ta, tb)
    v = leaf([1.0, 2.0], device)
    assert v.t() is v  # a 1-D tensor is its own transpose, as in torch
    with pytest.raises(ValueError, match=r"t: .*\(2, 3, 4\).*transpose"):
        md.zeros(2, 3, 4).t()
    with pytest.raises(ValueError, match=r"mm: .*\(2, 3, 4\).*matmul"):
        F.mm(md.zeros(2, 3, 4), md.zeros(4, 2))
    c = ta.clone()
    close(c, a)
    c.data[0, 0] = 99.0  # its own memory
    assert ta.data[0, 0] == a[0, 0]
    assert md.gradcheck(lambda u: u.clone() * 3, ta)
    t = ta.t()
    assert not t.is_contiguous() and t.contiguous().is_contiguous()
    assert ta.contiguous() is ta
    close(t.contiguous(), a.T)
    assert md.gradcheck(lambda u: u.t().contiguous(), ta)


def test_activation_methods(device):
    x = np.random.default_rng(1).standard_normal((3, 4))
    tx = leaf(x, device)
    close(tx.relu(), np.maximum(x, 0))
    close(tx.sigmoid(), 1 / (1 + np.exp(-x)))
    close(tx.tanh(), np.tanh(x))
    sm = np.exp(x) / np.exp(x).sum(axis=0, keepdims=True)
    close(tx.softmax(0), sm)
    close(tx.softmax(dim=0), sm)
    close(F.softmax(tx, dim=0), sm)
    close(F.softmax(tx, axis=0), sm)  # NumPy's name, today's spelling
    close(F.softmax(tx), np.exp(x) / np.exp(x).sum(axis=1, keepdims=True))  # last dim
    close(tx.log_softmax(dim=1), np.log(np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)))
    close(F.log_softmax(tx, 0), np.log(sm))
    assert md.gradcheck(lambda t: F.log_softmax(t, dim=0), tx)
    with pytest.raises(TypeError, match="got both dim=0 and axis=1"):
        F.softmax(tx, dim=0, axis=1)
    with pytest.raises(ValueError, match="softmax: axis 2 is out of range"):
        tx.softmax(2)


def test_softmax_and_flatten_modules(device):
    x = np.random.default_rng(2).standard_normal((2, 3, 4))
    tx = leaf(x, device)
    close(nn.Softmax(dim=1)(tx), np.exp(x) / np.exp(x).sum(axis=1, keepdims=True))
    close(nn.LogSoftmax(dim=1)(tx), np.log(np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)))
    close(nn.Softmax(axis=0)(tx), np.exp(x) / np.exp(x).sum(axis=0, keepdims=True))
    assert repr(nn.Softmax(dim=1)) == "Softmax(dim=1)" and nn.Softmax().dim == -1
    image = md.zeros(2, 3, 4, 5, device=device)
    assert nn.Flatten()(image).shape == (2, 60)
    assert nn.Flatten(0)(image).shape == (120,)
    assert nn.Flatten(start_dim=2)(image).shape == (2, 3, 20)
    assert nn.Flatten(1, 2)(image).shape == (2, 12, 5)
    with pytest.raises(ValueError, match=r"Flatten\(start_dim=5, end_dim=-1\): start_dim=5 "
                                         r"is out of range for a 4-D"):
        nn.Flatten(start_dim=5)(image)
    with pytest.raises(ValueError, match="Flatten.*start_dim=3 comes after end_dim=1"):
        nn.Flatten(3, 1)(image)
    with pytest.raises(TypeError, match="Flatten: start_dim must be an int"):
        nn.Flatten(start_dim=1.5)


def test_relu_inplace_flag_is_accepted_and_keeps_the_values(device):
    x = leaf([-1.0, 2.0], device)
    for y in (nn.ReLU(inplace=True)(x), F.relu(x, inplace=True)):
        close(y, [0.0, 2.0])
    close(nn.LeakyReLU(0.1, inplace=True)(x), [-0.1, 2.0])
    close(nn.ELU(inplace=True)(x), [np.expm1(-1.0), 2.0])
    assert repr(nn.ReLU(inplace=True)) == "ReLU(inplace=True)"


def test_masked_fill(device):
    x = np.random.default_rng(3).standard_normal((3, 4))
    tx = leaf(x, device)
    mask = tx > 0
    close(tx.masked_fill(mask, -5.0), np.where(x > 0, -5.0, x))
    close(tx.masked_fill(md.tensor([True, False, True, False], device=device), 0.0),
          np.where([True, False, True, False], 0.0, x))
    assert md.gradcheck(lambda t: t.masked_fill(mask, 1.0) * t, tx)
    with pytest.raises(TypeError, match="masked_fill: mask must be a bool"):
        tx.masked_fill(md.tensor([1, 0, 1, 0], device=device), 0.0)


def test_max_with_a_tensor_is_elementwise(device):
    a, b = leaf([1.0, 5.0], device), leaf([3.0, 2.0], device)
    close(a.max(b), [3.0, 5.0])
    close(a.min(b), [1.0, 2.0])
    close(F.max(a, b), [3.0, 5.0])  # torch.max(a, b)
    close(md.min(a, b), [1.0, 2.0])
    assert md.gradcheck(lambda u, v: F.max(u, v) * F.min(u, v), a, b)


# ---- dtypes: layers refuse what torch refuses ---------------------------------------------

@pytest.mark.parametrize("make, shape", [
    (lambda: nn.Linear(3, 2), (4, 3)),
    (lambda: nn.Conv2d(1, 2, 3), (1, 1, 5, 5)),
    (lambda: nn.ConvTranspose2d(1, 2, 3), (1, 1, 5, 5)),
    (lambda: nn.BatchNorm2d(1), (2, 1, 3, 3)),
    (lambda: nn.BatchNorm1d(3, affine=False), (4, 3)),
])
def test_float32_layer_refuses_float64_and_integer_input(device, make, shape):
    layer = make().to(device)
    name = type(layer).__name__
    x64 = md.tensor(np.ones(shape), device=device)  # NumPy's float64 stays float64
    with pytest.raises(TypeError, match=rf"{name}\(.*input dtype float64 does not match the "
                                        r"layer's float32 .*x\.float\(\).*model\.double\(\)"):
        layer(x64)
    with pytest.raises(TypeError, match=rf"{name}\(.*input dtype int64 .*x\.float\(\)"):
        layer(md.ones(shape, dtype=md.int64, device=device))
    assert layer(x64.float()).dtype == np.float32  # the fixes the message names both work
    assert layer.double()(x64).dtype == np.float64


def test_layer_given_a_list_names_md_tensor():
    with pytest.raises(TypeError, match=r"Linear\(.*\): expected a Tensor input, got list; "
                                        r"wrap the data with md\.tensor\(\.\.\.\)"):
        nn.Linear(3, 2)([[1.0, 2.0, 3.0]])
    with pytest.raises(TypeError, match=r"Conv2d.*got ndarray.*md\.tensor"):
        nn.Conv2d(1, 1, 3)(np.zeros((1, 1, 4, 4), np.float32))


# ---- unknown keywords ---------------------------------------------------------------------

def test_unknown_keywords_name_the_right_one():
    x = md.ones(2, 3)
    with pytest.raises(TypeError, match=r"^sum: axes= -> use dim= \(torch\) or axis= "):
        x.sum(axes=0)
    with pytest.raises(TypeError, match=r"mean: keep_dims= -> use keepdim="):
        F.mean(x, keep_dims=True)
    with pytest.raises(TypeError, match=r"softmax: out= -> use the return value"):
        F.softmax(x, dim=1, out=x)
    with pytest.raises(TypeError, match=r"sum: unknown keyword foo=; sum takes x=, dim=, "
                                        r"keepdim=, axis=, keepdims=, dtype="):
        x.sum(foo=1)
    with pytest.raises(TypeError, match=r"cat: dims= -> use dim=.*; unknown keyword foo=; "
                                        r"cat takes tensors=, dim=, axis="):
        md.cat([x, x], foo=0, dims=0)
    with pytest.raises(TypeError, match=r"clip: unknown keyword lo=; clip takes x=, min=, max="):
        x.clamp(lo=0)
    with pytest.raises(TypeError, match=r"relu: unknown keyword negative_slope="):
        F.relu(x, negative_slope=0.1)
    # the torch names that minidl used to spell differently now work
    close(F.linear(x, weight=md.ones(4, 3), bias=md.zeros(4)), np.full((2, 4), 3.0))
    assert md.arange(0, end=3).tolist() == [0, 1, 2] and md.arange(0, stop=3).tolist() == [0, 1, 2]
    assert md.full((2,), fill_value=7).tolist() == [7, 7]


# ---- md.save / md.load ---------------------------------------------------------------------

def test_save_load_state_dicts_and_optimizer_state(tmp_path, device):
    from minidl import optim

    md.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).to(device)
    opt = optim.Adam(model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        model(md.randn(5, 3, device=device)).sum().backward()
        opt.step()
    path = tmp_path / "ckpt.pt"
    md.save({"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": 2,
             "history": [0.5, 0.25]}, path)
    ckpt = md.load(path, map_location=device)
    assert ckpt["epoch"] == 2 and ckpt["history"] == [0.5, 0.25]
    weight = ckpt["model"]["0.weight"]
    assert isinstance(weight, md.Tensor) and weight.device == device  # tensors, as torch.load
    np.testing.assert_array_equal(weight.numpy(), model[0].weight.numpy())

    md.manual_seed(1)
    fresh = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1)).to(device)
    fresh_opt = optim.Adam(fresh.parameters(), lr=0.01)
    fresh.load_state_dict(ckpt["model"])
    fresh_opt.load_state_dict(ckpt["optimizer"])
    for (k, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        np.testing.assert_array_equal(np.asarray(b.numpy()), np.asarray(a.numpy()), err_msg=k)
    x = md.randn(5, 3, device=device)
    for m, o in ((model, opt), (fresh, fresh_opt)):  # one more identical step on each
        o.zero_grad()
        m(x).sum().backward()
        o.step()
    np.testing.assert_array_equal(fresh[0].weight.numpy(), model[0].weight.numpy())


def test_save_load_model_shortcut_and_atomic_write(tmp_path):
    model = nn.Linear(3, 2)
    path = tmp_path / "m.pt"
    md.save(model.state_dict(), path)
    before = path.read_bytes()
    with pytest.raises(TypeError, match="save: cannot store a object"):
        md.save({"bad": object()}, path)
    assert path.read_bytes() == before  # the failed save left the old checkpoint whole
    other = nn.Linear(3, 2)
    other.load_state_dict(md.load(path))
    np.testing.assert_array_equal(other.weight.numpy(), model.weight.numpy())
    assert [p.name for p in tmp_path.iterdir()] == ["m.pt"]  # no temporary file left


def test_load_refuses_torch_pickles_with_the_conversion(tmp_path):
    zipped = tmp_path / "torch_new.pt"
    with zipfile.ZipFile(zipped, "w") as z:  # torch.save's zip layout
        z.writestr("torch_new/data.pkl", b"\x80\x02}q\x00.")
        z.writestr("torch_new/version", b"3\n")
    legacy = tmp_path / "torch_old.pt"
    legacy.write_bytes(b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19.")  # a raw pickle
    for path in (zipped, legacy):
        with pytest.raises(ValueError, match=r"written by torch\.save.*np\.savez"):
            md.load(path)
    with pytest.raises(FileNotFoundError):
        md.load(os.fspath(tmp_path / "missing.pt"))


# ---- torch's top-level ops and the remaining methods ----------------------------------------

def test_torch_top_level_functions_and_arithmetic_methods(device):
    a = np.random.default_rng(4).standard_normal((2, 3))
    x = leaf(a, device)
    close(md.sum(x, dim=1), a.sum(axis=1))
    values, indices = md.max(x, 1)
    close(values, a.max(axis=1))
    np.testing.assert_array_equal(indices.numpy(), a.argmax(axis=1))
    close(md.exp(x), np.exp(a))
    close(md.softmax(x, dim=1), np.exp(a) / np.exp(a).sum(axis=1, keepdims=True))
    close(md.where(x > 0, x, md.zeros_like(x)), np.where(a > 0, a, 0))
    with pytest.raises(AttributeError, match="no attribute 'no_such_op'"):
        md.no_such_op  # noqa: B018
    assert "sum" not in vars(md)  # resolved on use: the builtins stay unshadowed in minidl
    close(x.add(1.0).mul(2.0).sub(x).div(2.0).pow(2.0).neg(), -((a + 2) / 2) ** 2)
    for name, ref in (("eq", a == a[0]), ("ne", a != a[0]), ("lt", a < a[0]),
                      ("le", a <= a[0]), ("gt", a > a[0]), ("ge", a >= a[0])):
        np.testing.assert_array_equal(getattr(x, name)(x[0]).numpy(), ref)
    assert x.type_as(md.zeros(1, dtype=md.float32)).dtype == np.float32


def test_repeat_is_numpy_tile(device):
    a = np.arange(6.0).reshape(2, 3)
    x = leaf(a, device)
    for reps in ((2, 1), (1, 3), (2, 2, 2), (3, 1, 1)):
        close(x.repeat(*reps), np.tile(a, reps))
    close(x.repeat((2, 2)), np.tile(a, (2, 2)))
    assert md.gradcheck(lambda t: t.repeat(2, 1, 3), x)
    with pytest.raises(ValueError, match=r"repeat: needs one non-negative int per dim"):
        x.repeat(2)


def test_new_factories_keep_dtype_and_device(device):
    x = md.zeros(2, dtype=md.float64, device=device)
    for y in (x.new_zeros(2, 3), x.new_ones((2, 3)), x.new_empty(2, 3), x.new_full((2, 3), 4.0)):
        assert y.shape == (2, 3) and y.dtype == np.float64 and y.device == device
    np.testing.assert_array_equal(x.new_full((2,), 4.0).numpy(), [4.0, 4.0])
    np.testing.assert_array_equal(x.new_ones(2).numpy(), [1.0, 1.0])
    assert x.new_tensor([1, 2]).dtype == np.float64  # x's dtype, as torch's new_tensor
    assert x.new_zeros(3, dtype=md.int64).dtype == np.int64


def test_expand_and_expand_as(device):
    a = np.array([[1.0], [2.0]])
    x = leaf(a, device)
    close(x.expand(-1, 3), np.broadcast_to(a, (2, 3)))
    close(x.expand(4, 2, 3), np.broadcast_to(a, (4, 2, 3)))
    close(x.expand((2, 2)), np.broadcast_to(a, (2, 2)))
    close(x.expand_as(md.zeros(2, 5, device=device)), np.broadcast_to(a, (2, 5)))
    assert md.gradcheck(lambda t: t.expand(-1, 3) * 2, x)


def test_torch_keywords_of_backward_dropout_and_concat():
    """``backward(gradient=)``, ``Dropout(inplace=)`` and ``Concat(dim=)`` as torch spells them."""
    x = md.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).backward(gradient=md.tensor([1.0, 10.0]))
    np.testing.assert_array_equal(x.grad.numpy(), [3.0, 30.0])
    with pytest.raises(TypeError, match="as grad= or as gradient=, not both"):
        (x * 3).backward(md.ones(2), gradient=md.ones(2))
    a = md.tensor(np.arange(6.0).reshape(2, 3))
    drop = nn.Dropout(0.5, inplace=True).eval()
    np.testing.assert_array_equal(drop(a).numpy(), a.numpy())
    np.testing.assert_array_equal(F.dropout(a, 0.5, False, inplace=True).numpy(), a.numpy())
    joined = nn.Concat(dim=0)(a, a)
    assert joined.shape == (4, 3)


def test_integer_true_division_gives_the_default_float():
    """torch's true division: uint8 / 255, int / int and bool / int are float32, so the result
    feeds a float32 layer (float64 here would be refused by the layer)."""
    img = md.tensor(np.array([[0, 51, 255]], dtype=np.uint8))
    scaled = img / 255
    assert scaled.dtype == np.float32
    np.testing.assert_allclose(scaled.numpy(), [[0.0, 0.2, 1.0]], rtol=1e-6)
    assert (2 / md.tensor(np.array([4, 8]))).dtype == np.float32
    assert (md.tensor(np.array([True, False])) / md.tensor(np.array([2, 4]))).dtype == np.float32
    assert nn.Linear(3, 1)(scaled).dtype == np.float32
