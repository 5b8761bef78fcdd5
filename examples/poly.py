"""A polynomial over 10 million doubles: Python loop, NumPy, and asp (two ways).

Prints the table the original "generic" JIT module's benchmark printed: a
Python loop, NumPy's whole-array expression, the JIT's creation time, one
thread, and two threads striping or chunking the rows; then the tuned
``@elementwise`` kernel.  Run: ``python examples/poly.py``.
"""
from __future__ import annotations

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
N = 1_000_000 if QUICK else 10_000_000


@elementwise
def poly(x):
    return 3 * x**3 + 2 * x**2 + x + 1


def best(fn, repeat=5):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    x = np.random.default_rng(0).random(N)
    expected = 3 * x**3 + 2 * x**2 + x + 1
    threads = os.cpu_count() or 2

    # A Python loop over every element is slow: time a slice and scale it up.
    part = x[:100_000]
    out_part = np.empty_like(part)
    t0 = time.perf_counter()
    for i in range(len(part)):
        v = part[i]
        out_part[i] = 3 * v**3 + 2 * v**2 + v + 1
    manual = (time.perf_counter() - t0) * (N / len(part))

    numpy_t = best(lambda: 3 * x**3 + 2 * x**2 + x + 1)

    y = np.empty_like(x)
    raw = None
    try:
        t0 = time.perf_counter()
        f = make_c_function("return 3*x*x*x + 2*x*x + x + 1;", [("double", "x")], "double")
        creation = time.perf_counter() - t0
        single = best(lambda: call_c_function(f, (x, y), 0, N))
        assert np.allclose(y, expected)

        def parallel(mode):
            y[:] = 0
            h = call_c_function_parallel(f, (x, y), 0, N, threads, mode)
            wait_for_parallel_finish(h)

        stride = best(lambda: parallel(1))
        assert np.allclose(y, expected)
        chunk = best(lambda: parallel(2))
        assert np.allclose(y, expected)
        raw = (creation, single, stride, chunk)
    except SpecializationError as exc:  # no C compiler: the raw C form has no Python twin
        raw = str(exc).splitlines()[0]

    t0 = time.perf_counter()
    z = poly(x)
    first = time.perf_counter() - t0
    assert np.allclose(z, expected)
    # No compiler (or another reason to fall back): the kernel runs its Python, so there
    # is nothing to tune, and one timing of each says what it costs.
    fell_back = poly.jit.chosen_variant(x, None) == "python"
    for _ in range(0 if fell_back else 12):  # the online tuner tries each schedule
        poly(x)
    tuned = best(lambda: poly(x), 1 if fell_back else 5)
    tuned_out = best(lambda: poly(x, out=y), 1 if fell_back else 5)
    assert np.allclose(y, expected)

    print(f"poly(x) = 3x^3 + 2x^2 + x + 1 over {N:,} float64 values, {threads} threads")
    print(f"    Manual (Python loop, extrapolated): {manual:9.4f} s")
    print(f"    Numpy all at once:                  {numpy_t:9.4f} s")
    print("    asp raw C (make_c_function):")
    if isinstance(raw, str):
        print(f"     unavailable: {raw}")
    else:
        creation, single, stride, chunk = raw
        print(f"     creation:                          {creation:9.4f} s")
        print(f"     single-thread:                     {single:9.4f} s")
        print(f"     {threads} threads with stride access:      {stride:9.4f} s")
        print(f"     {threads} threads with chunks:             {chunk:9.4f} s")
    print("    asp @elementwise:" + ("  (fell back to Python)" if fell_back else ""))
    print(f"     first call (specialize + run):     {first:9.4f} s")
    print(f"     tuned, allocating the result:      {tuned:9.4f} s   "
          f"({numpy_t / tuned:.1f}x NumPy)")
    print(f"     tuned, into out=:                  {tuned_out:9.4f} s   "
          f"({numpy_t / tuned_out:.1f}x NumPy)")


if __name__ == "__main__":
    main()
