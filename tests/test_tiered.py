"""The tiered first call: one variant is built before the first result, the others on the
builder thread, joining the tuning after the same check against the Python.

The suite runs with ``ASP_TIERED=0`` (conftest) so that tuning tests do not depend on how
fast a background build runs; these tests turn it on and hold the builder thread with a
gate where they need to see the state before the late variants arrive.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

from asp.runtime import JitKernel
from asp.runtime import specialization as specialization_module
from asp.runtime.build import units
from asp.runtime.dispatch import LATE_SAMPLE
from asp.runtime.specialization import QUICK, quick_first, tiers
from asp.tune import Tuning, calls_to_decide
from specializers.elementwise import elementwise
from tests.test_iterate import Heat, Heat3
from tests.test_spaces import ChunkedAxpy
from tests.test_template_style import BODY, Axpy

ALL = {"static", "dynamic", "guided"}


@pytest.fixture
def tiered(monkeypatch):
    monkeypatch.setenv("ASP_TIERED", "1")
    monkeypatch.setenv("ASP_TUNE", "online")


@pytest.fixture
def gate():
    """Holds the builder thread until set: late variants stay pending meanwhile."""
    event = threading.Event()
    held = specialization_module._BUILDER.submit(event.wait, 120)
    yield event
    event.set()
    held.result(timeout=120)


def _spec(k: JitKernel):
    (s,) = k.specializations.values()
    return s


def _xy(n=4096, seed=0):
    return np.random.default_rng(seed).standard_normal((2, n))


def test_first_result_from_one_variant_the_others_join_when_built(tiered, gate):
    k = JitKernel(Axpy(variants=("static", "dynamic", "guided")))
    x, y = _xy()
    np.testing.assert_allclose(k(2.0, x, y), 2 * x + y, rtol=1e-15)
    s = _spec(k)
    assert set(s.entries) == {"static"} and not s.pending.done()
    assert s.tuning.pending == {"dynamic", "guided"} and s.tuning.candidates() == ["static"]
    for seed in range(8):  # served by the first variant; no decision among one of three
        x, y = _xy(seed=seed)
        np.testing.assert_allclose(k(2.0, x, y), 2 * x + y, rtol=1e-15)
    assert s.tuning.winner is None and k.hot_entry is None
    gate.set()
    s.pending.result(timeout=120)
    k(2.0, x, y)  # the slow path takes them in
    assert set(s.entries) == ALL and s.pending is None and not s.check_failures
    assert s.tuning.candidates() == ["static", "dynamic", "guided"]
    for v in ALL:  # each late variant was checked and runs correctly
        np.testing.assert_allclose(k.run_variant(v, 2.0, x, y), 2 * x + y, rtol=1e-15)
    for _ in range(calls_to_decide(3)):
        k(2.0, x, y)
    assert s.tuning.winner in ALL, {v: len(t) for v, t in s.tuning.trials.items()}


def test_a_guessed_first_tier_is_built_quick_and_rebuilt_with_the_others(tiered, gate,
                                                                          fresh_cache):
    k = JitKernel(Axpy(variants=("static", "dynamic")))
    x, y = _xy()
    np.testing.assert_allclose(k(2.0, x, y), 2 * x + y, rtol=1e-15)
    s = _spec(k)
    assert s.source.startswith(QUICK) and s._rebuild == {"static"}
    quick_lib = s.libraries["static"][0]
    assert s.tuning.pending == {"dynamic"}  # static is in already: only rebuilt
    gate.set()
    s.pending.result(timeout=120)
    for _ in range(calls_to_decide(2)):
        np.testing.assert_allclose(k(2.0, x, y), 2 * x + y, rtol=1e-15)
    assert s.pending is None and s.libraries["static"][0] != quick_lib
    assert s.source.count("asp_entry_static(") == 2 and not s.check_failures
    assert s.tuning.winner in {"static", "dynamic"}
    # The record names the rebuilt objects: a warm process never runs the quick one.
    (record,) = (fresh_cache / "specs").glob("*.json")
    named = json.loads(record.read_text())["variants"]
    assert set(named) == {"static", "dynamic"}
    assert {lib for lib, _ in named.values()} == {s.libraries["dynamic"][0]} != {quick_lib}


def test_a_quick_stencil_tier_compiles_no_serial_loop_and_is_right_at_every_size(
        tiered, gate, fresh_cache, monkeypatch, rng):
    """A quick first tier takes its parallel code at every size (``ASP_PARALLEL`` is 1),
    so gcc leaves out the serial loop each stencil variant calls below the threshold (a
    third of a 3-D first variant's compile time); the rebuilt variant has it again.
    Both compute what the Python does, below and above the threshold."""
    monkeypatch.setenv("ASP_PARALLEL_THRESHOLD", "2000")
    k, ref = Heat(), Heat(pure_python=True)
    grids = [rng.random((20, 30)), rng.random((70, 90))]  # 600 and 6,300 points

    def symbols(s, variant):
        lib = fresh_cache / "lib" / f"{s.libraries[variant][0]}.so"
        return subprocess.run(["nm", str(lib)], capture_output=True, text=True,
                              check=True).stdout

    def agree():
        for u in grids:
            want = np.zeros_like(u)
            ref.kernel(u, 0.1, want)
            got = np.zeros_like(u)
            k.kernel(u, 0.1, got)
            np.testing.assert_array_equal(got[1:-1, 1:-1], want[1:-1, 1:-1])

    u = grids[0]
    k.kernel(u, 0.1, np.zeros_like(u))
    s = _spec(k.jit_for(u, 0.1, np.zeros_like(u)))  # (not waiting for the late variants)
    assert s.source.startswith(QUICK) and s._rebuild == {"static"}
    assert "if (ASP_PARALLEL(p_out_n0 * p_out_n1 > 2000))" in s.source
    assert "stencil_static" in symbols(s, "static")
    assert "stencil_serial" not in symbols(s, "static")  # (a static function: a local symbol)
    agree()
    assert s._rebuild == {"static"} and "stencil_serial" not in symbols(s, "static")
    gate.set()
    s.pending.result(timeout=120)
    agree()
    assert s.pending is None and not s.check_failures
    assert "stencil_serial" in symbols(s, "static")


def test_no_quick_tier_for_a_known_winner_off_or_own_flags(tiered, monkeypatch):
    plan = Axpy(variants=("static", "dynamic")).plan(None)
    t = Tuning("quick-test", "sig", ["static", "dynamic"], mode="online")
    assert quick_first(t, tiers(plan, t)[1])
    t.winner = "dynamic"  # remembered: built as it will run
    assert not quick_first(t, tiers(plan, t)[1])
    off = Tuning("quick-test", "sig", ["static", "dynamic"], mode="off")
    assert not quick_first(off, tiers(plan, off)[1])
    monkeypatch.setenv("ASP_CFLAGS", "-O2 -fopenmp")
    t = Tuning("quick-test", "sig", ["static", "dynamic"], mode="online")
    assert not quick_first(t, tiers(plan, t)[1])


def test_the_points_of_a_space_are_planned_after_the_first_result(tiered, gate, fresh_cache):
    spec = ChunkedAxpy(sample=3)
    spec.variants = ("static", "dynamic")  # with one plain variant, the points come first
    k = JitKernel(spec)
    x, y = _xy()
    np.testing.assert_allclose(k(2.0, x, y), 2 * x + y, rtol=1e-15)
    s = _spec(k)
    assert spec.made == [] and set(s.entries) == {"static"}
    assert s.tuning.pending == {"dynamic", "space:chunks"}
    assert s.tuning.variants == ["static", "dynamic"]
    for _ in range(6):  # no decision while the points are not even planned
        k(2.0, x, y)
    assert s.tuning.winner is None
    gate.set()
    s.pending.result(timeout=120)
    k(2.0, x, y)
    points = [f"chunk{p['chunk']}_u{p['unroll']}" for p in spec.made]
    assert len(points) == 3 and s.tuning.variants == ["static", "dynamic", *points]
    assert set(s.entries) == {"static", "dynamic", *points} and not s.check_failures
    assert [v.name for v in s.plan.variants] == ["static", "dynamic", *points]
    assert s.tuning.spaces["chunks"]["tried"] == points and not s.tuning.pending
    for v in points:
        np.testing.assert_allclose(k.run_variant(v, 2.0, x, y), 2 * x + y, rtol=1e-15)
    for _ in range(calls_to_decide(len(s.tuning.variants))):
        if s.tuning.winner is not None:
            break
        k(2.0, x, y)
    assert s.tuning.winner in s.entries


def test_late_variants_compile_in_a_few_balanced_units(tiered, gate, fresh_cache, monkeypatch):
    spec = ChunkedAxpy(sample=5)
    plan = spec.plan(None)
    late = [spec._make(plan.specs, ("a", "x", "y", "w", "out"), c, 1) for c in (64, 128, 256)]
    big = [spec._make(plan.specs, ("a", "x", "y", "w", "out"), c, 4) for c in (512, 1024)]
    got = units([*late, *big], 2)
    assert len(got) == 2 and {v.name for u in got for v in u} == \
        {v.name for v in [*late, *big]}
    assert all([v.name for v in u] == [v.name for v in [*late, *big] if v in u] for u in got)
    assert len(units(late, 2)) == 1 and len(units([*late, *big], 1)) == 1
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    spec.variants = ("static", "dynamic")
    k = JitKernel(spec)
    x, y = _xy()
    k(2.0, x, y)
    s = _spec(k)
    gate.set()
    s.pending.result(timeout=120)
    k(2.0, x, y)
    assert len(s.entries) == 7 and not s.check_failures and not s.tuning.excluded
    # two late units (the quick first tier's rebuild is in one of them)
    assert len({lib for lib, _ in s.libraries.values()}) == 2
    for v in s.entries:
        np.testing.assert_allclose(k.run_variant(v, 2.0, x, y), 2 * x + y, rtol=1e-15)


def test_late_variant_that_disagrees_is_excluded_when_it_joins(tiered, gate):
    k = JitKernel(Axpy(variants=("static", "dynamic", "guided"), wrong=("guided",)))
    x, y = _xy()
    k(1.0, x, y)
    s = _spec(k)
    gate.set()
    s.pending.result(timeout=120)
    np.testing.assert_allclose(k(1.0, x, y), x + y)
    assert set(s.check_failures) == {"guided"} and "guided" in s.tuning.excluded
    for _ in range(calls_to_decide(3)):
        np.testing.assert_allclose(k(1.0, x, y), x + y)
    assert s.tuning.winner in {"static", "dynamic"}


def test_a_first_tier_that_disagrees_waits_for_the_others(tiered):
    k = JitKernel(Axpy(variants=("static", "dynamic"), wrong=("static",)))
    x, y = _xy()
    np.testing.assert_allclose(k(3.0, x, y), 3 * x + y)  # never the wrong variant's result
    s = _spec(k)
    assert set(s.entries) == {"static", "dynamic"} and set(s.check_failures) == {"static"}
    assert s.tuning.winner == "dynamic"


def test_a_first_tier_that_does_not_compile_builds_the_others_now(tiered):
    body = BODY.replace("return 0;", "% if schedule == 'schedule(static)':\n    syntax error;\n"
                        "% endif\n    return 0;")
    k = JitKernel(Axpy(variants=("static", "dynamic"), body=body))
    x, y = _xy()
    np.testing.assert_allclose(k(3.0, x, y), 3 * x + y)
    s = _spec(k)
    assert set(s.entries) == {"dynamic"} and "does not compile" in s.tuning.excluded["static"]
    assert s.tuning.winner == "dynamic"


def test_exhaustive_tuning_and_a_single_variant_are_not_tiered(tiered, gate, monkeypatch):
    monkeypatch.setenv("ASP_TUNE", "exhaustive")
    k = JitKernel(Axpy(variants=("static", "dynamic")))
    x, y = _xy()
    np.testing.assert_allclose(k(2.0, x, y), 2 * x + y)  # the gate holds the builder: no wait
    s = _spec(k)
    assert set(s.entries) == {"static", "dynamic"} and s.pending is None


def _cubic(x):
    return x * x * x - 2.0 * x


def test_a_bucket_remembering_a_variant_not_built_yet_runs_what_is_built(tiered, gate,
                                                                        fresh_cache):
    """A size bucket whose winner an earlier run remembers, with no record to load (that
    run ended before its late variants were in, or the kernel's globals were rebound and
    bound back): the bucket's tuning took the remembered winner while it was still
    compiling, and the call raised ``KeyError`` (found by rebinding a global 0.0 to -0.0
    and back).  The remembered winner now wins when it joins."""
    from asp.tune import db

    x = np.random.default_rng(5).standard_normal(100)
    want = np.array([_cubic(np.float64(v)) for v in x])
    first = elementwise(_cubic)
    np.testing.assert_array_equal(first(x), want)
    s = _spec(first.jit)
    bucket = first.jit.specializer.prepare((x, None)).bucket
    assert bucket and s.pending is not None and not s.pending.done()
    late = sorted(s.tuning.pending)[0]
    assert late not in s.entries
    db.store(s.kernel, f"{s.signature} {bucket} [code {s.code[:12]}]", late, {}, "online")
    again = elementwise(_cubic)  # its own runtime object: no record, the same tuning keys
    for _ in range(3):
        np.testing.assert_array_equal(again(x), want)
    s2 = _spec(again.jit)
    assert s2 is not s and s2.pending is not None
    t = s2.tuning_for(bucket)
    assert t.remembered == late and t.winner is None and late not in s2.entries
    gate.set()
    s2.pending.result(timeout=120)
    for _ in range(2 * LATE_SAMPLE):
        np.testing.assert_array_equal(again(x), want)
        if s2.pending is None:
            break
    assert late in s2.entries and t.winner == late  # remembered, it won once built


def test_the_first_tier_is_the_remembered_winner(tiered):
    plan = Axpy(variants=("static", "dynamic", "guided")).plan(None)
    t = Tuning("tiers-test", "sig", ["static", "dynamic", "guided"], mode="online")
    now, later = tiers(plan, t)
    assert [v.name for v in now.variants] == ["static"]
    assert [v.name for v in later.variants] == ["dynamic", "guided"]
    t.winner = "guided"  # remembered from an earlier process
    now, later = tiers(plan, t)
    assert [v.name for v in now.variants] == ["guided"]
    assert [v.name for v in later.variants] == ["static", "dynamic"]


KERNEL = """
import numpy as np
from specializers.elementwise import elementwise

@elementwise
def poly(x):
    return 3.0 * x * x + 2.0 * x + 1.0
"""

RUN = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from kern import poly
x = np.linspace(-1, 1, 100_000)
y = poly(x)
assert np.allclose(y, 3 * x * x + 2 * x + 1)
(s,) = poly.jit.specializations.values()
print(json.dumps({"planned": s.plan is not None, "variants": sorted(s.entries),
                  "all": sorted(s.tuning.variants)}))
"""


def test_a_process_that_exits_early_leaves_a_complete_record(tmp_path):
    """One call, then exit: the late variants are still compiling (no later call
    absorbs them), so the exit hook waits for them, checks them and writes the record,
    and the next process starts warm with every variant."""
    (tmp_path / "kern.py").write_text(textwrap.dedent(KERNEL))
    env = dict(os.environ, ASP_TIERED="1", ASP_TUNE="online",
               ASP_CACHE_DIR=str(tmp_path / "c"))

    def run():
        out = subprocess.run([sys.executable, "-c", RUN, str(tmp_path)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    cold = run()
    assert cold["planned"] and len(cold["all"]) > 1
    warm = run()
    assert not warm["planned"] and warm["variants"] == cold["all"]
    leftovers = [p for p in (tmp_path / "c").rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers


def test_calls_while_late_variants_compile_run_on_one_thread(tiered, gate, monkeypatch,
                                                            fresh_cache):
    """The late variants compile on the other cores: the first tier's calls run on one
    OpenMP thread meanwhile (a team spinning on both cores kept gcc waiting: a 3-D kernel
    came to its tuned steady state 4.1 s after the first call instead of 2.2 s), and the
    caller's thread count is back once they are in."""
    omp = specialization_module.OPENMP
    k0 = JitKernel(Axpy(variants=("static",)))  # a kernel built with OpenMP loads its runtime
    x, y = _xy()
    k0(2.0, x, y)
    assert omp.ready()
    before = omp.get()
    assert before >= 2  # conftest: the parallel branches run with 2 threads at least
    counts = []
    real = omp.set
    monkeypatch.setattr(omp, "set", lambda n: counts.append(n) or real(n))
    k = JitKernel(Axpy(variants=("static", "dynamic", "guided")))
    x, y = _xy()
    np.testing.assert_allclose(k(2.0, x, y), 2 * x + y, rtol=1e-15)
    for _ in range(3):
        np.testing.assert_allclose(k(2.0, x, y), 2 * x + y, rtol=1e-15)
        assert omp.get() == before
    assert counts == [1, before] * 4  # the first call too: its late variants were pending
    gate.set()
    _spec(k).pending.result(timeout=120)
    counts.clear()
    for _ in range(calls_to_decide(3)):
        np.testing.assert_allclose(k(2.0, x, y), 2 * x + y, rtol=1e-15)
    assert counts == [] and omp.get() == before


def test_wait_for_builds_returns_once_the_queued_builds_are_done(tiered, fresh_cache):
    """``asp.runtime.wait_for_builds``: False while a build queued before it still runs
    (the timeout passes), True once every one has finished; the late variants then join
    at the kernel's next call."""
    from asp.runtime import wait_for_builds

    event = threading.Event()
    held = specialization_module._BUILDER.submit(event.wait, 120)
    try:
        k = JitKernel(Axpy(variants=("static", "dynamic", "guided")))
        x, y = _xy()
        k(2.0, x, y)
        s = _spec(k)
        assert not s.pending.done()
        assert wait_for_builds(timeout=0.2) is False
        assert not s.pending.done()
    finally:
        event.set()
    assert wait_for_builds(timeout=120) is True
    assert held.done() and s.pending.done()
    for bad in (-1, "1", float("nan"), True):
        with pytest.raises(ValueError, match="timeout must be None or a number"):
            wait_for_builds(timeout=bad)
    k(2.0, x, y)
    assert set(s.entries) == ALL


def test_a_bucket_whose_late_variants_do_not_suit_it_decides_at_once(tiered, gate,
                                                                      fresh_cache,
                                                                      monkeypatch):
    """The late variants of a 2-D stencil all stream their output (``stream`` and the
    named points of the jam space); a grid that fits in cache excludes them, so its
    bucket runs the first tier as its decision from the first call on, instead of after
    2-3 s of compiling variants it would never run.  The late variants still join, for
    the buckets they suit."""
    from asp import config
    from asp.codegen import streaming
    # A 4 MiB L3 (the suite's own has none: every variant races at every size).
    monkeypatch.setattr(config, "cache_sizes", lambda: (32 << 10, 256 << 10, 4 << 20))
    streaming.unsuited_in_cache.cache_clear()

    class HeatHere(Heat):  # a runtime object of its own (kernels are cached per class)
        pass

    k = HeatHere()
    u = np.random.default_rng(4).random((96, 80))
    out = np.zeros_like(u)
    k.kernel(u, 0.1, out)
    jit = k.jit_for(u, 0.1, out)
    s = _spec(jit)  # (k.specialization() would wait for the late variants)
    t = s.tuning_for(jit.specializer.prepare((u, 0.1, out)).bucket)
    late = {n for n in s.tuning.pending if n.startswith("stream")}
    assert {"stream", "stream_jam2", "stream_jam4", "stream_jam8"} <= late
    assert not any(n.startswith("space:") for n in s.tuning.pending)
    assert set(t.excluded) >= late and not t.waiting()
    assert jit.chosen_variant(u, 0.1, out) == "static" and not s.pending.done()
    want = u.copy()
    want[1:-1, 1:-1] = u[1:-1, 1:-1] + 0.1 * (-4.0 * u[1:-1, 1:-1] + u[:-2, 1:-1]
                                              + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:])
    gate.set()
    # The quick first tier rebuilt, then the streaming variants (built after it): the hot
    # entry serves the bucket, and a sampled call takes each part in.
    for _ in range(3):
        if s.pending is None:
            break
        s.pending.result(timeout=120)
        for _ in range(2 * LATE_SAMPLE):
            k.kernel(u, 0.1, out)
    np.testing.assert_allclose(out[1:-1, 1:-1], want[1:-1, 1:-1], rtol=1e-14)
    assert late <= set(s.entries) and not s.check_failures
    assert jit.chosen_variant(u, 0.1, out) == "static"


def test_pending_variants_a_tuning_excludes_hold_no_decision_back(fresh_cache):
    t = Tuning("test:k", "sig", ["a", "b"], mode="online")  # c: a point, not yet added
    t.pending = {"b", "c"}
    assert t.waiting() and t.winner is None
    t.set_unsuited(lambda v: "streams" if v in ("b", "c") else None)
    assert not t.waiting() and t.winner == "a" and set(t.excluded) == {"b", "c"}
    t2 = Tuning("test:k2", "sig", ["a", "b"], mode="online")
    t2.pending = {"b", "space:points"}  # a point not yet named may suit: it is waited for
    t2.set_unsuited(lambda v: "streams" if v == "b" else None)
    assert t2.waiting() and t2.winner is None


def test_late_variants_a_first_bucket_does_not_run_are_built_after_the_others(
        tiered, gate, fresh_cache, monkeypatch):
    """A 3-D stencil's late variants, at a size whose grids fit in cache: the tiled and
    collapsed ones (which its bucket races) are built first and decided among; the
    streaming ones are built after, in a second build on the same thread, and are taken
    in (checked against the Python, recorded) for the buckets they suit."""
    from asp import config
    from asp.codegen import streaming
    monkeypatch.setattr(config, "cache_sizes", lambda: (32 << 10, 256 << 10, 4 << 20))
    streaming.unsuited_in_cache.cache_clear()

    class Heat3Here(Heat3):  # a runtime object of its own (kernels are cached per class)
        pass

    k = Heat3Here()
    u = np.random.default_rng(5).random((14, 12, 19))
    out = np.zeros_like(u)
    want = np.zeros_like(u)
    c = u[1:-1, 1:-1, 1:-1]
    want[1:-1, 1:-1, 1:-1] = c + 0.1 * (-6.0 * c + u[:-2, 1:-1, 1:-1] + u[2:, 1:-1, 1:-1]
                                        + u[1:-1, :-2, 1:-1] + u[1:-1, 2:, 1:-1]
                                        + u[1:-1, 1:-1, :-2] + u[1:-1, 1:-1, 2:])
    k.kernel(u, out)
    jit = k.jit_for(u, out)
    s = _spec(jit)
    streamed = {n for n in s.tuning.pending if n.startswith("stream")}
    others = s.tuning.pending - streamed
    assert streamed and others and s._later[2] == streamed
    gate.set()
    first = s.pending
    first.result(timeout=120)
    k.kernel(u, out)  # takes in the first part; the second is on its way
    assert first is not s.pending and s.pending is not None
    assert others <= set(s.entries) and not streamed & set(s.entries)
    assert streamed <= s.tuning.pending and not others & s.tuning.pending
    for _ in range(calls_to_decide(len(others) + 1)):
        if jit.chosen_variant(u, out) is not None:
            break
        k.kernel(u, out)
    assert jit.chosen_variant(u, out) in others | {"static"}
    s.pending.result(timeout=120)
    for _ in range(2 * LATE_SAMPLE):  # a sampled call takes the second part in
        if s.pending is None:
            break
        k.kernel(u, out)
    assert s.pending is None and streamed <= set(s.entries) and not s.check_failures
    assert not s.tuning.pending
    np.testing.assert_allclose(out, want, rtol=1e-14)
    for v in streamed | others:
        np.testing.assert_allclose(jit.run_variant(v, u, np.zeros_like(u)), want, rtol=1e-14)
    # recorded once all are in: the record lists every variant, the streaming ones too
    records = [json.loads(p.read_text()) for p in (fresh_cache / "specs").rglob("*.json")]
    assert any(streamed <= set(r["variants"]) for r in records), records


DIVIDING = """
from specializers.stencil import StencilKernel

class Ratio(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = 1.0
            for y in a.neighbors(x, 1):
                out[x] += int(a[y] / a[y])
"""

RUN_DIVIDING = """
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from kern import Ratio
k = Ratio(boundary="nearest")
a = np.random.default_rng(0).integers(1, 127, (40, 40)).astype(np.int8)
for _ in range(3):
    out = np.zeros((40, 40))
    k.kernel(a, out)
    assert np.array_equal(out, np.full((40, 40), 5.0)), out
if sys.argv[2] == "inspect":
    s = k.jit_for(a, out).specialization(a, out)
    print(json.dumps({"planned": s.plan is not None, "excluded": s.tuning.excluded}))
else:
    print(json.dumps({}))
"""


def _run_dividing(tmp_path, what: str) -> dict:
    env = dict(os.environ, ASP_TIERED="1", ASP_STRICT="1",
               ASP_CACHE_DIR=str(tmp_path / "c"))
    out = subprocess.run([sys.executable, "-c", RUN_DIVIDING, str(tmp_path), what],
                         env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_late_variants_of_a_kernel_python_cannot_run_on_random_inputs(tmp_path):
    """The Python raises on the random check inputs (int(0 / 0)), so the first variant is
    checked on inputs cut from the call; the late ones, absorbed by ``specialization()``
    or at exit without a call's arguments, are checked on the same inputs.  They were
    excluded as unchecked instead, the rebuilt first one among them: the process's next
    call raised a RuntimeError ("every variant ... failed"), and so did every call of
    every later process, which loaded the record written so.  ``ASP_STRICT``: no call
    falls back unnoticed."""
    (tmp_path / "kern.py").write_text(textwrap.dedent(DIVIDING))
    first = _run_dividing(tmp_path, "inspect")
    assert first["planned"] and first["excluded"] == {}
    _run_dividing(tmp_path, "call")  # exits with the late variants absorbed at exit
    (tmp_path / "c").rename(tmp_path / "c0")
    _run_dividing(tmp_path, "call")
    warm = _run_dividing(tmp_path, "inspect")
    assert not warm["planned"] and warm["excluded"] == {}


def test_a_record_whose_every_variant_is_excluded_is_built_again(tmp_path):
    """A record written with every variant excluded (as the bug above wrote it) is not
    loaded: the signature is built and checked again, and its record rewritten."""
    (tmp_path / "kern.py").write_text(textwrap.dedent(DIVIDING))
    _run_dividing(tmp_path, "call")
    records = [p for p in (tmp_path / "c").rglob("*")
               if p.is_file() and b'"excluded"' in p.read_bytes()]
    assert records
    for p in records:
        data = json.loads(p.read_text())
        data["excluded"] = {name: "excluded by the test" for name in data["variants"]}
        p.write_text(json.dumps(data))
    again = _run_dividing(tmp_path, "inspect")
    assert again["planned"] and again["excluded"] == {}
    rewritten = [json.loads(p.read_text()) for p in records]
    assert all(d["excluded"] == {} for d in rewritten)

