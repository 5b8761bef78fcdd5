"""Contiguous but unaligned arrays (as Dask and pickle protocol 5 deliver them) run natively.

``np.ascontiguousarray`` keeps such an array as it is, and every guard rejects
it; before ``asp.runtime.as_native`` they silently fell back to Python (minutes
for a large stencil).  Fallback warnings are errors in this suite, so each test
also proves the call stayed native.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from asp.runtime import as_native, release_memory
from specializers.elementwise import elementwise
from specializers.gmm import GMM
from specializers.matrix_powers import MatrixPowers, cg
from tests.test_matrix_powers import poisson2d
from tests.test_stencil_kernels import Laplacian


def unaligned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` that starts one byte past an aligned address."""
    buf = np.empty(a.nbytes + 1, np.uint8)
    view = buf[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    assert view.flags.c_contiguous and not view.flags.aligned
    return view


@elementwise
def poly(x):
    return 3.0 * x * x - 2.0 * x + 1.0


def test_as_native_copies_only_when_needed(rng):
    a = rng.random(17)
    assert as_native(a) is a
    u = unaligned(a)
    b = as_native(u)
    assert b is not u and b.flags.aligned and b.flags.c_contiguous
    np.testing.assert_array_equal(b, a)
    c = as_native(a, np.float32)
    assert c.dtype == np.float32 and c.flags.aligned


def test_large_copies_come_from_the_reusing_allocator(rng):
    # A kernel called again and again on an unaligned or strided input (a Dask block
    # at an odd offset) copies it every call: into warm pages kept for reuse, as
    # outputs are, not fresh ones the system must zero.
    a = rng.random((300, 500))  # 1.2 MB: reused
    for u in (unaligned(a), np.asfortranarray(a), a.T.copy().T):
        release_memory()
        b = as_native(u)
        assert b.flags.aligned and b.flags.c_contiguous
        np.testing.assert_array_equal(b, a)
        del b
        assert release_memory() >= a.nbytes  # the copy's block went back to the cache
    small = unaligned(rng.random(1000))
    release_memory()
    b = as_native(small)
    np.testing.assert_array_equal(b, small)
    del b
    assert release_memory() == 0  # small copies are plain NumPy arrays


def test_elementwise_unaligned_input_and_output(rng):
    x = rng.random(1000)
    want = poly(x)
    np.testing.assert_array_equal(poly(unaligned(x)), want)
    out = unaligned(np.zeros(1000))
    assert poly(x, out=out) is out
    np.testing.assert_array_equal(out, want)


def test_stencil_unaligned_input_and_output(rng):
    a = rng.random((40, 50))
    want = Laplacian()(a)
    np.testing.assert_array_equal(Laplacian()(unaligned(a)), want)
    out = unaligned(np.zeros((40, 50)))
    Laplacian().kernel(unaligned(a), out)
    np.testing.assert_array_equal(out, want)


def test_gmm_unaligned_data(rng):
    X = np.concatenate([rng.normal(size=(200, 2)), 8.0 + rng.normal(size=(200, 2))])
    means = np.array([[0.5, 0.5], [7.0, 7.0]])
    a = GMM(2, 2, means=means, cvtype="full")
    b = GMM(2, 2, means=means, cvtype="full")
    ll_a = a.train(X, max_iters=5, min_iters=5)
    ll_b = b.train(unaligned(X), max_iters=5, min_iters=5)
    # The tuner may time different parallel variants on the two runs: equal to rounding.
    assert ll_a == pytest.approx(ll_b, rel=1e-12)
    np.testing.assert_allclose(a.components.means, b.components.means, rtol=1e-12)


def test_matrix_powers_and_cg_unaligned(rng):
    A = poisson2d(20)
    x = rng.random(A.shape[0])
    mp = MatrixPowers(A, k=3)
    np.testing.assert_array_equal(mp(unaligned(x)), mp(x))
    A2 = sp.csr_matrix((unaligned(A.data), unaligned(A.indices), unaligned(A.indptr)),
                       shape=A.shape)
    np.testing.assert_array_equal(MatrixPowers(A2, k=3)(x), mp(x))
    b = rng.random(A.shape[0])
    np.testing.assert_array_equal(cg(A, unaligned(b), tol=1e-10)[0], cg(A, b, tol=1e-10)[0])
