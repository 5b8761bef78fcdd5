"""Arguments by name, as the Python functions and methods take them: ``K(u, r=0.1)``,
``K.kernel(u, r=0.1, out=b)``, ``K.iterate(u, r=0.1, steps=5)``, ``f(x, a=2.0)``,
``energy(u=u, v=v)``; the result is the positional call's, and a wrong name, a
duplicate or a missing argument is a ``TypeError`` that names it."""
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


@elementwise
def affine(x, a, b):
    return a * x + b


@reduction("+")
def energy(u, v):
    return u * u + 0.5 * v * v


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
