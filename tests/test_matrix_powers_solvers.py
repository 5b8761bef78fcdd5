"""cg and ca_cg against scipy.sparse.linalg.cg: same tolerance, same solution, no hangs."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from asp.errors import AspFallbackWarning
from specializers.matrix_powers import ca_cg, cg
from specializers.matrix_powers.solvers import chebyshev_leja_shifts
from tests.test_matrix_powers import poisson2d, poisson3d


def random_spd(n, seed):
    B = sp.random(n, n, density=0.03, random_state=seed, format="csr")
    return (B @ B.T + sp.identity(n) * 0.5).tocsr()


SPD = {
    "poisson2d": lambda: poisson2d(30),
    "poisson3d": lambda: poisson3d(9),
    "random_spd": lambda: random_spd(300, 4),
}


def relres(A, x, b):
    return np.linalg.norm(b - A @ x) / np.linalg.norm(b)


@pytest.mark.parametrize("solver", ["cg", "ca_cg"])
@pytest.mark.parametrize("name", sorted(SPD))
def test_reaches_scipy_tolerance_and_solution(name, solver, rng):
    A = SPD[name]()
    b = rng.standard_normal(A.shape[0])
    rtol = 1e-10
    x_ref, info_ref = spla.cg(A, b, rtol=rtol, maxiter=5000)
    assert info_ref == 0
    fn = cg if solver == "cg" else ca_cg
    x, info = fn(A, b, rtol=rtol, maxiter=5000)
    assert info == 0
    assert relres(A, x, b) <= rtol * 1.0001
    # both solutions are within rtol of the same x, up to the condition number
    cond_bound = 1e4 * rtol
    assert np.linalg.norm(x - x_ref) / np.linalg.norm(x_ref) <= cond_bound


@pytest.mark.parametrize("s", [1, 2, 3, 5, 8])
def test_newton_basis_stable_up_to_s8(s, rng):
    A = poisson2d(32)
    b = rng.standard_normal(A.shape[0])
    iters = {"cg": 0, "ca": 0}

    def count(key):
        def cb(xk):
            iters[key] += 1
        return cb

    _, info_cg = cg(A, b, rtol=1e-10, callback=count("cg"))
    x, info = ca_cg(A, b, s=s, rtol=1e-10, callback=count("ca"))
    assert info_cg == 0 and info == 0
    assert relres(A, x, b) <= 1e-10
    assert iters["ca"] <= 1.3 * iters["cg"] + s  # no loss of convergence from the basis


def test_monomial_basis_small_s(rng):
    A = poisson2d(20)
    b = rng.standard_normal(A.shape[0])
    x, info = ca_cg(A, b, s=2, rtol=1e-8, basis="monomial")
    assert info == 0 and relres(A, x, b) <= 1e-8


def test_x0_atol_tol_alias_and_callback(rng):
    A = poisson2d(15)
    b = rng.standard_normal(A.shape[0])
    x_true = spla.spsolve(A.tocsc(), b)
    for fn in (cg, ca_cg):
        x, info = fn(A, b, x0=x_true.copy(), rtol=1e-6)
        assert info == 0 and np.allclose(x, x_true)  # already converged: no iteration
        x, info = fn(A, b, tol=1e-9)
        assert info == 0 and relres(A, x, b) <= 1e-9
        x, info = fn(A, b, rtol=0.0, atol=1e-7 * np.linalg.norm(b))
        assert info == 0 and relres(A, x, b) <= 1e-7
        seen: list = []
        x, info = fn(A, b, rtol=1e-8, maxiter=7, callback=seen.append)
        assert info == 7 and len(seen) == 7


def scipy_like(got, want):
    """Same info as SciPy, and the same solution (to SciPy's accuracy)."""
    (x, info), (x_ref, info_ref) = got, want
    assert info == info_ref, (info, info_ref)
    assert x.shape == x_ref.shape and x.dtype == np.float64
    np.testing.assert_allclose(x, x_ref, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("fn", [cg, ca_cg])
def test_degenerate_systems_like_scipy(fn):
    A = poisson2d(6)
    n = A.shape[0]
    ones = np.ones(n)
    cases = {
        "0x0": (sp.csr_matrix((0, 0)), np.zeros(0), None),
        "0x0 with x0": (sp.csr_matrix((0, 0)), np.zeros(0), np.zeros(0)),
        "1x1": (sp.csr_matrix([[4.0]]), np.array([2.0]), None),
        "1x1 dense": (np.array([[0.5]]), np.array([-3.0]), np.array([7.0])),
        "b = 0": (A, np.zeros(n), None),
        "b = 0, x0 != 0": (A, np.zeros(n), ones),  # SciPy: 0 is the solution, whatever x0
        "x0 is the solution": (A, A @ ones, ones),
    }
    for name, (M, b, x0) in cases.items():
        got = fn(M, b, None if x0 is None else x0.copy(), rtol=1e-10)
        want = spla.cg(M, b, None if x0 is None else x0.copy(), rtol=1e-10)
        try:
            scipy_like(got, want)
        except AssertionError as exc:
            raise AssertionError(f"{name}: {exc}") from None


@pytest.mark.parametrize("fn", [cg, ca_cg])
def test_non_spd_does_not_hang(fn, rng):
    n = 200
    nonsym = (sp.random(n, n, density=0.05, random_state=7) + sp.identity(n)).tocsr()
    indefinite = sp.diags(np.linspace(-1, 1, n) + 0.001, format="csr")
    for A in (nonsym, indefinite, -poisson2d(14)):
        b = rng.standard_normal(A.shape[0])
        x, info = fn(A, b, rtol=1e-12, maxiter=300)
        assert info != 0 or relres(A, x, b) <= 1e-12
        assert info <= 300


def test_preconditioner(rng):
    A = random_spd(200, 9)
    b = rng.standard_normal(200)
    Minv = sp.diags(1.0 / A.diagonal())
    x, info = cg(A, b, rtol=1e-10, M=Minv)
    assert info == 0 and relres(A, x, b) <= 1e-10
    with pytest.warns(AspFallbackWarning, match="preconditioner"):
        x, info = ca_cg(A, b, rtol=1e-10, M=Minv)
    assert info == 0 and relres(A, x, b) <= 1e-10


def test_leja_shifts_cover_interval():
    pts = chebyshev_leja_shifts(1.0, 9.0, 6)
    assert pts.size == 6 and np.all((pts > 1) & (pts < 9))
    assert abs(pts[0]) == np.max(np.abs(pts))
    assert len(set(np.round(pts, 12))) == 6


def test_bad_solver_input(rng):
    A = poisson2d(5)
    b = rng.standard_normal(25)
    with pytest.raises(ValueError, match="b must have shape"):
        cg(A, b[:-1])
    with pytest.raises(ValueError, match="x0 must have shape"):
        ca_cg(A, b, x0=np.zeros(3))
    with pytest.raises(ValueError, match="s must be >= 1"):
        ca_cg(A, b, s=0)
    with pytest.raises(TypeError, match="s must be an integer"):
        ca_cg(A, b, s=2.5)
    bad = b.copy()
    bad[3] = np.nan
    with pytest.raises(ValueError, match="b contains NaN"):
        cg(A, bad)
    with pytest.raises(ValueError, match="x0 contains NaN"):
        ca_cg(A, b, x0=bad)
    with pytest.raises(ValueError, match="A must be square"):
        cg(sp.random(4, 5, density=0.5, format="csr"), np.ones(4))
    with pytest.raises(ValueError, match="rtol"):
        cg(A, b, rtol=-1.0)
    with pytest.raises(ValueError, match="maxiter"):
        ca_cg(A, b, maxiter=0)
    with pytest.raises(ValueError, match="basis"):
        ca_cg(A, b, basis="chebyshev")


def test_without_native_code_everything_runs_in_scipy(rng, monkeypatch):
    """ASP_DISABLE_JIT=1: the same answers from the SciPy/numpy path."""
    from specializers.matrix_powers import MatrixPowers

    monkeypatch.setenv("ASP_DISABLE_JIT", "1")
    A = poisson2d(12)
    b = rng.standard_normal(A.shape[0])
    V = MatrixPowers(A, 3, basis="newton", shifts=[1.0, 2.0, 3.0])(b)
    np.testing.assert_allclose(V[2], (A @ (A @ b - b)) - 2 * (A @ b - b), rtol=1e-12)
    for fn in (cg, ca_cg):
        x, info = fn(A, b, rtol=1e-9)
        assert info == 0 and relres(A, x, b) <= 1e-9


def test_compile_failure_falls_back_with_one_warning(rng, monkeypatch, fresh_cache):
    from specializers.matrix_powers import MatrixPowers, kernels

    monkeypatch.setenv("ASP_CC", "/nonexistent/cc")
    kernels.forget()
    try:
        A = poisson2d(6)
        mp = MatrixPowers(A, 2)
        x = rng.standard_normal(36)
        with pytest.warns(AspFallbackWarning, match="running it as plain Python") as record:
            np.testing.assert_allclose(mp(x)[2], A @ (A @ x), rtol=1e-12)
            y, info = ca_cg(A, x, rtol=1e-10)
        assert len(record) == 1  # one warning for every kernel of the package
        assert info == 0 and relres(A, y, x) <= 1e-10
    finally:
        kernels.forget()
