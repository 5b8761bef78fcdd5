"""The differential fuzzer (tests/fuzz): a bounded run, its oracle, and the bugs it found.

``test_fuzz_elementwise`` / ``test_fuzz_stencil`` / ``test_fuzz_reduction`` run a few
hypothesis-drawn batches of generated kernels (derandomized, no example database)
through the fuzzer's worker process and require that every kernel agrees with its
Python reference: bit for bit for integers and booleans, within the stated ulp bound
for floats (see ``tests.fuzz.worker.tolerance``), NaN where Python gives NaN; a
reduction agrees with NumPy's reduction of the Python terms: exactly for integers,
within the terms' own tolerance for ``max`` and ``min``, within a reassociated sum's or
product's rounding for floats (``tests.fuzz.reduce.reduction_tolerance``).
``make fuzz`` runs the long campaign (``python -m tests.fuzz``).

Every bug the fuzzer found has a named regression test below; one still open is
``xfail(strict=True)``, so fixing it makes the test fail until the mark goes
(and its token leaves ``tests.fuzz.gen.KNOWN``, which the generator avoids).
"""
from __future__ import annotations

import contextlib
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, Phase, given, settings

from asp.errors import AspFallbackWarning
from specializers.elementwise import elementwise
from specializers.stencil import StencilKernel
from tests.fuzz.driver import Fuzzer, describe, shrink
from tests.fuzz.gen import EW, KNOWN, RD, ST, Batch, Body, E, batches
from tests.fuzz.iterate import IT, iterate_batches, iterate_source
from tests.fuzz.reduce import agrees, reduction_tolerance
from tests.fuzz.worker import compare, tolerance

# No hypothesis shrinking: each step would compile a batch; a failure is shrunk per kernel.
BOUNDED = settings(max_examples=3, derandomize=True, database=None, deadline=None,
                   phases=[Phase.generate], suppress_health_check=list(HealthCheck))
AVOID = frozenset(KNOWN)


@pytest.fixture(scope="module")
def fuzzer():
    with Fuzzer() as fz:
        yield fz


def _check(fz: Fuzzer, batch: Batch) -> None:
    reply = fz.run(batch)
    bad = [(i, o) for i, o in reply.outcomes.items() if o.status not in ("ok", "fallback")]
    if bad:  # report the first failing kernel shrunk (the fuzzer's shrinker, not a batch's)
        small, got = shrink(fz, batch, *bad[0], budget=40)
        pytest.fail(f"{len(bad)} failing kernel(s); the first, shrunk:\n"
                    + describe(small, got, title="fuzz failure"))
    fallbacks = sum(o.status == "fallback" for o in reply.outcomes.values())
    # A generator that mostly falls back tests nothing.
    assert fallbacks <= len(batch.bodies) // 2, [o.detail for o in reply.outcomes.values()]


# -- the bounded run ------------------------------------------------------------------------------

@BOUNDED
@given(batch=batches(EW, 10, avoid=AVOID))
def test_fuzz_elementwise(fuzzer, batch):
    _check(fuzzer, batch)


@BOUNDED
@given(batch=batches(ST, 10, avoid=AVOID))
def test_fuzz_stencil(fuzzer, batch):
    _check(fuzzer, batch)


@BOUNDED
@given(batch=batches(RD, 10, avoid=AVOID))
def test_fuzz_reduction(fuzzer, batch):
    _check(fuzzer, batch)


@settings(BOUNDED, max_examples=2)  # each batch compiles blocked variants: ~18 s
@given(batch=iterate_batches(3, avoid=AVOID))
def test_fuzz_iterate(fuzzer, batch):
    _check(fuzzer, batch)


def test_fuzz_iterate_runs_the_blocked_variants(fuzzer):
    # The 5-point heat step as the iterate kind writes it (n = -4 u; n += u[y]; out = n),
    # 19 steps (no multiple of a depth) on a grid of several tiles, every call on the team.
    heat = Body((("$n", E("bin", "*", (_leaf("-4.0"), _leaf("u[x]")))),), None,
                _leaf("$n"), "=", _leaf("u[y]"))
    rng = np.random.default_rng(5)
    u, a = rng.uniform(-1, 1, (70, 53)), rng.uniform(-1, 1, (70, 53))
    batch = Batch(IT, (("u", "float64"), ("a", "float64"), ("s", "float"), ("out", "float64")),
                  (heat,), (u, a, 0.1), (("steps", "19"), ("arith", "1"), ("parallel", "1")))
    assert "for y in u.neighbors(x, 1):" in iterate_source(batch, 0)
    got = fuzzer.run(batch).outcomes[0]
    assert got.status == "ok" and not got.bad, got
    # K.iterate, the step-by-step variant and the blocked points, each the whole grid.
    assert got.cases >= 4 * u.size, got.cases


def test_fuzz_elementwise_runs_every_variant(fuzzer):
    # Each variant on the inputs and again past the parallel threshold: a kernel with a
    # loop has seven (three schedules, lanes8/32, vlanes4/8).
    x = np.random.default_rng(6).uniform(-2, 2, 40)
    body = Body((), None, _leaf("$c"), loop=(
        4, _leaf("x"), E("bin", "*", (_leaf("$c"), _leaf("0.5"))),
        E("cmp", ">", (_leaf("$c"), _leaf("0.2")), "b"), "continue"))
    got = fuzzer.run(Batch(EW, (("x", "float64"),), (body,), (x,))).outcomes[0]
    assert got.status == "ok" and not got.bad, got
    assert got.cases >= 7 * (16385 + x.size), got.cases


def test_fuzz_stencil_runs_a_kernel_alone_through_every_variant(fuzzer):
    # The batch (a branch per kernel) gets 'static' only; a kernel without an 'if' is
    # built again alone: its streaming and jammed variants (four more) run too.
    a = np.random.default_rng(7).uniform(-2, 2, (6, 7))
    lap = Body((), None, E("bin", "-", (_leaf("a[x]"), _leaf("b[x]"))))
    batch = Batch(ST, (("s", "float"), ("a", "float64"), ("b", "float64"), ("out", "float64")),
                  (lap,), (0.5, a, a[::-1].copy(), np.zeros_like(a)),
                  (("boundary", "nearest"), ("parallel", "1")))
    got = fuzzer.run(batch).outcomes[0]
    assert got.status == "ok" and not got.bad, got
    assert got.cases >= 7 * a.size, got.cases  # call + static, then call + four alone


def test_iterate_oracle_is_bit_for_bit():
    from tests.fuzz.iterate import _differs

    ref = np.array([0.0, np.nan, 1.0, -2.0])
    assert _differs(ref, ref.copy()).size == 0
    near = np.array([-0.0, np.nan, np.nextafter(1.0, 2.0), -2.0])
    assert list(_differs(ref, near)) == [0, 2]  # a zero's sign and one ulp differ
    assert list(_differs(ref, ref.astype(np.float32))) == [-1]  # another dtype
    assert list(_differs(np.array([3, 4]), np.array([3, 5]))) == [1]


# -- the oracle -----------------------------------------------------------------------------------

def _leaf(text: str, kind: str = "f") -> E:
    return E("leaf", text, kind=kind)


ARITH = Body((), None, E("bin", "+", (_leaf("x"), _leaf("y"))))
LIBM = Body((), None, E("call", "math.sin", (_leaf("x"),)))


def test_compare_ulps_and_nan():
    one = np.float64(1.0)
    four_up = np.nextafter(np.nextafter(np.nextafter(np.nextafter(one, 2), 2), 2), 2)
    exp = np.array([one, np.nan, 0.0, np.inf])
    ok = np.ones(4, bool)
    tol = tolerance(ARITH)
    assert compare(exp, np.array([four_up, np.nan, -0.0, np.inf]), ok, tol) == []
    five_up = np.nextafter(four_up, 2)
    assert [j for j, _ in compare(exp, np.array([five_up, 0.0, 0.0, -np.inf]), ok, tol)] \
        == [0, 1, 3]
    # A masked element (the Python raised there) is not compared.
    assert compare(exp, np.array([five_up, np.nan, 0.0, np.inf]),
                   np.array([False, True, True, True]), tol) == []


def test_compare_integers_bit_for_bit_and_dtype():
    exp = np.array([2**62, -1], np.int64)
    ok = np.ones(2, bool)
    assert compare(exp, exp + np.array([1, 0]), ok, tolerance(ARITH)) == [(0, "differs")]
    assert compare(exp, exp.astype(np.int32), ok, tolerance(ARITH))[0][0] == -1


def test_tolerance_is_looser_only_for_libm_and_mixed_float32():
    assert tolerance(ARITH) == (4, 0.0, True)
    assert tolerance(LIBM)[1] > 0
    assert tolerance(ARITH, (("x", "float32"), ("y", "float64")))[1] > 0
    rel = 2.0**-30
    exp, got = np.array([1e6]), np.array([1e6 * (1 + rel / 2)])
    assert compare(exp, got, np.ones(1, bool), tolerance(ARITH)) != []
    assert compare(exp, got, np.ones(1, bool), tolerance(LIBM)) == []


def test_a_float32_libm_result_made_double_is_compared_as_float32():
    # F14 (seed 120512): math.copysign(np.exp(y - 1.5), x) on float32 arrays returns a
    # double.  NumPy's float32 exp (its own SIMD code) gives 0.22313015 at -1.5, asp's
    # (exp in double, rounded once to float32) the correctly rounded 0.22313017: one
    # float32 ulp, which the double result carries.  Not a wrong answer: the oracle's
    # tolerance must allow float32 rounding there, as it does where float32 meets float64.
    y = np.float32(0.0)
    numpy = math.copysign(np.exp(y - 1.5), np.float32(10.0))
    compiled = float(np.float32(math.exp(-1.5)))  # what the C code computes
    assert np.float32(numpy) != np.float32(compiled)  # they do disagree in float32
    params = (("x", "float32"), ("y", "float32"))
    ok = np.ones(1, bool)
    assert compare(np.array([numpy]), np.array([compiled]), ok, tolerance(LIBM, params)) == []
    assert compare(np.array([numpy]), np.array([compiled]), ok, tolerance(LIBM)) != []
    assert tolerance(ARITH, params) == (4, 0.0, True)  # arithmetic alone stays exact


CUBE = Body((), None, E("bin", "**", (_leaf("x"), _leaf("3", "i"))))


def test_a_float32_power_made_double_is_compared_as_float32():
    # Seed 204 (elementwise): ((x - 5) ** 2) ** 3 + e0(13, 0), x float32, where the called
    # kernel's np.float64 makes the result a double.  At x = 0.1 the cube of the float32
    # 24.010000228881836 is 13841.2875968...: NumPy's float32 power gives 13841.288, asp
    # the correctly rounded 13841.287 (the exact cube rounded once).  Not a wrong answer:
    # a float32 power is compared as a float32 libm call is; a float64 one stays exact.
    x = np.float32(np.float32(0.1) - np.float32(5)) ** 2
    numpy = float(np.power(np.array([x]), 3)[0])
    compiled = float(np.float32(Fraction(float(x)) ** 3))  # the cube, rounded once
    assert numpy != compiled and abs(Fraction(float(x)) ** 3 - Fraction(compiled)) \
        < abs(Fraction(float(x)) ** 3 - Fraction(numpy))
    ok = np.ones(1, bool)
    params = (("x", "float32"),)
    assert compare(np.array([numpy + 3.0]), np.array([compiled + 3.0]), ok,
                   tolerance(CUBE, params)) == []
    assert tolerance(CUBE, (("x", "float64"),)) == (4, 0.0, True)
    assert tolerance(ARITH, params) == (4, 0.0, True)


CEIL_NP_LOG10 = Body((), None, E("call", "math.ceil", (E("call", "np.log10", (_leaf("x"),)),)))


def test_an_integer_from_a_numpy_libm_function_is_not_compared():
    # F17 (seed 1309, reductions): @reduction("+") of math.ceil(np.log10(x)) with x int16.
    # NumPy's float32 log10 (its own SIMD code; on this Intel host log10(100) is
    # 2.0000002) against asp's log10 in double rounded once (2.0, correctly rounded): the
    # ceilings 3 and 2.  Not a wrong answer, an oracle's: an integer made from a NumPy
    # libm result is not compared (math's functions call the same libm as asp: compared).
    params = (("x", "int16"),)
    ok = np.ones(1, bool)
    assert tolerance(CEIL_NP_LOG10, params)[2] is False
    assert tolerance(LIBM, params)[2] is True
    assert compare(np.array([3]), np.array([2]), ok, tolerance(CEIL_NP_LOG10, params)) == []
    assert compare(np.array([3]), np.array([2]), ok, tolerance(LIBM, params)) != []
    assert reduction_tolerance(np.array([3, 2]), "+", np.dtype(np.int64),
                               tolerance(CEIL_NP_LOG10, params)) is None
    assert reduction_tolerance(np.array([3, 2]), "+", np.dtype(np.int64),
                               tolerance(LIBM, params)) == 0.0


def test_reduction_tolerance_exact_bounded_or_order_dependent():
    f8 = np.dtype(np.float64)
    ints = np.array([2**62, 2**62, 5], np.int64)
    assert reduction_tolerance(ints, "+", np.dtype(np.int64)) == 0.0
    assert reduction_tolerance(np.array([1.0, np.nan]), "max", f8) == 0.0
    assert reduction_tolerance(np.array([1.0, 3.0]), "max", f8) == 0.0
    # A term from libm (math.cbrt: C's and Python's differ by an ulp): max and min too
    # are within the terms' own tolerance, and no more.
    cbrt = np.array([4.641588833612778])
    tol = reduction_tolerance(cbrt, "min", f8, tolerance(LIBM))
    assert agrees(cbrt[0], np.nextafter(cbrt[0], 9), tol)
    assert not agrees(cbrt[0], cbrt[0] * (1 + 2.0**-20), tol)
    # A float sum: within its rounding, and one term left out is outside it.
    t = np.random.default_rng(1).uniform(0.5, 2.0, 50000)
    tol = reduction_tolerance(t, "+", f8)
    exp = np.sum(t)
    assert agrees(exp, exp + tol / 2, tol)
    assert not agrees(exp, exp - t.min(), tol)
    assert not agrees(exp, np.nan, tol)
    # Infinities decide the sum, whatever the order: exact.
    assert reduction_tolerance(np.array([np.inf, 1.0, -np.inf]), "+", f8) == 0.0
    # Partial sums that overflow in one order and not in another: not comparable.
    assert reduction_tolerance(np.array([1e308, 1e308, -1e308]), "+", f8) is None
    # Products: relative rounding; partial products that may leave the range: none.
    assert reduction_tolerance(np.array([3.0, 0.5, -2.0]), "*", f8) > 0
    assert reduction_tolerance(np.array([1e-200, 1e-200, 1e300]), "*", f8) is None
    assert reduction_tolerance(np.array([0.0, 2.0]), "*", f8) == 0.0
    assert reduction_tolerance(np.array([1e30, 1e10], np.float32), "*",
                               np.dtype(np.float32)) is None


def test_a_crashing_kernel_is_reported_not_fatal(monkeypatch):
    """The worker dies by SIGSEGV while running kernel 1: that kernel is a crash with
    the signal named, the batch's other kernels still run and pass."""
    monkeypatch.setenv("ASP_FUZZ_CRASH_AT", "run 1 call")
    bodies = tuple(Body((), None, E("bin", op, (_leaf("x", "i"), _leaf("3", "i")), "i"))
                   for op in ("+", "*", "-"))
    batch = Batch(EW, (("x", "int64"),), bodies, (np.arange(-5, 5, dtype=np.int64),))
    with Fuzzer() as fz:
        reply = fz.run(batch)
    assert reply.outcomes[1].status == "crash"
    assert "SIGSEGV" in reply.outcomes[1].detail
    assert [reply.outcomes[i].status for i in (0, 2)] == ["ok", "ok"]


# -- regressions: bugs the fuzzer found ------------------------------------------------------------

@pytest.fixture
def strict(monkeypatch):
    monkeypatch.setenv("ASP_STRICT", "1")


@elementwise
def _fused(x, y, z):
    return x * y - z


def test_ew_no_fma_contraction(strict):
    """F1: gcc contracted x*y - z into one FMA rounding (-ffp-contract=fast)."""
    x, y, z = np.full(64, 1 / 3), np.full(64, 3.0), np.ones(64)
    assert np.array_equal(_fused(x, y, z), np.zeros(64))  # Python: 1/3 * 3 - 1 == 0.0


@elementwise
def _to_float(x):
    return float(x) + 1


def test_ew_builtin_float(strict):
    """F2: builtin float() was emitted as a C call 'float(...)' and never compiled."""
    x = np.arange(-3, 5, dtype=np.int32)
    assert np.array_equal(_to_float(x), x.astype(np.float64) + 1)


class _BoolLocal(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            t = a[x] > 0
            out[x] = a[x] * 2 if t else -a[x]


def test_st_bool_local(strict):
    """F3: a stencil's boolean local was declared 'bool' without stdbool.h."""
    a = np.linspace(-2, 2, 36).reshape(6, 6)
    out = np.zeros_like(a)
    _BoolLocal().kernel(a, out)
    inner = a[1:-1, 1:-1]
    assert np.array_equal(out[1:-1, 1:-1], np.where(inner > 0, inner * 2, -inner))


@elementwise
def _floor_big(x):
    return x * abs(math.floor(x))


def test_ew_floor_beyond_int64():
    """F4: math.floor of a float beyond int64 was (int64_t)floor(x), undefined; Python's
    int is exact, so such a call now runs as Python (one warning)."""
    x = np.array([-6.5e247, 3.5, 1e19])
    with np.errstate(all="ignore"):
        expected = np.array([v * abs(math.floor(v)) for v in x])
    with pytest.warns(AspFallbackWarning, match="beyond 64 bits"), np.errstate(all="ignore"):
        assert np.array_equal(_floor_big(x), expected)


class _Pow32(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            t = 100 / (x[0] + 1)
            out[x] = a[x] ** t


def test_st_float32_pow_weak_exponent(strict):
    """F6: float32 ** weak float: the exponent must be rounded to float32 (NEP 50)."""
    a = np.full((5, 4), 2.0, np.float32)
    out = np.zeros((5, 4))
    _Pow32().kernel(a, out)
    with np.errstate(all="ignore"):
        expected = [np.float32(2.0) ** (100 / (i + 1)) for i in range(1, 4)]
    assert np.array_equal(out[1:4, 1], np.array(expected, np.float64))


@elementwise
def _gt(x, s):
    return x > s


def test_ew_compare_python_int_out_of_range(strict):
    """F7: a Python int outside a narrow integer's range was cast to it before comparing
    (NumPy 2 compares by value)."""
    x = np.array([0, 5, 255], np.uint8)
    assert np.array_equal(_gt(x, -1), np.ones(3, bool))
    assert np.array_equal(_gt(x, 300), np.zeros(3, bool))


@elementwise
def _np_pow(x):
    return np.power(2.0, x)


def test_ew_np_binary_function_promotes_both_arguments(strict):
    """F8: NumPy binary functions were typed from their first argument;
    np.power(2.0, float32) is float32."""
    x = np.array([-96.30135, 0.5, 3.0], np.float32)
    got = _np_pow(x)
    assert got.dtype == np.float32
    # The type is the finding; the value is libm's pow rounded once to float32, where
    # NumPy calls powf: within one float32 ulp (the fuzzer's libm bound).
    np.testing.assert_allclose(got, np.power(2.0, x), rtol=2.4e-7, atol=0)


@elementwise
def _cube(x):
    return x ** 3


def test_ew_float_cube_is_pow(strict):
    """F9: float ** 3 was expanded to x*x*x (two roundings); Python and NumPy call pow."""
    x = np.array([8.319432152802452, 2.0])
    assert np.array_equal(_cube(x), np.array([v ** 3 for v in x.tolist()]))


@elementwise
def _zero_minus(x):
    return 1.0 // (0.0 - x)


@elementwise
def _zero_minus_abs(x):
    return 0.0 - abs(x)


class _ZeroMinus(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = 1.0 / (0.0 - a[x])


def test_zero_minus_keeps_the_sign_of_zero(strict):
    """F10: gcc 12 folds 0.0 - X into -X when X cannot be -0.0 (an integer converted, an
    abs): -0.0 where IEEE gives +0.0, so 1.0 // (0.0 - x) at x = 0 was -inf (NumPy: inf).
    Every variant, elementwise and stencil (-frounding-math turns the fold off)."""
    x = np.array([0, 1, -1, 7] * 16, dtype=np.int32)
    with np.errstate(divide="ignore"):
        want = np.array([1.0 // (0.0 - v) for v in x])
    for name in _zero_minus.jit.specialization(x, None).variant_names:
        assert np.array_equal(_zero_minus.jit.run_variant(name, x, None), want), name
    f = np.array([0.0, -0.0, 2.5, -3.0] * 16)
    for name in _zero_minus_abs.jit.specialization(f, None).variant_names:
        got = _zero_minus_abs.jit.run_variant(name, f, None)
        assert np.array_equal(np.signbit(got), np.signbit(0.0 - np.abs(f))), name
    a, out = np.zeros((6, 7), dtype=np.int64), np.zeros((6, 7))
    jit = _ZeroMinus().jit_for(a, out)
    for name in jit.specialization(a, out).variant_names:
        out[...] = 0.0
        jit.run_variant(name, a, out)
        assert np.all(out[1:-1, 1:-1] == np.inf), name  # 1.0 / +0.0, not 1.0 / -0.0


@elementwise
def _abs_below_one(x):
    return abs(x) < True


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64])
def test_abs_of_the_minimum_wraps_in_vector_code(strict, dtype):
    """F11: NumPy's abs(int16(-32768)) is -32768; gcc 12 vectorized the helper's
    a < 0 ? -a : a for 8- and 16-bit types in wider lanes, where it is 32768, so
    abs(x) < True was False there (every variant: the map loop is vectorized)."""
    info = np.iinfo(dtype)
    x = np.array([info.min, 0, 1, -1, info.max, info.min + 1] * 8, dtype=dtype)
    with np.errstate(over="ignore"):
        want = np.array([abs(v) < True for v in x])
    for name in _abs_below_one.jit.specialization(x, None).variant_names:
        assert np.array_equal(_abs_below_one.jit.run_variant(name, x, None), want), name


@elementwise
def _trunc_and(y, c):
    return math.trunc(y) & c


def test_math_trunc_of_a_numpy_scalar_is_refused(strict):
    """F12: math.trunc(np.float32(...)) raises TypeError in NumPy (its scalars have no
    __trunc__ but float64's), and the Python reference then redid the element with Python
    floats, in double precision, while the compiled code truncated the float32: a
    reduction's min came out NaN against -0.0 (seed 120415).  Refused as NumPy refuses
    it; float64 elements and Python numbers still compile."""
    for dtype in (np.float32, np.int8, np.int64):
        with pytest.raises(Exception, match=r"math.trunc\(\) of a NumPy"):
            _trunc_and(np.arange(1, 9, dtype=dtype), 3)
    y = np.array([2.5, -2.5, 7.9, -0.5] * 4)
    assert np.array_equal(_trunc_and(y, 6), np.array([math.trunc(v) & 6 for v in y]))


@elementwise
def _ufunc_of_python_numbers(x):
    return x * np.sqrt(2.0) - np.arctan2(3.0, 0) + np.abs(-0.1)


def test_a_ufunc_of_python_numbers_is_a_numpy_float64(strict):
    """F13: np.sqrt(2.0), np.arctan2(3.0, 0), np.abs(-0.1) are NumPy float64 scalars
    (strong), not Python floats: with a float32 array NumPy computes in float64.  They were
    typed weak, so the kernel computed in float32 and returned float32 (seed 120433:
    abs(np.arctan2(x, 255)) - np.arctan2(3.0, 0) at x = -inf gave 0.0, NumPy 4.37e-08)."""
    x = np.array([-np.inf, 1.5, -2.25, 0.0, 3.0e38] * 8, dtype=np.float32)
    with np.errstate(over="ignore"):
        want = np.array([_ufunc_of_python_numbers.py_func(v) for v in x])
    assert want.dtype == np.float64
    for name in _ufunc_of_python_numbers.jit.specialization(x, None).variant_names:
        got = _ufunc_of_python_numbers.jit.run_variant(name, x, None)
        assert got.dtype == np.float64 and np.array_equal(got, want), name


@elementwise
def _min_of_a_shift(x, y, z):
    return min(math.trunc(z) << x, math.floor(y)) * 1.0


@elementwise
def _compared_shift(x, y, z):
    return 1.0 if math.floor(y) < (math.trunc(z) << x) else 2.0


@elementwise
def _bool_sum(x, z):
    return (x > 0) + ((math.trunc(z) << x) > 5)


@elementwise
def _bool_product(x, z):
    return (x > 5) * ((math.trunc(z) << x) > 5)


def test_an_operand_whose_value_is_not_needed_is_still_checked():
    """F22 (seed 31, a kernel calling a helper; the helper was not the cause): a
    negative Python int shifted by a uint64, ``t << x``, raises in NumPy (the int does
    not convert), but compared with a negative Python int the compiled comparison was
    decided by that int's sign alone and never computed ``t << x``: ``min(t << x,
    math.floor(y))`` returned ``math.floor(y)``, -33, where Python raises.  So did
    NumPy bools' ``+`` and ``*`` (C's ``||`` and ``&&`` stopped at a left operand that
    decided).  Every operand with checks is evaluated now: the call runs as Python, which
    raises; and where nothing raises, the values are Python's."""
    x = np.array([2, 3, 0], np.uint64)
    bad, ok = np.array([-32.9, 4.2, 7.0]), np.array([3.5, 4.2, 7.0])
    y = np.array([-32.9, -1.5, 4.2])
    for kernel, args in ((_min_of_a_shift, (x, y, bad)), (_compared_shift, (x, y, bad)),
                         (_bool_sum, (x, bad)), (_bool_product, (x, bad))):
        with pytest.warns(AspFallbackWarning), pytest.raises(OverflowError, match="-32"):
            kernel(*args)
        good = (x, y, ok) if len(args) == 3 else (x, ok)
        want = [kernel.py_func(*vals) for vals in zip(*good)]
        for name, got in _every_variant(kernel, good).items():
            assert got.tolist() == [type(got.tolist()[0])(w) for w in want], name


def _every_variant(kernel, args) -> dict:
    spec = kernel.jit.specialization(*args, None)
    return {v: kernel.jit.run_variant(v, *args, None) for v in spec.entries}


def test_regression_kernels_do_not_fall_back_silently():
    """The regression kernels above fail loudly in strict mode; without it each still
    returns Python's answer (one fallback warning at most), never a wrong number."""
    x = np.arange(-3, 5, dtype=np.int32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AspFallbackWarning)
        assert np.array_equal(_to_float(x), x.astype(np.float64) + 1)


def test_a_reduction_of_python_ints_is_not_compared_modulo_the_compiled_type():
    """F16 (seed 1309): every term of ``min(~2, y)`` with ``y`` uint64 is the Python int
    -3; the compiled code typed the term uint64 and returned 2**64 - 3 (the sum: 2**64 -
    90), and the check compared the results modulo uint64, so they agreed.  Now they
    disagree, and the call runs as Python (one warning)."""
    from specializers.reduction import reduction

    @reduction("max")
    def biggest(x, y):
        return min((~2), y)

    @reduction("+")
    def total(x, y):
        return min((~2), y)

    x, y = np.linspace(0, 1, 30), np.arange(30, dtype=np.uint64) + 3
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AspFallbackWarning)
        assert biggest(x, y) == -3
        assert total(x, y) == -90


def test_a_reduction_variant_that_gives_a_number_where_the_python_raised_is_a_mismatch():
    """The reduction worker reduces the first elements where the Python raised alone
    through every variant: each must report (UnrepresentableValue), as elementwise
    variants must (F18 was found that way); a number there is a mismatch."""
    import types

    from asp.errors import UnrepresentableValue
    from tests.fuzz.reduce import PYTHON_RAISED, _python_raised

    x = np.arange(6.0)
    valid = np.array([True, False, True, False, False, False])
    for gives in ("flag", "number"):
        def run_variant(v, i, a, out, gives=gives):
            if gives == "number" and v == "b":
                return np.float64(1.0)
            raise UnrepresentableValue("flagged")

        fn = types.SimpleNamespace(jit=types.SimpleNamespace(run_variant=run_variant))
        batch = types.SimpleNamespace(inputs=(x,))
        res = types.SimpleNamespace(bad=[])
        _python_raised(0, fn, ["a", "b"], batch, valid, res, lambda _: None,
                       contextlib.nullcontext)
        if gives == "flag":
            assert res.bad == []
        else:  # variant b, at each of the first PYTHON_RAISED elements that raised
            assert [(v, j, why) for v, j, _, why, _ in res.bad] == \
                [("b", j, "the Python raises") for j in (1, 3, 4)][:PYTHON_RAISED]


def test_a_stencil_variant_that_gives_numbers_where_the_python_raised_is_a_mismatch(fuzzer):
    """Where a stencil's Python raises somewhere on the grid, the call and every variant
    must report it (UnrepresentableValue; such kernels were skipped whole): with the
    real compiled variants of ``math.sqrt`` of negative points, all do; a variant that
    returns numbers instead is a mismatch."""
    import types

    from asp.errors import UnrepresentableValue
    from tests.fuzz.worker import Outcome, Runner

    a = np.random.default_rng(3).uniform(-2, 2, (6, 7))  # negative points: ValueError
    root = Body((), None, E("call", "math.sqrt", (_leaf("a[x]"),)))
    batch = Batch(ST, (("s", "float"), ("a", "float64"), ("b", "float64"), ("out", "float64")),
                  (root,), (0.5, a, a.copy(), np.zeros_like(a)),
                  (("boundary", "nearest"), ("parallel", "1")))
    got = fuzzer.run(batch).outcomes[0]
    assert got.status == "ok" and not got.bad and got.skipped == a.size, got

    for gives in ("flag", "numbers"):
        def run_variant(v, *args, gives=gives):
            if gives == "numbers" and v == "b":
                return args[-1]
            raise UnrepresentableValue("flagged")

        def call(*args):
            raise UnrepresentableValue("flagged")

        runner = object.__new__(Runner)
        runner.batch = batch
        runner.progress = types.SimpleNamespace(mark=lambda _: None)
        kernel = types.SimpleNamespace(kernel=call, run_variant=run_variant)
        res = runner.st_python_raised(0, kernel, ["a", "b"], Outcome())
        if gives == "flag":
            assert res.status == "ok" and res.bad == [], res
        else:
            assert res.status == "mismatch"
            assert [(v, why) for v, _, _, why, _ in res.bad] == [("b", "the Python raises")]


def test_a_result_dtype_of_another_kind_than_numpys_is_a_mismatch():
    """The reference's dtype is asp's own typing of the kernel (run_python casts
    Python's values to it), so the comparison of values cannot see a wrong one: float
    results typed as integers compare equal once cast.  The worker checks the typing
    against the dtype NumPy gives Python's values; a wider type or a narrower one of the
    same kind is the documented common type of every path, another kind a mismatch."""
    import types

    from tests.fuzz.reduce import run_reduction
    from tests.fuzz.worker import Outcome, Runner, holds, numpy_dtype

    def half(k, x):
        return x / 2

    x = np.arange(5, dtype=np.int64)
    assert numpy_dtype(half, 0, (x,)) == np.float64
    assert numpy_dtype(lambda k, x: 0.5 if x > 2 else 1, 0, (x,)) is None  # two types
    assert numpy_dtype(lambda k, x: x > 2, 0, (x,)) == np.bool_
    assert numpy_dtype(lambda k, x: 7, 0, (x,)) == "int"                 # weak
    assert holds("int", np.dtype(np.uint64)) and not holds("int", np.dtype(np.bool_))
    assert holds("int", np.dtype(object))  # ints beyond 64 bits: Python's own, kept
    assert holds(np.dtype(np.int32), np.dtype(np.int64))          # a path not taken
    assert holds(np.dtype(np.float64), np.dtype(np.float32))      # a Python float beside f32
    assert holds(None, np.dtype(np.int8))
    assert not holds(np.dtype(np.float64), np.dtype(np.int64))
    assert not holds(np.dtype(np.int64), np.dtype(np.uint64))
    assert not holds(np.dtype(np.int64), np.dtype(np.bool_))

    # A reference typed int64 for float results: caught before any variant runs.
    spec = types.SimpleNamespace(fn=half, run_python=lambda a: (a[1] / 2).astype(np.int64))
    runner = object.__new__(Runner)
    runner.batch = types.SimpleNamespace(inputs=(x,))
    res = runner.run_ew(0, types.SimpleNamespace(specializer=spec), [])
    assert res.status == "mismatch" and res.bad[0][0] == "dtype", res

    terms = types.SimpleNamespace(fn=half, terms=lambda a: (a[1] / 2).astype(np.int64))
    batch = types.SimpleNamespace(inputs=(x,), option=lambda _: "+")
    res = run_reduction(0, types.SimpleNamespace(jit=types.SimpleNamespace(specializer=terms)),
                        [], batch, lambda _: None, contextlib.nullcontext,
                        Outcome, (4, 0.0))
    assert res.status == "mismatch" and res.bad[0][0] == "dtype", res
