"""A Python int meeting a NumPy integer type that cannot hold it: Python's answer or
Python's error, never a wrapped number.

NumPy 2 (NEP 50) converts a Python int that meets a NumPy integer exactly or not at
all: ``np.uint64(5) + (-1)``, ``np.uint8(300)`` and ``a[i] = 300`` for a ``uint8``
array raise OverflowError, and ``y if y < 1000 else -1`` with ``y`` a uint64 is the
Python int -1 where the test fails, so a sum of such terms is a Python int.  The
compiled code converted each of these silently (-1 became 2**64 - 1), and the check on
random inputs (small values, which never took the branch) could not see it: a sum came
back 2**64 - 14 where Python gives -14.  Now a constant that fits converts as before
(no run-time test), and any other value is tested where it is converted: out of range,
the call runs as Python (one warning), which gives Python's value or raises Python's
error.

Every compiled variant, parallel branches included (conftest: threshold 0, 2 threads),
is run on inputs that take the branch and on inputs that do not.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from asp.errors import AspFallbackWarning, UnrepresentableValue
from asp.frontend import get_source
from asp.frontend.scalar import translate
from asp.ir.pyscalar import T
from specializers.elementwise import elementwise
from specializers.reduction import reduction
from specializers.stencil import StencilKernel


def call_quietly(fn, *args):
    """``fn(*args)`` and the fallback warnings it gave."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("always", AspFallbackWarning)  # (a RuntimeWarning)
        with np.errstate(all="ignore"):
            out = fn(*args)
    return out, [w for w in seen if issubclass(w.category, AspFallbackWarning)]


# -- a value that is a uint64 on one path and a Python int on another ------------------------
@reduction("+")
def _total_or_minus_one(y):
    return y if y < 1000 else -1


@reduction("max")
def _largest_or_minus_one(y):
    return y if y < 1000 else -1


@reduction("+")
def _five_then_less_ten(y):
    return (y if y < 1000 else 5) - 10


@reduction("+")
def _assigned_on_a_path(y):
    v = y
    if y >= 1000:
        v = -1
    return v


def _uint64s(big: bool) -> np.ndarray:
    """Small values (the branch is never taken), or zeros among values >= 1000: every
    term Python gives is 0 or the Python int -1, whose sum is negative (a sum modulo 2**64
    agrees with Python's wherever Python's lies in [0, 2**64))."""
    y = np.arange(2000, dtype=np.uint64) % 9
    if big:
        y[y != 0] = 5000
    return y


def _python_sum(fn, y):
    """The reduction's reference: NumPy's sum (max) of the terms in the type the compiled
    code gives them where they fit it, else of the terms as Python gives them (Python
    ints), as documented in :mod:`specializers.reduction`."""
    terms = [fn.__wrapped__(v) for v in y]
    reduce = np.max if fn is _largest_or_minus_one else np.sum
    try:
        return reduce(np.asarray(terms, dtype=np.uint64))
    except OverflowError:
        return reduce(np.array([int(t) for t in terms], dtype=object))


@pytest.mark.parametrize("fn", [_total_or_minus_one, _largest_or_minus_one,
                                _five_then_less_ten, _assigned_on_a_path],
                         ids=lambda f: f.__name__)
def test_a_reduction_of_terms_python_keeps_as_python_ints(fn):
    small, big = _uint64s(False), _uint64s(True)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        want_small, want_big = _python_sum(fn, small), _python_sum(fn, big)
    got, fell = call_quietly(fn, big)
    assert int(got) == int(want_big), (got, want_big)  # was 2**64 - 1777 for -1777
    assert len(fell) == 1 and "beyond the NumPy integer type" in str(fell[0].message)
    # Every variant: exact where no term is a Python int beyond uint64, and reporting
    # (not wrapping) where one is.
    s = fn.jit.specialization(small, None)
    assert s.variant_names and not s.check_failures, s.check_failures
    for name in s.variant_names:
        with np.errstate(all="ignore"):
            assert int(fn.jit.run_variant(name, small, None)) == int(want_small), name
        with pytest.raises(UnrepresentableValue):
            fn.jit.run_variant(name, big, None)


# -- a Python int that NumPy refuses to convert: Python's OverflowError -----------------------
class _StoreMinusOne(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] if u[x] < 1000 else -1


class _AddOutOfRange(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = u[x] + 300 if u[x] > 100 else u[x]


@pytest.mark.parametrize("kernel, dtype, big", [(_StoreMinusOne, np.uint64, 5000),
                                                (_AddOutOfRange, np.uint8, 200)],
                         ids=["store -1 into uint64", "uint8 + 300"])
def test_a_stencil_raises_where_python_raises(kernel, dtype, big):
    u = (np.arange(48 * 40).reshape(48, 40) % 90).astype(dtype)
    plain = kernel()
    plain.pure_python = True
    want = plain(u)  # no element takes the branch: Python computes it
    k = kernel()
    got, fell = call_quietly(k, u)
    np.testing.assert_array_equal(got, want)
    assert not fell
    u[20, 11] = big
    with pytest.raises(OverflowError):
        plain(u)
    with pytest.raises(OverflowError, match="out of bounds"), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", AspFallbackWarning)
        k(u)  # was a wrapped value at [20, 11] (2**64 - 1, or 244)
    s = k.specialization(u, np.zeros_like(u))
    for name in s.variant_names:
        with pytest.raises(UnrepresentableValue):
            k.run_variant(name, u, np.zeros_like(u))


# -- a NumPy integer stored into a signed grid that cannot hold it (F20) --------------------
class _Square(StencilKernel):  # fuzz seed 1502: out[x] = (b[x] ** 2), b int64, out int16
    def kernel(self, b, out):
        for x in out.interior_points():
            out[x] = b[x] ** 2


class _Accumulate(StencilKernel):
    def kernel(self, b, out):
        for x in out.interior_points():
            out[x] += b[x]


@pytest.mark.parametrize("kernel, src, dst, big", [
    (_Square, np.int64, np.int16, 410),  # 168100: beyond int16
    (_Square, np.int32, np.int16, -200),
    (_Square, np.uint64, np.int64, 2**32 - 1),  # a uint64 beyond int64's range
    (_Accumulate, np.uint64, np.int64, 2**63),
    (_Accumulate, np.int64, np.int32, 2**31),
    (_Accumulate, np.uint16, np.int16, 40000),
], ids=["int64 ** 2 -> int16", "int32 ** 2 -> int16", "uint64 ** 2 -> int64",
        "int64 += uint64", "int32 += int64", "int16 += uint16"])
def test_a_numpy_integer_a_signed_grid_cannot_hold_raises(kernel, src, dst, big):
    """NumPy 2 stores a NumPy integer into a signed integer array through a Python int:
    ``a[i] = np.int64(40000)`` raises OverflowError for an int16 ``a`` (an unsigned
    array takes it modulo its size, as C does).  The compiled code wrapped it: 168100
    became -28252 in the fuzzer's kernel.  Every variant reports it; values in range are
    the Python's, and unsigned grids still wrap without a test."""
    b = (np.arange(40 * 36).reshape(40, 36) % 90).astype(src)
    plain = kernel()
    plain.pure_python = True
    want = np.zeros(b.shape, dst)
    plain.kernel(b, want)
    k = kernel()
    got = np.zeros(b.shape, dst)
    _, fell = call_quietly(k.kernel, b, got)
    np.testing.assert_array_equal(got, want)
    assert not fell
    s = k.specialization(b, np.zeros(b.shape, dst))
    for name in s.variant_names:  # in range: every variant computes, no flag
        np.testing.assert_array_equal(k.run_variant(name, b, np.zeros(b.shape, dst)), want,
                                      err_msg=name)
    b[17, 9] = big
    with pytest.raises(OverflowError):
        plain.kernel(b, np.zeros(b.shape, dst))
    with pytest.raises(OverflowError), warnings.catch_warnings():
        warnings.simplefilter("ignore", AspFallbackWarning)
        k.kernel(b, np.zeros(b.shape, dst))  # was a wrapped value at [17, 9]
    for name in s.variant_names:
        with pytest.raises(UnrepresentableValue):
            k.run_variant(name, b, np.zeros(b.shape, dst))
    unsigned = np.zeros(b.shape, np.dtype(dst).str.replace("i", "u"))
    _, fell = call_quietly(k.kernel, b, unsigned)  # modulo its size, as NumPy stores it
    plain_unsigned = np.zeros_like(unsigned)
    with np.errstate(all="ignore"):
        plain.kernel(b, plain_unsigned)
    np.testing.assert_array_equal(unsigned, plain_unsigned)
    assert not fell


@elementwise
def _plus_int32(x, c):
    return x + np.int32(c)


def test_np_int32_of_a_python_int_it_cannot_hold_raises():
    x = np.arange(5000, dtype=np.int32)
    got, fell = call_quietly(_plus_int32, x, 2**31 - 1)
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal(got, x + np.int32(2**31 - 1))
    assert not fell
    with pytest.raises(OverflowError, match="out of bounds for int32"):
        call_quietly(_plus_int32, x, 2**31)  # was x - 2**31
    s = _plus_int32.jit.specialization(x, 7, None)
    assert s.variant_names
    for name in s.variant_names:
        with pytest.raises(UnrepresentableValue):
            _plus_int32.jit.run_variant(name, x, 2**31, None)


# -- constants that fit convert as before: no test at run time, no fallback -------------------
@reduction("+")
def _total_or_five(y):
    return y if y < 1000 else 5


@elementwise
def _plus_one(x):
    return x + 1


def test_constants_that_fit_compile_without_a_run_time_test():
    y = _uint64s(True)
    got, fell = call_quietly(_total_or_five, y)
    assert not fell and got == np.sum(np.where(y < 1000, y, np.uint64(5)))
    x = np.arange(5000, dtype=np.uint8)
    got, fell = call_quietly(_plus_one, x)
    assert not fell
    np.testing.assert_array_equal(got, x + np.uint8(1))
    # No run-time test (a kernel with one has no SIMD-lanes form, and reports through a
    # flag) where every Python int is a constant the type holds.
    for fn, t, checked in ((_total_or_five, "uint64_t", False),
                           (_total_or_minus_one, "uint64_t", True),
                           (_plus_one, "uint8_t", False), (_plus_int32, "int32_t", True)):
        fn = fn.py_func
        types = {"x": T(t), "c": T("int64_t", weak=True)} if fn.__name__ == "_plus_int32" \
            else {fn.__code__.co_varnames[0]: T(t)}
        assert translate(get_source(fn), fn, types).checked == checked, fn.__name__


# -- a Python int argument: tested once per call, before any element --------------------------
@elementwise
def _offset(x, c):
    return x + c


@elementwise
def _offset_above(x, c):
    return x + c if x > 100 else x


@reduction("+")
def _offset_total(x, c):
    return x * c


def test_a_python_int_argument_is_tested_once_per_call():
    """``x + c`` with ``x`` int16 and ``c`` a Python int argument: ``c`` was tested at every
    element (GCC moved one test out of the loop, not several).  It is tested once, before
    the loop (the tightest range of its uses); out of range every variant reports,
    and the call runs as Python, which raises where ``c`` meets the int16, and gives its own
    result where no element reaches that point."""
    x = np.arange(-3000, 3000, dtype=np.int16)
    for fn in (_offset, _offset_total):
        s = fn.jit.specialization(x, 7, None)
        body = s.source[s.source.index("asp_pyint_in(int64_t") + 1:]
        assert "asp_pyint_in(" not in body, "still tested at each element"
        assert "if (v_c < -32768 || v_c > 32767)" in body
        want = fn.jit.specializer.run_python((x, 7, None))
        for name in s.variant_names:
            np.testing.assert_array_equal(fn.jit.run_variant(name, x, 7, None), want,
                                          err_msg=name)
            for c in (32768, -32769, 2**62):
                with pytest.raises(UnrepresentableValue):
                    fn.jit.run_variant(name, x, c, None)
        got, fell = call_quietly(fn, x, 32767)  # in range: compiled; NumPy's wrapping
        assert not fell
        with np.errstate(all="ignore"):
            np.testing.assert_array_equal(got, fn.jit.specializer.run_python((x, 32767, None)))
        with pytest.raises(OverflowError):
            call_quietly(fn, x, 32768)
    small = np.arange(0, 100, dtype=np.int16)  # no element takes the branch: no error
    got, _ = call_quietly(_offset_above, small, 40000)
    np.testing.assert_array_equal(got, small)
