"""@elementwise: every compiled variant agrees with the Python, typing follows NumPy, bad input.

Property tests draw inputs with hypothesis and compare EVERY variant of a
signature (``fn.jit.run_variant``) with the user's function applied to each
element.  Each kernel compiles once per signature, so the examples are cheap.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from asp.tune import calls_to_decide
from specializers.elementwise import elementwise

SETTINGS = settings(max_examples=25, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow,
                                           HealthCheck.function_scoped_fixture])

# -- kernels ------------------------------------------------------------------------------------


@elementwise
def poly(x):
    return 3 * x**3 + 2 * x**2 + x + 1


@elementwise
def mandel(cr, ci):
    zr = 0.0
    zi = 0.0
    for i in range(20):
        zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
        if zr * zr + zi * zi > 4.0:
            return i
    return 20


@elementwise
def branches(x, y):
    if x > y and x > 0:
        r = x - y
    elif x == y or y < -5:
        r = abs(x) + 1
    else:
        r = max(x, y, 2) - min(x, 0)
    return r * 2 if r < 50 else -r


@elementwise
def mathy(x):
    a = math.sqrt(abs(x)) + math.sin(x) * math.cos(x)
    b = math.exp(-x * x) + math.atan2(x, 2.0) + math.hypot(x, 1.0)
    c = math.floor(x) + math.ceil(x / 3) + math.trunc(float(-x))  # (a NumPy float32: refused)
    return a + b * math.pi + c + math.log1p(x * x) + math.tanh(x) + math.fabs(x) ** 0.5


@elementwise
def loops(x):
    s = 0
    for i in range(10, -3, -2):
        if i == 4:
            continue
        if i < 0 and x > 5:
            break
        s += i * x
    for j in range(3, 0, -1):
        s -= j
    k = 0
    while k < 3:
        k += 1
        s += k
    return s


@elementwise
def stepper(x):
    v = x
    n = 0
    for i in range(30):
        if v == 1:
            break
        if v % 2 == 0:
            v = v // 2
            continue
        v = 3 * v + 1
        n += 1
        if n > 8:
            return -n
    return n * 100 + i


@elementwise
def nested(x):
    t = 0.0
    for i in range(4):
        for j in range(i, 5):
            if x * j > 3:
                break
            t += x * j
        if t > 2:
            return t
    return -t


@elementwise
def lockstep(x):
    acc = 0.0
    for i in range(5):
        if x > i * 0.5:
            continue
        for j in range(4):
            acc += x * j
            if acc > 3.0:
                break
            if acc < -3.0:
                return acc * 2
        acc -= 0.25
    return acc


@elementwise
def counted(x, n):
    t = 0
    for i in range(n):
        if i % 3 == 1:
            continue
        t += i if x > i else -1
        if t > 40:
            break
    return t + i


@elementwise
def pydiv(a, b):
    return (a // b) * 1000 + a % b


@elementwise
def swap(a, b):
    a2, b2 = b, a
    a2, b2 = a2 + b2, a2 - b2
    return a2 * 10 + b2


@elementwise
def scale(x, c):
    return x * c


@elementwise
def add(x, c):
    return x + c


@elementwise
def ratio(x, c):
    return x / c


@elementwise
def negate(x):
    return -x


@elementwise
def positive(x):
    return x > 0


@elementwise
def clip01(x):
    return min(max(x, 0.0), 1.0)


# -- helpers ------------------------------------------------------------------------------------

def _reference(fn, *args):
    """The user's function on each element, as an array.

    Elements are passed as NumPy scalars (``a[i]``), so arithmetic follows NumPy's types:
    ``np.frompyfunc`` would pass Python floats and compute float32 inputs in double.
    """
    shape = next(a.shape for a in args if isinstance(a, np.ndarray))
    flat = [a.reshape(-1) if isinstance(a, np.ndarray) else a for a in args]
    n = int(np.prod(shape))
    def one(i):
        xs = [a[i] if isinstance(a, np.ndarray) else a for a in flat]
        try:
            return fn.py_func(*xs)
        except TypeError:  # e.g. math.trunc(np.float32(...)): NumPy scalars lack __trunc__
            return fn.py_func(*[x.item() if isinstance(x, np.generic) else x for x in xs])

    with np.errstate(all="ignore"):
        vals = [one(i) for i in range(n)]
    return np.asarray([v.item() if isinstance(v, np.generic) else v for v in vals]).reshape(shape)


def _close(got, want, dtype):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape
    if np.dtype(dtype) == np.float32:
        np.testing.assert_allclose(got, want.astype(np.float64), rtol=2e-5, atol=1e-5)
    elif got.dtype.kind == "f" or want.dtype.kind == "f":
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    else:
        if got.dtype.kind in "iu" and want.dtype.kind in "biu":
            want = want.astype(got.dtype)  # Python's ints are unbounded; NumPy's wrap
        np.testing.assert_array_equal(got, want)


def _every_variant(fn, *args, dtype=None, expected_dtype=None):
    """Run every variant of the signature of ``args`` and compare each with the Python."""
    s = fn.jit.specialization(*args, None)
    assert s.variant_names, "no compiled variants"
    assert s.check_failures == {}, s.check_failures
    want = _reference(fn, *args)
    dtype = dtype or next(a.dtype for a in args if isinstance(a, np.ndarray))
    for name in s.variant_names:
        got = fn.jit.run_variant(name, *args, None)
        if expected_dtype is not None:
            assert got.dtype == expected_dtype, name
        try:
            _close(got, want, dtype)
        except AssertionError as exc:
            raise AssertionError(f"variant {name}: {exc}") from None
    return s


def _arrays(dtype, lo, hi, *, min_size=0, max_size=40):
    if np.dtype(dtype).kind == "f":
        # Subnormal float32 inputs would make the reference (which may fall back to Python
        # floats, i.e. double) and float32 arithmetic round differently by design.
        elements = st.floats(lo, hi, width=np.dtype(dtype).itemsize * 8, allow_nan=False,
                             allow_subnormal=False)
    else:
        elements = st.integers(lo, hi)
    return hnp.arrays(dtype, st.integers(min_size, max_size), elements=elements)


# -- every variant vs Python, on random inputs --------------------------------------------------

@pytest.mark.parametrize("dtype, lo, hi", [(np.float64, -1e3, 1e3), (np.float32, -50, 50),
                                           (np.int64, -10_000, 10_000), (np.int32, -100, 100)])
def test_poly_every_variant(dtype, lo, hi):
    @SETTINGS
    @given(_arrays(dtype, lo, hi))
    def check(x):
        _every_variant(poly, x, expected_dtype=np.dtype(dtype))

    check()


def test_poly_variants_are_the_schedules():
    x = np.linspace(0, 1, 5)
    s = poly.jit.specialization(x, None)
    assert {"chunk", "stride", "dynamic"} <= set(s.variant_names)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_mandelbrot_every_variant(dtype):
    # Points on a 1/64 grid: the escape count is not decided by a last-bit rounding difference.
    grid = st.integers(-128, 64).map(lambda k: k / 64)
    grid_i = st.integers(-96, 96).map(lambda k: k / 64)

    @SETTINGS
    @given(st.integers(0, 70).flatmap(
        lambda n: st.tuples(hnp.arrays(dtype, n, elements=grid),
                            hnp.arrays(dtype, n, elements=grid_i))))
    def check(pair):
        cr, ci = pair
        _every_variant(mandel, cr, ci, expected_dtype=np.dtype(np.int64))

    check()


def test_mandelbrot_on_a_full_grid_every_variant():
    y, x = np.mgrid[-1.5:1.5:41j, -2.0:1.0:61j]
    s = _every_variant(mandel, x, y)
    # The loop kernel also gets the lockstep variants.
    assert {"chunk", "stride", "dynamic"} <= set(s.variant_names)
    assert mandel(x, y).max() == 20 and mandel(x, y).min() == 0


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_branches_every_variant(dtype):
    lo, hi = (-100, 100)

    @SETTINGS
    @given(st.integers(0, 40).flatmap(
        lambda n: st.tuples(_arrays(dtype, lo, hi, min_size=n, max_size=n),
                            _arrays(dtype, lo, hi, min_size=n, max_size=n))))
    def check(pair):
        x, y = pair
        x[: len(x) // 3] = y[: len(x) // 3]  # exercise the x == y branch
        _every_variant(branches, x, y)

    check()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_math_functions_every_variant(dtype):
    @SETTINGS
    @given(_arrays(dtype, -20, 20))
    def check(x):
        _every_variant(mathy, x, expected_dtype=np.dtype(np.float64))

    check()


@pytest.mark.parametrize("dtype, lo, hi", [(np.int64, -20, 20), (np.float64, -20, 20)])
def test_loops_break_continue_negative_step_while(dtype, lo, hi):
    @SETTINGS
    @given(_arrays(dtype, lo, hi))
    def check(x):
        _every_variant(loops, x)

    check()
    x = np.array([0, 1, 6, 10], dtype=dtype)
    expected = [loops.py_func(v) for v in x.tolist()]
    np.testing.assert_array_equal(loops(x), expected)


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_data_dependent_loop_exits_every_variant(dtype):
    @SETTINGS
    @given(_arrays(dtype, -5, 300))
    def check(x):
        _every_variant(stepper, x)

    check()
    x = np.arange(-3, 200, dtype=dtype)
    np.testing.assert_array_equal(stepper(x), [stepper.py_func(v) for v in x.tolist()])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nested_loops_with_break_and_return_every_variant(dtype):
    grid = st.integers(-64, 256).map(lambda k: k / 64)

    @SETTINGS
    @given(hnp.arrays(dtype, st.integers(0, 70), elements=grid))
    def check(x):
        _every_variant(nested, x)

    check()


def test_nested_loops_in_lockstep_every_variant():
    grid = st.integers(-256, 256).map(lambda k: k / 64)

    @SETTINGS
    @given(hnp.arrays(np.float64, st.integers(0, 80), elements=grid))
    def check(x):
        s = _every_variant(lockstep, x)
        assert {"lanes8", "lanes32"} <= set(s.variant_names)

    check()


def test_runtime_loop_bound_from_a_scalar_every_variant():
    @SETTINGS
    @given(_arrays(np.int64, -5, 60), st.integers(1, 25))
    def check(x, n):
        _every_variant(counted, x, n)

    check()


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_python_floor_division_and_modulo_on_negative_ints(dtype):
    nonzero = st.integers(-50, 50).filter(lambda v: v != 0)

    @SETTINGS
    @given(st.integers(0, 40).flatmap(
        lambda n: st.tuples(hnp.arrays(dtype, n, elements=st.integers(-1000, 1000)),
                            hnp.arrays(dtype, n, elements=nonzero))))
    def check(pair):
        a, b = pair
        _every_variant(pydiv, a, b, expected_dtype=np.dtype(dtype))

    check()
    a = np.array([-7, 7, -7, 7, -1, 0], dtype=dtype)
    b = np.array([2, -2, -2, 2, 5, -3], dtype=dtype)
    assert pydiv(a, b).tolist() == [(p // q) * 1000 + p % q
                                    for p, q in zip(a.tolist(), b.tolist())]


def test_python_float_floor_division_and_modulo():
    a = np.array([-7.5, 7.5, -7.5, 7.5, -0.5, 3.0, 1.0, -0.0, 0.0, 1.0, -1e-20])
    b = np.array([2.0, -2.0, -2.0, 2.0, 0.25, -1.5, 0.1, 3.0, -3.0, 0.1, 1.0])
    expected = [(p // q) * 1000 + p % q for p, q in zip(a.tolist(), b.tolist())]
    np.testing.assert_array_equal(pydiv(a, b), expected)
    # 1.0 // 0.1 is 9.0 in Python (floor(1.0 / 0.1) would say 10.0); -0.0 % 3.0 is +0.0.
    assert np.signbit(pydiv(np.array([-0.0]), np.array([3.0]))).tolist() == [False]
    _every_variant(pydiv, a, b)

    floats = st.floats(-1e6, 1e6, allow_nan=False)
    nonzero = floats.filter(lambda v: abs(v) > 1e-3)

    @SETTINGS
    @given(st.integers(0, 40).flatmap(
        lambda n: st.tuples(hnp.arrays(np.float64, n, elements=floats),
                            hnp.arrays(np.float64, n, elements=nonzero))))
    def check(pair):
        _every_variant(pydiv, *pair)

    check()


def test_unsigned_wraparound_follows_numpy():
    x = np.array([0, 1, 200, 255], np.uint8)
    np.testing.assert_array_equal(negate(x), -x)
    assert negate(x).dtype == np.uint8
    y = np.array([5, 0, 255, 3], np.uint8)
    np.testing.assert_array_equal(add(x, y), x + y)  # wraps, as NumPy's uint8 does
    _every_variant(add, x, y)


def test_int_scalar_broadcast_to_every_variant():
    @SETTINGS
    @given(_arrays(np.int64, -1000, 1000), st.integers(-9, 9).filter(bool))
    def check(a, b):
        _every_variant(pydiv, a, b)

    check()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_float_scalar_broadcast_to_every_variant(dtype):
    @SETTINGS
    @given(_arrays(dtype, -100, 100), st.floats(-10, 10))
    def check(x, c):
        _every_variant(scale, x, c, expected_dtype=np.dtype(dtype))

    check()


@pytest.mark.parametrize("dtype", [np.float64, np.int64])
def test_tuple_assignment_evaluates_the_right_side_first(dtype):
    a = np.arange(-5, 5).astype(dtype)
    b = (np.arange(10) * 3).astype(dtype)
    np.testing.assert_array_equal(swap(a, b), (b + a) * 10 + (b - a))
    _every_variant(swap, a, b)


# -- typing (NEP 50: Python scalars are weak) ---------------------------------------------------

@pytest.mark.parametrize("fn, x, c, dtype", [
    (scale, np.arange(5, dtype=np.float32), 1.5, np.float32),
    (scale, np.arange(5, dtype=np.float64), 1.5, np.float64),
    (scale, np.arange(5, dtype=np.int64), 1.5, np.float64),
    (scale, np.arange(5, dtype=np.int32), 3, np.int32),
    (add, np.arange(5, dtype=np.int32), 1, np.int32),
    (add, np.arange(5, dtype=np.int8), 1, np.int8),
    (add, np.arange(5, dtype=np.uint8), 1, np.uint8),
    (add, np.arange(5, dtype=np.float32), 1, np.float32),
    (add, np.arange(5, dtype=np.int64), 2.5, np.float64),
    (ratio, np.arange(1, 6, dtype=np.int64), 2, np.float64),
    (ratio, np.arange(1, 6, dtype=np.int32), 2, np.float64),
    (ratio, np.arange(1, 6, dtype=np.float32), 2, np.float32),
])
def test_weak_scalar_typing_matches_numpy(fn, x, c, dtype):
    got = fn(x, c)
    numpy_result = fn.py_func(x, c)  # the same expression on whole arrays, in NumPy
    assert got.dtype == dtype == numpy_result.dtype
    np.testing.assert_allclose(got, numpy_result, rtol=1e-6)


def test_mixed_array_dtypes_promote():
    a, b = np.arange(4, dtype=np.int32), np.arange(4, dtype=np.float32)
    assert add(a, b).dtype == np.float64 == (a + b).dtype
    c = np.arange(4, dtype=np.int16)
    assert add(a, c).dtype == np.int32


def test_bool_output():
    x = np.array([-1.0, 0.0, 2.0, np.nan])
    r = positive(x)
    assert r.dtype == np.bool_
    assert r.tolist() == [False, False, True, False]
    _every_variant(positive, x)
    assert positive(np.array([-3, 0, 3])).tolist() == [False, False, True]


def test_clip_with_float_literals_keeps_float32():
    x = np.linspace(-1, 2, 13, dtype=np.float32)
    r = clip01(x)
    assert r.dtype == np.float32
    np.testing.assert_array_equal(r, np.clip(x, 0, 1))


def test_nan_and_inf_propagate():
    x = np.array([np.nan, np.inf, -np.inf, 1.0])
    with np.errstate(all="ignore"):
        expected = [poly.py_func(v) for v in x]
    np.testing.assert_array_equal(poly(x), expected)


# -- out= ---------------------------------------------------------------------------------------

X = np.linspace(-2, 2, 30)
POLY = 3 * X**3 + 2 * X**2 + X + 1


def test_out_same_dtype_is_filled_and_returned():
    out = np.empty_like(X)
    assert poly(X, out=out) is out
    np.testing.assert_allclose(out, POLY)
    for _ in range(10):  # through tuning onto the hot path: still the caller's array
        out2 = np.zeros_like(X)
        assert poly(X, out=out2) is out2
        np.testing.assert_allclose(out2, POLY)


def test_out_of_another_dtype_does_not_change_calls_without_out():
    f = elementwise(poly.py_func)
    out = np.empty(X.shape, np.float32)
    for _ in range(12):
        f(X, out=out)
        np.testing.assert_allclose(out, POLY.astype(np.float32), rtol=1e-6)
    assert f(X).dtype == np.float64
    np.testing.assert_allclose(f(X), POLY)


def test_out_of_another_dtype_casts_as_a_ufunc_does():
    out = np.empty(X.shape, np.float32)
    assert poly(X, out=out) is out
    np.testing.assert_allclose(out, POLY.astype(np.float32), rtol=1e-6)
    # Integers into a narrower integer, booleans into integers: NumPy's 'same_kind'.
    i32 = np.empty(5, np.int32)
    assert poly(np.arange(5), out=i32) is i32
    np.testing.assert_array_equal(i32, 3 * np.arange(5)**3 + 2 * np.arange(5)**2
                                  + np.arange(5) + 1)
    def above(x):
        return x > 1.5

    f = elementwise(above)
    iout = np.zeros(4, np.int64)
    f(np.arange(4.0), out=iout)
    np.testing.assert_array_equal(iout, [0, 0, 1, 1])


@pytest.mark.parametrize("out_dtype", [np.int64, np.int32, np.uint8, np.bool_])
def test_float_results_into_an_integer_out_are_refused(out_dtype):
    """A ufunc refuses float results into an integer out=; the compiled cast made NaN and
    1e300 into INT64_MIN, silently."""
    x = np.array([1.0, np.nan, 3.0, 1e300] * 10)
    out = np.full(x.shape, 7).astype(out_dtype)
    before = out.copy()
    with pytest.raises(TypeError, match="'out'.*same_kind"):
        poly(x, out=out)
    with pytest.raises(TypeError):  # NumPy's own verdict on the same out=
        np.multiply(x, 2.0, out=out)
    np.testing.assert_array_equal(out, before)  # nothing was written
    ints = np.arange(40)
    with pytest.raises(TypeError, match="'out'"):  # integers into booleans: not same_kind
        poly(ints, out=np.zeros(40, bool))


def test_an_integer_out_is_refused_when_running_as_python_too():
    from asp.errors import AspFallbackWarning

    def halve(x):
        try:  # not compiled: the call runs as Python
            return x / 2
        except ZeroDivisionError:
            return 0.0

    f = elementwise(halve)
    out = np.full(3, 7, np.int64)
    with pytest.warns(AspFallbackWarning), pytest.raises(TypeError, match="'out'.*same_kind"):
        f(np.array([1.0, np.nan, 3.0]), out=out)
    assert np.all(out == 7)


def test_non_contiguous_out():
    big = np.zeros(60)
    view = big[::2]
    assert poly(X, out=view) is view
    np.testing.assert_allclose(big[::2], POLY)
    assert np.all(big[1::2] == 0)
    m = np.zeros((6, 10))
    out_t = m.T[:5]  # a transposed, strided view
    x2 = np.arange(30.0).reshape(5, 6) / 10
    assert poly(x2, out=out_t) is out_t
    np.testing.assert_allclose(m.T[:5], poly.py_func(x2))


def test_out_aliasing_the_input_in_place():
    x = X.copy()
    assert poly(x, out=x) is x
    np.testing.assert_allclose(x, POLY)
    a = np.arange(10.0)
    b = np.arange(10.0) * 2
    assert swap(a, b, out=a) is a
    np.testing.assert_array_equal(a, (np.arange(10.0) * 3) * 10 + np.arange(10.0))


def test_out_overlapping_the_input_partially():
    buf = np.arange(12.0)
    src, dst = buf[:10], buf[2:]
    expected = poly.py_func(src.copy())
    poly(src, out=dst)
    np.testing.assert_allclose(buf[2:], expected)


# -- layouts and shapes -------------------------------------------------------------------------

def test_non_contiguous_inputs():
    base = np.linspace(-1, 1, 40)
    np.testing.assert_allclose(poly(base[::3]), poly.py_func(base[::3]))
    m = base.reshape(5, 8)
    np.testing.assert_allclose(poly(m.T), poly.py_func(m.T))
    np.testing.assert_allclose(poly(m[:, 1::2]), poly.py_func(m[:, 1::2]))
    rev = base[::-1]
    np.testing.assert_allclose(poly(rev), poly.py_func(rev))


@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (1, 1, 7)])
def test_multidimensional_arrays(shape):
    x = np.linspace(-1, 1, int(np.prod(shape))).reshape(shape)
    r = poly(x)
    assert r.shape == shape
    np.testing.assert_allclose(r, poly.py_func(x))
    cr, ci = x, x[::-1].copy()
    np.testing.assert_array_equal(mandel(cr, ci), _reference(mandel, cr, ci))


@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0, 2)])
def test_empty_arrays(shape):
    x = np.zeros(shape)
    r = poly(x)
    assert r.shape == shape and r.dtype == np.float64
    out = np.zeros(shape, np.float32)
    assert poly(x, out=out) is out
    assert mandel(x, x).shape == shape


def test_lists_and_zero_d_arrays_are_accepted():
    np.testing.assert_allclose(poly([0.0, 1.0, 2.0]), [1, 7, 35])
    np.testing.assert_allclose(scale(np.arange(3.0), np.float64(2.0)), [0, 2, 4])
    np.testing.assert_allclose(scale(np.arange(3.0), np.array(2.0)), [0, 2, 4])
    assert scale(np.arange(3), True).tolist() == [0, 1, 2]


def test_methods_can_be_elementwise():
    from asp.errors import AspFallbackWarning

    class Model:
        @elementwise
        def apply(self, x):
            return x * 2 + self

    assert Model.apply.py_func.__qualname__.endswith("Model.apply")
    # As a method, 'self' is an argument like any other: a number or an array is compiled...
    with warnings.catch_warnings():
        warnings.simplefilter("error", AspFallbackWarning)
        np.testing.assert_array_equal(Model.apply(1.0, np.arange(3.0)), [1.0, 3.0, 5.0])
        np.testing.assert_array_equal(Model.apply(np.arange(3.0), np.ones(3)), [2.0, 3.0, 4.0])
    # ...and an instance is not an element: the error names the argument.
    with pytest.raises(TypeError, match="argument 'self'"):
        Model().apply(np.arange(3.0))


# -- bad inputs ---------------------------------------------------------------------------------

def test_wrong_argument_count():
    f = elementwise(poly.py_func)
    for _ in range(2):  # before and after the hot path is set up
        with pytest.raises(TypeError, match=r"poly\(\) takes 1 argument\(s\) \(x\), got 2"):
            f(X, X)
        with pytest.raises(TypeError, match=r"poly\(\) missing argument\(s\): 'x'"):
            f()
        for _ in range(calls_to_decide(3)):
            np.testing.assert_allclose(f(X), POLY)
        assert f.jit._hot is not None


@pytest.mark.parametrize("bad, exc, words", [
    (None, TypeError, ["'x'", "None"]),
    ("text", TypeError, ["'x'", "str"]),
    ({"a": 1}, TypeError, ["'x'", "dict"]),
    (np.array([1 + 2j]), TypeError, ["'x'", "complex128"]),
    (np.array([object()], dtype=object), TypeError, ["'x'", "object"]),
    (np.array(["a"]), TypeError, ["'x'"]),
    (np.ones(3, np.float16), TypeError, ["'x'", "float16"]),
    (np.ones(3, ">f2"), TypeError, ["'x'", ">f2"]),  # (">f8" is computed: test_byte_order)
    # (2**70 is no bad input: it runs as Python, warned, test_numpy_scalars.py)
])
def test_bad_single_input(bad, exc, words):
    f = elementwise(scale.py_func)
    with pytest.raises(exc) as info:
        f(bad, np.ones(3))
    for w in words:
        assert w in str(info.value), (w, str(info.value))
    with pytest.raises(exc, match="'c'"):  # the second argument is named too
        f(np.ones(3), bad)


def test_mismatched_shapes_name_both_arguments():
    with pytest.raises(ValueError, match=r"'ci' has shape \(4,\) but 'cr' has shape \(3,\)"):
        mandel(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="'ci'"):
        mandel(np.zeros((2, 3)), np.zeros((3, 2)))


def test_numbers_only_give_the_one_element_value_as_a_numpy_scalar():
    got = scale(1.5, 2.0)  # (tests/test_composed.py has the dtype rules)
    assert isinstance(got, np.float64) and got == 3.0


@pytest.mark.parametrize("out, exc, words", [
    (np.zeros(5), ValueError, ["'out'", "shape"]),
    (np.zeros(30, complex), TypeError, ["'out'", "complex128"]),
    (np.zeros(30, object), TypeError, ["'out'", "object"]),
    ([0.0] * 30, TypeError, ["'out'", "list"]),
])
def test_bad_out(out, exc, words):
    with pytest.raises(exc) as info:
        poly(X, out=out)
    for w in words:
        assert w in str(info.value)


def test_read_only_out():
    out = np.zeros_like(X)
    out.flags.writeable = False
    with pytest.raises(ValueError, match="'out' is read-only"):
        poly(X, out=out)
    # Even after the hot path is set up, the read-only guard holds.
    for _ in range(10):
        poly(X)
    with pytest.raises(ValueError, match="read-only"):
        poly(X, out=out)
    assert np.all(out == 0)


def test_bad_input_after_hot_path_is_still_reported():
    f = elementwise(poly.py_func)
    for _ in range(calls_to_decide(3)):
        f(X)
    assert f.jit._hot is not None
    with pytest.raises(TypeError, match="'x'"):
        f("not an array")
    with pytest.raises(TypeError, match="'x'"):
        f(np.array([1j]))


def test_unsupported_constructs_fall_back_with_a_location():
    from asp.errors import AspFallbackWarning

    def with_try(x):
        try:
            y = x + 1
        except ValueError:
            y = 0.0
        return y

    f = elementwise(with_try)
    with pytest.warns(AspFallbackWarning, match="'try'"):
        np.testing.assert_array_equal(f(np.arange(3.0)), [1.0, 2.0, 3.0])


def _ends_in_try(x):
    try:
        return x + 1.0
    except ValueError:
        return 0.0


def _ends_in_match(x):
    match x:
        case 1.0:
            return 2.0
        case _:
            return x


def _ends_in_raise(x):
    if x > -1.0:
        return x + 1.0
    raise ValueError("below -1")


@pytest.mark.parametrize("fn, words", [(_ends_in_try, "'try'"), (_ends_in_match, "'match'"),
                                       (_ends_in_raise, "'raise'")])
def test_a_kernel_ending_in_a_construct_it_may_not_hold_is_told_which(fn, words):
    # (before, these were told they could reach their end without returning a value)
    from asp.errors import AspFallbackWarning

    x = np.arange(3.0)
    with pytest.warns(AspFallbackWarning, match=words):
        np.testing.assert_array_equal(elementwise(fn)(x), [fn(v) for v in x])


ALWAYS = 3


def _ends_in_an_if_on_a_module_constant(x):
    if ALWAYS > 2:
        return x + 1.0


def _ends_in_a_loop_that_is_entered(x):
    for i in range(3):
        if x > i:
            return x * i
        return -x


def _ends_in_while_true(x):
    y = x
    while True:
        if y > 0.0:
            return y
        y = y + 1.0


@pytest.mark.parametrize("fn", [_ends_in_an_if_on_a_module_constant,
                                _ends_in_a_loop_that_is_entered, _ends_in_while_true])
def test_a_kernel_whose_end_python_never_reaches_compiles(fn):
    """Whether a kernel can reach its end is what Python knows when compiling: an `if`
    on a module constant takes one branch, a loop over a constant range is entered.
    (Before 2026-12-07 the first two were refused, "can reach its end without returning
    a value", and ran as Python: the syntax alone was asked.)  A fallback fails here."""
    from tests.test_helpers import every_variant

    x = np.linspace(-2.5, 2.5, 11)
    want = np.array([fn(v) for v in x])
    f = elementwise(fn)
    np.testing.assert_array_equal(f(x), want)
    variants = every_variant(f, x)
    assert len(variants) >= 3
    for name, got in variants.items():
        np.testing.assert_array_equal(got, want, err_msg=name)


def _may_reach_its_end(x):
    for i in range(ALWAYS - 3):  # never entered
        return x
    if x > 0.0:
        return x


def test_a_kernel_that_can_reach_its_end_is_told_so():
    from asp.errors import AspFallbackWarning

    x = np.arange(1.0, 4.0)
    with pytest.warns(AspFallbackWarning, match="'_may_reach_its_end' can reach its end"):
        np.testing.assert_array_equal(elementwise(_may_reach_its_end)(x), x)


def test_identity_comparisons_fall_back_naming_the_operator():
    from asp.errors import AspFallbackWarning

    def not_none(x):
        return x if x is not None else 0.0

    f = elementwise(not_none)
    with pytest.warns(AspFallbackWarning, match="comparison IsNot is not supported"):
        np.testing.assert_array_equal(f(np.arange(3.0)), [0.0, 1.0, 2.0])


def test_python_fallback_keeps_numpy_types(monkeypatch):
    """Running as Python (fallback or ASP_DISABLE_JIT) computes on NumPy scalars and
    returns what the compiled kernel returns: float32 in, float32 arithmetic and out."""
    from asp.errors import AspFallbackWarning

    x = np.linspace(-1, 1, 11, dtype=np.float32)
    compiled = poly(x)
    assert compiled.dtype == np.float32
    monkeypatch.setenv("ASP_DISABLE_JIT", "1")
    as_python = poly(x)
    assert as_python.dtype == np.float32
    np.testing.assert_array_equal(as_python, [poly.py_func(v) for v in x])
    np.testing.assert_allclose(compiled, as_python, rtol=1e-6)
    monkeypatch.delenv("ASP_DISABLE_JIT")

    def with_dict(x):
        return {"k": x * 0.5}["k"]

    f = elementwise(with_dict)
    with pytest.warns(AspFallbackWarning, match="not supported"):
        r = f(x)
    assert r.dtype == np.float32
    np.testing.assert_array_equal(r, x * np.float32(0.5))
    ints = f(np.arange(4, dtype=np.int16))  # cannot be typed: NumPy's own result type
    assert ints.dtype == np.float64


def _factorial(x):
    return math.factorial(x)


def _step(x):
    return np.heaviside(x, 0.5)


@pytest.mark.parametrize("fn, name", [(_factorial, "math.factorial"), (_step, "np.heaviside")])
def test_a_math_or_numpy_function_that_does_not_compile_is_named(fn, name):
    """(Before 2026-12-07 the message said the kernel could call only "... math and NumPy
    functions", of one of them.)"""
    from asp.errors import AspFallbackWarning

    x = np.arange(4)
    with pytest.warns(AspFallbackWarning, match=f"'{name}' is not among the math and NumPy "
                                                 "functions an elementwise kernel can call"):
        np.testing.assert_array_equal(elementwise(fn)(x), [fn(v) for v in x])
