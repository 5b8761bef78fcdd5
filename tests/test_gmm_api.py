"""GMM specializer: the published GMM API, sklearn conventions, bad input, fallback."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.mixture import GaussianMixture as SkGaussianMixture

from asp.errors import AspFallbackWarning, CompileError
from asp.runtime import build as building
from specializers.gmm import GMM, GaussianMixture
from specializers.gmm import kernels as K
from specializers.gmm import stepper as S

CENTERS = np.array([[0.0, 0.0, 0.0], [10.0, 10.0, 0.0], [-10.0, 10.0, 5.0]])


@pytest.fixture
def blobs():
    rng = np.random.default_rng(11)
    X = np.concatenate([c + rng.normal(size=(150, 3)) for c in CENTERS])
    labels = np.repeat(np.arange(3), 150)
    perm = rng.permutation(len(X))
    return X[perm], labels[perm]


# -- the published GMM API ----------------------------------------------------------------
@pytest.mark.parametrize("cvtype", ["diag", "full"])
def test_gmm_trains_and_matches_its_python_twin(blobs, cvtype):
    X, labels = blobs
    a, b = GMM(3, 3, cvtype=cvtype), GMM(3, 3, cvtype=cvtype)
    ll_a = a.train(X, max_iters=30, min_iters=5)
    ll_b = b.train_using_python(X, max_iters=30, min_iters=5)
    assert np.isfinite(ll_a) and ll_a == pytest.approx(ll_b, rel=1e-9)
    c = a.components
    assert c.means.shape == (3, 3) and c.covars.shape == (3, 3, 3) and c.weights.shape == (3,)
    np.testing.assert_allclose(a.get_all_component_means(), b.get_all_component_means(),
                               rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(a.get_all_component_full_covariance(),
                               b.get_all_component_full_covariance(), rtol=1e-7, atol=1e-9)
    assert a.get_all_component_weights().sum() == pytest.approx(1.0)
    assert a.get_all_component_diag_covariance().shape == (3, 3)
    if cvtype == "diag":
        off = c.covars - np.einsum("ki,ij->kij", a.get_all_component_diag_covariance(), np.eye(3))
        assert not off.any()
    # every true cluster is recovered by one component
    pred = a.predict(X)
    np.testing.assert_array_equal(pred, a.predict_using_python(X))
    for k in range(3):
        assert len(np.unique(pred[labels == k])) == 1
    assert sorted(np.round(c.means[:, 0]).astype(int)) == [-10, 0, 10]


def test_gmm_starts_from_given_parameters(blobs):
    X, _ = blobs
    means = CENTERS + 0.5
    covars = np.repeat(np.eye(3)[None], 3, axis=0)
    g = GMM(3, 3, means=means, covars=covars, weights=[0.2, 0.3, 0.5], cvtype="full")
    np.testing.assert_array_equal(g.predict(CENTERS), [0, 1, 2])
    g.train(X, max_iters=1, min_iters=1)
    assert np.abs(g.components.means - CENTERS).max() < 0.5


def test_gmm_float32(blobs):
    X, _ = blobs
    a, b = GMM(3, 3, cvtype="full"), GMM(3, 3, cvtype="full")
    la = a.train(X.astype(np.float32), max_iters=10)
    lb = b.train_using_python(X.astype(np.float32), max_iters=10)
    assert la == pytest.approx(lb, rel=1e-3)
    np.testing.assert_allclose(a.components.means, b.components.means, rtol=1e-3, atol=1e-3)


def test_collapsing_component_stays_finite():
    # 40 copies of one point and one far-away component: the component collapses
    rng = np.random.default_rng(0)
    X = np.concatenate([np.ones((40, 2)), rng.normal(size=(60, 2)) + 20.0])
    means = np.array([[1.0, 1.0], [20.0, 20.0], [-1e3, 1e3]])
    for cvtype in ("diag", "full"):
        g = GMM(3, 2, means=means, cvtype=cvtype)
        ll = g.train(X, max_iters=20)
        c = g.components
        assert np.isfinite(ll)
        for arr in (c.means, c.covars, c.weights):
            assert np.isfinite(arr).all()
        assert np.all(np.linalg.eigvalsh(c.covars) > 0)


# -- sklearn conventions ------------------------------------------------------------------
def test_sklearn_conventions(blobs):
    X, _ = blobs
    est = GaussianMixture(n_components=3, covariance_type="tied", reg_covar=1e-5)
    params = est.get_params()
    assert params["covariance_type"] == "tied" and params["reg_covar"] == 1e-5
    c = clone(est.set_params(max_iter=50, random_state=0))
    assert isinstance(c, GaussianMixture) and c.max_iter == 50
    assert c.fit(X) is c and c.converged_ and c.n_iter_ >= 1
    sample, comp = c.sample(20)
    assert sample.shape == (20, 3) and comp.shape == (20,)
    sk = SkGaussianMixture(n_components=3, covariance_type="tied", reg_covar=1e-5,
                           max_iter=50, random_state=0).fit(X)
    np.testing.assert_array_equal(c.predict(X), sk.predict(X))
    np.testing.assert_allclose(c.precisions_, sk.precisions_, rtol=1e-6)


def test_warm_start_continues(blobs):
    X, _ = blobs
    kw = dict(covariance_type="full", max_iter=2, tol=0.0, random_state=0, warm_start=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = GaussianMixture(3, **kw).fit(X).fit(X)
        sk = SkGaussianMixture(3, **kw).fit(X).fit(X)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-9)
    assert ours.lower_bound_ == pytest.approx(sk.lower_bound_, rel=1e-9)


# -- bad input ----------------------------------------------------------------------------
@pytest.mark.parametrize("bad, exc, words", [
    (np.array([[0.0, np.nan, 1.0]] * 10), ValueError, "NaN"),
    (np.array([[0.0, np.inf, 1.0]] * 10), ValueError, "infinity"),
    (np.zeros(30), ValueError, "2-D"),
    (np.zeros((2, 3)), ValueError, "at least 3"),
    (np.zeros((10, 4)), ValueError, "D=3"),
    (np.array([["a", "b", "c"]] * 10), TypeError, "numeric"),
    (np.array([[object()] * 3] * 10), TypeError, "numeric"),
])
def test_gmm_bad_input(bad, exc, words):
    with pytest.raises(exc, match=words) as info:
        GMM(3, 3).train(bad)
    assert "X" in str(info.value)


@pytest.mark.parametrize("bad, exc", [
    (np.array([[0.0, np.nan]] * 10), ValueError),
    (np.zeros(10), ValueError),
    (np.zeros((2, 2)), ValueError),
    (np.array([["a", "b"]] * 10), TypeError),
])
def test_estimator_bad_input(bad, exc):
    with pytest.raises(exc, match="X"):
        GaussianMixture(3).fit(bad)


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="cvtype"):
        GMM(2, 2, cvtype="diagonal")
    with pytest.raises(ValueError, match="means"):
        GMM(2, 2, means=np.zeros((3, 2)))
    with pytest.raises(TypeError, match="M"):
        GMM(2.5, 2)
    with pytest.raises(ValueError, match="min_iters"):
        GMM(2, 2).train(np.zeros((10, 2)), max_iters=2, min_iters=3)
    with pytest.raises(ValueError, match="variant"):
        S.EMStepper(2, 2, "full", np.float64, variant="gpu")


# -- fallback -----------------------------------------------------------------------------
def test_disabled_jit_runs_python_silently(blobs, monkeypatch):
    """ASP_DISABLE_JIT is a request, not a failure: no warning (as for every kernel)."""
    X, _ = blobs
    ref_ll = GMM(3, 3, cvtype="full").train_using_python(X, max_iters=5)
    monkeypatch.setenv("ASP_DISABLE_JIT", "1")
    # As set when a process starts: no kernel, and so no hot entry, exists yet (an entry
    # already serving calls keeps serving them, as for every kernel).
    monkeypatch.setattr(K, "_kernels", {})
    g = GMM(3, 3, cvtype="full")
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        ll = g.train(X, max_iters=5)
    assert not [w for w in record if issubclass(w.category, AspFallbackWarning)]
    assert ll == ref_ll and g.last_variant == "python"


def _broken_build(*args, **kwargs):
    raise CompileError("the C compiler rejected the generated code: simulated")


def test_compile_failure_falls_back_once_or_raises_when_strict(blobs, fresh_cache,
                                                               monkeypatch):
    X, _ = blobs
    monkeypatch.setattr(building, "build", _broken_build)
    monkeypatch.setattr(K, "_kernels", {})
    monkeypatch.setattr(K, "_groups", {})
    kw = dict(covariance_type="diag", max_iter=5, random_state=0)
    with pytest.warns(AspFallbackWarning) as record:
        ours = GaussianMixture(3, **kw).fit(X)
        labels = ours.predict(X)  # another kernel of the same mixture: no second warning
    falls = [w for w in record if issubclass(w.category, AspFallbackWarning)]
    assert len(falls) == 1 and "simulated" in str(falls[0].message)
    sk = SkGaussianMixture(3, **kw).fit(X)
    np.testing.assert_allclose(ours.means_, sk.means_, rtol=1e-12)
    np.testing.assert_array_equal(labels, sk.predict(X))
    monkeypatch.setenv("ASP_STRICT", "1")
    with pytest.raises(CompileError, match="simulated"):
        GaussianMixture(3, **kw).fit(X)


def test_large_dimension_runs_natively_and_matches_python():
    """D=300 once ran Python (its buffers did not fit the stack): now native, no warning."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(40, 300))
    g = GMM(2, 300, cvtype="diag")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AspFallbackWarning)
        ll = g.train(X, max_iters=2)
    assert g.last_variant != "python"
    assert ll == pytest.approx(GMM(2, 300, cvtype="diag").train_using_python(X, max_iters=2),
                               rel=1e-9)
