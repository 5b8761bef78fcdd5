"""NumPy scalar arguments are typed as NumPy types them: *strong*, as their dtype.

Under NEP 50 (NumPy 2) a Python ``float`` or ``int`` argument is weak (``0.1 * x`` is
float32 for a float32 ``x``), while ``np.float64(0.1) * x`` is float64 and
``np.float32(0.1) * np.float32(0.1)`` is computed in float32.  asp converted every
scalar argument to a Python number, so a NumPy scalar silently got the weak rules:
an elementwise result of the wrong dtype, a stencil's ``r * r`` in double (found while
timing float32 kernels).  Now a NumPy scalar keeps its type through the front ends, the
signature, the C parameter (its own C type) and the guards (np.float64, a float
subclass, no longer passes for a Python float on the hot path).

Grids and arrays are above the parallel thresholds (the suite sets them to 0), 2 threads.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from asp.errors import AspFallbackWarning
from specializers.elementwise import elementwise
from specializers.reduction import reduction
from specializers.stencil import StencilKernel
from tests.test_stencil_kernels import check_every_variant

SCALARS = [0.1, np.float64(0.1), np.float32(0.1), 3, np.int16(3), np.uint8(200),
           np.int64(-7)]


@elementwise
def affine(x, a):
    return a * x + a * a


@reduction("+")
def total(x, a):
    return a * x + a * a


class Scaled(StencilKernel):
    def kernel(self, u, r, out):
        for x in out.interior_points():
            s = r * u[x]
            for y in u.neighbors(x, 1):
                s += r * r * u[y]
            out[x] = s


def _name(a) -> str:
    return f"{type(a).__name__}({a})"


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16])
@pytest.mark.parametrize("a", SCALARS, ids=_name)
def test_elementwise_types_a_numpy_scalar_as_numpy_does(a, dtype, rng):
    x = (rng.random(5000) * 50).astype(dtype)
    with np.errstate(all="ignore"):
        want = np.array([a * v + a * a for v in x])
    got = affine(x, a)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("a", [0.1, np.float64(0.1), np.float32(0.1), np.int16(3)], ids=_name)
def test_reduction_types_a_numpy_scalar_as_numpy_does(a, rng):
    x = rng.random(50_000).astype(np.float32)
    terms = np.array([a * v + a * a for v in x])
    got = total(x, a)
    assert np.asarray(got).dtype == terms.dtype
    np.testing.assert_allclose(got, np.sum(terms), rtol=1e-5 if terms.dtype == np.float32
                               else 1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("r", [0.1, np.float64(0.1), np.float32(0.1), np.int16(3)], ids=_name)
def test_every_stencil_variant_types_a_numpy_scalar_as_numpy_does(r, dtype, rng):
    u = rng.random((260, 200)).astype(dtype)
    k = Scaled()
    check_every_variant(k, (u, r, np.zeros_like(u)), rtol=0)
    if dtype is np.float64 and type(r) is not np.float32:
        return  # the blocked code computes in double for each: iterated for float32's value
    loop = u
    for _ in range(5):
        loop = k(loop, r)
    np.testing.assert_array_equal(k.iterate(u, r, steps=5), loop)


def test_the_hot_path_tells_a_python_float_from_a_numpy_float64(rng):
    """``u * r`` on a float32 grid: a Python float multiplies in float32, np.float64 in
    double (then rounds to the float32 output): different bits for most points.  Once the
    hot entry of the Python float's specialization is installed, a np.float64 must not be
    served by it (it is a float subclass)."""

    class Mul(StencilKernel):
        def kernel(self, u, r, out):
            for x in out.interior_points():
                out[x] = u[x] * r

    u = rng.random((300, 300)).astype(np.float32)
    k, ref = Mul(), Mul(pure_python=True)
    wants = {}
    for r in (0.1, np.float64(0.1), np.float32(0.1)):
        w = np.zeros_like(u)
        ref.kernel(u, r, w)
        wants[type(r)] = w
    assert not np.array_equal(wants[float], wants[np.float64])
    out = np.zeros_like(u)
    for _ in range(40):  # tuned, then served by the hot entry
        k.kernel(u, 0.1, out)
    for _ in range(3):
        for r in (np.float64(0.1), 0.1, np.float32(0.1)):
            out = np.zeros_like(u)
            k.kernel(u, r, out)
            np.testing.assert_array_equal(out, wants[type(r)], err_msg=type(r).__name__)


@pytest.mark.parametrize("big", [2**70, -(2**63) - 1, np.uint64(2**63), np.uint64(2**64 - 1)])
def test_an_integer_beyond_int64_runs_as_python_with_one_warning(big, rng, monkeypatch):
    """An int the compiled code cannot take (it passes integers as int64) is a value
    Python and NumPy compute with: that call runs as Python, with one warning naming the
    argument (one per kernel: each here is new), and gives Python's result (before
    2026-12-07: ValueError); later calls with ints that fit are compiled (the signature is
    not given up)."""
    x, u = rng.random(100), rng.random((20, 20))
    words = "argument '{}' = .* is beyond the int64"
    f, t = elementwise(affine.py_func), reduction("+")(total.py_func)
    K = type("Big", (Scaled,), {})  # kernels are compiled, and warn, per class
    with np.errstate(over="ignore"):  # a uint64 squared wraps, in NumPy too
        with pytest.warns(AspFallbackWarning, match=words.format("a")):
            got = f(x, big)
        np.testing.assert_array_equal(got, [affine.py_func(v, big) for v in x])
        with pytest.warns(AspFallbackWarning, match=words.format("a")):
            assert t(x, big) == np.sum([total.py_func(v, big) for v in x])
        k = K()
        with pytest.warns(AspFallbackWarning, match=words.format("r")):
            got = k(u, big)
        with monkeypatch.context() as m:
            m.setenv("ASP_DISABLE_JIT", "1")  # the kernel's Python, as written
            want = K()(u, big)
    np.testing.assert_array_equal(got, want)
    with warnings.catch_warnings():  # ints that fit: compiled, never a warning
        warnings.simplefilter("error", AspFallbackWarning)
        for _ in range(3):
            np.testing.assert_array_equal(f(x, 3), 3 * x + 9)
            assert t(x, 3) == pytest.approx(np.sum(3 * x + 9), rel=1e-12)
            k(u, 2)
    b = np.zeros_like(u)
    for jit, args in ((f.jit, (x, 3, None)), (t.jit, (x, 3, None)),
                      (k.jit_for(u, 2, b), (u, 2, b))):
        spec = jit.specialization(*args)
        assert spec.variant_names and not spec.check_failures


@pytest.mark.parametrize("bad, error, words", [
    (np.float16(0.5), TypeError, "float16"),
    (np.complex128(1j), TypeError, "complex128"),
])
def test_a_numpy_scalar_without_a_c_type_is_refused_by_name(bad, error, words, rng):
    x = rng.random(100)
    with pytest.raises(error, match=words) as info:
        affine(x, bad)
    assert "'a'" in str(info.value)
    with pytest.raises(error, match=words) as info:
        Scaled()(rng.random((20, 20)), bad)
    assert "'r'" in str(info.value)


def test_iterate_with_an_integer_beyond_int64_steps_as_python(rng):
    """``K.iterate`` with such an argument: each step runs as Python (warned), and the
    result is the loop's."""
    u = rng.random((12, 12))
    K = type("BigSteps", (Scaled,), {})
    with pytest.warns(AspFallbackWarning, match="argument 'r' = .* is beyond the int64"):
        got = K().iterate(u, 2**70, steps=3)
    want = u
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AspFallbackWarning)
        for _ in range(3):
            want = K()(want, 2**70)
    np.testing.assert_array_equal(got, want)
