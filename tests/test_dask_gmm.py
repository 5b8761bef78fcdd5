"""GMM EM on dask arrays across a local two-process cluster: the fit equals the
in-memory one within 1e-10 relative for the same initial parameters."""
from __future__ import annotations

import os

import numpy as np
import pytest
from conftest import environ_restored

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from specializers.gmm import GMM, GaussianMixture  # noqa: E402
from specializers.gmm import reference as ref  # noqa: E402
from specializers.gmm.dask import chunk_statistics, fit, predict, train  # noqa: E402
from specializers.gmm.stepper import kernel_params  # noqa: E402

RTOL = 1e-10


@pytest.fixture(scope="module")
def client(_asp_cache):
    env = {"ASP_CACHE_DIR": str(_asp_cache), "ASP_TUNE": "off", "OMP_NUM_THREADS": "1"}
    with environ_restored():
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, env=env)
        c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(3)
    X = np.vstack([rng.normal(c, s, (600, 3)) for c, s in ((0, 0.6), (4, 1.0), (-4, 0.8))])
    return X[rng.permutation(len(X))]


def _close(a, b, what):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = np.maximum(np.abs(a), 1e-3 * np.abs(a).max())
    assert np.max(np.abs(a - b) / scale) <= RTOL, what


@pytest.mark.parametrize("cvtype", ["full", "diag", "tied", "spherical"])
def test_estimator_fit_equals_in_memory(client, data, cvtype):
    opts = dict(covariance_type=cvtype, random_state=0, max_iter=25, tol=1e-9)
    mem = GaussianMixture(3, **opts)
    mem._asp_variant = "events_b1"
    mem.fit(data)
    dist = fit(GaussianMixture(3, **opts), da.from_array(data, chunks=(500, 3)),
               variant="events_b1")
    for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_", "lower_bound_"):
        _close(getattr(mem, attr), getattr(dist, attr), attr)
    assert dist.n_iter_ == mem.n_iter_ and dist.converged_ == mem.converged_
    np.testing.assert_array_equal(predict(dist, da.from_array(data, chunks=700)).compute(),
                                  mem.predict(data))


def test_fit_leaves_a_persisted_x_where_it_is(client, data):
    """Initialising from all of a small X gathers its chunks: compute() would
    concatenate them on one worker, whose copies the memory manager may keep in
    place of the originals (every iteration then runs on that worker)."""
    from specializers.gmm.dask import _sample

    X = da.from_array(data, chunks=(300, 3)).persist()
    distributed.wait(X)
    where = client.who_has(X)
    assert len({w for ws in where.values() for w in ws}) == 2
    # Checked at once: Dask's memory manager drops extra copies every few seconds.
    np.testing.assert_array_equal(_sample(X, np.random.default_rng(0)), data)
    assert client.who_has(X) == where
    fit(GaussianMixture(3, random_state=0, max_iter=3), X)
    assert {k: set(v) for k, v in client.who_has(X).items()} == \
        {k: set(v) for k, v in where.items()}


def test_published_train_equals_in_memory(client, data):
    means = data[[0, 1, 2]]
    a = GMM(3, 3, means=means, cvtype="full")
    la = a.train(data, max_iters=15)
    b = GMM(3, 3, means=means, cvtype="full")
    lb = train(b, da.from_array(data, chunks=(450, 3)), max_iters=15)
    _close(la, lb, "log-likelihood")
    _close(a.components.means, b.components.means, "means")
    _close(a.components.covars, b.components.covars, "covars")
    _close(a.components.weights, b.components.weights, "weights")


def _numpy_statistics(X: np.ndarray, p: ref.Params):
    """A chunk's statistics from scikit-learn's E-step formulas (centred on the old
    means, the whole of each D x D block)."""
    lower, log_resp = ref.e_step(X, p)
    r = np.exp(log_resp)
    m, d = p.means.shape
    rows = []
    for k in range(m):
        y = X - p.means[k]
        second = ((r[:, k, None] * y).T @ y).ravel() if p.cvtype == "full" \
            else r[:, k] @ (y * y)
        rows.append(np.concatenate([[r[:, k].sum()], r[:, k] @ y, second]))
    return lower * X.shape[0], np.array(rows)


@pytest.mark.parametrize("cvtype", ["full", "diag"])
def test_chunk_statistics_match_numpy(data, cvtype):
    gm = GaussianMixture(3, covariance_type=cvtype, random_state=1, max_iter=2).fit(data)
    p = ref.Params(cvtype, gm.weights_, gm.means_, gm.covariances_, gm.precisions_cholesky_)
    ll, stats = chunk_statistics(data[:400], p, kernel_params(p), None)
    ll_np, stats_np = _numpy_statistics(data[:400], p)
    assert ll == pytest.approx(ll_np, rel=1e-12)
    d = data.shape[1]
    if cvtype == "full":  # the kernels fill only the upper half of each d x d block
        iu = np.triu_indices(d)
        flat = np.ravel_multi_index(iu, (d, d))
        stats, stats_np = stats[:, np.r_[0:1 + d, 1 + d + flat]], \
            stats_np[:, np.r_[0:1 + d, 1 + d + flat]]
    np.testing.assert_allclose(stats, stats_np, rtol=1e-10, atol=1e-10)
    empty = chunk_statistics(data[:0], p, kernel_params(p), None)
    assert empty[0] == 0.0 and not empty[1].any()
    assert empty[1].shape == (3, 1 + d + (d * d if cvtype == "full" else d))


def test_bad_input_is_a_clear_error(client, data):
    with pytest.raises(TypeError, match="dask array"):
        fit(GaussianMixture(2), data)
    with pytest.raises(ValueError, match="2-D"):
        fit(GaussianMixture(2), da.ones(10, chunks=5))
    bad = data.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit(GaussianMixture(2, means_init=data[:2], random_state=0),
            da.from_array(bad, chunks=(500, 3)))


def test_workers_use_the_session_cache(client, _asp_cache):
    assert set(client.run(lambda: os.environ["ASP_CACHE_DIR"]).values()) == {str(_asp_cache)}
