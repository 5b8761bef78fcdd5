"""The 2-D heat equation on a chunked grid, one asp-specialized call per block, on Dask.

    u_t = alpha (u_xx + u_yy) on a periodic square, explicit in time.

The step is an ordinary ``StencilKernel`` with ``boundary='wrap'``;
``specializers.stencil.dask.iterate`` applies it to a ``dask.array`` block by
block (one-point halo slices exchanged between neighbouring blocks) and persists
the state every few steps.  The script runs on a local two-worker cluster, or on an
existing one with ``--scheduler tcp://host:port``, and checks the result against
the same steps run on one machine.

    python examples/dask_heat.py [--n 2048] [--chunk 1024] [--steps 20] [--scheduler ADDR]
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from specializers.stencil import StencilKernel  # noqa: E402


class HeatStep(StencilKernel):
    """u_new = u + r * (discrete Laplacian of u), r = alpha dt / h^2."""

    boundary = "wrap"

    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * lap


def main(argv=None) -> int:
    quick = os.environ.get("ASP_EXAMPLE_QUICK", "") not in ("", "0")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=256 if quick else 2048, help="grid points per side")
    p.add_argument("--chunk", type=int, default=None, help="block side (default n / 2)")
    p.add_argument("--steps", type=int, default=6 if quick else 20)
    p.add_argument("--persist-every", type=int, default=5)
    p.add_argument("--workers", type=int, default=2, help="local cluster size")
    p.add_argument("--scheduler", help="address of an existing Dask scheduler (tcp://host:port)")
    args = p.parse_args(argv)

    import dask.array as da
    import distributed

    from specializers.stencil.dask import iterate, ship_by_value

    n, steps = args.n, args.steps
    chunk = args.chunk or max(n // 2, 1)
    r = 0.2
    xs = np.linspace(0.0, 2 * math.pi, n, endpoint=False)
    u0 = np.outer(np.sin(xs), np.cos(2 * xs)) + 1.0
    step = HeatStep()
    ship_by_value(step)  # defined in __main__: workers get the class and its source

    if args.scheduler:
        client, cluster = distributed.Client(args.scheduler), None
        where = f"the cluster at {args.scheduler}"
    else:
        cluster = distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1,
                                           processes=True, dashboard_address=None)
        client = distributed.Client(cluster)
        where = f"a local cluster of {args.workers} worker processes"
    try:
        print("asp on Dask: the 2-D heat equation on a chunked, periodic grid")
        print(f"  grid {n} x {n} in {chunk} x {chunk} blocks "
              f"({math.ceil(n / chunk) ** 2} blocks), {steps} steps, on {where}")
        u = da.from_array(u0, chunks=chunk).persist()
        t0 = time.perf_counter()
        first = iterate(step, u, 1, r).compute()  # workers specialize or load from cache
        t_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        result = iterate(step, u, steps, r, persist_every=args.persist_every).compute()
        t_dask = time.perf_counter() - t0

        v = u0.copy()
        step(v, r)  # the single-machine run: the same kernel on the whole array
        t0 = time.perf_counter()
        for _ in range(steps):
            v = step(v, r)
        t_one = time.perf_counter() - t0
        diff = float(np.abs(result - v).max())
        print(f"  first step (workers specialize or load)  {t_first * 1e3:8.1f} ms")
        print(f"  Dask      {steps} steps {t_dask:8.3f} s  {t_dask / steps * 1e3:8.2f} ms/step")
        print(f"  one array {steps} steps {t_one:8.3f} s  {t_one / steps * 1e3:8.2f} ms/step")
        print(f"  Dask / one machine: {t_dask / t_one:5.2f}x  (small grids are dominated "
              "by scheduling; see docs/scaling_with_dask.rst)")
        print(f"  heat is conserved: mean {u0.mean():.12f} -> {result.mean():.12f}")
        print(f"  max |Dask - one machine| = {diff:.1e}  (rounding only: FMA contraction "
              "may differ with a point's position in a block)")
        ok = diff <= 1e-12 and float(np.abs(first - step(u0, r)).max()) <= 1e-12
        print("  check:", "OK" if ok else "MISMATCH")
        return 0 if ok else 1
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


if __name__ == "__main__":
    sys.exit(main())
