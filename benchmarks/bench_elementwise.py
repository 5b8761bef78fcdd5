"""Elementwise kernels: poly and Mandelbrot against NumPy and Numba, cold/warm start, call cost.

Targets (issue 2): poly over 10M float64 >= 12x NumPy and >= 1.0x the faster
Numba ``@vectorize``; Mandelbrot 1000x1500, 20 iterations >= 25x NumPy and
>= 1.2x the faster Numba; cold first call <= 0.3 s; a new process with a warm
cache reaches its first result in <= 20 ms; the call on 8-element arrays costs <= 2x
Numba's dispatch.  Reported: the Mandelbrot kernel's cold first call (a loop: its
lockstep variants are compiled too).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap

import numpy as np

from benchmarks.harness import CallProbe, Figure, interleaved, quiet_cores, until_tuned

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_KERNELS = '''
from specializers.elementwise import elementwise

@elementwise
def poly(x):
    return 3 * x**3 + 2 * x**2 + x + 1

@elementwise
def mandel(cr, ci, maxiter):
    zr, zi = cr, ci
    for i in range(maxiter):
        zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
        if zr * zr + zi * zi > 4.0:
            return i
    return maxiter
'''


def _kernels():
    path = os.path.join(tempfile.gettempdir(), "asp_bench_elementwise_kernels.py")
    with open(path, "w") as f:
        f.write(_KERNELS)
    ns: dict = {}
    exec(compile(_KERNELS, path, "exec"), ns)
    return ns["poly"], ns["mandel"], path


def mandelbrot_numpy(h: int, w: int, maxit: int = 20) -> np.ndarray:
    """The SciPy tutorial's whole-array Mandelbrot (escape time, capped at maxit)."""
    y, x = np.ogrid[-1.4:1.4:h * 1j, -2:0.8:w * 1j]
    c = x + y * 1j
    z = c
    divtime = maxit + np.zeros(z.shape, dtype=np.int64)
    for i in range(maxit):
        z = z**2 + c
        diverge = z * np.conj(z) > 2**2
        div_now = diverge & (divtime == maxit)
        divtime[div_now] = i
        z[diverge] = 2
    return divtime


def _numba():
    import numba

    @numba.vectorize(["float64(float64)"])
    def npoly(x):
        return 3 * x**3 + 2 * x**2 + x + 1

    @numba.vectorize(["float64(float64)"], target="parallel")
    def npoly_par(x):
        return 3 * x**3 + 2 * x**2 + x + 1

    def mandel_py(cr, ci, maxiter):
        zr, zi = cr, ci
        for i in range(maxiter):
            zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
            if zr * zr + zi * zi > 4.0:
                return i
        return maxiter

    sig = ["int64(float64, float64, int64)"]
    nmandel = numba.vectorize(sig)(mandel_py)
    nmandel_par = numba.vectorize(sig, target="parallel")(mandel_py)
    return npoly, npoly_par, nmandel, nmandel_par


#: What a new process calls first, and how it checks the result (outside the timing).
_FIRST = {
    "poly": ("x = np.random.rand(100_000)", "y = m.poly(x)",
             "assert np.allclose(y, 3*x**3 + 2*x**2 + x + 1)"),
    # A kernel with a loop: its lockstep variants (lanes, vlanes) are compiled too.
    "mandel": ("cr, ci = np.meshgrid(np.linspace(-2, 0.8, 300), np.linspace(-1.4, 1.4, 200))",
               "y = m.mandel(cr, ci, 20)",
               "assert all(y.flat[i] == m.mandel.py_func(cr.flat[i], ci.flat[i], 20) "
               "for i in range(0, y.size, 7))"),
}


def _subprocess_first_call(cache: str, kernels_path: str, kernel: str = "poly") -> dict:
    setup, call, check = _FIRST[kernel]
    code = textwrap.dedent(f"""
        import json, sys, time
        t_import = time.perf_counter()
        import numpy as np
        sys.path.insert(0, {os.path.dirname(kernels_path)!r})
        import importlib.util
        spec = importlib.util.spec_from_file_location("kern", {kernels_path!r})
        m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
        from benchmarks.harness import CallProbe
        {setup}
        with CallProbe() as probe:
            {call}
        spent = probe.spent()
        {check}
        print(json.dumps({{"first_call": spent["wall"], "spent": spent,
                          "import": probe.before["wall"] - t_import}}))
    """)
    env = dict(os.environ, ASP_CACHE_DIR=cache, ASP_TUNE="online")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(quick: bool = False) -> list[Figure]:
    poly, mandel, kernels_path = _kernels()
    npoly, npoly_par, nmandel, nmandel_par = _numba()
    figs: list[Figure] = []
    n = 1_000_000 if quick else 10_000_000
    x = np.random.default_rng(0).random(n)
    ref = 3 * x**3 + 2 * x**2 + x + 1
    until_tuned(lambda: poly(x), lambda: poly.jit.chosen_variant(x, None))
    assert np.allclose(poly(x), ref)
    t = interleaved({
        "numpy": lambda: 3 * x**3 + 2 * x**2 + x + 1,
        "asp": lambda: poly(x),
        "numba": lambda: npoly(x),
        "numba_par": lambda: npoly_par(x),
    }, repeat=5 if quick else 10)
    best_numba = min(t["numba"], t["numba_par"])
    winner = poly.jit.chosen_variant(x, None)
    detail = (f"asp {t['asp']*1e3:.2f} ms ({winner}), numpy {t['numpy']*1e3:.1f} ms, numba "
              f"{t['numba']*1e3:.2f} ms, numba parallel {t['numba_par']*1e3:.2f} ms")
    figs.append(Figure("elementwise", f"poly {n:.0e} f64 vs NumPy", t["numpy"] / t["asp"], 12.0,
                       detail=detail))
    figs.append(Figure("elementwise", "poly vs faster Numba", best_numba / t["asp"], 1.0,
                       detail=detail))

    h, w, maxit = (500, 750, 20) if quick else (1000, 1500, 20)
    y, xx = np.ogrid[-1.4:1.4:h * 1j, -2:0.8:w * 1j]
    cr = np.ascontiguousarray(np.broadcast_to(xx, (h, w)))
    ci = np.ascontiguousarray(np.broadcast_to(y, (h, w)))
    until_tuned(lambda: mandel(cr, ci, maxit),
                lambda: mandel.jit.chosen_variant(cr, ci, maxit, None))
    m_ref = mandelbrot_numpy(h, w, maxit)
    agree = float(np.mean(mandel(cr, ci, maxit) == m_ref))
    t = interleaved({
        "numpy": lambda: mandelbrot_numpy(h, w, maxit),
        "asp": lambda: mandel(cr, ci, maxit),
        "numba": lambda: nmandel(cr, ci, maxit),
        "numba_par": lambda: nmandel_par(cr, ci, maxit),
    }, repeat=3 if quick else 7)
    winner = mandel.jit.chosen_variant(cr, ci, maxit, None)
    best_numba = min(t["numba"], t["numba_par"])
    detail = (f"asp {t['asp']*1e3:.2f} ms ({winner}), numpy {t['numpy']*1e3:.1f} ms, numba "
              f"{t['numba']*1e3:.2f} ms, numba parallel {t['numba_par']*1e3:.2f} ms, "
              f"agreement with NumPy {agree:.4%}")
    figs.append(Figure("elementwise", f"mandelbrot {h}x{w} vs NumPy", t["numpy"] / t["asp"],
                       25.0, detail=detail))
    figs.append(Figure("elementwise", "mandelbrot vs faster Numba", best_numba / t["asp"], 1.2,
                       detail=detail))

    waited = quiet_cores()
    with tempfile.TemporaryDirectory() as cache:
        cold = _subprocess_first_call(cache, kernels_path)
        warm = _subprocess_first_call(cache, kernels_path)
    figs.append(Figure("elementwise", "poly cold first call (empty cache)", cold["first_call"],
                       0.3, unit="s", better="lower",
                       detail="parse, passes, compile 3 variants, load, check, run; waited "
                              f"{waited:.2f} s for this process's compilers; "
                              + CallProbe.describe(cold["spent"]),
                       extra={"spent": cold["spent"]}))
    figs.append(Figure("elementwise", "poly first call, new process, warm cache",
                       warm["first_call"] * 1e3, 20.0, unit="ms", better="lower",
                       detail=f"(import of asp+numpy before it: {warm['import']*1e3:.0f} ms)"))
    with tempfile.TemporaryDirectory() as cache:
        loop = _subprocess_first_call(cache, kernels_path, "mandel")
    figs.append(Figure("elementwise", "mandelbrot (a loop) cold first call (empty cache)",
                       loop["first_call"], None, unit="s", better="lower",
                       detail="parse, passes, compile its variants (lockstep lanes "
                              "included), load, check, run; reported; "
                              + CallProbe.describe(loop["spent"]),
                       extra={"spent": loop["spent"]}))

    xs = np.random.default_rng(1).random(8)
    until_tuned(lambda: poly(xs), lambda: poly.jit.chosen_variant(xs, None))
    t = interleaved({"asp": lambda: poly(xs), "numba": lambda: npoly(xs)},
                    repeat=7, number=2000 if quick else 20000)
    figs.append(Figure("elementwise", "call overhead, 8 elements, vs Numba dispatch",
                       t["asp"] / t["numba"], 2.0, better="lower",
                       detail=f"asp {t['asp']*1e9:.0f} ns, numba {t['numba']*1e9:.0f} ns"))
    return figs
