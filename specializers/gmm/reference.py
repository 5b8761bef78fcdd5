"""The NumPy reference EM: the specification every compiled variant is tested against.

It follows scikit-learn's ``GaussianMixture`` step for step, so that started from
the same parameters both produce the same iterates:

* E-step: log N(x | k) from the Cholesky factor of the precision
  (``precisions_cholesky_``, upper triangular for ``full``/``tied``), plus
  ``log w_k``; log-sum-exp over components gives ``log p(x)``; the lower bound
  is its mean over events.
* M-step: ``nk = sum_n r_nk + 10 eps``, ``means = r^T X / nk``, covariances with
  ``reg_covar`` added to the diagonal, ``weights = nk / sum(nk)``, and the new
  precision Cholesky factors.

:class:`Params` carries one mixture's parameters; every function is pure.

The second half computes, in NumPy and float64, exactly what each generated kernel
computes from its own arguments (means, precision factors ``P`` and log constants
``logc``, see :func:`specializers.gmm.stepper.kernel_params`): the
log-probabilities, the log-likelihood, and the sufficient statistics centred on
given centres (the upper half of each D x D block for ``full``).  They are the
kernels' ``run_python``: the reference the core checks every compiled variant
against, and what runs when the kernels cannot be built.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import linalg
from scipy.special import logsumexp

__all__ = [
    "COVARIANCE_TYPES",
    "Params",
    "centred_statistics",
    "collapse_error",
    "e_step",
    "em_iteration",
    "em_statistics",
    "estimate_parameters",
    "kernel_log_prob",
    "log_det_cholesky",
    "log_likelihood_sum",
    "precision_cholesky",
    "precision_cholesky_from_precisions",
    "responsibility_statistics",
    "weighted_log_prob",
]

COVARIANCE_TYPES = ("full", "diag", "tied", "spherical")


@dataclass(frozen=True)
class Params:
    """A mixture's parameters in scikit-learn's shapes for ``cvtype``.

    ``covariances`` is None when the mixture was started from precisions.
    """

    cvtype: str
    weights: np.ndarray          # (M,)
    means: np.ndarray            # (M, D)
    covariances: np.ndarray | None
    prec_chol: np.ndarray        # full (M,D,D), tied (D,D), diag (M,D), spherical (M,)


def collapse_error(dtype) -> ValueError:
    msg = ("Fitting the mixture model failed because some components have ill-defined "
           "empirical covariance (for instance caused by singleton or collapsed samples). "
           "Try to decrease the number of components, increase reg_covar, or scale the "
           "input data.")
    if np.dtype(dtype) == np.float32:
        msg += " The numerical accuracy can also be improved by passing float64 data."
    return ValueError(msg)


def precision_cholesky(cov: np.ndarray, cvtype: str) -> np.ndarray:
    """Upper-triangular Cholesky factors of the precisions, from covariances.

    As scikit-learn: L = cholesky(cov) (lower), factor = (L^-1)^T.  L^-1 comes
    from forward substitution run across all components at once in NumPy, not
    from one ``scipy.linalg.solve_triangular`` per component: OpenBLAS may hand
    those tiny solves to its thread pool, and on a loaded machine each then
    costs milliseconds (0.9 s per fit at M=16 measured) instead of microseconds.
    """
    dtype = cov.dtype
    if cvtype in ("full", "tied"):
        mats = cov if cvtype == "full" else cov[None]
        try:
            chol = np.linalg.cholesky(mats)
        except np.linalg.LinAlgError:
            raise collapse_error(dtype) from None
        if not np.all(np.isfinite(chol)):
            raise collapse_error(dtype)
        out = _lower_inverse(chol).transpose(0, 2, 1)
        return out if cvtype == "full" else out[0]
    if np.any(cov <= 0.0) or not np.all(np.isfinite(cov)):
        raise collapse_error(dtype)
    return 1.0 / np.sqrt(cov)


def _lower_inverse(chol: np.ndarray) -> np.ndarray:
    """The inverses of a stack of lower-triangular matrices, row by row:
    row i of L^-1 is (e_i - L[i, :i] L^-1[:i]) / L[i, i]."""
    m, d, _ = chol.shape
    inv = np.zeros_like(chol)
    for i in range(d):
        row = -np.einsum("kj,kjd->kd", chol[:, i, :i], inv[:, :i, :])
        row[:, i] += 1.0
        inv[:, i, :] = row / chol[:, i, i][:, None]
    return inv


def precision_cholesky_from_precisions(prec: np.ndarray, cvtype: str) -> np.ndarray:
    """Upper Cholesky factors U (prec = U U^T) via the flipped lower factorisation."""
    def flip(a):
        return a[::-1, ::-1]

    if cvtype == "full":
        return np.stack([flip(linalg.cholesky(flip(p), lower=True)) for p in prec])
    if cvtype == "tied":
        return flip(linalg.cholesky(flip(prec), lower=True))
    return np.sqrt(prec)


def log_det_cholesky(prec_chol: np.ndarray, cvtype: str, n_features: int) -> np.ndarray:
    """log det of each precision Cholesky factor (= -1/2 log det covariance)."""
    if cvtype == "full":
        return np.sum(np.log(np.diagonal(prec_chol, axis1=1, axis2=2)), axis=1)
    if cvtype == "tied":
        return np.sum(np.log(np.diag(prec_chol)))
    if cvtype == "diag":
        return np.sum(np.log(prec_chol), axis=1)
    return n_features * np.log(prec_chol)


def weighted_log_prob(X: np.ndarray, p: Params) -> np.ndarray:
    """log w_k + log N(x_n | mu_k, Sigma_k), shape (N, M)."""
    n, d = X.shape
    m = p.means.shape[0]
    log_det = log_det_cholesky(p.prec_chol, p.cvtype, d)
    if p.cvtype in ("full", "tied"):
        lp = np.empty((n, m), dtype=X.dtype)
        for k in range(m):
            pc = p.prec_chol[k] if p.cvtype == "full" else p.prec_chol
            y = X @ pc - p.means[k] @ pc
            lp[:, k] = np.sum(np.square(y), axis=1)
    elif p.cvtype == "diag":
        prec = p.prec_chol ** 2
        lp = (np.sum(p.means ** 2 * prec, axis=1) - 2.0 * (X @ (p.means * prec).T)
              + (X ** 2 @ prec.T))
    else:
        prec = p.prec_chol ** 2
        lp = (np.sum(p.means ** 2, axis=1) * prec - 2 * (X @ p.means.T * prec)
              + np.outer(np.einsum("ij,ij->i", X, X), prec))
    return -0.5 * (d * math.log(2 * math.pi) + lp) + log_det + np.log(p.weights)


def e_step(X: np.ndarray, p: Params) -> tuple[float, np.ndarray]:
    """(mean log p(x), log responsibilities)."""
    wlp = weighted_log_prob(X, p)
    norm = logsumexp(wlp, axis=1)
    with np.errstate(under="ignore"):
        log_resp = wlp - norm[:, None]
    return float(np.mean(norm)), log_resp


def estimate_parameters(X: np.ndarray, resp: np.ndarray, reg_covar: float,
                        cvtype: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nk, means, covariances) from responsibilities, as scikit-learn computes them."""
    nk = resp.sum(axis=0) + 10 * np.finfo(resp.dtype).eps
    means = (resp.T @ X) / nk[:, None]
    m, d = means.shape
    if cvtype == "full":
        cov = np.empty((m, d, d), dtype=X.dtype)
        for k in range(m):
            diff = X - means[k]
            cov[k] = ((resp[:, k] * diff.T) @ diff) / nk[k]
            cov[k].flat[:: d + 1] += reg_covar
    elif cvtype == "tied":
        cov = (X.T @ X - (nk * means.T) @ means) / nk.sum()
        cov.flat[:: d + 1] += reg_covar
    else:
        cov = (resp.T @ (X * X)) / nk[:, None] - means ** 2 + reg_covar
        if cvtype == "spherical":
            cov = cov.mean(axis=1)
    return nk, means, cov


def m_step(X: np.ndarray, log_resp: np.ndarray, reg_covar: float, cvtype: str) -> Params:
    """New parameters from log responsibilities."""
    nk, means, cov = estimate_parameters(X, np.exp(log_resp), reg_covar, cvtype)
    return Params(cvtype, nk / nk.sum(), means, cov, precision_cholesky(cov, cvtype))


def em_iteration(X: np.ndarray, p: Params, reg_covar: float) -> tuple[float, Params]:
    """One EM iteration: (lower bound under ``p``, the updated parameters)."""
    lower, log_resp = e_step(X, p)
    return lower, m_step(X, log_resp, reg_covar, p.cvtype)


# -- what the kernels compute, from their own arguments -----------------------------------
def kernel_log_prob(X: np.ndarray, mu: np.ndarray, P: np.ndarray,
                    logc: np.ndarray) -> np.ndarray:
    """log w_k + log N(x_n | k) = logc_k - |(x_n - mu_k) P_k|^2 / 2, shape (N, M), float64.

    ``P`` is (M, D, D) (upper-triangular precision factors: full and tied) or (M, D)
    (their diagonals: diag and spherical)."""
    Xd = np.asarray(X, dtype=np.float64)
    q = np.empty((Xd.shape[0], mu.shape[0]))
    for k in range(mu.shape[0]):
        y = (Xd - mu[k]) @ P[k] if P.ndim == 3 else (Xd - mu[k]) * P[k]
        q[:, k] = np.einsum("ij,ij->i", y, y)
    return logc - 0.5 * q


def log_likelihood_sum(wlp: np.ndarray) -> float:
    """sum over events of log p(x) = logsumexp of each row of ``wlp``."""
    return float(logsumexp(wlp, axis=1).sum()) if wlp.size else 0.0


def centred_statistics(X: np.ndarray, resp: np.ndarray, c: np.ndarray,
                       full: bool) -> np.ndarray:
    """Per component k, [sum r, sum r d (D), sum r d d^T (upper half, D*D) or sum r d^2
    (D)] with d = x - c_k: shape (M, 1 + D + D*D or 2D), float64."""
    Xd = np.asarray(X, dtype=np.float64)
    r = np.asarray(resp, dtype=np.float64)
    m, d = c.shape
    out = np.empty((m, 1 + d + (d * d if full else d)))
    out[:, 0] = r.sum(axis=0)
    for k in range(m):
        y = Xd - c[k]
        ry = r[:, k, None] * y
        out[k, 1:1 + d] = ry.sum(axis=0)
        out[k, 1 + d:] = np.triu(ry.T @ y).ravel() if full else (ry * y).sum(axis=0)
    return out


def em_statistics(X: np.ndarray, mu: np.ndarray, P: np.ndarray,
                  logc: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """One fused EM pass: (sum log p(x), responsibilities (N, M), statistics centred on
    ``mu``), as the EM kernel's variants compute them."""
    wlp = kernel_log_prob(X, mu, P, logc)
    norm = logsumexp(wlp, axis=1) if wlp.size else np.zeros(len(wlp))
    with np.errstate(under="ignore"):
        resp = np.exp(wlp - norm[:, None])
    return float(norm.sum()), resp, centred_statistics(X, resp, mu, P.ndim == 3)


def responsibility_statistics(X: np.ndarray, resp: np.ndarray, *, centre: bool,
                              full: bool) -> tuple[np.ndarray, np.ndarray]:
    """(c, statistics centred on c) from given responsibilities: c is each component's
    responsibility-weighted mean (0 for a component without weight), or 0 when
    ``centre`` is false (the statistics are then the raw sums)."""
    Xd = np.asarray(X, dtype=np.float64)
    r = np.asarray(resp, dtype=np.float64)
    c = np.zeros((r.shape[1], Xd.shape[1]))
    if centre:
        sumr = r.sum(axis=0)
        np.divide(r.T @ Xd, sumr[:, None], out=c, where=sumr[:, None] > 0)
    return c, centred_statistics(Xd, r, c, full)
