"""Exceptions: every failure the library reports, as a Python exception with its message."""


class NerveError(Exception):
    """A failure reported by Nerve: the message names the function, file or field at fault."""


class NerveFileError(NerveError, OSError):
    """A file is missing, unreadable, truncated or not in the expected format."""


class NerveValueError(NerveError, ValueError):
    """An argument, option or config key has a value Nerve cannot use."""


class NerveShapeError(NerveValueError):
    """Shapes that must agree do not (layer sizes, samples and labels, ...)."""


class DivergedError(NerveError, ArithmeticError):
    """Training produced a NaN or infinite loss; the model holds the last good epoch."""


class NoModelError(NerveError):
    """The call needs a model, and none was built or loaded yet."""


_BY_STATUS = {
    1: NerveValueError,   # NULL pointer
    2: NerveValueError,   # bad size
    3: NerveValueError,   # bad argument
    4: MemoryError,
    6: NerveFileError,
    7: NerveShapeError,
    8: DivergedError,
    10: NerveFileError,   # write failed
    11: NoModelError,
}


def error_for(status, message):
    """The exception for a C status (KeyboardInterrupt for an interrupted training)."""
    if status == 9:
        return KeyboardInterrupt(message)
    cls = _BY_STATUS.get(status, NerveError)
    if cls is MemoryError:
        return MemoryError(message)
    return cls(message)
