"""Gaussian-mixture EM on a ``dask.array``: statistics per chunk on the workers, reduced.

::

    import dask.array as da
    from specializers.gmm import GaussianMixture
    from specializers.gmm.dask import fit, predict

    X = da.from_zarr(...)                       # (N, D), chunked along events
    gm = fit(GaussianMixture(8, covariance_type="full"), X)
    labels = predict(gm, X)                     # a lazy dask array

Each EM iteration sends the current parameters to every chunk; a worker runs
the generated EM kernel (the same C the in-memory fit runs) over its chunk and
returns the chunk's sufficient statistics -- ``sum r``, ``sum r (x - c)``,
``sum r (x - c)(x - c)^T`` (or its diagonal) about the old means ``c`` -- and
``sum log p(x)``.  These are summed in a fixed order (a pairwise tree over the
chunks, so the result does not depend on which worker finishes first) and the
M-step runs on the client with :func:`specializers.gmm.stepper.params_from_stats`,
exactly as in memory.  Started from the same parameters, the fit equals the
in-memory one to rounding (1e-10 relative in float64).

``X`` is persisted for the duration of the fit: every iteration reads it
again, so it should fit in the cluster's memory.
"""
from __future__ import annotations

import warnings

import numpy as np

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("specializers.gmm.dask needs Dask: pip install 'asp-sejits[dask]'"
                      ) from exc

from asp.runtime import as_native
from asp.scaleout import gather

from . import reference as ref
from .stepper import EMStepper, kernel_params, params_from_stats

__all__ = ["chunk_statistics", "em", "fit", "predict", "train"]

#: Rows of X used to initialise a mixture when X is larger (the sample is computed).
INIT_SAMPLE = 100_000


# -- on the workers ------------------------------------------------------------------------
def chunk_statistics(X: np.ndarray, p: ref.Params, kp: tuple, variant: str | None):
    """(sum of log p(x), statistics (M, 1 + D + D*D or 2D)) of one chunk ``X``.

    Runs the worker process's EM kernel (``variant``, or the tuner's choice when
    None): natively, or as its NumPy reference with one warning if the kernels
    cannot be built on that worker.
    """
    X = as_native(X)
    if not np.isfinite(X).all():
        raise ValueError("X: contains NaN or infinity")
    m, d = p.means.shape
    stepper = EMStepper(m, d, p.cvtype, X.dtype, variant=variant)
    if X.shape[0] == 0:
        return 0.0, np.zeros((m, stepper.nstat))
    return stepper.statistics(X, kp)


def _loglik(X: np.ndarray, p: ref.Params) -> float:
    """sum over the chunk of log p(x)."""
    X = as_native(X)
    if X.shape[0] == 0:
        return 0.0
    m, d = p.means.shape
    return EMStepper(m, d, p.cvtype, X.dtype).log_likelihood(X, p)


def _add(a, b):
    if isinstance(a, tuple):
        return tuple(x + y for x, y in zip(a, b))
    return a + b


def _labels(X: np.ndarray, estimator) -> np.ndarray:
    return estimator.predict(as_native(X))


# -- on the client -------------------------------------------------------------------------
def _prepare(X, m: int):
    """``X`` as an (N, D) float dask array chunked along events only, persisted."""
    if not isinstance(X, da.Array):
        raise TypeError(f"X: expected a dask array, not {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"X: expected a 2-D array (n_events, n_features), got {X.ndim}-D")
    if any(np.isnan(s) for s in X.shape):
        raise ValueError("X: unknown chunk sizes; call X.compute_chunk_sizes() first")
    if X.dtype.kind in "biu":
        X = X.astype(np.float64)
    elif X.dtype not in (np.float32, np.float64):
        raise TypeError(f"X: expected float32 or float64 data, got dtype {X.dtype}")
    if X.shape[0] < m:
        raise ValueError(f"X: has {X.shape[0]} events, expected at least {m} "
                         "(one per mixture component)")
    return X.rechunk({1: -1}).persist()


def _sample(X, random_state) -> np.ndarray:
    """All of X if it is small (then initialisation is the in-memory one), else a
    random sample of INIT_SAMPLE events."""
    n = X.shape[0]
    if n <= INIT_SAMPLE:
        return gather(X)  # not X.compute(): that leaves X's chunks on one worker
    idx = np.sort(random_state.choice(n, INIT_SAMPLE, replace=False))
    return np.ascontiguousarray(X[idx].compute())


def _reduce(parts: list):
    """A pairwise sum in chunk order: the same rounding whatever the scheduling."""
    while len(parts) > 1:
        parts = [dask.delayed(_add)(parts[i], parts[i + 1]) if i + 1 < len(parts)
                 else parts[i] for i in range(0, len(parts), 2)]
    return parts[0]


def _statistics(blocks, p: ref.Params, variant: str | None):
    kp = kernel_params(p)
    parts = [dask.delayed(chunk_statistics)(b, p, kp, variant) for b in blocks]
    ll, stats = dask.compute(_reduce(parts))[0]
    return ll, stats


def em(X, p: ref.Params, *, reg_covar: float, max_iter: int, tol: float, min_iter: int = 1,
       variant: str | None = None, lower_bound: float = -np.inf,
       ) -> tuple[ref.Params, list[float], bool]:
    """EM iterations on the persisted, event-chunked dask array ``X`` from ``p``.

    Returns (parameters, lower bound of each iteration, converged).  Stops when
    the lower bound changes by less than ``tol`` after ``min_iter`` iterations
    (``lower_bound``: the one before the first iteration, for warm starts).
    """
    n = X.shape[0]
    blocks = list(X.to_delayed()[:, 0])
    lb, lbs, converged = lower_bound, [], False
    for it in range(1, max_iter + 1):
        prev = lb
        ll, stats = _statistics(blocks, p, variant)
        if not np.isfinite(ll):
            raise ValueError("the log-likelihood is not finite: X has values too large "
                             "for the current parameters (scale the input data)")
        lb = ll / n
        p = params_from_stats(stats, p, reg_covar, X.dtype)
        lbs.append(lb)
        if it >= min_iter and abs(lb - prev) < tol:
            converged = True
            break
    return p, lbs, converged


def fit(estimator, X, *, variant: str | None = None):
    """Fit a :class:`specializers.gmm.GaussianMixture` to the dask array ``X``; returns it.

    Initialisation is scikit-learn's, on all of ``X`` when it has at most
    ``INIT_SAMPLE`` events (so the fit equals ``estimator.fit(X.compute())``) and
    on a random sample otherwise; ``*_init`` parameters are honoured.  ``variant``
    forces one generated kernel variant (default: each worker's tuned choice).
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils import check_random_state

    X = _prepare(X, estimator.n_components)
    variant = variant or getattr(estimator, "_asp_variant", None)
    random_state = check_random_state(estimator.random_state)
    sample = _sample(X, random_state)
    estimator._check_parameters(sample, xp=np)
    do_init = not (estimator.warm_start and hasattr(estimator, "converged_"))
    n_init = estimator.n_init if do_init else 1
    best_lb, best, best_iter, best_lbs, best_conv = -np.inf, None, 0, [], False
    for _ in range(n_init):
        if do_init:
            estimator._initialize_parameters(sample, random_state, xp=np)
        p = estimator._params()
        if estimator.max_iter == 0:
            best, best_iter = p, 0
            continue
        p, lbs, converged = em(X, p, reg_covar=estimator.reg_covar,
                               max_iter=estimator.max_iter, tol=estimator.tol, variant=variant,
                               lower_bound=-np.inf if do_init else estimator.lower_bound_)
        if lbs[-1] > best_lb or best_lb == -np.inf:
            best_lb, best, best_iter, best_lbs, best_conv = lbs[-1], p, len(lbs), lbs, converged
    if not best_conv and estimator.max_iter > 0:
        warnings.warn("Best performing initialization did not converge. Try different init "
                      "parameters, or increase max_iter, tol, or check for degenerate data.",
                      ConvergenceWarning, stacklevel=2)
    if best.covariances is None:  # max_iter=0 from precisions_init, as in memory
        estimator.weights_, estimator.means_ = best.weights, best.means
        estimator.precisions_cholesky_ = best.prec_chol
    else:
        estimator._store(best)
    estimator._set_parameters(estimator._get_parameters(), xp=np)
    estimator.converged_ = best_conv
    estimator.n_iter_, estimator.lower_bound_, estimator.lower_bounds_ = \
        best_iter, best_lb, best_lbs
    estimator.n_features_in_ = X.shape[1]
    return estimator


def train(gmm, X, max_iters: int = 100, min_iters: int = 1, *,
          variant: str | None = None) -> float:
    """:meth:`specializers.gmm.GMM.train` on a dask array; returns the total
    log-likelihood of ``X`` under the trained mixture."""
    max_iters, min_iters = gmm._check_iters(max_iters, min_iters)
    X = _prepare(X, gmm.M)
    if X.shape[1] != gmm.D:
        raise ValueError(f"X: has {X.shape[1]} features per event, but the model has "
                         f"D={gmm.D}")
    if gmm.components.means is None or gmm.components.covars is None:
        gmm._initial(_sample(X, np.random.default_rng(0)))
    elif gmm.components.weights is None:
        gmm.components.weights = np.full(gmm.M, 1.0 / gmm.M)
    p = gmm._to_params(X.dtype)
    p, _, _ = em(X, p, reg_covar=gmm.reg_covar, max_iter=max_iters, tol=gmm.tol,
                 min_iter=min_iters, variant=variant or gmm.variant)
    gmm._from_params(p)
    gmm.last_variant = variant or gmm.variant  # None: each worker's tuned choice
    parts = [dask.delayed(_loglik)(b, p) for b in X.to_delayed()[:, 0]]
    return float(dask.compute(_reduce(parts))[0])


def predict(estimator, X):
    """Component labels of the dask array ``X`` (lazy; one ``predict`` per chunk)."""
    if not isinstance(X, da.Array) or X.ndim != 2:
        raise TypeError("X: expected a 2-D dask array")
    X = X.rechunk({1: -1})
    return X.map_blocks(_labels, estimator, drop_axis=1, dtype=np.int64)
