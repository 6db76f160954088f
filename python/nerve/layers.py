"""Layers, named as in Swift and the configs. Each is a description that becomes a [[layer]]
table of the config language; the library builds the network from those tables."""


def toml_value(value):
    """A Python value as TOML text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value} cannot be written as a setting")
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as a setting")


class Layer:
    """A layer of a Sequential model. `type` is its name in configs."""

    type = "layer"

    def __init__(self, **fields):
        self._fields = {k: v for k, v in fields.items() if v is not None}

    def toml(self):
        lines = ["[[layer]]", f"type = {toml_value(self.type)}"]
        lines += [f"{key} = {toml_value(value)}" for key, value in self._fields.items()]
        return "\n".join(lines) + "\n"

    def __repr__(self):
        args = ", ".join(f"{k}={v!r}" for k, v in self._fields.items())
        return f"{type(self).__name__}({args})"


def _pair(value, name):
    if value is None:
        return None
    if isinstance(value, int):
        return [value, value]
    if isinstance(value, (tuple, list)) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return list(value)
    raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")


class Dense(Layer):
    """A fully connected layer: `y = activation(x @ W + b)`, W of shape [inputs, units].

    `weights` and `bias` are initialisers as configs write them: "xavier_uniform" (default),
    "xavier_normal", "he_normal", "uniform(-0.1, 0.1)", "gaussian(0.01)", "zeros", ...
    """

    type = "dense"

    def __init__(self, units, activation=None, weights=None, bias=None, use_bias=True, l2=0.0):
        if not isinstance(units, int) or units < 1:
            raise ValueError(f"Dense: units must be a positive int, got {units!r}")
        super().__init__(units=units, activation=activation, weights=weights, bias=bias,
                         use_bias=None if use_bias else False, l2=float(l2) if l2 else None)


class Conv2D(Layer):
    """A 2-D convolution over [height, width, channels] images: `filters` kernels of `kernel`
    size (an int or (height, width)), `stride`, and padding "valid", "same" or a number."""

    type = "conv2d"

    def __init__(self, filters, kernel=3, stride=1, padding="valid", activation=None, weights=None,
                 bias=None, use_bias=True, l2=0.0):
        if not isinstance(filters, int) or filters < 1:
            raise ValueError(f"Conv2D: filters must be a positive int, got {filters!r}")
        super().__init__(filters=filters, kernel=_pair(kernel, "kernel"), stride=_pair(stride, "stride"),
                         padding=str(padding), activation=activation, weights=weights, bias=bias,
                         use_bias=None if use_bias else False, l2=float(l2) if l2 else None)


class MaxPool2D(Layer):
    """The maximum of each window (2x2 by default; stride defaults to the window)."""

    type = "maxpool2d"

    def __init__(self, pool=2, stride=None, padding="valid"):
        super().__init__(pool=_pair(pool, "pool"), stride=_pair(stride, "stride"), padding=str(padding))


class AvgPool2D(MaxPool2D):
    """The mean of each window (padding is not counted)."""

    type = "avgpool2d"


class BatchNorm(Layer):
    """Batch normalisation of dense features or image channels (Keras's momentum meaning)."""

    type = "batchnorm"

    def __init__(self, momentum=None, epsilon=None):
        # Unset values keep the library's defaults (0.99 and 1e-3), exactly as a config does.
        super().__init__(momentum=None if momentum is None else float(momentum),
                         epsilon=None if epsilon is None else float(epsilon))


class Dropout(Layer):
    """Drops a `rate` share of values in training (Keras's meaning), none in inference."""

    type = "dropout"

    def __init__(self, rate):
        if not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be in [0, 1), got {rate!r}")
        super().__init__(rate=float(rate))


class Flatten(Layer):
    """Images to flat vectors (channels-last order)."""

    type = "flatten"


class Activation(Layer):
    """An activation as a layer of its own: "sigmoid", "tanh", "relu", "lecun_tanh",
    "softmax", "identity"."""

    def __init__(self, name):
        super().__init__()
        self.type = str(name)


class Softmax(Activation):
    """Softmax over each sample's values (fused with a cross-entropy loss in training)."""

    def __init__(self):
        super().__init__("softmax")
