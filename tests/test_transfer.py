"""Weight import (load_torch_state_dict), torchvision parity, and transfer-learning helpers."""
from __future__ import annotations

import importlib
import json
import struct
import sys
import time

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl import models as mm
from minidl.io.torch_weights import TORCH_CONVERSION_HINT
from minidl.models import (
    extract_features,
    freeze,
    load_torch_state_dict,
    param_groups,
    replace_head,
    skip_init,
    unfreeze,
)
from minidl.nn import StateDictError


def _numpy_sd(model):
    return {k: v.numpy().copy() for k, v in model.state_dict().items()}


def _perturbed(sd, seed=1):
    rng = np.random.default_rng(seed)
    return {k: (v + rng.standard_normal(v.shape).astype(v.dtype)
                if v.dtype.kind == "f" else v) for k, v in sd.items()}


def _write_safetensors(path, sd):
    """A minimal safetensors writer (the format: u64 header size, JSON header, raw bytes)."""
    codes = {np.dtype(np.float32): "F32", np.dtype(np.float64): "F64",
             np.dtype(np.int64): "I64"}
    header, blobs, offset = {}, [], 0
    for k, v in sd.items():
        b = np.ascontiguousarray(v).astype(v.dtype.newbyteorder("<")).tobytes()
        header[k] = {"dtype": codes[v.dtype], "shape": list(v.shape),
                     "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ---- load_torch_state_dict -----------------------------------------------------------------

def test_load_from_dict_npz_and_safetensors(tmp_path):
    src = mm.cifar_resnet(20)
    sd = _perturbed(_numpy_sd(src))
    np.savez(tmp_path / "w.npz", **sd)
    _write_safetensors(tmp_path / "w.safetensors", sd)
    for source in (sd, tmp_path / "w.npz", str(tmp_path / "w.safetensors")):
        dst = mm.cifar_resnet(20)
        missing, unexpected = load_torch_state_dict(dst, source)
        assert missing == [] and unexpected == []
        for k, v in dst.state_dict().items():
            np.testing.assert_array_equal(v.numpy(), sd[k], err_msg=k)


def test_safetensors_written_by_the_package_loads(tmp_path):
    st = pytest.importorskip("safetensors.numpy")
    src = mm.lenet5()
    sd = _perturbed(_numpy_sd(src))
    st.save_file(sd, str(tmp_path / "w.safetensors"))
    dst = mm.lenet5()
    load_torch_state_dict(dst, tmp_path / "w.safetensors")
    np.testing.assert_array_equal(dst.classifier.weight.numpy(), sd["classifier.weight"])


def test_shape_mismatch_changes_nothing_and_names_every_problem():
    model = mm.cifar_resnet(20)
    before = _numpy_sd(model)
    bad = _perturbed(before)
    bad["fc.weight"] = np.zeros((11, 64), np.float32)
    bad["stem.0.weight"] = np.zeros((16, 1, 3, 3), np.float32)
    with pytest.raises(StateDictError) as e:
        load_torch_state_dict(model, bad)
    msg = str(e.value)
    assert "fc.weight" in msg and "(11, 64)" in msg and "(10, 64)" in msg
    assert "stem.0.weight" in msg and "nothing was changed" in msg
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k], err_msg=k)


def test_missing_and_unexpected_keys_change_nothing():
    model = mm.lenet5()
    before = _numpy_sd(model)
    sd = _perturbed(before)
    del sd["classifier.bias"]
    sd["extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(StateDictError, match="classifier.bias"):
        load_torch_state_dict(model, sd)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), before[k])
    missing, unexpected = load_torch_state_dict(model, sd, strict=False)
    assert missing == ["classifier.bias"] and unexpected == ["extra.weight"]


def test_key_normalisation_prefix_batches_tracked_old_densenet_and_rename():
    model = mm.densenet_cifar(depth=10, growth_rate=4, num_classes=3)
    sd = _perturbed(_numpy_sd(model))
    # DataParallel prefix + torchvision's old 'norm.1' spelling of DenseNet layers
    old = {}
    for k, v in sd.items():
        k2 = k.replace(".norm1.", ".norm.1.").replace(".conv2.", ".conv.2.")
        old["module." + k2] = v
    load_torch_state_dict(model, old)
    for key in ("features.denseblock1.denselayer1.norm1.weight",
                "features.denseblock1.denselayer1.conv2.weight"):
        np.testing.assert_array_equal(model.state_dict()[key].numpy(), sd[key])
    # rename(): map another naming scheme, drop keys by returning None
    lenet = mm.lenet5()
    sd2 = {"net." + k: v for k, v in _perturbed(_numpy_sd(lenet)).items()}
    sd2["net.ignored"] = np.zeros(1, np.float32)
    load_torch_state_dict(lenet, sd2,
                          rename=lambda k: None if k.endswith("ignored") else k[4:])
    np.testing.assert_array_equal(lenet.classifier.bias.numpy(), sd2["net.classifier.bias"])


def test_checkpoint_wrappers_and_bad_files(tmp_path):
    model = mm.lenet5()
    sd = _perturbed(_numpy_sd(model))
    load_torch_state_dict(model, {"state_dict": sd})
    np.testing.assert_array_equal(model.classifier.bias.numpy(), sd["classifier.bias"])
    with pytest.raises(FileNotFoundError):
        load_torch_state_dict(model, tmp_path / "nope.npz")
    (tmp_path / "bad.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    with pytest.raises(ValueError, match="corrupt safetensors"):
        load_torch_state_dict(model, tmp_path / "bad.safetensors")
    (tmp_path / "w.h5").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown file type"):
        load_torch_state_dict(model, tmp_path / "w.h5")
    np.testing.assert_array_equal(model.classifier.bias.numpy(), sd["classifier.bias"])


def test_pth_without_torch_gives_the_conversion_recipe(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` fail
    (tmp_path / "w.pth").write_bytes(b"whatever")
    with pytest.raises(ImportError) as e:
        load_torch_state_dict(mm.lenet5(), tmp_path / "w.pth")
    assert "np.savez" in str(e.value) and str(e.value) == TORCH_CONVERSION_HINT


@pytest.mark.torch
def test_pth_written_by_torch_loads(tmp_path):
    torch = pytest.importorskip("torch")
    model = mm.lenet5()
    sd = _perturbed(_numpy_sd(model))
    torch.save({k: torch.from_numpy(v) for k, v in sd.items()}, tmp_path / "w.pth")
    dst = mm.lenet5()
    load_torch_state_dict(dst, tmp_path / "w.pth")
    np.testing.assert_array_equal(dst.classifier.weight.numpy(), sd["classifier.weight"])


# ---- torchvision parity ----------------------------------------------------------------------

def _torchvision():
    """torchvision, or skip. Its model definitions are pure Python; where the installed
    wheel's compiled ops do not match the local torch build (a CUDA torchvision wheel next to
    a CPU torch), registering their fake kernels fails at import, and we let that pass."""
    torch = pytest.importorskip("torch")
    try:
        return importlib.import_module("torchvision.models")
    except ImportError:
        pytest.skip("torchvision is not installed")
    except RuntimeError:
        original = torch.library.register_fake

        def tolerant(*a, **k):
            try:
                dec = original(*a, **k)
            except RuntimeError:
                return lambda f: f

            def safe(f):
                try:
                    return dec(f)
                except RuntimeError:
                    return f
            return safe if callable(dec) else dec
        for name in [m for m in sys.modules if m.startswith("torchvision")]:
            del sys.modules[name]
        torch.library.register_fake = tolerant
        try:
            return importlib.import_module("torchvision.models")
        except Exception as e:  # pragma: no cover - depends on the local install
            pytest.skip(f"torchvision does not import here: {e}")
        finally:
            torch.library.register_fake = original


# (name, kwargs for both, input size): small inputs keep the test quick; every model's
# pooling is adaptive (or ends at 1x1), so the comparison holds at any size it accepts.
TV_MODELS = [
    ("alexnet", {}, 96), ("vgg11", {}, 32), ("vgg11_bn", {}, 32), ("vgg16", {}, 32),
    ("googlenet", {"aux_logits": True}, 64), ("resnet18", {}, 64), ("resnet50", {}, 64),
    ("densenet121", {}, 64),
]


@pytest.mark.torch
@pytest.mark.parametrize("name,kw,size", TV_MODELS, ids=[n for n, _, _ in TV_MODELS])
def test_torchvision_weights_give_the_same_outputs(name, kw, size):
    tvm = _torchvision()
    import torch
    torch.manual_seed(0)
    extra = {"init_weights": True} if name == "googlenet" else {}
    tmodel = getattr(tvm, name)(**kw, **extra).eval()
    # Non-trivial BatchNorm statistics, so that eval-mode normalisation is exercised.
    with torch.no_grad():
        for mod in tmodel.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.1, 0.1)
                mod.running_var.uniform_(0.5, 1.5)
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.1, 0.1)
    with skip_init():
        model = mm.get_model(name, **kw)
    load_torch_state_dict(model, tmodel.state_dict())
    model.eval()
    x = np.random.default_rng(0).standard_normal((2, 3, size, size)).astype(np.float32)
    with torch.no_grad():
        ref = tmodel(torch.from_numpy(x)).numpy()
    with md.no_grad():
        out = model(md.tensor(x)).numpy()
    scale = max(np.abs(ref).max(), 1e-6)
    assert np.abs(out - ref).max() <= 1e-4 * scale, (name, np.abs(out - ref).max(), scale)


# ---- transfer-learning helpers ---------------------------------------------------------------

def test_replace_head_for_every_family():
    cases = [("lenet5", {}, "classifier", 84), ("alexnet", {}, "classifier.6", 4096),
             ("vgg11", {}, "classifier.6", 4096), ("resnet18", {}, "fc", 512),
             ("googlenet", {}, "fc", 1024), ("densenet121", {}, "classifier", 1024),
             ("cifar_resnet20", {}, "fc", 64)]
    for name, kw, path, width in cases:
        with skip_init():
            model = mm.get_model(name, **kw)
        head = replace_head(model, 3)
        assert mm.get_submodule(model, path) is head
        assert head.weight.shape == (3, width), name
        assert np.std(head.weight.numpy()) > 0  # freshly initialised
    with skip_init():
        g = mm.googlenet()
    replace_head(g, 4)
    assert g.aux1.fc2.out_features == g.aux2.fc2.out_features == 4


def test_freeze_by_prefix_and_depth_and_unfreeze():
    net = mm.lenet5()
    names = freeze(net, "features")
    assert all(n.startswith("features.") for n in names) and len(names) == 8
    assert [n for n, p in net.named_parameters() if p.requires_grad] == [
        "classifier.weight", "classifier.bias"]
    unfreeze(net)
    assert all(p.requires_grad for p in net.parameters())
    names = freeze(net, depth=2)  # the first two layers with parameters: C1 and C3
    assert names == ["features.1.weight", "features.1.bias", "features.4.weight",
                     "features.4.bias"]
    unfreeze(net)
    freeze(net, depth=-1)
    assert net.num_parameters(trainable_only=True) == 850
    with pytest.raises(ValueError, match="no parameter name starts with"):
        freeze(net, "feature")  # prefixes match whole name components


def test_frozen_body_gets_no_gradient_and_does_not_move():
    net = mm.lenet5()
    freeze(net, depth=-1)
    before = net.features[1].weight.numpy().copy()
    from minidl.optim import SGD
    opt = SGD([p for p in net.parameters() if p.requires_grad], lr=0.1)
    loss = F.cross_entropy(net(md.randn(4, 1, 28, 28)), np.array([0, 1, 2, 3]))
    loss.backward()
    assert net.features[1].weight.grad is None and net.classifier.weight.grad is not None
    opt.step()
    np.testing.assert_array_equal(net.features[1].weight.numpy(), before)


def test_param_groups_give_the_body_a_smaller_learning_rate():
    net = mm.cifar_resnet(20)
    groups = param_groups(net, lr=0.1)
    assert [g["lr"] for g in groups] == [pytest.approx(0.01), 0.1]
    assert len(groups[1]["params"]) == 2  # fc.weight, fc.bias
    assert sum(len(g["params"]) for g in groups) == len(list(net.parameters()))
    from minidl.optim import SGD
    opt = SGD(groups, lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [pytest.approx(0.01), 0.1]
    freeze(net, "layer1")
    assert sum(len(g["params"]) for g in param_groups(net, 0.1, body_lr=0.0)) == len(
        [p for p in net.parameters() if p.requires_grad])


def test_cnn_codes_features_and_extract_features_agree():
    x = md.randn(3, 1, 28, 28)
    net = mm.lenet5().eval()
    codes = extract_features(net, x)
    assert codes.shape == (3, 84)
    with md.no_grad():
        np.testing.assert_allclose(net.features(x).numpy(), codes.numpy(), rtol=1e-6)
    r = mm.cifar_resnet(20).eval()
    xr = md.randn(2, 3, 32, 32)
    with md.no_grad():
        np.testing.assert_allclose(r.features(xr).numpy(), extract_features(r, xr).numpy(),
                                   rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(extract_features(r, xr.numpy(), batch_size=1).numpy(),
                               extract_features(r, xr).numpy(), rtol=1e-5, atol=1e-6)
    with skip_init():
        v = mm.vgg11(num_classes=3)
    assert extract_features(v, md.randn(1, 3, 32, 32)).shape == (1, 4096)


def test_reduced_transfer_experiment_runs():
    from minidl.models.transfer import lenet_transfer_experiment
    t0 = time.perf_counter()
    out = lenet_transfer_experiment(shots=10, pretrain_epochs=1, finetune_epochs=5,
                                    pretrain_per_class=100)
    assert time.perf_counter() - t0 < 60
    res = {r.method.split(" (")[0]: r for r in out["results"]}
    assert set(res) == {"frozen features + new head", "fine-tune", "from scratch"}
    assert res["frozen features + new head"].trainable_params == 84 * 5 + 5
    assert out["pretrain"]["accuracy_0_4"] > 0.8
    for r in res.values():  # chance is 0.2 on five classes
        assert 0.4 < r.accuracy <= 1.0 and r.seconds > 0, r
    assert out["target_train"] == 50 and out["target_test"] == 500
