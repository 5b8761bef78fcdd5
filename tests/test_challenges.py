"""Challenges, run for every specializer: once a winner is decided, sampled calls run its
rivals instead (asp.tune.verify).  A rival then computes a real call's result, on the
real arguments: it must be as right as the winner's.  Elsewhere in the suite
``MAX_REOPEN`` is 0 (conftest ``_decisions_stay``), which also turns challenges off; a
challenge path with a fault of its own (a rival run on arguments made for the winner
raised in ``ca_cg``) went unseen there.  Here challenges stay on, every other call is
sampled, there is no budget, and every result is checked against the Python reference."""
from __future__ import annotations

import numpy as np
import pytest

from asp.runtime import wait_for_builds
from asp.tune import verify
from asp.tune.tuner import Tuning
from specializers.elementwise import elementwise
from specializers.gmm import kernels as K
from specializers.reduction import reduction
from specializers.stencil import StencilKernel, temporal
from specializers.stencil import iterate as iterate_module
from tests.test_gmm_kernels import assert_outputs_close, em_args, run_reference
from tests.test_iterate import loop

RNG = np.random.default_rng(20261204)


class Heat(StencilKernel):  # this module's own source: kernels are kept per function
    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * lap


CHALLENGES: list[str] = []  # the rivals challenged, in this test


@pytest.fixture(autouse=True)
def _challenge_often(_decisions_stay, monkeypatch):  # (after the suite's MAX_REOPEN = 0)
    # (reopened decisions, noisy ones on a machine the other test worker keeps busy
    # included, may be challenged too: not at most the shipped two)
    monkeypatch.setattr(verify, "MAX_REOPEN", 100)
    monkeypatch.setattr(verify, "CHALLENGE_SHARE", 1e9)
    monkeypatch.setattr(verify.Verification, "sample_every", lambda self: 2)
    # (the other test worker's load preempts most calls, and preempted timings are not
    # evidence: too few checks to start challenging; this test is not about noise)
    monkeypatch.setattr(Tuning, "undisturbed", lambda self, seconds: (seconds, False))
    real = verify.Verification.challenged

    def challenged(self, seconds, preempted=False, warmed=0.0):
        CHALLENGES.append(self._rival)
        return real(self, seconds, preempted, warmed)

    monkeypatch.setattr(verify.Verification, "challenged", challenged)
    CHALLENGES.clear()


@elementwise
def poly(x, y):
    return 3.0 * x * x - 2.0 * x * y + y


@reduction("+")
def energy(u, v):
    return u * u + 0.5 * v * v


def _challenged(call, check, calls: int = 400) -> None:
    """``calls`` calls, each result checked, of which some ran a rival.  (On a machine
    the other test worker keeps busy, decisions come later: up to ten times the calls,
    until three rivals ran.)"""
    check(call())
    wait_for_builds()  # every variant compiled (a first call compiles one, the rest later)
    for n in range(10 * calls):
        check(call())
        if n >= calls and len(CHALLENGES) >= 3:
            break
    assert len(CHALLENGES) >= 3 and all(CHALLENGES), CHALLENGES


def test_stencil_step_challenges_compute_right_results(fresh_cache):
    k = Heat()
    u = RNG.random((300, 310))
    want = loop(k, u, 0.1, steps=1)
    out = np.zeros_like(u)
    def call():
        k.kernel(u, 0.1, out)
        return out

    _challenged(call,
                lambda got: np.testing.assert_array_equal(got, want))


def test_iterate_challenges_compute_right_results(fresh_cache, monkeypatch):
    monkeypatch.setattr(temporal, "SAMPLE", 2)
    k = Heat()
    u = RNG.random((190, 200))
    want = loop(k, u, 0.1, steps=5)
    _challenged(lambda: k.iterate(u, 0.1, steps=5),
                lambda got: np.testing.assert_array_equal(got, want), calls=1000)
    assert iterate_module.iteration_jit(k, u, 0.1) is not None  # blocked variants ran


def test_elementwise_challenges_compute_right_results(fresh_cache):
    x, y = RNG.random(300_000), RNG.random(300_000)
    want = 3.0 * x * x - 2.0 * x * y + y
    _challenged(lambda: poly(x, y), lambda got: np.testing.assert_array_equal(got, want),
                calls=800)


def test_reduction_challenges_compute_right_results(fresh_cache):
    u, v = RNG.random(400_000), RNG.random(400_000)
    want = float(np.sum(u * u + 0.5 * v * v))
    _challenged(lambda: energy(u, v),
                lambda got: np.testing.assert_allclose(got, want, rtol=1e-12), calls=800)


def test_gmm_em_challenges_compute_right_results(fresh_cache, monkeypatch):
    """The EM kernel's scratch (``work``) is an argument every variant takes alike (an
    ``ArgSpec(scratch=True)``, not arguments completed for one variant, as matrix powers'
    plans are), so a rival may run a real call: its statistics and log-likelihood must
    be as right as the winner's.  (This test asserted before that no rival ran: it held
    only because each call copies its arguments, a sampled call then ran slower than
    the winner had been timed, and verification reopened the decision again and again
    before any challenge came; under another worker's load a decision once stood long
    enough, rivals ran, and the results were right.  Here the reopenings are held off,
    that of a winner running slower than recorded and that of a decision made with much
    noise (timings after a copy look suspect), so that rivals do run.)"""
    from asp.tune import tuner

    monkeypatch.setattr(verify, "REOPEN_SLOWER", 1e9)
    monkeypatch.setattr(tuner, "NOISY_SHARE", 1e9)
    k = K.kernel("em", "full", 3, 4)
    args = em_args("full", 3, 4, np.float64, 5000)
    want = run_reference(k, args)

    def call():
        got = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
        k(*got)
        return got

    def check(got):
        assert_outputs_close(got[6], want[6])
        assert got[7][0] == pytest.approx(want[7][0], rel=1e-12, abs=1e-9)

    _challenged(call, check, calls=300)
