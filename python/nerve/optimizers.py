"""Optimizers, named as in Swift and the configs. Each becomes keys of a [train] table; values
left unset keep the library's defaults, exactly as a config that does not name them."""
from .layers import toml_value


class Optimizer:
    name = "optimizer"

    def __init__(self, learning_rate, **settings):
        if not isinstance(learning_rate, (int, float)) or not learning_rate >= 0:
            raise ValueError(f"{type(self).__name__}: learning_rate must be a number >= 0, got {learning_rate!r}")
        self.learning_rate = float(learning_rate)
        self._settings = {k: float(v) for k, v in settings.items() if v is not None}

    def toml_lines(self):
        lines = [f"optimizer = {toml_value(self.name)}", f"learning_rate = {toml_value(self.learning_rate)}"]
        return lines + [f"{k} = {toml_value(v)}" for k, v in self._settings.items()]

    def __repr__(self):
        args = ", ".join([f"learning_rate={self.learning_rate!r}"] + [f"{k}={v!r}" for k, v in self._settings.items()])
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Gradient descent; with momentum the labs' form (v = m v + lr g; w -= v), or Nesterov's."""

    def __init__(self, learning_rate=0.01, momentum=None, nesterov=False, weight_decay=None):
        super().__init__(learning_rate, momentum=momentum, weight_decay=weight_decay)
        self.name = "nesterov" if nesterov else "sgd"


class Adam(Optimizer):
    """Adam with bias correction (Keras's defaults: 0.001, 0.9, 0.999, 1e-7)."""

    name = "adam"

    def __init__(self, learning_rate=0.001, beta1=None, beta2=None, epsilon=None, weight_decay=None):
        super().__init__(learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon, weight_decay=weight_decay)


class AdamW(Adam):
    """Adam with decoupled weight decay (the library's default decay 0.01)."""

    name = "adamw"


class RMSprop(Optimizer):
    """RMSprop (Keras's defaults: 0.001, rho 0.9, epsilon 1e-7)."""

    name = "rmsprop"

    def __init__(self, learning_rate=0.001, rho=None, epsilon=None, weight_decay=None):
        super().__init__(learning_rate, rho=rho, epsilon=epsilon, weight_decay=weight_decay)


class Adadelta(Optimizer):
    """Adadelta (Zeiler's learning rate 1.0, rho 0.95, epsilon 1e-6)."""

    name = "adadelta"

    def __init__(self, learning_rate=1.0, rho=None, epsilon=None, weight_decay=None):
        super().__init__(learning_rate, rho=rho, epsilon=epsilon, weight_decay=weight_decay)


class EarlyStopping:
    """Stop when `monitor` ("valid_loss" or "valid_accuracy") has not improved for `patience`
    epochs, keeping the best epoch's weights."""

    def __init__(self, patience=3, monitor="valid_loss"):
        if monitor not in ("valid_loss", "valid_accuracy"):
            raise ValueError(f"EarlyStopping: monitor must be 'valid_loss' or 'valid_accuracy', got {monitor!r}")
        if not isinstance(patience, int) or patience < 0:
            raise ValueError(f"EarlyStopping: patience must be an int >= 0, got {patience!r}")
        self.patience = patience
        self.monitor = monitor

    def toml_lines(self):
        return [f"patience = {self.patience}", f"monitor = {toml_value(self.monitor)}"]
