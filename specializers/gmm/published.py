"""``GMM``: the published PyCASP-style API, so existing code runs unchanged.

::

    gmm = GMM(M=16, D=8, cvtype='full')
    ll = gmm.train(X, max_iters=100, min_iters=10)   # total log-likelihood of X
    labels = gmm.predict(X)
    gmm.components.means, gmm.components.covars, gmm.components.weights

``train``/``predict`` run the generated kernels (the tuned variant; if they cannot
be built, their NumPy reference, with one warning);
``train_using_python``/``predict_using_python`` run that NumPy reference.
Covariances are always stored M x D x D; for ``'diag'`` the off-diagonal entries
are zero.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import reference as ref
from .stepper import EMStepper
from .validate import check_cvtype, check_data, check_positive_int

__all__ = ["GMM", "Components"]


@dataclass
class Components:
    """The mixture's parameters: ``means`` (M, D), ``covars`` (M, D, D), ``weights`` (M,)."""

    means: np.ndarray
    covars: np.ndarray
    weights: np.ndarray


class GMM:
    """A Gaussian mixture of ``M`` components in ``D`` dimensions, trained by EM.

    ``means`` (M, D), ``covars`` (M, D, D) and ``weights`` (M,) give a starting
    point; anything left as None is initialised from the data at the first
    ``train``: means from M events chosen farthest-first (deterministic), covariances from
    the covariance of all of ``X``, equal weights.  ``reg_covar`` is added to
    every covariance diagonal, so a collapsing component stays positive definite.
    """

    CVTYPES = ("diag", "full")

    def __init__(self, M, D, means=None, covars=None, weights=None, cvtype="diag", *,
                 reg_covar: float = 1e-6, tol: float = 1e-3):
        self.M = check_positive_int(M, "M")
        self.D = check_positive_int(D, "D")
        self.cvtype = check_cvtype(cvtype, self.CVTYPES)
        if not (isinstance(reg_covar, (int, float)) and reg_covar >= 0):
            raise ValueError(f"reg_covar={reg_covar!r}: expected a float >= 0")
        self.reg_covar, self.tol = float(reg_covar), float(tol)
        self.components = Components(
            self._check_param(means, "means", (self.M, self.D)),
            self._check_param(covars, "covars", (self.M, self.D, self.D)),
            self._check_param(weights, "weights", (self.M,)))
        self.variant: str | None = None  # force one generated variant (tests, benchmarks)
        self.last_variant: str | None = None

    @staticmethod
    def _check_param(value, name: str, shape: tuple[int, ...]):
        if value is None:
            return None
        arr = np.array(value, dtype=np.float64)
        if arr.shape != shape:
            raise ValueError(f"{name}: expected shape {shape}, got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: contains NaN or infinity")
        return arr

    # -- parameters ------------------------------------------------------------------------
    def _initial(self, X: np.ndarray) -> None:
        c = self.components
        if c.means is None:
            c.means = _farthest_first(X, self.M)
        if c.covars is None:
            cov = np.atleast_2d(np.cov(X, rowvar=False).astype(np.float64))
            if self.cvtype == "diag":
                cov = np.diag(np.diag(cov))
            cov = cov + self.reg_covar * np.eye(self.D)
            c.covars = np.repeat(cov[None], self.M, axis=0)
        if c.weights is None:
            c.weights = np.full(self.M, 1.0 / self.M)

    def _to_params(self, dtype) -> ref.Params:
        c = self.components
        if self.cvtype == "diag":
            cov = np.diagonal(c.covars, axis1=1, axis2=2).astype(dtype)
        else:
            cov = c.covars.astype(dtype)
        w = np.asarray(c.weights, dtype=np.float64)
        if np.any(w < 0) or w.sum() <= 0:
            raise ValueError("weights: expected non-negative values with a positive sum")
        return ref.Params(self.cvtype, (w / w.sum()).astype(dtype), c.means.astype(dtype), cov,
                          ref.precision_cholesky(cov, self.cvtype))

    def _from_params(self, p: ref.Params) -> None:
        cov = np.asarray(p.covariances, dtype=np.float64)
        if self.cvtype == "diag":
            cov = np.einsum("ki,ij->kij", cov, np.eye(self.D))
        self.components = Components(np.asarray(p.means, dtype=np.float64), cov,
                                     np.asarray(p.weights, dtype=np.float64))

    # -- training and prediction -----------------------------------------------------------
    def _check_iters(self, max_iters, min_iters) -> tuple[int, int]:
        max_iters = check_positive_int(max_iters, "max_iters")
        min_iters = check_positive_int(min_iters, "min_iters", minimum=0)
        if min_iters > max_iters:
            raise ValueError(f"min_iters={min_iters} is larger than max_iters={max_iters}")
        return max_iters, min_iters

    def _train(self, X, max_iters, min_iters, python: bool) -> float:
        max_iters, min_iters = self._check_iters(max_iters, min_iters)
        X = check_data(X, n_features=self.D, min_events=self.M)
        self._initial(X)
        p = self._to_params(X.dtype)
        stepper = EMStepper(self.M, self.D, self.cvtype, X.dtype, variant=self.variant,
                            python=python)
        prev = -np.inf
        for it in range(1, max_iters + 1):
            lb, p = stepper.step(X, p, self.reg_covar)
            if it >= min_iters and abs(lb - prev) < self.tol:
                break
            prev = lb
        self._from_params(p)
        self.last_variant = stepper.last_variant
        # The likelihood of X under the parameters just trained (one more E-step).
        return stepper.log_likelihood(X, p)

    def train(self, X, max_iters: int = 100, min_iters: int = 1) -> float:
        """Run EM on ``X`` (N, D) until the mean log-likelihood changes by less than
        ``tol`` (after at least ``min_iters``), at most ``max_iters`` iterations.
        Returns the total log-likelihood of ``X`` under the trained mixture."""
        return self._train(X, max_iters, min_iters, python=False)

    def train_using_python(self, X, max_iters: int = 100, min_iters: int = 1) -> float:
        """:meth:`train`, run by the NumPy reference."""
        return self._train(X, max_iters, min_iters, python=True)

    def _predict(self, X, python: bool) -> np.ndarray:
        if self.components.means is None:
            raise ValueError("predict: the GMM has no parameters yet; train it or pass means, "
                             "covars and weights")
        X = check_data(X, n_features=self.D)
        self._initial(X)
        stepper = EMStepper(self.M, self.D, self.cvtype, X.dtype, python=python)
        return stepper.labels(X, self._to_params(X.dtype))

    def predict(self, X) -> np.ndarray:
        """The most likely component of each event of ``X``."""
        return self._predict(X, python=False)

    def predict_using_python(self, X) -> np.ndarray:
        """:meth:`predict`, run by the NumPy reference."""
        return self._predict(X, python=True)

    # -- accessors of the published API ----------------------------------------------------
    def get_all_component_means(self) -> np.ndarray:
        return self.components.means

    def get_all_component_weights(self) -> np.ndarray:
        return self.components.weights

    def get_all_component_full_covariance(self) -> np.ndarray:
        return self.components.covars

    def get_all_component_diag_covariance(self) -> np.ndarray:
        return np.diagonal(self.components.covars, axis1=1, axis2=2).copy()


def _farthest_first(X: np.ndarray, m: int) -> np.ndarray:
    """M events, each the farthest from those already chosen, starting nearest the
    mean: deterministic, and spreads the means over well-separated clusters."""
    Xd = X.astype(np.float64, copy=False)
    first = int(np.argmin(((Xd - Xd.mean(axis=0)) ** 2).sum(axis=1)))
    chosen = [first]
    dist = ((Xd - Xd[first]) ** 2).sum(axis=1)
    for _ in range(1, m):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, ((Xd - Xd[nxt]) ** 2).sum(axis=1))
    return Xd[chosen].copy()
