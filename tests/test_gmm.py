"""GMM specializer: every variant and the NumPy reference against scikit-learn.

The oracle is ``sklearn.mixture.GaussianMixture`` started from the same
parameters (weights_init/means_init/precisions_init) and run for the same
number of iterations (tol=0), for every covariance type and both dtypes.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from asp.tune import calls_to_decide
from specializers.gmm import VARIANTS, GaussianMixture
from specializers.gmm import kernels as K
from specializers.gmm import reference as ref
from specializers.gmm import stepper as S

M, D, N, ITERS = 4, 3, 400, 6
CVTYPES = ("full", "diag", "tied", "spherical")
TOL = {np.float64: 1e-6, np.float32: 1e-3}


def _data(dtype, seed=3):
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(M, D)) + 5.0
    X = np.concatenate([c + rng.normal(size=(N // M, D)) * rng.uniform(0.5, 1.5, D)
                        for c in centers])
    return rng.permutation(X).astype(dtype)


def _start(X, cvtype):
    """Deliberately rough starting parameters shared by sklearn and asp."""
    rng = np.random.default_rng(7)
    init = SkGaussianMixture(M, covariance_type=cvtype, max_iter=0,
                             init_params="random_from_data", random_state=0).fit(X)
    # in X's dtype: sklearn promotes its float32 iterates to float64 otherwise
    return dict(weights_init=rng.dirichlet(np.full(M, 5.0)).astype(X.dtype),
                means_init=init.means_.astype(X.dtype),
                precisions_init=init.precisions_.astype(X.dtype))


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300)


def _assert_agree(ours, sk, tol):
    assert ours.n_iter_ == sk.n_iter_
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        assert getattr(ours, name).dtype == getattr(sk, name).dtype, name
        assert _rel(getattr(ours, name), getattr(sk, name)) < tol, name
    assert abs(ours.lower_bound_ - sk.lower_bound_) <= tol * abs(sk.lower_bound_)


def _fit_pair(X, cvtype, variant, iters=ITERS):
    start = _start(X, cvtype)
    kw = dict(covariance_type=cvtype, tol=0.0, max_iter=iters, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sk = SkGaussianMixture(M, **kw).fit(X)
        ours = GaussianMixture(M, **kw)
        ours._asp_variant = variant
        ours.fit(X)
    return ours, sk


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cvtype", CVTYPES)
def test_reference_em_matches_sklearn_step_for_step(cvtype, dtype):
    X = _data(dtype)
    start = _start(X, cvtype)
    p = ref.Params(cvtype, start["weights_init"].astype(dtype), start["means_init"].astype(dtype),
                   None, ref.precision_cholesky_from_precisions(
                       start["precisions_init"].astype(dtype), cvtype))
    stepper = S.EMStepper(M, D, cvtype, dtype, python=True)
    for k in range(1, 4):
        lb, p = stepper.step(X, p, 1e-6)
        _, sk = _fit_pair(X, cvtype, None, iters=k)
        assert _rel(p.means, sk.means_) < TOL[dtype] / 100
        assert _rel(p.covariances, sk.covariances_) < TOL[dtype] / 100
        assert abs(lb - sk.lower_bound_) <= TOL[dtype] / 100 * abs(sk.lower_bound_)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("cvtype", CVTYPES)
def test_every_variant_matches_sklearn(cvtype, dtype, variant):
    assert K.threads_for(N, M, D) >= 2  # small data, but the threaded path
    X = _data(dtype)
    ours, sk = _fit_pair(X, cvtype, variant)
    _assert_agree(ours, sk, TOL[dtype])
    np.testing.assert_allclose(ours.score_samples(X), sk.score_samples(X),
                               rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("variant", VARIANTS)
def test_variant_handles_a_ragged_last_block(variant, threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", str(threads))
    assert K.threads_for(397, M, D) == threads
    # 397 events: not a multiple of any block size, odd split over threads
    X = _data(np.float64)[:397]
    ours, sk = _fit_pair(X, "full", variant, iters=3)
    _assert_agree(ours, sk, 1e-6)


def test_tuned_fit_matches_sklearn_and_predicts_alike():
    X = _data(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GaussianMixture(M, covariance_type="full", random_state=0).fit(X)
        sk = SkGaussianMixture(M, covariance_type="full", random_state=0).fit(X)
    _assert_agree(ours, sk, 1e-6)
    assert ours.converged_ == sk.converged_
    np.testing.assert_array_equal(ours.predict(X), sk.predict(X))
    np.testing.assert_allclose(ours.predict_proba(X), sk.predict_proba(X), atol=1e-8)
    assert ours.score(X) == pytest.approx(sk.score(X), rel=1e-9)
    assert ours.bic(X) == pytest.approx(sk.bic(X), rel=1e-9)
    assert ours.aic(X) == pytest.approx(sk.aic(X), rel=1e-9)


@pytest.mark.parametrize("cvtype", CVTYPES)
def test_events_of_the_other_dtype_are_scored_in_numpys_common_type(cvtype):
    """A float64 model scores float32 events in float64, as scikit-learn's NumPy does
    (it returned float32, computed in float32: 1e-6 off); a float32 model scores
    float64 events in float64.  Every E-step method agrees with the float64 events."""
    X = _data(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for fit_dtype, other in ((np.float64, np.float32), (np.float32, np.float64)):
            ours = GaussianMixture(M, covariance_type=cvtype, random_state=0).fit(
                X.astype(fit_dtype))
            sk = SkGaussianMixture(M, covariance_type=cvtype, random_state=0).fit(
                X.astype(fit_dtype))
            Y = X.astype(other)
            exact = Y.astype(np.float64)  # the events' own values, scored in float64
            for method in ("score_samples", "predict_proba"):
                got = getattr(ours, method)(Y)
                assert got.dtype == getattr(sk, method)(Y).dtype == np.float64, method
                np.testing.assert_allclose(got, getattr(ours, method)(exact), rtol=1e-12,
                                           atol=1e-12, err_msg=method)
            np.testing.assert_array_equal(ours.predict(Y), ours.predict(exact))
            assert ours.score(Y) == pytest.approx(ours.score(exact), rel=1e-12)
            # (scikit-learn itself computes float32 events partly in float32: 1e-6 off)
            np.testing.assert_allclose(ours.score_samples(Y), sk.score_samples(exact),
                                       rtol=TOL[fit_dtype])


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_init_params_follow_sklearn(init_params):
    X = _data(np.float64)
    kw = dict(covariance_type="diag", init_params=init_params, random_state=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GaussianMixture(M, **kw).fit(X)
        sk = SkGaussianMixture(M, **kw).fit(X)
        _assert_agree(ours, sk, 1e-6)
        # With several starts that reach the same optimum under permuted labels, the
        # pick between them is a rounding-level tie: compare label-free quantities.
        ours = GaussianMixture(M, n_init=3, **kw).fit(X)
        sk = SkGaussianMixture(M, n_init=3, **kw).fit(X)
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-6)
    np.testing.assert_allclose(np.sort(ours.weights_), np.sort(sk.weights_), rtol=1e-6)


def test_online_tuning_picks_and_remembers_a_winner(fresh_cache, monkeypatch):
    from asp.tune import remembered

    monkeypatch.setattr(K, "_kernels", {})  # a new process, with an empty cache
    X = _data(np.float64)
    p = ref.Params("diag", np.full(M, 1 / M), X[:M], None, np.ones((M, D)))
    stepper = S.EMStepper(M, D, "diag", np.float64)
    # every variant built and checked before the fit
    stepper.em.specialization(*stepper.em_args(X, S.kernel_params(p)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        GaussianMixture(M, covariance_type="diag", tol=0.0,
                        max_iter=calls_to_decide(len(VARIANTS)), random_state=0).fit(X)
    rows = remembered("gmm.em")
    assert len(rows) == 1 and rows[0]["variant"] in VARIANTS
    assert f"gmm.em[diag,M={M},D={D}]" in rows[0]["kernel"]
    assert f"float64 N~{K.n_bucket(N)[0]} threads=" in rows[0]["signature"]
    # A new process reads the winner back (from the warm-start record and the tuning
    # database), unless the decision was provisional.
    provisional = rows[0]["timings"]["_decision"]["provisional"]
    monkeypatch.setattr(K, "_kernels", {})
    again = S.EMStepper(M, D, "diag", np.float64)
    again.step(X, p, 1e-6)
    assert again.em.specialization(*again.em_args(X, S.kernel_params(p))).plan is None
    assert (again.last_variant == rows[0]["variant"]) is not provisional


def test_the_template_renders_each_variant_with_openmp():
    spec = K.EMKernel("full", 4, 3)
    X, mu, P, logc = K.check_problem("full", 4, 3, np.float32, 10)
    args = (X, mu, P, logc, 2, np.zeros((10, 4)), np.zeros((4, spec.nstat)), np.zeros(1))
    plan = spec.plan(spec.prepare(args))
    for v in plan.variants:
        assert v.function.name == f"gmm_em_{v.name}"
        assert "#pragma omp parallel" in v.function.body.body[0].text
    assert "typedef float real_t;" in plan.preamble
    diag = K.EMKernel("diag", 4, 3)
    X, mu, P, logc = K.check_problem("diag", 4, 3, np.float64, 10)
    args = (X, mu, P, logc, 2, np.zeros((10, 4)), np.zeros((4, diag.nstat)), np.zeros(1))
    # the diag kernel carries no D x D statistics
    assert "#define DD D\n" in diag.plan(diag.prepare(args)).preamble
