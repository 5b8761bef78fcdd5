"""Solve a 2-D Poisson problem with asp's ca_cg and cg and with SciPy's cg.

Prints each solver's iterations, a sample of its residual history and its wall
time, and writes ``poisson_cacg.png``: relative residual against time for the
three.  ``ASP_EXAMPLE_QUICK=1`` uses a small grid; ``--grid N`` sets the grid
side, ``--out PATH`` the PNG.
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from specializers.matrix_powers import ca_cg, cg


def poisson2d(m: int) -> sp.csr_matrix:
    """The 5-point Laplacian on an m x m grid (Dirichlet boundary), n = m*m."""
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    eye = sp.identity(m)
    return (sp.kron(eye, T) + sp.kron(T, eye)).tocsr()


def history(solve, A, b, rtol):
    """Run ``solve`` with a callback that records (seconds, relative residual).

    The residual is computed outside the clock: the time its own SpMV takes is
    subtracted, so the curve shows the solver's progress, not the probe's.
    """
    bnorm = np.linalg.norm(b)
    points: list[tuple[float, float]] = []
    probe = [0.0]
    t0 = time.perf_counter()

    def callback(xk):
        t = time.perf_counter()
        points.append((t - t0 - probe[0], np.linalg.norm(b - A @ xk) / bnorm))
        probe[0] += time.perf_counter() - t

    x, info = solve(A, b, rtol=rtol, callback=callback)
    return x, info, points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    quick = os.environ.get("ASP_EXAMPLE_QUICK", "") not in ("", "0")
    parser.add_argument("--grid", type=int, default=80 if quick else 500)
    parser.add_argument("--rtol", type=float, default=1e-8)
    parser.add_argument("--s", type=int, default=4)
    parser.add_argument("--out", default="poisson_cacg.png")
    args = parser.parse_args()

    A = poisson2d(args.grid)
    n = A.shape[0]
    rng = np.random.default_rng(0)
    b = rng.standard_normal(n)
    print(f"2-D Poisson, {args.grid}x{args.grid} grid: n = {n:,}, nnz = {A.nnz:,}; "
          f"solving to relative residual {args.rtol:g}")

    solvers = {
        f"asp ca_cg (s={args.s})": lambda A, b, **kw: ca_cg(A, b, s=args.s, **kw),
        "asp cg": cg,
        "scipy cg": spla.cg,
    }
    for solve in solvers.values():  # compile, tune and warm up before timing
        solve(A, b, rtol=1e-2)
    curves = {}
    for name, solve in solvers.items():
        t0 = time.perf_counter()
        x, info = solve(A, b, rtol=args.rtol)
        seconds = time.perf_counter() - t0
        _, _, points = history(solve, A, b, args.rtol)
        curves[name] = points
        res = np.linalg.norm(b - A @ x) / np.linalg.norm(b)
        sample = [f"{r:.1e}" for _, r in points[:: max(1, len(points) // 6)]]
        print(f"{name:>18}: info={info}, {len(points)} iterations, {seconds:.3f} s, "
              f"final residual {res:.2e}")
        print(f"{'':>18}  residual history: {' '.join(sample)}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in curves.items():
        t, r = zip(*points) if points else ((), ())
        ax.semilogy(t, r, label=name)
    ax.axhline(args.rtol, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("seconds")
    ax.set_ylabel("relative residual ||b - Ax|| / ||b||")
    ax.set_title(f"2-D Poisson, n = {n:,}")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out, dpi=100)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
