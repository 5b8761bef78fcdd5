"""Big-endian arrays (what FITS files and some HDF5 datasets hold) are computed on native
copies, as NumPy's ufuncs compute them: the same bits as the native arrays' results, an
output in the caller's array written back, and a clear error where the dtype is not one
a kernel takes whatever its byte order.  They were refused before ("has dtype >f8;
expected a real numeric dtype"), or, in the blocked ``iterate``, fell back."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from specializers.elementwise import elementwise
from specializers.gmm import GaussianMixture
from specializers.matrix_powers import MatrixPowers, cg
from specializers.reduction import reduction
from specializers.stencil import StencilGrid, StencilKernel

RNG = np.random.default_rng(20261206)


def big(a: np.ndarray) -> np.ndarray:
    return a.astype(a.dtype.newbyteorder(">"))


class Heat(StencilKernel):
    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * lap


class Smooth(StencilKernel):  # reads a second grid
    def kernel(self, u, w, out):
        for x in out.interior_points():
            acc = w[x] * u[x]
            for y in u.neighbors(x, 1):
                acc += u[y]
            out[x] = acc * 0.2


@elementwise
def axpy(a, x, y):
    return a * x + y


@reduction("+")
def energy(u, v):
    return u * u + 0.5 * v * v


@pytest.mark.parametrize("dtype", [np.float64, np.int32])
def test_a_stencil_step_and_its_output(dtype):
    u = (RNG.random((70, 90)) * 100).astype(dtype)
    r = 1 if dtype == np.int32 else 0.1
    k = Heat()
    want = k(u, r)
    got = k(big(u), r)
    assert got.dtype == big(u).dtype  # the output is like the input grid, as before
    np.testing.assert_array_equal(got, want)
    out = np.zeros(u.shape, big(u).dtype)  # K.kernel into the caller's big-endian output
    k.kernel(big(u), r, out)
    np.testing.assert_array_equal(out, want)
    w = RNG.random(u.shape).astype(dtype)
    s = Smooth()
    np.testing.assert_array_equal(s(big(u), w), s(u, w))
    np.testing.assert_array_equal(s(u, big(w)), s(u, w))
    np.testing.assert_array_equal(s(StencilGrid.from_array(big(u)), w), s(u, w))


def test_iterate_blocked_and_step_by_step():
    u = RNG.random((130, 150))
    k = Heat()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback: the blocked entry took the copy
        got = k.iterate(big(u), 0.1, steps=37)
    assert got.dtype == big(u).dtype
    want = u
    for _ in range(37):
        want = k(want, 0.1)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(k.iterate(big(u), 0.1, steps=37), k.iterate(u, 0.1, steps=37))


def test_elementwise_inputs_and_out():
    x, y = RNG.random(50_000), RNG.random(50_000)
    want = axpy(2.5, x, y)
    got = axpy(2.5, big(x), y)
    assert got.dtype == np.float64  # a new output is native, as NumPy's ufuncs give
    np.testing.assert_array_equal(got, want)
    out = np.empty(x.shape, ">f8")
    assert axpy(2.5, x, big(y), out=out) is out
    np.testing.assert_array_equal(out, want)
    inplace = big(x)
    assert axpy(2.5, inplace, y, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, want)
    f32 = axpy(np.float32(2.5), big(x.astype(np.float32)), y.astype(np.float32))
    assert f32.dtype == np.float32
    with pytest.raises(TypeError, match="argument 'x' has dtype >f2"):
        axpy(2.5, x.astype(">f2"), y)
    with pytest.raises(TypeError, match="argument 'out' has dtype >c16"):
        axpy(2.5, x, y, out=np.empty(x.shape, ">c16"))


def test_reductions_exact_for_integers():
    u, v = RNG.random(100_000), RNG.random(100_000)
    assert energy(big(u), big(v)) == energy(u, v)
    i, j = RNG.integers(-300, 300, 100_000, dtype=np.int16), RNG.integers(0, 9, 100_000)
    assert energy(big(i), j) == energy(i, j) == np.sum(i * i + 0.5 * j * j)


def test_matrix_powers_and_cg():
    A = sp.diags([-1.0, 2.5, -1.0], [-1, 0, 1], shape=(500, 500), format="csr")
    Abig = sp.csr_matrix((big(A.data), A.indices, A.indptr), shape=A.shape)
    x = RNG.random(500)
    want = MatrixPowers(A, 4)(x)
    np.testing.assert_array_equal(MatrixPowers(A, 4)(big(x)), want)
    np.testing.assert_array_equal(MatrixPowers(Abig, 4)(x), want)
    np.testing.assert_array_equal(MatrixPowers(big(A.toarray()), 4)(x), want)
    got, info = cg(Abig, big(A @ x), rtol=1e-12)
    assert info == 0
    np.testing.assert_allclose(got, x, rtol=1e-9)


def test_gmm_estimator():
    X = np.concatenate([RNG.normal(size=(500, 3)), RNG.normal(size=(500, 3)) + 6])
    a = GaussianMixture(2, random_state=0).fit(X)
    b = GaussianMixture(2, random_state=0).fit(big(X))
    np.testing.assert_array_equal(a.means_, b.means_)
    np.testing.assert_array_equal(a.score_samples(X), b.score_samples(big(X)))
