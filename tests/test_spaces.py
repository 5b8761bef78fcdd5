"""Search spaces: a specializer declares integer parameters; the runtime compiles a sample
of the points, the tuner races them with the plain variants, ``asp tune show`` says what
was tried."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys

import numpy as np
import pytest

from asp.codegen.template import render, template_function
from asp.runtime import JitKernel, Space, Variant
from asp.tune import calls_to_decide, remembered, verify
from asp.tune.db import store
from tests.test_template_style import Axpy

CHUNKED = """
    (void)w_n0;
    #pragma omp parallel for schedule(dynamic, ${chunk})
    for (int64_t i = 0; i < x_n0; ++i) {
        % if unroll > 1:
        #pragma GCC unroll ${unroll}
        % endif
        for (int k = 0; k < 1; ++k) { w[i] = x[i]; out[i] = axpy(a, w[i], y[i]); }
    }
    return 0;
"""
PARAMS = {"chunk": (64, 128, 256, 512, 1024, 2048, 4096, 8192), "unroll": (1, 2, 4)}


class ChunkedAxpy(Axpy):
    def __init__(self, sample=5):
        super().__init__(variants=("static",))
        self.sample = sample
        self.digest = hashlib.sha256(f"{self.digest}|chunked|{sample}".encode()).hexdigest()
        self.made: list[dict] = []

    def _make(self, specs, names, chunk, unroll):
        self.made.append({"chunk": chunk, "unroll": unroll})
        name = f"chunk{chunk}_u{unroll}"
        return Variant(name, template_function(f"axpy_{name}", names, specs, render(
            CHUNKED, kernel=self.name, chunk=chunk, unroll=unroll)))

    def plan(self, prepared):
        plan = super().plan(prepared)
        names = ("a", "x", "y", "w", "out")
        space = Space("chunks", PARAMS, lambda **p: self._make(plan.specs, names, **p),
                      sample=self.sample)
        return dataclasses.replace(plan, spaces=(space,))


def test_a_sample_of_the_space_is_compiled_checked_and_deterministic(tmp_path, monkeypatch):
    spec = ChunkedAxpy()
    k = JitKernel(spec)
    x, y = np.random.default_rng(0).standard_normal((2, 50_000))
    np.testing.assert_allclose(k(2.0, x, y), 2 * x + y, rtol=1e-15)
    s = k.specialization(2.0, x, y)
    assert len(spec.made) == 5  # only the sampled points are made and compiled, of 24
    assert set(s.entries) == {"static"} | {f"chunk{p['chunk']}_u{p['unroll']}"
                                           for p in spec.made}
    assert not s.check_failures
    for v in s.entries:
        np.testing.assert_allclose(k.run_variant(v, 2.0, x, y), 2 * x + y, rtol=1e-15)
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "another"))  # no record: plan again
    again = ChunkedAxpy()
    JitKernel(again).specialization(2.0, x, y)
    assert again.made == spec.made  # the same signature samples the same points
    assert s.tuning.spaces["chunks"]["params"] == {k: list(v) for k, v in PARAMS.items()}


def test_tuning_races_the_points_and_show_lists_the_space(fresh_cache, monkeypatch):
    # The race is tested, not a busy machine: a decision made noisy is not reopened.
    monkeypatch.setattr(verify, "MAX_REOPEN", 0)
    spec = ChunkedAxpy(sample=3)
    k = JitKernel(spec)
    x, y = np.random.default_rng(1).standard_normal((2, 200_000))
    for _ in range(calls_to_decide(4)):
        k(1.0, x, y)
    s = k.specialization(1.0, x, y)
    assert s.tuning.winner in s.entries
    (row,) = [r for r in remembered(s.kernel)]
    assert row["timings"]["_decision"]["spaces"]["chunks"]["tried"] == \
        [f"chunk{p['chunk']}_u{p['unroll']}" for p in spec.made]
    out = subprocess.run([sys.executable, "-m", "asp.cli", "tune", "show", s.kernel],
                         capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "space chunks: chunk in {64, 128, 256, 512, 1024, 2048, 4096, 8192}, " \
           "unroll in {1, 2, 4}; tried 3" in out.stdout


def test_a_space_no_larger_than_its_sample_is_tried_whole():
    space = Space("s", {"a": (1, 2), "b": (3,)}, lambda **p: None, sample=6)
    assert space.points("seed") == [{"a": 1, "b": 3}, {"a": 2, "b": 3}]
    big = Space("s", {"a": tuple(range(10)), "b": tuple(range(10))}, lambda **p: None)
    assert big.points("one") == big.points("one") and len(big.points("one")) == 6
    assert big.points("one") != big.points("two")


def test_a_space_names_its_points_while_they_compile_by_its_label():
    """``pending_names``: the label's names of the sampled points (the tuner's pending
    set while they compile), or one ``space:<name>`` placeholder without a label; a label
    that is not callable is refused when the space is made."""
    def make(chunk):
        return Variant(f"chunk{chunk}", None)

    labelled = Space("chunks", {"chunk": (8, 16, 32, 64)}, make, sample=2,
                     label=lambda chunk: f"chunk{chunk}")
    names = labelled.pending_names("seed")
    assert names == [f"chunk{p['chunk']}" for p in labelled.points("seed")]
    assert len(names) == 2
    assert Space("chunks", {"chunk": (8,)}, make).pending_names("seed") == ["space:chunks"]
    with pytest.raises(TypeError, match="space chunks: label must be a callable"):
        Space("chunks", {"chunk": (8,)}, make, label="chunk{chunk}")


def test_a_space_samples_only_the_points_its_restriction_keeps():
    # ``where``: a parameter that means something for some values of another only (the
    # blocked iteration's vector form exists for jammed rows, not for a row alone).
    def where(p):
        return p["jam"] > 1 or not p["form"]

    space = Space("s", {"jam": (1, 2, 4), "form": (0, 1)}, lambda **p: None, sample=4,
                  where=where)
    whole = space.points("seed", whole=True)
    assert whole == [{"jam": 1, "form": 0}, {"jam": 2, "form": 0}, {"jam": 2, "form": 1},
                     {"jam": 4, "form": 0}, {"jam": 4, "form": 1}]
    for seed in map(str, range(20)):  # a sample of 4 of the 5, never the excluded point
        sample = space.points(seed)
        assert len(sample) == 4 and all(p in whole for p in sample)
    assert dataclasses.replace(space, sample=5).points("x") == whole


def test_exhaustive_tuning_times_every_point_and_a_later_process_keeps_its_winner(
        fresh_cache, monkeypatch):
    # Exhaustive tuning compiles and times the whole space (24 points), not a sample; the
    # winner it remembers may lie outside the online sample of 5, and an online process
    # that finds it remembered builds that point and uses it.
    x, y = np.random.default_rng(4).standard_normal((2, 20_000))
    assert len(JitKernel(ChunkedAxpy()).specialization(3.0, x, y).entries) == 6
    monkeypatch.setenv("ASP_TUNE", "exhaustive")  # the record of that sample is not used
    spec = ChunkedAxpy()
    k = JitKernel(spec)
    np.testing.assert_allclose(k(3.0, x, y), 3 * x + y, rtol=1e-15)
    s = k.specialization(3.0, x, y)
    every = {f"chunk{c}_u{u}" for c in PARAMS["chunk"] for u in PARAMS["unroll"]}
    assert set(s.entries) == {"static"} | every and not s.check_failures
    (row,) = remembered(s.kernel)
    assert set(row["timings"]) >= {"static"} | every  # each one timed
    for v in every:
        np.testing.assert_allclose(k.run_variant(v, 3.0, x, y), 3 * x + y, rtol=1e-15)

    seed = f"{s.kernel}|{s.signature}"
    sample = {f"chunk{p['chunk']}_u{p['unroll']}" for p in
              Space("chunks", PARAMS, lambda **p: None, sample=5).points(seed)}
    outside = sorted(every - sample)[0]
    assert store(s.kernel, s.tuning.signature, outside, {outside: {"best": 1e-6}},
                 "exhaustive")
    for record in (fresh_cache / "specs").glob("*.json"):  # plan again (no warm start)
        record.unlink()
    monkeypatch.setenv("ASP_TUNE", "online")
    later = ChunkedAxpy()
    k2 = JitKernel(later)
    np.testing.assert_allclose(k2(3.0, x, y), 3 * x + y, rtol=1e-15)
    assert k2.chosen_variant(3.0, x, y) == outside
    entries = k2.specialization(3.0, x, y).entries
    assert outside in entries and len(entries) == 7  # static, the sample of 5, the winner


BOUND_BODY = """
    (void)w_n0;
    #pragma omp parallel for schedule(dynamic, chunk)
    for (int64_t i = 0; i < x_n0; ++i) { w[i] = x[i]; out[i] = axpy(a, w[i], y[i]) + 0 * unroll; }
    return 0;
"""


class BoundAxpy(ChunkedAxpy):
    """The chunk space with the chunk and unroll as the variants' bound constants: one
    C function serves every point."""

    def _make(self, specs, names, chunk, unroll):
        self.made.append({"chunk": chunk, "unroll": unroll})
        if not hasattr(self, "_shared"):
            self._shared = template_function("axpy_chunked", names, specs, render(
                BOUND_BODY, kernel=self.name), bound=("chunk", "unroll"))
        return Variant(f"chunk{chunk}_u{unroll}", self._shared, bound=(chunk, unroll))


def test_points_that_share_a_function_compile_it_once(fresh_cache, monkeypatch):
    from asp.runtime.build import units
    from asp.runtime.plan import functions_of

    spec = BoundAxpy(sample=6)
    k = JitKernel(spec)
    x, y = np.random.default_rng(3).standard_normal((2, 50_000))
    np.testing.assert_allclose(k(2.0, x, y), 2 * x + y, rtol=1e-15)
    from asp.runtime import wait_for_builds
    wait_for_builds()
    k(2.0, x, y)
    s = k.specialization(2.0, x, y)
    points = {f"chunk{p['chunk']}_u{p['unroll']}": p for p in spec.made}
    assert len(points) == 6 and set(s.entries) == {"static", *points}
    assert not s.check_failures and not s.tuning.excluded
    # One definition, one entry per point passing its constants.
    assert s.source.count("int axpy_chunked(") == 1
    for name, p in points.items():
        assert f"asp_entry_{name}(" in s.source
        assert f"INT64_C({p['chunk']}), INT64_C({p['unroll']}));" in s.source
        np.testing.assert_allclose(k.run_variant(name, 2.0, x, y), 2 * x + y, rtol=1e-15)
    # Variants sharing a function stay in one translation unit.
    vs = [spec._make(s.specs, ("a", "x", "y", "w", "out"), c, u) for c, u in
          ((64, 1), (128, 1), (256, 2), (512, 4), (1024, 1))]
    assert units(vs, 2) == [tuple(vs)] and functions_of(vs) == (vs[0].function,)
    other = ChunkedAxpy()._make(s.specs, ("a", "x", "y", "w", "out"), 64, 1)
    clash = Variant("clash", dataclasses.replace(other.function, name="axpy_chunked"))
    with pytest.raises(ValueError, match="clash: another variant's function has the name"):
        functions_of([*vs, clash])
    with pytest.raises(TypeError, match="bound values must be ints"):
        Variant("bad", vs[0].function, bound=(1.5,))
