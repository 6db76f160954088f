"""Same config, seed and data: the model Python trains is byte for byte the model `nerve train`
trains (Lab A and Lab E on subsets)."""
import nerve


def test_lab_a_from_python_is_byte_identical_to_the_cli(mnist, cli, tmp_path, root):
    (x, y), (vx, vy), _ = mnist
    cli("train", "--config", root / "examples/lab-a-mlp-mse.toml", "--set", "data.subset=1000", "--epochs", 4,
        "--threads", 2, "--quiet", "--save", tmp_path / "cli.safetensors")
    model = nerve.Sequential([
        nerve.Dense(30, activation="sigmoid", weights="uniform(-0.1, 0.1)"),
        nerve.Dense(10, activation="sigmoid", weights="uniform(-0.1, 0.1)")], input_shape=(784,))
    model.fit(x[:1000], y[:1000], epochs=4, batch_size="full", loss="mse", optimizer=nerve.SGD(learning_rate=1.0),
              validation_data=(vx, vy), seed=1, threads=2)
    model.save(tmp_path / "py.safetensors")
    assert (tmp_path / "py.safetensors").read_bytes() == (tmp_path / "cli.safetensors").read_bytes()


def test_lab_e_from_python_is_byte_identical_to_the_cli(mnist, cli, tmp_path, root):
    (x, y), (vx, vy), _ = mnist
    cli("train", "--config", root / "examples/lab-e-cnn.toml", "--set", "data.subset=640", "--set",
        "data.validation=10000", "--epochs", 1, "--threads", 2, "--quiet", "--save", tmp_path / "cli.safetensors")
    model = nerve.Sequential([
        nerve.Conv2D(32, kernel=3, padding="same", activation="relu", weights="glorot_normal"),
        nerve.BatchNorm(), nerve.MaxPool2D(pool=2), nerve.Flatten(),
        nerve.Dense(784, activation="relu", weights="glorot_normal"),
        nerve.Dense(10, activation="softmax", weights="glorot_normal")], input_shape=(28, 28, 1))
    images = x[:640].reshape(-1, 28, 28, 1)
    model.fit(images, y[:640], epochs=1, batch_size=32, loss="cross_entropy",
              optimizer=nerve.Adam(learning_rate=0.0001), seed=1, threads=2)
    model.save(tmp_path / "py.safetensors")
    assert (tmp_path / "py.safetensors").read_bytes() == (tmp_path / "cli.safetensors").read_bytes()
