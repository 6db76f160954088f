"""Sequential models: build, train, evaluate, predict, save, load and export them.

A model is a handle on the library's model (libNerveModel); arrays cross into it once per call
as float32, C-ordered, checked here against the model's input shape first, so the numbers (and
the time) are the library's.
"""
import ctypes
import json
import os
import signal
import threading

import numpy as np

from . import _library as L
from .layers import Layer, toml_value
from .optimizers import EarlyStopping, Optimizer, SGD


class History(dict):
    """Per-epoch lists keyed as the metrics file's epoch lines: history["valid_accuracy"].
    `epochs` holds each epoch's record, `stopped_early` and `best_epoch` say how it ended."""

    def __init__(self, record):
        epochs = record.get("epochs", [])
        keys = sorted({k for e in epochs for k in e if k != "gradients"})
        super().__init__({k: [e.get(k) for e in epochs] for k in keys})
        self.epochs = epochs
        self.stopped_early = record.get("stopped_early", False)
        self.best_epoch = record.get("best_epoch")


class Sequential:
    """A network of layers applied one after another.

        model = nerve.Sequential([nerve.Dense(30, activation="sigmoid"),
                                  nerve.Dense(10, activation="sigmoid")], input_shape=(784,))

    The network is built on first use (fit, predict, summary, ...), from `input_shape` or the
    shape of the first data it sees, with initial weights drawn from `seed` (fit's `seed` when
    the model is first built there, as `nerve train` uses one seed for both).
    """

    def __init__(self, layers=(), input_shape=None, seed=None, threads=None):
        self.layers = list(layers)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(f"layers[{i}] is {type(layer).__name__}, expected a nerve layer (nerve.Dense, ...)")
        self.input_shape = None if input_shape is None else tuple(int(d) for d in input_shape)
        self.seed = seed
        self.history = None
        self._threads = threads
        self._handle = None

    # ---- The handle ------------------------------------------------------------------------

    def _new_handle(self):
        h = L.handle()
        if L.lib.nerve_model_create(ctypes.byref(h)) != 0:
            raise MemoryError("nerve_model_create failed")
        self._handle = h
        if self._threads is not None:
            self._set_threads(self._threads)

    def __del__(self):
        if getattr(self, "_handle", None) is not None:
            L.lib.nerve_model_free(self._handle)
            self._handle = None

    def _check(self, status):
        L.check(status, self._handle)

    def _built(self, sample_shape=None, seed=None):
        """The handle, building the network first if needed."""
        if self._handle is not None and self.built:
            return self._handle
        if not self.layers:
            raise ValueError("the model has no layers")
        shape = self.input_shape or sample_shape
        if shape is None:
            raise ValueError("the model is not built yet: give input_shape=(...) or call fit first")
        if self._handle is None:
            self._new_handle()
        dims = (ctypes.c_int64 * len(shape))(*shape)
        text = "".join(layer.toml() for layer in self.layers)
        build_seed = self.seed if self.seed is not None else (seed if seed is not None else 1)
        self._check(L.lib.nerve_model_build(self._handle, text.encode(), dims, len(shape), int(build_seed)))
        self.input_shape = tuple(shape)
        self.built = True
        return self._handle

    built = False

    def _info(self):
        return json.loads(L.text(L.lib.nerve_model_info(self._built()), self._handle))

    @property
    def output_shape(self):
        return tuple(self._info()["output_shape"])

    @property
    def threads(self):
        """Worker threads of every kernel run for this model."""
        if self._handle is None:
            return self._threads
        return L.lib.nerve_model_threads(self._handle)

    @threads.setter
    def threads(self, value):
        self._set_threads(value)

    def _set_threads(self, value):
        if value is None:
            value = 0
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"threads must be a positive int (or None for the default), got {value!r}")
        self._threads = value or None
        if self._handle is not None:
            self._check(L.lib.nerve_model_set_threads(self._handle, value))

    def _with_threads(self, threads):
        if threads is not None:
            self._set_threads(threads)

    # ---- Arrays in ---------------------------------------------------------------------------

    def _samples(self, x, name, seed=None, as_bytes=False):
        """x as float32 C-ordered samples of the model's input shape, or an error naming it
        (with as_bytes, uint8 samples stay uint8). An unbuilt model is built first (for x's
        sample shape without an input_shape)."""
        if self._handle is None or not self.built:
            if self.input_shape is None:
                arr = np.asarray(x)
                if arr.ndim < 2:
                    raise ValueError(f"{name} must be an array of samples (N, ...), got shape {arr.shape}")
                self._built(tuple(arr.shape[1:]), seed=seed)
            else:
                self._built(seed=seed)
        shape = self.input_shape
        try:
            arr = np.asarray(x)
        except Exception as e:  # noqa: BLE001 (anything numpy cannot read)
            raise TypeError(f"{name} must be an array of numbers, got {type(x).__name__}") from e
        if arr.dtype.kind not in "biuf":
            raise TypeError(f"{name} must hold numbers, got dtype {arr.dtype}")
        size = int(np.prod(shape))
        if arr.ndim == 1 + len(shape) and tuple(arr.shape[1:]) == shape:
            pass
        elif arr.ndim == 2 and arr.shape[1] == size:
            pass  # flat samples of an image model: the same values in the same order
        else:
            raise ValueError(
                f"{name} has shape {arr.shape}, expected (N, {', '.join(map(str, shape))})"
                + (f" or (N, {size})" if len(shape) > 1 else ""))
        if arr.dtype == np.uint8 and as_bytes:
            return np.ascontiguousarray(arr).reshape((arr.shape[0],) + shape)
        return np.ascontiguousarray(arr, dtype=np.float32).reshape((arr.shape[0],) + shape)

    def _labels(self, y, count, name):
        """y as int32 classes: (N,) integers, or (N, classes) one-hot rows."""
        arr = np.asarray(y)
        classes = int(np.prod(self.output_shape))
        if arr.ndim == 2:
            if arr.shape[1] != classes:
                raise ValueError(f"{name} has shape {arr.shape}: one-hot labels must be (N, {classes})")
            if not (np.all((arr == 0) | (arr == 1)) and np.all(arr.sum(axis=1) == 1)):
                raise ValueError(f"{name}: 2-D labels must be one-hot rows (one 1 per row, 0 elsewhere)")
            arr = arr.argmax(axis=1)
        elif arr.ndim != 1:
            raise ValueError(f"{name} has shape {arr.shape}, expected (N,) classes or (N, {classes}) one-hot")
        if arr.dtype.kind == "f":
            if not np.all(arr == np.round(arr)):
                raise ValueError(f"{name} must hold whole class numbers")
        elif arr.dtype.kind not in "iub":
            raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
        if arr.shape[0] != count:
            raise ValueError(f"{name} has {arr.shape[0]} labels but the samples are {count}")
        if count and (arr.min() < 0 or arr.max() >= classes):
            raise ValueError(f"{name} holds classes outside 0..{classes - 1}")
        return np.ascontiguousarray(arr, dtype=np.int32)

    # ---- Training ----------------------------------------------------------------------------

    def fit(self, x, y, epochs=1, batch_size=32, loss="cross_entropy", optimizer=None,
            validation_data=None, seed=1, shuffle=True, schedule=None, early_stopping=None,
            gradient_every=None, on_epoch=None, threads=None, verbose=False):
        """Trains the model; returns its History (per-epoch lists keyed like the metrics file).

        batch_size is a number, 1 for per-sample SGD, or "full". loss is "mse",
        "cross_entropy" or "nll". optimizer defaults to SGD(learning_rate=0.1). schedule is
        "constant", "step(10, 0.5)", "cosine", "cosine(0.01)" or "exponential(0.95)".
        early_stopping is a nerve.EarlyStopping (needs validation_data). on_epoch(metrics) is
        called after every epoch with its metrics; return False to stop. Ctrl-C stops after the
        current step and raises KeyboardInterrupt.
        """
        self._with_threads(threads)
        xs = self._samples(x, "x", seed=seed)
        ys = self._labels(y, xs.shape[0], "y")
        if xs.shape[0] == 0:
            raise ValueError("x holds no samples")
        vx = vy = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data must be a pair (x, y)")
            vx = self._samples(validation_data[0], "validation_data[0]")
            vy = self._labels(validation_data[1], vx.shape[0], "validation_data[1]")
        preprocessing = getattr(x, "preprocessing", None)
        if preprocessing is not None and self._info()["preprocessing"] == {"scale": 1}:
            self._check(L.lib.nerve_model_set_preprocessing(self._handle, json.dumps(preprocessing).encode()))
        text = self._train_table(epochs, batch_size, loss, optimizer, seed, shuffle, schedule,
                                 early_stopping, gradient_every)
        with _Callbacks(on_epoch, verbose, epochs) as calls:
            status = L.lib.nerve_model_train(
                self._handle, text.encode(), xs.ctypes.data_as(L.c_float_p), ys.ctypes.data_as(L.c_int32_p),
                xs.shape[0],
                None if vx is None else vx.ctypes.data_as(L.c_float_p),
                None if vy is None else vy.ctypes.data_as(L.c_int32_p), 0 if vx is None else vx.shape[0],
                calls.epoch_callback, calls.progress_callback, None)
        calls.raise_pending(status)
        self._check(status)
        self.history = History(json.loads(L.text(L.lib.nerve_model_history(self._handle), self._handle)))
        return self.history

    @staticmethod
    def _train_table(epochs, batch_size, loss, optimizer, seed, shuffle, schedule, early_stopping, gradient_every):
        if optimizer is None:
            optimizer = SGD(learning_rate=0.1)
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a nerve optimizer (nerve.SGD, nerve.Adam, ...), got {optimizer!r}")
        if not isinstance(epochs, int) or epochs < 0:
            raise ValueError(f"epochs must be an int >= 0, got {epochs!r}")
        if batch_size != "full" and (not isinstance(batch_size, int) or batch_size < 1):
            raise ValueError(f"batch_size must be a positive int or 'full', got {batch_size!r}")
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        lines = ["[train]", f"loss = {toml_value(str(loss))}", f"epochs = {epochs}",
                 f"batch_size = {toml_value(batch_size)}", f"seed = {seed}", f"shuffle = {toml_value(bool(shuffle))}"]
        lines += optimizer.toml_lines()
        if schedule is not None:
            lines.append(f"schedule = {toml_value(str(schedule))}")
        if early_stopping is not None:
            if isinstance(early_stopping, int):
                early_stopping = EarlyStopping(patience=early_stopping)
            lines += early_stopping.toml_lines()
        if gradient_every is not None:
            lines.append(f"gradient_every = {int(gradient_every)}")
        return "\n".join(lines) + "\n"

    # ---- Using a model -------------------------------------------------------------------

    def evaluate(self, x, y, loss=None, threads=None):
        """{"loss": mean loss, "accuracy": share correct, "correct": count} on labelled samples.
        loss defaults to the one the model was trained with."""
        self._with_threads(threads)
        xs = self._samples(x, "x")
        ys = self._labels(y, xs.shape[0], "y")
        if xs.shape[0] == 0:
            raise ValueError("x holds no samples")
        value, correct = ctypes.c_double(), ctypes.c_int64()
        self._check(L.lib.nerve_model_evaluate(
            self._handle, ctypes.byref(value), ctypes.byref(correct), xs.ctypes.data_as(L.c_float_p),
            ys.ctypes.data_as(L.c_int32_p), xs.shape[0], None if loss is None else str(loss).encode()))
        return {"loss": value.value, "accuracy": correct.value / xs.shape[0], "correct": correct.value}

    def predict(self, x, threads=None):
        """The predicted class of each sample, an int64 array of shape (N,). uint8 samples
        (images as their files store them) are read as bytes, not copied as floats: the same
        classes as from their values as floats."""
        self._with_threads(threads)
        xs = self._samples(x, "x", as_bytes=True)
        out = np.empty(xs.shape[0], dtype=np.int32)
        if xs.shape[0] and xs.dtype == np.uint8:
            self._check(L.lib.nerve_model_predict_pixels(
                self._handle, out.ctypes.data_as(L.c_int32_p), xs.ctypes.data_as(L.c_uint8_p), 1.0, xs.shape[0]))
        elif xs.shape[0]:
            self._check(L.lib.nerve_model_predict(
                self._handle, out.ctypes.data_as(L.c_int32_p), xs.ctypes.data_as(L.c_float_p), xs.shape[0]))
        return out.astype(np.int64)

    def predict_proba(self, x, threads=None):
        """The model's outputs for each sample (probabilities when it ends with a softmax); uint8
        samples are read as bytes, with the outputs of their values as floats, bit for bit."""
        self._with_threads(threads)
        xs = self._samples(x, "x", as_bytes=True)
        out = np.empty((xs.shape[0],) + self.output_shape, dtype=np.float32)
        if xs.shape[0] and xs.dtype == np.uint8:
            self._check(L.lib.nerve_model_predict_proba_pixels(
                self._handle, out.ctypes.data_as(L.c_float_p), xs.ctypes.data_as(L.c_uint8_p), 1.0, xs.shape[0]))
        elif xs.shape[0]:
            self._check(L.lib.nerve_model_predict_proba(
                self._handle, out.ctypes.data_as(L.c_float_p), xs.ctypes.data_as(L.c_float_p), xs.shape[0]))
        return out

    def summary(self, print_fn=print):
        """The layers, output shapes and parameter counts (printed, and returned)."""
        text = L.text(L.lib.nerve_model_summary(self._built()), self._handle)
        if print_fn is not None:
            print_fn(text)
        return text

    @property
    def preprocessing(self):
        """How raw inputs are prepared for this model, e.g. {"scale": 0.00392...}."""
        return self._info()["preprocessing"]

    @preprocessing.setter
    def preprocessing(self, value):
        self._check(L.lib.nerve_model_set_preprocessing(self._built(), json.dumps(value).encode()))

    def save(self, path):
        """Saves the model (architecture, weights, preprocessing) as safetensors, atomically;
        `nerve eval`, `nerve predict` and `nerve.load` read it."""
        self._check(L.lib.nerve_model_save(self._built(), os.fsencode(path)))

    def export_onnx(self, path):
        """Writes the model as ONNX (opset 13): input "input" of shape (batch, *input_shape),
        output "output"."""
        self._check(L.lib.nerve_model_export_onnx(self._built(), os.fsencode(path)))

    def __repr__(self):
        state = f"input_shape={self.input_shape}" if self.built else "not built"
        return f"<nerve.Sequential {len(self.layers) or '?'} layers, {state}>"


class _Callbacks:
    """The C callbacks of one fit: the user's per-epoch function, and a progress hook through
    which Ctrl-C stops training after the current step.

    While training runs (in the main thread), SIGINT only sets a flag that the progress hook
    reports to the library; the KeyboardInterrupt is raised once the call has returned, so no
    exception ever has to cross the C frames.
    """

    def __init__(self, on_epoch, verbose, epochs):
        self.pending = None
        self.interrupted = False
        self.on_epoch = on_epoch
        self.verbose = verbose
        self.epochs = epochs
        self.epoch_callback = L.EPOCH_CALLBACK(self._epoch)
        self.progress_callback = L.PROGRESS_CALLBACK(self._progress)
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False

    def _on_sigint(self, _signum, _frame):
        self.interrupted = True

    def _epoch(self, _user, text):
        try:
            metrics = json.loads(text.decode())
            if self.verbose:
                valid = f", valid accuracy {metrics['valid_accuracy']:.4f}" if "valid_accuracy" in metrics else ""
                print(f"epoch {metrics['epoch']}/{self.epochs}: loss {metrics['train_loss']:.4f}, "
                      f"accuracy {metrics['train_accuracy']:.4f}{valid}")
            if self.on_epoch is not None and self.on_epoch(metrics) is False:
                return 1
            return 0
        except BaseException as e:  # noqa: BLE001 (re-raised after the call returns)
            self.pending = e
            return 1

    def _progress(self, _user, _epoch, _step, _steps, _loss):
        # Running Python here lets the SIGINT handler run; it only sets the flag.
        return 1 if self.interrupted or self.pending is not None else 0

    def raise_pending(self, status):
        if self.pending is not None:
            raise self.pending
        if self.interrupted and status == L.INTERRUPTED:
            raise KeyboardInterrupt(L.lib.nerve_status_string(status).decode())


def load(path, threads=None):
    """A model saved by `nerve train --save`, `model.save` or any Nerve."""
    model = Sequential(threads=threads)
    model._new_handle()
    model._check(L.lib.nerve_model_load(model._handle, os.fsencode(path)))
    model.built = True
    info = model._info()
    model.input_shape = tuple(info["input_shape"])
    return model


def train(config, metrics=None, save=None, threads=None, on_epoch=None, verbose=False, set=None, **overrides):
    """Runs a config file as `nerve train --config FILE` does and returns the trained model,
    with `history` and `results` (the metrics file's summary: test_accuracy, ...).

    Keyword arguments change config keys as `--set` does: `epochs=1`, `learning_rate=0.01`,
    `subset=1000`; `set={"layer.0.filters": 16}` for keys that are not Python names.
    """
    changes = dict(overrides)
    changes.update(set or {})
    texts = [f"{k}={toml_value(v)}".encode() for k, v in changes.items()]
    array = (ctypes.c_char_p * max(len(texts), 1))(*texts)
    model = Sequential(threads=threads)
    model._new_handle()
    with _Callbacks(on_epoch, verbose, changes.get("epochs", "?")) as calls:
        status = L.lib.nerve_model_run_config(
            model._handle, os.fsencode(config), array, len(texts),
            None if metrics is None else os.fsencode(metrics), None if save is None else os.fsencode(save),
            calls.epoch_callback, calls.progress_callback, None)
    calls.raise_pending(status)
    model._check(status)
    model.built = True
    model.input_shape = tuple(model._info()["input_shape"])
    model.history = History(json.loads(L.text(L.lib.nerve_model_history(model._handle), model._handle)))
    model.results = json.loads(L.text(L.lib.nerve_model_run_summary(model._handle), model._handle))
    return model
