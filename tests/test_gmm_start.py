"""GMM from a real start: the initial M-step, the first EM iteration from
scikit-learn's ``random_from_data`` initialisation (tiny covariances, log
densities near -1e9, where subnormal arithmetic once made it 13x slower than
later iterations), and the final E-step of ``fit_predict``.

The oracle is ``sklearn.mixture.GaussianMixture`` with the same options and
``random_state``; this file checks agreement, never timing.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture
from sklearn.mixture import _gaussian_mixture

from specializers.gmm import VARIANTS, GaussianMixture
from specializers.gmm import kernels as K
from specializers.gmm import reference as ref
from specializers.gmm import stepper as S

M, D, N = 4, 8, 2000
CVTYPES = ("full", "diag", "tied", "spherical")
ATTRS = ("weights_", "means_", "covariances_", "precisions_cholesky_")


def _data(dtype=np.float64, seed=11):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(M, D))
    labels = rng.integers(0, M, N)
    X = centers[labels] + rng.normal(size=(N, D)) * rng.uniform(0.5, 2.0, size=(M, D))[labels]
    return X.astype(dtype)


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def _pair(X, variant=None, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(M, random_state=0, **kw).fit(X)
        ours = GaussianMixture(M, random_state=0, **kw)
        ours._asp_variant = variant
        ours.fit(X)
    return ours, sk


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("cvtype", CVTYPES)
def test_first_iteration_from_random_from_data_matches_sklearn(cvtype, variant):
    assert K.threads_for(N, M, D) >= 2  # the threaded path
    X = _data()
    for iters in (1, 2):
        ours, sk = _pair(X, variant, covariance_type=cvtype, init_params="random_from_data",
                         max_iter=iters, tol=0.0)
        for name in ATTRS:
            assert _rel(getattr(ours, name), getattr(sk, name)) <= 1e-6, (iters, name)
        assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-9)


def test_responsibilities_from_tiny_covariances_are_zero_or_normal():
    """The kernels flush responsibilities below exp(-600) to exactly zero, so
    that no product with them is subnormal (slow on x86)."""
    X = _data()
    init = SkGaussianMixture(M, covariance_type="full", max_iter=0,
                             init_params="random_from_data", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        init.fit(X)
    p = ref.Params("full", init.weights_, init.means_, init.covariances_,
                   init.precisions_cholesky_)
    assert ref.weighted_log_prob(X, p).min() < -1e6  # the start the issue is about
    work = np.empty((N, M))
    stats = np.empty((M, 1 + D + D * D))
    K.kernel("em", "full", M, D).run_variant("components", X, *S.kernel_params(p),
                                             K.threads_for(N, M, D), work, stats, np.empty(1))
    tiny = work[work != 0.0]
    assert tiny.size and tiny.min() >= math.exp(-600) / M
    np.testing.assert_allclose(work, np.exp(ref.e_step(X, p)[1]), rtol=1e-9, atol=1e-200)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
@pytest.mark.parametrize("cvtype", CVTYPES)
def test_initial_m_step_matches_sklearn_without_its_code(cvtype, init_params, dtype,
                                                         monkeypatch):
    """The M-step of the initialisation never runs scikit-learn's NumPy code
    (0.26 s at N=200k, D=M=16, full); full, diag and spherical run the
    generated kernel, tied (two matrix products) the NumPy reference."""
    X = _data(dtype)
    kw = dict(covariance_type=cvtype, init_params=init_params, max_iter=0)
    starts = []
    initialize = SkGaussianMixture._initialize
    monkeypatch.setattr(SkGaussianMixture, "_initialize",
                        lambda self, X, resp: (starts.append(resp.copy()),
                                               initialize(self, X, resp))[1])
    _, sk = _pair(X, **kw)
    monkeypatch.setattr(SkGaussianMixture, "_initialize", initialize)
    # scikit-learn's own M-step of the same start in float64: the exact answer that its
    # float32 one (diag: E[x^2] - 2 E[x]mu + mu^2, with cancellation) misses by up to 2e-5.
    exact = SkGaussianMixture(M, covariance_type=cvtype)
    exact._initialize(X.astype(np.float64), starts[0].astype(np.float64))

    def numpy_m_step(*args, **kwargs):
        raise AssertionError("the initial M-step ran NumPy code")

    monkeypatch.setattr(_gaussian_mixture, "_estimate_gaussian_parameters", numpy_m_step)
    if cvtype != "tied":
        monkeypatch.setattr(ref, "estimate_parameters", numpy_m_step)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GaussianMixture(M, random_state=0, **kw).fit(X)
    tol = 1e-10 if dtype == np.float64 else 1e-5
    for name in ATTRS:
        mine, theirs, truth = (getattr(m, name) for m in (ours, sk, exact))
        assert mine.dtype == theirs.dtype, name
        # Agreement with scikit-learn, or (float32) at least as close to the exact M-step.
        assert _rel(mine, theirs) <= tol or (
            dtype == np.float32 and _rel(mine, truth) <= _rel(theirs, truth)), \
            (name, _rel(mine, theirs), _rel(mine, truth), _rel(theirs, truth))


@pytest.mark.parametrize("given", ["weights_init", "means_init", "precisions_init"])
def test_initial_m_step_keeps_what_the_user_gave(given):
    X = _data()
    rng = np.random.default_rng(2)
    start = {"weights_init": rng.dirichlet(np.ones(M)),
             "means_init": X[rng.choice(N, M, replace=False)],
             "precisions_init": np.stack([np.eye(D) * rng.uniform(0.5, 2.0) for _ in range(M)])}
    kw = dict(covariance_type="full", init_params="random", max_iter=2, tol=0.0,
              **{given: start[given]})
    ours, sk = _pair(X, **kw)
    for name in ATTRS:
        assert _rel(getattr(ours, name), getattr(sk, name)) <= 1e-6, name


@pytest.mark.parametrize("cvtype", ["full", "diag"])
def test_fit_predict_labels_match_sklearn(cvtype):
    assert K.threads_for(N, M, D) >= 2
    X = _data()
    kw = dict(covariance_type=cvtype, init_params="random_from_data", max_iter=20,
              random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        labels = GaussianMixture(M, **kw).fit_predict(X)
        sk_labels = SkGaussianMixture(M, **kw).fit_predict(X)
        fitted = GaussianMixture(M, **kw).fit(X)
        sk_fitted = SkGaussianMixture(M, **kw).fit(X)
    np.testing.assert_array_equal(labels, sk_labels)
    np.testing.assert_array_equal(fitted.predict(X), labels)
    np.testing.assert_allclose(fitted.score_samples(X), sk_fitted.score_samples(X), rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cvtype", CVTYPES)
def test_precision_cholesky_matches_sklearn(cvtype, dtype):
    """The M-step's finish, batched in NumPy (no per-component BLAS calls)."""
    rng = np.random.default_rng(4)
    A = rng.normal(size=(M, D, 3 * D))
    cov = {"full": A @ A.transpose(0, 2, 1) / (3 * D) + 1e-6 * np.eye(D),
           "tied": A[0] @ A[0].T / (3 * D), "diag": rng.uniform(1e-6, 4.0, (M, D)),
           "spherical": rng.uniform(1e-6, 4.0, M)}[cvtype].astype(dtype)
    ours = ref.precision_cholesky(cov, cvtype)
    sk = _gaussian_mixture._compute_precision_cholesky(cov, cvtype)
    assert ours.dtype == sk.dtype
    assert _rel(ours, sk) <= (1e-12 if dtype == np.float64 else 1e-5)
    if cvtype in ("full", "tied"):
        bad = cov.copy()
        (bad[1] if cvtype == "full" else bad)[2, 2] = -1.0
        with pytest.raises(ValueError, match="ill-defined empirical covariance"):
            ref.precision_cholesky(bad, cvtype)
        with pytest.raises(ValueError, match="ill-defined empirical covariance"):
            _gaussian_mixture._compute_precision_cholesky(bad, cvtype)
