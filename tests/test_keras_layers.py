"""Keras layers (minidl/keras/layers/): Keras's defaults, layouts and numbers, checked against
NumPy, float64 gradchecks through the channels-last paths, and the minidl tools on them."""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
from minidl import keras
from minidl.keras import layers as L


def _built(layer, shape, dtype=np.float32, device="cpu"):
    layer(md.tensor(np.zeros(shape, dtype), device=device))
    return layer


def test_dense_infers_its_input_size_and_uses_glorot_uniform_and_zeros():
    layer = _built(L.Dense(300), (2, 500))
    kernel, bias = layer.get_weights()
    assert kernel.shape == (500, 300) and layer.weight.shape == (300, 500)   # Keras / minidl
    limit = np.sqrt(6 / (500 + 300))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > 0.99 * limit
    assert abs(kernel.mean()) < 0.01 * limit
    # uniform: the variance of U(-a, a) is a^2 / 3
    assert kernel.var() == pytest.approx(limit ** 2 / 3, rel=0.02)
    assert np.array_equal(bias, np.zeros(300, np.float32))
    x = np.random.default_rng(0).normal(size=(4, 500)).astype(np.float32)
    np.testing.assert_allclose(layer(md.tensor(x)).numpy(), x @ kernel + bias, rtol=1e-5,
                               atol=1e-5)
    with pytest.raises(ValueError, match=r"Dense 'dense\w*': expected inputs of shape "
                                         r"\(batch, \.\.\., 500\), got \(4, 3\)"):
        layer(md.tensor(np.zeros((4, 3), np.float32)))


def test_keras_names_count_per_class_and_clear_session_restarts_them():
    keras.backend.clear_session()
    names = [L.Dense(1).name, L.Dense(1).name, L.Conv2D(1, 1).name, L.MaxPooling2D().name,
             L.BatchNormalization().name, L.ReLU().name, L.Dense(1, name="out").name]
    assert names == ["dense", "dense_1", "conv2d", "max_pooling2d", "batch_normalization",
                     "re_lu", "out"]
    keras.backend.clear_session()
    assert L.Dense(1).name == "dense"
    with pytest.raises(TypeError, match=r"Dense: unexpected keyword argument\(s\) \['unit'\]"):
        L.Dense(3, unit=2)


def test_l2_penalty_is_keras_convention_without_a_half():
    layer = _built(L.Dense(4, kernel_regularizer=keras.regularizers.l2(0.01),
                           bias_regularizer=keras.regularizers.l1(0.5)), (1, 3))
    kernel, bias = layer.get_weights()
    bias[:] = [1.0, -2.0, 0.0, 0.5]
    layer.set_weights([kernel, bias])
    expected = 0.01 * np.sum(kernel.astype(np.float64) ** 2) + 0.5 * 3.5
    assert layer.regularization_loss().item() == pytest.approx(expected, rel=1e-6)


def test_max_norm_caps_each_units_incoming_weights_keras_axis_0():
    layer = _built(L.Dense(3, kernel_constraint=keras.constraints.max_norm(1.0)), (1, 4))
    kernel = np.array([[3.0, 0.1, 1.0], [4.0, 0.2, 1.0], [0.0, 0.2, 1.0], [0.0, 0.0, 1.0]],
                      np.float32)                     # unit norms 5, 0.3, 2 (axis 0)
    layer.set_weights([kernel, np.zeros(3, np.float32)])
    layer.weight.grad = md.tensor(np.zeros((3, 4), np.float32))
    opt = keras.optimizers.SGD()
    opt.build([layer.weight])
    opt.step()                                       # a zero step, then the constraint
    got = layer.get_weights()[0]
    norms = np.linalg.norm(kernel, axis=0, keepdims=True)
    np.testing.assert_allclose(got, kernel * np.clip(norms, 0, 1) / (1e-7 + norms), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=0), [1.0, 0.3, 1.0], rtol=1e-5)
    # the norm over the other axis would have given different numbers
    assert not np.allclose(np.linalg.norm(got, axis=1), np.minimum(np.linalg.norm(kernel,
                                                                                 axis=1), 1))


def test_dropout_zeroes_rate_and_scales_the_rest_by_one_over_one_minus_rate():
    layer = L.Dropout(rate=0.2)
    x = md.tensor(np.full((200, 100), 3.0, np.float32))
    y = layer(x).numpy()                               # a fresh layer is in training mode
    assert set(np.unique(y)) == {0.0, np.float32(3.0 / 0.8)}
    assert np.mean(y == 0) == pytest.approx(0.2, abs=0.01)
    layer.eval()
    assert np.array_equal(layer(x).numpy(), x.numpy())
    assert np.array_equal(layer(x, training=False).numpy(), x.numpy())


def _conv_reference(x, k, b, stride, pads):
    """Naive channels-last cross-correlation: x (N, H, W, C), k (kh, kw, C, F)."""
    t, bo, left, r = pads
    x = np.pad(x, ((0, 0), (t, bo), (left, r), (0, 0)))
    kh, kw = k.shape[:2]
    ho = (x.shape[1] - kh) // stride + 1
    wo = (x.shape[2] - kw) // stride + 1
    out = np.zeros((x.shape[0], ho, wo, k.shape[3]))
    for i in range(ho):
        for j in range(wo):
            patch = x[:, i * stride:i * stride + kh, j * stride:j * stride + kw, :]
            out[:, i, j, :] = np.tensordot(patch, k, axes=([1, 2, 3], [0, 1, 2]))
    return out + b


@pytest.mark.parametrize("padding, stride, size, pads", [
    ("valid", 1, 6, (0, 0, 0, 0)),
    ("same", 1, 6, (1, 1, 1, 1)),
    ("same", 2, 6, (0, 1, 0, 1)),       # Keras: an odd total puts the extra at bottom/right
    ("same", 2, 7, (1, 1, 1, 1)),
])
def test_conv2d_channels_last_matches_numpy(padding, stride, size, pads):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, size, size, 3))
    layer = _built(L.Conv2D(4, 3, strides=stride, padding=padding), x.shape, np.float64)
    k, b = layer.get_weights()
    assert k.shape == (3, 3, 3, 4)
    limit = np.sqrt(6 / (3 * 9 + 4 * 9))               # Keras's fans of a conv kernel
    assert np.abs(k).max() <= limit
    b[:] = rng.normal(size=4)
    layer.set_weights([k, b])
    y = layer(md.tensor(x)).numpy()
    np.testing.assert_allclose(y, _conv_reference(x, k, b, stride, pads), rtol=1e-10)
    assert y.shape[1] == -(-size // stride) if padding == "same" else size - 2


def test_image_data_format_switches_the_default_layout():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 5, 5, 3))
    last = _built(L.Conv2D(2, 3, padding="same"), x.shape, np.float64)
    keras.config.set_image_data_format("channels_first")
    try:
        assert keras.config.image_data_format() == "channels_first"
        first = L.Conv2D(2, 3, padding="same")
        flat = L.Flatten()
        pool = L.MaxPooling2D()
    finally:
        keras.config.set_image_data_format("channels_last")
    assert first.data_format == "channels_first" and L.Conv2D(1, 1).data_format == "channels_last"
    xc = x.transpose(0, 3, 1, 2)
    _built(first, xc.shape, np.float64).set_weights(last.get_weights())
    y_last = last(md.tensor(x)).numpy()
    y_first = first(md.tensor(xc)).numpy()
    np.testing.assert_allclose(y_first, y_last.transpose(0, 3, 1, 2), rtol=1e-12)
    # Flatten moves channels last first, so a Dense after it sees Keras's order either way
    np.testing.assert_array_equal(flat(md.tensor(y_first)).numpy(), y_last.reshape(2, -1))
    np.testing.assert_array_equal(L.Flatten()(md.tensor(y_last)).numpy(), y_last.reshape(2, -1))
    np.testing.assert_array_equal(pool(md.tensor(y_first)).numpy(),
                                  L.MaxPooling2D()(md.tensor(y_last)).numpy().transpose(0, 3, 1, 2))
    with pytest.raises(ValueError, match="data_format must be 'channels_last' or"):
        keras.config.set_image_data_format("nhwc")


def _pool_reference(x, k, s, pads, op):
    t, b, left, r = pads
    fill = -np.inf if op == "max" else np.nan
    x = np.pad(x, ((0, 0), (t, b), (left, r), (0, 0)), constant_values=fill)
    ho, wo = (x.shape[1] - k) // s + 1, (x.shape[2] - k) // s + 1
    out = np.zeros((x.shape[0], ho, wo, x.shape[3]))
    for i in range(ho):
        for j in range(wo):
            win = x[:, i * s:i * s + k, j * s:j * s + k, :]
            out[:, i, j] = win.max(axis=(1, 2)) if op == "max" else np.nanmean(win, axis=(1, 2))
    return out


@pytest.mark.parametrize("cls, op", [(L.MaxPooling2D, "max"), (L.AveragePooling2D, "avg")])
@pytest.mark.parametrize("padding, k, s, size, pads", [
    ("valid", 2, 2, 6, (0, 0, 0, 0)), ("valid", 3, 2, 7, (0, 0, 0, 0)),
    ("same", 2, 2, 5, (0, 1, 0, 1)), ("same", 3, 2, 6, (0, 1, 0, 1)),
    ("same", 3, 1, 4, (1, 1, 1, 1))])
def test_pooling_matches_numpy(cls, op, padding, k, s, size, pads):
    x = np.random.default_rng(3).normal(size=(2, size, size, 3))
    y = cls(k, strides=s, padding=padding)(md.tensor(x)).numpy()
    np.testing.assert_allclose(y, _pool_reference(x, k, s, pads, op), rtol=1e-12)


def test_global_pooling_and_merges():
    x = np.random.default_rng(4).normal(size=(2, 3, 4, 5))
    np.testing.assert_allclose(L.GlobalAveragePooling2D()(md.tensor(x)).numpy(),
                               x.mean(axis=(1, 2)))
    np.testing.assert_allclose(L.GlobalMaxPooling2D()(md.tensor(x)).numpy(), x.max(axis=(1, 2)))
    a, b = md.tensor(x), md.tensor(x * 2)
    np.testing.assert_allclose(L.concatenate([a, b]).numpy(), np.concatenate([x, 2 * x], -1))
    np.testing.assert_allclose(L.add([a, b]).numpy(), 3 * x)
    np.testing.assert_allclose(L.Average()([a, b]).numpy(), 1.5 * x)
    with pytest.raises(ValueError, match="Add 'add\\w*': inputs must have the same shape"):
        L.Add()([a, md.tensor(x[:, :2])])
    with pytest.raises(ValueError, match="Concatenate 'concatenate\\w*': inputs must match "
                                         "except along axis -1"):
        L.Concatenate()([a, md.tensor(x[:, :2])])


def test_batch_normalization_uses_keras_momentum_and_the_biased_variance():
    rng = np.random.default_rng(5)
    x = rng.normal(2.0, 3.0, size=(8, 2, 2, 3))       # channels-last: statistics per channel
    layer = L.BatchNormalization()
    y = layer(md.tensor(x)).numpy()                   # training mode: batch statistics
    mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
    np.testing.assert_allclose(y, (x - mean) / np.sqrt(var + 1e-3), rtol=1e-10)
    gamma, beta, moving_mean, moving_var = layer.get_weights()
    np.testing.assert_allclose(moving_mean, 0.99 * 0 + 0.01 * mean, rtol=1e-12)
    np.testing.assert_allclose(moving_var, 0.99 * 1 + 0.01 * var, rtol=1e-12)   # biased var
    assert layer.count_params() == 12 and len(layer.trainable_weights) == 2
    layer.eval()
    np.testing.assert_allclose(layer(md.tensor(x)).numpy(),
                               (x - moving_mean) / np.sqrt(moving_var + 1e-3), rtol=1e-10)
    # trainable=False: inference mode even while training, as Keras does
    layer.train()
    layer.trainable = False
    np.testing.assert_allclose(layer(md.tensor(x)).numpy(),
                               (x - moving_mean) / np.sqrt(moving_var + 1e-3), rtol=1e-10)
    np.testing.assert_array_equal(layer.get_weights()[2], moving_mean)


def test_normalization_adapt():
    data = np.random.default_rng(6).normal(5.0, 2.0, size=(100, 3))
    layer = L.Normalization()
    layer.adapt(data)
    np.testing.assert_allclose(layer(md.tensor(data)).numpy(),
                               (data - data.mean(0)) / data.std(0), rtol=1e-5, atol=1e-5)
    given = L.Normalization(mean=[1.0, 2.0], variance=[4.0, 0.0])
    np.testing.assert_allclose(given(md.tensor(np.array([[3.0, 2.5]]))).numpy(),
                               [[1.0, 0.5 / 1e-7]], rtol=1e-6)
    with pytest.raises(ValueError, match="call adapt\\(data\\) first"):
        L.Normalization()(md.tensor(data))


def test_activations_by_name_with_keras_defaults():
    x = np.array([-2.0, -0.5, 0.5, 3.0])
    t = md.tensor(x)
    act = keras.activations
    np.testing.assert_allclose(act.get("leaky_relu")(t).numpy(), np.where(x > 0, x, 0.2 * x))
    np.testing.assert_allclose(L.LeakyReLU()(t).numpy(), np.where(x > 0, x, 0.3 * x))
    sel = 1.0507009873554805 * np.where(x > 0, x, 1.6732632423543772 * (np.exp(x) - 1))
    np.testing.assert_allclose(act.get("selu")(t).numpy(), sel, rtol=1e-12)
    np.testing.assert_allclose(act.softplus(t).numpy(), np.log1p(np.exp(x)), rtol=1e-12)
    np.testing.assert_allclose(L.ReLU(max_value=1.0)(t).numpy(), np.clip(x, 0, 1))
    for name in ("relu", "tanh", "sigmoid", "softmax", "elu", "selu", "leaky_relu"):
        out = L.Dense(2, activation=name)(md.tensor(np.ones((1, 3))))
        assert out.shape == (1, 2)
    with pytest.raises(ValueError, match="unknown activation 'relu7'"):
        L.Dense(2, activation="relu7")


def _with_weights(layer, w, b):
    """Put gradcheck's leaves in place of the layer's weight and bias."""
    layer._parameters["weight"], layer._parameters["bias"] = w, b
    return layer


@pytest.mark.parametrize("make", [
    lambda: L.Conv2D(2, 3, strides=2, padding="same", activation="tanh"),
    lambda: L.Dense(3, activation="sigmoid")])
def test_gradcheck_of_keras_weight_layers_over_input_kernel_and_bias(make):
    rng = np.random.default_rng(7)
    shape = (2, 5, 5, 2) if "Conv" in make().__class__.__name__ else (4, 5)
    layer = _built(make(), shape, np.float64)
    x = md.tensor(rng.normal(size=shape), requires_grad=True)
    w = md.tensor(layer.weight.numpy(), requires_grad=True)
    b = md.tensor(rng.normal(size=layer.bias.shape), requires_grad=True)
    assert md.gradcheck(lambda x, w, b: _with_weights(layer, w, b)(x).sum(), x, w, b)


@pytest.mark.parametrize("layer", [
    lambda: L.AveragePooling2D(3, strides=2, padding="same"),
    lambda: L.BatchNormalization(),
    lambda: L.Flatten(data_format="channels_first"),
    lambda: L.GlobalAveragePooling2D()])
def test_gradcheck_of_keras_layers_over_the_input(layer):
    x = md.tensor(np.random.default_rng(8).normal(size=(3, 4, 5, 2)), requires_grad=True)
    m = layer()
    assert md.gradcheck(lambda x: (m(x) * md.tensor(np.arange(m(x).size, dtype=np.float64)
                                                    .reshape(m(x).shape))).sum(), x)


def test_keras_layers_on_a_device(device):
    x = np.random.default_rng(9).normal(size=(2, 6, 6, 3)).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((6, 6, 3)), L.Conv2D(4, 3, padding="same"),
                              L.BatchNormalization(), L.MaxPooling2D(), L.Flatten(),
                              L.Dense(2)])
    ref = model.predict(x)
    model.to(device)
    assert model.get_layer(index=0).weight.device == device
    np.testing.assert_allclose(model.predict(x), ref, rtol=1e-4, atol=1e-5)


def test_minidl_tools_work_on_a_keras_model(tmp_path):
    from minidl import flow, viz
    from minidl.summary import summary
    keras.utils.set_random_seed(0)
    inp = keras.Input((4,), name="x")
    h = L.Dense(8, activation="relu", name="hidden")(inp)
    model = keras.Model(inp, L.Dense(1, name="out")(h))
    rows = summary(model, (4,), verbose=False)
    assert rows.total_params == 4 * 8 + 8 + 8 + 1 and rows.total_macs == 4 * 8 + 8
    x = md.tensor(np.ones((3, 4), np.float32))
    with flow.Recorder(model) as rec:
        model(x).sum().backward()
    rows_by_layer = {r["layer"]: r for r in rec.rows}
    assert rows_by_layer["hidden"]["w_grad_norm"] == pytest.approx(
        np.linalg.norm(model.get_layer("hidden").weight.grad.numpy()), rel=1e-6)
    assert "digraph" in str(viz.to_dot(model(x)))
    md.io.save(model, tmp_path / "m.npz")
    assert set(md.io.load(tmp_path / "m.npz")) >= {"hidden.weight", "out.bias"}


def test_layers_take_numpy_arrays_and_initializers_by_name():
    x = np.ones((2, 3), np.float32)
    assert L.Dense(2)(x).shape == (2, 2)
    he = L.Dense(400, kernel_initializer="he_normal")
    _built(he, (1, 300))
    kernel = he.get_weights()[0]
    # truncated at two standard deviations of the untruncated normal, then rescaled
    std = np.sqrt(2 / 300) / 0.87962566103423978
    assert np.abs(kernel).max() <= 2 * std and kernel.std() == pytest.approx(np.sqrt(2 / 300),
                                                                              rel=0.03)
    ones = _built(L.Dense(2, kernel_initializer=keras.initializers.Constant(0.5),
                          bias_initializer="ones"), (1, 3))
    assert [w.tolist() for w in ones.get_weights()] == [[[0.5] * 2] * 3, [1.0, 1.0]]
    with pytest.raises(ValueError, match="unknown initializer 'glorot'"):
        L.Dense(2, kernel_initializer="glorot")
