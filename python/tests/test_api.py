"""The Python API: data, training, evaluation, prediction, files, and refusals that never crash."""
import json

import numpy as np
import pytest

import nerve


def small_mlp(**kwargs):
    return nerve.Sequential([nerve.Dense(32, activation="relu"), nerve.Dense(10, activation="softmax")],
                            input_shape=(784,), **kwargs)


def test_datasets_are_scaled_and_split_as_the_cli_does(mnist):
    (x, y), (vx, vy), (tx, ty) = mnist
    assert x.shape == (50000, 784) and vx.shape == (10000, 784) and tx.shape == (10000, 784)
    assert x.dtype == np.float32 and y.dtype == np.int64 and y.shape == (50000,)
    assert 0.0 <= x.min() and x.max() == 1.0 and set(np.unique(ty)) == set(range(10))
    assert x.preprocessing == {"scale": pytest.approx(1 / 255)}
    assert x[:10].reshape(-1, 28, 28, 1).preprocessing == x.preprocessing
    (dx, dy), (dvx, _), (dtx, dty) = nerve.datasets.digits()
    assert dx.shape[1] == 64 and dx.shape[0] + dtx.shape[0] == 1797 and dvx.shape[0] == 0
    assert dx.max() == 1.0 and dtx.shape[0] == len(dty)


def test_fit_learns_and_reports_history(mnist):
    (x, y), (vx, vy), (tx, ty) = mnist
    model = small_mlp(threads=2)
    seen = []
    history = model.fit(x[:3000], y[:3000], epochs=3, batch_size=32, optimizer=nerve.SGD(learning_rate=0.1),
                        validation_data=(vx[:1000], vy[:1000]), on_epoch=seen.append)
    assert [m["epoch"] for m in seen] == [1, 2, 3] == history["epoch"]
    assert len(history["valid_accuracy"]) == 3 and history["train_loss"][2] < history["train_loss"][0]
    result = model.evaluate(tx[:1000], ty[:1000])
    assert result["accuracy"] > 0.85 and result["correct"] == round(result["accuracy"] * 1000)
    classes = model.predict(tx[:1000])
    assert classes.shape == (1000,) and (classes == ty[:1000]).mean() == result["accuracy"]
    p = model.predict_proba(tx[:5])
    assert p.shape == (5, 10) and np.allclose(p.sum(axis=1), 1, atol=1e-5)
    assert (p.argmax(axis=1) == classes[:5]).all()


def test_every_layer_optimizer_and_option_runs():
    (x, y), _, (tx, ty) = nerve.datasets.digits()
    images, test_images = x.reshape(-1, 8, 8, 1), tx.reshape(-1, 8, 8, 1)
    for optimizer in [nerve.SGD(0.05, momentum=0.9), nerve.SGD(0.05, momentum=0.9, nesterov=True), nerve.Adam(0.01),
                      nerve.AdamW(0.01), nerve.RMSprop(0.005), nerve.Adadelta()]:
        model = nerve.Sequential([
            nerve.Conv2D(4, kernel=3, padding="same", activation="relu"), nerve.BatchNorm(),
            nerve.MaxPool2D(), nerve.Conv2D(4, kernel=(2, 2), activation="lecun_tanh"), nerve.AvgPool2D(pool=1),
            nerve.Flatten(), nerve.Dense(16, activation="tanh", l2=0.001), nerve.Dropout(0.2),
            nerve.Dense(10), nerve.Softmax()], input_shape=(8, 8, 1), seed=4)
        h = model.fit(images, y, epochs=4, batch_size=16, optimizer=optimizer, schedule="cosine(0.1)",
                      validation_data=(test_images, ty), early_stopping=nerve.EarlyStopping(patience=5))
        assert len(h["train_loss"]) == 4
        assert model.evaluate(test_images, ty)["accuracy"] > 0.5, optimizer
    # Flat samples of an image model are accepted too.
    assert model.predict(tx[:3]).shape == (3,)


def test_one_hot_labels_float64_and_strided_inputs_are_converted(mnist):
    (x, y), _, (tx, ty) = mnist
    a, b = small_mlp(), small_mlp()
    one_hot = np.eye(10)[y[:500]]
    a.fit(x[:500], y[:500], epochs=1, seed=3)
    b.fit(np.asarray(x[:500], dtype=np.float64), one_hot, epochs=1, seed=3)
    assert (a.predict_proba(tx[:100]) == b.predict_proba(tx[:100])).all()
    strided = np.asfortranarray(tx[:100])
    assert (a.predict(strided) == a.predict(tx[:100])).all()
    assert (a.predict(tx[:200:2]) == a.predict(np.ascontiguousarray(tx[:200:2]))).all()


def test_uint8_images_are_read_as_bytes_with_the_float_results(mnist):
    (x, y), _, (tx, _) = mnist
    model = small_mlp()
    model.fit(x[:500], y[:500], epochs=1, seed=4)
    raw = np.round(tx[:300] * 255).astype(np.uint8)
    floats = raw.astype(np.float32)
    assert (model.predict_proba(raw) == model.predict_proba(floats)).all()
    assert (model.predict(raw) == model.predict(floats)).all()
    assert (model.predict(raw[::2]) == model.predict(floats[::2])).all()
    assert model.predict(raw[:0]).shape == (0,)
    cnn = nerve.Sequential([nerve.Conv2D(4, 3, activation="relu"), nerve.MaxPool2D(), nerve.Flatten(),
                            nerve.Dense(10, activation="softmax")], input_shape=(28, 28, 1))
    images = raw.reshape(-1, 28, 28, 1)
    assert (cnn.predict_proba(images) == cnn.predict_proba(images.astype(np.float32))).all()
    with pytest.raises(ValueError, match="x has shape"):
        model.predict(raw[:, :700])


@pytest.mark.parametrize("call, kind, words", [
    (lambda m, x, y: m.fit(x[:10, :700], y[:10]), ValueError, ["x has shape (10, 700)", "(N, 784)"]),
    (lambda m, x, y: m.fit(x[:10], y[:9]), ValueError, ["9 labels", "10"]),
    (lambda m, x, y: m.fit(x[:10], y[:10] + 20), ValueError, ["outside 0..9"]),
    (lambda m, x, y: m.fit(x[:10], np.ones((10, 10))), ValueError, ["one-hot"]),
    (lambda m, x, y: m.fit(x[:10], y[:10], batch_size=0), ValueError, ["batch_size"]),
    (lambda m, x, y: m.fit(x[:10], y[:10], loss="hinge"), nerve.NerveValueError, ["unknown loss 'hinge'"]),
    (lambda m, x, y: m.fit(x[:10], y[:10], optimizer="adam"), TypeError, ["nerve optimizer"]),
    (lambda m, x, y: m.fit(x[:10], y[:10], schedule="wobbly"), nerve.NerveValueError, ["schedule"]),
    (lambda m, x, y: m.fit(x[:10], y[:10], validation_data=x), TypeError, ["validation_data"]),
    (lambda m, x, y: m.predict("seven"), TypeError, ["x must hold numbers"]),
    (lambda m, x, y: m.predict(x[0]), ValueError, ["x has shape (784,)"]),
    (lambda m, x, y: m.evaluate(x[:5], y[:5], loss="nope"), nerve.NerveValueError, ["unknown loss 'nope'"]),
    (lambda m, x, y: setattr(m, "threads", -3), ValueError, ["threads"]),
    (lambda m, x, y: m.save("/nonexistent-folder/x/m.safetensors"), nerve.NerveError, ["nonexistent-folder"]),
    (lambda m, x, y: setattr(m, "preprocessing", {"scale": 1, "mean": [0.5]}), nerve.NerveValueError, ["784 means"]),
])
def test_bad_input_raises_an_exception_naming_it(mnist, call, kind, words):
    (x, y), _, _ = mnist
    model = small_mlp()
    with pytest.raises(kind) as e:
        call(model, x, y)
    for w in words:
        assert w in str(e.value), str(e.value)
    # The model is still usable afterwards.
    assert model.predict(x[:2]).shape == (2,)


def test_layers_that_do_not_chain_and_unbuilt_models_are_refused():
    with pytest.raises(nerve.NerveShapeError, match="Flatten"):
        nerve.Sequential([nerve.Conv2D(2), nerve.Dense(3)], input_shape=(8, 8, 1)).summary()
    with pytest.raises(ValueError, match="input_shape"):
        nerve.Sequential([nerve.Dense(3)]).summary()
    with pytest.raises(TypeError, match="layers\\[1\\]"):
        nerve.Sequential([nerve.Dense(3), "relu"])
    with pytest.raises(ValueError, match="units"):
        nerve.Dense(0)


def test_save_load_round_trip_and_cli_reads_it(mnist, tmp_path, cli):
    (x, y), _, (tx, ty) = mnist
    model = small_mlp()
    model.fit(x[:2000], y[:2000], epochs=1)
    path = tmp_path / "m.safetensors"
    model.save(path)
    again = nerve.load(path, threads=1)
    assert again.input_shape == (784,) and again.threads == 1
    assert (again.predict_proba(tx[:300]) == model.predict_proba(tx[:300])).all()
    assert again.preprocessing == x.preprocessing
    # The command line predicts from the raw test images with the saved preprocessing.
    out = cli("predict", path, "--count", 20)
    predicted = [int(line.split("predicted ")[1][0]) for line in out.splitlines() if "predicted" in line]
    assert predicted == list(model.predict(tx[:20]))
    with pytest.raises(nerve.NerveFileError, match="no such file"):
        nerve.load(tmp_path / "missing.safetensors")


def test_on_epoch_returning_false_stops_and_early_stopping_keeps_the_best(mnist):
    (x, y), (vx, vy), _ = mnist
    model = small_mlp()
    h = model.fit(x[:500], y[:500], epochs=5, on_epoch=lambda m: m["epoch"] < 2)
    assert h["epoch"] == [1, 2] and h.stopped_early
    h = small_mlp().fit(x[:500], y[:500], epochs=30, optimizer=nerve.SGD(2.0), validation_data=(vx[:300], vy[:300]),
                        early_stopping=nerve.EarlyStopping(patience=1, monitor="valid_accuracy"))
    assert h.stopped_early and len(h["epoch"]) < 30 and h.best_epoch is not None


def test_an_exception_in_a_callback_stops_training_and_reaches_the_caller(mnist):
    (x, y), _, _ = mnist

    def boom(metrics):
        raise RuntimeError(f"callback failed at epoch {metrics['epoch']}")

    with pytest.raises(RuntimeError, match="epoch 1"):
        small_mlp().fit(x[:200], y[:200], epochs=3, on_epoch=boom)


def test_a_diverging_loss_raises_with_the_last_good_model_kept(mnist):
    (x, y), _, _ = mnist
    model = nerve.Sequential([nerve.Dense(10, activation="relu"), nerve.Dense(10)], input_shape=(784,))
    with pytest.raises(nerve.DivergedError, match="epoch 1"):
        model.fit(x[:200], y[:200], epochs=3, batch_size=10, loss="mse", optimizer=nerve.SGD(1e30))
    assert np.isfinite(model.predict_proba(x[:5])).all()


def test_train_runs_a_config_as_the_cli_does(tmp_path, root):
    metrics = tmp_path / "m.jsonl"
    model = nerve.train(str(root / "examples/lab-c-minibatch-100.toml"), epochs=1, subset=2000, threads=2,
                        metrics=metrics, set={"layer.0.units": 64})
    assert model.history["epoch"] == [1] and model.results["test_accuracy"] > 0.5
    assert "(None, 64)" in model.summary(print_fn=None)
    lines = [json.loads(line) for line in metrics.read_text().splitlines()]
    assert lines[0]["epoch"] == 1 and lines[-1]["test_correct"] == model.results["test_correct"]
    with pytest.raises(nerve.NerveValueError, match="learning_rat"):
        nerve.train(str(root / "examples/lab-c-minibatch-100.toml"), set={"train.learning_rat": 1})
