"""Integer arithmetic means in C what it means on NumPy arrays: it wraps, never traps.

Found by random differential testing: C's signed overflow is undefined (gcc folded
``abs(2 * (x + x))`` at INT64_MAX to -4), ``INT64_MIN // -1`` killed the process
with SIGFPE, shifts by negative or too-large counts differed from NumPy, and
narrow types were computed in C's ``int`` without wrapping.  The oracle is
NumPy's own array arithmetic on the same values; every variant of each kernel is
checked (``run_variant``), so the parallel and vector paths are covered too.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from asp.errors import AspFallbackWarning, UnrepresentableValue
from specializers.elementwise import elementwise
from specializers.stencil import StencilKernel

I64 = np.iinfo(np.int64)
I32 = np.iinfo(np.int32)


def every_variant(fn, *args):
    """The results of every compiled variant of ``fn`` on ``args`` (all must exist)."""
    s = fn.jit.specialization(*args, None)
    assert not s.check_failures, s.check_failures
    return {name: fn.jit.run_variant(name, *args, None) for name in s.variant_names}


def assert_all_equal(fn, expected, *args):
    expected = np.asarray(expected)
    for name, got in every_variant(fn, *args).items():
        assert got.dtype == expected.dtype, name
        np.testing.assert_array_equal(got, expected, err_msg=f"variant {name}")


def numpy_says(f, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with np.errstate(all="ignore"):
            return f(*args)


@elementwise
def double_abs(x):
    return abs(2 * (x + x))


@elementwise
def abs_floordiv(y):
    return abs(y) // 13


@elementwise
def neg_branch(x):
    n = -x
    if n < 0:
        return 1
    return 2


@elementwise
def floordiv_by(x, d):
    return x // d


@elementwise
def mod_by(x, d):
    return x % d


@elementwise
def shl(x, n):
    return x << n


@elementwise
def shr(x, n):
    return x >> n


@elementwise
def narrow_sum_big(x):
    return (x + x) > 100


@elementwise
def negate(x):
    return -x


@elementwise
def invert(x):
    return ~x


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_signed_overflow_wraps(dtype):
    info = np.iinfo(dtype)
    x = np.array([info.max, info.min, -1, 0, 7, info.max // 4 + 1], dtype)
    assert_all_equal(double_abs, numpy_says(lambda a: np.abs(2 * (a + a)), x), x)
    assert_all_equal(abs_floordiv, numpy_says(lambda a: np.abs(a) // 13, x), x)
    assert_all_equal(neg_branch, np.where(numpy_says(np.negative, x) < 0, 1, 2), x)


def test_issue_examples_exactly():
    x = np.array([I64.max], np.int64)
    assert double_abs(x)[0] == 4
    y = np.array([I64.min], np.int64)
    assert abs_floordiv(y)[0] == -709490156681136601


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int16, np.int8])
def test_min_floordiv_and_mod_minus_one_do_not_trap(dtype):
    info = np.iinfo(dtype)
    x = np.array([info.min, info.max, -7, 0, 5], dtype)
    for d in (np.full_like(x, -1), -1, np.zeros_like(x), 0):
        assert_all_equal(floordiv_by, numpy_says(np.floor_divide, x, d), x, d)
        assert_all_equal(mod_by, numpy_says(np.remainder, x, d), x, d)


def test_uint64_division_uses_unsigned_values():
    x = np.array([2**64 - 1, 2**63 + 5, 10, 0], np.uint64)
    d = np.array([3, 2**63, 0, 7], np.uint64)
    assert_all_equal(floordiv_by, numpy_says(np.floor_divide, x, d), x, d)
    assert_all_equal(mod_by, numpy_says(np.remainder, x, d), x, d)


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.int8, np.uint8, np.uint64])
def test_shifts_out_of_range_follow_numpy(dtype):
    bits = np.dtype(dtype).itemsize * 8
    signed = np.dtype(dtype).kind == "i"
    x = np.array([1, 5, 3, 2, 1, 7] + ([-8, -1] if signed else [200, 1]), dtype)
    counts = [0, 1, bits - 1, bits, bits + 3, 2] + ([-1, 70] if signed else [bits * 2, 3])
    n = np.array(counts, dtype)
    assert_all_equal(shl, numpy_says(np.left_shift, x, n), x, n)
    assert_all_equal(shr, numpy_says(np.right_shift, x, n), x, n)


@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.uint16])
def test_narrow_types_wrap_before_use(dtype):
    info = np.iinfo(dtype)
    x = np.array([100, info.max, info.min, 60, 1], dtype)
    assert_all_equal(narrow_sum_big, numpy_says(lambda a: (a + a) > 100, x), x)
    assert_all_equal(negate, numpy_says(np.negative, x), x)
    assert_all_equal(invert, numpy_says(np.invert, x), x)


def test_abs_of_min_is_min_as_in_numpy():
    for dtype in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(dtype)

        x = np.array([info.min, -3, 4], dtype)
        assert_all_equal(_abs, numpy_says(np.abs, x), x)


@elementwise
def _abs(x):
    return abs(x)


@elementwise
def floordiv_by_abs_of_int(x, y):
    t0 = abs(int(y))
    return (1.0 // t0)


def test_abs_of_a_python_int_is_unbounded():
    # Fuzz finding (10,008-kernel run of 2026-12-02): int(y) is a Python int, and
    # abs(-2**63) is 2**63 in Python (1.0 // 2**63 is 0.0), not INT64_MIN (-1.0).
    y = np.array([I64.min + 1, -7, 5, I64.max], np.int64)
    want = np.array([1.0 // abs(int(v)) for v in y])
    for name, got in every_variant(floordiv_by_abs_of_int, np.zeros_like(y), y).items():
        np.testing.assert_array_equal(got, want, err_msg=f"variant {name}")
    # At -2**63 every variant says only Python represents the value, and the call is
    # Python's (1.0 // 5 is 0.0 as well).
    lo = np.array([5, I64.min], np.int64)
    for name in floordiv_by_abs_of_int.jit.specialization(lo, lo, None).variant_names:
        with pytest.raises(UnrepresentableValue):
            floordiv_by_abs_of_int.jit.run_variant(name, lo, lo, None)
    with pytest.warns(AspFallbackWarning, match="only Python represents"):
        got = floordiv_by_abs_of_int(lo, lo)
    np.testing.assert_array_equal(got, [0.0, 0.0])


class FloorDivStencil(StencilKernel):
    def kernel(self, a, d, out):
        for x in out.interior_points():
            out[x] = a[x] // d + a[x] % d


@pytest.mark.parametrize("d", [-1, 0])
def test_stencil_min_floordiv_does_not_trap(d):
    a = np.full((6, 6), I64.min, np.int64)
    a[2, 3] = I64.max
    k = FloorDivStencil()
    spec = k.specialization(a, d, np.zeros_like(a))
    expected = np.zeros_like(a)
    with np.errstate(all="ignore"):
        expected[1:-1, 1:-1] = a[1:-1, 1:-1] // d + a[1:-1, 1:-1] % d
    for name in spec.variant_names:
        out = np.zeros_like(a)
        k.run_variant(name, a, d, out)
        np.testing.assert_array_equal(out, expected, err_msg=name)


@elementwise
def above(x, s):
    return x > s


@elementwise
def below_const(x):
    return x < -1


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.uint32, np.uint64, np.int64])
@pytest.mark.parametrize("s", [-1, 300, -129, 2**40, 0])
def test_a_python_int_is_compared_by_value(dtype, s):
    """NumPy 2 compares an array element with a Python int by value (F7: the C cast the
    int to the element's type first: uint8 x > -1 was x > 255)."""
    info = np.iinfo(dtype)
    x = np.array([info.min, 0, 1, info.max, 7], dtype)
    assert_all_equal(above, x > s, x, s)
    assert_all_equal(below_const, x < -1, x)


class CompareStencil(StencilKernel):
    def kernel(self, a, s, out):
        for x in out.interior_points():
            out[x] = 1.0 if s >= a[x] else 0.0


def test_stencil_compares_a_python_int_by_value():
    a = np.arange(-128, 127, dtype=np.int8)[:200].reshape(10, 20)
    for s in (32766, -200, 5):
        out = np.zeros(a.shape)
        CompareStencil().kernel(a, s, out)
        np.testing.assert_array_equal(out[1:-1, 1:-1], (s >= a[1:-1, 1:-1]).astype(float))


@elementwise
def int_square(x):
    return int(x) * int(x) + 0.5


def test_python_int_arithmetic_is_unbounded_as_in_python():
    """int(x) is a Python int: int(x) * int(x) beyond 64 bits is exact in Python; the
    compiled code wrapped it (silently wrong); now such a call runs as Python."""
    x = np.array([3e9, 4.0, -5e9])
    expected = np.array([float(int(v) * int(v)) + 0.5 for v in x])
    with pytest.warns(AspFallbackWarning, match="beyond 64 bits"):
        np.testing.assert_array_equal(int_square(x), expected)
    np.testing.assert_array_equal(int_square(np.array([3.0, -2.0])), [9.5, 4.5])


@elementwise
def shifted_int(x, s):
    return float((int(x) << s) >> 1)


def test_python_int_shifts_are_unbounded_as_in_python():
    x = np.array([3.0, -5.0, 1.0])
    np.testing.assert_array_equal(shifted_int(x, 4), [24.0, -40.0, 8.0])
    with pytest.warns(AspFallbackWarning, match="beyond 64 bits"):
        np.testing.assert_array_equal(shifted_int(x, 100),
                                      [float((int(v) << 100) >> 1) for v in x])
    with pytest.raises(ValueError, match="negative shift count"):
        shifted_int(x, -1)


class PickStencil(StencilKernel):
    def kernel(self, s, a, out):
        for x in out.interior_points():
            out[x] = s if a[x] > 0 else a[x]


@elementwise
def pick(x, s):
    return s if x > 0 else x


def test_a_python_int_or_a_narrow_int_is_held_whole():
    """(fuzzer) s if c else a[x], with s a Python int and a int8: Python keeps 32766;
    the variable's type was int8 (NEP 50's arithmetic rule), which wrapped it to -2."""
    a = np.array([[3, -4, 5, -6]] * 4, np.int8)
    out = np.zeros(a.shape, np.float32)
    PickStencil().kernel(32766, a, out)
    inner = a[1:-1, 1:-1]
    expected = [[32766.0 if v > 0 else float(v) for v in row] for row in inner]
    np.testing.assert_array_equal(out[1:-1, 1:-1], expected)
    x = np.array([1, 0, 3], np.uint8)
    got = pick(x, 300)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, [300, 0, 300])
    np.testing.assert_array_equal(pick(np.array([-1, 2], np.int8), 1000), [-1, 1000])
