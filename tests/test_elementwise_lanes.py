"""The ``lanes`` variants: elements in lockstep must compute exactly what the Python does."""
from __future__ import annotations

import numpy as np
import pytest

from specializers.elementwise import elementwise


@elementwise
def escape(cr, ci, maxiter):
    zr, zi = cr, ci
    for i in range(maxiter):
        zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
        if zr * zr + zi * zi > 4.0:
            return i
    return maxiter


@elementwise
def breaks_and_continues(x, n):
    acc = 0.0
    for i in range(n):
        if i % 3 == 1:
            continue
        acc += x * i
        if acc > 5.0:
            break
    return acc + i  # the loop variable keeps its value at the break


@elementwise
def nested_uniform_loops(x, y):
    s = 0.0
    for i in range(4):
        for j in range(5, 0, -2):
            if x * j > y:
                break
            if j == 3:
                continue
            s += j * 0.5
        if s > 6:
            return -s
        elif s > 2:
            s -= 1
        else:
            s += np.sqrt(x)
    return s


@elementwise
def comparisons_as_numbers(x, y, n):
    acc = 0.0
    z = x
    for i in range(n):
        t = (z > y) + (z == y) * 2      # booleans as numbers
        if not (acc < 10.0):
            continue
        acc = acc + t * 0.5 - y / (i + 1.0)
        z = -z if z < 0.0 else z * 0.75
    return acc


@elementwise
def ints_and_floats(x, k, n):
    best = -1
    for j in range(1, n, 2):
        v = x * j - k
        if v > 0.0 or k == j:
            best = j
            if v > 50.0:
                break
    return best * 1.5 + k


@elementwise
def int_walk(a, b):
    s = a - a
    c = a
    for i in range(12):
        if c > b and not (s > 100):
            s = s + c - b
        elif c == b:
            break
        else:
            s = s * 2 - 1               # wraps at int64's ends, as NumPy's int64 does
        c = c ^ (s & 7)
    return s - c


@elementwise
def element_dependent_bounds(x, k):
    s = 0
    for i in range(k):   # k is an element: no lockstep possible, no lanes variant
        s += i
    return s + x


CASES = [
    (escape, lambda r: (r.uniform(-2, 1, 203), r.uniform(-1.5, 1.5, 203), 30)),
    (breaks_and_continues, lambda r: (r.uniform(0, 3, 203), 9)),
    (nested_uniform_loops, lambda r: (r.uniform(0, 3, 203), r.uniform(0, 6, 203))),
]


def _python(fn, args):
    n = next(len(a) for a in args if isinstance(a, np.ndarray))
    return np.array([fn.py_func(*[a[k] if isinstance(a, np.ndarray) else a for a in args])
                     for k in range(n)])


@pytest.mark.parametrize("fn,make", CASES, ids=[c[0].__name__ for c in CASES])
def test_every_variant_matches_python(fn, make, rng):
    args = make(rng)
    s = fn.jit.specialization(*args, None)
    assert {"lanes8", "lanes32"} <= set(s.variant_names)
    assert ("vlanes8" in s.variant_names) == (fn is escape)  # the others call sqrt, use %
    assert not s.check_failures
    expected = _python(fn, args)
    for name in s.variant_names:
        got = fn.jit.run_variant(name, *args, None)
        np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=name)


def test_tail_shorter_than_a_lane_group(rng):
    # 8 * 32 + 5 elements: the last five take the scalar path.
    cr, ci = rng.uniform(-2, 1, 261), rng.uniform(-1.5, 1.5, 261)
    expected = _python(escape, (cr, ci, 25))
    for name in ("lanes8", "lanes32"):
        np.testing.assert_array_equal(escape.jit.run_variant(name, cr, ci, 25, None), expected)


def test_no_lanes_variant_for_element_dependent_loop_bounds(rng):
    x = rng.uniform(0, 1, 50)
    k = rng.integers(0, 9, 50)
    s = element_dependent_bounds.jit.specialization(x, k, None)
    assert not any(v.startswith("lanes") for v in s.variant_names)
    np.testing.assert_allclose(element_dependent_bounds(x, k), _python(element_dependent_bounds,
                                                                       (x, k)))


def test_lanes_loop_is_vectorized_in_the_generated_c(rng):
    s = escape.jit.specialization(rng.uniform(size=64), rng.uniform(size=64), 10, None)
    lanes_src = s.source.split("kernel_lanes8", 1)[1]
    assert "#pragma omp simd" in lanes_src
    assert "&&" not in lanes_src.split("kernel_lanes32", 1)[0]  # no branches in lane loops


def _edges(rng, n, dtype):
    """Random values with the edge values of ``dtype`` among them."""
    if np.dtype(dtype).kind == "f":
        x = rng.uniform(-3, 3, n)
        x[:7] = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, 1.7e308]
        return x
    info = np.iinfo(dtype)
    x = rng.integers(-1000, 1000, n, dtype=dtype)
    x[:5] = [0, -1, info.min, info.max, info.min + 1]
    return x


VECTOR_CASES = [
    (escape, lambda r: (_edges(r, 301, float), r.uniform(-1.5, 1.5, 301), 30)),
    (comparisons_as_numbers, lambda r: (_edges(r, 301, float), _edges(r, 301, float)[::-1]
                                        .copy(), 9)),
    (ints_and_floats, lambda r: (_edges(r, 301, float), r.integers(-5, 12, 301), 11)),
    (int_walk, lambda r: (_edges(r, 301, np.int64), _edges(r, 301, np.int64)[::-1].copy())),
]


@pytest.mark.parametrize("fn,make", VECTOR_CASES, ids=[c[0].__name__ for c in VECTOR_CASES])
def test_vector_lanes_match_python_bit_for_bit(fn, make, rng):
    # 301 = 37 groups of 8 + 5: whole vectors on both threads, and a scalar tail.
    args = make(rng)
    s = fn.jit.specialization(*args, None)
    assert {"vlanes4", "vlanes8", "lanes8", "lanes32"} <= set(s.variant_names)
    assert not s.check_failures
    with np.errstate(all="ignore"):
        expected = _python(fn, args)
    for name in s.variant_names:
        got = fn.jit.run_variant(name, *args, None)
        np.testing.assert_array_equal(got, expected.astype(got.dtype), err_msg=name)
        if got.dtype.kind == "f":  # -0.0 and 0.0 alike to assert_array_equal
            assert np.array_equal(np.signbit(got), np.signbit(expected)), name


def test_vector_lanes_are_vectors_in_registers(rng):
    s = escape.jit.specialization(rng.uniform(size=64), rng.uniform(size=64), 10, None)
    src = s.source.split("kernel_vlanes8", 1)[1].split("\nint ", 1)[0]
    assert "asp_vd v_zr[2]" in src and "asp_vsel_d" in src
    assert "omp simd" not in src  # no loops over lanes in memory: vector operations


@elementwise
def calls_sqrt(x, n):  # (np.sqrt: math.sqrt checks its domain, which no lockstep form does)
    s = 0.0
    for i in range(n):
        s = s + np.sqrt(x + i)
    return s


def test_no_vector_lanes_outside_8_byte_arithmetic(rng):
    # float32 elements (4-byte values) and a call on an element's value: lanes only.
    cr = rng.uniform(-2, 1, 100).astype(np.float32)
    ci = rng.uniform(-1.5, 1.5, 100).astype(np.float32)
    s = escape.jit.specialization(cr, ci, 20, None)  # the float32 signature
    assert "lanes8" in s.variant_names and "vlanes8" not in s.variant_names
    x = rng.uniform(0, 4, 100)
    s = calls_sqrt.jit.specialization(x, 5, None)
    assert "lanes8" in s.variant_names and "vlanes8" not in s.variant_names
    np.testing.assert_allclose(calls_sqrt(x, 5), _python(calls_sqrt, (x, 5)), rtol=1e-15)
