"""The tuner: online round-robin, exhaustive, off; winners remembered across processes."""
from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from asp import config
from asp.errors import CheckError
from asp.tune import db, forget, lookup, remembered, store, tuner, verify
from asp.tune.tuner import ROUNDS, Tuning, calls_to_decide
from tests.conftest import until_decided

ROOT = Path(__file__).resolve().parents[1]
V3 = ["chunk", "stride", "dynamic"]


def _kernel() -> str:
    return f"test-kernel-{uuid.uuid4().hex[:8]}"


def _run_py(code: str, cache_dir: Path, **env) -> subprocess.CompletedProcess:
    full = {**os.environ, "ASP_CACHE_DIR": str(cache_dir), **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=full,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def short_calls(monkeypatch):
    """The timings of a test in abstract units stand for short calls (whose blocks
    always warm up), whatever their size against :data:`asp.tune.tuner.LONG_CALL`."""
    monkeypatch.setattr(tuner, "LONG_CALL", float("inf"))


def test_online_runs_round_robin_then_keeps_the_fastest(fresh_cache, short_calls):
    t = Tuning(_kernel(), "(f8)->auto", V3, mode="online")
    cost = {"chunk": 1.3, "stride": 1.0, "dynamic": 1.2}  # close: nothing is dropped
    order = []
    for _ in range(3 * 2 * ROUNDS):
        assert not t.done
        v = t.pick()
        order.append(v)
        t.record(v, cost[v])
    # Three rounds; in each, every variant runs twice in a row: a warm-up, then timed.
    assert order == [v for v in V3 for _ in range(2)] * 3
    assert all(len(t.trials[v]) == 3 for v in V3)
    assert t.done and t.winner == "stride" and not t.provisional
    assert all(t.pick() == "stride" for _ in range(5))
    t.record("chunk", 0.0)  # after the decision, timings change nothing
    assert t.winner == "stride"


def test_online_winner_by_median_despite_a_stall_and_a_slow_first_call(fresh_cache, short_calls):
    t = Tuning(_kernel(), "sig", ["a", "b"], mode="online", rounds=3)
    # 'a' is slow on the first call of each block (cold pages, caches left by 'b': not
    # timed) and stalls once by 2.5x: not far enough to be noise, so the median decides.
    for ta, tb in [(1.0, 2.0), (2.5, 2.0), (1.1, 2.1)]:
        t.record(t.pick(), 50.0)
        t.record(t.pick(), ta)
        t.record(t.pick(), 7.0)
        t.record(t.pick(), tb)
    assert t.trials["a"] == [1.0, 2.5, 1.1] and t.trials["b"] == [2.0, 2.0, 2.1]
    assert t.winner == "a" and not t.provisional


def test_a_first_call_that_flatters_a_variant_does_not_crown_it(fresh_cache, short_calls):
    """The demo's failure: early timings of a streaming-store variant looked fast on
    fresh pages; in steady state it is 2.5-4x slower.  Warm-up and the medians of
    later rounds decide."""
    t = Tuning(_kernel(), "sig", ["static", "stream"], mode="online")
    steady = {"static": 0.05, "stream": 0.15}
    # Right after the other variant ran: static meets the misses stream's streaming
    # stores left behind; stream finds nothing to gain from static's warm caches.
    after_other = {"static": 0.30, "stream": 0.10}
    last = None
    while not t.done:
        v = t.pick()
        t.record(v, after_other[v] if v != last else steady[v])
        last = v
    assert t.winner == "static"


def test_inseparable_variants_are_decided_provisionally_and_retuned_next_time(fresh_cache,
                                                                              short_calls):
    k = _kernel()
    t = Tuning(k, "sig", ["a", "b"], mode="online", max_rounds=5)
    noisy = iter([1.0, 1.0] + [1.0, 1.05, 1.04, 1.0, 1.0, 1.02, 1.03, 1.0, 1.01, 1.0] * 3)
    calls = 0
    while not t.done:
        t.record(t.pick(), next(noisy))
        calls += 1
    assert calls == 2 * 2 * 5  # the budget of five rounds of a warm-up and a timed call
    assert t.provisional
    assert lookup(k, "sig")[1]["_decision"]["provisional"] is True
    assert not Tuning(k, "sig", ["a", "b"], mode="online").done  # re-checked


def test_retime_marks_remembered_winners(fresh_cache):
    k = _kernel()
    store(k, "sig", "b", {"b": {"best": 1.0, "runs": 3}}, "online")
    assert Tuning(k, "sig", ["a", "b"], mode="online").winner == "b"
    from asp.tune import retime

    assert retime(k) == 1
    assert not Tuning(k, "sig", ["a", "b"], mode="online").done


def test_off_mode_picks_the_first_without_timing(fresh_cache, monkeypatch):
    monkeypatch.setattr(db, "lookup", lambda *a: pytest.fail("off mode must not consult the db"))
    t = Tuning(_kernel(), "sig", V3, mode="off")
    assert t.done and t.winner == "chunk" and t.pick() == "chunk"
    monkeypatch.setenv("ASP_TUNE", "off")
    assert Tuning(_kernel(), "sig", V3).winner == "chunk"


def test_single_variant_is_the_winner(fresh_cache):
    t = Tuning(_kernel(), "sig", ["only"], mode="online")
    assert t.done and t.winner == "only"
    with pytest.raises(ValueError):
        Tuning(_kernel(), "sig", [], mode="online")


def test_invalid_tune_mode_is_an_error(monkeypatch):
    monkeypatch.setenv("ASP_TUNE", "sometimes")
    with pytest.raises(ValueError, match="ASP_TUNE"):
        config.tune_mode()


def test_exhaustive_times_every_variant_and_picks_the_fastest(fresh_cache, monkeypatch):
    cost = {"chunk": 2.0, "stride": 3.0, "dynamic": 1.0}
    ran = []

    def run(v):
        ran.append(v)

    def fake_time_call(fn):
        fn()
        return cost[ran[-1]]

    monkeypatch.setattr(tuner, "time_call", fake_time_call)
    k = _kernel()
    t = Tuning(k, "sig", V3, mode="exhaustive")
    assert not t.done
    assert t.run_exhaustive(run, min_reps=4, max_reps=4) == "dynamic"
    assert t.winner == "dynamic"
    # Warm-up once each, then 4 interleaved repetitions, each timed run right after an
    # untimed one of the same variant (the caches in that variant's own state).
    assert ran[:3] == V3
    assert ran[3:] == [v for v in V3 for _ in range(2)] * 4
    assert all(len(t.trials[v]) == 4 for v in V3)
    found = lookup(k, "sig")
    assert found is not None and found[0] == "dynamic"
    assert found[1]["chunk"] == {"best": 2.0, "runs": 4}


def test_exhaustive_excludes_a_variant_that_fails(fresh_cache):
    def run(v):
        if v == "stride":
            raise RuntimeError("boom")

    t = Tuning(_kernel(), "sig", V3, mode="exhaustive")
    winner = t.run_exhaustive(run, min_reps=1, max_reps=2)
    assert winner in ("chunk", "dynamic")
    assert "stride" in t.excluded and "boom" in t.excluded["stride"]
    assert t.trials["stride"] == []


def test_excluded_variant_is_never_chosen(fresh_cache):
    t = Tuning(_kernel(), "sig", V3, mode="online")
    t.exclude("stride", "disagrees with Python")
    cost = {"chunk": 2.0, "stride": 0.0, "dynamic": 1.0}
    seen = set()
    while not t.done:
        v = t.pick()
        seen.add(v)
        t.record(v, cost[v])
    assert "stride" not in seen
    assert t.winner == "dynamic"
    stored = lookup(t.kernel, "sig")
    assert stored[1]["stride"] == {"excluded": "disagrees with Python"}


def test_excluding_the_winner_or_all_but_one(fresh_cache):
    t = Tuning(_kernel(), "sig", V3, mode="online")
    for _ in range(3 * 2 * ROUNDS):
        v = t.pick()
        t.record(v, {"chunk": 1.0, "stride": 1.2, "dynamic": 1.3}[v])
    assert t.winner == "chunk"
    t.exclude("chunk", "late failure")
    assert t.winner == "stride"  # decided again among the rest
    u = Tuning(_kernel(), "sig", V3, mode="online")
    u.exclude("chunk", "x")
    u.exclude("dynamic", "y")
    assert u.winner == "stride"
    w = Tuning(_kernel(), "sig", ["a", "b"], mode="online")
    w.exclude("a", "x")
    w.exclude("b", "y")
    # A CheckError (the call falls back with one warning), not the bare RuntimeError
    # that escaped into the user's program.
    with pytest.raises(CheckError, match="no compiled variant is left.*variant a: x"):
        w.pick()
    with pytest.raises(CheckError, match="no compiled variant is left"):
        w.run_exhaustive(lambda v: None)


def test_remembered_winner_is_used_without_retiming(fresh_cache):
    k = _kernel()
    store(k, "sig", "dynamic", {"dynamic": {"best": 1e-6, "runs": 3}}, "online")
    t = Tuning(k, "sig", V3, mode="online")
    assert t.done and t.winner == "dynamic"
    # A remembered variant this build no longer has is ignored.
    store(k, "sig2", "gone", {}, "online")
    assert not Tuning(k, "sig2", V3, mode="online").done
    # Another signature is tuned on its own.
    assert not Tuning(k, "other", V3, mode="online").done


def test_winner_is_reused_by_another_process(fresh_cache):
    k = _kernel()
    t = Tuning(k, "(f8)->auto", V3, mode="online")
    for _ in range(3 * 2 * ROUNDS):
        v = t.pick()
        t.record(v, {"chunk": 5.0, "stride": 4.0, "dynamic": 6.0}[v])
    assert t.winner == "stride"
    out = _run_py(f"""
        from asp.tune import tuner
        from asp.tune.tuner import Tuning
        def no_timing(*a, **k):
            raise SystemExit("re-timed")
        tuner.Tuning.record = no_timing
        tuner.Tuning.run_exhaustive = no_timing
        for mode in ("online", "exhaustive"):
            t = Tuning({k!r}, "(f8)->auto", ["chunk", "stride", "dynamic"], mode=mode)
            print(t.done, t.winner, t.pick())
        """, fresh_cache)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "stride", "stride"] * 2


KERNEL_MODULE = '''
from specializers.elementwise import elementwise


@elementwise
def cube(x):
    return x * x * x
'''


def test_elementwise_winner_persists_across_processes(fresh_cache, tmp_path):
    (tmp_path / "tuned_kernel.py").write_text(KERNEL_MODULE)
    head = f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        from tuned_kernel import cube
        x = np.linspace(0, 1, 1000)
        """
    first = _run_py(head + """
        for _ in range(40):
            y = cube(x)
        assert np.allclose(y, x ** 3)
        s = cube.jit.specialization(x, None)
        t = s.tuning_for("n~4^5")
        print(t.winner, sorted(t.trials))
        """, fresh_cache, ASP_TUNE="exhaustive")  # (online could end provisional: re-tuned)
    assert first.returncode == 0, first.stderr
    winner = first.stdout.split()[0]
    assert winner in V3
    second = _run_py(head + """
        from asp.tune import tuner
        def no_timing(*a, **k):
            raise SystemExit("re-timed")
        tuner.Tuning.record = no_timing
        y = cube(x)
        assert np.allclose(y, x ** 3)
        t = cube.jit.specialization(x, None).tuning_for("n~4^5")
        print(t.winner, cube.jit._hot is not None)
        """, fresh_cache, ASP_TUNE="online")
    assert second.returncode == 0, second.stderr
    assert second.stdout.split() == [winner, "True"]
    rows = remembered("cube")
    assert any(r["variant"] == winner for r in rows)


def test_damaged_database_is_moved_aside_and_recreated(fresh_cache):
    path = config.cache_dir() / "tuning.sqlite"
    path.write_bytes(b"this is not a sqlite database, it is garbage" * 50)
    k = _kernel()
    assert lookup(k, "sig") is None
    store(k, "sig", "chunk", {"chunk": {"best": 1.0, "runs": 1}}, "online")
    assert lookup(k, "sig")[0] == "chunk"
    aside = list(fresh_cache.glob("tuning.sqlite.damaged.*"))
    assert len(aside) == 1
    assert aside[0].read_bytes().startswith(b"this is not a sqlite")
    # A Tuning over the damaged database decides and remembers as usual.
    path.write_bytes(b"\x00" * 4096)
    t = Tuning(_kernel(), "sig", ["a", "b"], mode="online", rounds=1)
    while not t.done:
        v = t.pick()
        t.record(v, {"a": 2.0, "b": 1.0}[v])
    assert t.winner == "b"
    assert lookup(t.kernel, "sig")[0] == "b"


def test_remembered_and_forget(fresh_cache):
    store("alpha:one", "s1", "chunk", {"chunk": {"best": 1.0, "runs": 3}}, "online")
    store("alpha:one", "s2", "stride", {}, "exhaustive")
    store("beta:two", "s1", "dynamic", {}, "online")
    assert len(remembered()) == 3
    assert [r["signature"] for r in remembered("alpha")] == ["s1", "s2"]
    assert remembered("alpha")[0]["timings"] == {"chunk": {"best": 1.0, "runs": 3}}
    assert remembered("alpha")[0]["machine"] == db.machine_id()
    assert forget("alpha") == 2
    assert [r["kernel"] for r in remembered()] == ["beta:two"]
    assert forget() == 1
    assert remembered() == []


def test_machine_id_follows_the_processors_features(monkeypatch):
    """Two processors of one model name (this VM's says "AMD EPYC" on Zen 3 and Zen 4)
    but other instruction sets are other machines: a winner tuned on one is not trusted
    on the other."""
    from asp.jit import toolchain
    from asp.tune import machine_id

    here = machine_id()
    monkeypatch.setattr(toolchain, "cpu_features", lambda: "another instruction set")
    assert machine_id() != here and machine_id().split(" [")[0] == here.split(" [")[0]


def test_machine_id_follows_the_thread_count_in_force(monkeypatch):
    from asp.tune import machine_id

    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    three = machine_id()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert machine_id() != three and " x1 " in machine_id()


def test_winner_timed_on_other_code_is_not_reused(fresh_cache):
    k = _kernel()
    t = Tuning(k, "(f8)->auto", V3, mode="online", code="generator-a")
    for _ in range(3 * 2 * ROUNDS):
        v = t.pick()
        t.record(v, {"chunk": 5.0, "stride": 4.0, "dynamic": 6.0}[v])
    assert Tuning(k, "(f8)->auto", V3, mode="online", code="generator-a").winner == "stride"
    assert not Tuning(k, "(f8)->auto", V3, mode="online", code="generator-b").done


def _hold_exclusive_lock(path: Path, locked, release=None, hold: float = 0.0) -> None:
    """Another writer: an EXCLUSIVE transaction on ``path`` until ``release`` (or ``hold`` s)."""
    import sqlite3
    import time

    con = sqlite3.connect(str(path), isolation_level=None)
    con.execute("BEGIN EXCLUSIVE")
    locked.set()
    if release is not None:
        release.wait(120)
    else:
        time.sleep(hold)
    con.execute("COMMIT")
    con.close()


def test_locked_database_is_waited_on_and_the_winner_recorded(fresh_cache):
    import threading

    k = _kernel()
    assert store(k, "old", "chunk", {}, "online")
    assert 1.0 <= db.BUSY_TIMEOUT <= 10.0  # waits briefly, never stalls a call for long
    locked = threading.Event()
    holder = threading.Thread(target=_hold_exclusive_lock,
                              args=(fresh_cache / "tuning.sqlite", locked), kwargs={"hold": 1.0})
    holder.start()
    assert locked.wait(60)
    assert store(k, "new", "stride", {"stride": {"best": 1.0, "runs": 3}}, "online")
    holder.join()
    assert lookup(k, "new")[0] == "stride" and lookup(k, "old")[0] == "chunk"
    assert sorted(p.name for p in fresh_cache.glob("tuning.sqlite*")) == ["tuning.sqlite"]


def test_database_locked_beyond_the_timeout_is_left_intact(fresh_cache, monkeypatch):
    import threading

    monkeypatch.setattr(db, "BUSY_TIMEOUT", 0.3, raising=False)
    k = _kernel()
    assert store(k, "old", "chunk", {}, "online")
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_exclusive_lock,
                              args=(fresh_cache / "tuning.sqlite", locked, release))
    holder.start()
    try:
        assert locked.wait(60)
        assert store(k, "new", "stride", {}, "online") is False  # not saved this time
        assert lookup(k, "old") is None  # busy: nothing found, nothing moved aside
        t = Tuning(_kernel(), "sig", ["a", "b"], mode="online", rounds=1)
        for _ in range(4):  # a warm-up round, then one timed round
            v = t.pick()
            t.record(v, {"a": 2.0, "b": 1.0}[v])
        assert t.winner == "b"  # the call goes on; only the remembering is skipped
    finally:
        release.set()
        holder.join()
    assert sorted(p.name for p in fresh_cache.glob("tuning.sqlite*")) == ["tuning.sqlite"]
    assert lookup(k, "old")[0] == "chunk" and lookup(k, "new") is None


def _decided(cost: dict) -> Tuning:
    t = Tuning(_kernel(), "sig", list(cost), mode="online")
    while not t.done:
        v = t.pick()
        t.record(v, cost[v])
    return t


def test_a_winner_that_slows_down_is_reopened(fresh_cache):
    t = _decided({"a": 1.0, "b": 2.0})
    assert t.winner == "a"
    for _ in range(5):
        assert not t.verify(1.1)  # as recorded, give or take noise: kept
    for _ in range(2):
        assert not t.verify(5.0)  # a stall or two is no evidence
    assert t.verify(5.0)  # now the median of the last five: slower than b ever was
    assert not t.done and t.reopened == 1
    while not t.done:  # tuned again, warm-up included
        v = t.pick()
        t.record(v, {"a": 5.0, "b": 2.0}[v])
    assert t.winner == "b"


def test_a_winner_slower_only_as_the_machine_is_is_kept(fresh_cache):
    t = _decided({"a": 1.0, "b": 1.3})
    for _ in range(10):
        assert not t.verify(1.25)  # slower, but the runner-up was never faster than that
    assert t.winner == "a"


def test_the_sampling_rate_follows_the_calls_time_now_not_the_record(fresh_cache):
    # A winner recorded at 3 ms (cold pages) whose calls now take 80 us: sampling at the
    # recorded time would time one call in 16 (+69 % on a stencil); the rate follows the
    # sampled calls' median instead.
    import math

    t = _decided({"a": 3e-3, "b": 6e-3})
    recorded = t.sample_every()
    for _ in range(5):
        t.verify(80e-6)
    assert t.winner == "a"
    now = math.ceil(verify.SLOW_PATH / (verify.VERIFY_SHARE * 80e-6))
    # The first sampled calls after a decision come VERIFY_EARLY_RATE times as often.
    early = math.ceil(verify.SLOW_PATH / (verify.VERIFY_SHARE * verify.VERIFY_EARLY_RATE * 80e-6))
    assert t.sample_every() == max(early, 16) and early < now
    while t._samples < verify.VERIFY_EARLY:
        t.verify(80e-6)
    assert t.winner == "a" and t.sample_every() == now > recorded


def test_verification_samples_are_a_small_share_of_calls(fresh_cache, monkeypatch, rng):
    """The hot entry returns one call in N to the slow path to be timed; N keeps the
    cost near 1% of the calls' time."""
    from specializers.elementwise import elementwise

    @elementwise
    def triple(x):
        return x * 3.0

    x = rng.random(2000)
    for _ in range(calls_to_decide(3)):
        triple(x)
    t = triple.jit.specialization(x, None).tuning_for(
        triple.jit.specializer.prepare((x, None)).bucket)
    assert t.done and t.sample_every() >= 16
    monkeypatch.setattr(verify, "MAX_REOPEN", 0)  # the rate is tested, not a busy machine
    while len(t.overheads) < 5:  # the rate follows what sampled calls were measured to cost
        triple(x)
    # ... so it is held still while counted: each sampled call's cost and time move the
    # medians it follows, and on a busy machine that let a fifth call in (6 for 5, CI)
    every = t.sample_every()
    monkeypatch.setattr(tuner.Tuning, "sample_every", lambda self: every)
    slow = []
    real = triple.jit._slow
    monkeypatch.setattr(triple.jit, "_slow", lambda args: slow.append(1) or real(args))
    n = 4 * every
    for _ in range(n):
        np.testing.assert_array_equal(triple(x), x * 3.0)
    assert 3 <= len(slow) <= 5


def test_a_dear_slow_path_is_sampled_less_often(fresh_cache, monkeypatch, rng):
    """The share of verification is kept with what a sampled call really costs beyond the
    kernel (a stencil's argument checks took 170 us, not the 30 us assumed): a kernel
    whose slow path takes 2 ms is sampled that much less often."""
    import math
    import statistics
    import time

    from asp.tune.verify import SLOW_PATH, VERIFY_SHARE
    from specializers.elementwise import elementwise

    @elementwise
    def quadruple(x):
        return x * 4.0

    monkeypatch.setattr(verify, "MAX_REOPEN", 0)  # the rate is tested, not a busy machine
    monkeypatch.setattr(verify, "VERIFY_EARLY", 0)  # (the steady rate)
    real = quadruple.jit.specializer.prepare
    monkeypatch.setattr(quadruple.jit.specializer, "prepare",
                        lambda args: time.sleep(0.002) or real(args))
    x = rng.random(2000)
    for _ in range(calls_to_decide(3)):
        quadruple(x)
    t = quadruple.jit.specialization(x, None).tuning_for(real((x, None)).bucket)
    assert t.done
    assumed = int(min(max(math.ceil(SLOW_PATH / (VERIFY_SHARE * t.expected())), 16), 1 << 20))
    for _ in range(3 * assumed):
        np.testing.assert_array_equal(quadruple(x), x * 4.0)
    assert t.overheads and min(t.overheads) >= 0.002
    now = statistics.median(t.checks)  # the rate follows the calls' time now
    dear = math.ceil(0.002 / (VERIFY_SHARE * now))
    assert t.sample_every() >= min(dear, 1 << 20) and t.sample_every() > assumed


def test_calls_that_never_take_the_hot_path_time_one_in_n():
    """A kernel whose calls all need finishing comes to the slow path every call: its
    winner is timed one call in ``sample_every()``, not every call (five noisy timings in
    a row reopened decisions on a busy machine)."""
    t = Tuning("due-test", "sig", ["a", "b"], mode="online")
    t.winner = "a"
    t.recorded = {"a": {"best": 1e-6}, "b": {"best": 2e-6}, "_decision": {"median": 1e-6}}
    n = t.sample_every()
    assert n >= 16
    due = [t.due() for _ in range(3 * n)]
    assert sum(due) == 3 and due[n - 1] and due[2 * n - 1]


def test_clearly_slower_variants_are_dropped_after_two_rounds(fresh_cache, short_calls):
    """Racing: a variant whose fastest run is 1.5x the best median after two rounds
    takes no more calls; a late failure of the winner brings the dropped back."""
    k = _kernel()
    t = Tuning(k, "sig", ["a", "b", "c", "d"], mode="online")
    cost = {"a": 1.0, "b": 1.1, "c": 2.0, "d": 5.0}
    calls = 0
    while not t.done:
        v = t.pick()
        t.record(v, cost[v])
        calls += 1
    assert t.winner == "a" and set(t.dropped) == {"c", "d"}
    assert calls == 4 * 2 * 2 + 2 * 2 * 1  # two rounds of four, then one more of two
    assert "dropped after 2 rounds" in lookup(k, "sig")[1]["c"]["dropped"]
    t.exclude("a", "late failure")
    assert not t.dropped and set(t.candidates()) == {"b", "c", "d"}


def test_variants_separated_from_the_best_are_dropped_from_the_third_round(fresh_cache):
    """From ``ROUNDS`` rounds on, a variant whose fastest run is more than RACE_CLOSE
    times the best median races no more (it could win only if the best's later timings
    rose past it); one within that margin races on to the decision."""
    k = _kernel()
    t = Tuning(k, "sig", ["a", "b", "c", "d"], mode="online", max_rounds=6)
    # c and d 1.2x and 1.3x: never dropped at 1.5x; b 1.04x with noise: inseparable.
    cost = {"a": [0.010, 0.0108], "b": [0.0104, 0.0100], "c": [0.012], "d": [0.013]}
    seen = {v: 0 for v in cost}
    while not t.done:
        v = t.pick()
        if t.timed_next(v):
            t.record(v, cost[v][seen[v] % len(cost[v])])
            seen[v] += 1
        else:
            t.record(v, 0.05)  # a warm-up call
    assert set(t.dropped) == {"c", "d"}
    assert all(len(t.trials[v]) == tuner.ROUNDS for v in "cd")
    assert "dropped after 3 rounds" in t.dropped["c"]
    assert len(t.trials["a"]) == len(t.trials["b"]) == 6  # raced to the budget
    assert t.winner in ("a", "b") and t.provisional


def test_long_calls_of_a_warmed_variant_are_timed_without_a_warm_up(fresh_cache):
    """A block warms up with one call; for calls of LONG_CALL seconds or more it does so
    only in a variant's first block (its first call faults in code and buffers), later
    blocks time their first call: half the calls of a tuning of 0.2-0.7 s calls."""
    long, short = 2 * tuner.LONG_CALL, tuner.LONG_CALL / 20
    for seconds, per_block in ((long, 1), (short, 2)):
        t = Tuning(_kernel(), "sig", ["a", "b"], mode="online", max_rounds=3)
        cost = {"a": seconds, "b": 1.05 * seconds}
        calls = 0
        while not t.done:
            t.record(t.pick(), cost[t.pick()])
            calls += 1
        assert t.trials["a"] == [seconds] * 3 and t.trials["b"] == [1.05 * seconds] * 3
        # the first round warms up either way; the two later rounds do if calls are short
        assert calls == 2 * 2 + 2 * 2 * per_block
    # A long call of a variant never timed before is its warm-up, not a timing.
    t = Tuning(_kernel(), "sig", ["a", "b"], mode="online")
    t.record("a", 10 * long)
    assert t.trials["a"] == [] and not t.timed_next("b")


def test_sparse_calls_of_a_warmed_variant_are_timed_without_a_warm_up(fresh_cache,
                                                                      monkeypatch):
    """Short calls far apart (SPARSE: a Dask worker's 20 ms strip, once a round after its
    block's 0.6 s core) find the caches in the state the caller's other work leaves,
    warm-up or not: a warmed variant's blocks time their first call.  Calls back to back
    still warm up (the variant before left the caches in its own state)."""
    clock = {"now": 0.0}
    monkeypatch.setattr(tuner, "time", type("Clock", (), {
        "perf_counter": staticmethod(lambda: clock["now"])}))
    seconds = 20e-3
    for gap, per_block in ((0.6, 1), (1e-4, 2)):
        t = Tuning(_kernel(), "sig", ["a", "b"], mode="online", max_rounds=3)
        cost = {"a": seconds, "b": 1.05 * seconds}
        calls = 0
        while not t.done:
            v = t.pick()
            clock["now"] += gap + cost[v]  # the caller's other work, then the call
            t.record(v, cost[v])
            calls += 1
        assert t.trials["a"] == [seconds] * 3 and t.trials["b"] == [1.05 * seconds] * 3
        assert calls == 2 * 2 + 2 * 2 * per_block  # first blocks warm up either way
        assert gap < tuner.SPARSE * seconds or gap > tuner.SPARSE * 1.05 * seconds


def test_a_lookup_in_an_empty_cache_creates_no_database(fresh_cache):
    """The first call of a kernel in an empty cache asks the database twice; creating it
    (schema, journal) cost that call about 30 ms of its 0.17 s.  Lookups (and `asp tune
    show`, `forget`, `retime`) find nothing without it; the first stored winner creates
    it."""
    from asp.tune import db

    path = fresh_cache / "tuning.sqlite"
    assert db.lookup("empty:k", "sig") is None
    assert not path.exists()
    # nor do the commands that read or change what is remembered (`asp tune show`, ...)
    assert db.remembered() == [] and db.forget() == 0 and db.retime() == 0
    assert not path.exists()
    assert db.store("empty:k", "sig", "a", {"a": [1e-3]}, "online") is True
    assert path.exists()
    assert db.lookup("empty:k", "sig")[0] == "a"


def _challenge(t: Tuning, seconds: float) -> bool | None:
    """One sampled call of ``t``'s winner: None when it ran the winner, else whether the
    runner-up's timing (``seconds``) reopened the decision."""
    rival = t.challenger()
    if rival is None:
        return None
    assert rival != t.winner
    return t.challenged(seconds)


def test_a_runner_up_that_became_faster_reopens_the_decision(fresh_cache):
    # Decided on a busy machine: "stream" ahead; quiet now, "static" runs 1.6x faster,
    # while "stream" runs as it was recorded (its own sampled calls show nothing).
    t = _decided({"stream": 1.0, "static": 1.1, "jam": 2.0})
    assert t.winner == "stream"
    ran = []
    for _ in range(200):
        if t.done:
            t.verify(1.0)  # the winner's sampled call, as recorded
            ran.append(_challenge(t, 0.62))
        if not t.done:
            break
    challenges = [r for r in ran if r is not None]
    # Three in a row once the verification window is full: the third reopens it.
    assert challenges == [False, False, True] and t.reopened == 1
    assert t.challenges == {} and not t.done
    while not t.done:
        v = t.pick()
        t.record(v, {"stream": 1.0, "static": 0.62, "jam": 2.0}[v])
    assert t.winner == "static"


def test_a_runner_up_no_faster_leaves_the_decision_and_challenges_fade(fresh_cache):
    t = _decided({"a": 1.0, "b": 1.3})
    at = []
    for n in range(1, 300):
        t.verify(1.0)
        rival = t.challenger()
        if rival is not None:
            assert rival == "b"
            at.append(n)
            assert not t.challenged(1.1)  # faster than recorded, not 1.2x the winner
    assert t.winner == "a" and t.reopened == 0
    # Three in a row, then one every CHALLENGE_GAP sampled calls for as long as it runs
    # (vigilance that does not fade: the machine can change at any time).
    assert at[:3] == [5, 6, 7]
    assert at[3:] == list(range(7 + verify.CHALLENGE_GAP, 300, verify.CHALLENGE_GAP))


def test_every_rival_is_challenged_in_turn(fresh_cache):
    # Three rivals: a window of three sampled calls each, the fastest recorded first,
    # then one every CHALLENGE_GAP sampled calls, the rivals in turn; none is faster: the
    # decision stays.
    t = _decided({"a": 1.0, "b": 1.3, "c": 1.25, "d": 1.4})
    assert t.winner == "a"
    at = []
    for n in range(1, 200):
        t.verify(1.0)
        rival = t.challenger()
        if rival is not None:
            at.append((n, rival))
            assert not t.challenged(1.05)
    gap = verify.CHALLENGE_GAP
    assert at[:9] == [(5, "c"), (6, "c"), (7, "c"), (8, "b"), (9, "b"), (10, "b"),
                      (11, "d"), (12, "d"), (13, "d")]
    assert at[9:12] == [(13 + gap, "c"), (13 + 2 * gap, "b"), (13 + 3 * gap, "d")]
    assert [n for n, _ in at[9:]] == list(range(13 + gap, 200, gap))
    assert t.winner == "a" and t.reopened == 0
    assert sorted(t.challenges) == ["b", "c", "d"]


def test_a_machine_that_changes_long_after_the_decision_is_noticed(fresh_cache):
    # "b" runs 1.3x the winner for the first 500 sampled calls (a neighbour keeping the
    # shared cache busy slows "a"'s kind of variant no more than this), then 0.6x: the
    # challenges still come at a steady pace, so the decision is reopened within a few
    # rounds of them, not after as many sampled calls again (the doubling gaps' rule).
    t = _decided({"a": 1.0, "b": 1.3, "c": 1.4})
    reopened_at = None
    for n in range(1, 700):
        t.verify(1.0)
        rival = t.challenger()
        if rival is not None:
            fast = n > 500 and rival == "b"
            if t.challenged(0.6 if fast else {"b": 1.3, "c": 1.4}[rival]):
                reopened_at = n
                break
    assert t.reopened == 1 and reopened_at is not None
    # Two challenges of "b" after the change (the median of three): each rival's turn
    # comes every 2 * CHALLENGE_GAP sampled calls.
    assert reopened_at - 500 <= 2 * 2 * verify.CHALLENGE_GAP + verify.CHALLENGE_GAP


def test_a_rival_dropped_from_the_race_is_challenged_and_wins(fresh_cache):
    # The race ran while "static" was slowed (another process busy): it was dropped after
    # two rounds; "stream" won.  Quiet now, "static" runs 1.6x faster than "stream": the
    # runner-up by record ("jam") is no faster, the dropped rival is, and it reopens.
    t = Tuning(_kernel(), "sig", ["static", "stream", "jam"], mode="online")
    while not t.done:
        v = t.pick()
        t.record(v, {"static": 2.0, "stream": 1.0, "jam": 1.1}[v])
    assert t.winner == "stream" and "static" in t.recorded
    assert "dropped" in t.recorded["static"]
    assert t.rivals() == ["jam", "static"]
    ran = []
    for _ in range(30):
        t.verify(1.0)
        rival = t.challenger()
        if rival is not None:
            ran.append(rival)
            if t.challenged({"jam": 1.1, "static": 0.62}[rival]):
                break
    assert ran == ["jam"] * 3 + ["static"] * 3 and t.reopened == 1 and not t.done
    while not t.done:
        v = t.pick()
        t.record(v, {"static": 0.62, "stream": 1.0, "jam": 1.1}[v])
    assert t.winner == "static"


def test_challenges_keep_to_their_budget(fresh_cache):
    # A rival 3x slower than the winner on long calls (sampled one call in 16): what
    # challenges cost beyond the winner's time stays within CHALLENGE_SHARE of the calls'
    # time since the decision, so they wait for the budget instead of running in a row.
    t = _decided({"a": 1.0, "b": 3.0})
    assert t.sample_every() == 16
    cost = spent = 0.0
    ran = 0
    for _ in range(400):
        t.verify(1.0)
        spent += 16 * 1.0
        if t.challenger() is not None:
            ran += 1
            cost += 3.0 - 1.0
            assert not t.challenged(3.0)
        assert cost <= verify.CHALLENGE_SHARE * spent + 2.0  # (at most one ahead of it)
    assert ran >= 3  # the window ran, at the budget's pace


def test_a_new_decision_starts_its_checks_afresh(fresh_cache):
    # The winner fails (excluded) after sampled calls were timed: the next winner's
    # verification and challenges do not inherit the old winner's timings.
    t = _decided({"a": 1.0, "b": 1.3, "c": 1.4})
    for _ in range(6):
        t.verify(1.0)
        if t.challenger() is not None:
            t.challenged(1.3)
    assert t.checks and t.challenges
    t.exclude("a", "RuntimeError: failed")
    assert t.winner == "b" and t.checks == [] and t.challenges == {}
    assert t.rivals() == ["c"]


def test_a_preempted_challenge_is_no_evidence(fresh_cache):
    t = _decided({"a": 1.0, "b": 1.3})
    for _ in range(5):
        t.verify(1.0)
    for _ in range(100):
        if t.challenger() is not None:
            assert not t.challenged(0.1, preempted=True)
    assert t.winner == "a" and t.challenges == {}


@dataclasses.dataclass
class _Clocked:
    """A decided tuning of an elementwise kernel on a clock of the test's own: each
    variant's call advances it by ``cost(name, favoured)`` seconds; ``ran`` lists the
    variants run, ``call()`` makes one sampled call and checks its result."""

    spec: object
    t: Tuning
    favoured: str
    ran: list
    call: object
    variants: int


def _clocked(monkeypatch, rng, cost, repeatable: bool | None = None) -> _Clocked:
    from asp.runtime import specialization as specialization_module
    from specializers.elementwise import elementwise

    @elementwise
    def triple(x):
        return x * 3.0

    x = rng.random(5000)
    prepared = triple.jit.specializer.prepare((x, None))
    spec = triple.jit.specialization(x, None)
    real = dict(spec.entries)
    assert len(real) >= 2
    favoured = sorted(real)[0]
    clock = {"now": 0.0}
    ran = []

    class Clock:
        @staticmethod
        def perf_counter():
            return clock["now"]

    def variant(name):
        def run(*args):
            ran.append(name)
            clock["now"] += cost(name, favoured)
            return real[name](*args)
        return run

    for name in real:
        monkeypatch.setitem(spec.entries, name, variant(name))
    if repeatable is not None:
        monkeypatch.setattr(spec, "repeatable", repeatable)
    monkeypatch.setattr(specialization_module, "time", Clock)
    monkeypatch.setattr(tuner, "_preemptions", lambda: 0)  # no thread preempted
    monkeypatch.setattr(verify, "MAX_REOPEN", 1)
    t = spec.tuning_for(prepared.bucket)

    def call():  # the slow path: every call of a winner is a sampled one
        out = spec.run(prepared.args, prepared.bucket, sampled=True)
        np.testing.assert_array_equal(out, x * 3.0)

    until_decided(call, lambda: t.done, len(real))
    assert t.winner == favoured
    return _Clocked(spec, t, favoured, ran, call, len(real))


def test_challenges_run_the_runner_up_through_the_call_path(fresh_cache, monkeypatch, rng):
    """The scenario of the tuned-under-load miss, on a clock of the test's own (each
    variant's call advances it by a set cost: deterministic, no real timing): while
    tuning, every variant but one costs 1.3 ms (a busy machine that penalised them, not
    so much that the timings look like noise or lose the race), so that one wins at its
    1 ms; then the others cost what they really do (10 us) and the winner what it was
    recorded at, so its own sampled calls show nothing.  Sampled calls run the
    runner-up, reopen the decision, and tuning again picks one of the others; every
    result stays right."""
    busy = {"on": True}
    c = _clocked(monkeypatch, rng, lambda name, favoured: (
        1e-3 if name == favoured else 1.3e-3 if busy["on"] else 1e-5))
    t, spec, favoured, ran, call = c.t, c.spec, c.favoured, c.ran, c.call
    assert not t.noisy and not t.provisional
    busy["on"] = False
    ran.clear()
    for _ in range(4 * verify.CHALLENGE_FIRST * 2 ** verify.CHALLENGE_WINDOW):
        call()
        if t.reopened:
            break
    assert t.reopened == 1 and t.checks == []
    # Every sampled call ran the winner except the challenges: three in a row once the
    # verification window is full (the 6th sampled call on).
    assert spec.repeatable is False  # (so no warm-up run: one run per challenge)
    assert [i for i, v in enumerate(ran) if v != favoured] == [5, 6, 7]
    until_decided(call, lambda: t.done, c.variants)
    assert t.winner != favoured


def test_preemptions_count_only_during_the_timed_call(fresh_cache, monkeypatch, rng):
    """Calls alternating between two size buckets: the machine preempts a thread during
    every call of the large one, never during the small one's.  The small one's timings
    are evidence (none is left out as noise) and it decides as fast as it would alone:
    the window for preemptions opens at its own call, not at its tuning's previous one."""
    from asp.runtime import specialization as specialization_module
    from specializers.elementwise import elementwise

    @elementwise
    def triple(x):
        return x * 3.0

    small, large = rng.random(5000), rng.random(400_000)
    jit = triple.jit
    ps, pl = jit.specializer.prepare((small, None)), jit.specializer.prepare((large, None))
    assert ps.bucket != pl.bucket
    spec = jit.specialization(small, None)
    real = dict(spec.entries)
    switches = {"n": 0}
    clock = {"now": 0.0}
    big = {"on": False}

    class Clock:
        @staticmethod
        def perf_counter():
            return clock["now"]

    def variant(name):
        def run(*args):
            # 1, 1.25, 1.5, ... ms: within the SUSPECT ratio of the fastest, whatever
            # the number of variants (an elementwise map has 4 with ``stream``).
            clock["now"] += 1e-3 * (1 + 0.25 * sorted(real).index(name))
            if big["on"]:
                switches["n"] += 1  # the large bucket's calls are preempted
            return real[name](*args)
        return run

    for name in real:
        monkeypatch.setitem(spec.entries, name, variant(name))
    monkeypatch.setattr(specialization_module, "time", Clock)
    monkeypatch.setattr(tuner, "_preemptions", lambda: switches["n"])
    t = spec.tuning_for(ps.bucket)

    def call():
        big["on"] = True
        spec.run(pl.args, pl.bucket, sampled=True)
        big["on"] = False
        out = spec.run(ps.args, ps.bucket, sampled=True)
        np.testing.assert_array_equal(out, small * 3.0)

    until_decided(call, lambda: t.done, len(real))
    assert t.noise == 0 and t.preempted == 0
    assert t.winner == sorted(real)[0] and not t.noisy
    assert spec.tuning_for(pl.bucket).preempted > 0  # the large one's calls were noise


def test_a_new_decision_is_challenged_first_by_the_winner_it_overturned(fresh_cache):
    # "static" won on a busy machine (noisy); quiet, the decision is tuned again, and a
    # burst the process cannot see (no thread of its own preempted) makes "stream" win
    # that tuning.  The set-aside winner challenges first, ahead of rivals recorded
    # faster in the disturbed tuning, and reopens the decision.
    t = Tuning(_kernel(), "sig", ["static", "stream", "jam"], mode="online")
    t.winner, t.recorded = "static", {"static": {"best": 0.6}, "stream": {"best": 1.0}}
    t.reopen()
    assert t.previous == "static"
    while not t.done:
        v = t.pick()
        t.record(v, {"static": 1.3, "stream": 1.0, "jam": 1.1}[v])
    assert t.winner == "stream" and t.rivals() == ["static", "jam"]
    ran = []
    for _ in range(30):
        t.verify(1.0)
        rival = t.challenger()
        if rival is not None:
            ran.append(rival)
            if t.challenged({"jam": 1.1, "static": 0.62}[rival]):
                break
    assert ran == ["static"] * 3 and t.reopened == 2 and not t.done


def test_a_challenge_is_warmed_as_a_race_block_is(fresh_cache, monkeypatch, rng):
    """The tuned-quiet miss of 2026-12-07, on a clock of the test's own: a repeatable
    call whose rival runs slow right after the winner (its caches are the winner's) and
    settles over its next calls, to 0.6x the winner's time.  Warmed by one untimed run,
    its challenges ran 1.1x, never 1.2x faster, and a provisional choice 1.27x slower
    stayed; warmed until its runs took WARM_SECONDS (at most MAX_WARM), the challenge
    reopens the decision, and the warm-up beyond one run is counted in the challenges'
    cost."""
    busy = {"on": True}
    streak = {"name": None, "n": 0}

    def cost(name, favoured):
        streak["n"] = streak["n"] + 1 if streak["name"] == name else 1
        streak["name"] = name
        if name == favoured:
            return 1e-4
        if busy["on"]:
            return 1.3e-4
        return max(1.5e-4 - 1e-5 * streak["n"], 6e-5)  # 1.4x after the winner, 0.6x from 9

    c = _clocked(monkeypatch, rng, cost, repeatable=True)
    t, favoured, ran, call = c.t, c.favoured, c.ran, c.call
    busy["on"] = False
    ran.clear()
    costs, challenged = [], t.challenged

    def counted(seconds, preempted=False, warmed=0.0):
        costs.append(warmed)
        return challenged(seconds, preempted, warmed=warmed)

    monkeypatch.setattr(t, "challenged", counted)
    for _ in range(2000):
        call()
        if t.reopened:
            break
    assert t.reopened == 1
    # The untimed runs' time beyond the first (a sampled call of the winner has one too)
    # is part of each challenge's cost: 1.3e-4 + ... + 0.7e-4 s.
    assert costs and all(w == pytest.approx(7.0e-4) for w in costs), costs
    # Each challenge: the rival's untimed runs until they took WARM_SECONDS (1e-3 s; at
    # most MAX_WARM), then its timed run.
    runs, i = [], 0
    while i < len(ran):
        j = i
        while j < len(ran) and ran[j] == ran[i]:
            j += 1
        if ran[i] != favoured:
            runs.append(j - i)
        i = j
    assert runs and all(n == tuner.MAX_WARM + 1 for n in runs), runs
