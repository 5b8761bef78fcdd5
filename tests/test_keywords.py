"""Arguments by name, as the Python functions and methods take them: ``K(u, r=0.1)``,
``K.kernel(u, r=0.1, out=b)``, ``K.iterate(u, r=0.1, steps=5)``, ``f(x, a=2.0)``,
``energy(u=u, v=v)``; the result is the positional call's, and a wrong name, a
duplicate or a missing argument is a ``TypeError`` that names it.  Defaults, keyword-only
and positional-only parameters of ``@elementwise`` and ``@reduction`` functions bind as
Python binds them, and the code is compiled (they were a ``TypeError`` or ran as Python).
"""
from __future__ import annotations

import numpy as np
import pytest

from specializers.elementwise import elementwise
from specializers.reduction import reduction
from specializers.stencil import StencilKernel


class Heat(StencilKernel):
    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * lap


class Wave(StencilKernel):
    def kernel(self, u, u_prev, c, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = 2.0 * u[x] - u_prev[x] + c * lap


@elementwise
def affine(x, a, b):
    return a * x + b


@reduction("+")
def energy(u, v):
    return u * u + 0.5 * v * v


@elementwise
def scaled(x, a=2.0, *, shift, power=2):
    return a * x ** power + shift


@reduction("max")
def peak(x, /, weight=-1.5):
    return weight * x


def test_defaults_keyword_only_and_positional_only_parameters_bind_as_python_binds(rng):
    x = rng.random(70000) - 0.5  # above the parallel threshold of any machine
    xs = x.tolist()

    def python(**kw):  # the function on every element, as Python calls it
        return np.array([scaled.py_func(np.float64(v), **kw) for v in xs])

    for _ in range(2):  # the first call compiles; the second is served by the hot entry
        np.testing.assert_array_equal(scaled(x, shift=1.0), python(shift=1.0))
        np.testing.assert_array_equal(scaled(x, 3.0, shift=0.5, power=3),
                                      python(a=3.0, shift=0.5, power=3))
        np.testing.assert_array_equal(scaled(x, power=1, a=-1.0, shift=0.0), -x)
        assert peak(x) == np.max(-1.5 * x)
        assert peak(x, 2.0) == np.max(2.0 * x)
        assert peak(x, weight=0.5) == np.max(0.5 * x)
    for call, message in (
            (lambda: scaled(x, 3.0, 1.0), r"scaled\(\) takes 2 positional argument\(s\) "
                                         r"\(x, a\), got 3"),
            (lambda: scaled(x), r"scaled\(\) missing argument\(s\): 'shift'"),
            (lambda: scaled(x, shift=1.0, b=2), r"unexpected keyword argument 'b'"),
            (lambda: peak(x=x), r"peak\(\) got positional-only argument 'x' by name"),
            (lambda: peak(), r"peak\(\) missing argument\(s\): 'x'"),
            (lambda: peak(x, 1.0, 2.0), r"peak\(\) takes 2 argument\(s\)")):
        with pytest.raises(TypeError, match=message):
            call()


def test_stencil_calls_by_name_are_the_positional_calls(rng):
    k, u = Heat(), rng.random((130, 90))
    want = Heat(pure_python=True)(u, 0.1)
    np.testing.assert_array_equal(k(u, r=0.1), want)
    np.testing.assert_array_equal(k(u=u, r=0.1), want)
    out = np.zeros_like(u)
    k.kernel(u, r=0.1, out=out)
    np.testing.assert_array_equal(out, want)
    out2 = np.zeros_like(u)
    k.kernel(out=out2, u=u, r=0.1)
    np.testing.assert_array_equal(out2, want)
    loop = u
    for _ in range(5):
        loop = k(loop, 0.1)
    np.testing.assert_array_equal(k.iterate(u, r=0.1, steps=5), loop)
    for _ in range(30):  # and once the hot entry serves the positional calls
        k(u, 0.1)
    np.testing.assert_array_equal(k(u, r=0.1), want)


def test_elementwise_and_reduction_calls_by_name(rng):
    x, v = rng.random(3000), rng.random(3000)
    np.testing.assert_array_equal(affine(x, b=1.0, a=2.0), 2.0 * x + 1.0)
    out = np.zeros_like(x)
    assert affine(x, 2.0, b=1.0, out=out) is out
    np.testing.assert_array_equal(out, 2.0 * x + 1.0)
    assert energy(v=v, u=x) == pytest.approx(np.sum(x * x + 0.5 * v * v), rel=1e-12)
    assert energy(x, v=v) == energy(x, v)


@pytest.mark.parametrize("call, message", [
    (lambda u: Heat()(u, rate=0.1), r"Heat.__call__\(\) got an unexpected keyword argument "
                                     r"'rate' \(its parameters: u, r\)"),
    (lambda u: Heat()(u, 0.1, u=u), r"Heat.__call__\(\) got multiple values for argument 'u'"),
    (lambda u: Heat().kernel(u, out=u), r"Heat.kernel\(\) missing argument\(s\): 'r'"),
    (lambda u: Heat().iterate(u, u=u, steps=2), r"Heat.iterate\(\) got an unexpected keyword "
                                                 r"argument 'u' \(its parameters: r\)"),
    (lambda u: affine(u, c=1.0), r"affine\(\) got an unexpected keyword argument 'c'"),
    (lambda u: affine(u, 1.0, a=1.0, b=2.0), r"affine\(\) got multiple values for argument 'a'"),
    (lambda u: energy(u, w=u), r"energy\(\) got an unexpected keyword argument 'w'"),
])
def test_a_wrong_name_is_named(call, message):
    with pytest.raises(TypeError, match=message):
        call(np.ones((8, 8)))


def test_a_tuple_state_iterates_with_the_other_inputs_by_name(rng):
    u, v = rng.random((70, 60)), rng.random((70, 60))
    by_position = Wave().iterate((u, v), 0.1, steps=5)
    for got, want in zip(Wave().iterate((u, v), c=0.1, steps=5), by_position):
        np.testing.assert_array_equal(got, want)  # was: missing argument 'u_prev'


@pytest.mark.parametrize("call, message", [
    # counted as the user calls them: K(u) is the kernel without its output
    (lambda u: Heat()(u), r"Heat\(\) takes 2 argument\(s\) \(u, r; the output is made\), "
                          r"got 1"),
    (lambda u: Heat()(u, 0.1, 0.2), r"Heat\(\) takes 2 argument\(s\) .*got 3"),
    (lambda u: Heat().kernel(u, 0.1), r"Heat.kernel\(\) takes 3 argument\(s\) \(u, r, out\), "
                                      r"got 2"),
    (lambda u: Heat().iterate(u, steps=2), r"Heat.iterate\(\) takes the state and 1 more "
                                           r"argument\(s\) \(r\), got 0"),
    (lambda u: Wave().iterate((u, u), steps=2), r"Wave.iterate\(\) takes the state and 1 "
                                                r"more argument\(s\) \(c\), got 0"),
    (lambda u: Wave().iterate((u, u), 0.1, 0.2, steps=2), r"\(c\), got 2"),
])
def test_a_wrong_count_is_counted_as_the_call_was_written(call, message):
    with pytest.raises(TypeError, match=message):
        call(np.ones((8, 8)))
