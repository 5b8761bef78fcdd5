"""The PA1 block size of matrix powers is a search space: every point against SciPy on
its parallel branch, the sampled points in the tuned kernel, ``asp tune show`` lists it.

The points differ in their plan, not their C: each reads the one PA1 plan argument, made
for the variant the call runs (``Prepared.complete``), so every block size gets blocks
of its own size.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from asp.tune import remembered
from specializers.matrix_powers import MatrixPowers, kernels, powers_kernel
from specializers.matrix_powers.powers_kernel import PA1_KIB, PA1_SAMPLE, TUNED, TUNED_COUNT
from tests.conftest import until_decided
from tests.test_matrix_powers import assert_close, poisson2d, reference
from tests.test_matrix_powers_parallel import big_banded_random, big_poisson, openmp_threads


@pytest.fixture
def own_kernels():
    kernels.forget()
    yield
    kernels.forget()


def _points() -> list[str]:
    return [f"pa1_{kib}k" for kib in PA1_KIB]


@pytest.mark.parametrize("make", [big_poisson, big_banded_random], ids=["poisson2d", "banded"])
def test_every_point_of_the_space_matches_scipy_on_its_parallel_branch(make, own_kernels,
                                                                        monkeypatch, rng):
    """Every block size of the space (all of them compiled here), on a matrix above the
    shipped threshold (the parallel branch whatever ASP_PARALLEL_THRESHOLD says) with a
    team of at least two threads, each with its own plan: many blocks for the sizes
    that fit the matrix more than once."""
    assert openmp_threads() >= 2
    monkeypatch.setenv("ASP_STRICT", "1")
    monkeypatch.setattr(powers_kernel, "PA1_SAMPLE", len(PA1_KIB))
    n_rows = kernels.PAR_MIN + 757
    A = make(n_rows)
    n, k = A.shape[0], 4
    assert n > kernels.PAR_MIN
    shifts, scales = rng.uniform(0, 4, k), rng.uniform(0.2, 0.5, k)
    mp = MatrixPowers(A, k, basis="newton", shifts=shifts, scales=scales, reorder=False)
    x = rng.standard_normal(n)
    ref = reference(A, x, k, shifts, scales)
    V = np.zeros((k + 1, n))
    V[0] = x
    jk = mp._kernel(False, None)
    s = jk.specialization(mp._problem, V, None)
    assert set(s.entries) == {*TUNED, *_points()} and not s.check_failures
    blocks = {}
    for kib in PA1_KIB:
        rows = mp._problem.pa1_rows(kib)
        blocks[kib] = len(mp.plan(f"pa1-{rows}", k).blk) - 1
        assert blocks[kib] == -(-n // rows)  # its own block size
        got = np.zeros((k + 1, n))
        got[0] = x
        jk.run_variant(f"pa1_{kib}k", mp._problem, got, None)
        assert_close(got, ref, 1e-12)
    assert blocks[PA1_KIB[0]] >= 2 * openmp_threads()  # blocks shared by the team
    assert sorted(blocks.values(), reverse=True) == list(blocks.values())


def test_the_tuned_kernel_compiles_a_sample_and_show_lists_the_space(own_kernels, fresh_cache,
                                                                     rng):
    A = poisson2d(60)
    x = rng.standard_normal(A.shape[0])
    mp = MatrixPowers(A, 3)
    until_decided(lambda: assert_close(mp(x), reference(A, x, 3), 1e-12),
                  lambda: mp.chosen_variant() is not None, TUNED_COUNT)
    assert mp.chosen_variant() in mp.variants
    jk = mp._kernel(False, None)
    V = np.zeros((4, A.shape[0]))
    s = jk.specialization(mp._problem, V, None)
    sampled = s.tuning.spaces["pa1_block"]["tried"]
    assert len(sampled) == PA1_SAMPLE and set(sampled) < set(_points())
    assert set(s.entries) == {*TUNED, *sampled}
    # The same signature samples the same points (the seed is the kernel and signature).
    space = powers_kernel.pa1_space(lambda name: name)
    seed = f"{s.kernel}|{s.signature}"
    assert [space.make(**p) for p in space.points(seed)] == sampled
    tuning = s.tuning_for(jk.specializer.prepare((mp._problem, V, None)).bucket)
    (row,) = [r for r in remembered(s.kernel) if r["signature"] == tuning.signature]
    assert row["timings"]["_decision"]["spaces"]["pa1_block"]["tried"] == sampled
    out = subprocess.run([sys.executable, "-m", "asp.cli", "tune", "show", s.kernel],
                         capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stderr
    kibs = ", ".join(str(v) for v in PA1_KIB)
    assert f"space pa1_block: kib in {{{kibs}}}; tried {PA1_SAMPLE}: " \
           f"{', '.join(sampled)}" in out.stdout
