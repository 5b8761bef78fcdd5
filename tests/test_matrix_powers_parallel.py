"""Every matrix-powers variant and CG kernel on its OpenMP branch, against SciPy.

The kernels run on one thread below ``ASP_PAR_MIN`` rows, which honours
``ASP_PARALLEL_THRESHOLD`` (the suite sets 0: every test file runs the parallel
branches; read here from the rendered C, so a change cannot silently move these
tests below it).  Here every matrix also has more rows than the shipped
threshold, so the variants have many PA1 blocks and window chunks, and the
process's OpenMP runtime must give a team of at least two threads, so the
parallel code -- blocks, chunks, seams and reductions shared between threads --
is what is checked.  ``ASP_STRICT=1``: a fallback would raise, so every call below
ran natively.
"""
from __future__ import annotations

import ctypes
import math
import re

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from specializers.matrix_powers import MatrixPowers, ca_cg, cg, kernels, partition
from specializers.matrix_powers.cg_kernels import SStepKernel
from tests.test_matrix_powers import assert_close, poisson2d, reference


def par_min() -> int:
    """``ASP_PAR_MIN`` as the kernels are rendered now (the suite's threshold)."""
    ctx = kernels.c_context(np.dtype(np.float64), np.dtype(np.int32), 5)
    text = kernels.matrix_preamble("test", ctx)
    gram = kernels.render_def("sstep.c.mako", "gram", kernel="test", m=3,
                              pairs=[(0, 0)], par_min=ctx["par_min"])
    assert f"if(n > {ctx['par_min']})" in gram
    return int(re.search(r"#define ASP_PAR_MIN (\d+)", text).group(1))


@pytest.fixture(autouse=True)
def strict(monkeypatch):
    monkeypatch.setenv("ASP_STRICT", "1")


def openmp_threads() -> int:
    """The team size a parallel region of this process gets (libgomp's max threads)."""
    return int(ctypes.CDLL("libgomp.so.1").omp_get_max_threads())


@pytest.fixture(scope="module")
def n_rows() -> int:
    assert openmp_threads() >= 2, "run the tests with OMP_NUM_THREADS >= 2"
    assert par_min() < kernels.PAR_MIN
    return kernels.PAR_MIN + 757  # above either threshold, and not a round number


def big_poisson(n_rows: int) -> sp.csr_matrix:
    return poisson2d(math.isqrt(n_rows) + 1)  # 5 diagonals: the diagonal-run code


def big_banded_random(n_rows: int) -> sp.csr_matrix:
    """Irregular entries within a band of 40: the CSR code (no diagonal runs)."""
    rng = np.random.default_rng(11)
    rows = np.repeat(np.arange(n_rows), 6)
    cols = np.clip(rows + rng.integers(-40, 41, rows.size), 0, n_rows - 1)
    A = sp.csr_matrix((rng.uniform(-1, 1, rows.size), (rows, cols)), shape=(n_rows, n_rows))
    A = (A + sp.diags(np.full(n_rows, 4.0))).tocsr()
    A.sum_duplicates()
    return A


MATRICES = {"poisson2d": big_poisson, "banded_random": big_banded_random}


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_every_variant_on_its_parallel_branch(name, n_rows, rng):
    A = MATRICES[name](n_rows)
    n = A.shape[0]
    assert n > par_min()
    k = 4
    shifts, scales = rng.uniform(0, 4, k), rng.uniform(0.2, 0.5, k)
    mp = MatrixPowers(A, k, basis="newton", shifts=shifts, scales=scales, reorder=False)
    x = rng.standard_normal(n)
    ref = reference(A, x, k, shifts, scales)
    for v in [*mp.variants, "pa1-300", "window-7"]:
        if v.startswith("pa1") and 2 * int(v[4:]) <= n:  # (the largest sizes: one block)
            assert len(mp.plan(v, k).blk) - 1 >= 2, v  # blocks shared by the team
        if v.startswith("window"):
            assert len(mp.plan(v, k)) - 1 >= 2, v  # chunks, and seams between them
        V = np.zeros((k + 1, n))
        V[0] = x
        mp.powers(V, variant=v)
        assert_close(V, ref, 1e-12)


def test_float32_variants_on_their_parallel_branch(n_rows, rng):
    A = big_poisson(n_rows).astype(np.float32)
    n = A.shape[0]
    mp = MatrixPowers(A, 3)
    x = rng.standard_normal(n).astype(np.float32)
    ref = reference(A.astype(np.float64), x.astype(np.float64), 3)
    for v in [*mp.variants, "pa1-300", "window-7"]:
        V = np.zeros((4, n), np.float32)
        V[0] = x
        assert_close(mp.powers(V, variant=v), ref, 1e-5)


@pytest.mark.parametrize("variant", ["window-7", "window-256", "naive", "pa1-300"])
def test_two_bases_and_gram_on_their_parallel_branch(variant, n_rows, rng):
    """window2 (both bases in one sweep), the others one after the other, and the
    Gram kernel, with G checked against dot products of SciPy's own bases."""
    A = big_poisson(n_rows)
    n = A.shape[0]
    s = 3
    shifts, scales = np.array([1.0, 4.0, 7.0]), np.full(s, 0.3)
    mp = MatrixPowers(A, s, basis="newton", shifts=shifts, scales=scales, variant=variant)
    p, r = rng.standard_normal((2, n))
    Y = np.zeros((2 * s + 1, n))
    Y[0], Y[s + 1] = p, r
    G = np.full((2 * s + 1, 2 * s + 1), np.nan)
    mp.sstep_basis(Y, G)
    P, R = reference(A, p, s, shifts, scales), reference(A, r, s - 1, shifts, scales)
    assert_close(Y[:s + 1], P, 1e-12)
    assert_close(Y[s + 1:], R, 1e-12)
    basis = np.vstack([P, R])
    oracle = np.array([[math.fsum(a * b) for b in basis] for a in basis])
    np.testing.assert_allclose(G, oracle, rtol=1e-10, atol=1e-12 * np.abs(oracle).max())


def test_recover_kernel_on_its_parallel_branch(n_rows, rng):
    """x += Y^T c0, Y[ir] = Y^T c1, Y[ip] = Y^T c2 and r.r, against numpy."""
    n, m = n_rows, 7
    Y = rng.standard_normal((m, n))
    x = rng.standard_normal(n)
    coef = rng.standard_normal((3, m))
    want = coef @ Y
    x_want = x + want[0]
    out = np.zeros(1)
    rr = kernels.jit(SStepKernel, "recover")(Y, x, coef, out, 0, 4)
    assert rr == out[0]
    np.testing.assert_allclose(x, x_want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Y[4], want[1], rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(Y[0], want[2], rtol=1e-12, atol=1e-12)
    assert rr == pytest.approx(math.fsum(want[1] ** 2), rel=1e-12)


@pytest.mark.parametrize("solver", ["cg", "ca_cg"])
@pytest.mark.parametrize("name", sorted(MATRICES))
def test_solvers_on_their_parallel_branch(solver, name, n_rows, rng):
    """cg's fused SpMV+dot, update+dot, direction and residual kernels, and ca_cg's
    matrix powers, Gram and recovery kernels, all above the threshold."""
    A = MATRICES[name](n_rows)
    if name == "banded_random":  # symmetric positive definite: diagonally dominant
        A = ((A + A.T) / 2 + sp.diags(np.full(A.shape[0], 8.0))).tocsr()
    n = A.shape[0]
    assert partition.bandwidths(A.indptr, A.indices, n)[0] > 0
    b = rng.standard_normal(n)
    rtol = 1e-8
    x_ref, info_ref = spla.cg(A, b, rtol=rtol, maxiter=5000)
    assert info_ref == 0
    x, info = (cg if solver == "cg" else ca_cg)(A, b, rtol=rtol, maxiter=5000)
    assert info == 0
    assert np.linalg.norm(b - A @ x) <= rtol * np.linalg.norm(b) * 1.0001
    np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e3 * rtol * np.abs(x_ref).max())
