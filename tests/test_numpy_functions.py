"""NumPy functions a kernel calls compile as NumPy computes them: ``np.where``,
``np.clip``, ``np.square``, ``np.sign``, the angle conversions, the inverse hyperbolic functions,
``np.copysign`` and ``np.fmod`` (before 2026-12-07 a kernel calling any of them ran as
Python, with one warning; a fallback fails these tests, which turn it into an error).
Every variant is compared with NumPy past the parallel threshold (conftest: threshold 0,
2 threads), on edge values, with NumPy's result dtype."""
from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest

from asp.errors import AspFallbackWarning
from specializers.elementwise import elementwise
from specializers.stencil import StencilKernel

EDGES = np.array([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 2.5, -3.5, 1e300, -1e-310,
                  7.0, 0.5, -0.75, 1e-20, 89.9])


def _every_variant(fn, *args):
    s = fn.jit.specialization(*args, None)
    assert not s.check_failures, s.check_failures
    assert len(s.variant_names) > 1
    return [fn(*args), *(fn.jit.run_variant(name, *args, None) for name in s.variant_names)]


def _same(got, want):
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)  # NaN where NumPy's is NaN
    number = ~np.isnan(want) if want.dtype.kind == "f" else slice(None)  # a NaN's sign: C's
    np.testing.assert_array_equal(np.signbit(got[number]), np.signbit(want[number]))


def _inputs(dtype: str) -> np.ndarray:
    """The edge values in ``dtype`` (integers: the float edges that fit, and the type's
    own extremes), repeated past the size of one SIMD loop's remainder."""
    if dtype == "?":
        return np.tile(np.array([True, False, True]), 700)
    info = np.iinfo(dtype) if dtype[0] in "iu" else None
    if info is None:
        with np.errstate(over="ignore"):
            return np.tile(EDGES.astype(dtype), 200)
    fit = [int(v) for v in EDGES if np.isfinite(v) and info.min <= v <= info.max]
    vals = np.array([*fit, info.min, info.max, info.min + 1, info.max - 1, 3, 100], dtype)
    return np.tile(vals, 200)


@elementwise
def square(x):
    return np.square(x)


@elementwise
def sign(x):
    return np.sign(x)


@pytest.mark.parametrize("dtype", ["f8", "f4", "i1", "u1", "i2", "u2", "i4", "i8", "u8", "?"])
def test_square_is_numpys_in_every_variant(dtype):
    """``x * x`` in ``x``'s type, wrapping as NumPy's integers do (``np.square(int8(100))``
    is 16); a bool squares to an int8, ``-0.0`` to ``0.0``, NaN stays NaN."""
    x = _inputs(dtype)
    with np.errstate(over="ignore"):
        want = np.square(x)
    for got in _every_variant(square, x):
        _same(got, want)


@pytest.mark.parametrize("dtype", ["f8", "f4", "i1", "u1", "i2", "i8", "u8"])
def test_sign_is_numpys_in_every_variant(dtype):
    """-1, 0 or 1 in ``x``'s type; NumPy's ``np.sign(-0.0)`` is ``0.0`` and of NaN NaN."""
    x = _inputs(dtype)
    want = np.sign(x)
    for got in _every_variant(sign, x):
        _same(got, want)


def test_square_and_sign_of_python_numbers_are_numpy_scalars():
    """A ufunc of a Python number is a NumPy scalar of the default type (NEP 50): the
    square of a Python int wraps at 64 bits as NumPy's does, where ``x * x`` in Python
    would not."""
    for v in (3, -7, 2**62, 2.5, -0.0, True, False):
        with np.errstate(over="ignore"):
            want = np.square(v)
        got = square(v)
        assert type(got) is type(want) and got == want, v
    for v in (3, -7, 0, 2.5, -0.0, float("nan")):
        got, want = sign(v), np.sign(v)
        assert type(got) is type(want), v
        np.testing.assert_array_equal(got, want)
    assert square(np.arange(3, dtype=np.int64) + 2**62).tolist() == [0, -(2**63) + 1, 4]


@elementwise
def in_radians(x):
    return np.deg2rad(x) + np.radians(x)


@elementwise
def in_degrees(x):
    return np.rad2deg(x) - 0.5 * np.degrees(x)


@pytest.mark.parametrize("dtype", ["f8", "f4", "i2", "i4", "u8"])
def test_angle_conversions_are_numpys_bit_for_bit(rng, dtype):
    """One product by NumPy's factor rounded in the result's type: float32's is
    ``180f / pi_f`` computed in float32, not ``180 / pi`` rounded (which differs from
    NumPy's result in most float32s); an int16 converts to float32, wider ints to
    float64."""
    if dtype[0] == "f":
        x = (rng.standard_normal(5000) * 10.0 ** rng.uniform(-5, 5, 5000)).astype(dtype)
        with np.errstate(over="ignore"):  # 1e300: inf in float32
            x[:EDGES.size] = EDGES.astype(dtype)
    else:
        x = rng.integers(0, 30000, 5000).astype(dtype)
    for fn, ref in ((in_radians, lambda v: np.deg2rad(v) + np.radians(v)),
                    (in_degrees, lambda v: np.rad2deg(v) - 0.5 * np.degrees(v))):
        with np.errstate(over="ignore", invalid="ignore"):
            want = ref(x)
        for got in _every_variant(fn, x):
            _same(got, want)


@elementwise
def inverse_hyperbolic(x):
    return np.arcsinh(x) + np.arctanh(x / 10.0) + np.arccosh(abs(x) + 1.0)


@elementwise
def sign_and_rest(x, y):
    return np.copysign(x, y) + np.fmod(x, y)


def test_inverse_hyperbolic_copysign_and_fmod_are_numpys(rng):
    """libm's ``asinh``/``acosh``/``atanh`` in double (float32: rounded once, within
    float32's last places of NumPy's own float32 loops, as every float32 function is);
    ``copysign`` and ``fmod`` are exact (C's ``fmod`` is NumPy's: the dividend's sign)."""
    x = np.concatenate([EDGES, rng.uniform(-12, 12, 4000)])
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        want = np.arcsinh(x) + np.arctanh(x / 10.0) + np.arccosh(abs(x) + 1.0)
        for got in _every_variant(inverse_hyperbolic, x):
            np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-15)
        x32 = x.astype(np.float32)
        want32 = np.arcsinh(x32) + np.arctanh(x32 / 10.0) + np.arccosh(abs(x32) + 1.0)
        for got in _every_variant(inverse_hyperbolic, x32):
            assert got.dtype == np.float32
            np.testing.assert_allclose(got, want32, rtol=2e-5, atol=1e-6)
        a = np.array([x for x, _ in itertools.product(EDGES, EDGES)] * 20)
        b = np.array([y for _, y in itertools.product(EDGES, EDGES)] * 20)
        for da, db in (("f8", "f8"), ("f4", "f4"), ("f4", "i2")):
            u, v = a.astype(da), np.nan_to_num(b, posinf=9, neginf=-9).astype(db) \
                if db[0] == "i" else b.astype(db)
            want = np.copysign(u, v) + np.fmod(u, v)
            for got in _every_variant(sign_and_rest, u, v):
                _same(got, want)


@elementwise
def leaky(x, slope):
    return np.where(x > 0, x, slope * x)


@elementwise
def picked(c, a, b):
    return np.where(c, a, b)


@elementwise
def where_root(x):
    return np.where(x >= 0, math.sqrt(x), 0.0)


def test_where_picks_in_numpys_type_in_every_variant(rng):
    """``np.where(c, a, b)``: ``a`` where ``c`` is true (a NaN is), else ``b``, in the
    type NumPy promotes the two to (NEP 50: a Python number takes the array's type)."""
    x = np.concatenate([EDGES, rng.standard_normal(3000)])
    for dtype in ("f8", "f4"):
        with np.errstate(over="ignore", invalid="ignore"):  # 1e300: inf in float32
            v = x.astype(dtype)
            want = np.where(v > 0, v, 0.1 * v)
        for got in _every_variant(leaky, v, 0.1):
            _same(got, want)
    n = 2000
    i8, u8 = rng.integers(-128, 128, n).astype(np.int8), rng.integers(0, 256, n).astype(np.uint8)
    with np.errstate(over="ignore"):
        x32 = x[:n].astype(np.float32)
    for c, a, b in ((i8 > 0, i8, u8), (x[:n], i8, 2.5), (i8, True, 7), (i8 % 3 == 0, u8, 7),
                    (np.isnan(x[:n]) | (x[:n] > 0), x[:n], x32),
                    (x[:n] * np.nan, i8, u8)):
        want = np.where(c, a, b)
        for got in _every_variant(picked, c, a, b):
            _same(got, want)


def test_where_evaluates_both_values_as_numpy_does():
    """NumPy evaluates both values before it picks: where the one not picked raises in
    Python (``math.sqrt`` of a negative), the call raises as Python does, not the C
    ``?:``'s value (which evaluates one); elsewhere it is compiled."""
    x = np.linspace(0, 4, 50)
    for got in _every_variant(where_root, x):
        _same(got, np.sqrt(x))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AspFallbackWarning)
        with pytest.raises(ValueError, match="math domain error"):
            where_root(np.array([4.0, -1.0]))


@elementwise
def clipped(x, lo, hi):
    return np.clip(x, lo, hi)


@elementwise
def clipped_to_int8ish(x):
    return np.clip(x, -1000, 100)


def _same_scalars(got, want):
    """``got`` equal to the NumPy scalars ``want`` computed one element at a time."""
    _same(got, np.array(want, dtype=got.dtype))
    assert {np.asarray(w).dtype for w in want} == {got.dtype}


def test_clip_is_numpys_in_every_variant_on_every_edge():
    """``np.clip`` of every triple of signed zeros, NaN, infinities and numbers, float64,
    float32 and mixed: a NaN anywhere is the result, ``lo > hi`` gives ``hi``, and a
    value equal to a bound is kept, sign of zero and all, as NumPy's clip of a scalar
    keeps it (what the kernel's Python computes, element by element; NumPy's SIMD loop
    over a contiguous array returns the bound instead, so ``np.clip(-0.0, 0.0, 1.0)`` is
    ``-0.0`` and ``np.clip(np.array([-0.0]), 0.0, 1.0)`` is ``[0.0]``)."""
    edges = EDGES[:8]
    triples = np.array(list(itertools.product(edges, edges, edges)))
    for types in (("f8", "f8", "f8"), ("f4", "f4", "f4"), ("f4", "f8", "f4")):
        x, lo, hi = (np.tile(triples[:, k].astype(t), 20) for k, t in enumerate(types))
        want = [np.clip(a, b, c) for a, b, c in zip(x, lo, hi)]
        for got in _every_variant(clipped, x, lo, hi):
            _same_scalars(got, want)


def test_clip_of_integers_drops_python_int_bounds_past_the_type_as_numpy_does():
    """NumPy 2 drops a Python-int bound at or past the end of an integer argument's type
    (``np.clip(int8, -1000, 100)`` clips at 100 only); a bound past the other end
    raises OverflowError (Python's, from a call run as Python); NumPy scalar bounds
    promote (an int8 clipped by a uint8 is an int16)."""
    i8 = np.tile(np.arange(-128, 128, dtype=np.int8), 40)
    u8 = i8.view(np.uint8)
    u64 = np.array([0, 1, 5, 2**63, 2**64 - 1] * 100, dtype=np.uint64)
    for x, lo, hi in ((i8, 0, 100), (i8, -1000, 1000), (u8, -1, 3), (u8, 0, 300),
                      (u64, -1, 3), (u64, -5, 2**63 - 1),
                      (i8, np.int16(-5), 1000), (i8, 2.5, 1000), (i8, np.uint8(3), 1000),
                      (i8, 50, -50), (i8 > 0, False, True), (i8 > 0, 0, 2)):
        want = [np.clip(a, lo, hi) for a in x]
        for got in _every_variant(clipped, x, lo, hi):
            _same_scalars(got, want)
        for got in [clipped(x, lo, hi)]:  # bounds as Python ints the kernel is given
            _same_scalars(got, want)
    _same_scalars(clipped_to_int8ish(i8), [np.clip(a, -1000, 100) for a in i8])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AspFallbackWarning)
        for x, lo, hi in ((u8, -5, -1), (i8, 1000, 2000)):
            with pytest.raises(OverflowError, match="out of bounds"):
                clipped(x, lo, hi)
    for x, lo, hi in ((3, 0, 2), (3.5, np.float32(0), np.float32(2)), (True, 0, 2)):
        got, want = clipped(x, lo, hi), np.clip(x, lo, hi)
        assert got == want and got.dtype == want.dtype, (x, lo, hi)


class Squared(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = np.square(u[x]) * np.sign(u[x]) + np.deg2rad(u[x])


def test_a_stencil_calls_them_in_every_variant(rng):
    from tests.test_stencil_kernels import check_every_variant

    u = rng.standard_normal((40, 50))
    u[3, 4], u[5, 6] = -0.0, np.nan
    out = Squared()(u)
    c = u[1:-1, 1:-1]
    want = np.zeros_like(u)
    want[1:-1, 1:-1] = np.square(c) * np.sign(c) + np.deg2rad(c)
    np.testing.assert_array_equal(out, want)
    assert len(check_every_variant(Squared(), (u, np.zeros_like(u)), rtol=0)) > 2


@elementwise
def sign_of_a_bool(x):
    return np.sign(x > 0)


@elementwise
def integer_fmod(x, y):
    return np.fmod(x, y)


def test_what_numpy_refuses_or_computes_otherwise_runs_as_python_with_one_reason():
    """``np.sign`` of a bool (NumPy has no loop: Python raises) and ``np.fmod`` of
    integers (NumPy's integer fmod, not compiled) are refused before any C, each with
    its reason, and run as NumPy does."""
    x = np.arange(-5, 6)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", AspFallbackWarning)
        with pytest.raises(TypeError):
            sign_of_a_bool(x)
        got = integer_fmod(x, 3)
    reasons = [str(w.message) for w in seen if issubclass(w.category, AspFallbackWarning)]
    assert any("np.sign() of a bool" in r for r in reasons), reasons
    assert any("np.fmod() of integers is not compiled" in r for r in reasons), reasons
    np.testing.assert_array_equal(got, np.fmod(x, 3))
    assert got.dtype == np.fmod(x, 3).dtype
