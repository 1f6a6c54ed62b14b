"""The model zoo: parameter counts against the published figures, forward shapes at small
sizes, float64 gradchecks through one block of each family, a training smoke test."""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
from minidl import models as mm
from minidl.models import skip_init
from minidl.models.densenet import DenseBlock
from minidl.models.googlenet import GoogLeNetOutputs, Inception, InceptionNaive
from minidl.models.lenet import C3_TABLE, SparseConv2d
from minidl.models.resnet import BasicBlock, Bottleneck, ShortcutA

# (builder name, kwargs, total parameters, trainable parameters or None = total)
# Figures from the papers / torchvision's model cards, as quoted in the issue.
PARAM_COUNTS = [
    ("lenet5", {}, 61_706, None),
    # 156 + 12 + 1,516 + 32 + 48,120 + 10,164 trainable; the 840 RBF codes are fixed.
    ("lenet5", {"variant": "1998"}, 60_840, 60_000),
    ("alexnet", {}, 61_100_840, None),
    ("alexnet", {"variant": "original"}, 62_378_344, None),
    ("alexnet", {"variant": "original", "groups": 2}, 60_965_224, None),  # Caffe's figure
    ("vgg11", {}, 132_863_336, None),
    ("vgg13", {}, 133_047_848, None),
    ("vgg16", {}, 138_357_544, None),
    ("vgg19", {}, 143_667_240, None),
    ("vgg11_bn", {}, 132_863_336 + 5_504, None),
    ("vgg13_bn", {}, 133_047_848 + 5_888, None),
    ("vgg16_bn", {}, 138_357_544 + 8_448, None),
    ("vgg19_bn", {}, 143_667_240 + 11_008, None),
    ("vgg", {"config": "A-LRN"}, 132_863_336, None),   # LRN has no parameters
    # C = B + one 1x1 conv in each of blocks 3-5: 256*256+256 + 2*(512*512+512) (~134 M)
    ("vgg", {"config": "C"}, 133_047_848 + 65_792 + 2 * 262_656, None),
    ("vgg", {"config": "D"}, 138_357_544, None),
    ("googlenet", {"aux_logits": False}, 6_624_904, None),
    ("googlenet", {"aux_logits": True}, 13_004_888, None),
    ("googlenet", {"aux_logits": False, "faithful": True}, 6_998_552, None),
    ("googlenet", {"aux_logits": True, "faithful": True}, 13_378_280, None),
    ("resnet18", {}, 11_689_512, None),
    ("resnet34", {}, 21_797_672, None),
    ("resnet50", {}, 25_557_032, None),
    ("resnet101", {}, 44_549_160, None),
    ("resnet152", {}, 60_192_808, None),
    # plain nets = ResNets less the three projection shortcuts (conv 1x1 + BN)
    ("plain18", {}, 11_689_512 - (8_192 + 256 + 32_768 + 512 + 131_072 + 1_024), None),
    ("plain34", {}, 21_797_672 - (8_192 + 256 + 32_768 + 512 + 131_072 + 1_024), None),
    ("cifar_resnet", {"depth": 20}, 269_722, None),
    ("cifar_resnet", {"depth": 32}, 464_154, None),
    ("cifar_resnet", {"depth": 44}, 658_586, None),
    ("cifar_resnet", {"depth": 56}, 853_018, None),
    ("cifar_resnet", {"depth": 110}, 1_727_962, None),
    ("cifar_resnet", {"depth": 56, "plain": True}, 853_018, None),  # option A adds nothing
    ("cifar_resnet20", {}, 269_722, None),
    ("densenet121", {}, 7_978_856, None),
    ("densenet169", {}, 14_149_480, None),
    ("densenet201", {}, 20_013_928, None),
    ("densenet_cifar", {"depth": 100, "growth_rate": 12}, 769_162, None),  # "0.8M" (Table 2)
    # PyTorch's DCGAN tutorial nets (64x64 RGB, ngf = ndf = 64)
    ("dcgan_generator", {"out_shape": (3, 64, 64)}, 3_576_704, None),
    ("dcgan_discriminator", {"in_shape": (3, 64, 64)}, 2_765_568, None),
    ("wide_and_deep", {}, 6 * 30 + 30 + 30 * 30 + 30 + 35 + 1 + 30 + 1, None),
]


@pytest.mark.parametrize("name,kw,total,trainable", PARAM_COUNTS,
                         ids=[f"{n}-{'-'.join(f'{k}={v}' for k, v in kw.items())}"
                              for n, kw, _, _ in PARAM_COUNTS])
def test_parameter_count(name, kw, total, trainable):
    with skip_init():  # counting needs no random weights
        model = mm.get_model(name, **kw)
    assert model.num_parameters() == total
    assert model.num_parameters(trainable_only=True) == (total if trainable is None
                                                         else trainable)


def test_registry_lists_every_family_and_rejects_unknown_names():
    names = mm.list_models()
    for n in ("lenet5", "alexnet", "vgg16_bn", "googlenet", "resnet50", "plain34",
              "cifar_resnet", "densenet121", "dcgan_generator", "wide_and_deep"):
        assert n in names
    assert isinstance(mm.get_model("ResNet-18"), mm.ResNet)
    with pytest.raises(ValueError, match="unknown model 'resnet19'"):
        mm.get_model("resnet19")
    with pytest.raises(ValueError, match="configuration"):
        mm.vgg("F")
    with pytest.raises(ValueError, match="6n\\+2"):
        mm.cifar_resnet(21)
    with pytest.raises(ValueError, match="variant"):
        mm.lenet5(variant="2001")


def test_skip_init_restores_random_initialisation():
    with skip_init():
        zero = mm.lenet5()
    assert not np.any(zero.classifier.weight.numpy())
    again = mm.lenet5()
    assert np.std(again.classifier.weight.numpy()) > 0


# ---- forward shapes at small input sizes ---------------------------------------------------

def _forward(model, shape, train=False):
    model.train(train)
    x = md.randn(*shape)
    with md.no_grad():
        return model(x)


# (name, kwargs, input shape, output shape); sizes are the smallest each net accepts
# comfortably, so the test stays fast. skip_init: shapes do not depend on the values.
SHAPES = [
    ("lenet5", {}, (2, 1, 28, 28), (2, 10)),
    ("lenet5", {}, (2, 1, 32, 32), (2, 10)),
    ("lenet5", {"variant": "1998"}, (2, 1, 28, 28), (2, 10)),
    ("alexnet", {"num_classes": 7}, (1, 3, 64, 64), (1, 7)),
    ("alexnet", {"variant": "original", "groups": 2, "num_classes": 7}, (1, 3, 67, 67), (1, 7)),
    ("vgg", {"config": "C", "num_classes": 7}, (1, 3, 32, 32), (1, 7)),
    ("vgg", {"config": "A-LRN", "num_classes": 7}, (1, 3, 32, 32), (1, 7)),
    ("vgg11_bn", {"num_classes": 7}, (1, 3, 32, 32), (1, 7)),
    ("googlenet", {"num_classes": 7}, (1, 3, 64, 64), (1, 7)),
    ("googlenet", {"num_classes": 7, "faithful": True}, (1, 3, 64, 64), (1, 7)),
    ("resnet18", {"num_classes": 7}, (1, 3, 32, 32), (1, 7)),
    ("resnet50", {"num_classes": 7}, (1, 3, 32, 32), (1, 7)),
    ("plain18", {"num_classes": 7}, (1, 3, 32, 32), (1, 7)),
    ("cifar_resnet", {"depth": 20}, (2, 3, 32, 32), (2, 10)),
    ("cifar_resnet", {"depth": 20, "plain": True}, (2, 3, 16, 16), (2, 10)),
    ("densenet121", {"num_classes": 7}, (1, 3, 32, 32), (1, 7)),
    ("densenet_cifar", {"depth": 22, "growth_rate": 6}, (2, 3, 32, 32), (2, 10)),
    ("dcgan_generator", {"z_dim": 8, "out_shape": (1, 28, 28), "ngf": 4}, (2, 8), (2, 1, 28, 28)),
    ("dcgan_generator", {"z_dim": 8, "out_shape": (3, 32, 32), "ngf": 4}, (2, 8), (2, 3, 32, 32)),
    ("dcgan_generator", {"z_dim": 8, "out_shape": (3, 64, 64), "ngf": 4}, (2, 8), (2, 3, 64, 64)),
    ("dcgan_discriminator", {"in_shape": (1, 28, 28), "ndf": 4}, (2, 1, 28, 28), (2,)),
    ("dcgan_discriminator", {"in_shape": (3, 32, 32), "ndf": 4}, (2, 3, 32, 32), (2,)),
    ("dcgan_discriminator", {"in_shape": (3, 64, 64), "ndf": 4}, (2, 3, 64, 64), (2,)),
]


@pytest.mark.parametrize("name,kw,shape,out", SHAPES,
                         ids=[f"{n}-{s[-1]}-{'-'.join(map(str, kw.values()))}"
                              for n, kw, s, _ in SHAPES])
def test_forward_shape(name, kw, shape, out):
    with skip_init():
        model = mm.get_model(name, **kw)
    y = _forward(model, shape)
    assert y.shape == out


def test_googlenet_train_mode_returns_aux_outputs_and_weights_them_by_0_3():
    with skip_init():
        net = mm.googlenet(num_classes=5)
    net.train()
    x = md.randn(2, 3, 64, 64)
    with md.no_grad():
        out = net(x)
    assert isinstance(out, GoogLeNetOutputs)
    assert out.logits.shape == out.aux_logits1.shape == out.aux_logits2.shape == (2, 5)
    y = np.array([1, 3])
    loss = mm.googlenet_loss(out, y).item()
    expect = sum(w * F.cross_entropy(t, y).item()
                 for w, t in ((1.0, out.logits), (0.3, out.aux_logits1), (0.3, out.aux_logits2)))
    assert loss == pytest.approx(expect, rel=1e-6)
    net.eval()
    with md.no_grad():
        assert net(x).shape == (2, 5)
    assert mm.googlenet(num_classes=5, aux_logits=False).aux1 is None


def test_wide_and_deep_two_inputs_two_outputs():
    model = mm.wide_and_deep()
    main, aux = model(md.randn(4, 5), md.randn(4, 6))
    assert main.shape == aux.shape == (4, 1)
    # the wide input reaches only the main output
    wide2 = md.randn(4, 5)
    main2, aux2 = model(wide2, md.tensor(np.zeros((4, 6), np.float32)))
    _, aux3 = model(md.randn(4, 5), md.tensor(np.zeros((4, 6), np.float32)))
    np.testing.assert_array_equal(aux2.numpy(), aux3.numpy())


def test_sparse_c3_output_ignores_unconnected_maps():
    conv = SparseConv2d(6, C3_TABLE, 5)
    x = np.random.default_rng(0).standard_normal((1, 6, 5, 5)).astype(np.float32)
    base = conv(md.tensor(x)).numpy()[0, :, 0, 0]
    for i in range(6):
        x2 = x.copy()
        x2[0, i] += 1.0
        moved = conv(md.tensor(x2)).numpy()[0, :, 0, 0] != base
        np.testing.assert_array_equal(moved, [i in t for t in C3_TABLE])


def test_option_a_shortcut_subsamples_and_zero_pads():
    x = md.tensor(np.arange(2 * 2 * 4 * 4, dtype=np.float32).reshape(2, 2, 4, 4))
    y = ShortcutA(2, 6, 2)(x).numpy()
    assert y.shape == (2, 6, 2, 2)
    np.testing.assert_array_equal(y[:, 2:4], x.numpy()[:, :, ::2, ::2])
    assert not y[:, :2].any() and not y[:, 4:].any()


# ---- float64 gradcheck through one block of each family ---------------------------------

def _gradcheck_module(module, x):
    """gradcheck over the input and every parameter of ``module`` (float64, train mode)."""
    module.double().train()
    slots = [(m, k) for m in module.modules() for k, p in m._parameters.items()
             if p is not None and p.requires_grad]
    params = [m._parameters[k] for m, k in slots]

    def fn(x, *ps):
        saved = [m._parameters[k] for m, k in slots]
        for (m, k), p in zip(slots, ps):
            m._parameters[k] = p  # route the forward through gradcheck's leaves
        try:
            return module(x)
        finally:
            for (m, k), p in zip(slots, saved):
                m._parameters[k] = p

    xt = md.tensor(x.astype(np.float64), requires_grad=True)
    # BatchNorm in training mode updates its running statistics on each call; harmless here.
    assert md.gradcheck(fn, xt, *params, atol=1e-5, rtol=1e-3)


def test_gradcheck_inception_module():
    rng = np.random.default_rng(0)
    block = Inception(3, 2, 2, 2, 1, 2, 1)  # torchvision form: conv-BN-ReLU branches
    _gradcheck_module(block, rng.standard_normal((2, 3, 4, 4)))


def test_gradcheck_naive_inception_module():
    rng = np.random.default_rng(1)
    _gradcheck_module(InceptionNaive(2, 1, 1, 1), rng.standard_normal((1, 2, 5, 5)))


def test_gradcheck_basic_block_with_projection():
    rng = np.random.default_rng(2)
    _gradcheck_module(BasicBlock(2, 3, stride=2), rng.standard_normal((2, 2, 4, 4)))


def test_gradcheck_bottleneck_block():
    rng = np.random.default_rng(3)
    _gradcheck_module(Bottleneck(4, 1), rng.standard_normal((2, 4, 3, 3)))


def test_gradcheck_dense_block():
    rng = np.random.default_rng(4)
    _gradcheck_module(DenseBlock(2, 2, growth_rate=2, bn_size=1),
                      rng.standard_normal((2, 2, 3, 3)))


def test_gradcheck_lenet1998_subsampling_and_c3_table():
    from minidl.models.lenet import ScaledTanh, Subsampling
    rng = np.random.default_rng(5)
    block = md.nn.Sequential(Subsampling(6), ScaledTanh(), SparseConv2d(6, C3_TABLE, 5),
                             ScaledTanh())
    _gradcheck_module(block, rng.standard_normal((1, 6, 10, 10)))


# ---- training smoke tests -------------------------------------------------------------------

def _train_steps(model, x, y, steps, lr, loss_fn=F.cross_entropy):
    from minidl.optim import Adam
    opt = Adam(model.parameters(), lr=lr)
    model.train()
    losses = []
    for _ in range(steps):
        loss = loss_fn(model(md.tensor(x)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_lenet5_learns_mnist_batches():
    from minidl.data import mnist_subset
    x, y = mnist_subset("train")
    x = (x[:256].astype(np.float32) / 255 - 0.1307) / 0.3081
    model = mm.lenet5()
    from minidl.optim import SGD
    opt = SGD(model.parameters(), lr=0.05, momentum=0.9)
    first = F.cross_entropy(model(md.tensor(x)), y[:256]).item()
    for epoch in range(3):
        for i in range(0, 256, 32):
            loss = F.cross_entropy(model(md.tensor(x[i:i + 32])), y[i:i + 32])
            opt.zero_grad()
            loss.backward()
            opt.step()
    last = F.cross_entropy(model(md.tensor(x)), y[:256]).item()
    assert last < 0.6 * first, (first, last)


@pytest.mark.parametrize("name,kw", [("cifar_resnet", {"depth": 20}),
                                     ("densenet_cifar", {"depth": 10, "growth_rate": 6}),
                                     ("lenet5", {"variant": "1998"})])
def test_training_reduces_the_loss(name, kw):
    rng = np.random.default_rng(0)
    chans, size = (1, 32) if name == "lenet5" else (3, 16)
    x = rng.standard_normal((16, chans, size, size)).astype(np.float32)
    y = rng.integers(0, 10, 16)
    model = mm.get_model(name, **kw)
    losses = _train_steps(model, x, y, steps=6, lr=0.01)
    assert losses[-1] < 0.8 * losses[0], losses


# ---- GAN --------------------------------------------------------------------------------------

def test_gan_trainer_step_updates_both_nets_and_restores_the_discriminator(tmp_path):
    from minidl.models.gan import GANTrainer, save_image_grid
    g = mm.dcgan_generator(z_dim=8, out_shape=(1, 28, 28), ngf=4)
    d = mm.dcgan_discriminator((1, 28, 28), ndf=4)
    tr = GANTrainer(g, d)
    g0 = g.net[0].weight.numpy().copy()
    d0 = d.net[0].weight.numpy().copy()
    real = np.random.default_rng(0).uniform(-1, 1, (4, 1, 28, 28)).astype(np.float32)
    logs = tr.step(real)
    assert set(logs) == {"loss_d", "loss_g", "d_real", "d_fake"}
    assert all(np.isfinite(v) for v in logs.values())
    assert not np.array_equal(g.net[0].weight.numpy(), g0)
    assert not np.array_equal(d.net[0].weight.numpy(), d0)
    assert all(p.requires_grad for p in d.parameters())  # unfrozen after the G step
    samples = tr.sample(6)
    assert samples.shape == (6, 1, 28, 28) and np.abs(samples.numpy()).max() <= 1.0
    path = save_image_grid(samples, tmp_path / "grid.png", nrow=3, scale=2)
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n"
    import struct
    import zlib
    w, h = struct.unpack(">II", raw[16:24])
    assert (w, h) == (2 * (3 * 30 + 2), 2 * (2 * 30 + 2))
    idat = raw[raw.index(b"IDAT") + 4:raw.index(b"IEND") - 8]
    assert len(zlib.decompress(idat)) == h * (w + 1)


def test_gan_non_saturating_generator_loss_is_bce_with_label_one():
    # The G step minimises -log D(G(z)): check the loss value it reports against that formula.
    from minidl.models.gan import GANTrainer
    g = mm.dcgan_generator(z_dim=4, out_shape=(1, 28, 28), ngf=2)
    d = mm.dcgan_discriminator((1, 28, 28), ndf=2)
    tr = GANTrainer(g, d, lr=0.0)  # lr 0: nothing moves, so we can recompute the loss
    md.manual_seed(5)
    real = np.zeros((3, 1, 28, 28), np.float32)
    logs = tr.step(real)
    md.manual_seed(5)
    z = md.randn(3, 4)
    g.train(), d.train()
    with md.no_grad():
        logits = d(g(z)).numpy()
    expect = float(np.mean(np.log1p(np.exp(-logits))))
    assert logs["loss_g"] == pytest.approx(expect, rel=1e-4)


# ---- GPU: the same numbers on 'cuda' as on 'cpu' ---------------------------------------------

@pytest.mark.gpu
@pytest.mark.parametrize("name", ["resnet18", "googlenet"])
def test_cuda_forward_backward_match_cpu(name):
    md.manual_seed(0)
    cpu = mm.get_model(name, num_classes=10)
    gpu = mm.get_model(name, num_classes=10)
    gpu.load_state_dict({k: v.numpy() for k, v in cpu.state_dict().items()})
    gpu.to("cuda")
    for m in [*cpu.modules(), *gpu.modules()]:
        if isinstance(m, md.nn.Dropout):
            m.p = 0.0  # the two devices draw different dropout masks
    x = np.random.default_rng(0).standard_normal((2, 3, 64, 64)).astype(np.float32)
    y = np.array([1, 7])
    outs = []
    for model, dev in ((cpu, "cpu"), (gpu, "cuda")):
        model.train()
        out = model(md.tensor(x, device=dev))
        logits = out.logits if isinstance(out, GoogLeNetOutputs) else out
        loss = (mm.googlenet_loss(out, y) if name == "googlenet"
                else F.cross_entropy(logits, y))
        loss.backward()
        outs.append((logits.numpy(), loss.item(), model.conv1.weight.grad.numpy() if name ==
                     "resnet18" else model.conv1.conv.weight.grad.numpy()))
    (lc, sc, gc), (lg, sg, gg) = outs
    np.testing.assert_allclose(lg, lc, rtol=1e-3, atol=1e-4)
    assert sg == pytest.approx(sc, rel=1e-4)
    np.testing.assert_allclose(gg, gc, rtol=1e-2, atol=1e-4 * np.abs(gc).max())
