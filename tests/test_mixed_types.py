"""Values whose type depends on the path taken (asp/frontend/mixed.py).

Each kernel here was compiled wrong before: a variable, ternary or ``max`` whose value
is an ``int16`` on one path and a Python int on another (or a float32 and a Python
float) got one joined C type, which either widened what Python wraps or rounded what
Python keeps.  Fuzz findings 2-6 (elementwise) and 1 and 7 (stencil) of the 10,008-kernel
``make fuzz`` run are the first tests; the rest cover the ways such a value travels:
loops, ``while`` tests, tuple assignment, ``min``, nesting, and the limit beyond which
a kernel is refused (it then runs as Python, with one warning).

Every compiled variant, parallel branches included (conftest: threshold 0, 2 threads),
is compared bit for bit with the Python function.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from asp.errors import AspFallbackWarning, UnrepresentableValue
from specializers.elementwise import elementwise
from specializers.stencil import StencilKernel

I16 = np.iinfo(np.int16)


def _python(fn, *arrays):
    """The Python function element by element, each result kept with its own type."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return [fn.__wrapped__(*vals) for vals in zip(*arrays, strict=True)]


def _every_variant(fn, *arrays):
    s = fn.jit.specialization(*arrays, None)
    assert s.variant_names and s.check_failures == {}, s.check_failures
    want = _python(fn, *arrays)
    for name in s.variant_names:
        with np.errstate(all="ignore"):
            got = fn.jit.run_variant(name, *arrays, None)
        expected = np.array(want).astype(got.dtype)
        np.testing.assert_array_equal(got, expected, err_msg=name)


def _int16s(n=300, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.integers(I16.min, I16.max, n, endpoint=True).astype(np.int16)
    a[:6] = [I16.min, I16.max, 0, -1, 1, 5128]
    return a


# -- fuzz findings 2-6 ---------------------------------------------------------------------
@elementwise
def square_or_zero_shifted(x, y, z):
    if (not False):
        r = (y * y)
    else:
        r = 0
    return (r << 2)


@elementwise
def ternary_shifted(x, y, z):
    t0 = z
    return (((z * 7) if (True >= t0) else 0) << 3)


def test_fuzz_finding_a_variable_int16_on_one_path_and_a_python_int_on_the_other():
    x, y, z = _int16s(seed=1), _int16s(seed=2), _int16s(seed=3)
    # The finding: y = 5128 squares to 16448 in int16, and << 2 wraps it to 256.
    assert int(square_or_zero_shifted(np.int16([2]), np.int16([5128]), np.int16([2]))[0]) \
        == 256
    _every_variant(square_or_zero_shifted, x, y, z)


def test_fuzz_finding_a_ternary_of_int16_and_python_int_operands():
    x, y, z = _int16s(seed=4), _int16s(seed=5), _int16s(seed=6)
    assert int(ternary_shifted(np.int16([3786]), np.int16([2]), np.int16([-3843]))[0]) \
        == -18600
    _every_variant(ternary_shifted, x, y, z)


# -- the ways such a value travels ----------------------------------------------------------
@elementwise
def loop_carried(x, y):
    r = 0
    if x > 0:
        r = y * y
    for i in range(3):
        r = r + x
    return r * 1000


@elementwise
def while_test(x, y):
    r = 0
    n = 0
    while r < 100 and n < 5:
        r = r + y
        n += 1
    return r


@elementwise
def swap(x, y):
    a, b = 0, y
    if x > 0:
        a, b = b, a
    return a * 300 + b


@elementwise
def min_of_mixed(x, y):
    return min(x, 40000) * 2 + max(y, -1.5) // 1


@elementwise
def nested(x, y):
    return ((x if y > 0 else 70000) if x > y else (y * 3 if x < 0 else 2)) * 3


@pytest.mark.parametrize("fn", [loop_carried, while_test, swap, min_of_mixed, nested],
                         ids=lambda f: f.__name__)
def test_int16_and_python_int_values_on_every_path(fn):
    _every_variant(fn, _int16s(seed=7), _int16s(seed=8))


@elementwise
def float32_or_python_float(x, y):
    r = 16777217.0  # 2**24 + 1: a double, not a float32
    if x > y:
        r = x
    return (r - 16777216.0) * 3.0 + y


@elementwise
def float32_max(x, y):
    return (max(16777217.0, x) - 16777216.0) * y


def _float32s(seed):
    rng = np.random.default_rng(seed)
    a = (rng.standard_normal(300) * 10).astype(np.float32)
    a[:5] = [np.finfo(np.float32).max, -0.0, 0.1, 3.0, 2.0**25]
    return a


@pytest.mark.parametrize("fn", [float32_or_python_float, float32_max],
                         ids=lambda f: f.__name__)
def test_float32_and_python_float_values_on_every_path(fn):
    # Python: the Python float path subtracts in double (1.0), the float32 path in
    # float32; one joined type (float32) rounded 2**24 + 1 first and gave 0.0.
    _every_variant(fn, _float32s(1), _float32s(2))


@elementwise
def python_float_or_float64(x):
    r = 0.0
    for i in range(4):
        r = r * x + i
    return r


def test_a_python_float_and_a_float64_need_no_tag_without_float32():
    # They differ only where they meet a float32: one type, one C variable, no test.
    x = np.linspace(-2, 2, 101)
    _every_variant(python_float_or_float64, x)
    s = python_float_or_float64.jit.specialization(x, None)
    assert "__k" not in s.source and "__m" not in s.source


@elementwise
def five_types(x, y, z):
    r = 0
    if x > 0:
        r = x
    if y > 0:
        r = y
    if z > 0:
        r = z
    if x > y:
        r = 1.5
    return r


def test_more_types_than_compiled_falls_back_with_one_warning():
    x = np.arange(-3, 3, dtype=np.int8)
    y = np.arange(-3, 3, dtype=np.int16)
    z = np.arange(-3, 3, dtype=np.int32)
    with pytest.warns(AspFallbackWarning, match="assigned values of 5 types"):
        got = five_types(x, y, z)
    np.testing.assert_array_equal(got, np.array(_python(five_types, x, y, z)))


# -- stencil: fuzz findings 1 and 7 ------------------------------------------------------
class MaxOfScalar(StencilKernel):
    def kernel(self, s, a, b, out):
        for x in out.interior_points():
            out[x] = max(b[x], s, s)


class MaxTimesFloat32(StencilKernel):
    def kernel(self, s, a, b, out):
        for x in out.interior_points():
            t1 = (max(1.5, out[x], math.e) * a[x])
            out[x] = t1


def _stencil_every_variant(k, args):
    want = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    with np.errstate(all="ignore"):
        type(k)(pure_python=True, boundary=k.boundary).kernel(*want)
    s = k.specialization(*args)
    assert s.check_failures == {}, s.check_failures
    for name in s.variant_names:
        with np.errstate(all="ignore"):
            got = k.run_variant(name, *[a.copy() if isinstance(a, np.ndarray) else a
                                        for a in args])
        np.testing.assert_array_equal(got, want[-1], err_msg=name)


def test_fuzz_finding_stencil_max_of_uint8_and_a_python_int():
    rng = np.random.default_rng(9)
    a = rng.integers(0, 255, 14, dtype=np.uint8)
    b = rng.integers(0, 255, 14, dtype=np.uint8)
    out = rng.integers(-30000, 30000, 14).astype(np.int16)
    # Python: max(np.uint8(12), 13042, 13042) is the Python int 13042, stored as is.
    _stencil_every_variant(MaxOfScalar(boundary="wrap"), [13042, a, b, out])


def test_fuzz_finding_stencil_max_of_python_floats_and_float64_times_float32():
    rng = np.random.default_rng(10)
    a = (rng.standard_normal((3, 4, 5)) * 1e3).astype(np.float32)
    a[0, 2, 0] = np.finfo(np.float32).max  # e * max overflows in float32 (Python: inf)
    b = a.copy()
    out = rng.standard_normal((3, 4, 5)) * 3
    _stencil_every_variant(MaxTimesFloat32(boundary="wrap"), [-32767, a, b, out])


# -- Python's bools and NumPy's (fuzz run with mixed dtypes, 2026-12-02) --------------------
@elementwise
def python_bool_chain(x, y):
    t0 = 1.0
    r = 1.0
    return float(~(False != t0 <= r != True))  # noqa: E712 - the finding


@elementwise
def python_bools_add_as_ints(x, y):
    return (y < 3) + (1 < 2) + (x > 0)


@elementwise
def not_is_a_python_bool(x, y):
    return ~(not x) * 1


@elementwise
def mixed_chain(x, y):
    return ~(0 < y < x) * 1


@elementwise
def mixed_and(x, y):
    return ~((y > 2) and (x > 0)) * 1


@pytest.mark.parametrize("fn", [python_bool_chain, python_bools_add_as_ints,
                                not_is_a_python_bool, mixed_chain, mixed_and],
                         ids=lambda f: f.__name__)
def test_comparisons_of_python_values_are_python_bools(fn):
    # 1.0 <= 1.0 is Python's True (~True is -2, True + True is 2); a comparison with a
    # NumPy value is np.True_ (~np.True_ is False); a chain or 'and' mixing both has the
    # type of the comparison that decides.
    x = np.arange(-40, 40, dtype=np.int64)
    for y in (-1, 2, 3, 7):
        want = np.array(_python(fn, x, [y] * len(x)))
        for name in fn.jit.specialization(x, y, None).variant_names:
            got = fn.jit.run_variant(name, x, y, None)
            np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=name)
            assert got.dtype == want.dtype, name


@elementwise
def bool_ops(x, y):
    a, b = x > 0, y > 0
    return (a + b) * 1000 + (a * b) * 100 + (a ^ b) * 10 + (a // (b | True)) + (a % True)


def test_numpy_bools_compute_as_numpy_does():
    # np.True_ + np.True_ is np.True_ ('or'), * is 'and', // and % are int8's.
    x, y = _int16s(seed=11), _int16s(seed=12)
    _every_variant(bool_ops, x, y)


@elementwise
def plus_a_numpy_bool(x, y):
    t1 = +y  # noqa: F841 - the finding: unused, but NumPy raises here
    return 1.0 / (x << x)


@elementwise
def minus_a_numpy_bool(x, y):
    return -y + x


@elementwise
def plus_a_python_bool(x, flag):
    return x * 10 + +flag + -(2 > 1)


def test_unary_plus_or_minus_of_a_numpy_bool_is_numpys_type_error():
    # Fuzz finding (2026-12-04, seed 4122027, 7 of 6,000 kernels): +np.True_ raises
    # TypeError in NumPy, so the Python reference retried the element with Python
    # scalars, where 91 << 91 is 2.25e29; the compiled code took +y as 1 and kept
    # NumPy's x << x (0): inf against 4.4e-30.  Refused as NumPy refuses it; the call
    # runs as its Python, which gives the reference's answer.
    x = np.array([91, 3, 2, 1], dtype=np.int64)
    y = np.array([False, True, True, False])
    for fn, sign in ((plus_a_numpy_bool, "+"), (minus_a_numpy_bool, "-")):
        with pytest.warns(AspFallbackWarning, match=f"unary '\\{sign}' of a NumPy bool"):
            got = fn(x, y)
        want = fn.jit.specializer.run_python((x, y, None))
        np.testing.assert_array_equal(got, want)
    # Python's bools are Python's ints: +True is 1, -True is -1 (compiled, as Python).
    x = np.array([-3, 0, 5], dtype=np.int64)
    for flag in (True, False):
        s = plus_a_python_bool.jit.specialization(x, flag, None)
        assert s.variant_names and not s.check_failures
        for name in s.variant_names:
            got = plus_a_python_bool.jit.run_variant(name, x, flag, None)
            np.testing.assert_array_equal(got, x * 10 + int(flag) - 1, err_msg=name)


@elementwise
def unsigned_or_signed(x, y):
    return x | y


def test_bitwise_of_uint64_and_a_signed_int_is_pythons_type_error():
    x = np.arange(5, dtype=np.uint64)
    y = np.arange(5, dtype=np.int32)
    # Refused before any C is written (it was a KeyError in the front end, or C that gcc
    # rejected); the call runs as the Python it is.
    with pytest.warns(AspFallbackWarning, match="NumPy has no integer type for both"):
        unsigned_or_signed(x, y)


@elementwise
def floor_of_int16(x):
    t0 = np.floor(x)
    return (0 if ((t0 ** 2) > 1.0) else x)


def test_numpy_floor_of_an_integer_is_that_integer():
    # Fuzz finding (several dtypes, 2026-12-02): NumPy 2 returns np.floor(int16) as the
    # int16 itself, whose square wraps (-6959 ** 2 is -3423 in int16); asp squared a float.
    x = _int16s(seed=13)
    x[6] = -6959
    _every_variant(floor_of_int16, x)


@elementwise
def min_of_int_of_uint64(x, y):
    return min(0, y, int(y))


def test_int_of_a_uint64_beyond_int64_is_pythons():
    # Fuzz finding: int(np.uint64(2**64 - 1)) is a Python int beyond int64; asp wrapped it
    # to -1 and min() picked it.  The value now sends the call to Python.
    y = np.array([0, 5, 2**63 - 1], np.uint64)
    _every_variant(min_of_int_of_uint64, np.zeros(3), y)
    big = np.array([2**64 - 1, 3], np.uint64)
    with pytest.warns(AspFallbackWarning, match="only Python represents"):
        got = min_of_int_of_uint64(np.zeros(2), big)
    np.testing.assert_array_equal(got, [0, 0])


@elementwise
def isinf_chain(x, y, z):
    return float(not y) != math.isinf(y) >= 0


def test_math_predicates_and_bool_are_python_bools():
    # Fuzz finding: math.isinf() is a Python bool (np.isinf a NumPy one), so
    # 0.0 != math.isinf(-inf) >= 0 is Python's chain of Python bools: True.
    x = np.arange(4, dtype=np.int16)
    y = np.array([-np.inf, 0.0, 1.5, np.nan], np.float32)
    z = np.arange(4, dtype=np.int64)
    _every_variant(isinf_chain, x, y, z)


@elementwise
def python_float_power(x, y):
    s = abs(y) + 0.5  # a Python float (y is a Python int)
    return x + s ** s


def test_python_float_power_is_pythons_or_runs_as_python():
    # Fuzz finding (stencil, several dtypes): (-2.5) ** (-2.5) is complex in Python, and
    # 1000.5 ** 1000.5 raises OverflowError; pow() gave NaN and inf.  Such calls are
    # Python's (the same helper flags a negative base with a fractional exponent).
    x = np.arange(3, dtype=np.float64)
    _every_variant(python_float_power, x, [5] * 3)  # 5.5 ** 5.5: pow, as Python
    for name in python_float_power.jit.specialization(x, 5, None).variant_names:
        with pytest.raises(UnrepresentableValue):
            python_float_power.jit.run_variant(name, x, 1000, None)
