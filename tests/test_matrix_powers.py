"""Matrix powers: every variant agrees with SciPy's repeated SpMVs; setup, tuning, bad input."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse as sp

from asp.tune import calls_to_decide
from specializers.matrix_powers import MatrixPowers, gram_matrix, partition
from specializers.matrix_powers.powers_kernel import TUNED_COUNT


def poisson1d(n):
    return sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(n, n), format="csr")


def poisson2d(m):
    T, eye = poisson1d(m), sp.identity(m)
    return (sp.kron(eye, T) + sp.kron(T, eye)).tocsr()


def poisson3d(m):
    T, eye = poisson1d(m), sp.identity(m)
    return (sp.kron(sp.kron(T, eye), eye) + sp.kron(sp.kron(eye, T), eye)
            + sp.kron(sp.kron(eye, eye), T)).tocsr()


def random_sparse(n, density, seed, empty_rows=0):
    A = sp.random(n, n, density=density, random_state=seed, format="lil")
    A.setdiag(1.0 + np.arange(n) % 3)
    A = A.tocsr()
    if empty_rows:
        keep = np.ones(n)
        keep[np.random.default_rng(seed).choice(n, empty_rows, replace=False)] = 0
        A = (sp.diags(keep) @ A).tocsr()
        A.eliminate_zeros()
    return A


def shuffled(A, seed):
    p = np.random.default_rng(seed).permutation(A.shape[0])
    return A[p][:, p].tocsr()


MATRICES = {
    "poisson1d": lambda: poisson1d(3000),
    "poisson2d": lambda: poisson2d(40),
    "poisson3d": lambda: poisson3d(12),
    "random": lambda: random_sparse(700, 0.01, 1),
    "empty_rows": lambda: random_sparse(500, 0.01, 2, empty_rows=40),
    "shuffled_poisson2d": lambda: shuffled(poisson2d(45), 3),
}


def reference(A, x, k, shifts=None, scales=None):
    out = [x]
    for j in range(k):
        y = A @ out[-1]
        if shifts is not None:
            y = y - shifts[j] * out[-1]
        if scales is not None:
            y = y * scales[j]
        out.append(y)
    return np.array(out)


def assert_close(V, ref, rtol):
    for j in range(ref.shape[0]):
        scale = max(np.abs(ref[j]).max(), 1e-300)
        err = np.abs(V[j] - ref[j]).max() / scale
        assert err <= rtol, f"level {j}: relative error {err:.3g} > {rtol}"


def all_variants(mp):
    # the tuned list plus small blocks and steps, so blocks, ghost runs and seams are exercised
    return [*mp.variants, "pa1-37", "pa1-300", "window-7"]


@pytest.mark.parametrize("name", sorted(MATRICES))
def test_every_variant_matches_scipy(name, rng, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # three window chunks, so two seams
    A = MATRICES[name]()
    k = 4
    mp = MatrixPowers(A, k)
    x = rng.standard_normal(A.shape[0])
    ref = reference(A, x, k)
    for v in all_variants(mp):
        V = np.zeros((k + 1, A.shape[0]))
        V[0] = x
        mp.powers(V, variant=v)
        assert_close(V, ref, 1e-12)
        assert np.array_equal(V[0], x)


def test_shuffled_matrix_is_reordered(rng):
    A = shuffled(poisson2d(45), 3)
    mp = MatrixPowers(A, 3)
    assert mp.perm is not None
    assert max(mp.bandwidth) < 200


@pytest.mark.parametrize("k", [1, 2, 6])
def test_newton_basis_matches_scipy(k, rng):
    A = poisson2d(30)
    shifts = rng.uniform(0, 8, k)
    scales = rng.uniform(0.2, 0.5, k)
    mp = MatrixPowers(A, k, basis="newton", shifts=shifts, scales=scales)
    x = rng.standard_normal(A.shape[0])
    ref = reference(A, x, k, shifts, scales)
    for v in all_variants(mp):
        V = mp.powers(np.vstack([x, np.zeros((k, x.size))]), variant=v)
        assert_close(V, ref, 1e-12)


def test_partial_basis_uses_first_levels(rng):
    A = poisson2d(25)
    shifts = np.array([1.0, 2.0, 3.0, 4.0])
    mp = MatrixPowers(A, 4, basis="newton", shifts=shifts)
    x = rng.standard_normal(A.shape[0])
    ref = reference(A, x, 2, shifts)
    for v in all_variants(mp):
        V = np.vstack([x, np.zeros((2, x.size))])
        mp.partial(V, variant=v)
        assert_close(V, ref, 1e-12)


def test_float32_int64_and_dense_inputs(rng):
    A = poisson2d(20)
    x = rng.standard_normal(A.shape[0])
    A32 = A.astype(np.float32)
    mp = MatrixPowers(A32, 3)
    V = mp(x.astype(np.float32))
    assert V.dtype == np.float32
    assert_close(V, reference(A32.astype(np.float64), x.astype(np.float32).astype(np.float64),
                              3), 1e-5)
    A64 = sp.csr_matrix((A.data, A.indices.astype(np.int64), A.indptr.astype(np.int64)),
                        shape=A.shape)
    assert_close(MatrixPowers(A64, 3)(x), reference(A, x, 3), 1e-12)
    assert_close(MatrixPowers(A.toarray(), 3)(x), reference(A, x, 3), 1e-12)
    assert_close(MatrixPowers(A.tocoo(), 3)(x), reference(A, x, 3), 1e-12)


def test_call_allocates_and_gram(rng):
    A = poisson1d(50)
    x = rng.standard_normal(50)
    V = MatrixPowers(A, 3)(x)
    assert V.shape == (4, 50) and np.array_equal(V[0], x)
    ref = reference(A, x, 3)
    assert_close(V, ref, 1e-12)
    # the oracle: exactly rounded dot products of SciPy's basis, not V V^T again
    oracle = np.array([[math.fsum(a * b) for b in ref] for a in ref])
    np.testing.assert_allclose(gram_matrix(V), oracle, rtol=1e-12)
    V32 = V.astype(np.float32)
    G32 = gram_matrix(V32)
    assert G32.dtype == np.float32
    np.testing.assert_allclose(G32, oracle, rtol=1e-5)


def test_gram_matrix_bad_input():
    with pytest.raises(ValueError, match="V must be 2-D"):
        gram_matrix(np.zeros(3))
    with pytest.raises(TypeError, match="V has dtype int64"):
        gram_matrix(np.zeros((2, 3), dtype=np.int64))


@pytest.mark.parametrize("n", [0, 1])
def test_tiny_matrices(n, rng):
    A = sp.csr_matrix(np.full((n, n), 3.0))
    x = rng.standard_normal(n)
    mp = MatrixPowers(A, 3)
    for v in all_variants(mp):
        V = np.zeros((4, n))
        V[0] = x
        mp.powers(V, variant=v)
        np.testing.assert_array_equal(V, reference(A, x, 3))


def test_setup_reported_and_ghost_overhead_small():
    mp = MatrixPowers(poisson2d(200), 4)
    assert mp.setup_seconds > 0
    pa1 = [v for v in mp.variants if v.startswith("pa1")]
    stats = mp.variant_stats(pa1[-1])
    assert 0 <= stats["ghost_overhead"] <= 0.25
    assert stats["redundant_work"] > 0
    assert mp.variant_stats("naive")["ghost_overhead"] == 0
    assert 0 <= mp.ghost_overhead <= 0.25


def tuning_of(mp, levels: int):
    """The runtime's tuning of ``mp``'s one-basis calls with ``levels`` levels."""
    V = np.zeros((levels + 1, mp.n), mp.dtype)
    k = mp._kernel(False, None)
    bucket = k.specializer.prepare((mp._problem, V, None)).bucket
    return k.specialization(mp._problem, V, None).tuning_for(bucket)


def test_tuning_picks_and_remembers(fresh_cache, rng):
    """The runtime tunes the tuned kernel's variants per bucket; a new process (here: the
    kernels forgotten, only the disk warm) reuses a separated winner at once and tunes a
    provisional one again."""
    from asp.jit import cache
    from specializers.matrix_powers import kernels

    kernels.forget()
    A = poisson2d(30)
    x = rng.standard_normal(A.shape[0])
    mp = MatrixPowers(A, 3)
    V = np.vstack([x, np.zeros((3, x.size))])
    ref = reference(A, x, 3)
    tuning_of(mp, 3)  # every variant built and checked before the clock runs
    for _ in range(calls_to_decide(TUNED_COUNT)):
        mp.powers(V)
        assert_close(V, ref, 1e-12)
    tuning = tuning_of(mp, 3)
    assert tuning.done and mp.chosen_variant(3) in mp.variants
    assert mp.last_variant == mp.chosen_variant(3)
    kernels.forget()
    cache._memory.clear()
    again = MatrixPowers(A, 3)
    again.powers(V)
    assert_close(V, ref, 1e-12)
    if tuning.provisional:  # no variant clearly faster: the next one tunes again
        assert tuning_of(again, 3).winner is None
    else:  # from disk, no re-timing
        assert tuning_of(again, 3).winner == tuning.winner
        assert again.chosen_variant(3) == mp.chosen_variant(3)
    kernels.forget()


def test_pa1_ghost_zones_match_dense_reachability():
    A = random_sparse(120, 0.02, 5, empty_rows=10)
    k, rows = 3, 25
    plan = partition.pa1_plan(A.indptr, A.indices, 120, k, rows)
    pattern = (A.toarray() != 0)
    for b in range(len(plan.blk) - 1):
        need = np.zeros(120, bool)
        need[plan.blk[b]:plan.blk[b + 1]] = True
        expected = {}
        for level in range(k - 1, 0, -1):
            need = need | pattern[need].any(axis=0)
            expected[level] = need.copy()
        for level in range(1, k):
            j = b * (k - 1) + level - 1
            got = np.zeros(120, bool)
            for q in range(plan.runptr[j], plan.runptr[j + 1]):
                got[plan.runs[2 * q]:plan.runs[2 * q + 1]] = True
            assert np.array_equal(got, expected[level]), (b, level)


def test_diagonal_runs_of_a_stencil_matrix():
    offsets, runs = partition.diagonal_runs(*(lambda A: (A.indptr, A.indices))(poisson2d(10)),
                                            100)
    assert offsets.tolist() == [-10, -1, 0, 1, 10]
    assert runs.size and (runs[1::2] > runs[0::2]).all()



@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_diagonal_values_are_the_run_rows_values_diagonal_by_diagonal(rng, dtype):
    """dval[j*n + r] is row r's j-th stored value for every row in a run (the kernels
    read only those), 0 for every other row; the values are CSR's own, not recomputed."""
    A = poisson2d(12).astype(dtype).tolil()
    A[40, 3] = 7.0  # two rows that break the pattern: runs end and start around them
    A[41, 41] = 0.0
    A = A.tocsr()
    A.data[:] = rng.uniform(-1, 1, A.data.size).astype(dtype)
    n = A.shape[0]
    offsets, runs = partition.diagonal_runs(A.indptr, A.indices, n)
    dval = partition.diagonal_values(A.indptr, A.data, n, offsets.size, runs)
    assert dval.dtype == dtype and dval.shape == (offsets.size * n,)
    in_run = np.zeros(n, bool)
    for start, end in runs.reshape(-1, 2):
        in_run[start:end] = True
    assert not in_run[40] and not in_run[41] and in_run.sum() > n // 2
    D = dval.reshape(offsets.size, n)
    for r in range(n):
        if in_run[r]:
            lo, hi = A.indptr[r], A.indptr[r + 1]
            assert np.array_equal(A.indices[lo:hi] - r, offsets)
            assert np.array_equal(D[:, r], A.data[lo:hi]), r
        else:
            assert not D[:, r].any(), r

# -- bad input -----------------------------------------------------------------

def test_bad_matrix_and_k():
    with pytest.raises(ValueError, match="A must be square"):
        MatrixPowers(sp.random(4, 5, density=0.5, format="csr"), 2)
    bad = poisson1d(5).tolil()
    bad[2, 2] = np.nan
    with pytest.raises(ValueError, match="A contains NaN"):
        MatrixPowers(bad.tocsr(), 2)
    with pytest.raises(ValueError, match="k must be >= 1"):
        MatrixPowers(poisson1d(5), 0)
    with pytest.raises(TypeError, match="k must be an integer"):
        MatrixPowers(poisson1d(5), 2.0)
    with pytest.raises(TypeError, match="A has dtype"):
        MatrixPowers(poisson1d(5).astype(np.int64), 2)
    with pytest.raises(TypeError, match="A must be"):
        MatrixPowers("matrix", 2)
    with pytest.raises(ValueError, match="basis"):
        MatrixPowers(poisson1d(5), 2, basis="chebyshev")
    with pytest.raises(ValueError, match="needs shifts"):
        MatrixPowers(poisson1d(5), 2, basis="newton")
    with pytest.raises(ValueError, match="shifts must have k=2"):
        MatrixPowers(poisson1d(5), 2, basis="newton", shifts=[1.0])
    with pytest.raises(ValueError, match="variant"):
        MatrixPowers(poisson1d(5), 2, variant="fastest")


def test_bad_v():
    mp = MatrixPowers(poisson1d(6), 2)
    with pytest.raises(ValueError, match=r"V must have shape \(k\+1, n\)"):
        mp.powers(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="V must have k\\+1 = 3 rows"):
        mp.powers(np.zeros((2, 6)))
    with pytest.raises(TypeError, match="V has dtype float32"):
        mp.powers(np.zeros((3, 6), dtype=np.float32))
    with pytest.raises(TypeError, match="V must be a numpy array"):
        mp.powers([[0.0] * 6] * 3)
    ro = np.zeros((3, 6))
    ro.setflags(write=False)
    with pytest.raises(ValueError, match="V is read-only"):
        mp.powers(ro)
    nan = np.zeros((3, 6))
    nan[0, 2] = np.nan
    with pytest.raises(ValueError, match="V\\[0\\].*NaN"):
        mp.powers(nan)
    with pytest.raises(ValueError, match="x must have shape"):
        mp(np.zeros(5))
    with pytest.raises(ValueError, match="V must be C-contiguous"):
        mp.powers(np.zeros((6, 3)).T)


@pytest.mark.parametrize("variant", ["window-7", "window-2048", "naive"])
def test_two_bases_in_one_sweep(variant, rng, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    A = poisson2d(40)
    shifts, scales = np.array([1.0, 3.0, 5.0, 7.0]), np.full(4, 0.3)
    mp = MatrixPowers(A, 4, basis="newton", shifts=shifts, scales=scales, variant=variant)
    p, r = rng.standard_normal((2, A.shape[0]))
    P = np.vstack([p, np.zeros((4, p.size))])
    R = np.vstack([r, np.zeros((3, r.size))])
    mp.pair(P, R)
    assert_close(P, reference(A, p, 4, shifts, scales), 1e-12)
    assert_close(R, reference(A, r, 3, shifts, scales), 1e-12)


@pytest.mark.parametrize("s", [1, 2, 4])
def test_sstep_basis_fills_both_bases_and_their_gram_matrix(s, rng, monkeypatch):
    """Every variant, including the window sweep that sums G while its rows are in
    cache (with 3 threads and 7-row steps: many chunks and seams), gives the two
    Newton bases and G = Y Y^T."""
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    A = poisson2d(40)
    shifts, scales = np.linspace(1.0, 7.0, s), np.full(s, 0.3)
    probe = MatrixPowers(A, s, basis="newton", shifts=shifts, scales=scales)
    pa1 = next(v for v in probe.variants if v.startswith("pa1"))
    p, r = rng.standard_normal((2, A.shape[0]))
    P, R = reference(A, p, s, shifts, scales), reference(A, r, s - 1, shifts, scales)
    basis = np.vstack([P, R])  # G's oracle: exact dot products of SciPy's bases
    oracle = np.array([[math.fsum(a * b) for b in basis] for a in basis])
    for variant in ["window-7", "window-2048", "naive", pa1, None]:
        mp = MatrixPowers(A, s, basis="newton", shifts=shifts, scales=scales,
                          variant=variant)
        for _ in range(1 if variant else 3 * len(mp.variants) + 1):  # None: tune, then win
            Y = np.zeros((2 * s + 1, A.shape[0]))
            Y[0], Y[s + 1] = p, r
            G = np.full((2 * s + 1, 2 * s + 1), np.nan)
            mp.sstep_basis(Y, G)
            assert_close(Y[:s + 1], P, 1e-12)
            assert_close(Y[s + 1:], R, 1e-12)
            np.testing.assert_allclose(G, oracle, rtol=1e-10, atol=1e-12 * np.abs(oracle).max())
            assert np.array_equal(G, G.T)


@pytest.mark.parametrize("native", [True, False])
def test_a_matrix_changed_in_place_after_construction_is_not_seen(rng, native):
    """The kernels read derived copies of A's values (diagonal runs by diagonal, a
    reordering), so A is copied at construction: every variant, and the SciPy products
    without native code, keep computing with A as it was, never a mix of old and new."""
    A = poisson2d(12).tocsr()
    A.data[:] = rng.uniform(1, 2, A.data.size)
    before = A.copy()
    mp = MatrixPowers(A, 3, native=native)
    A.data *= -3.0  # the caller's matrix changes after construction
    x = rng.standard_normal(A.shape[0])
    want = reference(before, x, 3)
    for v in mp.variants if native else [None]:
        V = np.zeros((4, A.shape[0]))
        V[0] = x
        assert_close(mp.powers(V, variant=v), want, 1e-12)
