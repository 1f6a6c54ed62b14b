"""minidl.backend and tensor creation: devices (MINIDL_DEVICE, set_default_device, the
device() context), the error when 'cuda' is unavailable, seeding, dtype rules, moving tensors
between devices."""
from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np
import pytest

import minidl as md
import minidl.backend as B
import minidl.functional as F
from minidl.backend import cupy_available

HAS_GPU = cupy_available()
no_gpu_only = pytest.mark.skipif(HAS_GPU, reason="checks the error raised without a GPU")


@pytest.fixture(autouse=True)
def _restore_default_device():
    saved = B._global_default
    yield
    B._global_default = saved


def run_python(code, **env):
    """Run ``code`` in a fresh interpreter with extra environment variables."""
    full_env = {k: v for k, v in os.environ.items() if k != "MINIDL_DEVICE"}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True,
                          text=True, timeout=60)


# ---- default device -----------------------------------------------------------------------

def test_minidl_device_env_var():
    code = ("import sys, minidl as md; x = md.zeros(2); "
            "print(md.get_default_device(), x.device, 'cupy' in sys.modules)")
    unset = run_python(code)
    assert unset.returncode == 0, unset.stderr
    assert unset.stdout.split() == ["cpu", "cpu", "False"]  # cupy is not even imported
    cpu = run_python(code, MINIDL_DEVICE="cpu")
    assert cpu.stdout.split()[:2] == ["cpu", "cpu"]
    # a setting that cannot be used warns, names itself and the fix, and falls back to cpu
    bad = run_python(code, MINIDL_DEVICE="tpu")
    assert bad.returncode == 0, bad.stderr
    assert bad.stdout.split()[:2] == ["cpu", "cpu"]
    assert "MINIDL_DEVICE='tpu' is ignored" in bad.stderr and "unknown device 'tpu'" in bad.stderr
    cuda = run_python(code, MINIDL_DEVICE="cuda")
    if HAS_GPU:
        assert cuda.stdout.split()[:2] == ["cuda", "cuda"], cuda.stderr
    else:
        assert cuda.returncode == 0 and cuda.stdout.split()[:2] == ["cpu", "cpu"]
        assert "MINIDL_DEVICE='cuda' is ignored" in cuda.stderr
        assert "CuPy" in cuda.stderr or "GPU" in cuda.stderr
    # asked for in code, the same device is an error
    explicit = run_python("import minidl as md; md.set_default_device('tpu')")
    assert explicit.returncode != 0 and "unknown device 'tpu'" in explicit.stderr


def test_set_default_device_and_context(device):
    md.set_default_device(device)
    assert md.get_default_device() == device
    assert md.zeros(2).device == md.randn(2).device == md.tensor([1.0]).device == device
    other = "cpu"
    with md.device(other) as name:
        assert name == other and md.get_default_device() == other
        assert md.ones(3).device == other
        # a NumPy array goes to the default device too, so scripts need no change
        assert md.tensor(np.ones(3)).device == other
        with md.device(device):
            assert md.arange(3).device == device
        assert md.get_default_device() == other
    assert md.get_default_device() == device
    md.set_default_device("cpu")
    assert md.get_default_device() == "cpu"


@pytest.mark.gpu
def test_default_device_cuda_moves_numpy_data():
    with md.device("cuda"):
        assert md.tensor(np.ones(3)).device == "cuda"
        assert md.tensor([1, 2]).device == "cuda"
        x = md.randn(4, 3, requires_grad=True)
        loss = F.cross_entropy(x, md.tensor(np.array([0, 1, 2, 0])))  # labels from NumPy
        loss.backward()
        assert x.grad.device == "cuda"


@pytest.mark.gpu
def test_device_context_is_thread_local():
    entered, done = threading.Event(), threading.Event()

    def worker():
        with md.device("cuda"):
            entered.set()
            done.wait(5)

    t = threading.Thread(target=worker)
    t.start()
    entered.wait(5)
    assert md.get_default_device() == "cpu" and md.zeros(1).device == "cpu"
    done.set()
    t.join(5)


def test_unknown_device_errors():
    x = md.tensor([1.0])
    for call in (lambda: md.set_default_device("tpu"), lambda: md.device("tpu").__enter__(),
                 lambda: md.zeros(2, device="tpu"), lambda: md.tensor([1.0], device="tpu"),
                 lambda: x.to("tpu"), lambda: B.xp_for("gpu")):
        with pytest.raises(ValueError, match=r"unknown device '(tpu|gpu)'.*'cpu', 'cuda'"):
            call()
    assert md.get_default_device() == "cpu"


@no_gpu_only
def test_cuda_without_gpu_is_a_clear_error():
    x = md.tensor([1.0], requires_grad=True)
    for call in (lambda: md.set_default_device("cuda"), lambda: md.device("cuda").__enter__(),
                 lambda: md.zeros(2, device="cuda"), lambda: md.tensor([1.0], device="cuda"),
                 lambda: x.to("cuda"), lambda: x.cuda()):
        with pytest.raises(RuntimeError, match=r"device 'cuda'.*(CuPy|GPU)") as info:
            call()
        if B._import_cupy() is None:
            assert "pip install" in str(info.value)
    assert md.get_default_device() == "cpu"  # a failed switch changes nothing


# ---- seeding --------------------------------------------------------------------------------

def test_manual_seed_reproduces_random_tensors(device):
    def draw():
        return (md.randn(3, 4, device=device).numpy(), md.rand(5, device=device).numpy(),
                F.dropout(md.ones(50, device=device), 0.5).numpy(),
                md.randn(2, dtype="float64", device=device).numpy())

    md.manual_seed(123)
    first = draw()
    md.manual_seed(123)
    second = draw()
    md.manual_seed(124)
    third = draw()
    for a, b, c in zip(first, second, third):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)


def test_random_distributions_and_dtypes(device):
    md.manual_seed(0)
    n = md.randn(20_000, device=device)
    u = md.rand(20_000, device=device, dtype="float64")
    assert n.dtype == np.float32 and u.dtype == np.float64
    assert abs(float(n.numpy().mean())) < 0.05 and abs(float(n.numpy().std()) - 1) < 0.05
    assert 0 <= u.numpy().min() and u.numpy().max() < 1 and abs(u.numpy().mean() - 0.5) < 0.02
    assert md.randn(2, 3, requires_grad=True, device=device).requires_grad
    assert md.randn((2, 3), device=device).shape == (2, 3)


def test_rng_state_round_trip():
    state = B.get_rng_state()
    a = md.randn(5).numpy()
    B.set_rng_state(state)
    np.testing.assert_array_equal(md.randn(5).numpy(), a)


# ---- tensor() dtype rules and creation helpers -------------------------------------------------

@pytest.mark.parametrize("data, dtype", [
    (np.ones(2, np.float64), np.float64),      # a float64 NumPy array stays float64
    (np.ones(2, np.float32), np.float32),
    (np.ones(2, np.float16), np.float16),
    (np.float64(1.5), np.float64),             # so does a NumPy float64 scalar
    (1.5, np.float32),                         # Python floats become float32
    ([1.0, 2.0], np.float32),
    ([[1, 2.5]], np.float32),
    (3, np.int64),                             # Python ints stay integers (int64)
    ([1, 2, 3], np.int64),
    (np.array([1, 2], np.int32), np.int32),
    (True, np.bool_),
])
def test_tensor_dtype_rules(device, data, dtype):
    t = md.tensor(data, device=device)
    assert t.dtype == dtype and t.device == device
    np.testing.assert_array_equal(t.numpy(), np.asarray(data))
    assert md.tensor(data, dtype="float64", device=device).dtype == np.float64


def test_tensor_from_tensor_and_requires_grad(device):
    x = md.tensor([1.0, 2.0], device=device, requires_grad=True)
    y = md.tensor(x)
    assert not y.requires_grad and y.creator is None and y.dtype == np.float32
    assert md.tensor(x, dtype="float64").dtype == np.float64
    assert md.tensor([1.0], requires_grad=True).requires_grad


def test_creation_helpers(device):
    assert md.zeros(2, 3, device=device).shape == (2, 3)
    assert md.zeros((2, 3), device=device).dtype == np.float32
    np.testing.assert_array_equal(md.ones(2, dtype="int64", device=device).numpy(), [1, 1])
    np.testing.assert_array_equal(md.full((2,), 7.0, device=device).numpy(), [7, 7])
    assert md.arange(4, device=device).dtype == np.int64
    np.testing.assert_allclose(md.arange(0, 1, 0.25, device=device).numpy(), [0, .25, .5, .75])
    assert md.arange(0.0, 2.0, device=device).dtype == np.float32
    x = md.randn(2, 2, dtype="float64", device=device)
    z = md.zeros_like(x, requires_grad=True)
    assert z.dtype == np.float64 and z.device == device and z.requires_grad
    assert (md.ones_like(x).numpy() == 1).all()


# ---- moving data between devices ----------------------------------------------------------

def test_array_module_helpers():
    a = np.ones(3)
    assert B.get_array_module(a) is np and B.get_array_module(md.tensor(a)) is np
    assert B.get_array_module(1.0, [1, 2]) is np
    assert B.xp_for("cpu") is np and B.device_of(a) == "cpu"
    assert B.to_device(a, "cpu") is a and B.to_numpy(a) is a
    target = np.zeros(3)
    B.scatter_add(target, np.array([0, 0, 2]), np.array([1.0, 2.0, 3.0]))
    np.testing.assert_array_equal(target, [3, 0, 3])
    x = md.tensor([1.0])
    assert x.to("cpu") is x and x.cpu() is x
    assert isinstance(B.blas_info(), str)


@pytest.mark.gpu
def test_to_round_trip_keeps_values_dtype_and_gradient():
    import cupy  # noqa: PLC0415 - only on GPU machines

    x = md.tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    g = x.to("cuda")
    assert g.device == "cuda" and isinstance(g.data, cupy.ndarray) and g.dtype == np.float64
    assert B.get_array_module(g) is cupy
    back = g.to("cpu")
    assert back.device == "cpu" and isinstance(back.data, np.ndarray)
    np.testing.assert_array_equal(back.numpy(), x.numpy())
    (back * back).sum().backward()  # the gradient travels back across both copies
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())
    c = md.tensor(cupy.ones(2))
    assert c.device == "cuda"  # a CuPy array stays on the GPU
    assert md.tensor(c.data, device="cpu").device == "cpu"
    assert md.gradcheck(lambda t: (t.to("cuda") * 2).to("cpu"), x)


def test_host_allocator_tuning_is_applied_on_glibc_and_can_be_turned_off():
    import subprocess
    import sys

    code = "import minidl.backend as b; print(b.HOST_ALLOCATOR_TUNED)"
    try:
        glibc = sys.platform.startswith("linux") and bool(os.confstr("CS_GNU_LIBC_VERSION"))
    except (ValueError, OSError):          # not glibc
        glibc = False
    for value, expected in (("1", glibc), ("0", False)):
        env = dict(os.environ, MINIDL_MALLOC=value)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == str(expected)
