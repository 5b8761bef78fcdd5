"""Floating-point arithmetic rounds where the Python rounds (fuzzer findings F1, F2, F3, F6).

Found by the differential fuzzer (tests/fuzz): gcc fused ``x * y - z`` into one FMA
rounding; ``float(x)`` in an ``@elementwise`` kernel never compiled; a stencil with a
boolean local did not compile; a float32 base raised to a Python float exponent used the
exponent unrounded (NEP 50 rounds it to float32 first).  The oracle is NumPy.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from asp.errors import AspFallbackWarning
from specializers.elementwise import elementwise
from specializers.stencil import StencilKernel


@elementwise
def mul_sub(x, y, z):
    return x * y - z


@elementwise
def to_float(x):
    return float(x) + 1


@elementwise
def power(x, e):
    return x ** e


def _every_variant(fn, *args):
    s = fn.jit.specialization(*args, None)
    assert not s.check_failures, s.check_failures
    return [fn.jit.run_variant(name, *args, None) for name in s.variant_names]


def test_a_product_is_rounded_before_it_is_subtracted():
    x = np.full(40, 1.0 / 3.0)
    y = np.full(40, 3.0)
    z = np.ones(40)
    for got in _every_variant(mul_sub, x, y, z):
        np.testing.assert_array_equal(got, x * y - z)  # 0.0, not the FMA's -5.6e-17
        assert got[0] == 0.0


@pytest.mark.parametrize("dtype", [np.int32, np.float32, np.float64, np.int8])
def test_float_builtin_compiles(dtype):
    x = np.arange(-5, 5).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AspFallbackWarning)
        got = to_float(x)
    np.testing.assert_array_equal(got, x.astype(np.float64) + 1)
    assert got.dtype == np.float64


def test_float32_power_rounds_a_python_float_exponent_to_float32():
    x = np.array([2.0, 3.0, 1.5, 7.25], np.float32)
    e = 100 / 3.0  # weak: becomes float32 before the power
    expected = np.power(x, np.float32(e))
    for got in _every_variant(power, x, e):
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, expected, rtol=2e-7)
        # Unrounded, 2 ** 33.333333333333336 differs from 2 ** float32(33.333332) by ~1e-6.
        assert not np.allclose(got, (x.astype(np.float64) ** e).astype(np.float32),
                               rtol=1e-7, atol=0)


class BoolLocal(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            t = a[x] > 0.5
            out[x] = a[x] * 2 if t else a[x]


def test_a_stencil_with_a_boolean_local_compiles(monkeypatch):
    monkeypatch.setenv("ASP_STRICT", "1")
    a = np.random.default_rng(3).random((10, 10))
    out = np.zeros_like(a)
    BoolLocal().kernel(a, out)
    inner = a[1:-1, 1:-1]
    np.testing.assert_array_equal(out[1:-1, 1:-1], np.where(inner > 0.5, inner * 2, inner))


# -- F4: a float becomes an int only as Python would make it --------------------------------

@elementwise
def floor_times(x):
    return ((x * 2) // x) * abs(math.floor(x))


@elementwise
def as_int(x):
    return int(x) + 1


def test_floor_of_a_float_beyond_int64_is_exact_as_in_python():
    x = np.array([-6.562325643815969e+247, 2.5, -3.5])
    with pytest.warns(AspFallbackWarning, match="beyond 64 bits"):
        got = floor_times(x)
    assert got[0] == 1.3124651287631938e+248  # the fuzzer's case; C's cast gave -1.8e19
    np.testing.assert_array_equal(got[1:], [2 * 2.0, 2 * 4.0])


def test_int_of_nan_raises_as_in_python():
    with pytest.warns(AspFallbackWarning), pytest.raises(ValueError, match="NaN"):
        as_int(np.array([1.0, np.nan]))
    with pytest.raises(OverflowError):  # (warned once per kernel, above)
        as_int(np.array([np.inf]))
    np.testing.assert_array_equal(as_int(np.array([1.5, -2.5])), [2, -1])


def test_every_variant_reports_instead_of_converting_garbage():
    from asp.errors import UnrepresentableValue

    x = np.linspace(-3, 3, 50)
    s = as_int.jit.specialization(x, None)
    for name in s.variant_names:
        np.testing.assert_array_equal(as_int.jit.run_variant(name, x, None),
                                      np.trunc(x).astype(np.int64) + 1)
        bad = x.copy()
        bad[33] = 1e19
        with pytest.raises(UnrepresentableValue):
            as_int.jit.run_variant(name, bad, None)


class Quantize(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = math.floor(a[x] * 10)


def test_stencil_stores_a_float_in_an_int_grid_as_python_does():
    a = np.random.default_rng(2).random((12, 12))
    out = np.zeros((12, 12), np.int64)
    Quantize().kernel(a, out)
    np.testing.assert_array_equal(out[1:-1, 1:-1], np.floor(a[1:-1, 1:-1] * 10))
    a[5, 5] = np.nan  # the call runs as Python, which raises its own error
    with pytest.warns(AspFallbackWarning, match="ran as plain Python"), \
            pytest.raises(ValueError, match="NaN"):
        Quantize().kernel(a, np.zeros((12, 12), np.int64))
    b = np.random.default_rng(3).random((12, 12))
    b[4, 4] = 1e300  # Python's int is exact: the call runs as Python and succeeds
    out = np.zeros((12, 12))
    Quantize().kernel(b, out)  # (warned once per kernel: above)
    np.testing.assert_array_equal(out[1:-1, 1:-1], np.floor(b[1:-1, 1:-1] * 10))


class Accumulate(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] += math.floor(a[x])


def test_a_stencil_that_reads_its_output_runs_as_python_without_counting_twice():
    """It works on a copy of its output: a value only Python represents sends the call to
    Python on the caller's untouched output (before: OverflowError, or counted twice)."""
    a = np.full((8, 8), 2.5)
    a[3, 3] = 1e300
    out = np.ones((8, 8))
    with pytest.warns(AspFallbackWarning, match="ran as plain Python"):
        Accumulate().kernel(a, out)
    expected = np.ones((8, 8))
    expected[1:-1, 1:-1] += [[float(math.floor(v)) for v in row] for row in a[1:-1, 1:-1]]
    np.testing.assert_array_equal(out, expected)
    a[3, 3] = 2.5
    out = np.ones((8, 8))
    Accumulate().kernel(a, out)  # compiled, through the copy
    np.testing.assert_array_equal(out[1:-1, 1:-1], 3.0)
    a[3, 3] = np.inf
    with pytest.raises(OverflowError, match="infinity"):  # Python's own error
        Accumulate().kernel(a, np.zeros((8, 8)))


@elementwise
def cube(x):
    return x ** 3


@elementwise
def fourth(x):
    return x ** 4


def test_small_float_powers_at_edge_values_are_numpys():
    """x ** 3 and x ** 4 round once (fma carries the first product's error): the error
    term of an infinite product is inf - inf, so edge values take the plain product."""
    x = np.array([np.inf, -np.inf, np.nan, -0.0, 0.0, 1e300, -1e200, 1e-310, 8.319432152802452,
                  -2.5, 1.5e102])
    with np.errstate(all="ignore"):
        for fn, n in ((cube, 3), (fourth, 4)):
            expected = np.power(x, float(n))
            for got in _every_variant(fn, x):
                np.testing.assert_array_equal(got, expected)
                assert np.array_equal(np.signbit(got), np.signbit(expected))


def test_a_cube_that_overflows_is_the_infinity_of_its_sign():
    """x ** 3 for 1e108 < |x| < 1e154: x * x is finite, its rounding error times x is not,
    and the fma form added that error's infinity (of either sign) to the product: 1.9e125
    ** 3 came out -inf.  Every variant, both signs, against NumPy."""
    rng = np.random.default_rng(7)
    mag = 10.0 ** rng.uniform(108.2, 154.0, 4000)
    x = np.concatenate([mag, -mag, [2.0 ** 341.4, -(2.0 ** 341.4), 2.0 ** 511.9]])
    with np.errstate(over="ignore"):
        expected = np.power(x, 3.0)
        assert np.isinf(expected).all()
        for got in _every_variant(cube, x):
            np.testing.assert_array_equal(got, expected)
        # x ** 4 beyond its own overflow, and up to it, where its terms stay finite.
        big = 10.0 ** rng.uniform(70.0, 160.0, 4000)
        for got in _every_variant(fourth, np.concatenate([big, -big])):
            want = np.power(np.concatenate([big, -big]), 4.0)
            finite = np.isfinite(want)
            np.testing.assert_array_equal(got[~finite], want[~finite])
            np.testing.assert_allclose(got[finite], want[finite], rtol=2.3e-16, atol=0)


@elementwise
def np_cosh(x):
    return np.cosh(x)


def test_numpy_functions_of_small_integers_have_numpys_float_type():
    """np.cosh(uint8) is float16 in NumPy (fuzzer): compiled code has no float16, so it
    runs as Python; int16 gives float32, int32 float64."""
    x8 = np.arange(5, dtype=np.uint8)
    with pytest.warns(AspFallbackWarning, match="float16"):
        got = np_cosh(x8)
    assert got.dtype == np.cosh(x8).dtype == np.float16
    for dtype, want in ((np.int16, np.float32), (np.int32, np.float64)):
        x = np.arange(-3, 4, dtype=dtype)
        got = np_cosh(x)
        assert got.dtype == want == np.cosh(x).dtype
        np.testing.assert_allclose(got, np.cosh(x), rtol=2e-7)


@elementwise
def weak_bits(x):
    return x + (~False) + float(7 << 40)


@elementwise
def big_shift(x):
    return x + float(7 << 100)


@elementwise
def bool_times(x):
    return ((0.0 <= x) * x) << 1


@elementwise
def huge_weak(y):
    return 1e300 ** y


def test_python_scalars_keep_python_semantics():
    """Fuzzer: ~False is -1 (a Python bool is an int), 7 << 100 is exact (beyond 64 bits:
    the kernel runs as Python), np.bool_ * int8 is int8 (then << wraps in int8), and a
    weak 1e300 meeting float32 is inf (NEP 50 rounds it first)."""
    x = np.arange(3, dtype=np.int8)
    np.testing.assert_array_equal(weak_bits(x), x + (-1) + float(7 << 40))
    with pytest.warns(AspFallbackWarning, match="beyond 64 bits"):
        np.testing.assert_array_equal(big_shift(x), x + float(7 << 100))
    x8 = np.array([100, 71, -5, 0], np.int8)
    with np.errstate(all="ignore"):
        expected = np.array([((np.float64(0.0) <= v) * v) << 1 for v in x8])
    got = bool_times(x8)
    np.testing.assert_array_equal(got, expected)
    y = np.array([1.1920929e-07, 0.5], np.float32)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(huge_weak(y), np.power(np.float32(1e300), y))



@elementwise
def always_huge(x):
    return -0.0 * int(1e300) + x


def test_a_kernel_only_python_can_run_falls_back_with_the_reason():
    """(fuzzer) every check input gives a value only Python represents: the kernel falls
    back saying so, not 'every compiled variant disagrees'."""
    x = np.array([1.0, 2.0])
    with pytest.warns(AspFallbackWarning, match="could not be checked: a value only Python"):
        np.testing.assert_array_equal(always_huge(x), -0.0 * int(1e300) + x)


@elementwise
def expm1_of_either(x):
    return np.expm1(x if x < 100 else 0)


class Expm1(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = np.expm1(u[x])


def test_a_float32_function_of_integers_is_checked_with_float32s_tolerance():
    """``np.expm1`` of an int16 is a float32; compiled, it is computed in double and
    rounded to float, and may differ from NumPy's float32 loop in the last place (as
    docs/specializers/elementwise.rst says).  The check of the compiled code allowed that
    only where an array of the call was a float32: here the output is a float64 (the
    common type of the float32 and the ``0`` arm's float64) or the grids int16 and
    float64, so every elementwise kernel, reduction and stencil calling it was refused,
    "every compiled variant disagrees with the Python reference", and ran as Python (a
    fuzz campaign's finding).  Now they compile (a fallback fails here) and agree."""
    from specializers.reduction import reduction
    from tests.test_helpers import every_variant

    x = np.arange(-18, 19, dtype=np.int16)
    want = np.array([expm1_of_either.py_func(v) for v in x])
    assert want.dtype == np.float32
    got = expm1_of_either(x)
    assert got.dtype == np.float64  # the common type of both arms' results
    np.testing.assert_allclose(got, want, rtol=2**-22)
    for name, v in every_variant(expm1_of_either, x).items():
        np.testing.assert_allclose(v, want, rtol=2**-22, err_msg=name)

    total = reduction("+")(expm1_of_either.py_func)
    np.testing.assert_allclose(total(x), np.sum(want.astype(np.float64)), rtol=1e-6)

    u = x[:36].reshape(6, 6)
    out = np.zeros((6, 6))
    Expm1().kernel(u, out)
    ref = np.zeros((6, 6))
    ref[1:-1, 1:-1] = np.expm1(u[1:-1, 1:-1])
    np.testing.assert_allclose(out, ref, rtol=2**-22)


@elementwise
def scaled(x, r):
    return x * r + 1.0


def test_a_float64_kernel_with_a_float32_argument_is_checked_tightly():
    """The looser tolerance is for float32 functions only: float32 arithmetic rounds as
    NumPy's does, and a float64 kernel taking a float32 scalar is checked as tightly as
    before (the check is the net that catches wrong code)."""
    from asp.ir import platform as ir

    x = np.linspace(0, 1, 50)
    spec = scaled.jit.specializer
    plan = spec.plan(spec.prepare((x, np.float32(0.5), None)))
    assert plan.rtol == 1e-9
    plan = expm1_of_either.jit.specializer.plan(
        expm1_of_either.jit.specializer.prepare((x.astype(np.int16), None)))
    assert plan.rtol == 1e-4
    assert ir.rounds_a_call_to("float", *plan.helpers)


@elementwise
def _larger(a, b):
    return np.maximum(a, b)


@elementwise
def _smaller(a, b):
    return np.minimum(a, b)


class Relu(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = np.maximum(u[x], 0.0) + np.minimum(u[x], -0.5)


@pytest.mark.parametrize("fn, ufunc", [(_larger, np.maximum), (_smaller, np.minimum)])
def test_np_maximum_and_minimum_are_numpys_in_every_variant(fn, ufunc):
    """``np.maximum``/``np.minimum`` compile (before 2026-12-07 a kernel calling them ran
    as Python; a fallback fails here) with NumPy's rules: a NaN wins, the second
    argument unless the first is strictly larger (smaller), so the sign of a zero is
    NumPy's, the arguments' promoted type (NEP 50), bools stay bools."""
    import itertools

    vals = np.array([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 2.5])
    a = np.array([x for x, _ in itertools.product(vals, vals)] * 300)
    b = np.array([y for _, y in itertools.product(vals, vals)] * 300)  # past the threshold
    for da, db in (("f8", "f8"), ("f4", "f4"), ("f4", "f8")):
        x, y = a.astype(da), b.astype(db)
        want = ufunc(x, y)
        got = _every_variant(fn, x, y)
        assert len(got) > 1
        for g in [fn(x, y), *got]:
            assert g.dtype == want.dtype
            np.testing.assert_array_equal(g, want)
            np.testing.assert_array_equal(np.signbit(g), np.signbit(want))
    i = np.arange(-50, 50, dtype=np.int16)
    u = np.arange(100, dtype=np.uint8)[::-1].copy()
    for x, y in ((i, u), (i, 3), (u, 7), (i, 2.5), (i > 0, u > 40), (3, i)):
        want = ufunc(x, y)
        got = fn(x, y)
        assert got.dtype == want.dtype, (x, y)
        np.testing.assert_array_equal(got, want)


def test_a_stencil_clamps_with_np_maximum_as_numpy_does(rng):
    u = rng.standard_normal((40, 50))
    u[3, 4], u[5, 6] = -0.0, np.nan
    out = Relu()(u)
    want = np.zeros_like(u)
    c = u[1:-1, 1:-1]
    want[1:-1, 1:-1] = np.maximum(c, 0.0) + np.minimum(c, -0.5)
    np.testing.assert_array_equal(out, want)
    from tests.test_stencil_kernels import check_every_variant

    names = check_every_variant(Relu(), (u, np.zeros_like(u)), rtol=0)
    assert len(names) > 2
