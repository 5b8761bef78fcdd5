"""Elementwise kernels built of others, and an elementwise kernel called on numbers.

Before, a kernel that called another ``@elementwise`` kernel was refused by the front end,
and its Python fallback then crashed: the callee, given numbers, raised ``TypeError:
needs at least one array argument``.  A call of one kernel from another now compiles the
callee's Python with the caller (as a helper), and numbers alone give what a one-element
array gives, as a NumPy scalar, as a ufunc does.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from asp.errors import AspFallbackWarning
from specializers.elementwise import elementwise
from specializers.reduction import reduction
from specializers.stencil import StencilKernel
from tests.test_helpers import every_variant

LIMIT = 2.5


@elementwise
def clip(x):  # (x's type on every path: a float32 and a Python float would be refused)
    if x > LIMIT:
        return x * 0.0 + LIMIT
    if x < -LIMIT:
        return x * 0.0 - LIMIT
    return x


@elementwise
def scaled(x, c=3.0):
    return x * c


@elementwise
def composed(x, y):
    return clip(x) * scaled(y) + clip(y * 2.0)


@reduction("+")
def clipped_energy(u):
    return clip(u) * clip(u)


@elementwise
def as_python(x):
    try:  # a kernel may not: this one runs as Python, calling the others on numbers
        return clip(x) + scaled(x, 2.0)
    except ZeroDivisionError:
        return 0.0


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_a_kernel_calling_kernels_compiles_and_every_variant_is_the_python(dtype, rng):
    x = (rng.standard_normal(4099) * 3).astype(dtype)
    y = (rng.standard_normal(4099) * 3).astype(dtype)
    y[:4] = [np.inf, -np.inf, np.nan, -0.0]
    want = np.array([composed.py_func(a, b) for a, b in zip(x, y)])
    assert want.dtype == dtype
    got = composed(x, y)  # (a fallback warning would fail the test: the suite's setting)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, want)
    for name, got in every_variant(composed, x, y).items():
        np.testing.assert_array_equal(got, want, err_msg=name)
    assert clipped_energy(x) == pytest.approx(float(np.sum(np.clip(x, -2.5, 2.5) ** 2,
                                                            dtype=np.float64)), rel=1e-6)


@elementwise
def three(x):
    return 3


@elementwise
def half(x):
    return 0.5


@elementwise
def plus_numbers(x):
    return x + three(x) + half(x) * 0.0


def test_a_kernel_returns_a_numpy_scalar_to_its_caller_never_a_python_number():
    # three(x) is an int64 and half(x) a float64 whatever x is, as their arrays are: an
    # int8 plus three(x) is an int64 (before: a Python 3, and the int8 wrapped at 127), a
    # float32 plus half(x) a float64
    for x in (np.array([1, 120, 127, -128], np.int8), np.array([1.5, -2.25], np.float32)):
        want = [plus_numbers.py_func(v) for v in x]
        got = plus_numbers(x)
        assert got.dtype == np.asarray(want).dtype == np.float64
        np.testing.assert_array_equal(got, want)
    got = composed_ints(np.array([1, 120, 127, -128], np.int8))
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [4, 123, 130, -125])


@elementwise
def composed_ints(x):
    return x + three(x)


def test_a_callee_edited_in_place_is_compiled_again_in_its_callers(rng):
    x = rng.standard_normal(1031) * 3
    y = rng.standard_normal(1031)
    for _ in range(20):
        composed(x, y)

    def wider(x, c=5.0):
        return x * c - 1.0

    saved = scaled.py_func.__code__, scaled.py_func.__defaults__
    try:
        scaled.py_func.__code__, scaled.py_func.__defaults__ = wider.__code__, (5.0,)
        np.testing.assert_array_equal(
            composed(x, y), np.clip(x, -2.5, 2.5) * (y * 5.0 - 1.0) + np.clip(y * 2.0, -2.5, 2.5))
    finally:
        scaled.py_func.__code__, scaled.py_func.__defaults__ = saved
    np.testing.assert_array_equal(
        composed(x, y), np.clip(x, -2.5, 2.5) * (y * 3.0) + np.clip(y * 2.0, -2.5, 2.5))


def test_a_caller_that_runs_as_python_calls_the_kernels_on_numbers(rng):
    x = rng.standard_normal(257) * 3
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        got = as_python(x)
    assert [w.category for w in seen] == [AspFallbackWarning]
    assert "try" in str(seen[0].message)
    np.testing.assert_array_equal(got, np.clip(x, -2.5, 2.5) + x * 2.0)


@pytest.mark.parametrize("args, value, dtype", [
    ((1.5,), 3 * 1.5, np.float64),
    ((2,), 6.0, np.float64),                          # int64 times a float: float64
    ((np.float32(1.5),), np.float32(4.5), np.float32),  # the Python float stays weak
    ((np.float32(1.5), 2.0), np.float32(3.0), np.float32),
    ((np.int16(7), 2), np.int16(14), np.int16),
    ((7, 2), 14, np.int64),
    ((True, 2), 2, np.int64),
    ((np.bool_(True), 2), 2, np.int64),               # (np.bool_ is no numbers.Number)
])
def test_numbers_alone_give_a_numpy_scalar_as_a_ufunc_does(args, value, dtype):
    got = scaled(*args)
    assert isinstance(got, np.generic)
    assert got.dtype == dtype
    assert got == value


def test_numbers_alone_fill_an_output_array_as_a_ufunc_does():
    out = np.zeros(3)
    assert scaled(1.5, 2.0, out=out) is out
    np.testing.assert_array_equal(out, [3.0, 3.0, 3.0])
    with pytest.raises(TypeError, match="'out'.*same_kind"):
        scaled(1.5, 2.0, out=np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="'out' must be a NumPy array"):
        scaled(1.5, 2.0, out=[0.0])


@elementwise
def soft(x):
    return x / (1.0 + abs(x))


class SoftSum(StencilKernel):
    def kernel(self, u, out):
        for p in out.interior_points():
            acc = 0.0
            for q in u.neighbors(p, 1):
                acc += soft(u[q])
            out[p] = acc


@pytest.mark.parametrize("mode", ["interior", "wrap"])
def test_a_stencil_calling_an_elementwise_kernel_is_its_python(mode, rng):
    u = rng.standard_normal((67, 45)) * 4
    want = SoftSum(boundary=mode, pure_python=True)(u)
    np.testing.assert_array_equal(SoftSum(boundary=mode)(u), want)
