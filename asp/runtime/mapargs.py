"""Arguments of kernels that apply a scalar function to every element of some arrays.

An elementwise map and a reduction take the same arguments: arrays of one shape
(any number of dimensions), and Python numbers broadcast to every element (weak
scalars, NEP 50).  :func:`map_arguments` validates and normalizes them with errors
that name the argument; :func:`scalar_types` gives the translator's parameter types
and the guards; :func:`map_python` runs the user's function on every element as
Python would (on NumPy scalars, so float32 stays float32).
"""
from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from asp.errors import UnrepresentableValue
from asp.frontend.scalar import FLOAT, INT, T
from asp.ir.types import CTYPES, ctype_of
from asp.runtime.abi import ArgSpec, as_native, refuse_special_array

__all__ = ["FunctionCalls", "MapArgs", "Parameters", "as_int64", "bind_keywords", "compilable",
           "map_arguments", "map_python", "native", "numpy_scalar", "python_values",
           "random_like", "same_shape", "scalar_arg", "scalar_types", "size_bucket",
           "write_back"]


def compilable(dtype) -> bool:
    """A real numeric dtype with a C type (not float16, longdouble, complex, object, ...),
    in this machine's byte order."""
    return dtype.kind in "biuf" and dtype.isnative and dtype in CTYPES.values()


def native(dtype: np.dtype) -> np.dtype:
    """``dtype`` in this machine's byte order: what a kernel computes data of ``dtype``
    in (on a copy; NumPy's ufuncs do the same with big-endian arrays)."""
    return dtype if dtype.isnative else dtype.newbyteorder("=")


@dataclass
class MapArgs:
    """Normalized arguments: ``args`` (contiguous arrays, ``int`` and ``float``, NumPy
    scalars as they are), their signature ``parts``, their common ``shape``, and whether
    they are the caller's own."""

    args: list
    parts: list[str]
    shape: tuple[int, ...]
    same: bool


@dataclass(frozen=True)
class Parameters:
    """What a call of a function binds: its parameters' ``names`` (those that may be given
    by position, then the keyword-only ones), how many may be given by position
    (``positional``), how many only by position (``posonly``), and the ``defaults`` by
    name.  ``plain``: the number of positional arguments that binds nothing (every
    parameter given by position), -1 if there is none (keyword-only parameters).  (They
    are read from the function's code and defaults, which can be replaced in place: a
    wrapper that binds checks those first.)"""

    names: list[str]
    positional: int
    posonly: int
    defaults: dict

    @property
    def plain(self) -> int:
        return len(self.names) if self.positional == len(self.names) else -1

    @classmethod
    def of(cls, fn: Callable, skip: int = 0) -> Parameters:
        """``fn``'s parameters after its first ``skip`` (``self``)."""
        code = fn.__code__
        npos = code.co_argcount
        given = fn.__defaults__ or ()
        defaults = dict(zip(code.co_varnames[npos - len(given):npos], given))
        defaults.update(fn.__kwdefaults__ or {})
        return cls(list(code.co_varnames[skip:npos + code.co_kwonlyargcount]), npos - skip,
                   max(code.co_posonlyargcount - skip, 0), defaults)

    def bind(self, fname: str, args: tuple, kwargs: dict) -> tuple:
        """``args`` and ``kwargs`` as one tuple in the order of ``names``, by Python's
        rules (defaults filled in)."""
        if len(args) > self.positional and self.positional < len(self.names):
            raise TypeError(f"{fname}() takes {self.positional} positional argument(s) "
                            f"({', '.join(self.names[:self.positional])}), got {len(args)}")
        for name in kwargs:
            if name in self.names[:self.posonly]:
                raise TypeError(f"{fname}() got positional-only argument {name!r} by name")
        return bind_keywords(fname, self.names, args, kwargs, self.defaults)


class FunctionCalls:
    """The arguments a decorated function's call hands its kernel, as one tuple in the
    function's order (keywords and defaults bound: :meth:`Parameters.bind`), after its
    specializer is renewed (``forget()``) if the function was replaced in place
    (``%autoreload`` assigns a new ``__code__``) or its defaults were.  The elementwise
    and reduction decorators share it; ``specializer`` has ``parameters`` and
    ``forget()``."""

    def __init__(self, fn: Callable, specializer):
        self.fn, self.specializer = fn, specializer
        self._note()

    def _note(self) -> None:
        fn = self.fn
        self.made = (fn.__code__, fn.__defaults__, fn.__kwdefaults__)
        self.plain = self.specializer.parameters.plain  # calls that bind nothing

    def renew(self) -> None:
        self.specializer.forget()
        self._note()

    def args(self, args: tuple, kwargs: dict) -> tuple:
        fn, made = self.fn, self.made
        if fn.__code__ is not made[0]:  # replaced in place (%autoreload)
            self.renew()
        if kwargs or len(args) != self.plain:  # by name, defaults: in the function's order
            if fn.__defaults__ is not made[1] or fn.__kwdefaults__ is not made[2]:
                self.renew()
            args = self.specializer.parameters.bind(fn.__name__, args, kwargs)
        return args


def bind_keywords(fname: str, params: Sequence[str], args: tuple, kwargs: dict,
                  defaults: dict | None = None) -> tuple:
    """``args`` and the keyword arguments ``kwargs`` named after ``params`` as one tuple in
    the order of ``params``, by Python's rules for a function ``fname(*params)`` whose
    parameters in ``defaults`` may be left out."""
    defaults = defaults or {}
    for name in kwargs:
        if name not in params:
            raise TypeError(f"{fname}() got an unexpected keyword argument {name!r} "
                            f"(its parameters: {', '.join(params)})")
        if params.index(name) < len(args):
            raise TypeError(f"{fname}() got multiple values for argument {name!r}")
    missing = [p for p in params[len(args):] if p not in kwargs and p not in defaults]
    if missing:
        raise TypeError(f"{fname}() missing argument(s): {', '.join(map(repr, missing))}")
    return (*args, *(kwargs[p] if p in kwargs else defaults[p] for p in params[len(args):]))


def map_arguments(fname: str, params: Sequence[str], inputs: Sequence) -> MapArgs:
    """Validate ``inputs`` for a function ``fname(*params)`` mapped over arrays."""
    if len(inputs) != len(params):
        raise TypeError(f"{fname}() takes {len(params)} argument(s) ({', '.join(params)}), "
                        f"got {len(inputs)}")
    conv, parts, same, shape, shape_of = [], [], True, None, None
    for name, a in zip(params, inputs):
        refuse_special_array(fname, name, a)
        if isinstance(a, list | tuple):
            a, same = np.asarray(a), False
        if isinstance(a, np.ndarray) and a.ndim == 0:  # a 0-d array is a scalar
            a, same = a[()], False
        if isinstance(a, np.ndarray):
            if not compilable(native(a.dtype)):
                raise TypeError(f"{fname}() argument {name!r} has dtype {a.dtype}; "
                                "expected float32/64, (u)int8-64 or bool")
            if not a.dtype.isnative:  # big-endian data (a FITS file's): a native copy
                a, same = as_native(a, native(a.dtype)), False
            shape, shape_of = same_shape(fname, name, a.shape, shape, shape_of)
            if not (a.flags.c_contiguous and a.flags.aligned):
                a, same = as_native(a), False
            conv.append(a)
            parts.append(f"{a.dtype.str}{a.ndim}")
        elif isinstance(a, bool):  # weak, a bool: True + np.True_ is np.True_, not 2
            conv.append(a)
            parts.append("b")
        elif isinstance(a, np.bool_):  # strong: -np.True_ raises, where -True is -1
            conv.append(a)
            parts.append(f"{a.dtype.str}s")
        elif isinstance(a, np.number):
            conv.append(numpy_scalar(fname, name, a))  # as it is: the guards check its type
            parts.append(f"{a.dtype.str}s")
        elif isinstance(a, numbers.Integral):
            value = as_int64(fname, name, a)
            if type(a) is not int:  # (a bool's, a NumPy integer's subclass: a plain int)
                a, same = value, False
            conv.append(a)
            parts.append("i")
        elif isinstance(a, numbers.Real):
            if type(a) is not float:
                a, same = float(a), False
            conv.append(a)
            parts.append("f")
        elif a is None:
            raise TypeError(f"{fname}() argument {name!r} is None; expected an array "
                            "or a number")
        else:
            raise TypeError(f"{fname}() argument {name!r} must be a numpy array or a "
                            f"number, not {type(a).__name__}")
    if shape is None:
        raise TypeError(f"{fname}() needs at least one array argument "
                        "(call the Python function directly for scalars)")
    return MapArgs(conv, parts, shape, same)


def same_shape(fname: str, name: str, this: tuple, shape: tuple | None,
               shape_of: str | None) -> tuple[tuple, str]:
    """The common shape so far (and whose it is) once argument ``name`` of shape ``this``
    is in: ``ValueError`` naming both if they differ."""
    if shape is None:
        return this, name
    if this != shape:
        raise ValueError(f"{fname}() argument {name!r} has shape {this} but {shape_of!r} "
                         f"has shape {shape}; arrays must have the same shape (scalars "
                         "broadcast)")
    return shape, shape_of


def numpy_scalar(fname: str, name: str, a: np.number) -> np.number:
    """A NumPy scalar argument, checked: it keeps its type (NumPy's rules type it as its
    dtype, *strong*, where a Python number is *weak*: ``np.float64(0.1) * x`` is float64
    for a float32 ``x``, ``0.1 * x`` float32), and must have a C type and fit the call's
    int64 or double slot."""
    if not compilable(a.dtype):
        raise TypeError(f"{fname}() argument {name!r} is a NumPy {a.dtype} scalar; expected "
                        "float32/64 or (u)int8-64")
    if a.dtype.kind == "u":
        as_int64(fname, name, a)
    return a


def as_int64(fname: str, name: str, a) -> int:
    """The integer argument ``a`` as an int, or :class:`UnrepresentableValue` (the call
    runs as Python, with one warning) where the compiled code cannot take it: it passes
    integers as int64, and a Python int beyond it, or a uint64 at 2**63 or more, is a
    value Python and NumPy compute with (``x + 2**70`` of a float64 ``x``).  Before
    2026-12-07 such a call raised ValueError."""
    value = int(a)
    if not -(2**63) <= value < 2**63:
        raise UnrepresentableValue(f"{fname}() argument {name!r} = {a} is beyond the int64 "
                                   "that compiled code passes integers in")
    return value


def scalar_types(params: Sequence[str], args: Sequence) -> tuple[dict[str, T], list[ArgSpec]]:
    """The translator's types of ``params`` and the guards of ``args`` (arrays in group 0;
    a NumPy scalar typed as its dtype, a Python number weak)."""
    types: dict[str, T] = {}
    specs = []
    for name, a in zip(params, args):
        if isinstance(a, np.ndarray):
            types[name] = T(ctype_of(a.dtype))
            specs.append(ArgSpec("array", a.dtype, a.ndim, group=0))
        else:
            types[name], spec = scalar_arg(a)
            specs.append(spec)
    return types, specs


def scalar_arg(a) -> tuple[T, ArgSpec]:
    """The translator's type and the guard of a normalized scalar argument: a NumPy
    scalar typed as its dtype (strong), a Python ``float``, ``int`` or ``bool`` weak."""
    if isinstance(a, np.bool_):
        return T("bool"), ArgSpec("int", np.dtype(bool))
    if isinstance(a, bool):
        return T("bool", True), ArgSpec("bool")
    if isinstance(a, np.number):
        return T(ctype_of(a.dtype)), ArgSpec("float" if a.dtype.kind == "f" else "int",
                                             a.dtype)
    return (FLOAT, ArgSpec("float")) if isinstance(a, float) else (INT, ArgSpec("int"))


def map_python(fn: Callable, inputs: Sequence) -> tuple[list, tuple[int, ...]]:
    """``fn`` on each element, as Python runs it on ``a[i]``: the values, and the shape.

    Elements are NumPy scalars, so arithmetic follows NumPy's types (float32 stays
    float32); ``np.frompyfunc`` would pass Python floats and compute in double.
    """
    params = Parameters.of(fn)
    if params.plain < 0:  # inputs in the parameters' order; keyword-only ones by name
        fn = _by_name(fn, params.positional, params.names[params.positional:])
    arrays = [a for a in inputs if isinstance(a, np.ndarray) and a.ndim > 0]
    shape = arrays[0].shape if arrays else ()
    flat = [a.reshape(-1) if isinstance(a, np.ndarray) and a.ndim > 0 else a for a in inputs]

    def one(i):
        xs = [a[i] if isinstance(a, np.ndarray) else a for a in flat]
        try:
            return fn(*xs)
        except TypeError:  # e.g. math.trunc(np.float32(...)): NumPy scalars lack it
            return fn(*[x.item() if isinstance(x, np.generic) else x for x in xs])

    return [one(i) for i in range(int(np.prod(shape)))], shape


def _by_name(fn: Callable, positional: int, keywords: list[str]) -> Callable:
    def call(*xs):
        return fn(*xs[:positional], **dict(zip(keywords, xs[positional:])))

    return call


def write_back(user_out: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A :attr:`Prepared.finish` for a call computed into a temporary in place of the
    caller's output ``user_out`` (not contiguous, big-endian, overlapping an input):
    the result copied into it, and it returned."""
    def finish(result: np.ndarray) -> np.ndarray:
        user_out[...] = result
        return user_out

    return finish


def python_values(values: list, dtype) -> np.ndarray:
    """:func:`map_python`'s values as an array of ``dtype`` (None: NumPy infers it), or of
    NumPy's own type where ``dtype`` cannot hold a value: a complex (a Python float's
    ``**`` of a negative number) in a kernel typed as real (F19)."""
    try:
        return np.asarray(values, dtype=dtype)
    except TypeError:
        return np.asarray(values)


def random_like(rng: np.random.Generator, a: np.ndarray, shape) -> np.ndarray:
    """Random values of ``a``'s dtype in a range every numeric kernel can take."""
    if a.dtype.kind == "f":
        return rng.uniform(0.5, 2.0, shape).astype(a.dtype)
    if a.dtype.kind == "b":
        return rng.integers(0, 2, shape).astype(bool)
    return rng.integers(1, 10, shape).astype(a.dtype)


def size_bucket(size: int) -> tuple[str, tuple[int, int]]:
    """The tuning bucket of a call over ``size`` elements and its range ``[lo, hi)``:
    sizes a factor of four apart are tuned apart (the best schedule for 1e3 elements is
    not the best for 1e7), and the hot path serves only its own bucket."""
    b = size.bit_length() // 2  # sizes whose bit length is 2b or 2b + 1
    return f"n~4^{b}", (1 << (2 * b - 1) if b else 0, 1 << (2 * b + 1))
