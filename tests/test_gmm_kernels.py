"""GMM's kernels on the core's runtime: every variant against the NumPy reference,
the C-side guards, the hot entry, size buckets, warm starts, and the plan's shape.

The oracle is each kernel's ``run_python`` (:mod:`specializers.gmm.reference`),
itself checked against scikit-learn in tests/test_gmm.py.  The suite runs with
``ASP_PARALLEL_THRESHOLD=0`` and at least two OpenMP threads, so every call here
takes the threaded path (asserted below).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from asp.runtime import MISS, JitKernel
from asp.tune import calls_to_decide
from specializers.gmm import VARIANTS, source
from specializers.gmm import kernels as K
from specializers.gmm import reference as ref
from specializers.gmm import stepper as S

ROOT = Path(__file__).resolve().parents[1]
KINDS = ("full", "diag")
DTYPES = (np.float64, np.float32)


def em_args(kind, m, d, dtype, n, *, nthreads=2, **problem):
    X, mu, P, logc = K.check_problem(kind, m, d, dtype, n, **problem)
    nstat = K.kernel("em", kind, m, d).specializer.nstat
    return [X, mu, P, logc, nthreads, np.zeros((n, m)), np.zeros((m, nstat)), np.zeros(1)]


def run_reference(k: JitKernel, args):
    mine = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    k.specializer.run_python(tuple(mine))
    return mine


def assert_outputs_close(got, want, rtol=1e-9):
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-11 * scale)


def test_the_suite_takes_the_threaded_path():
    assert K.threads_for(1, 1, 1) >= 2


# -- every variant against the reference ----------------------------------------------------
# (N, threads, problem): random clusters; one event; fewer events than a block or than
# threads; a ragged last block split unevenly; a start from data points (precision factors
# 1e4 times larger: log densities near -1e9, responsibilities flushed to 0); a component so
# far away that no event has any responsibility for it; one of weight 0 (log w = -inf).
PROBLEMS = {
    "random": (301, 2, {}),
    "one event": (1, 3, {}),
    "short": (31, 3, {}),
    "ragged": (397, 3, {"seed": 5}),
    "tiny covariances": (500, 2, {"spread": 1e4}),
    "far component": (300, 2, {"seed": 9}),
    "zero weight": (300, 2, {"seed": 11}),
}


@pytest.mark.parametrize("m, d", [(4, 5), (1, 1), (3, 33)])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_every_em_variant_agrees_with_the_reference(kind, dtype, m, d):
    k = K.kernel("em", kind, m, d)
    s = k.specialization(*em_args(kind, m, d, dtype, 301))
    assert set(s.entries) == set(VARIANTS) and not s.check_failures
    for what, (n, threads, problem) in PROBLEMS.items():
        args = em_args(kind, m, d, dtype, n, nthreads=threads, **problem)
        if what == "far component":
            args[1][0] += 1e3
        if what == "zero weight" and m > 1:  # log w = -inf: exp(-inf) is 0, not NaN
            args[3][0] = -np.inf
        want = run_reference(k, args)
        if what == "tiny covariances" and n > 1:
            assert ref.kernel_log_prob(*args[:4]).min() < -1e6
        for v in VARIANTS:
            got = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
            k.run_variant(v, *got)
            assert_outputs_close(got[6], want[6])
            assert got[7][0] == pytest.approx(want[7][0], rel=1e-12, abs=1e-9), (what, v)
            if what in ("far component", "zero weight") and m > 1:
                assert got[6][0, 0] == 0.0  # no weight at all, not a subnormal one
            if v == "components":  # it leaves the responsibilities in work
                np.testing.assert_allclose(got[5], want[5], rtol=1e-9, atol=1e-200)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_estep_outputs_alone_and_together(kind, dtype):
    m, d, n = 4, 5, 397
    k = K.kernel("estep", kind, m, d)
    X, mu, P, logc = K.check_problem(kind, m, d, dtype, n, seed=3)
    for wanted in [(1, 1, 1), (1, 0, 0), (0, 1, 0), (0, 0, 1), (0, 0, 0)]:
        out = np.zeros((n * wanted[0], m))
        labels = np.zeros(n * wanted[1], np.int64)
        ll = np.zeros(wanted[2])
        args = [X, mu, P, logc, 3, out, labels, ll]
        want = run_reference(k, args)
        k(*args)
        assert_outputs_close(out, want[5])
        np.testing.assert_array_equal(labels, want[6])
        assert_outputs_close(ll, want[7], rtol=1e-12)
    assert not k.specialization(*args).check_failures


@pytest.mark.parametrize("centre", [1, 0])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", KINDS)
def test_mstats_agrees_with_the_reference(kind, dtype, centre):
    m, d, n = 4, 5, 397
    k = K.kernel("mstats", kind, m, d)
    rng = np.random.default_rng(4)
    X = K.check_problem(kind, m, d, dtype, n)[0]
    resp = rng.dirichlet(np.ones(m), n)
    resp[::3] = np.eye(m)[rng.integers(0, m, len(resp[::3]))]
    resp[:, 2] = 0.0  # a component without weight: its centre is 0
    args = [X, resp.astype(dtype), 3, centre, np.full((m, d), np.nan),
            np.zeros((m, k.specializer.nstat))]
    want = run_reference(k, args)
    k(*args)
    np.testing.assert_array_equal(args[4][2], 0.0)
    assert_outputs_close(args[4], want[4])
    assert_outputs_close(args[5], want[5])


# -- guards ---------------------------------------------------------------------------------
def _misread(args):
    """Arguments an entry compiled for ``args`` would misread, by what is wrong."""
    X, mu, P, logc, nt, work, stats, ll = args
    ro = stats.copy()
    ro.flags.writeable = False
    return {
        "X: float32": [X.astype(np.float32), *args[1:]],
        "X: not C-contiguous": [np.asfortranarray(X), *args[1:]],
        "X: not aligned": [_unaligned(X), *args[1:]],
        "X: wrong width": [np.hstack([X, X[:, :1]]), *args[1:]],
        "mu: wrong shape": [X, mu[:-1].copy(), *args[2:]],
        "P: wrong shape": [X, mu, P[..., 0].copy(), *args[3:]],
        "logc: float32": [X, mu, P, logc.astype(np.float32), *args[4:]],
        "nthreads: a float": [X, mu, P, logc, 2.0, work, stats, ll],
        "stats: read-only": [X, mu, P, logc, nt, work, ro, ll],
        "stats: wrong shape": [X, mu, P, logc, nt, work, stats[:, :-1].copy(), ll],
        "ll: wrong shape": [X, mu, P, logc, nt, work, stats, np.zeros(2)],
    }


def _unaligned(a: np.ndarray) -> np.ndarray:
    buf = np.empty(a.nbytes + 1, np.uint8)
    view = buf[1:].view(a.dtype).reshape(a.shape)
    view[...] = a
    return view


@pytest.mark.parametrize("kind", KINDS)
def test_every_variant_guard_rejects_what_it_would_misread(kind):
    m, d, n = 3, 4, 200
    k = K.kernel("em", kind, m, d)
    args = em_args(kind, m, d, np.float64, n)
    s = k.specialization(*args)
    for v in VARIANTS:
        for what, bad in _misread(args).items():
            assert s.entries[v](*bad) is MISS, (v, what)  # refused in C: no crash
        # What guards cannot see (rows of one array against another's) the C checks.
        with pytest.raises(ValueError, match="work: expected one row per event"):
            s.entries[v](*args[:5], np.zeros((n + 1, m)), *args[6:])
    # Through the kernel: inputs it can convert are copied (or get their own signature),
    # anything else is an error naming the argument, before any native code runs.
    for what, bad in _misread(args).items():
        name = what.split(":")[0]
        if what in ("X: float32", "X: not C-contiguous", "X: not aligned"):
            want = run_reference(k, bad)
            k(*bad)
            assert_outputs_close(bad[6], want[6])
            continue
        with pytest.raises((TypeError, ValueError), match=f"gmm.em.*{name}:"):
            k(*bad)
    with pytest.raises(TypeError, match="X: expected a float32 or float64 array"):
        k(args[0].astype(np.int64), *args[1:])


def test_estep_and_mstats_refuse_mismatched_rows():
    m, d, n = 3, 4, 50
    X, mu, P, logc = K.check_problem("full", m, d, np.float64, n)
    e = K.kernel("estep", "full", m, d)
    with pytest.raises(ValueError, match="out: expected 0 or 50 rows"):
        e(X, mu, P, logc, 2, np.zeros((7, m)), np.zeros(0, np.int64), np.zeros(1))
    entry = e.specialization(X, mu, P, logc, 2, np.zeros((0, m)), np.zeros(n, np.int64),
                             np.zeros(1)).entries["blocked_b128"]
    with pytest.raises(ValueError, match="expected X's rows"):
        entry(X, mu, P, logc, 2, np.zeros((7, m)), np.zeros(0, np.int64), np.zeros(1))
    ms = K.kernel("mstats", "full", m, d)
    with pytest.raises(ValueError, match="resp: expected 50 rows"):
        ms(X, np.ones((49, m)), 2, 1, np.zeros((m, d)), np.zeros((m, 1 + d + d * d)))
    with pytest.raises(TypeError, match="resp: expected a float64 array"):
        ms(X, np.ones((n, m), np.float32), 2, 1, np.zeros((m, d)), np.zeros((m, 1 + d + d * d)))


# -- the hot entry and size buckets -----------------------------------------------------------
def _tuned(stepper, X, p):
    spec = stepper.em.specialization(*stepper.em_args(X, S.kernel_params(p)))  # all variants in
    # as many calls as the tuner may take: on a loaded machine (the suite's other worker)
    # preempted timings are retried, and 200 calls were once not enough
    for _ in range(calls_to_decide(len(spec.entries))):
        stepper.step(X, p, 1e-6)
        if stepper.last_variant is not None:  # of this X's size bucket
            return
    raise AssertionError("the tuner did not decide")


def _count_slow_calls(k: JitKernel, monkeypatch) -> list:
    calls = []
    slow = k._slow

    def counted(args):
        calls.append(len(args[0]))
        return slow(args)

    monkeypatch.setattr(k, "_slow", counted)
    return calls


def test_the_hot_entry_serves_repeated_em_steps(monkeypatch):
    m, d = 3, 4
    X, mu, _, _ = K.check_problem("diag", m, d, np.float64, 3000, seed=1)
    small = X[:300].copy()
    p = ref.Params("diag", np.full(m, 1 / m), mu, None, np.ones((m, d)))
    stepper = S.EMStepper(m, d, "diag", np.float64)
    _tuned(stepper, X, p)
    _tuned(stepper, small, p)  # another size bucket: its own winner, its own hot entry
    assert stepper.em.hot_entry is not None
    calls = _count_slow_calls(stepper.em, monkeypatch)
    for _ in range(10):  # alternating sizes stay on the fast path
        stepper.step(X, p, 1e-6)
        stepper.step(small, p, 1e-6)
    assert len(calls) <= 2, calls  # at most the tuner's sampled calls, one per bucket
    # The E-step has one variant: hot from its first call.
    stepper.labels(X, p)
    assert stepper.estep.hot_entry is not None
    calls = _count_slow_calls(stepper.estep, monkeypatch)
    for _ in range(5):
        stepper.labels(X, p)
        stepper.weighted_log_prob(small, p)
        stepper.log_likelihood(X, p)
    assert calls == []


def test_buckets_split_sizes_and_the_serial_range(monkeypatch):
    spec = K.EMKernel("full", 4, 8)
    for n in (1, 2, 5, 16, 17, 1000, 4096, 4097):
        name, (lo, hi) = spec.bucket(n, 2)
        assert lo <= n * 8 < hi, (n, lo, hi)
        size = K.n_bucket(n)[0]
        assert f"N~{size} " in name and size >= n and (size == 1 or size < 4 * n)
    monkeypatch.delenv("ASP_PARALLEL_THRESHOLD")  # the shipped threshold
    par = -(-K.PAR_MIN_WORK // 32)  # events from which the team runs (M * D = 32)
    assert K.threads_for(par - 1, 4, 8) == 1 and K.threads_for(par, 4, 8) >= 1
    assert spec.bucket(par - 1, 1)[1][1] == par * 8  # the serial range ends there
    assert spec.bucket(par, 2)[1][0] == par * 8  # and the parallel one starts
    monkeypatch.setenv("ASP_PARALLEL_THRESHOLD", "0")
    assert K.threads_for(1, 1, 1) >= 2


# -- warm starts ------------------------------------------------------------------------------
_WARM_SCRIPT = """
import json, sys, warnings
sys.path.insert(0, {root!r})
import numpy as np
from asp.errors import AspFallbackWarning
from specializers.gmm import kernels as K
from specializers.gmm import GaussianMixture

warnings.simplefilter("error", AspFallbackWarning)
warnings.simplefilter("ignore", UserWarning)
X, mu, P, logc = K.check_problem("full", 3, 4, np.float64, 600, seed=2)
gm = GaussianMixture(3, covariance_type="full", random_state=0, max_iter=5).fit(X)
args = {{
    "em": (X, mu, P, logc, 2, np.zeros((600, 3)), np.zeros((3, 21)), np.zeros(1)),
    "estep": (X, mu, P, logc, 2, np.zeros((0, 3)), np.zeros(600, np.int64), np.zeros(1)),
    "mstats": (X, np.full((600, 3), 1 / 3), 2, 1, np.zeros((3, 4)), np.zeros((3, 21))),
}}
loaded = {{f: K.kernel(f, "full", 3, 4).specialization(*a).plan is None
          for f, a in args.items()}}
print(json.dumps({{"loaded": loaded, "means": gm.means_.tolist(),
                  "labels": gm.predict(X).tolist()}}))
"""


def test_a_second_process_warm_starts_from_the_records(tmp_path):
    script = tmp_path / "warm.py"
    script.write_text(_WARM_SCRIPT.format(root=str(ROOT)))
    env = dict(os.environ, ASP_CACHE_DIR=str(tmp_path / "cache"), ASP_TUNE="off")
    runs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=600, env=env, cwd=ROOT)
        assert done.returncode == 0, done.stderr[-3000:]
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    assert not any(runs[0]["loaded"].values())  # built
    assert all(runs[1]["loaded"].values()), runs[1]["loaded"]  # nothing planned or rendered
    assert runs[0]["means"] == runs[1]["means"] and runs[0]["labels"] == runs[1]["labels"]


# -- what the plan is made of -----------------------------------------------------------------
def test_every_variant_is_a_template_function_of_named_arguments():
    spec = K.EMKernel("full", 4, 3)
    plan = spec.plan(spec.prepare(tuple(em_args("full", 4, 3, np.float32, 10))))
    assert [v.name for v in plan.variants] == list(VARIANTS)
    for v in plan.variants:
        fn = v.function
        assert fn.name == f"gmm_em_{v.name}"
        assert [p.name for p in fn.params] == [
            "X", "X_n0", "X_n1", "mu", "mu_n0", "mu_n1", "P", "P_n0", "P_n1", "P_n2",
            "logc", "logc_n0", "nthreads", "work", "work_n0", "work_n1", "stats",
            "stats_n0", "stats_n1", "ll", "ll_n0"]
        X, stats = fn.params[0], fn.params[16]
        assert (X.ctype, X.const, X.restrict) == ("float", True, True)
        assert (stats.ctype, stats.const) == ("double", False)
        body = fn.body.body[0].text
        assert "#pragma omp parallel" in body and "ptrs[" not in body
    assert "typedef float real_t;" in plan.preamble and "#define M 4" in plan.preamble
    assert {f.name for f in plan.helpers} >= {"quad", "normalize", "accumulate",
                                              "quad_block_32", "quad_block_128"}
    assert "#define DD D\n" in K.EMKernel("diag", 4, 3).plan(
        K.EMKernel("diag", 4, 3).prepare(tuple(em_args("diag", 4, 3, np.float64, 10)))
    ).preamble
    assert [e for e, _ in plan.errors] == [MemoryError, ValueError]


def test_the_record_key_covers_what_the_c_depends_on(tmp_path, monkeypatch):
    digests = {K.FAMILIES[f](kind, m, d).code_digest()
               for f in K.FAMILIES for kind in KINDS for m, d in ((2, 3), (3, 2))}
    assert len(digests) == 3 * 2 * 2  # the signature (X's dtype) is not in the digest
    base = K.EMKernel("full", 2, 3).code_digest()
    assert K.EMKernel("full", 2, 3).code_digest() == base
    monkeypatch.setattr(K, "BLOCKS", (1, 64))
    assert K.EMKernel("full", 2, 3).code_digest() != base
    monkeypatch.setattr(K, "BLOCKS", (1, 32, 128))
    other = tmp_path / "em.c.mako"
    other.write_text(source.TEMPLATE.read_text() + "\n## another template\n")
    monkeypatch.setattr(source, "TEMPLATE", other)
    assert K.EMKernel("full", 2, 3).code_digest() != base


def test_a_variant_that_disagrees_is_excluded_by_the_core_check(fresh_cache, monkeypatch):
    """The core checks every GMM variant against the reference: a wrong variant is
    excluded (and never tuned), the others run."""
    real = source.render_part

    def wrong_b32(part, **ctx):
        text = real(part, **ctx)
        if part == "em_events_blocked" and ctx.get("B") == 32:
            text = text.replace("sk[0] += hsum(rs + rs2);", "sk[0] += 2 * hsum(rs + rs2);")
            assert "2 * hsum(rs + rs2)" in text
        return text

    monkeypatch.setattr(source, "render_part", wrong_b32)
    k = JitKernel(K.EMKernel("diag", 3, 2))
    args = em_args("diag", 3, 2, np.float64, 100)
    s = k.specialization(*args)
    assert set(s.check_failures) == {"events_b32"}
    assert "differ from the Python reference" in s.check_failures["events_b32"]
    want = run_reference(k, args)
    for _ in range(40):
        k(*args)
        assert_outputs_close(args[6], want[6])
    assert k.chosen_variant(*args) in (None, "events_b128", "events_b1", "components")
