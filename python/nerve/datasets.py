"""The bundled data sets, loaded and split by the library exactly as `nerve train` loads them.

    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = nerve.datasets.mnist()

Images are float32 arrays of shape (N, 784) (or (N, 64) for the digits), scaled as the command
line scales them; labels are int64 arrays of shape (N,). The image arrays remember how they were
prepared (`x.preprocessing`), and a model trained on them saves it, so `nerve predict` prepares
new pictures the same way.
"""
import ctypes
import json

import numpy as np

from . import _library as L
from .layers import toml_value


class Images(np.ndarray):
    """A float32 array of samples that remembers its preparation (`preprocessing`, a dict such
    as {"scale": 1/255}); slicing and reshaping keep it."""

    def __new__(cls, values, preprocessing):
        array = np.asarray(values, dtype=np.float32).view(cls)
        array.preprocessing = preprocessing
        return array

    def __array_finalize__(self, source):
        self.preprocessing = getattr(source, "preprocessing", None)


def _load(data_toml):
    h = L.handle()
    if L.lib.nerve_dataset_create(ctypes.byref(h)) != 0:
        raise MemoryError("nerve_dataset_create failed")
    try:
        last = L.lib.nerve_dataset_last_error
        L.check(L.lib.nerve_dataset_load(h, data_toml.encode()), h, last)
        preprocessing = json.loads(L.text(L.lib.nerve_dataset_preprocessing(h), h, last))
        splits = []
        for which in (0, 1, 2):
            count, size = ctypes.c_int64(), ctypes.c_int64()
            L.check(L.lib.nerve_dataset_size(h, which, ctypes.byref(count), ctypes.byref(size)), h, last)
            x = np.empty((count.value, size.value), dtype=np.float32)
            y = np.empty(count.value, dtype=np.int32)
            if count.value:
                L.check(L.lib.nerve_dataset_copy(
                    h, which, x.ctypes.data_as(L.c_float_p), y.ctypes.data_as(L.c_int32_p)), h, last)
            splits.append((Images(x, preprocessing), y.astype(np.int64)))
        return tuple(splits)
    finally:
        L.lib.nerve_dataset_free(h)


def _table(**fields):
    lines = ["[data]"] + [f"{k} = {toml_value(v)}" for k, v in fields.items() if v is not None]
    return "\n".join(lines) + "\n"


def mnist(path=None, validation=10000):
    """MNIST (bundled, or the four IDX files in `path`): the first 60,000 - `validation` training
    images, the last `validation` of them held out, and the 10,000 test images, scaled to [0, 1].
    Returns ((x_train, y_train), (x_valid, y_valid), (x_test, y_test))."""
    return _load(_table(set="mnist", path=path, validation=int(validation)))


def digits(path=None, test_fraction=0.2, validation_fraction=0.0, split_seed=0, standardize=False):
    """The 8x8 digits (1,797 samples; values 0..16 scaled by 1/16, or standardised on the
    training split), split as `nerve train --dataset digits` splits them. Returns
    ((x_train, y_train), (x_valid, y_valid), (x_test, y_test)); the validation split is empty
    unless `validation_fraction` > 0."""
    return _load(_table(set="digits", path=path, test_fraction=float(test_fraction),
                        validation_fraction=float(validation_fraction), split_seed=int(split_seed),
                        standardize=bool(standardize)))
