"""The ``lanes`` variants: elements in lockstep must compute exactly what the Python does."""
from __future__ import annotations

import math

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
            s += math.sqrt(x)
    return s


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
