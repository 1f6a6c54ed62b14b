"""Keras training pieces (minidl/keras/): optimizers' update rules with Keras's defaults, losses
and metrics by Keras's names, callbacks, weights files and lists, dict inputs and losses,
trainable=False."""
from __future__ import annotations

import csv

import numpy as np
import pytest

import minidl as md
from minidl import keras, parallel
from minidl.keras import layers as L


def _one_param(opt, w0, grads):
    """Run ``opt`` on one parameter with the given gradient sequence; return its values."""
    w = md.tensor(np.array(w0, np.float64), requires_grad=True)
    opt.build([w])
    out = []
    for g in grads:
        w.grad = md.tensor(np.array(g, np.float64))
        opt.step()
        out.append(w.numpy().copy())
    return out


W0, GRADS = [1.0, -2.0, 0.5], [[0.1, -0.3, 2.0], [0.2, 0.1, -1.0], [-0.5, 0.4, 0.3]]


def test_sgd_with_keras_defaults_and_momentum():
    got = _one_param(keras.optimizers.SGD(), W0, GRADS[:1])
    np.testing.assert_allclose(got[0], np.array(W0) - 0.01 * np.array(GRADS[0]))
    w, v = np.array(W0), np.zeros(3)
    opt = keras.optimizers.SGD(learning_rate=0.1, momentum=0.9)
    for got_w, g in zip(_one_param(opt, W0, GRADS), GRADS):
        v = 0.9 * v - 0.1 * np.array(g)
        w = w + v
        np.testing.assert_allclose(got_w, w, rtol=1e-12)
    assert opt.iterations == 3


def test_adam_is_keras_adam_with_epsilon_outside_the_bias_corrected_sqrt():
    opt = keras.optimizers.Adam(epsilon=0.1)       # a large epsilon makes the form visible
    assert (opt.learning_rate, opt.defaults["beta_1"], opt.defaults["beta_2"]) == \
        (0.001, 0.9, 0.999)
    assert keras.optimizers.Adam().defaults["epsilon"] == 1e-7
    w, m, v = np.array(W0), np.zeros(3), np.zeros(3)
    for t, (got_w, g) in enumerate(zip(_one_param(opt, W0, GRADS), GRADS), start=1):
        g = np.array(g)
        m = m + (g - m) * 0.1
        v = v + (g * g - v) * 0.001
        alpha = 0.001 * np.sqrt(1 - 0.999 ** t) / (1 - 0.9 ** t)
        w = w - m * alpha / (np.sqrt(v) + 0.1)
        np.testing.assert_allclose(got_w, w, rtol=1e-12)
    torch_form = W0[0] - 0.001 * GRADS[0][0] / (abs(GRADS[0][0]) + 0.1)
    assert not np.isclose(_one_param(keras.optimizers.Adam(epsilon=0.1), W0, GRADS[:1])[0][0],
                          torch_form)


def test_rmsprop_adagrad_nadam_follow_keras_formulas():
    w, v = np.array(W0), np.zeros(3)
    for got_w, g in zip(_one_param(keras.optimizers.RMSprop(), W0, GRADS), GRADS):
        g = np.array(g)
        v = 0.9 * v + 0.1 * g * g
        w = w - 0.001 * g / np.sqrt(v + 1e-7)
        np.testing.assert_allclose(got_w, w, rtol=1e-12)
    w, acc = np.array(W0), np.full(3, 0.1)
    for got_w, g in zip(_one_param(keras.optimizers.Adagrad(), W0, GRADS), GRADS):
        g = np.array(g)
        acc = acc + g * g
        w = w - 0.001 * g / np.sqrt(acc + 1e-7)
        np.testing.assert_allclose(got_w, w, rtol=1e-12)
    w, m, v, prod = np.array(W0), np.zeros(3), np.zeros(3), 1.0
    for t, (got_w, g) in enumerate(zip(_one_param(keras.optimizers.Nadam(), W0, GRADS), GRADS),
                                   start=1):
        g = np.array(g)
        u_t, u_t1 = 0.9 * (1 - 0.5 * 0.96 ** t), 0.9 * (1 - 0.5 * 0.96 ** (t + 1))
        prod *= u_t
        m = m + (g - m) * 0.1
        v = v + (g * g - v) * 0.001
        m_hat = u_t1 * m / (1 - prod * u_t1) + (1 - u_t) * g / (1 - prod)
        w = w - 0.001 * m_hat / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-7)
        np.testing.assert_allclose(got_w, w, rtol=1e-12)


def test_optimizer_names_get_keras_defaults_and_unknown_arguments_are_refused():
    model = keras.Sequential([keras.Input((2,)), L.Dense(1)])
    for name, cls, lr in (("sgd", keras.optimizers.SGD, 0.01), ("adam", keras.optimizers.Adam,
                                                                 1e-3),
                          ("rmsprop", keras.optimizers.RMSprop, 1e-3)):
        model.compile(optimizer=name, loss="mse")
        assert type(model.optimizer) is cls and model.optimizer.learning_rate == lr
    with pytest.raises(TypeError, match=r"Adam: unexpected keyword argument\(s\) \['lr_decay'\]"):
        keras.optimizers.Adam(lr_decay=0.1)
    with pytest.raises(ValueError, match="use_ema is not supported"):
        keras.optimizers.SGD(use_ema=True)


def test_sparse_categorical_crossentropy_on_probabilities_and_logits():
    z = np.array([[2.0, 1.0, 0.1], [0.5, 2.5, -1.0]])
    y = np.array([0, 2])
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    expected = -np.mean(np.log(p[np.arange(2), y]))
    scce = keras.losses.SparseCategoricalCrossentropy
    assert scce()(md.tensor(y), md.tensor(p)).item() == pytest.approx(expected, rel=1e-12)
    assert scce(from_logits=True)(md.tensor(y), md.tensor(z)).item() == pytest.approx(
        expected, rel=1e-12)
    assert keras.losses.sparse_categorical_crossentropy(md.tensor(y), md.tensor(p)).item() == \
        pytest.approx(expected, rel=1e-12)
    # compile with the object: the model ends in logits here
    inp = keras.Input((3,))
    model = keras.Model(inp, L.Dense(3, kernel_initializer="zeros")(inp))
    model.compile(optimizer="sgd", loss=scce(from_logits=True), metrics=["accuracy"])
    loss, acc = model.evaluate(np.zeros((2, 3), np.float32), y)
    assert loss == pytest.approx(np.log(3), rel=1e-6)
    cce = keras.losses.CategoricalCrossentropy(from_logits=True)
    assert cce(md.tensor(np.eye(3)[y]), md.tensor(z)).item() == pytest.approx(expected,
                                                                              rel=1e-12)
    assert keras.losses.MeanSquaredError(reduction="sum")(
        md.tensor([[1.0], [2.0]]), md.tensor([[0.0], [0.0]])).item() == pytest.approx(5.0)


def test_keras_metric_names_and_accuracy_resolved_from_the_loss():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    inp = keras.Input((4,))
    model = keras.Model(inp, L.Dense(3, activation="softmax")(inp))
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy", "sparse_categorical_accuracy",
                           keras.metrics.SparseTopKCategoricalAccuracy(k=2),
                           lambda y_true, y_pred: (y_pred.argmax(axis=1) == y_true)
                           .astype(np.float32)])
    logs = model.evaluate(x, y, return_dict=True)
    pred = model.predict(x)
    acc = np.mean(pred.argmax(1) == y)
    top2 = np.mean((pred > pred[np.arange(40), y][:, None]).sum(1) < 2)
    assert list(logs) == ["loss", "accuracy", "sparse_categorical_accuracy",
                          "sparse_top_k_categorical_accuracy", "<lambda>"]
    assert list(logs.values())[1:] == pytest.approx([acc, acc, top2, acc])
    # binary: 'accuracy' is binary_accuracy, element by element
    out = keras.Model(inp, L.Dense(2, activation="sigmoid")(inp))
    out.compile(optimizer="sgd", loss="binary_crossentropy", metrics=["accuracy"])
    yb = rng.integers(0, 2, (40, 2)).astype(np.float32)
    assert out.evaluate(x, yb)[1] == pytest.approx(np.mean((out.predict(x) > 0.5) == yb))


def test_validation_split_takes_the_last_fraction():
    x = np.arange(10, dtype=np.float32)[:, None]
    y = x * 0
    seen = []
    model = keras.Sequential([keras.Input((1,)), L.Dense(1, kernel_initializer="ones")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    model.fit(x, y, validation_split=0.2, epochs=1, verbose=0, batch_size=3,
              callbacks=[keras.callbacks.LambdaCallback(
                  on_epoch_end=lambda epoch, logs: seen.append(logs))])
    assert seen[0]["loss"] == pytest.approx(np.mean(x[:8] ** 2))
    assert seen[0]["val_loss"] == pytest.approx(np.mean(x[8:] ** 2))     # rows 8 and 9


def _matmul_shapes(monkeypatch):
    shapes = []
    real = parallel.matmul

    def spy(a, b, *args, **kwargs):
        out = real(a, b, *args, **kwargs)
        shapes.append(tuple(out.shape))
        return out
    monkeypatch.setattr(parallel, "matmul", spy)
    return shapes


def test_trainable_false_dense_costs_no_weight_gradient_gemm_and_is_unchanged(monkeypatch):
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(1).normal(size=(64, 3)).astype(np.float32)
    y = x.sum(1, keepdims=True)

    def build(trainable):
        prev = keras.layers.Input(shape=[3])
        curr = keras.layers.Dense(32, trainable=trainable, name="frozen")(prev)
        hidden = keras.layers.Dense(16, activation="relu", name="hidden")(curr)
        return keras.Model(prev, keras.layers.Dense(1, name="head")(hidden))

    shapes = _matmul_shapes(monkeypatch)
    for trainable, want in ((True, True), (False, False)):
        model = build(trainable)
        loss = ((model(md.tensor(x)) - md.tensor(y)) ** 2).mean()
        shapes.clear()
        loss.backward()
        assert ((32, 3) in shapes) is want                # the frozen kernel's gradient GEMM
        assert (model.get_layer("frozen").weight.grad is None) is not want
    model = build(False)
    before = model.get_weights()
    model.compile(optimizer="adam", loss="mse")
    model.fit(x, y, epochs=2, verbose=0)
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    assert not np.allclose(after[2], before[2])
    model.trainable = False                                # a whole model, as Keras teaches
    frozen = model.get_weights()
    model.compile(optimizer="adam", loss="mse")
    with pytest.warns(UserWarning, match="no trainable weights"):
        hist = model.fit(x, y, epochs=1, verbose=0)
    assert hist.history["loss"][0] > 0
    for a, b in zip(model.get_weights(), frozen):
        np.testing.assert_array_equal(a, b)


def test_save_weights_load_weights_round_trip_and_refusals(tmp_path):
    keras.utils.set_random_seed(0)

    def build():
        return keras.Sequential([keras.Input((4,)), L.Dense(5), L.BatchNormalization(),
                                 L.Dense(2)])
    model = build()
    model.compile(optimizer="sgd", loss="mse")
    model.fit(np.ones((8, 4), np.float32), np.zeros((8, 2), np.float32), verbose=0)
    path = tmp_path / "my_model.weights.h5"
    model.save_weights(path)
    other = build()
    assert not np.allclose(other.get_weights()[0], model.get_weights()[0])
    other.load_weights(path)
    for a, b in zip(other.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert [w.shape for w in model.get_weights()] == [(4, 5), (5,), (5,), (5,), (5,), (5,),
                                                      (5, 2), (2,)]
    assert model.count_params() == 4 * 5 + 5 + 4 * 5 + 5 * 2 + 2
    wrong = keras.Sequential([keras.Input((4,)), L.Dense(5), L.Dense(2)])
    kept = wrong.get_weights()
    with pytest.raises(ValueError, match="nothing was changed"):
        wrong.load_weights(path)
    for a, b in zip(wrong.get_weights(), kept):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"set_weights: expected 4 arrays"):
        wrong.set_weights(model.get_weights())
    with pytest.raises(ValueError, match=r"array 0 has shape \(5, 4\), the weight expects "
                                         r"\(4, 5\)"):
        wrong.set_weights([w.T for w in kept])
    with pytest.raises(NotImplementedError, match="save_weights"):
        model.save(tmp_path / "m.keras")
    with pytest.raises(NotImplementedError, match="load_weights"):
        keras.models.load_model(tmp_path / "m.keras")


def test_early_stopping_restores_the_best_weights():
    keras.utils.set_random_seed(0)
    x = np.random.default_rng(2).normal(size=(32, 2)).astype(np.float32)
    y = x @ np.array([[1.0], [-1.0]], np.float32)
    model = keras.Sequential([keras.Input((2,)), L.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.05), loss="mse")
    snapshots, val = [], iter([3.0, 1.0, 2.0, 2.5, 0.5])

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append(self.model.get_weights())

    # the monitored figure is scripted so the best epoch is known: epoch 2 (index 1)
    scripted = keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: None)
    stop = keras.callbacks.EarlyStopping(monitor="loss", patience=2, restore_best_weights=True)
    assert stop.patience == 2 and stop.restore_best_weights
    real_value = stop._monitor.value
    stop._monitor.value = lambda logs: next(val)
    hist = model.fit(x, y, epochs=5, verbose=0, callbacks=[Record(), scripted, stop])
    stop._monitor.value = real_value
    assert len(hist.history["loss"]) == 4 and stop.stopped_epoch == 4    # stopped early
    for a, b in zip(model.get_weights(), snapshots[1]):
        np.testing.assert_array_equal(a, b)
    assert not np.allclose(snapshots[3][0], snapshots[1][0])
    assert keras.callbacks.EarlyStopping().patience == 0                 # Keras's default
    assert not keras.callbacks.EarlyStopping().restore_best_weights
    from minidl.train import EarlyStopping as MinidlEarlyStopping  # Keras's name works there
    assert MinidlEarlyStopping().restore_best
    assert not MinidlEarlyStopping(restore_best_weights=False).restore_best


def test_keras_callback_subclass_can_stop_training_and_csv_logger(tmp_path):
    class StopAtTwo(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.stop_training = True

    model = keras.Sequential([keras.Input((1,)), L.Dense(1)])
    model.compile(optimizer="sgd", loss="mse", metrics=["mae"])
    x = np.ones((4, 1), np.float32)
    log = tmp_path / "log.csv"
    hist = model.fit(x, x, epochs=5, verbose=0, validation_data=(x, x),
                     callbacks=[StopAtTwo(), keras.callbacks.CSVLogger(log)])
    assert len(hist.history["loss"]) == 2
    rows = list(csv.reader(open(log)))
    assert rows[0] == ["epoch", "loss", "mae", "val_loss", "val_mae"]
    assert [r[0] for r in rows[1:]] == ["0", "1"]
    assert float(rows[2][1]) == pytest.approx(hist.history["loss"][1])


def test_learning_rate_scheduler_reduce_on_plateau_and_model_checkpoint(tmp_path):
    model = keras.Sequential([keras.Input((1,)), L.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    x = np.ones((4, 1), np.float32)
    lrs = []
    model.fit(x, x, epochs=3, verbose=0, callbacks=[
        keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.5 if epoch else lr),
        keras.callbacks.LambdaCallback(
            on_epoch_end=lambda e, logs: lrs.append(model.optimizer.learning_rate))])
    assert lrs == pytest.approx([0.1, 0.05, 0.025])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0), loss="mse")
    model.optimizer.learning_rate = 1.0
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1,
                                                min_lr=0.3)
    lrs.clear()
    # lr 1.0 with a constant loss: loss stops improving; halved after each flat epoch
    model.optimizer.learning_rate = 0.0
    model.fit(x, x, epochs=4, verbose=0, callbacks=[plateau, keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: lrs.append(model.optimizer.learning_rate))])
    assert lrs == [0.0, 0.0, 0.0, 0.0]                  # already below min_lr: unchanged
    model.optimizer.learning_rate = 1e-9
    plateau = keras.callbacks.ReduceLROnPlateau(monitor="loss", factor=0.5, patience=1)
    lrs.clear()
    model.fit(x, x, epochs=3, verbose=0, callbacks=[plateau, keras.callbacks.LambdaCallback(
        on_epoch_end=lambda e, logs: lrs.append(model.optimizer.learning_rate))])
    assert lrs == pytest.approx([1e-9, 5e-10, 2.5e-10])
    ckpt = keras.callbacks.ModelCheckpoint(tmp_path / "w-{epoch:02d}.weights.h5",
                                           save_weights_only=True)
    model.fit(x, x, epochs=2, verbose=0, callbacks=[ckpt])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w-01.weights.h5", "w-02.weights.h5"]
    fresh = keras.Sequential([keras.Input((1,)), L.Dense(1)])
    fresh.load_weights(tmp_path / "w-02.weights.h5")
    np.testing.assert_array_equal(fresh.get_weights()[0], model.get_weights()[0])


def _two_outputs():
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    h = L.concatenate([a, L.Dense(4, activation="relu")(b)])
    return keras.Model(inputs={"a": a, "b": b},
                       outputs={"main": L.Dense(1, name="main")(h),
                                "aux": L.Dense(1, name="aux")(h)})


def test_dict_inputs_outputs_losses_and_loss_weights():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(3)
    x = {"a": rng.normal(size=(20, 3)).astype(np.float32),
         "b": rng.normal(size=(20, 2)).astype(np.float32)}
    y = {"main": rng.normal(size=(20, 1)).astype(np.float32),
         "aux": rng.normal(size=(20, 1)).astype(np.float32)}
    model = _two_outputs()
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.0),
                  loss={"main": "mse", "aux": keras.losses.MeanAbsoluteError()},
                  loss_weights={"main": 2.0, "aux": 0.5}, metrics={"main": ["mae"]})
    pred = model.predict(x)
    assert set(pred) == {"main", "aux"} and pred["main"].shape == (20, 1)
    mse = np.mean((pred["main"] - y["main"]) ** 2)
    mae_aux = np.mean(np.abs(pred["aux"] - y["aux"]))
    total, main, aux, main_mae = model.evaluate(x, y)
    assert [total, main, aux] == pytest.approx([2 * mse + 0.5 * mae_aux, mse, mae_aux],
                                               rel=1e-5)
    assert main_mae == pytest.approx(np.mean(np.abs(pred["main"] - y["main"])), rel=1e-5)
    hist = model.fit(x, y, epochs=1, verbose=0)
    assert list(hist.history) == ["loss", "main_loss", "aux_loss", "main_mae"]
    out = model({"a": md.tensor(x["a"]), "b": md.tensor(x["b"])})
    assert set(out) == {"main", "aux"}
    with pytest.raises(ValueError, match=r"^fit: y has unknown keys \['extra'\]; expected the "
                                         r"keys \['main', 'aux'\]$"):
        model.fit(x, {**y, "extra": y["aux"]}, verbose=0)
    with pytest.raises(ValueError, match=r"^compile: losses has unknown keys \['mian'\]; "
                                         r"expected the output names \['main', 'aux'\]$"):
        model.compile(optimizer="sgd", loss={"mian": "mse", "aux": "mse"})
    with pytest.raises(ValueError, match=r"no loss for output\(s\) \['aux'\]"):
        model.compile(optimizer="sgd", loss={"main": "mse"})
    with pytest.raises(ValueError, match=r"^predict: x lacks \['b'\]; expected the keys "
                                         r"\['a', 'b'\]$"):
        model.predict({"a": x["a"]})


def test_sequential_takes_dict_x_and_y_by_its_input_and_last_layer_names():
    model = keras.Sequential([keras.Input((2,), name="features"), L.Dense(1, name="price")])
    model.compile(optimizer="sgd", loss="mse")
    x, y = np.ones((4, 2), np.float32), np.zeros((4, 1), np.float32)
    assert model.evaluate({"features": x}, {"price": y}) == pytest.approx(model.evaluate(x, y))
    with pytest.raises(ValueError, match=r"^evaluate: x lacks \['features'\] and has unknown "
                                         r"keys \['feature'\]; expected the keys "
                                         r"\['features'\]$"):
        model.evaluate({"feature": x}, y)


def test_sequential_builds_lazily_with_add_and_input_shape(capsys):
    keras.utils.set_random_seed(0)
    model = keras.models.Sequential()
    model.add(keras.layers.Flatten(input_shape=[4, 2]))
    model.add(keras.layers.Dense(3, activation="relu"))
    model.add(keras.layers.Dense(2, activation="softmax"))
    assert model.input_shape == (None, 4, 2) and model.count_params() == 8 * 3 + 3 + 3 * 2 + 2
    model.summary()
    assert "Linear" not in capsys.readouterr().out
    lazy = keras.Sequential([L.Dense(3), L.Dense(1)])
    assert lazy.get_weights() == []                          # not built yet, as in Keras
    lazy.compile(optimizer="adam", loss="mse")
    lazy.fit(np.ones((8, 5), np.float32), np.ones((8, 1), np.float32), epochs=1, verbose=0)
    assert [w.shape for w in lazy.get_weights()] == [(5, 3), (3,), (3, 1), (1,)]
    assert [m.name for m in lazy.layers] == [lazy.get_layer(index=0).name,
                                             lazy.get_layer(index=1).name]
    assert lazy.get_layer(lazy.layers[1].name) is lazy.layers[1]


def test_hinge_huber_and_kl_divergence_losses_match_numpy():
    r = np.array([[0.3], [-1.2], [2.5]])
    b = np.array([[1.0], [0.0], [1.0]])
    got = keras.losses.Hinge()(md.tensor(b), md.tensor(r)).item()
    assert got == pytest.approx(np.mean(np.maximum(1 - (2 * b - 1) * r, 0)), rel=1e-12)
    d = np.abs(r - b)
    huber = np.mean(np.where(d <= 0.5, 0.5 * d ** 2, 0.5 * (d - 0.25)))
    assert keras.losses.Huber(delta=0.5)(md.tensor(b), md.tensor(r)).item() == \
        pytest.approx(huber, rel=1e-12)
    p, q = np.array([[0.2, 0.8], [0.5, 0.5]]), np.array([[0.1, 0.9], [0.7, 0.3]])
    assert keras.losses.KLDivergence()(md.tensor(q), md.tensor(p)).item() == \
        pytest.approx(np.mean(np.sum(q * np.log(q / p), axis=1)), rel=1e-12)


def test_learning_rate_schedules_follow_the_update_count():
    sched = keras.optimizers.schedules
    exp = sched.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5)
    assert [exp(s) for s in (0, 1, 2, 4)] == pytest.approx([0.1, 0.1 * 0.5 ** 0.5, 0.05,
                                                            0.025])
    stair = sched.ExponentialDecay(0.1, decay_steps=2, decay_rate=0.5, staircase=True)
    assert [stair(s) for s in (1, 2, 3)] == pytest.approx([0.1, 0.05, 0.05])
    piece = sched.PiecewiseConstantDecay([2, 4], [1.0, 0.5, 0.1])
    assert [piece(s) for s in (0, 2, 3, 4, 5)] == [1.0, 1.0, 0.5, 0.5, 0.1]
    assert sched.CosineDecay(1.0, 10)(5) == pytest.approx(0.5)
    assert sched.InverseTimeDecay(1.0, 1, 1.0)(3) == pytest.approx(0.25)
    # SGD's update k (from 0) uses schedule(k)
    opt = keras.optimizers.SGD(learning_rate=exp)
    got = _one_param(opt, [0.0], [[1.0], [1.0], [1.0]])
    assert [g[0] for g in got] == pytest.approx(np.cumsum([-exp(0), -exp(1), -exp(2)]))
    assert opt.learning_rate == pytest.approx(exp(3))     # Keras: the next update's rate
    with pytest.raises(ValueError, match="follows a schedule"):
        opt.learning_rate = 0.1


def test_categorical_accuracy_and_rmse_by_keras_names():
    from minidl.train import get_metric
    out = md.tensor(np.array([[0.1, 0.9], [0.8, 0.2], [0.4, 0.6]]))
    hot = md.tensor(np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]))
    m = get_metric("categorical_accuracy")
    m.update(out, hot)
    assert m.compute() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="need sparse_categorical_accuracy"):
        m.update(out, md.tensor(np.array([1, 1, 1])))
    r = get_metric("rmse")
    r.update(md.tensor(np.array([[1.0], [3.0]])), md.tensor(np.array([[0.0], [0.0]])))
    r.update(md.tensor(np.array([[2.0]])), md.tensor(np.array([[0.0]])))
    assert r.compute() == pytest.approx(np.sqrt((1 + 9 + 4) / 3))
    assert keras.metrics.RootMeanSquaredError().name == "root_mean_squared_error"
