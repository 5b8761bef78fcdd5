"""The 2-D heat equation, explicit in time, as an asp stencil kernel.

    u_t = alpha * (u_xx + u_yy)   on the unit square, u = 0 on the edges,
    u(x, y, 0) = sin(pi x) sin(pi y)  ->  u(x, y, t) = exp(-2 pi^2 alpha t) u(x, y, 0)

One time step is a 5-point stencil written in plain Python (``HeatStep``);
asp turns it into tuned, parallel C on the first call.  The whole time loop is
one call, ``HeatStep().iterate(u, r, steps=...)``, which computes several steps
per pass over memory (temporal blocking) and gives bit for bit what stepping
one call at a time gives.  The script runs the steps both ways and checks that
they agree exactly, then compares with the analytic solution and with the same
update in NumPy slicing, and prints what it did and how fast.

    python examples/heat2d.py [--n 1024] [--steps 1500] [--png heat.png]
"""
from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from specializers.stencil import StencilGrid, StencilKernel  # noqa: E402
from specializers.stencil.iterate import iteration_jit  # noqa: E402


class HeatStep(StencilKernel):
    """u_new = u + r * (discrete Laplacian of u), r = alpha dt / h^2."""

    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * lap


def numpy_step(u: np.ndarray, r: float, out: np.ndarray) -> None:
    out[1:-1, 1:-1] = u[1:-1, 1:-1] + r * (u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2]
                                           + u[1:-1, 2:] - 4.0 * u[1:-1, 1:-1])


def shade(field: np.ndarray, rows: int = 12, cols: int = 44) -> list[str]:
    """A small character picture of a field (brighter = hotter)."""
    ramp = " .:-=+*#%@"
    h, w = field.shape
    sub = field[np.linspace(0, h - 1, rows).astype(int)][:, np.linspace(0, w - 1, cols)
                                                          .astype(int)]
    top = sub.max() or 1.0
    return ["".join(ramp[min(int(v / top * (len(ramp) - 1) + 0.5), len(ramp) - 1)]
                    for v in row) for row in sub]


def until_tuned(chosen, call, limit: float) -> int:
    """Call ``call`` until the online tuner has settled (``chosen()`` names a variant) or
    ``limit`` seconds have passed, so that what is timed next is the tuned code and not
    the race between variants.  Returns the number of calls it took."""
    calls, t0 = 0, time.perf_counter()
    while chosen() is None and time.perf_counter() - t0 < limit:
        call()
        calls += 1
    return calls


def describe(variant: str | None) -> str:
    """The blocked variant's name read back as what it does (the tuner reports names)."""
    m = re.fullmatch(r"blk_d(\d+)_r(\d+)_w(\d+)(?:_j(\d+))?", variant or "")
    if m is None:
        return variant or "still tuning"
    d, rows, width, jam = m.groups()
    return (f"{variant}: {d} steps per pass over memory, tiles of {rows} x {width} points"
            + (f", {jam} rows a sweep" if jam else ""))


def how_sure(jit, *args) -> str:
    """How the tuner settled on the variant that calls with ``args`` run."""
    t = jit.specialization(*args).tuning_for(jit.specializer.prepare(args).bucket)
    if t.winner is None:
        return "still tuning"
    if t.noisy:
        return "provisional: decided on a busy machine; tuned again once it is quiet"
    if t.provisional:
        return "provisional: none clearly faster in the budget; the next run tunes again"
    if not any(t.trials.values()):
        return "remembered from an earlier run (verified on sampled calls)"
    return f"clearly the fastest of {len(t.candidates()) + len(t.dropped)} variants timed"


def main(argv=None) -> int:
    quick = os.environ.get("ASP_EXAMPLE_QUICK", "") not in ("", "0")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=192 if quick else 512, help="grid points per side")
    p.add_argument("--steps", type=int, default=1500 if quick else 6000)
    p.add_argument("--alpha", type=float, default=1.0)
    p.add_argument("--png", help="also write a picture of the final field")
    args = p.parse_args(argv)
    n, steps, alpha = args.n, args.steps, args.alpha

    h = 1.0 / (n - 1)
    dt = 0.2 * h * h / alpha          # stable: r = alpha dt / h^2 <= 1/4
    r = alpha * dt / (h * h)
    xs = np.linspace(0.0, 1.0, n)
    u0 = np.outer(np.sin(math.pi * xs), np.sin(math.pi * xs))
    # sin(pi * 1.0) is 1.2e-16, not 0: make the Dirichlet border exactly zero, as every
    # step leaves it, so that the initial field is a state like any other.
    u0[0, :] = u0[-1, :] = u0[:, 0] = u0[:, -1] = 0.0
    t_end = steps * dt
    exact = math.exp(-2 * math.pi**2 * alpha * t_end) * u0

    print("asp stencil demo: the 2-D heat equation, explicit time stepping")
    print(f"  grid {n} x {n} ({u0.nbytes / 2**20:.1f} MiB per field), {steps} steps, "
          f"r = {r:.2f}, t = {t_end:.3g}")
    print()
    print("  The kernel, in plain Python:")
    print("      for x in out.interior_points():")
    print("          lap = -4.0 * u[x]")
    print("          for y in u.neighbors(x, 1):")
    print("              lap += u[y]")
    print("          out[x] = u[x] + r * lap")
    print()
    print("  The time loop, as one call:  u = HeatStep().iterate(u, r, steps=steps)")
    print()

    step = HeatStep()
    a, b = StencilGrid([n, n]), StencilGrid([n, n])
    a.data = u0.copy()
    t0 = time.perf_counter()
    step.kernel(a, r, b)             # the first call specializes (from the disk cache later)
    first = time.perf_counter() - t0

    # Both ways are tuned before they are timed: the single step's tuner picks among its
    # variants over calls, iterate's among its depths and tile sizes.
    limit = 20.0 if quick else 60.0
    single_jit = step.jit_for(a, r, b)
    until_tuned(lambda: single_jit.chosen_variant(a.data, r, b.data),
                lambda: step.kernel(a, r, b), limit)
    g0 = StencilGrid([n, n])
    g0.data = u0
    warm = min(steps, 64)
    t0 = time.perf_counter()
    step.iterate(g0, r, steps=warm)  # specializes the blocked iteration
    first_iter = time.perf_counter() - t0
    blocked_jit = iteration_jit(step, g0, r)
    probe = (u0, r, np.zeros_like(u0), np.zeros_like(u0), warm)
    if blocked_jit is not None:
        until_tuned(lambda: blocked_jit.chosen_variant(*probe),
                    lambda: step.iterate(g0, r, steps=warm), limit)

    # Step by step: one call per step, ping-pong between two preallocated grids.
    a.data[...] = u0
    b.data[...] = 0.0
    t0 = time.perf_counter()
    for _ in range(steps):
        step.kernel(a, r, b)
        a, b = b, a
    t_step = time.perf_counter() - t0
    u_step = a.data

    # Blocked in time: the whole loop in one call.
    t0 = time.perf_counter()
    u_grid = step.iterate(g0, r, steps=steps)
    t_blk = time.perf_counter() - t0
    u_asp = u_grid.data
    identical = np.array_equal(u_asp, u_step)

    # NumPy: the same update with array slicing (timed on fewer steps if it is slow).
    np_steps = min(steps, 300)
    ua, ub = u0.copy(), np.zeros_like(u0)
    t0 = time.perf_counter()
    for _ in range(np_steps):
        numpy_step(ua, r, ub)
        ua, ub = ub, ua
    t_np = (time.perf_counter() - t0) * steps / np_steps
    agree = float(np.abs(ua - u_asp).max()) if np_steps == steps else float("nan")

    err = float(np.abs(u_asp - exact).max() / np.abs(exact).max())
    peak, peak_exact = float(u_asp.max()), float(exact.max())
    step_variant = single_jit.chosen_variant(a.data, r, b.data) or "still tuning"
    blk_variant = ("steps (not blocked in time)" if blocked_jit is None
                   else describe(blocked_jit.chosen_variant(*probe)))

    def rate(t: float) -> str:
        """Milliseconds per step, and the bandwidth a step-by-step sweep would need
        (read one grid, write one) to go as fast."""
        return (f"{t / steps * 1e3:7.3f} ms/step  "
                f"{16 * (n - 2) ** 2 * steps / t / 1e9:6.1f} GB/s effective")

    for line in shade(u_asp):
        print("      |" + line + "|")
    print()
    print(f"  first call (specialize + compile, or load) {first * 1e3:8.1f} ms; "
          f"first iterate {first_iter * 1e3:.1f} ms")
    print(f"  step by step  {steps} steps {t_step:8.3f} s  {rate(t_step)}")
    print(f"      K.kernel(a, r, b) ping-pong; the tuner chose {step_variant}")
    print(f"      ({how_sure(single_jit, a.data, r, b.data)})")
    print(f"  iterate       {steps} steps {t_blk:8.3f} s  {rate(t_blk)}")
    print(f"      the tuner chose {blk_variant}")
    if blocked_jit is not None:
        print(f"      ({how_sure(blocked_jit, *probe)})")
    print(f"  iterate vs step by step: {t_step / t_blk:5.2f}x per step; results "
          + ("identical bit for bit" if identical else "DIFFER"))
    note = "" if np_steps == steps else f"  (timed on {np_steps} steps)"
    print(f"  NumPy         {steps} steps {t_np:8.3f} s  {t_np / steps * 1e3:7.3f} ms/step{note}")
    print(f"  speed-up of iterate over NumPy slicing: {t_np / t_blk:6.1f}x")
    print(f"  peak temperature 1.000 -> {peak:.4f} (analytic {peak_exact:.4f})")
    print(f"  max error vs the analytic solution: {err:.2e} (relative; O(h^2) = {h * h:.1e})")
    if agree == agree:
        print(f"  asp and NumPy agree to {agree:.1e}")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(1, 2, figsize=(9, 4))
        ax[0].imshow(u_asp, cmap="inferno", origin="lower")
        ax[0].set_title(f"u at t = {t_end:.3g}")
        ax[1].imshow(np.abs(u_asp - exact), cmap="viridis", origin="lower")
        ax[1].set_title("|u - exact|")
        fig.savefig(args.png, dpi=100)
        print(f"  wrote {args.png}")
    ok = err < 1e-2 and identical
    if ok:
        print("  OK")
    elif not identical:
        print("  FAILED: iterate and the step-by-step loop differ")
    else:
        print("  FAILED: the error is larger than expected")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
