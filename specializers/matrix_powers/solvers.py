"""Conjugate gradients on fused kernels (``cg``) and s-step CG on matrix powers (``ca_cg``).

Both follow today's ``scipy.sparse.linalg.cg``: ``(x, info)`` with ``info == 0``
on convergence (``||b - A x|| <= max(rtol * ||b||, atol)``), ``info > 0`` the
number of iterations done when ``maxiter`` stopped it, ``info < 0`` on a
breakdown (a zero or non-finite curvature ``p.Ap``, which a matrix that is not
symmetric positive definite can cause); ``callback(xk)`` after each iteration;
``tol=`` is accepted as the older name of ``rtol``.  As in SciPy, ``b = 0``
(a 0x0 system included) returns ``(zeros, 0)`` whatever ``x0``.  Every kernel
(:mod:`specializers.matrix_powers.cg_kernels`) runs through asp's runtime: when it
cannot run native code, its NumPy/SciPy reference runs the same recurrence, after
one :class:`asp.errors.AspFallbackWarning` for all the kernels of the package.

``ca_cg`` runs s steps of CG per outer iteration from the bases of p (s
products) and r (s-1 products), built in one sweep of the matrix-powers
kernel when its window variant wins, and one Gram matrix: the matrix is
streamed once per s steps instead of s times.  The
basis is the Newton basis with Chebyshev shifts, Leja-ordered, over the
spectrum interval estimated by a few Lanczos steps, and scaled by the
interval's capacity, which keeps it well conditioned up to s = 8 and beyond.
When the recurrence says "converged", the true residual is computed and, if
it disagrees, replaces the recursive one (residual replacement).  A
preconditioner ``M`` is not supported by ``ca_cg``: it then runs ``cg`` with
``M`` (preconditioned CG) and warns once with :class:`asp.errors.AspFallbackWarning`.
"""
from __future__ import annotations

import math
import warnings

import numpy as np

from asp.errors import AspFallbackWarning
from asp.runtime import as_native
from specializers.matrix_powers.cg_kernels import CGKernel, SStepKernel
from specializers.matrix_powers.kernels import Matrix, as_csr, check_finite, jit
from specializers.matrix_powers.powers import MatrixPowers

__all__ = ["ca_cg", "cg", "chebyshev_leja_shifts", "lanczos_interval"]


class _Operator:
    """A float64 CSR matrix and the fused kernels of one solve (each a JitKernel that
    runs its NumPy reference when it cannot run native code)."""

    def __init__(self, A, name: str = "A"):
        M = as_csr(A, name)
        if M.dtype != np.float64:
            M = as_csr(M.astype(np.float64), name)
        self.A = M
        self.n = M.shape[0]
        self.matrix = Matrix(M)
        self.out = np.zeros(1)
        self._spmv, self._residual, self._update, self._direction = (
            jit(CGKernel, op) for op in ("spmv_dot", "residual", "update", "direction"))
        self._recover = jit(SStepKernel, "recover")

    def spmv_dot(self, p: np.ndarray, q: np.ndarray) -> float:
        """q = A p; returns p.q"""
        return float(self._spmv(self.matrix, p, q, self.out))

    def residual(self, x: np.ndarray, b: np.ndarray, r: np.ndarray) -> float:
        """r = b - A x; returns r.r"""
        return float(self._residual(self.matrix, x, b, r, self.out))

    def update(self, x, r, p, q, alpha: float) -> float:
        """x += alpha p; r -= alpha q; returns r.r"""
        return float(self._update(x, r, p, q, self.out, float(alpha)))

    def direction(self, p, r, beta: float) -> None:
        """p = r + beta p"""
        self._direction(p, r, float(beta))

    def recover(self, Y, x, coef, ip: int, ir: int) -> float:
        """x += Y^T c0; r, p = Y^T c1, Y^T c2 into Y[ir], Y[ip]; returns r.r."""
        return float(self._recover(Y, x, coef, self.out, ip, ir))


def _setup(A, b, x0, rtol, atol, maxiter, tol, callback):
    if tol is not None:
        rtol = tol
    op = _Operator(A)
    n = op.n
    b = np.asarray(b)
    if b.ndim == 2 and 1 in b.shape:
        b = b.ravel()
    if b.ndim != 1 or b.shape[0] != n:
        raise ValueError(f"b must have shape ({n},) to match A {op.A.shape}, got {b.shape}")
    if not np.issubdtype(b.dtype, np.number) or np.iscomplexobj(b):
        raise TypeError(f"b has dtype {b.dtype}; expected real floating point")
    b = as_native(b, np.float64)
    check_finite(b, "b")
    if x0 is None:
        x = np.zeros(n)
    else:
        x0 = np.asarray(x0)
        if x0.ndim == 2 and 1 in x0.shape:
            x0 = x0.ravel()
        if x0.shape != (n,):
            raise ValueError(f"x0 must have shape ({n},), got {x0.shape}")
        x = np.array(x0, dtype=np.float64, order="C")
        check_finite(x, "x0")
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not isinstance(v, int | float | np.floating | np.integer) or not v >= 0 \
                or not math.isfinite(v):
            raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
    if maxiter is None:
        maxiter = max(10 * n, 1)  # SciPy's default; a 0x0 system returns before using it
    if isinstance(maxiter, bool) or not isinstance(maxiter, int | np.integer) or maxiter < 1:
        raise ValueError(f"maxiter must be a positive integer, got {maxiter!r}")
    if callback is not None and not callable(callback):
        raise TypeError("callback must be callable")
    bnorm = float(np.linalg.norm(b))
    target = max(float(rtol) * bnorm, float(atol))
    return op, b, x, target, int(maxiter)


def cg(A, b, x0=None, *, rtol=1e-5, atol=0.0, maxiter=None, M=None, callback=None,
       tol=None):
    """Conjugate gradients with fused C/OpenMP kernels (SpMV+dot, axpys+dot, direction)."""
    op, b, x, target, maxiter = _setup(A, b, x0, rtol, atol, maxiter, tol, callback)
    if not b.any():  # as SciPy: b = 0 (or a 0x0 system) has the solution 0, whatever x0
        return np.zeros(op.n), 0
    n = op.n
    r = np.empty(n)
    rr = op.residual(x, b, r)
    if math.sqrt(rr) <= target:
        return x, 0
    precond = None
    if M is not None:
        from scipy.sparse.linalg import aslinearoperator

        precond = aslinearoperator(M)
        if precond.shape != (n, n):
            raise ValueError(f"M must have shape ({n}, {n}), got {precond.shape}")
    z = r if precond is None else as_native(precond.matvec(r), np.float64)
    rho = rr if precond is None else float(r @ z)
    p = z.copy()
    q = np.empty(n)
    for it in range(1, maxiter + 1):
        pq = op.spmv_dot(p, q)
        if pq == 0.0 or not math.isfinite(pq):
            return x, -1
        alpha = rho / pq
        rr = op.update(x, r, p, q, alpha)
        if callback is not None:
            callback(x)
        if not math.isfinite(rr):
            return x, -1
        if math.sqrt(rr) <= target:
            return x, 0
        if precond is None:
            rho_new = rr
            op.direction(p, r, rho_new / rho)
        else:
            z = as_native(precond.matvec(r), np.float64)
            rho_new = float(r @ z)
            op.direction(p, z, rho_new / rho)
        rho = rho_new
    return x, maxiter


def lanczos_interval(op: _Operator, v: np.ndarray, steps: int) -> tuple[float, float]:
    """Estimates of the smallest and largest eigenvalue from ``steps`` Lanczos steps."""
    n = op.n
    steps = max(1, min(steps, n))
    q = v / np.linalg.norm(v)
    q_prev = np.zeros(n)
    w = np.empty(n)
    alphas, betas = [], []
    beta = 0.0
    for _ in range(steps):
        alpha = op.spmv_dot(q, w)
        w -= alpha * q + beta * q_prev
        alphas.append(alpha)
        beta = float(np.linalg.norm(w))
        if not math.isfinite(beta) or beta <= 1e-14 * max(abs(alpha), 1.0):
            break
        betas.append(beta)
        q_prev, q = q, w / beta
    T = np.diag(alphas)
    if len(alphas) > 1:
        off = np.array(betas[: len(alphas) - 1])
        T += np.diag(off, 1) + np.diag(off, -1)
    ritz = np.linalg.eigvalsh(T)
    return float(ritz[0]), float(ritz[-1])


def chebyshev_leja_shifts(lo: float, hi: float, s: int) -> np.ndarray:
    """``s`` Chebyshev points of [lo, hi] in Leja order (each far from the ones before)."""
    j = np.arange(s)
    pts = (hi + lo) / 2 + (hi - lo) / 2 * np.cos((2 * j + 1) * np.pi / (2 * s))
    order = [int(np.argmax(np.abs(pts)))]
    for _ in range(1, s):
        dist = np.prod(np.abs(pts[:, None] - pts[order][None, :]), axis=1)
        dist[order] = -1.0
        order.append(int(np.argmax(dist)))
    return pts[order]


def _change_of_basis(shifts: np.ndarray, scales: np.ndarray, s: int) -> np.ndarray:
    """B with A Y[:, j] = (Y B)[:, j] for the [P (s+1), R (s)] Newton basis columns."""
    B = np.zeros((2 * s + 1, 2 * s + 1))
    for start, length in ((0, s), (s + 1, s - 1)):
        for j in range(length):
            B[start + j, start + j] = shifts[j]
            B[start + j + 1, start + j] = 1.0 / scales[j]
    return B


def ca_cg(A, b, x0=None, *, s=4, rtol=1e-5, atol=0.0, maxiter=None, M=None, callback=None,
          basis="newton", tol=None):
    """s-step (communication-avoiding) CG on the matrix-powers kernel and a Gram matrix."""
    if isinstance(s, bool) or not isinstance(s, int | np.integer):
        raise TypeError(f"s must be an integer, not {type(s).__name__}")
    if s < 1:
        raise ValueError(f"s must be >= 1, got {s}")
    if basis not in ("newton", "monomial"):
        raise ValueError(f"basis must be 'newton' or 'monomial', got {basis!r}")
    if M is not None:
        warnings.warn("ca_cg does not support a preconditioner M; running preconditioned "
                      "cg instead", AspFallbackWarning, stacklevel=2)
        return cg(A, b, x0, rtol=rtol, atol=atol, maxiter=maxiter, M=M, callback=callback,
                  tol=tol)
    s = int(s)
    op, b, x, target, maxiter = _setup(A, b, x0, rtol, atol, maxiter, tol, callback)
    if not b.any():  # as SciPy: b = 0 (or a 0x0 system) has the solution 0, whatever x0
        return np.zeros(op.n), 0
    n = op.n
    r = np.empty(n)
    rnorm = math.sqrt(op.residual(x, b, r))
    if rnorm <= target:
        return x, 0
    lo, hi = lanczos_interval(op, r, max(2 * s, 12))
    if basis == "newton":
        shifts = chebyshev_leja_shifts(lo, hi, s)
        width = (hi - lo) / 4
    else:
        shifts = np.zeros(s)
        width = max(abs(hi), abs(lo)) / 2
    scale = 1.0 / width if width > 0 and math.isfinite(width) else 1.0
    scales = np.full(s, scale)
    mpk = MatrixPowers(op.A, s, basis=basis, shifts=shifts if basis == "newton" else None,
                       scales=scales)
    B = _change_of_basis(shifts, scales, s)
    Y = np.empty((2 * s + 1, n))
    Y[0], Y[s + 1] = r, r
    coef = np.zeros((3, 2 * s + 1))  # rows: x', r', p'
    G = np.empty((2 * s + 1, 2 * s + 1))
    its = 0
    replaced = 0
    while its < maxiter:
        # validated once above, so the kernels are called without re-checking V
        mpk.sstep_basis(Y, G)  # both bases and their Gram matrix, tuned as one step
        coef[:] = 0.0
        coef[1, s + 1] = coef[2, 0] = 1.0
        xc, rc, pc = coef
        rr = float(rc @ G @ rc)
        broke = False
        for _ in range(s):
            Bp = B @ pc
            denom = float(pc @ G @ Bp)
            if denom == 0.0 or not math.isfinite(denom):
                broke = True
                break
            if not rr > 0:  # rounding in the Gram form: let the true residual decide
                break
            alpha = rr / denom
            xc += alpha * pc
            rc -= alpha * Bp
            rr_new = float(rc @ G @ rc)
            pc *= rr_new / rr
            pc += rc
            rr = rr_new
            its += 1
            if callback is not None:
                callback(x + xc @ Y)
            if math.sqrt(abs(rr)) <= target or its >= maxiter:
                break
        if broke and its == 0:
            return x, -1
        rnorm = math.sqrt(op.recover(Y, x, coef, 0, s + 1))
        if not math.isfinite(rnorm):
            return x, -1
        if rnorm <= target or not rr > 0 or math.sqrt(rr) <= target:
            # the recursive residual drifts from b - A x; trust only the true one
            true = math.sqrt(op.residual(x, b, r))
            if true <= target:
                return x, 0
            Y[s + 1] = r
            replaced += 1
            if replaced > 50:
                return x, its
        if broke:
            return x, -1
    return x, its

