"""EM for the public faces: the kernels' arguments in, scikit-learn's M-step out.

:class:`EMStepper` is what :class:`~specializers.gmm.GaussianMixture`,
:class:`~specializers.gmm.GMM` and :mod:`specializers.gmm.dask` call.  It turns a
mixture's parameters into the kernels' (:func:`kernel_params`), calls the
process's :class:`~asp.runtime.JitKernel` of each kernel family
(:func:`specializers.gmm.kernels.kernel`) with preallocated outputs, so that after
tuning the native hot entry serves every step, and turns the centred statistics
into scikit-learn's M-step (:func:`params_from_stats`).  Building, checking,
tuning and falling back are the core's: when the kernels cannot be built the
same calls run the kernels' NumPy reference, with one warning.
"""
from __future__ import annotations

import math

import numpy as np

from asp import config
from asp.errors import SpecializationError
from asp.runtime import JitKernel, as_native

from . import reference as ref
from .kernels import VARIANTS, kernel, kind_of, threads_for

__all__ = ["EMStepper", "kernel_params", "moments_from_stats", "params_from_stats"]

_LOG2PI = math.log(2 * math.pi)


def kernel_params(p: ref.Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(means, P, log constants) in float64 as the kernels read them: P is the precision
    factor of each component ((M, D, D) for full and tied, (M, D) for diag and
    spherical, shared factors broadcast), log constants log w + log det P - D/2 log 2pi."""
    m, d = p.means.shape
    mu = np.ascontiguousarray(p.means, dtype=np.float64)
    pc = np.asarray(p.prec_chol, dtype=np.float64)
    if p.cvtype in ("full", "diag"):
        P = pc
    elif p.cvtype == "tied":
        P = np.broadcast_to(pc, (m, d, d))
    else:
        P = np.broadcast_to(pc[:, None], (m, d))
    log_det = np.broadcast_to(ref.log_det_cholesky(pc, p.cvtype, d), (m,))
    with np.errstate(divide="ignore"):
        logc = np.log(np.asarray(p.weights, dtype=np.float64)) + log_det - 0.5 * d * _LOG2PI
    return mu, np.ascontiguousarray(P), np.ascontiguousarray(logc)


def moments_from_stats(stats: np.ndarray, c: np.ndarray, reg_covar: float, cvtype: str,
                       dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nk, means, covariances) as scikit-learn computes them, from statistics
    centred on ``c`` (M, D).

    With d = x - c, s = sum r d, S = sum r d d^T and e = new mean - c,
    sum r (x - mean)(x - mean)^T = S - s e^T - e s^T + (sum r) e e^T exactly,
    so no large sums cancel.
    """
    dtype = np.dtype(dtype)
    m, d = c.shape
    c = np.asarray(c, dtype=np.float64)
    sumr = stats[:, 0]
    s = stats[:, 1:1 + d]
    nk = sumr + 10 * np.finfo(dtype).eps
    means = (s + c * sumr[:, None]) / nk[:, None]
    e = means - c
    if cvtype in ("full", "tied"):
        S = stats[:, 1 + d:].reshape(m, d, d)
        S = np.triu(S) + np.triu(S, 1).transpose(0, 2, 1)  # kernels fill the upper half
        se = s[:, :, None] * e[:, None, :]
        S = S - se - se.transpose(0, 2, 1) + sumr[:, None, None] * e[:, :, None] * e[:, None, :]
        if cvtype == "full":
            cov = S / nk[:, None, None]
            cov[:, np.arange(d), np.arange(d)] += reg_covar
        else:
            cov = S.sum(axis=0) / nk.sum()
            cov.flat[:: d + 1] += reg_covar
    else:
        S = stats[:, 1 + d:]
        cov = (S - 2 * s * e + sumr[:, None] * e * e) / nk[:, None] + reg_covar
        if cvtype == "spherical":
            cov = cov.mean(axis=1)
    return nk, means, cov.astype(dtype)


def params_from_stats(stats: np.ndarray, old: ref.Params, reg_covar: float,
                      dtype) -> ref.Params:
    """scikit-learn's M-step from statistics centred on the old means."""
    dtype = np.dtype(dtype)
    nk, means, cov = moments_from_stats(stats, old.means, reg_covar, old.cvtype, dtype)
    return ref.Params(old.cvtype, (nk / nk.sum()).astype(dtype), means.astype(dtype), cov,
                      ref.precision_cholesky(cov, old.cvtype))


class EMStepper:
    """The kernels of one (M, D, covariance type, dtype), for one public call.

    ``variant`` forces one EM variant (tests, benchmarks); otherwise the core's
    tuner chooses per power-of-4 bucket of N and thread count, and remembers the
    choice on disk.  ``python`` runs every kernel's NumPy reference instead (the
    published ``*_using_python`` methods): the same numbers a fallback gives.
    """

    def __init__(self, m: int, d: int, cvtype: str, dtype, *, variant: str | None = None,
                 python: bool = False):
        if variant is not None and variant not in VARIANTS:
            raise ValueError(f"variant={variant!r}: expected one of {', '.join(VARIANTS)}")
        self.m, self.d, self.cvtype, self.dtype = m, d, cvtype, np.dtype(dtype)
        self.forced, self.python = variant, python
        kind = kind_of(cvtype)
        self.em, self.estep, self.mstats = (kernel(f, kind, m, d)
                                            for f in ("em", "estep", "mstats"))
        self.nstat = self.em.specializer.nstat
        self._work: np.ndarray | None = None
        self._last: tuple | None = None

    def _run(self, k: JitKernel, args: tuple, variant: str | None = None) -> None:
        if self.python:
            k.specializer.run_python(args)
        elif variant is None or config.jit_disabled():
            k(*args)
        else:
            try:
                built = variant in k.specialization(*args).entries
            except SpecializationError:
                built = False  # the call below falls back, warning once (or raises)
            if built:
                k.run_variant(variant, *args)
            else:
                k(*args)

    @property
    def last_variant(self) -> str | None:
        """The EM variant of the last step: the forced one, the tuner's winner (None
        while it is still choosing), or ``'python'``."""
        if self._last is None:
            return None
        if self.python:
            return "python"
        chosen = self.em.chosen_variant(*self._last)
        return self.forced if self.forced and chosen != "python" else chosen

    # -- EM ---------------------------------------------------------------------------------
    def em_args(self, X: np.ndarray, kp: tuple) -> tuple:
        """The EM kernel's arguments for one pass over ``X`` under the kernel parameters
        ``kp``, with fresh outputs ``stats`` and ``ll`` (the last two)."""
        n = X.shape[0]
        if self._work is None or self._work.shape[0] != n:
            # Only the 'components' variant writes it: untouched, its pages cost nothing.
            self._work = np.empty((n, self.m))
        return (X, *kp, threads_for(n, self.m, self.d), self._work,
                np.empty((self.m, self.nstat)), np.empty(1))

    def statistics(self, X: np.ndarray, kp: tuple) -> tuple[float, np.ndarray]:
        """(sum of log p(x), statistics (M, NSTAT) centred on the means) of one fused
        pass over ``X`` under the kernel parameters ``kp``."""
        args = self.em_args(X, kp)
        self._run(self.em, args, self.forced)
        self._last = args
        return float(args[-1][0]), args[-2]

    def step(self, X: np.ndarray, p: ref.Params, reg_covar: float) -> tuple[float, ref.Params]:
        """One EM iteration: (lower bound under ``p``, new parameters)."""
        ll, stats = self.statistics(X, kernel_params(p))
        _check_finite(ll)
        return ll / X.shape[0], params_from_stats(stats, p, reg_covar, self.dtype)

    def initial_moments(self, X: np.ndarray, resp: np.ndarray,
                        reg_covar: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(nk, means, covariances) from responsibilities, as scikit-learn's
        ``_estimate_gaussian_parameters`` (the M-step of an initialisation).

        ``full`` takes centred sums from the kernel, as scikit-learn centres
        its full covariances; diag and spherical take raw sums and follow
        scikit-learn's raw-moment formula in X's dtype (sum r x^2 / nk - mu^2),
        so that its rounding, large when covariances are tiny, is
        scikit-learn's.  ``tied`` is two matrix products (X^T X - sum nk mu mu^T,
        which is not a weighted sum when, as at initialisation, rows of
        ``resp`` do not sum to 1): NumPy's."""
        if self.cvtype == "tied":
            return ref.estimate_parameters(X, resp, reg_covar, self.cvtype)
        dt, m, d = self.dtype, self.m, self.d
        centre = self.cvtype == "full"
        c, stats = np.empty((m, d)), np.empty((m, self.nstat))
        self._run(self.mstats, (X, as_native(resp, X.dtype), threads_for(X.shape[0], m, d),
                                int(centre), c, stats))
        if centre:
            nk, means, cov = moments_from_stats(stats, c, reg_covar, self.cvtype, dt)
            return nk.astype(dt), means.astype(dt), cov
        stats = stats.astype(dt)
        nk = stats[:, 0] + 10 * np.finfo(dt).eps
        means = stats[:, 1:1 + d] / nk[:, None]
        cov = stats[:, 1 + d:] / nk[:, None] - means ** 2 + reg_covar
        if self.cvtype == "spherical":
            cov = cov.mean(axis=1)
        return nk, means, cov

    # -- the E-step alone -------------------------------------------------------------------
    def _estep(self, X: np.ndarray, kp: tuple, *, log_prob: bool = False,
               labels: bool = False, loglik: bool = False):
        n, m = X.shape[0], self.m
        out = np.empty((n if log_prob else 0, m))
        lab = np.empty(n if labels else 0, dtype=np.int64)
        ll = np.empty(1 if loglik else 0)
        self._run(self.estep, (X, *kp, threads_for(n, m, self.d), out, lab, ll))
        return out, lab, ll

    def weighted_log_prob(self, X: np.ndarray, p: ref.Params) -> np.ndarray:
        """log w_k + log N(x | k), shape (N, M), in X's dtype."""
        out = self._estep(X, kernel_params(p), log_prob=True)[0]
        return out.astype(X.dtype, copy=False)

    def labels(self, X: np.ndarray, p: ref.Params) -> np.ndarray:
        """The most likely component of each event (np.argmax of the above)."""
        return self._estep(X, kernel_params(p), labels=True)[1]

    def log_likelihood(self, X: np.ndarray, p: ref.Params) -> float:
        """sum over X of log p(x): the E-step alone."""
        ll = float(self._estep(X, kernel_params(p), loglik=True)[2][0])
        _check_finite(ll)
        return ll


def _check_finite(ll: float) -> None:
    if not np.isfinite(ll):
        raise ValueError("the log-likelihood is not finite: X has values too large "
                         "for the current parameters (scale the input data)")
