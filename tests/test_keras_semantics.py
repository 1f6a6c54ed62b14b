"""Keras semantics the front end must share with Keras 3 (minidl/keras/, the Keras names of
minidl/train/losses.py): class axis last, dtype casts of targets and inputs, weights loaded by
structure, batch callbacks, scheduled learning rates, Sequential's summary table. Every
reference value is computed here with NumPy from Keras's definitions."""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
from minidl import keras
from minidl.gradcheck import gradcheck
from minidl.train import get_loss

EPS = 1e-7


def _softmax(z, axis=-1):
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _keras_cce(onehot, p):
    """Keras 3's categorical_crossentropy: rescale along the last axis, clip, log, sum over
    the last axis; the mean of what is left."""
    p = np.clip(p / p.sum(-1, keepdims=True), EPS, 1 - EPS)
    return float(np.mean(-(onehot * np.log(p)).sum(-1)))


# ---- 1. the class axis is the last one --------------------------------------------------------
@pytest.mark.parametrize("shape", [(6, 4), (2, 3, 4), (2, 3, 5, 4)])
def test_keras_cross_entropies_take_the_class_axis_last(shape):
    rng = np.random.default_rng(0)
    p = _softmax(rng.normal(size=shape))
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    onehot = np.eye(shape[-1])[labels]
    want = _keras_cce(onehot, p)
    cce = get_loss("categorical_crossentropy")(md.tensor(p), md.tensor(onehot)).item()
    scce = get_loss("sparse_categorical_crossentropy")(md.tensor(p), md.tensor(labels)).item()
    assert cce == pytest.approx(want, rel=1e-10)
    assert scce == pytest.approx(want, rel=1e-10)
    # from_logits: log_softmax over the last axis
    z = rng.normal(size=shape)
    want_logits = float(np.mean(-(onehot * np.log(_softmax(z))).sum(-1)))
    assert keras.losses.CategoricalCrossentropy(from_logits=True)(
        md.tensor(onehot), md.tensor(z)).item() == pytest.approx(want_logits, rel=1e-10)
    assert keras.losses.SparseCategoricalCrossentropy(from_logits=True)(
        md.tensor(labels), md.tensor(z)).item() == pytest.approx(want_logits, rel=1e-10)
    # Keras squeezes a trailing size-1 label axis: (N, 1) labels, (N, T, 1) labels
    column = labels[..., None]
    assert get_loss("sparse_categorical_crossentropy")(
        md.tensor(p), md.tensor(column)).item() == pytest.approx(want, rel=1e-10)


def test_keras_categorical_crossentropies_rescale_probabilities_to_sum_to_one():
    p, hot = np.array([[0.5, 0.5, 0.5]]), np.array([[1.0, 0.0, 0.0]])
    # Keras: p / sum(p) = 1/3 each, so -log(1/3) = 1.0986 (not -log(0.5) = 0.693)
    assert get_loss("categorical_crossentropy")(md.tensor(p), md.tensor(hot)).item() == \
        pytest.approx(np.log(3.0), rel=1e-10)
    assert get_loss("sparse_categorical_crossentropy")(md.tensor(p), md.tensor([0])).item() == \
        pytest.approx(np.log(3.0), rel=1e-10)
    # the rescaling is differentiated too
    rng = np.random.default_rng(1)
    q = md.tensor(rng.uniform(0.1, 1.0, size=(2, 3, 4)), requires_grad=True)
    soft = md.tensor(_softmax(rng.normal(size=(2, 3, 4))))
    labels = md.tensor(rng.integers(0, 4, size=(2, 3)))
    assert gradcheck(lambda a: get_loss("categorical_crossentropy")(a, soft), q)
    assert gradcheck(lambda a: get_loss("sparse_categorical_crossentropy")(a, labels), q)


def test_sparse_labels_of_the_wrong_shape_are_a_one_line_error():
    p = md.tensor(_softmax(np.zeros((2, 3, 4))))
    with pytest.raises(ValueError, match=r"sparse_categorical_crossentropy: .*\(2, 3\), got "
                                         r"\(2, 4\)"):
        get_loss("sparse_categorical_crossentropy")(p, md.tensor(np.zeros((2, 4), np.int64)))


def test_keras_models_train_on_sequences_and_per_pixel_labels():
    rng = np.random.default_rng(0)
    md.manual_seed(0)
    # segmentation: (N, H, W, C) softmax outputs and (N, H, W) labels
    x = rng.normal(size=(8, 6, 6, 3)).astype(np.float32)
    y = rng.integers(0, 4, (8, 6, 6))
    seg = keras.Sequential([keras.Input((6, 6, 3)),
                            keras.layers.Conv2D(8, 3, padding="same", activation="relu"),
                            keras.layers.Conv2D(4, 1, activation="softmax")])
    seg.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                metrics=["accuracy"])
    seg.fit(x, y, epochs=2, verbose=0)
    loss, acc = seg.evaluate(x, y, batch_size=8)
    p = seg.predict(x).astype(np.float64)
    assert loss == pytest.approx(_keras_cce(np.eye(4)[y], p), rel=1e-5)
    assert acc == pytest.approx(np.mean(p.argmax(-1) == y))
    # sequences: (N, T, C) with (N, T) labels, and one-hot (N, T, C) targets
    xs = rng.normal(size=(8, 5, 7)).astype(np.float32)
    ys = rng.integers(0, 3, (8, 5))
    s = keras.Sequential([keras.Input((5, 7)), keras.layers.Dense(3, activation="softmax")])
    s.compile(optimizer="adam", loss="categorical_crossentropy", metrics=["accuracy"])
    hist = s.fit(xs, np.eye(3, dtype=np.float32)[ys], epochs=3, verbose=0)
    p = s.predict(xs).astype(np.float64)
    loss, acc = s.evaluate(xs, np.eye(3, dtype=np.float32)[ys])
    assert loss == pytest.approx(_keras_cce(np.eye(3)[ys], p), rel=1e-5)
    assert acc == pytest.approx(np.mean(p.argmax(-1) == ys))
    assert hist.history["loss"][-1] < hist.history["loss"][0]


def test_keras_accuracy_metrics_take_the_class_axis_last():
    rng = np.random.default_rng(2)
    p = rng.normal(size=(4, 3, 5))
    labels = rng.integers(0, 5, size=(4, 3))
    rank = (p > np.take_along_axis(p, labels[..., None], -1)).sum(-1)     # scores beating it
    cases = {
        "sparse_top_k_categorical_accuracy": (labels[..., None], np.mean(rank < 5)),
        "top_k_categorical_accuracy": (np.eye(5)[labels], np.mean(rank < 5)),
    }
    for k in (1, 2):
        got = keras.metrics.SparseTopKCategoricalAccuracy(k=k)
        got.update(md.tensor(p), md.tensor(labels[..., None]))       # (N, T, 1) labels
        assert got.compute() == pytest.approx(np.mean(rank < k))
        hot = keras.metrics.TopKCategoricalAccuracy(k=k)
        hot.update(md.tensor(p), md.tensor(np.eye(5)[labels]))
        assert hot.compute() == pytest.approx(np.mean(rank < k))
    for name, (target, want) in cases.items():
        m = keras.metrics.get(name)
        m.update(md.tensor(p), md.tensor(target))
        assert m.compute() == pytest.approx(want)
    # 'accuracy' after a loss that does not decide it: Keras 3's rule from the shapes
    for target, want in ((labels, np.mean(p.argmax(-1) == labels)),
                         (np.eye(5)[labels], np.mean(p.argmax(-1) == labels))):
        m = keras.metrics.get("accuracy", loss="mse")
        m.update(md.tensor(p), md.tensor(target))
        assert m.compute() == pytest.approx(want)
    q, b = rng.uniform(size=(6, 1)), rng.integers(0, 2, size=(6, 1))
    m = keras.metrics.get("accuracy", loss=lambda t, o: o)
    m.update(md.tensor(q), md.tensor(b))
    assert m.compute() == pytest.approx(np.mean((q > 0.5) == b))


# ---- 2. integer and bool targets are cast to the output's dtype --------------------------------
@pytest.mark.parametrize("name", ["mse", "mae", "binary_crossentropy", "huber", "kld",
                                  "categorical_crossentropy"])
@pytest.mark.parametrize("kind", [np.int64, np.bool_])
def test_non_sparse_keras_losses_cast_integer_and_bool_targets(name, kind):
    rng = np.random.default_rng(3)
    out = rng.uniform(0.05, 0.95, size=(6, 2)).astype(np.float32)
    target = rng.integers(0, 2, size=(6, 2)).astype(kind)
    ref = get_loss(name)(md.tensor(out), md.tensor(target.astype(np.float32)))
    o = md.tensor(out, requires_grad=True)
    got = get_loss(name)(o, md.tensor(target))
    got.backward()
    assert got.dtype == np.float32 and o.grad.dtype == np.float32
    assert got.item() == ref.item()


def test_keras_fit_takes_integer_and_bool_targets_as_keras_does():
    rng = np.random.default_rng(0)
    x = rng.random((64, 6)).astype(np.float32)
    y = rng.integers(0, 10, 64)
    for loss, target, last in (("mse", y, None), ("binary_crossentropy", y > 4, "sigmoid"),
                               (lambda t, p: md.functional.mean((p - t) ** 2), y, None)):
        md.manual_seed(0)
        m = keras.Sequential([keras.Input((6,)), keras.layers.Dense(1, activation=last)])
        m.compile(loss=loss, optimizer="sgd")
        p = m.predict(x).astype(np.float64)
        t = target.astype(np.float64)[:, None]
        want = (np.mean((p - t) ** 2) if loss != "binary_crossentropy" else
                -np.mean(t * np.log(p) + (1 - t) * np.log(1 - p)))
        assert m.evaluate(x, target, batch_size=64) == pytest.approx(want, rel=1e-5)
        m.fit(x, target, epochs=1, verbose=0)
        assert all(w.dtype == np.float32 for w in m.get_weights())


# ---- 3. integer inputs are cast to the weights' dtype -----------------------------------------
def test_integer_and_bool_inputs_build_and_train_a_float32_model():
    x = np.array([[0, 0], [0, 1], [1, 0], [1, 1]])
    y = np.array([[0], [1], [1], [0]])
    for data in (x, x.astype(bool), x.astype(np.float64)):
        md.manual_seed(0)
        model = keras.Sequential([keras.layers.Dense(8, activation="tanh"),
                                  keras.layers.Dense(1, activation="sigmoid")])
        model.compile(optimizer="adam", loss="mse")
        p = model.predict(data)
        assert p.dtype == np.float32
        assert [w.dtype for w in model.get_weights()] == [np.float32] * 4
        k, b, k2, b2 = model.get_weights()              # Keras layout: kernel (in, units)
        want = 1 / (1 + np.exp(-(np.tanh(x @ k + b) @ k2 + b2)))
        np.testing.assert_allclose(p, want, rtol=1e-5)
        hist = model.fit(data, y, epochs=3, batch_size=4, verbose=0)
        assert np.isfinite(hist.history["loss"]).all()
    inp = keras.Input((2,))
    func = keras.Model(inp, keras.layers.Dense(1)(inp))
    func.compile(optimizer="sgd", loss="mse")
    assert func.predict(x).dtype == np.float32
    func.fit(x, y, epochs=1, verbose=0)
    assert all(w.dtype == np.float32 for w in func.get_weights())


# ---- 4. functional weights load by structure -----------------------------------------------
def _conv_net(units=2):
    inp = keras.Input((4, 4, 3))
    h = keras.layers.Conv2D(2, 3, padding="same")(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.Flatten()(h)
    return keras.Model(inputs=inp, outputs=keras.layers.Dense(units)(h))


def test_a_functional_model_rebuilt_in_the_same_session_loads_its_weights(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 4, 4, 3)).astype(np.float32)
    y = rng.normal(size=(8, 2)).astype(np.float32)
    md.manual_seed(0)
    first = _conv_net()
    first.compile(optimizer="adam", loss="mse")
    first.fit(x, y, epochs=2, verbose=0)
    path = tmp_path / "w.weights.h5"
    first.save_weights(path)
    again = _conv_net()                                     # new names: conv2d_1, dense_1, ...
    assert [m.name for m in again.layers] != [m.name for m in first.layers]
    again.compile(optimizer="adam", loss="mse")
    again.load_weights(path)
    np.testing.assert_array_equal(again.predict(x), first.predict(x))
    for a, b in zip(again.get_weights(), first.get_weights()):   # moving statistics too
        np.testing.assert_array_equal(a, b)
    other = _conv_net(units=3)
    before = other.get_weights()
    with pytest.raises(ValueError, match=r"dense_\d+\.weight \(2, 32\) meets the model's "
                                         r"dense_\d+\.weight \(3, 32\).*clear_session\(\)"):
        other.load_weights(path)
    assert all(np.array_equal(a, b) for a, b in zip(other.get_weights(), before))


# ---- 5. Keras-style batch callbacks --------------------------------------------------------
def _frozen_regression():
    """A Dense(1) model trained with learning rate 0 (its batch losses are known), its data."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3)).astype(np.float32)
    y = rng.normal(size=(30, 1)).astype(np.float32)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse",
                  metrics=["mae"])
    return model, x, y


def test_batch_hooks_by_both_names_get_keras_running_logs():
    model, x, y = _frozen_regression()
    k, b = model.get_weights()
    err = (x @ k + b - y).astype(np.float64)
    sizes = [8, 8, 8, 6]                              # 30 samples in batches of 8
    ends = np.cumsum(sizes)
    want_loss = [np.mean(err[:e] ** 2) for e in ends]  # sample-weighted running means
    want_mae = [np.mean(np.abs(err[:e])) for e in ends]

    class Alias(keras.callbacks.Callback):            # Keras's alias names, as books write them
        def __init__(self):
            self.events = []

        def on_epoch_begin(self, epoch, logs=None):
            self.events.append(("epoch", epoch))

        def on_batch_begin(self, batch, logs=None):
            self.events.append(("begin", batch))

        def on_batch_end(self, batch, logs=None):
            self.events.append(("end", batch, logs["loss"], logs["mae"]))

    class Full(keras.callbacks.Callback):
        def __init__(self):
            self.losses = []

        def on_train_batch_end(self, batch, logs=None):
            self.losses.append(logs["loss"])

    alias, full, seen = Alias(), Full(), []
    lam = keras.callbacks.LambdaCallback(on_batch_end=lambda batch, logs: seen.append(batch),
                                         on_train_batch_begin=lambda b, logs: seen.append(-b))
    hist = model.fit(x, y, epochs=2, batch_size=8, shuffle=False, verbose=0,
                     callbacks=[alias, full, lam])
    per_epoch = [("epoch", 0)]
    for i in range(4):
        per_epoch += [("begin", i), ("end", i)]
    assert [e[:2] for e in alias.events] == per_epoch + [("epoch", 1)] + per_epoch[1:]
    ends_logged = [e for e in alias.events if e[0] == "end"]
    assert [e[2] for e in ends_logged] == pytest.approx(want_loss * 2, rel=1e-6)
    assert [e[3] for e in ends_logged] == pytest.approx(want_mae * 2, rel=1e-6)
    assert full.losses == pytest.approx(want_loss * 2, rel=1e-6)
    assert full.losses[-1] == pytest.approx(hist.history["loss"][-1], rel=1e-9)
    assert seen == [0, 0, -1, 1, -2, 2, -3, 3] * 2
    with pytest.raises(TypeError, match="LambdaCallback: unexpected argument.*on_test_batch_end"):
        keras.callbacks.LambdaCallback(on_test_batch_end=print)


# ---- 6. a scheduled learning rate reads as Keras's schedule(iterations) ------------------------
def test_scheduled_learning_rate_is_the_one_of_the_next_update():
    sched = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    model, x, y = _frozen_regression()
    opt = keras.optimizers.SGD(learning_rate=sched)
    assert opt.learning_rate == pytest.approx(0.1)               # schedule(0) before any step
    model.compile(optimizer=opt, loss="mse")
    model.fit(x, y, epochs=3, batch_size=8, verbose=0)           # 3 epochs of 4 updates
    assert opt.iterations == 12
    assert model.optimizer.learning_rate == pytest.approx(0.1 * 0.5 ** (12 / 10), rel=1e-12)
    assert opt.lr == opt.learning_rate


# ---- 7. Sequential.summary prints Keras's table ------------------------------------------------
def test_sequential_summary_is_keras_table(capsys):
    import re
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(4, 3),
                              keras.layers.Flatten(),
                              keras.layers.Dense(30, activation="relu", name="hidden"),
                              keras.layers.BatchNormalization(name="bn"),
                              keras.layers.Dense(10, activation="softmax", name="out")],
                             name="mnist")
    model.summary()
    text = capsys.readouterr().out
    rows = {r[0]: r[1:] for r in (re.split(r"\s{2,}", ln.strip()) for ln in text.splitlines())
            if len(r) > 1}
    conv, flat = model.layers[0].name, model.layers[1].name
    assert list(rows) == ["Layer (type)", f"{conv} (Conv2D)", f"{flat} (Flatten)",
                          "hidden (Dense)", "bn (BatchNormalization)", "out (Dense)"]
    assert rows[f"{conv} (Conv2D)"] == ["(None, 26, 26, 4)", "40"]      # 3*3*1*4 + 4
    assert rows[f"{flat} (Flatten)"] == ["(None, 2704)", "0"]
    assert rows["hidden (Dense)"] == ["(None, 30)", f"{2704 * 30 + 30:,}"]
    assert rows["bn (BatchNormalization)"] == ["(None, 30)", "120"]     # 4 weights of 30
    assert rows["out (Dense)"] == ["(None, 10)", "310"]
    total = 40 + 2704 * 30 + 30 + 120 + 310
    assert text.startswith('Model: "mnist"')
    assert f"Total params: {total:,}" in text and "Non-trainable params: 60" in text
    assert f"Trainable params: {total - 60:,}" in text


def test_last_axis_losses_and_metrics_on_the_device(device):
    rng = np.random.default_rng(4)
    p = _softmax(rng.normal(size=(3, 4, 5))).astype(np.float32)
    labels = rng.integers(0, 5, size=(3, 4))
    want = _keras_cce(np.eye(5)[labels], p.astype(np.float64))
    out = md.tensor(p, device=device)
    for name, target in (("sparse_categorical_crossentropy", labels),
                         ("categorical_crossentropy", np.eye(5, dtype=np.int64)[labels])):
        value = get_loss(name)(out, md.tensor(target, device=device))
        assert value.device == out.device and value.dtype == np.float32
        assert value.item() == pytest.approx(want, rel=1e-5)
    m = keras.metrics.SparseTopKCategoricalAccuracy(k=2)
    m.update(out, md.tensor(labels, device=device))
    rank = (p > np.take_along_axis(p, labels[..., None], -1)).sum(-1)
    assert m.compute() == pytest.approx(np.mean(rank < 2))


@pytest.mark.parametrize("make, x", [
    (lambda reg: keras.layers.Dense(3, kernel_regularizer=reg), np.ones((2, 5), np.float32)),
    (lambda reg: keras.layers.Conv2D(4, 3, kernel_regularizer=reg),
     np.ones((1, 5, 5, 2), np.float32))])
def test_a_custom_regularizer_sees_the_kernel_in_keras_layout(make, x):
    """A callable regularizer that reads one slice of the kernel: its value and its gradient
    are those of that slice in Keras's layout (Dense (in, units), Conv2D (kh, kw, in, out))."""
    layer = make(lambda k: (k[0] ** 2).sum())
    layer(x)
    penalty = layer.weight.regularizer(layer.weight)
    penalty.backward()
    kernel = layer.kernel.data
    np.testing.assert_allclose(float(penalty.data), float((kernel[0] ** 2).sum()), rtol=1e-6)
    grad = layer.to_keras(layer.weight.grad.data)
    np.testing.assert_allclose(grad[0], 2 * kernel[0], rtol=1e-6)
    assert not grad[1:].any()
