"""The ctypes binding of libNerveModel (include/nerve_model.h): loading, signatures, statuses.

Everything numeric happens in the library; this module only declares the C functions and turns
a failed status into a Python exception carrying the library's one-line message.
"""
import ctypes
import os
from pathlib import Path

from .errors import error_for

LIBRARY = "libNerveModel.so"


def _find_library():
    explicit = os.environ.get("NERVE_LIBRARY")
    here = Path(__file__).resolve().parent
    candidates = [Path(explicit)] if explicit else []
    candidates += [here / LIBRARY, here.parent.parent / ".build" / "release" / LIBRARY]
    for path in candidates:
        if path.is_file():
            return str(path)
    raise ImportError(
        f"{LIBRARY} not found (looked at {', '.join(map(str, candidates))}); build Nerve with "
        "`swift build -c release` and reinstall this package, or set NERVE_LIBRARY")


lib = ctypes.CDLL(_find_library())

c_float_p = ctypes.POINTER(ctypes.c_float)
c_uint8_p = ctypes.POINTER(ctypes.c_uint8)
c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_int64_p = ctypes.POINTER(ctypes.c_int64)
c_double_p = ctypes.POINTER(ctypes.c_double)
handle = ctypes.c_void_p

EPOCH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)
PROGRESS_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, ctypes.c_double)

_SIGNATURES = {
    "nerve_version_string": (ctypes.c_char_p, []),
    "nerve_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "nerve_model_create": (ctypes.c_int, [ctypes.POINTER(handle)]),
    "nerve_model_free": (None, [handle]),
    "nerve_model_last_error": (ctypes.c_char_p, [handle]),
    "nerve_model_set_threads": (ctypes.c_int, [handle, ctypes.c_int]),
    "nerve_model_threads": (ctypes.c_int, [handle]),
    "nerve_model_build": (ctypes.c_int, [handle, ctypes.c_char_p, c_int64_p, ctypes.c_int, ctypes.c_uint64]),
    "nerve_model_load": (ctypes.c_int, [handle, ctypes.c_char_p]),
    "nerve_model_save": (ctypes.c_int, [handle, ctypes.c_char_p]),
    "nerve_model_export_onnx": (ctypes.c_int, [handle, ctypes.c_char_p]),
    "nerve_model_summary": (ctypes.c_char_p, [handle]),
    "nerve_model_info": (ctypes.c_char_p, [handle]),
    "nerve_model_set_preprocessing": (ctypes.c_int, [handle, ctypes.c_char_p]),
    "nerve_model_predict": (ctypes.c_int, [handle, c_int32_p, c_float_p, ctypes.c_int64]),
    "nerve_model_predict_proba": (ctypes.c_int, [handle, c_float_p, c_float_p, ctypes.c_int64]),
    "nerve_model_predict_pixels": (ctypes.c_int, [handle, c_int32_p, c_uint8_p, ctypes.c_float, ctypes.c_int64]),
    "nerve_model_predict_proba_pixels": (ctypes.c_int, [
        handle, c_float_p, c_uint8_p, ctypes.c_float, ctypes.c_int64]),
    "nerve_model_evaluate": (ctypes.c_int, [
        handle, c_double_p, c_int64_p, c_float_p, c_int32_p, ctypes.c_int64, ctypes.c_char_p]),
    "nerve_model_train": (ctypes.c_int, [
        handle, ctypes.c_char_p, c_float_p, c_int32_p, ctypes.c_int64, c_float_p, c_int32_p, ctypes.c_int64,
        EPOCH_CALLBACK, PROGRESS_CALLBACK, ctypes.c_void_p]),
    "nerve_model_history": (ctypes.c_char_p, [handle]),
    "nerve_model_run_config": (ctypes.c_int, [
        handle, ctypes.c_char_p, ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_char_p,
        ctypes.c_char_p, EPOCH_CALLBACK, PROGRESS_CALLBACK, ctypes.c_void_p]),
    "nerve_model_run_summary": (ctypes.c_char_p, [handle]),
    "nerve_dataset_create": (ctypes.c_int, [ctypes.POINTER(handle)]),
    "nerve_dataset_free": (None, [handle]),
    "nerve_dataset_last_error": (ctypes.c_char_p, [handle]),
    "nerve_dataset_load": (ctypes.c_int, [handle, ctypes.c_char_p]),
    "nerve_dataset_size": (ctypes.c_int, [handle, ctypes.c_int, c_int64_p, c_int64_p]),
    "nerve_dataset_copy": (ctypes.c_int, [handle, ctypes.c_int, c_float_p, c_int32_p]),
    "nerve_dataset_preprocessing": (ctypes.c_char_p, [handle]),
}

for _name, (_restype, _argtypes) in _SIGNATURES.items():
    _f = getattr(lib, _name)
    _f.restype = _restype
    _f.argtypes = _argtypes

INTERRUPTED = 9


def check(status, h, last_error=lib.nerve_model_last_error):
    """Raises the exception for a failed status, with the handle's message."""
    if status != 0:
        message = last_error(h).decode("utf-8", "replace") or lib.nerve_status_string(status).decode()
        raise error_for(status, message)


def text(pointer, h, last_error=lib.nerve_model_last_error):
    """A string the library returned (NULL means failure: raise with the handle's message)."""
    if pointer is None:
        raise error_for(12, last_error(h).decode("utf-8", "replace"))
    return pointer.decode("utf-8")


def version():
    return lib.nerve_version_string().decode()
