"""minidl.summary: per-layer shapes, parameters, buffers and MACs, and the published totals."""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
import minidl.nn as nn
from minidl import models as mm
from minidl.models import skip_init
from minidl.models.googlenet import Inception, InceptionNaive
from minidl.summary import count_macs, summary


def test_lenet5_rows_and_totals_match_hand_counts():
    s = summary(mm.lenet5(), (1, 28, 28), verbose=False)
    convs = [r for r in s.rows if r.type == "Conv2d"]
    assert [r.output_shape for r in convs] == [[(1, 6, 28, 28)], [(1, 16, 10, 10)]]
    # C1: 28*28*6 outputs x 25 taps; C3: 10*10*16 x 150; then 400x120, 120x84, 84x10
    assert [r.macs for r in s.rows if r.macs] == [117_600, 240_000, 48_000, 10_080, 840]
    assert s.total_macs == 416_520
    assert s.total_params == s.trainable_params == 61_706 and s.frozen_params == 0
    assert s.rows[0].output_shape == [(1, 1, 32, 32)]  # the 28x28 input is padded
    # activation memory: every recorded output, float32, batch 1
    assert s.activation_bytes == 4 * sum(int(np.prod(r.output_shape[0])) for r in s.rows)
    text = str(s)
    assert "features.1 (Conv2d)" in text and "61,706" in text and "416,520" in text


def test_lenet1998_counts_only_connected_c3_kernels_and_reports_frozen_codes():
    s = summary(mm.lenet5(variant="1998"), (1, 32, 32), verbose=False)
    c3 = next(r for r in s.rows if r.type == "SparseConv2d")
    assert c3.params == 1_516 and c3.macs == 10 * 10 * 60 * 25
    assert s.trainable_params == 60_000 and s.frozen_params == 840


def test_frozen_parameters_are_reported_separately():
    net = mm.lenet5()
    mm.freeze(net, "features")
    s = summary(net, (1, 32, 32), verbose=False)
    assert s.trainable_params == 850 and s.frozen_params == 61_706 - 850
    assert "Frozen params:        60,856" in s.table()


@pytest.mark.parametrize("naive,expected", [(True, 854_196_224), (False, 271_351_808)])
def test_lecture_inception_example_macs(naive, expected):
    # 28x28x256 input, 128 1x1 / 192 3x3 / 96 5x5 filters, 64-channel reductions.
    with skip_init():
        block = (InceptionNaive(256, 128, 192, 96) if naive
                 else Inception(256, 128, 64, 192, 64, 96, 64, bn=False, k5=5))
    s = summary(block, (256, 28, 28), verbose=False)
    assert s.total_macs == expected
    assert s.output_shapes == [(1, 128 + 192 + 96 + (256 if naive else 64), 28, 28)]


def test_transposed_convolution_macs_count_input_positions():
    layer = nn.ConvTranspose2d(8, 4, 4, stride=2, padding=1)
    x = md.randn(1, 8, 5, 5)
    y = layer(x)
    assert y.shape == (1, 4, 10, 10)
    # each of the 8*5*5 input values is multiplied into 4 output maps x 4*4 taps
    assert count_macs(layer, (x,), y) == 8 * 5 * 5 * 4 * 16
    g = mm.dcgan_generator(z_dim=10, out_shape=(1, 28, 28), ngf=8)
    s = summary(g, (10,), verbose=False)
    assert s.total_macs == 10 * 16 * 49 + 16 * 49 * 8 * 16 + 8 * 14 * 14 * 1 * 16


def test_grouped_convolution_and_summary_keeps_train_mode():
    net = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.BatchNorm2d(8))
    net.train()
    s = summary(net, (4, 6, 6), verbose=False)
    assert s.total_macs == 8 * 36 * 2 * 9
    assert s.total_buffers == 8 + 8 + 1
    assert net.training and int(net[1].num_batches_tracked.item()) == 0


def test_multi_input_model_and_printing(capsys):
    model = mm.wide_and_deep()
    s = summary(model, [(5,), (6,)])
    out = capsys.readouterr().out
    assert "main_output" in out and "1,207" in out
    assert s.total_macs == 6 * 30 + 30 * 30 + 35 + 30


# torchvision's published GMACs at 224x224 (their "GFLOPS" column counts multiply-adds).
PUBLISHED_GMACS = [("alexnet", 0.714), ("googlenet", 1.498), ("resnet18", 1.814),
                   ("resnet50", 4.089), ("densenet121", 2.834), ("vgg16", 15.47)]


@pytest.mark.parametrize("name,gmacs", PUBLISHED_GMACS, ids=[n for n, _ in PUBLISHED_GMACS])
def test_macs_agree_with_torchvision_within_1_percent(name, gmacs):
    with skip_init():
        model = mm.get_model(name)
    s = summary(model, (3, 224, 224), verbose=False)
    assert s.gmacs == pytest.approx(gmacs, rel=0.01)


def test_skip_init_draws_nothing_and_holds_only_in_its_own_thread():
    import threading

    from minidl.backend import get_rng_state
    from minidl.nn import init

    md.manual_seed(0)
    before = get_rng_state()
    with init.skip_init():
        model = md.models.get_model("vgg11")
        assert get_rng_state() == before                  # no random number drawn
        other: list = []
        t = threading.Thread(target=lambda: other.append(md.nn.Linear(4, 4)))
        t.start()
        t.join()
    assert model.num_parameters() == 132_863_336
    assert not model.features[0].weight.numpy().any()
    assert other[0].weight.numpy().any()                  # the other thread initialised
    assert md.nn.Linear(4, 4).weight.numpy().any()        # and so does this one, after
