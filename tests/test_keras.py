"""The Keras front end (minidl/keras/): Model and Sequential with compile/fit/evaluate/predict/summary."""
from __future__ import annotations

import numpy as np
import pytest

import minidl as md
import minidl.functional as F
import minidl.nn as nn
import minidl.optim as optim
from minidl import keras
from minidl.train import History, LambdaCallback, NonFiniteLossError


def _housing(n=512, seed=0):
    """A synthetic regression problem in the spirit of the lecture's California housing."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, :3] @ np.array([1.0, -2.0, 0.5]) + np.sin(2 * x[:, 3]) + x[:, 4] * x[:, 5]
         + 0.1 * rng.normal(size=n)).astype(np.float32)
    return x, y[:, None]


def wide_and_deep():
    """The lecture's snippet, rebuilt in minidl."""
    input_wide = keras.Input(shape=[5], name="wide_input")
    input_deep = keras.Input(shape=[6], name="deep_input")
    hidden1 = nn.Linear(6, 30, activation="relu")(input_deep)
    hidden2 = nn.Linear(30, 30, activation="relu")(hidden1)
    concat = nn.Concat()([input_wide, hidden2])
    output = nn.Linear(35, 1, name="output")(concat)
    aux_output = nn.Linear(30, 1, name="aux_output")(hidden2)
    return keras.Model(inputs=[input_wide, input_deep], outputs=[output, aux_output])


def test_wide_and_deep_trains_and_loss_falls():
    md.manual_seed(0)
    x, y = _housing()
    model = wide_and_deep()
    model.compile(loss=["mse", "mse"], loss_weights=[0.9, 0.1],
                  optimizer=optim.SGD(model.parameters(), lr=1e-2, momentum=0.9),
                  metrics=["mae"])
    xw, xd = x[:, :5], x[:, 2:]
    before = model.evaluate([xw, xd], [y, y])
    hist = model.fit([xw[:400], xd[:400]], [y[:400], y[:400]], epochs=15, batch_size=32,
                     validation_data=([xw[400:], xd[400:]], [y[400:], y[400:]]), verbose=0)
    losses = hist.history["loss"]
    assert len(losses) == 15 and hist.epoch == list(range(15))
    assert losses[-1] < 0.3 * losses[0]
    assert hist.history["val_loss"][-1] < 0.5 * before[0]
    assert set(hist.history) == {
        f"{prefix}{name}" for prefix in ("", "val_")
        for name in ("loss", "output_loss", "aux_output_loss", "output_mae", "aux_output_mae")}
    total, main, aux, main_mae, aux_mae = model.evaluate([xw, xd], [y, y])
    assert total == pytest.approx(0.9 * main + 0.1 * aux, rel=1e-4)
    y_pred_main, y_pred_aux = model.predict([xw[:7], xd[:7]])
    assert y_pred_main.shape == (7, 1) and y_pred_aux.shape == (7, 1)
    assert isinstance(y_pred_main, np.ndarray)
    # dict inputs by Input name, as Keras allows
    again = model.predict({"wide_input": xw[:7], "deep_input": xd[:7]})
    np.testing.assert_allclose(again[0], y_pred_main, rtol=1e-6)


def test_each_outputs_loss_is_computed_once_per_batch():
    calls = []

    def counted(out, target):
        calls.append(1)
        return F.mse_loss(out, target)

    inp = keras.Input((1,))
    model = keras.Model(inp, [nn.Linear(1, 1, name="a")(inp), nn.Linear(1, 1, name="b")(inp)])
    model.compile(loss=[counted, "mse"], loss_weights=[0.25, 2.0],
                  optimizer=optim.SGD(model.parameters(), lr=0.0))
    x = np.linspace(-1, 1, 10, dtype=np.float32)[:, None]
    ya, yb = x ** 2, np.arange(10, dtype=np.float32)[:, None]
    hist = model.fit(x, [ya, yb], epochs=1, batch_size=4, shuffle=False, verbose=0,
                     validation_data=(x[:6], [ya[:6], yb[:6]]))
    assert len(calls) == 3 + 2                          # 3 training and 2 validation batches
    pa, pb = (p.astype(np.float64) for p in model.predict(x))
    a, b = np.mean((pa - ya) ** 2), np.mean((pb - yb) ** 2)
    va, vb = np.mean((pa[:6] - ya[:6]) ** 2), np.mean((pb[:6] - yb[:6]) ** 2)
    h = hist.history
    assert [h["a_loss"][0], h["b_loss"][0], h["val_a_loss"][0], h["val_b_loss"][0]] == \
        pytest.approx([a, b, va, vb], rel=1e-6)
    assert h["loss"][0] == pytest.approx(0.25 * a + 2.0 * b, rel=1e-6)
    calls.clear()
    assert model.evaluate(x, [ya, yb], batch_size=4) == pytest.approx(
        [0.25 * a + 2.0 * b, a, b], rel=1e-6)
    assert len(calls) == 3
    a_loss = model._compiled.metrics[0]              # never a stale value from another batch
    with pytest.raises(RuntimeError, match="loss of output 0 was asked for a batch"):
        a_loss.update((md.tensor(pa), md.tensor(pb)), (md.tensor(ya), md.tensor(yb)))


def _table_rows(text):
    """The rows of a summary table by their first column: {'output (Linear)': [shape, ...]}
    (columns are separated by two or more spaces)."""
    import re
    rows = [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]
    return {r[0]: r[1:] for r in rows if len(r) > 1}


def test_summary(capsys):
    model = wide_and_deep()
    model.summary()
    text = capsys.readouterr().out
    rows = _table_rows(text)
    assert rows["wide_input (Input)"] == ["(None, 5)", "0"]
    assert rows["concat (Concat)"] == ["(None, 35)", "0", "wide_input, linear_1"]
    assert rows["output (Linear)"] == ["(None, 1)", "36", "concat"]          # 35 * 1 + 1
    assert rows["aux_output (Linear)"] == ["(None, 1)", "31", "linear_1"]
    assert f"Total params: {model.num_parameters():,}" in text
    lines = []
    model.get_layer("linear").freeze()
    model.summary(print_fn=lines.append)
    assert "Non-trainable params: 210" in lines[0]


def test_sequential_has_keras_training_methods():
    md.manual_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(300, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    model = keras.Sequential(nn.Linear(4, 16, activation="relu"), nn.Linear(16, 2),
                          nn.Softmax())
    model.compile(loss="sparse_categorical_crossentropy", optimizer="adam",
                  metrics=["accuracy"])
    assert isinstance(model._compiled.optimizer, optim.Adam)
    assert model._compiled.optimizer.param_groups[0]["lr"] == 1e-3   # Keras' default
    model.compile(loss="sparse_categorical_crossentropy",
                  optimizer=optim.Adam(model.parameters(), lr=1e-2), metrics=["accuracy"])
    hist = model.fit(x, y, epochs=30, batch_size=32, verbose=0, validation_split=0.2)
    assert hist.history["accuracy"][-1] > 0.9
    assert hist.history["val_accuracy"][-1] == pytest.approx(
        np.mean(model.predict(x[240:]).argmax(1) == y[240:]))
    loss, acc = model.evaluate(x, y)
    assert acc > 0.9
    assert model.evaluate(x, y, return_dict=True)["accuracy"] == pytest.approx(acc)
    assert model.predict(x[:3]).shape == (3, 2)


def _frozen_regression(n=10):
    """A (1 -> 1) Linear model that SGD with lr=0 never changes, and data whose every row
    has its own target, so each row set gives its own mse."""
    model = keras.Sequential(nn.Linear(1, 1))
    model.compile(loss="mse", optimizer=optim.SGD(model.parameters(), lr=0.0))
    x = np.linspace(-1, 1, n, dtype=np.float32)[:, None]
    y = (np.arange(n, dtype=np.float32) ** 2)[:, None]
    return model, x, y


def _mse(model, x, y):
    return float(np.mean((model.predict(x).astype(np.float64) - y) ** 2))


def test_validation_split_holds_out_the_last_rows_before_shuffling():
    model, x, y = _frozen_regression(10)
    hist = model.fit(x, y, epochs=2, batch_size=4, verbose=0, validation_split=0.3)
    assert hist.history["loss"] == pytest.approx([_mse(model, x[:7], y[:7])] * 2, rel=1e-6)
    assert hist.history["val_loss"] == pytest.approx([_mse(model, x[7:], y[7:])] * 2, rel=1e-6)


def test_validation_data_overrides_validation_split():
    model, x, y = _frozen_regression(10)
    xv, yv = x[:3] + 0.5, y[:3] - 7.0
    hist = model.fit(x, y, epochs=1, batch_size=4, verbose=0, validation_data=(xv, yv),
                     validation_split=0.5)
    assert hist.history["loss"] == pytest.approx([_mse(model, x, y)], rel=1e-6)
    assert hist.history["val_loss"] == pytest.approx([_mse(model, xv, yv)], rel=1e-6)


@pytest.mark.parametrize("n, split, train, val", [(2, 0.6, 0, 2), (1, 0.5, 0, 1),
                                                   (10, 1e-17, 10, 0)])
def test_validation_split_that_leaves_no_rows_is_refused(n, split, train, val):
    model, x, y = _frozen_regression(n)
    msg = (rf"^fit: validation_split={split} of {n} samples leaves {train} for training and "
           rf"{val} for validation; each needs at least one$")
    with pytest.raises(ValueError, match=msg):
        model.fit(x, y, verbose=0, validation_split=split)


def test_fit_evaluate_predict_take_arrays_on_any_device(device):
    # CuPy arrays (the 'cuda' case) are copied to the host by backend.to_numpy: np.asarray
    # refuses them.
    model, x, y = _frozen_regression(10)
    xd, yd = md.tensor(x, device=device).data, md.tensor(y, device=device).data
    hist = model.fit(xd, yd, epochs=1, batch_size=4, verbose=0, validation_data=(xd, yd))
    assert hist.history["loss"] == pytest.approx([_mse(model, x, y)], rel=1e-6)
    assert model.evaluate(xd, yd) == pytest.approx(_mse(model, x, y), rel=1e-6)
    np.testing.assert_array_equal(model.predict(xd), model.predict(x))


def test_arrays_and_tensors_reach_the_host_through_backend_to_numpy(monkeypatch):
    from minidl.keras import arguments
    real, seen = arguments.to_numpy, []

    def spy(a):
        seen.append(type(a))
        return real(a)

    monkeypatch.setattr(arguments, "to_numpy", spy)
    model, x, y = _frozen_regression(4)
    model.evaluate(md.tensor(x), y)
    assert seen == [np.ndarray, np.ndarray]      # the Tensor's array, then the NumPy target


@pytest.mark.parametrize("shuffle", [False, True])
def test_fit_draws_from_minidls_generator_only_to_shuffle(shuffle):
    from minidl.backend import get_rng_state, set_rng_state
    md.manual_seed(3)
    model, x, y = _frozen_regression(10)      # a model that draws nothing while training
    state = get_rng_state()
    without_fit = md.randn(3).numpy()
    set_rng_state(state)
    model.fit(x, y, epochs=2, batch_size=4, shuffle=shuffle, verbose=0, validation_split=0.2)
    assert np.array_equal(md.randn(3).numpy(), without_fit) is not shuffle


def test_fit_freezing_keeps_weights(capsys):
    md.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    y = x.sum(1, keepdims=True)
    inp = keras.Input((3,))
    frozen = nn.Linear(3, 8, trainable=False)
    head = nn.Linear(8, 1)
    model = keras.Model(inp, head(nn.Tanh()(frozen(inp))))
    w = frozen.weight.numpy().copy()
    h0 = head.weight.numpy().copy()
    model.compile(loss="mse", optimizer=optim.Adam(model.parameters(), lr=1e-2))
    model.fit(x, y, epochs=3, batch_size=16, verbose=1)
    assert "epoch 3/3" in capsys.readouterr().out.lower()
    np.testing.assert_array_equal(frozen.weight.numpy(), w)
    assert frozen.weight.grad is None
    assert not np.allclose(head.weight.numpy(), h0)


def test_fit_adds_regularization_loss():
    from minidl.optim import regularizers
    x = np.ones((4, 2), dtype=np.float32)
    y = np.zeros((4, 1), dtype=np.float32)
    model = keras.Sequential(nn.Linear(2, 1, weight_regularizer=regularizers.l2(10.0)))
    with md.no_grad():
        model[0].weight.data[...] = 1.0
        model[0].bias.data[...] = 0.0
    model.compile(loss="mse", optimizer=optim.SGD(model.parameters(), lr=0.0))
    assert model.evaluate(x, y) == pytest.approx(4.0 + 10.0 * 2)


def test_compile_errors():
    a, b = keras.Input((3,)), keras.Input((3,))
    out = nn.Add()(a, b)
    model = keras.Model([a, b], out)
    with pytest.raises(RuntimeError, match="compile"):
        model.fit([np.zeros((2, 3))] * 2, np.zeros((2, 3)))
    model = keras.Model([a, b], nn.Linear(3, 3)(out))
    model.compile(loss="mse", optimizer="sgd")
    with pytest.raises(ValueError, match="fit: expected 2 x array"):
        model.fit(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="predict: expected 2 x array"):
        model.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"evaluate: x arrays have different numbers of samples: "
                                         r"\[2, 4\]"):
        model.evaluate([np.zeros((2, 3)), np.zeros((4, 3))], np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2 losses for 1 outputs"):
        model.compile(loss=["mse", "mse"])
    with pytest.raises(ValueError, match="unknown loss"):
        model.compile(loss="hinge-ish")
    with pytest.raises(ValueError, match="compile: unknown optimizer 'lion'; expected one of"):
        model.compile(loss="mse", optimizer="lion")


def test_dict_inputs_name_the_unnamed_or_missing_input():
    a, b = keras.Input((3,), name="a"), keras.Input((2,))
    model = keras.Model([a, b], nn.Add()(a, nn.Linear(2, 3)(b)))
    x = {"a": np.zeros((2, 3)), "b": np.zeros((2, 2))}
    with pytest.raises(ValueError, match=r"^predict: x is a dict, but model input 1 "
                                         r"\(shape \(None, 2\)\) has no name; dict inputs "
                                         r"need named Inputs \(keras.Input\(shape, name=...\)\)"
                                         r", else pass a list in the Inputs' order$"):
        model.predict(x)
    a, b = keras.Input((3,), name="a"), keras.Input((2,), name="b")
    model = keras.Model([a, b], nn.Add()(a, nn.Linear(2, 3)(b)))
    model.compile(loss="mse", optimizer="sgd")
    with pytest.raises(ValueError, match=r"^fit: x lacks \['b'\] and has unknown keys "
                                         r"\['bb'\]; expected the keys \['a', 'b'\]$"):
        model.fit({"a": x["a"], "bb": x["b"]}, np.zeros((2, 3)))
    assert model.predict(x).shape == (2, 3)


def test_fit_runs_the_trainer_loop_and_returns_its_history():
    md.manual_seed(0)
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    y = x.sum(1)                                        # (N,) targets for an (N, 1) output
    model = keras.Sequential([keras.layers.Input((3,)), nn.Linear(3, 1)])
    model.compile(loss="mse", optimizer="sgd", metrics=["mae"])
    seen = []
    hist = model.fit(x, y, epochs=2, batch_size=8, verbose=0,
                     callbacks=[LambdaCallback(on_epoch_end=lambda t, e, logs: seen.append(e))])
    assert isinstance(hist, History) and model.history is hist and seen == [0, 1]
    assert hist["epoch"] == [1, 2] and hist.epoch == [0, 1]
    assert {"loss", "mae", "lr", "time"} <= set(hist)
    assert set(hist.history) == {"loss", "mae"}              # Keras' history: no bookkeeping
    assert hist.history["loss"] is hist["loss"]
    # continues training, a fresh History: the new first epoch starts where the last ended
    again = model.fit(x, y, epochs=1, verbose=0)
    assert again.epoch == [0] and again["loss"][0] < hist["loss"][-1]
    model.compile(loss=lambda out, target: F.mse_loss(out, target.reshape(out.shape)) * np.nan,
                  optimizer="sgd")
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 1"):
        model.fit(x, y, epochs=1, verbose=0)


def test_sequential_takes_a_leading_input_and_prints_a_summary(capsys):
    model = keras.Sequential([keras.layers.Input((4,)), nn.Linear(4, 2), nn.ReLU()])
    assert model.input_shape == (None, 4) and len(model) == 2      # Keras's input_shape
    assert [n for n, _ in model.named_parameters()] == ["0.weight", "0.bias"]
    model.summary()
    text = capsys.readouterr().out
    rows = _table_rows(text)                                 # Keras's table, automatic names
    assert rows["linear (Linear)"] == ["(None, 2)", "10"]                  # 4 * 2 + 2 params
    assert rows["re_lu (ReLU)"] == ["(None, 2)", "0"]
    assert text.startswith('Model: "sequential"') and "Total params: 10" in text
    with pytest.raises(ValueError, match="input shape is unknown"):
        keras.Sequential(nn.Linear(4, 2)).summary()
    assert keras.models.Model is keras.Model and keras.models.Sequential is keras.Sequential


def test_nn_keeps_only_the_graph_and_names_the_moved_classes():
    with pytest.raises(AttributeError, match="minidl.keras.Model"):
        nn.Model  # noqa: B018
    with pytest.raises(AttributeError, match="minidl.train.History"):
        nn.History  # noqa: B018
    for method in ("compile", "fit", "evaluate", "predict"):
        assert not hasattr(nn.Sequential(), method) and not hasattr(nn.GraphModule, method)
    assert issubclass(keras.Model, nn.GraphModule) and issubclass(keras.Sequential, nn.Sequential)



# ---- the lectures' Keras code, as written (only `import keras` became `from minidl import keras`)

def _lecture_arrays(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8)).astype(np.float32)
    y = (x[:, :3] @ np.array([1.0, -2.0, 0.5]) + np.sin(2 * x[:, 3]) + x[:, 4] * x[:, 5]
         ).astype(np.float32)[:, None]
    return x[:, :5], x[:, 2:], y


def test_lecture_frozen_regularized_constrained_and_dropout_layers_as_written():
    keras.utils.set_random_seed(0)
    prevLayer = keras.layers.Input(shape=[8])  # noqa: N806 - the lecture's names
    currLayer = keras.layers.Dense(32, trainable=False)(prevLayer)  # noqa: N806
    frozen = currLayer.node.module
    assert currLayer.shape == (None, 32) and not frozen.trainable
    assert all(not p.requires_grad for p in frozen.parameters())
    reg = keras.layers.Dense(100, kernel_regularizer=keras.regularizers.l2(0.01))
    con = keras.layers.Dense(100, kernel_constraint=keras.constraints.max_norm(1.))
    x = np.random.default_rng(1).normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)
    model = keras.models.Sequential([
        keras.layers.Dropout(rate=0.2),
        keras.layers.Dense(100),
        keras.layers.Dropout(rate=0.2),
        keras.layers.Dense(3, activation="softmax")])
    model.compile(loss="sparse_categorical_crossentropy", optimizer="sgd", metrics=["accuracy"])
    hist = model.fit(x, y, epochs=3, verbose=0)
    assert list(hist.history) == ["loss", "accuracy"] and len(hist.history["loss"]) == 3
    probs = model.predict(x)
    np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)
    assert np.array_equal(model.predict(x), probs)          # no dropout when predicting
    for layer in (reg, con):
        keras.Sequential([keras.Input((4,)), layer])
    assert reg.weight.regularizer is not None and con.weight.constraint is not None


def test_lecture_wide_and_deep_as_written():
    keras.utils.set_random_seed(0)
    X_train_A, X_train_B, y_train = _lecture_arrays(400, 0)  # noqa: N806
    X_valid_A, X_valid_B, y_valid = _lecture_arrays(100, 1)  # noqa: N806
    X_test_A, X_test_B, y_test = _lecture_arrays(100, 2)  # noqa: N806
    y_train_aux, y_valid_aux, y_test_aux = y_train, y_valid, y_test
    X_new_A, X_new_B = X_test_A[:3], X_test_B[:3]  # noqa: N806

    input_A = keras.layers.Input(shape=[5], name="wide_input")  # noqa: N806
    input_B = keras.layers.Input(shape=[6], name="deep_input")  # noqa: N806
    hidden1 = keras.layers.Dense(30, activation="relu")(input_B)
    hidden2 = keras.layers.Dense(30, activation="relu")(hidden1)
    concat = keras.layers.concatenate([input_A, hidden2])
    output = keras.layers.Dense(1, name="main_output")(concat)
    output_aux = keras.layers.Dense(1, name="aux_output")(hidden2)
    model = keras.Model(inputs=[input_A, input_B], outputs=[output, output_aux])
    model.compile(loss=["mse", "mse"], loss_weights=[0.9, 0.1], optimizer="sgd")
    history = model.fit([X_train_A, X_train_B], [y_train, y_train_aux], epochs=20,
                        validation_data=([X_valid_A, X_valid_B], [y_valid, y_valid_aux]))
    total, test, test_aux = model.evaluate([X_test_A, X_test_B], [y_test, y_test_aux])
    y_pred, y_pred_aux = model.predict([X_new_A, X_new_B])

    h = history.history
    assert list(h) == ["loss", "main_output_loss", "aux_output_loss", "val_loss",
                       "val_main_output_loss", "val_aux_output_loss"]
    assert h["loss"][-1] < 0.5 * h["loss"][0] and h["val_loss"][-1] < 0.5 * h["val_loss"][0]
    assert all(isinstance(v, float) for v in (total, test, test_aux))
    assert total == pytest.approx(0.9 * test + 0.1 * test_aux, rel=1e-4)
    assert y_pred.shape == (3, 1) and y_pred_aux.shape == (3, 1)
    assert isinstance(model.optimizer, keras.optimizers.SGD)
    assert model.optimizer.learning_rate == 0.01                          # Keras's default


def _mnist_channels_last():
    from minidl.data import mnist_subset
    (x_train, y_train), (x_test, y_test) = mnist_subset("train"), mnist_subset("test")
    # the bundled digits are (N, 1, 28, 28); a Keras tutorial has (N, 28, 28, 1) in [0, 1]
    return (x_train.transpose(0, 2, 3, 1).astype("float32") / 255.0, y_train,
            x_test.transpose(0, 2, 3, 1).astype("float32") / 255.0, y_test)


@pytest.mark.slow
def test_keras_cnn_on_the_bundled_mnist_reaches_97_percent():
    # ~40 s on 2 idle cores (6 epochs of 4,000 digits); 97.5% on the 1,000 held-out digits
    keras.utils.set_random_seed(0)
    x_train, y_train, x_test, y_test = _mnist_channels_last()
    model = keras.Sequential([
        keras.Input(shape=(28, 28, 1)),
        keras.layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        keras.layers.MaxPooling2D(pool_size=(2, 2)),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=3e-3),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    schedule = keras.callbacks.LearningRateScheduler(lambda epoch, lr: lr * 0.6 if epoch else lr)
    model.fit(x_train, y_train, batch_size=32, epochs=6, verbose=0, callbacks=[schedule])
    loss, accuracy = model.evaluate(x_test, y_test)
    assert accuracy >= 0.97, accuracy
