"""Reductions: ``@reduction("+")`` energy of two fields against NumPy and Numba, cold start.

Targets (issue 12): ``energy(u, v) = sum(u*u + 0.5*v*v)`` over 10M float64 >= 6x
``np.sum(u*u + 0.5*v*v)`` and >= 1.2x Numba ``@njit(parallel=True)`` with ``prange``,
timed side by side in one run, in steady state: after the online tuner has chosen a
variant (the first calls of a signature try each in turn). The first call of a new
process with an empty cache (front end, passes, compiling the variants (four), checking
them against the Python) is reported, with no target; so is the first call of a new
process whose cache is warm.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

from benchmarks.harness import Figure, interleaved, quiet_cores
from specializers.reduction import reduction

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@reduction("+")
def energy(u, v):
    return u * u + 0.5 * v * v


def _numba():
    import numba

    @numba.njit(parallel=True)
    def nenergy(u, v):
        s = 0.0
        for i in numba.prange(u.size):
            s += u[i] * u[i] + 0.5 * v[i] * v[i]
        return s

    return nenergy


def _subprocess_first_call(cache: str, n: int) -> dict:
    """The first ``energy`` call of a new process with cache ``cache``, in seconds."""
    code = textwrap.dedent(f"""
        import json, time
        import numpy as np
        from benchmarks.bench_reduction import energy
        rng = np.random.default_rng(1)
        u, v = rng.random({n}), rng.random({n})
        t0 = time.perf_counter()
        e = energy(u, v)
        t1 = time.perf_counter()
        assert np.isclose(e, np.sum(u * u + 0.5 * v * v), rtol=1e-10, atol=0)
        print(json.dumps({{"first_call": t1 - t0}}))
    """)
    env = dict(os.environ, ASP_CACHE_DIR=cache, ASP_TUNE="online",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Figure]:
    # A cache of its own: the tuner must choose at this size, in this run, not reuse a
    # winner remembered from a run at another size (sizes are not in the signature).
    saved = os.environ.get("ASP_CACHE_DIR")
    with tempfile.TemporaryDirectory() as cache:
        os.environ["ASP_CACHE_DIR"] = cache
        try:
            figs = _steady(quick)
        finally:
            if saved is None:
                os.environ.pop("ASP_CACHE_DIR", None)
            else:
                os.environ["ASP_CACHE_DIR"] = saved
    return figs + _first_calls(1_000_000 if quick else 10_000_000)


def _steady(quick: bool) -> list[Figure]:
    nenergy = _numba()
    n = 1_000_000 if quick else 10_000_000
    rng = np.random.default_rng(0)
    u, v = rng.random(n), rng.random(n)
    ref = np.sum(u * u + 0.5 * v * v)
    # Steady state: every variant tried and a winner chosen before anything is timed.
    calls = 0
    while energy.jit.chosen_variant(u, v, None) is None:
        energy(u, v)
        calls += 1
        if calls > 200:
            raise RuntimeError("the tuner chose no variant for energy(u, v) in 200 calls")
    winner = energy.jit.chosen_variant(u, v, None)
    got, numba_got = energy(u, v), nenergy(u, v)
    if not (np.isclose(got, ref, rtol=1e-10, atol=0)
            and np.isclose(numba_got, ref, rtol=1e-10, atol=0)):
        raise RuntimeError(f"energy disagrees with NumPy: asp {got!r}, numba {numba_got!r}, "
                           f"numpy {ref!r}")
    t = interleaved({
        "numpy": lambda: np.sum(u * u + 0.5 * v * v),
        "asp": lambda: energy(u, v),
        "numba": lambda: nenergy(u, v),
    }, repeat=5 if quick else 10)
    # Both read 16 bytes a term: where each stands against the memory (a sum of two 80 MB
    # arrays reads at 36-40 GB/s on two Zen 4 cores, which Numba's loop reaches too).
    gbs = {name: 16 * n / t[name] / 1e9 for name in ("asp", "numba")}
    detail = (f"asp {t['asp']*1e3:.2f} ms ({winner}, chosen after {calls} tuning calls), "
              f"numpy {t['numpy']*1e3:.1f} ms, numba prange {t['numba']*1e3:.2f} ms; "
              f"read {gbs['asp']:.1f} GB/s (asp), {gbs['numba']:.1f} GB/s (numba)")
    return [
        Figure("reduction", f"energy {n:.0e} f64 vs NumPy", t["numpy"] / t["asp"], 6.0,
               detail=detail, extra={"variant": winner}),
        Figure("reduction", "energy vs Numba prange", t["numba"] / t["asp"], 1.2,
               detail=detail, extra={"variant": winner}),
    ]


def _first_calls(n: int) -> list[Figure]:
    figs = []
    quiet_cores()
    with tempfile.TemporaryDirectory() as cache:
        cold = _subprocess_first_call(cache, n)
        warm = _subprocess_first_call(cache, n)
    figs.append(Figure("reduction", "energy cold first call (empty cache)",
                       cold["first_call"], None, unit="s", better="lower",
                       detail="front end, passes, compile 4 variants, load, check, run"))
    figs.append(Figure("reduction", "energy first call, new process, warm cache",
                       warm["first_call"] * 1e3, None, unit="ms", better="lower",
                       detail=f"one call over {n:.0e} elements included"))
    return figs


if __name__ == "__main__":
    for f in run(quick=os.environ.get("ASP_BENCH_QUICK", "") not in ("", "0")):
        print(f"{f.group}: {f.name}: {f.value:.4g} {f.unit} (target "
              f"{f.target if f.target is not None else '-'}) {f.detail}")
