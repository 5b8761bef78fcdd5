"""C scalar types and their numpy counterparts."""
from __future__ import annotations

import numpy as np

__all__ = ["CTYPES", "ctype_of", "dtype_of", "is_float", "promote"]

CTYPES: dict[str, np.dtype] = {
    "double": np.dtype(np.float64),
    "float": np.dtype(np.float32),
    "int64_t": np.dtype(np.int64),
    "int32_t": np.dtype(np.int32),
    "int16_t": np.dtype(np.int16),
    "int8_t": np.dtype(np.int8),
    "uint8_t": np.dtype(np.uint8),
    "uint16_t": np.dtype(np.uint16),
    "uint32_t": np.dtype(np.uint32),
    "uint64_t": np.dtype(np.uint64),
    "bool": np.dtype(np.bool_),
}
_BY_DTYPE = {v: k for k, v in CTYPES.items()}


def ctype_of(dtype) -> str:
    """The C type for a numpy dtype; TypeError for a dtype asp cannot compile."""
    dt = np.dtype(dtype)
    try:
        return _BY_DTYPE[dt.newbyteorder("=") if dt.byteorder not in "=|" else dt]
    except KeyError:
        raise TypeError(f"dtype {dt} is not supported by compiled kernels") from None


def dtype_of(ctype: str) -> np.dtype:
    return CTYPES[ctype]


def is_float(ctype: str) -> bool:
    return ctype in ("double", "float")


def promote(a: str, b: str) -> str:
    """The C type of a binary operation's result, by numpy's rules for arrays."""
    return ctype_of(np.promote_types(dtype_of(a), dtype_of(b)))
