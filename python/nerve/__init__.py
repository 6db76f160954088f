"""Nerve from Python: neural networks for handwritten digits and other small image tasks.

    import nerve
    (x_train, y_train), (x_valid, y_valid), (x_test, y_test) = nerve.datasets.mnist()
    model = nerve.Sequential([nerve.Dense(30, activation="sigmoid"),
                              nerve.Dense(10, activation="sigmoid")], input_shape=(784,))
    history = model.fit(x_train, y_train, epochs=300, batch_size="full", loss="mse",
                        optimizer=nerve.SGD(learning_rate=1.0), validation_data=(x_valid, y_valid))
    model.evaluate(x_test, y_test)

The numbers are computed by Nerve's library (libNerveModel), the same code `nerve train` runs.
"""
from . import datasets
from ._library import version
from .errors import DivergedError, NerveError, NerveFileError, NerveShapeError, NerveValueError, NoModelError
from .layers import Activation, AvgPool2D, BatchNorm, Conv2D, Dense, Dropout, Flatten, Layer, MaxPool2D, Softmax
from .models import History, Sequential, load, train
from .optimizers import SGD, Adadelta, Adam, AdamW, EarlyStopping, Optimizer, RMSprop

__version__ = version()

__all__ = [
    "Activation", "Adadelta", "Adam", "AdamW", "AvgPool2D", "BatchNorm", "Conv2D", "Dense", "DivergedError",
    "Dropout", "EarlyStopping", "Flatten", "History", "Layer", "MaxPool2D", "NerveError", "NerveFileError",
    "NerveShapeError", "NerveValueError", "NoModelError", "Optimizer", "RMSprop", "SGD", "Sequential",
    "Softmax", "datasets", "load", "train", "version",
]
