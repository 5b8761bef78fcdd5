"""The Mandelbrot set, escape time with early return, written the natural way.

Compares the SciPy tutorial's whole-array NumPy algorithm with asp's raw C
form (one thread, striped rows, chunked rows) and with ``@elementwise`` on
the plain Python escape-time loop, whose schedule the tuner picks.
Run: ``python examples/mandelbrot.py [--out mandelbrot.png]``.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

from asp import SpecializationError
from specializers.elementwise import (
    call_c_function,
    call_c_function_parallel,
    elementwise,
    make_c_function,
    wait_for_parallel_finish,
)

QUICK = os.environ.get("ASP_EXAMPLE_QUICK") == "1"
H, W = (250, 375) if QUICK else (1000, 1500)
MAXIT = 20


@elementwise
def escape_time(cr, ci, maxiter):
    zr, zi = cr, ci
    for i in range(maxiter):
        zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
        if zr * zr + zi * zi > 4.0:
            return i
    return maxiter


def mandelbrot_numpy(h, w, maxit):
    """The SciPy tutorial's algorithm: iterate the whole array, mark divergence."""
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


C_CODE = f"""
    double zr = cr, zi = ci;
    for (long i = 0; i < {MAXIT}; ++i) {{
        double t = zr * zr - zi * zi + cr;
        zi = 2.0 * zr * zi + ci;
        zr = t;
        if (zr * zr + zi * zi > 4.0) return i;
    }}
    return {MAXIT};
"""


def best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", default="mandelbrot.png", help="where to write the picture")
    args = ap.parse_args()
    threads = os.cpu_count() or 2
    y, x = np.ogrid[-1.4:1.4:H * 1j, -2:0.8:W * 1j]
    cr = np.ascontiguousarray(np.broadcast_to(x, (H, W)))
    ci = np.ascontiguousarray(np.broadcast_to(y, (H, W)))

    ref = mandelbrot_numpy(H, W, MAXIT)
    numpy_t = best(lambda: mandelbrot_numpy(H, W, MAXIT), repeat=3)

    out = np.empty((H, W), dtype=np.int_)
    try:
        t0 = time.perf_counter()
        f = make_c_function(C_CODE, [("double", "cr"), ("double", "ci")], "long")
        creation = time.perf_counter() - t0
        single = best(lambda: call_c_function(f, (cr, ci, out), 0, H))
        agree_c = f"{np.mean(out == ref):.4%}"

        def parallel(mode):
            h = call_c_function_parallel(f, (cr, ci, out), 0, H, threads, mode)
            wait_for_parallel_finish(h)

        raw = (creation, single, best(lambda: parallel(1)), best(lambda: parallel(2)))
    except SpecializationError as exc:  # no C compiler: the raw C form has no Python twin
        raw, agree_c = str(exc).splitlines()[0], "n/a"

    t0 = time.perf_counter()
    m = escape_time(cr, ci, MAXIT)
    first = time.perf_counter() - t0
    winner = escape_time.jit.chosen_variant(cr, ci, MAXIT, None)
    fell_back = winner == "python"  # its Python runs: nothing to tune, one timing
    for _ in range(0 if fell_back else 12):  # the online tuner tries each schedule
        escape_time(cr, ci, MAXIT)
    tuned = best(lambda: escape_time(cr, ci, MAXIT), 1 if fell_back else 5)
    agree = np.mean(m == ref)
    winner = escape_time.jit.chosen_variant(cr, ci, MAXIT, None)

    print(f"Mandelbrot {H}x{W}, {MAXIT} iterations, {threads} threads")
    print(f"    Numpy reference:                  {numpy_t:9.4f} s")
    print("    asp raw C (make_c_function):")
    if isinstance(raw, str):
        print(f"     unavailable: {raw}")
    else:
        creation, single, stride, chunk = raw
        print(f"     creation:                        {creation:9.4f} s")
        print(f"     single-thread:                   {single:9.4f} s")
        print(f"     {threads} threads with stride access:    {stride:9.4f} s")
        print(f"     {threads} threads with chunks:           {chunk:9.4f} s")
    print("    asp @elementwise (plain Python escape-time loop):")
    print(f"     first call (specialize + run):   {first:9.4f} s")
    print(f"     tuned ({winner} schedule):         {tuned:9.4f} s   "
          f"({numpy_t / tuned:.1f}x NumPy)")
    print(f"    agreement with NumPy: raw C {agree_c}, @elementwise {agree:.4%}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(args.out, m, cmap="magma", origin="lower")
    print(f"    wrote {args.out}")


if __name__ == "__main__":
    main()
