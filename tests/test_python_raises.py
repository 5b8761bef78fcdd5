"""Where the kernel's Python raises, the call raises it: :mod:`math` outside its domain or
range, and Python numbers divided by zero (``asp.ir.pymath``).

CPython's math functions raise ``ValueError`` or ``OverflowError`` where libm returns a
NaN from arguments that are not NaN, or an infinity from finite ones (``math.log(0.0)``,
``math.exp(1000.0)``), and Python's ints and floats raise ``ZeroDivisionError``; the
compiled code returned libm's -inf, inf or NaN (and 0 for an int), and a check on random
inputs that never reached the point passed it.  Now such a point sets the entry's flag and
the call runs as Python (one warning), which raises.  NumPy's functions and numbers do not
raise (``np.log(0.0)`` is -inf, ``np.float64(1) / 0`` is inf): they compile as before.

Every compiled variant, parallel branches included (conftest: threshold 0, 2 threads),
runs on inputs with and without such a point.
"""
from __future__ import annotations

import importlib.util
import itertools
import math

import numpy as np
import pytest

from asp.errors import UnrepresentableValue
from asp.ir.pymath import NOT_LIBM, ONE, TWO
from specializers.elementwise import elementwise
from specializers.reduction import reduction
from specializers.stencil import StencilKernel
from tests.test_python_int_bounds import call_quietly as _call


def _every_variant_reports(fn, good, bad):
    """Every variant of elementwise or reduction ``fn``: Python's result on ``good``, the
    flag (never a number) on ``bad``."""
    s = fn.jit.specialization(*good, None)
    assert s.variant_names and not s.check_failures, s.check_failures
    want = fn.jit.specializer.run_python((*good, None))
    for name in s.variant_names:
        got = fn.jit.run_variant(name, *good, None)
        if np.ndim(want) == 0:  # a reduction: sums reassociated across threads and lanes
            np.testing.assert_allclose(got, want, rtol=1e-10, err_msg=name)
        else:
            np.testing.assert_array_equal(got, want, err_msg=name)
        with pytest.raises(UnrepresentableValue):
            fn.jit.run_variant(name, *bad, None)


# -- math's domain and range ------------------------------------------------------------------
@elementwise
def _log(x):
    return math.log(x)


@elementwise
def _exp_above(x):
    return math.exp(x) if x > 100.0 else x


@elementwise
def _log_base(x, b):
    return math.log(x, b)


@pytest.mark.parametrize("fn, good, bad, error", [
    (_log, (np.linspace(0.5, 9, 3000),), (np.linspace(0.0, 9, 3000),), ValueError),
    (_exp_above, (np.linspace(0, 99, 3000),), (np.linspace(0, 990, 3000),), OverflowError),
    (_log_base, (np.linspace(0.5, 9, 3000), 2.0), (np.linspace(0.5, 9, 3000), 1.0),
     ZeroDivisionError),
], ids=["log(0)", "exp(990)", "log(x, 1)"])
def test_math_raises_where_python_raises(fn, good, bad, error):
    got, fell = _call(fn, *good)
    np.testing.assert_array_equal(got, [fn.__wrapped__(*v) for v in zip(
        good[0], *(np.broadcast_to(a, good[0].shape) for a in good[1:]), strict=True)])
    assert not fell
    with pytest.raises(error):
        _call(fn, *bad)  # was -inf, inf, inf: a number where Python raises
    _every_variant_reports(fn, good, bad)


@elementwise
def _log_sum(x, n):
    s = 0.0
    for i in range(n):
        s += math.log(x - i)
    return s


def test_a_loop_kernel_with_checked_calls_reports_and_has_no_lockstep_lanes():
    """Its variants report like every other kernel's.  It has no lockstep lanes: they
    evaluate some expressions for lanes that Python's control flow does not reach, and a
    checked call there would set the flag where Python raises nothing (tried: a fuzz
    batch's lanes flagged the math calls of other kernels' branches)."""
    good, bad = (np.linspace(5, 9, 3001), 3), (np.linspace(0.5, 9, 3001), 3)
    got, fell = _call(_log_sum, *good)  # checked on the call's own first elements: the
    assert not fell  # random check inputs (below 1) are outside log's domain here
    with pytest.raises(ValueError):
        _call(_log_sum, *bad)
    names = _log_sum.jit.specialization(*good, None).variant_names
    assert names and not any("lanes" in n for n in names), names
    _every_variant_reports(_log_sum, good, bad)


# CPython's rule, function by function: the compiled function agrees with math on every
# pair of these values, raising (the flag) exactly where math raises.
_VALUES = (0.0, -0.0, 1.0, -1.0, 0.5, 2.0, -8.0, 1e-310, 1e308, -1e308, 710.0, -1100.0,
           math.pi / 2, math.inf, -math.inf, math.nan, 171.5, -170.5, -200.5, 5e-324)
_FUNCS = [("1", f) for f in ONE] + [("2", f) for f in TWO]


def _chain_source() -> str:
    lines = ["import math\n\n\ndef any_math(x, y, k):\n"]
    for i, (arity, f) in enumerate(_FUNCS):
        args = "x" if arity == "1" else "x, y"
        lines.append(f"    if k == {i}:\n        return math.{f}({args})\n")
    lines.append("    return x\n")
    return "".join(lines)


def test_every_math_function_raises_exactly_where_python_does(tmp_path):
    path = tmp_path / "anymath.py"  # a kernel's source is read from its file
    path.write_text(_chain_source())
    spec = importlib.util.spec_from_file_location("anymath", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    _any_math = elementwise(module.any_math)
    x = np.array([v for v, _ in itertools.product(_VALUES, _VALUES)])
    y = np.array([w for _, w in itertools.product(_VALUES, _VALUES)])
    name = _any_math.jit.specialization(x[:1], y[:1], 0, None).variant_names[0]
    for k, (_, f) in enumerate(_FUNCS):
        fn = getattr(math, f)
        for a, b in zip(x, y, strict=True):
            args = (a,) if f in ONE else (a, b)
            try:
                want = fn(*map(float, args))
            except (ValueError, OverflowError):
                want = None
            try:
                got = _any_math.jit.run_variant(name, np.array([a]), np.array([b]), k, None)
            except UnrepresentableValue:
                got = None
            assert (want is None) == (got is None), (f, args, want, got)
            if want is not None and f in NOT_LIBM:  # CPython's own, not libm's: close
                assert math.copysign(1, got[0]) == math.copysign(1, want), (f, args, want, got)
                np.testing.assert_allclose(got[0], want, rtol=1e-14, atol=1e-15,
                                           err_msg=f"{f}{args}")
            elif want is not None:
                assert np.array_equal(got[0], want, equal_nan=True), (f, args, want, got)


# -- Python numbers divided by zero -----------------------------------------------------------
@elementwise
def _inverse_root(x):
    return 1.0 / math.sqrt(x)


@elementwise
def _int_quotient(x, y):
    return int(x) // int(y) + int(x) % int(y)


@elementwise
def _numpy_quotient(x, y):
    return x / y + np.log(y)


def test_python_numbers_divided_by_zero_raise():
    x = np.linspace(1, 9, 3000)
    with pytest.raises(ZeroDivisionError):
        _call(_inverse_root, np.linspace(0, 9, 3000))  # was inf at 0
    _every_variant_reports(_inverse_root, (x,), (np.linspace(0, 9, 3000),))
    y = np.arange(3000) % 7 + 1.0
    _every_variant_reports(_int_quotient, (x * 10, y), (x * 10, y - 1))  # was 0 at y = 0
    with pytest.raises(ZeroDivisionError):
        _call(_int_quotient, x, y - 1)


def test_numpy_numbers_and_functions_still_compile():
    """NumPy's x / 0 is inf and np.log(0) is -inf: no flag, no fallback."""
    x, y = np.linspace(-1, 1, 3000), np.arange(3000) % 3 * 1.0
    got, fell = _call(_numpy_quotient, x, y)
    assert not fell
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got, x / y + np.log(y))


# -- the same in a stencil and a reduction ----------------------------------------------------
class _Root(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = math.sqrt(u[x])


@reduction("+")
def _log_total(y):
    return math.log(y)


def test_a_stencil_and_a_reduction_raise_where_python_raises():
    u = np.linspace(0.5, 3, 40 * 36).reshape(40, 36)
    k = _Root()
    got, fell = _call(k, u)
    assert not fell and np.array_equal(got[1:-1, 1:-1], np.sqrt(u[1:-1, 1:-1]))
    bad = u.copy()
    bad[17, 9] = -1.0
    with pytest.raises(ValueError, match="math domain error"):
        _call(k, bad)  # was NaN at [17, 9]
    s = k.specialization(u, np.zeros_like(u))
    for name in s.variant_names:
        with pytest.raises(UnrepresentableValue):
            k.run_variant(name, bad, np.zeros_like(u))
    y = np.linspace(0.5, 3, 5000)
    got, fell = _call(_log_total, y)
    assert not fell and math.isclose(got, np.sum(np.log(y)), rel_tol=1e-10)
    with pytest.raises(ValueError):
        _call(_log_total, y - 0.5)  # was -inf
    _every_variant_reports(_log_total, (y,), (y - 0.5,))


# -- an iterated stencil: blocked in time, the flag read after the blocked steps --------------
class _SqrtSink(StencilKernel):
    def kernel(self, u, c, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + 0.2 * lap - c * math.sqrt(u[x])


def test_an_iterated_kernel_with_checked_operations_is_blocked_and_raises(monkeypatch):
    """A kernel with a checked operation (here math.sqrt) was iterated step by step; now
    it is blocked in time, and where a later step meets a negative value (c = 0.2: the
    seventh step, inside a pass's rings) every variant reports it and the call raises
    Python's ValueError."""
    from specializers.stencil import iterate as iterate_module
    from specializers.stencil import temporal

    monkeypatch.setattr(temporal, "ROWS", {2: (1, 4), 3: (1, 4)})  # several tiles a pass
    monkeypatch.setattr(temporal, "MAX_WORK", 100.0)
    iterate_module._JITS.clear()
    u = 1 + np.random.default_rng(3).random((130, 170))
    u[0], u[-1], u[:, 0], u[:, -1] = 0, 0, 0, 0
    k = _SqrtSink(boundary="interior")

    def loop(c, steps=19):
        v = u
        for _ in range(steps):
            v = k(v, c)
        return v

    got, fell = _call(lambda: k.iterate(u, 0.01, steps=19))
    assert not fell
    np.testing.assert_array_equal(got, loop(0.01))
    jit = iterate_module.iteration_jit(k, u, 0.01)
    assert jit is not None, "not blocked"

    def full(c):
        return (u, c, np.zeros_like(u), np.zeros_like(u), 19)

    s = jit.specialization(*full(0.01))
    assert any(name.startswith("blk_") for name in s.entries) and not s.check_failures
    with pytest.raises(ValueError, match="math domain error"):
        _call(lambda: loop(0.2))  # the steps alone: the seventh runs as Python and raises
    with pytest.raises(ValueError, match="math domain error"):
        _call(lambda: k.iterate(u, 0.2, steps=19))  # was NaN from the seventh step on
    for name in s.entries:
        np.testing.assert_array_equal(jit.run_variant(name, *full(0.01)), loop(0.01),
                                      err_msg=name)
        with pytest.raises(UnrepresentableValue):
            jit.run_variant(name, *full(0.2))


# -- a value that is a Python float on one path and a float64 on another (F18) ----------------
@elementwise
def _assigned_on_a_path(a, c):
    q = 1.0
    if c > 0:
        q = a
    return 5.0 / (q - 1.0)


@elementwise
def _picked_by_a_ternary(a, c):
    q = 1.0 if c > 0 else a
    return 3.0 % (q - 1.0)


@elementwise
def _picked_by_max(a):
    return 2.0 // (max(1.0, a) - 1.0)


@elementwise
def _raised_to_a_negative_power(a, c):
    q = 0.0
    if c > 0:
        q = a
    return q ** -0.75


_X, _X1 = np.linspace(2, 9, 3000), np.linspace(1, 9, 3000)  # _X1[0] is 1.0


@pytest.mark.parametrize("fn, good, bad, numpy_zero", [
    (_assigned_on_a_path, (_X, 1), (_X, 0), (_X1, 1)),
    (_picked_by_a_ternary, (_X, 0), (_X, 1), (_X1, 0)),
    (_picked_by_max, (_X,), (_X1 - 1,), None),
    (_raised_to_a_negative_power, (_X, 1), (_X, 0), (_X1 - 1, 1)),
], ids=["assigned", "ternary", "max", "power"])
def test_a_value_that_is_a_python_float_on_some_paths_raises_where_python_raises(
        fn, good, bad, numpy_zero):
    """The compiled code holds such a value in one double (a kernel without float32 cannot
    tell the two apart otherwise); it gave inf, NaN or 0 where Python's float raises
    ZeroDivisionError.  Now it is checked as a Python float: where it was one, the call
    raises; where a float64 takes the check (``numpy_zero``: NumPy's path meets the zero),
    the call runs as Python, which gives NumPy's inf or NaN (right, and slower)."""
    got, fell = _call(fn, *good)
    assert not fell
    np.testing.assert_array_equal(got, fn.jit.specializer.run_python((*good, None)))
    with pytest.raises(ZeroDivisionError):
        _call(fn, *bad)
    _every_variant_reports(fn, good, bad)
    if numpy_zero is not None:
        got, _ = _call(fn, *numpy_zero)
        with np.errstate(all="ignore"):
            want = [fn.__wrapped__(a, numpy_zero[1]) for a in numpy_zero[0]]
        assert not np.isfinite(want[0])
        np.testing.assert_array_equal(got, want)


# -- the type a value has on the path (asp.frontend.translator: ``exact``) ----------------------
@elementwise
def _reassigned_a_float64(a):
    q = 1.0
    q = a
    return 5.0 / (q - 1.0)  # a float64 from the second line on: inf at a == 1


@elementwise
def _reassigned_a_python_float(a):
    q = a
    q = float(int(a))
    return 5.0 / (q - 3.0)  # a Python float from the second line on: raises at 3 <= a < 4


@elementwise
def _assigned_in_a_loop(a, n):
    q = 1.0
    for _ in range(n):
        q = a
    return 5.0 / (q - 1.0)  # a Python float when the loop did not run


@elementwise
def _doubled_in_a_while(a):
    q = 1.0
    while q < a:
        q = q * a
    return 5.0 / (q - 1.0)  # a Python float when the loop did not run


class _MeanOver(StencilKernel):
    def kernel(self, u, c, out):
        for x in out.interior_points():
            acc = 0.0
            for y in u.neighbors(x, 1):
                acc += u[y]  # a float64 after the first neighbour
            out[x] = acc / c


def test_a_value_is_typed_as_it_is_on_the_path_since_its_last_assignment():
    """A double assigned a Python float and a float64 is one C double; where Python's
    float raises it is checked as one (F18).  Along straight-line code its type is the
    last assignment's: a float64 there divides as NumPy's (inf, no check: the call runs
    compiled), a Python float raises; a loop's body may not have run, so after a loop
    what it assigns is checked again."""
    x1 = np.linspace(1, 9, 3000)  # x1[0] is 1.0
    # (Specialized on inputs where the Python does not raise, as a kernel's check needs.)
    for fn, good, bad in ((_assigned_in_a_loop, (x1 + 1, 1), (x1, 0)),
                          (_doubled_in_a_while, (x1[1:] + 1,), (np.linspace(0.5, 9, 3000),)),
                          (_reassigned_a_python_float, (x1 + 3,), (x1,))):
        _every_variant_reports(fn, good, bad)
    got, fell = _call(_reassigned_a_float64, x1)
    assert not fell and got[0] == np.inf
    np.testing.assert_array_equal(got[1:], 5.0 / (x1[1:] - 1.0))
    with pytest.raises(ZeroDivisionError):
        _call(_reassigned_a_python_float, x1)
    got, fell = _call(_reassigned_a_python_float, x1 + 3)
    assert not fell
    np.testing.assert_array_equal(got, 5.0 / (np.floor(x1 + 3) - 3.0))
    with pytest.raises(ZeroDivisionError):
        _call(_assigned_in_a_loop, x1, 0)
    got, fell = _call(_assigned_in_a_loop, x1, 1)  # a float64 (a): inf at 1, no raise
    assert not fell and got[0] == np.inf
    np.testing.assert_array_equal(got[1:], 5.0 / (x1[1:] - 1.0))
    with pytest.raises(ZeroDivisionError):
        _call(_doubled_in_a_while, np.linspace(0.5, 9, 3000))

    k, ref = _MeanOver(), _MeanOver(pure_python=True)
    u = np.random.default_rng(4).random((40, 36))
    u[7:12, 5:9] = 0.0  # 0 / 0 inside: NaN
    for c in (0.0, 4.0):
        got, fell = _call(lambda c=c: k(u, c))
        assert not fell  # compiled, no check: a float64 divided by zero is NumPy's inf or NaN
        with np.errstate(all="ignore"):
            want = ref(u, c)
        np.testing.assert_array_equal(got, want)
        assert np.isnan(want).any() and np.isinf(want).any() if c == 0 else \
            np.isfinite(want).all()
    # Every compiled variant (threshold 0, 2 threads: the parallel branches), and the
    # blocked iteration, against the Python.
    out = np.zeros_like(u)
    jit = k.jit_for(u, 0.0, out)
    names = list(k.specialization(u, 0.0, out).entries)
    assert len(names) > 1
    for c in (0.0, 4.0):
        with np.errstate(all="ignore"):
            want = ref(u, c)
        for name in names:
            got = np.zeros_like(u)
            with np.errstate(all="ignore"):
                jit.run_variant(name, u, c, got)
            np.testing.assert_array_equal(got, want, err_msg=name)
    v = u
    for _ in range(5):
        v = ref(v, 4.0)
    got, fell = _call(lambda: k.iterate(u, 4.0, steps=5))
    assert not fell
    np.testing.assert_array_equal(got, v)


@reduction("+")
def _root_of_sine(x):
    return math.sin(x) ** 0.5  # a Python float: a complex where the sine is negative


@elementwise
def _roots_of_sines(x):
    return math.sin(x) ** 0.5


def test_complex_results_of_the_python_are_reduced_and_returned_as_numpy_does():
    """A Python float raised to a fractional power is a complex where it is negative (a
    float64's is NaN): the compiled code cannot give it, so the call runs as Python, and
    its terms were forced into float64 there: TypeError from asp's own code (F19, fuzz
    seed 1404).  They reduce as NumPy reduces the Python's results, and an elementwise
    kernel returns them as NumPy's array of them (a stencil writes them into its float
    output, which raises TypeError in Python too)."""
    x = np.arange(1, 60, dtype=np.int32)
    terms = np.array([math.sin(v) ** 0.5 for v in x])
    assert terms.dtype.kind == "c"
    got, _ = _call(_root_of_sine, x)
    assert isinstance(got, np.complexfloating) and got == np.sum(terms)
    got, _ = _call(_roots_of_sines, x)
    assert got.dtype == terms.dtype
    np.testing.assert_array_equal(got, terms)


# -- a base raised to the power 0 is still evaluated (F21) ------------------------------------
@elementwise
def _quotient_to_the_zeroth(a, r):
    return (r // (r - 7)) ** 0 + a  # Python ints: r = 7 divides by zero


class _ZerothPowers(StencilKernel):  # fuzz seed 1512, reduced
    def kernel(self, s, a, out):
        for x in out.interior_points():
            r = x[0] + 1
            out[x] = (r // s) ** 0 + ((0.5 ** 0) % (s + a[x])) ** 0


def test_a_base_to_the_power_zero_raises_where_python_raises():
    """``e ** 0`` was the constant 1 and ``e`` was never evaluated, so its checks never
    ran: ``(r // 0) ** 0`` of Python ints, and ``s + a[x]`` with ``s = -15`` and ``a``
    uint8 (NumPy raises OverflowError), gave 1 where Python raises (fuzz seed 1512,
    four kernels).  Every variant now reports them (a base without checks is not
    evaluated: 1, as before)."""
    a = np.arange(1, 3001, dtype=np.int64)
    _every_variant_reports(_quotient_to_the_zeroth, (a, 8), (a, 7))
    k = _ZerothPowers()
    u8 = (np.arange(40 * 36).reshape(40, 36) % 200).astype(np.uint8)
    want = np.zeros(u8.shape, np.float64)
    want[1:-1, 1:-1] = 2.0
    spec = k.specialization(3, u8, np.zeros(u8.shape))
    for name in spec.variant_names:
        np.testing.assert_array_equal(k.run_variant(name, 3, u8, np.zeros(u8.shape)), want,
                                      err_msg=name)
        for bad in (0, -15):  # a zero divisor; a Python int no uint8 holds
            with pytest.raises(UnrepresentableValue):
                k.run_variant(name, bad, u8, np.zeros(u8.shape))
    for bad, error in ((0, ZeroDivisionError), (-15, OverflowError)):
        with pytest.raises(error):
            _call(k, bad, u8)


@reduction("+")
def _poisson_loglik(k, lam):
    return k * math.log(lam) - lam - math.lgamma(k + 1.0)


@elementwise
def _gamma_ratio(x):
    return math.gamma(x) / math.exp(math.lgamma(x))


def test_gamma_and_lgamma_compile_and_raise_where_python_does():
    """``math.gamma`` and ``math.lgamma`` compile (before 2026-12-07 a kernel calling them
    ran as Python: a fallback fails here), in every variant and on the parallel
    branch, agree with CPython's own implementations closely and with SciPy's Poisson
    log-likelihood, and flag where CPython raises."""
    from scipy.stats import poisson

    rng = np.random.default_rng(5)
    k = rng.poisson(4.0, 100_003).astype(np.float64)
    lam = rng.uniform(0.5, 9.0, k.size)
    want = poisson.logpmf(k, lam).sum()
    np.testing.assert_allclose(_poisson_loglik(k, lam), want, rtol=1e-12)
    for name in _poisson_loglik.jit.specialization(k, lam, None).variant_names:
        np.testing.assert_allclose(_poisson_loglik.jit.run_variant(name, k, lam, None),
                                   want, rtol=1e-12, err_msg=name)
    x = rng.uniform(-20.0, 25.0, 50_001)
    ref = np.array([math.gamma(v) / math.exp(math.lgamma(v)) for v in x])
    np.testing.assert_allclose(_gamma_ratio(x), ref, rtol=1e-12)  # the sign of gamma
    names = _gamma_ratio.jit.specialization(x, None).variant_names
    assert len(names) > 1
    for name in names:
        np.testing.assert_allclose(_gamma_ratio.jit.run_variant(name, x, None), ref,
                                   rtol=1e-12, err_msg=name)
    for bad, error in ((0.0, ValueError), (-3.0, ValueError), (180.0, OverflowError)):
        for name in names:
            with pytest.raises(UnrepresentableValue):
                _gamma_ratio.jit.run_variant(name, np.array([1.5, bad]), None)
        with pytest.raises(error):
            _call(_gamma_ratio, np.array([1.5, bad]))
