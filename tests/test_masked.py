"""NumPy masked arrays are refused by name: a kernel computes on every element of an
array's data, so a masked array's masked elements would be computed as if they were not
(an ``@reduction`` gave 30 where ``np.sum`` gives 20) and its mask dropped.  Refused on
the first call and on the hot path too (the entries' guards miss them), before any native
code runs."""
from __future__ import annotations

import numpy as np
import pytest

from asp.runtime import MISS
from specializers.elementwise import elementwise
from specializers.reduction import reduction
from specializers.stencil import StencilKernel


@elementwise
def affine(x, y):
    return x * 2.0 + y


@reduction("+")
def doubled(x):
    return x * 2.0


class Heat(StencilKernel):
    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * lap


def _masked(a: np.ndarray) -> np.ma.MaskedArray:
    mask = np.zeros(a.shape, bool)
    mask.reshape(-1)[::7] = True
    return np.ma.masked_array(a, mask=mask)


def _hot(call, jit):
    """Call until ``jit``'s calls are served by its hot entry (the native entry whose
    guards are checked in C); that entry."""
    for _ in range(3000):
        call()
        if jit.hot_entry is not None:
            return jit.hot_entry
    raise AssertionError("no hot entry")


def test_elementwise_refuses_a_masked_input_and_output(rng):
    x, y = rng.random(5000), rng.random(5000)
    _hot(lambda: affine(x, y), affine.jit)
    for args, kw, name in (((_masked(x), y), {}, "x"), ((x, _masked(y)), {}, "y"),
                           ((x, y), {"out": _masked(np.zeros(5000))}, "out")):
        with pytest.raises(TypeError, match=rf"argument '{name}' is a masked array"):
            affine(*args, **kw)
    np.testing.assert_array_equal(affine(x, y), x * 2.0 + y)


def test_reduction_refuses_a_masked_array(rng):
    x = rng.random(5000)
    hot = _hot(lambda: doubled(x), doubled.jit)
    m = _masked(x)
    assert hot(m, None) is MISS  # its guards miss it: the slow path refuses it
    assert np.sum(m * 2.0) != pytest.approx(np.sum(x * 2.0))  # the mask matters
    with pytest.raises(TypeError, match=r"argument 'x' is a masked array.*x\.filled"):
        doubled(m)
    assert doubled(x) == pytest.approx(np.sum(x * 2.0), rel=1e-12)


def test_stencil_refuses_masked_grids_on_every_path(rng):
    k = Heat()
    u = rng.random((120, 90))
    out = np.zeros_like(u)
    hot = _hot(lambda: k.kernel(u, 0.1, out), k.jit_for(u, 0.1, out))
    assert hot(_masked(u), 0.1, out) is MISS and hot(u, 0.1, _masked(out)) is MISS
    _hot(lambda: k(u, 0.1), k.call_jit(u, 0.1))
    with pytest.raises(TypeError, match=r"argument 'u' is a masked array"):
        k.kernel(_masked(u), 0.1, out)
    with pytest.raises(TypeError, match=r"argument 'out' is a masked array"):
        k.kernel(u, 0.1, _masked(out))
    with pytest.raises(TypeError, match=r"argument 'u' is a masked array"):
        k(_masked(u), 0.1)
    with pytest.raises(TypeError, match=r"argument 'state' is a masked array"):
        k.iterate(_masked(u), 0.1, steps=3)
    with pytest.raises(TypeError, match=r"argument 'state\[1\]' is a masked array"):
        k.iterate((u, _masked(u)), 0.1, steps=3)
    with pytest.raises(TypeError, match=r"argument 'args\[0\]' is a masked array"):
        k.iterate(u, np.ma.masked_array(0.1), steps=3)
    want = Heat(pure_python=True)(u, 0.1)
    np.testing.assert_array_equal(k(u, 0.1), want)


def test_a_tuple_state_that_is_not_an_array_is_named_with_the_reason():
    with pytest.raises(TypeError, match=r"state\[1\]: expected a numpy array or a StencilGrid"):
        Heat().iterate((np.zeros((8, 8)), "grid"), 0.1, steps=2)
