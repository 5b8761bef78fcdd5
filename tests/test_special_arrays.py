"""Arrays whose meaning a compiled kernel cannot keep are refused by name, on the first call
and on the hot path too (the entries' guards miss them), before any native code runs:

* NumPy masked arrays: a kernel computes on every element of an array's data, so the
  masked elements would be computed as if they were not (an ``@reduction`` gave 30 where
  ``np.sum`` gives 20) and the mask dropped;
* ``ndarray`` subclasses with arithmetic of their own (``__array_ufunc__`` or
  ``__array_function__``), as arrays with units have: NumPy's ``u * u + v * v`` with
  ``v`` in kilometres converted it, the kernels added the raw numbers (1e9 against 2000).

Subclasses that keep NumPy's arithmetic are computed as plain arrays."""
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


class Kilometres(np.ndarray):
    """An array with units, as astropy's ``Quantity`` is: NumPy's arithmetic on it
    converts to metres first."""

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        metres = [np.asarray(a) * 1000.0 if isinstance(a, Kilometres) else a for a in inputs]
        return getattr(ufunc, method)(*metres, **kwargs)


class Dispatched(np.ndarray):
    """A subclass that overrides NumPy's functions (``np.sum``...), not its ufuncs."""

    def __array_function__(self, func, types, args, kwargs):
        return "dispatched"


class Tagged(np.ndarray):
    """A subclass that keeps NumPy's arithmetic: a plain array to a kernel."""


@reduction("+")
def energy(u, v):
    return u * u + v * v


def test_arrays_with_arithmetic_of_their_own_are_refused_on_every_path(rng):
    x, y = rng.random(5000), rng.random(5000)
    km = y.view(Kilometres)
    assert np.sum(x * x + km * km) > 1e3 * np.sum(x * x + y * y)  # NumPy converts
    hot = _hot(lambda: energy(x, y), energy.jit)
    assert hot(x, km, None) is MISS and hot(x, y.view(Dispatched), None) is MISS
    for cls in (Kilometres, Dispatched):
        with pytest.raises(TypeError, match=rf"argument 'v' has type {__name__}\.{cls.__name__}, "
                                            r"an array with arithmetic of its own.*np\.asarray"):
            energy(x, y.view(cls))
    _hot(lambda: affine(x, y), affine.jit)
    with pytest.raises(TypeError, match=r"argument 'x' has type .*Kilometres"):
        affine(x.view(Kilometres), y)
    with pytest.raises(TypeError, match=r"argument 'out' has type .*Kilometres"):
        affine(x, y, out=np.zeros(5000).view(Kilometres))
    k = Heat()
    u = rng.random((120, 90))
    out = np.zeros_like(u)
    hot = _hot(lambda: k.kernel(u, 0.1, out), k.jit_for(u, 0.1, out))
    assert hot(u.view(Kilometres), 0.1, out) is MISS
    assert hot(u, 0.1, out.view(Kilometres)) is MISS
    _hot(lambda: k(u, 0.1), k.call_jit(u, 0.1))
    with pytest.raises(TypeError, match=r"argument 'u' has type .*Kilometres"):
        k(u.view(Kilometres), 0.1)
    with pytest.raises(TypeError, match=r"argument 'out' has type .*Kilometres"):
        k.kernel(u, 0.1, out.view(Kilometres))
    with pytest.raises(TypeError, match=r"argument 'state\[0\]' has type .*Kilometres"):
        k.iterate((u.view(Kilometres), u), 0.1, steps=3)
    assert energy(x, y) == pytest.approx(np.sum(x * x + y * y), rel=1e-12)


def test_subclasses_that_keep_numpys_arithmetic_are_plain_arrays_to_a_kernel(rng):
    x, y = rng.random(5000), rng.random(5000)
    hot = _hot(lambda: energy(x, y), energy.jit)
    tagged = y.view(Tagged)
    assert hot(x, tagged, None) == pytest.approx(np.sum(x * x + y * y), rel=1e-12)
    assert energy(x.view(Tagged), tagged) == pytest.approx(np.sum(x * x + y * y), rel=1e-12)
    np.testing.assert_array_equal(affine(x.view(Tagged), y), x * 2.0 + y)
    u = rng.random((120, 90))
    want = Heat(pure_python=True)(u, 0.1)
    np.testing.assert_array_equal(Heat()(u.view(Tagged), 0.1), want)
