"""ONNX export: onnx.checker accepts the files and onnxruntime's outputs equal Nerve's (within
1e-5 of the largest, same classes) on 1,000 test images, for an MLP and the Lab E and Lab H CNNs
trained briefly on subsets."""
import numpy as np
import onnx
import onnxruntime
import pytest

import nerve


def lab_e():
    return nerve.Sequential([
        nerve.Conv2D(32, kernel=3, padding="same", activation="relu", weights="glorot_normal"),
        nerve.BatchNorm(), nerve.MaxPool2D(), nerve.Flatten(),
        nerve.Dense(784, activation="relu", weights="glorot_normal"),
        nerve.Dense(10, activation="softmax", weights="glorot_normal")], input_shape=(28, 28, 1))


def lab_h():
    def block(filters):
        return [nerve.Conv2D(filters, kernel=3, padding="same", activation="relu"), nerve.BatchNorm(momentum=0.95),
                nerve.Conv2D(filters, kernel=3, padding="same", activation="relu"), nerve.BatchNorm(momentum=0.95),
                nerve.MaxPool2D()]
    return nerve.Sequential(block(32) + block(64) + [
        nerve.Flatten(), nerve.Dense(256, activation="relu"), nerve.Dropout(0.4),
        nerve.Dense(10, activation="softmax")], input_shape=(28, 28, 1))


def mlp():
    return nerve.Sequential([nerve.Dense(64, activation="lecun_tanh"), nerve.Dense(32, activation="sigmoid"),
                             nerve.Dense(10), nerve.Softmax()], input_shape=(784,))


@pytest.mark.parametrize("make, images, train, optimizer", [
    (mlp, False, 5000, nerve.Adam(0.003)),
    (lab_e, True, 2000, nerve.Adam(0.001)),
    (lab_h, True, 3000, nerve.Adam(0.002)),
])
def test_onnxruntime_matches_nerve(mnist, tmp_path, make, images, train, optimizer):
    (x, y), _, (tx, ty) = mnist
    shape = (-1, 28, 28, 1) if images else (-1, 784)
    model = make()
    model.fit(x[:train].reshape(shape), y[:train], epochs=1, batch_size=32, optimizer=optimizer, threads=2)
    path = tmp_path / "model.onnx"
    model.export_onnx(path)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == 13 and proto.ir_version == 7
    test = np.ascontiguousarray(tx[:1000].reshape(shape), dtype=np.float32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    theirs = session.run(["output"], {"input": test})[0]
    ours = model.predict_proba(test)
    assert theirs.shape == ours.shape == (1000, 10)
    worst = np.abs(theirs - ours).max() / np.abs(ours).max()
    assert worst <= 1e-5, worst
    assert (theirs.argmax(axis=1) == ours.argmax(axis=1)).all()
    accuracy = (ours.argmax(axis=1) == ty[:1000]).mean()
    print(make.__name__, "accuracy", accuracy, "largest difference", worst)
    assert accuracy > 0.6, "trained at all (the comparison means more on a model that classifies)"


def test_cli_export_writes_the_same_graph(mnist, tmp_path, cli):
    (x, y), _, (tx, _) = mnist
    model = mlp()
    model.fit(x[:500], y[:500], epochs=1)
    model.save(tmp_path / "m.safetensors")
    model.export_onnx(tmp_path / "py.onnx")
    assert "wrote" in cli("export", tmp_path / "m.safetensors", tmp_path / "cli.onnx")
    assert (tmp_path / "py.onnx").read_bytes() == (tmp_path / "cli.onnx").read_bytes()
