"""Stencils: one sweep of the 2-D 5-point and 3-D 7-point operators at memory bandwidth.

Targets (issue 3), measured in one run on this machine: >= 85 % of a STREAM copy
kernel built through asp itself (effective bandwidth counts 16 bytes per point:
one read, one write), >= 1.1x Numba ``prange`` loops, >= 10x NumPy slicing; cold
first call of the 2-D Laplacian with an empty cache <= 0.5 s; a new process with
a warm cache reaches its first result in <= 30 ms; a 16x16 grid called 10,000
times costs <= 3x Numba ``@njit`` per call; peak RSS above inputs and output
<= 10 %.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import textwrap

import numpy as np

from benchmarks.harness import Figure, interleaved, quiet_cores, until_tuned
from specializers.stencil import StencilGrid, StencilKernel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Laplacian(StencilKernel):
    """The published example: accumulates into the output."""

    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            for y in in_grid.neighbors(x, 1):
                out_grid[x] += in_grid[y]
            out_grid[x] -= 4 * in_grid[x]


class Operator(StencilKernel):
    """The (2*dim+1)-point Laplacian, writing each output point once."""

    def kernel(self, u, out):
        for x in out.interior_points():
            s = -2.0 * u.dim * u[x]
            for y in u.neighbors(x, 1):
                s += u[y]
            out[x] = s


_STREAM = r"""
#include <stdint.h>
void stream_copy(const double *restrict a, double *restrict b, int64_t n) {
    #pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; ++i) b[i] = a[i];
}
"""


def stream_copy():
    from asp.jit import build

    lib = build(_STREAM, kernel="bench:stream_copy")
    fn = lib.cdll.stream_copy
    fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    fn.restype = None
    return lambda a, b: fn(a.ctypes.data, b.ctypes.data, a.size)


def _numba():
    from numba import njit, prange

    @njit(parallel=True, cache=False)
    def lap2(a, out):
        n0, n1 = a.shape
        for i in prange(1, n0 - 1):
            for j in range(1, n1 - 1):
                out[i, j] = a[i - 1, j] + a[i + 1, j] + a[i, j - 1] + a[i, j + 1] - 4.0 * a[i, j]

    @njit(parallel=True, cache=False)
    def lap3(a, out):
        n0, n1, n2 = a.shape
        for i in prange(1, n0 - 1):
            for j in range(1, n1 - 1):
                for k in range(1, n2 - 1):
                    out[i, j, k] = (a[i - 1, j, k] + a[i + 1, j, k] + a[i, j - 1, k]
                                    + a[i, j + 1, k] + a[i, j, k - 1] + a[i, j, k + 1]
                                    - 6.0 * a[i, j, k])

    @njit(cache=False)
    def lap2_serial(a, out):
        n0, n1 = a.shape
        for i in range(1, n0 - 1):
            for j in range(1, n1 - 1):
                out[i, j] = a[i - 1, j] + a[i + 1, j] + a[i, j - 1] + a[i, j + 1] - 4.0 * a[i, j]

    return lap2, lap3, lap2_serial


def numpy2(a, out):
    out[1:-1, 1:-1] = (a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:]
                       - 4.0 * a[1:-1, 1:-1])


def numpy3(a, out):
    c = (slice(1, -1),) * 3
    out[c] = (a[:-2, 1:-1, 1:-1] + a[2:, 1:-1, 1:-1] + a[1:-1, :-2, 1:-1] + a[1:-1, 2:, 1:-1]
              + a[1:-1, 1:-1, :-2] + a[1:-1, 1:-1, 2:] - 6.0 * a[c])


def _sweep(label, shape, numba_fn, numpy_fn, quick) -> list[Figure]:
    rng = np.random.default_rng(0)
    a = rng.random(shape)
    out, ref = np.zeros(shape), np.zeros(shape)
    b = np.empty_like(a)
    copy = stream_copy()
    op = Operator()
    until_tuned(lambda: op.kernel(a, out), lambda: op.jit_for(a, out).chosen_variant(a, out))
    numba_fn(a, ref)
    assert np.allclose(out, ref)
    t = interleaved({
        "stream": lambda: copy(a, b),
        "asp": lambda: op.kernel(a, out),
        "numba": lambda: numba_fn(a, ref),
    }, repeat=5 if quick else 15)
    t_np = interleaved({"numpy": lambda: numpy_fn(a, ref)}, repeat=2 if quick else 3)["numpy"]
    gbs = {k: 16 * a.size / v / 1e9 for k, v in t.items()}
    winner = op.jit_for(a, out).chosen_variant(a, out)
    detail = (f"asp {gbs['asp']:.1f} GB/s ({winner}), STREAM copy {gbs['stream']:.1f} GB/s, "
              f"numba prange {gbs['numba']:.1f} GB/s, numpy {16 * a.size / t_np / 1e9:.1f} GB/s")
    return [
        Figure("stencil", f"{label} % of STREAM copy", 100 * t["stream"] / t["asp"], 85.0,
               unit="%", detail=detail),
        Figure("stencil", f"{label} vs Numba prange", t["numba"] / t["asp"], 1.1, detail=detail),
        Figure("stencil", f"{label} vs NumPy slicing", t_np / t["asp"], 10.0, detail=detail),
    ]


def _subprocess(code: str, cache: str) -> dict:
    env = dict(os.environ, ASP_CACHE_DIR=cache, ASP_TUNE="online")
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                         capture_output=True, text=True, cwd=ROOT, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


_FIRST_CALL = """
    import json, time
    import numpy as np
    from benchmarks.bench_stencil import Laplacian
    from specializers.stencil import StencilGrid
    g = StencilGrid([512, 512]); g.data = np.random.rand(512, 512)
    out = StencilGrid([512, 512])
    t0 = time.perf_counter()
    Laplacian().kernel(g, out)
    t1 = time.perf_counter()
    d = g.data
    assert np.allclose(out.data[1:-1, 1:-1], d[:-2, 1:-1] + d[2:, 1:-1] + d[1:-1, :-2]
                       + d[1:-1, 2:] - 4 * d[1:-1, 1:-1])
    print(json.dumps({"first_call": t1 - t0}))
"""

_MEMORY = """
    import json, re
    import numpy as np
    from benchmarks.bench_stencil import Operator
    def status(key):
        text = open("/proc/self/status").read()
        return int(re.search(key + r":\\s+(\\d+) kB", text).group(1)) * 1024
    op = Operator()
    for _ in range(20):  # compile and tune on a small grid of the same signature
        op.kernel(np.random.rand(64, 64), np.zeros((64, 64)))
    a = np.random.rand(%d, %d); out = np.zeros_like(a); out[...] = 1.0
    base = status("VmRSS")
    open("/proc/self/clear_refs", "w").write("5")  # reset the peak (VmHWM) to now
    op.kernel(a, out)
    peak = status("VmHWM")
    print(json.dumps({"extra": max(peak - base, 0), "data": a.nbytes + out.nbytes}))
"""


def run(quick: bool = False) -> list[Figure]:
    import tempfile

    lap2, lap3, lap2_serial = _numba()
    figs: list[Figure] = []
    n2 = 2048 if quick else 4096
    n3 = 128 if quick else 256
    figs += _sweep(f"2-D 5-point {n2}^2", (n2, n2), lap2, numpy2, quick)
    figs += _sweep(f"3-D 7-point {n3}^3", (n3, n3, n3), lap3, numpy3, quick)

    quiet_cores()
    with tempfile.TemporaryDirectory() as cache:
        cold = _subprocess(_FIRST_CALL, cache)
        warm = _subprocess(_FIRST_CALL, cache)
    figs.append(Figure("stencil", "Laplacian 512^2 cold first call (empty cache)",
                       cold["first_call"], 0.5, unit="s", better="lower",
                       detail="parse, passes, compile every variant, check vs Python, run"))
    figs.append(Figure("stencil", "first result, new process, warm cache",
                       warm["first_call"] * 1e3, 30.0, unit="ms", better="lower"))

    small = np.random.default_rng(2).random((16, 16))
    so, no = np.zeros((16, 16)), np.zeros((16, 16))
    op = Operator()
    grid_in, grid_out = StencilGrid.from_array(small), StencilGrid.from_array(so)
    until_tuned(lambda: op.kernel(small, so),
                lambda: op.jit_for(small, so).chosen_variant(small, so))
    lap2_serial(small, no)
    assert np.allclose(so, no)
    number = 1000 if quick else 10000
    t = interleaved({"asp": lambda: op.kernel(small, so),
                     "asp_grid": lambda: op.kernel(grid_in, grid_out),
                     "numba": lambda: lap2_serial(small, no)}, repeat=7, number=number)
    figs.append(Figure("stencil", f"16x16 grid x{number}: per call vs Numba @njit",
                       t["asp"] / t["numba"], 3.0, better="lower",
                       detail=f"asp {t['asp'] * 1e9:.0f} ns (with StencilGrid objects "
                              f"{t['asp_grid'] * 1e9:.0f} ns), numba {t['numba'] * 1e9:.0f} ns"))

    with tempfile.TemporaryDirectory() as cache:
        mem = _subprocess(_MEMORY % (n2, n2), cache)
    figs.append(Figure("stencil", "peak RSS above inputs+output",
                       100 * mem["extra"] / mem["data"], 10.0, unit="%", better="lower",
                       detail=f"{mem['extra'] / 2**20:.1f} MiB above "
                              f"{mem['data'] / 2**20:.0f} MiB of grids"))
    return figs
