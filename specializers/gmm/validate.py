"""Checks on user data and parameters, before any native code sees them.

Every error names the argument and says what was expected, e.g.
``X: expected a 2-D array (n_events, n_features), got 1-D``.
"""
from __future__ import annotations

import numpy as np

from asp.runtime import as_native

__all__ = ["check_cvtype", "check_data", "check_positive_int"]

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def check_cvtype(cvtype, allowed: tuple[str, ...], name: str = "cvtype") -> str:
    if not isinstance(cvtype, str) or cvtype not in allowed:
        raise ValueError(f"{name}={cvtype!r}: expected one of {', '.join(map(repr, allowed))}")
    return cvtype


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name}={value}: expected an integer >= {minimum}")
    return int(value)


def check_data(X, *, name: str = "X", n_features: int | None = None,
               min_events: int = 1, dtype=None) -> np.ndarray:
    """``X`` as a C-contiguous float32/float64 array of shape (N, D), or a clear error.

    Integer and boolean data become float64 (as in scikit-learn); ``dtype``
    forces one float type.
    """
    if hasattr(X, "toarray"):
        raise TypeError(f"{name}: sparse matrices are not supported; pass a dense array")
    try:
        arr = np.asarray(X)
    except Exception as exc:
        raise TypeError(f"{name}: cannot be read as an array ({exc})") from None
    if arr.dtype.kind in "biu":
        arr = arr.astype(np.float64)
    elif arr.dtype not in _FLOATS:
        if arr.dtype.kind == "f":  # float16 / longdouble
            arr = arr.astype(np.float64)
        else:
            raise TypeError(f"{name}: expected numeric (float32 or float64) data, got dtype "
                            f"{arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array (n_events, n_features), got "
                         f"{arr.ndim}-D with shape {arr.shape}; reshape 1-D data with "
                         "X.reshape(-1, 1) for one feature")
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: has 0 features")
    if n_features is not None and arr.shape[1] != n_features:
        raise ValueError(f"{name}: has {arr.shape[1]} features per event, but the model has "
                         f"D={n_features}")
    if arr.shape[0] < min_events:
        raise ValueError(f"{name}: has {arr.shape[0]} events, expected at least {min_events} "
                         "(one per mixture component)")
    if dtype is not None:
        arr = arr.astype(dtype, copy=False)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains NaN or infinity")
    return as_native(arr)
