"""The 2-D wave equation, leapfrog in time, as an asp stencil kernel with two levels.

    u_tt = c^2 (u_xx + u_yy)   on the unit square, u = 0 on the edges,
    u(x, y, 0) = a Gaussian pulse, u_t(x, y, 0) = 0

Leapfrog, on a grid of spacing h with time step dt and lambda^2 = c^2 dt^2 / h^2:

    u_next = 2 u - u_prev + lambda^2 L u,    L u = u_N + u_S + u_W + u_E - 4 u

A step reads two previous levels, so the state of the time loop is the pair
``(u, u_prev)``, newest first: ``(u, u_prev) = Wave().iterate((u, u_prev), lam2,
steps=...)``.

The scheme conserves a discrete energy exactly, up to rounding.  Multiply the
update by ``u_next - u_prev`` and sum over the interior: the left side telescopes to
``|u_next - u|^2 - |u - u_prev|^2``, and ``L`` is minus the adjoint of the forward
difference ``D`` over every edge of the grid (the border is zero), so the right side is
``-lambda^2 (<D u_next, D u> - <D u, D u_prev>)``.  Scaled by h^2 / dt^2 / 2:

    E = 1/2 |(u - u_prev) / dt|^2 + 1/2 c^2 <grad_h u, grad_h u_prev>

(norms and inner products weighted by the cell area h^2, ``grad_h`` the forward
differences divided by h) is the same at every step.  It is a true energy,
positive, while c dt / h <= 1/sqrt(2) (the scheme's stability limit).  The script
checks that E does not drift, that asp's result is bit for bit that of the same
update in NumPy slicing, and draws the field.

    python examples/wave2d.py [--n 512] [--steps 768] [--cfl 0.5] [--png wave2d.png]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from specializers.stencil import StencilKernel  # noqa: E402

#: Rounding alone moves E by ~1e-15 relative per step at most; a scheme that does not
#: conserve it (a wrong coefficient, a missed point) moves it by far more than this.
TOLERANCE = 1e-10


class Wave(StencilKernel):
    """One leapfrog step: the newest level ``u``, the one before ``u_prev``."""

    def kernel(self, u, u_prev, lam2, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = 2.0 * u[x] - u_prev[x] + lam2 * lap


def numpy_step(u: np.ndarray, u_prev: np.ndarray, lam2: float, out: np.ndarray) -> None:
    """The same step in NumPy slicing, its sums in the kernel's order (the centre, then
    the neighbours -1 and +1 along axis 0, then along axis 1): the same rounding."""
    c = (slice(1, -1), slice(1, -1))
    lap = -4.0 * u[c] + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]
    out[c] = 2.0 * u[c] - u_prev[c] + lam2 * lap


def energy(u: np.ndarray, u_prev: np.ndarray, dt: float, c: float, h: float
           ) -> tuple[float, float]:
    """The leapfrog's conserved energy of the state ``(u, u_prev)``: its kinetic and its
    potential part (see the module's docstring)."""
    v = (u - u_prev) / dt
    kinetic = 0.5 * h * h * float(np.sum(v * v))
    cross = sum(float(np.sum(np.diff(u, axis=a) * np.diff(u_prev, axis=a))) for a in (0, 1))
    return kinetic, 0.5 * c * c * cross  # h^2 (area) / h^2 (two differences) = 1


def main(argv=None) -> int:
    quick = os.environ.get("ASP_EXAMPLE_QUICK", "") not in ("", "0")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=160 if quick else 512, help="grid points per side")
    p.add_argument("--steps", type=int, help="time steps (default: to t = 0.75)")
    p.add_argument("--cfl", type=float, default=0.5, help="c dt / h (stable up to 0.707)")
    p.add_argument("--frames", type=int, default=8, help="energy checks along the way")
    p.add_argument("--png", default="wave2d.png", help="picture of the field ('' for none)")
    args = p.parse_args(argv)
    n, c = args.n, 1.0
    h = 1.0 / (n - 1)
    dt = args.cfl * h / c
    lam2 = (c * dt / h) ** 2
    steps = args.steps if args.steps is not None else round(0.75 / dt)
    frames = max(1, min(args.frames, steps))

    xs = np.linspace(0.0, 1.0, n)
    X, Y = np.meshgrid(xs, xs, indexing="ij")
    u0 = np.exp(-((X - 0.35) ** 2 + (Y - 0.4) ** 2) / (2 * 0.04**2))
    u0[0, :] = u0[-1, :] = u0[:, 0] = u0[:, -1] = 0.0  # the Dirichlet border, exactly

    print("asp stencil demo: the 2-D wave equation, leapfrog in time")
    print(f"  grid {n} x {n}, c = {c:g}, c dt/h = {args.cfl:g}, {steps} steps to "
          f"t = {steps * dt:.3g}; a Gaussian pulse released at rest")
    print("  the kernel:  out[x] = 2.0 * u[x] - u_prev[x] + lam2 * lap   (lap: 5 points)")
    print("  the loop:    (u, u_prev) = Wave().iterate((u, u_prev), lam2, steps=k)")
    print()

    wave = Wave()
    t0 = time.perf_counter()
    # Released at rest: u(dt) = u0 + dt^2/2 c^2 Lap(u0) + O(dt^4), which is one step of
    # the kernel itself from (u0, u0) with half the coefficient (2 u0 - u0 is u0 exactly).
    u1 = wave(u0, u0, 0.5 * lam2)
    first = time.perf_counter() - t0
    state = (u1, u0)

    e0 = energy(*state, dt, c, h)
    print(f"  {'step':>6} {'t':>7} {'kinetic':>12} {'potential':>12} {'energy':>12} "
          f"{'drift':>9}")
    print(f"  {1:6d} {dt:7.3f} {e0[0]:12.6e} {e0[1]:12.6e} {sum(e0):12.6e} {0.0:9.1e}")
    done, drift, t_asp = 1, 0.0, 0.0
    snaps = [(dt, u1)]
    history = [(dt, 0.0)]
    bounds = np.linspace(0, steps - 1, frames + 1).round().astype(int)
    for k in np.diff(bounds):
        t0 = time.perf_counter()
        state = wave.iterate(state, lam2, steps=int(k))
        t_asp += time.perf_counter() - t0
        done += int(k)
        e = energy(*state, dt, c, h)
        rel = (sum(e) - sum(e0)) / sum(e0)
        drift = max(drift, abs(rel))
        history.append((done * dt, rel))
        snaps.append((done * dt, state[0]))
        print(f"  {done:6d} {done * dt:7.3f} {e[0]:12.6e} {e[1]:12.6e} {sum(e):12.6e} "
              f"{rel:9.1e}")
    u_asp = state[0]

    # The same steps in NumPy, three buffers in rotation.
    a, b, out = u1.copy(), u0.copy(), np.zeros_like(u0)
    t0 = time.perf_counter()
    for _ in range(steps - 1):
        numpy_step(a, b, lam2, out)
        a, b, out = out, a, b
    t_np = time.perf_counter() - t0
    same = np.array_equal(a, u_asp)

    print()
    ok_energy = drift < TOLERANCE and sum(e0) > 0
    print(f"  energy conserved: relative drift {drift:.1e} over {steps} steps "
          f"(tolerance {TOLERANCE:.0e})" if ok_energy else
          f"  FAILED: the energy drifted by {drift:.1e} (tolerance {TOLERANCE:.0e})")
    print("  asp and NumPy slicing agree bit for bit" if same else
          f"  FAILED: asp and NumPy differ by {float(np.abs(a - u_asp).max()):.1e}")
    per = max(steps - 1, 1)
    print(f"  first call (specialize + compile, or load) {first * 1e3:.1f} ms")
    print(f"  asp iterate {t_asp / per * 1e3:7.3f} ms/step   NumPy {t_np / per * 1e3:7.3f} "
          f"ms/step   ({t_np / t_asp:.1f}x)")

    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        shown = [snaps[0], snaps[len(snaps) // 2], snaps[-1]]
        fig, ax = plt.subplots(1, 4, figsize=(16, 4), constrained_layout=True)
        for axis, (t, field) in zip(ax[:3], shown, strict=True):
            # Each picture on its own symmetric scale: the pulse spreads and its peak
            # falls, and one scale for all would leave the later fields pale.
            top = float(np.abs(field).max()) or 1.0
            axis.imshow(field.T, cmap="RdBu_r", vmin=-top, vmax=top, origin="lower",
                        extent=(0, 1, 0, 1))
            axis.set_title(f"u at t = {t:.3f}  (max |u| = {top:.2f})")
        ts, rel = zip(*history, strict=True)
        ax[3].plot(ts, rel, "o-")
        ax[3].axhline(0.0, color="0.6", lw=0.8)
        ax[3].set_title("energy: (E - E0) / E0")
        ax[3].set_xlabel("t")
        fig.savefig(args.png, dpi=90)
        print(f"  wrote {args.png}")
    ok = ok_energy and same
    print("  OK" if ok else "  FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
