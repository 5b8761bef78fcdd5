"""``GaussianMixture``: scikit-learn's estimator, with EM run by the generated kernels.

It subclasses :class:`sklearn.mixture.GaussianMixture`, so parameters,
``get_params``/``set_params``/``clone``, validation, initialisation
(``kmeans``, ``k-means++``, ``random``, ``random_from_data``, user
``*_init``), ``sample``, ``bic`` and ``aic`` are scikit-learn's own.  What it
replaces is the M-step of the initialisation (from the responsibilities
scikit-learn's ``init_params`` produce), the EM loop, and the E-step behind
``fit_predict``, ``predict``, ``predict_proba``, ``score`` and
``score_samples``: those run generated C/OpenMP (see
:mod:`specializers.gmm.kernels`), or, with one
:class:`~asp.errors.AspFallbackWarning` if the kernels cannot be built, the
same computation in NumPy (the kernels' reference).
``fit`` skips the final E-step whose labels only ``fit_predict`` returns.
"""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.base import _fit_context
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as _SkGaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils._array_api import get_namespace
from sklearn.utils.validation import check_is_fitted, validate_data

from asp.runtime import as_native

from . import reference as ref
from .stepper import EMStepper
from .validate import check_data

__all__ = ["GaussianMixture"]


class GaussianMixture(_SkGaussianMixture):
    """Drop-in :class:`sklearn.mixture.GaussianMixture` whose EM runs as generated C.

    Same constructor, methods and fitted attributes as scikit-learn's.  Started
    from the same parameters, it reproduces scikit-learn's iterates to within
    rounding (1e-6 relative in float64, 1e-3 in float32).
    """

    # Tests force a variant through this attribute; it is not a parameter.
    _asp_variant: str | None = None

    def _stepper(self, X: np.ndarray) -> EMStepper:
        return EMStepper(self.n_components, X.shape[1], self.covariance_type, X.dtype,
                         variant=self._asp_variant)

    def _params(self) -> ref.Params:
        return ref.Params(self.covariance_type, self.weights_, self.means_,
                          getattr(self, "covariances_", None), self.precisions_cholesky_)

    def _store(self, p: ref.Params) -> None:
        self.weights_, self.means_ = p.weights, p.means
        self.covariances_, self.precisions_cholesky_ = p.covariances, p.prec_chol

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the model ``n_init`` times and keep the best (scikit-learn's ``fit``,
        without the final E-step whose labels ``fit`` would throw away)."""
        self._fit(X)
        return self

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_predict(self, X, y=None):
        """Fit the model ``n_init`` times, keep the best, and label ``X``."""
        X, stepper = self._fit(X)
        # A final E-step, so fit_predict(X) agrees with fit(X).predict(X).
        return stepper.labels(X, self._params())

    def _fit(self, X) -> tuple[np.ndarray, EMStepper]:
        check_data(X, min_events=1)  # clear errors for NaN, 1-D, non-numeric first
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        if X.shape[0] < self.n_components:
            raise ValueError(f"X: expected n_samples >= n_components but got n_components = "
                             f"{self.n_components}, n_samples = {X.shape[0]}")
        X = as_native(X)
        xp, _ = get_namespace(X)
        self._check_parameters(X, xp=xp)
        do_init = not (self.warm_start and hasattr(self, "converged_"))
        n_init = self.n_init if do_init else 1
        random_state = check_random_state(self.random_state)
        stepper = self._stepper(X)

        best_lb, best, best_iter, best_lbs = -np.inf, None, 0, []
        self.converged_ = False
        for init in range(n_init):
            self._print_verbose_msg_init_beg(init)
            if do_init:
                self._asp_init_stepper = stepper  # for _initialize, called by sklearn
                try:
                    self._initialize_parameters(X, random_state, xp=xp)
                finally:
                    del self._asp_init_stepper
            lb = -np.inf if do_init else self.lower_bound_
            lbs: list[float] = []
            p = self._params()
            if self.max_iter == 0:
                best, best_iter = p, 0
                continue
            converged = False
            for n_iter in range(1, self.max_iter + 1):
                prev = lb
                lb, p = stepper.step(X, p, self.reg_covar)
                lbs.append(lb)
                self._print_verbose_msg_iter_end(n_iter, lb - prev)
                if abs(lb - prev) < self.tol:
                    converged = True
                    break
            self._print_verbose_msg_init_end(lb, converged)
            if lb > best_lb or best_lb == -np.inf:
                best_lb, best, best_iter, best_lbs = lb, p, n_iter, lbs
                self.converged_ = converged
        if not self.converged_ and self.max_iter > 0:
            warnings.warn("Best performing initialization did not converge. Try different init "
                          "parameters, or increase max_iter, tol, or check for degenerate data.",
                          ConvergenceWarning, stacklevel=3)
        if best.covariances is None:  # max_iter=0 from precisions_init: as scikit-learn
            self.weights_, self.means_ = best.weights, best.means
            self.precisions_cholesky_ = best.prec_chol
        else:
            self._store(best)
        self._set_parameters(self._get_parameters(), xp=xp)
        self.n_iter_ = best_iter
        self.lower_bound_ = best_lb
        self.lower_bounds_ = best_lbs
        return X, stepper

    def _initialize(self, X, resp, xp=None):
        """scikit-learn's initial M-step from the responsibilities of an
        initialisation (``init_params``), run by the generated kernel."""
        stepper = getattr(self, "_asp_init_stepper", None) or self._stepper(X)
        given = (self.weights_init, self.means_init, self.precisions_init)
        if resp is None or all(v is not None for v in given):
            return super()._initialize(X, resp, xp=xp)
        nk, means, cov = stepper.initial_moments(as_native(X), resp, self.reg_covar)
        if self.precisions_init is not None:
            # sklearn then takes the precisions as given and sets no covariances
            super()._initialize(X, None, xp=xp)
        else:
            self.covariances_ = cov
            self.precisions_cholesky_ = ref.precision_cholesky(cov, self.covariance_type)
        self.weights_ = np.asarray(nk / X.shape[0] if self.weights_init is None
                                   else self.weights_init)
        self.means_ = means if self.means_init is None else self.means_init

    def _get_parameters(self):
        return (self.weights_, self.means_, getattr(self, "covariances_", None),
                self.precisions_cholesky_)

    def predict(self, X):
        """The most likely component of each event of ``X`` (labels straight from
        the E-step kernel, without the N x M log-probabilities)."""
        check_is_fitted(self)
        X = _float(validate_data(self, X, reset=False), self.means_)
        return self._stepper(X).labels(X, self._params())

    def _estimate_weighted_log_prob(self, X, xp=None):
        X = _float(X, self.means_)
        return self._stepper(X).weighted_log_prob(X, self._params())


def _float(X, params: np.ndarray) -> np.ndarray:
    """``X`` in the type scikit-learn's NumPy computes it with the fitted ``params`` in:
    float32 events scored by a float64 model are float64 (and so are the results)."""
    X = as_native(X)
    kind = X.dtype if X.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    dtype = np.result_type(kind, params.dtype)
    return X if X.dtype == dtype else X.astype(dtype)
