"""Dask scale-out: one heat step on an 8192 x 8192 float64 grid, Dask vs the direct call.

Target (issue 6): on this 2-core machine, the step through Dask on a local
cluster of 2 single-threaded worker processes costs at most 1.5x the direct
call (2 OpenMP threads, one process).  The grid lives in the workers' memory
(persisted) and the result stays there (``persist`` + ``wait``), as in a real
time-stepping run; both sides allocate their output, and both are tuned first (until
every worker's tuner and this process's have chosen their variants: 25-50 rounds, where
a fixed twelve warm-up calls left both sides timing their tuners' trials).
``--quick``: 2048 x 2048.

Deep halos (issue #14, item 4): ``iterate`` of an ``'interior'`` heat step on 8192 x
8192 float64 (``--quick``: 2048 x 2048) in two row slabs, 32 steps, per step, with one
halo exchange per step (``steps_per_exchange=1``) and with the rule's ``T`` steps per
exchange (each block's ``T`` steps in one task, temporally blocked), against the direct
``K.iterate`` (blocked, 2 threads) on the whole grid.  Every side is tuned first.
Target: deep halos within 1.15x of the direct ``iterate`` per step.
``python -m benchmarks.bench_dask --iterate`` runs only these.
"""
from __future__ import annotations

import gc
import itertools
import os
import sys
import time

import numpy as np

from benchmarks.harness import Figure, interleaved
from specializers.stencil import StencilKernel


class HeatStep(StencilKernel):
    boundary = "wrap"

    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * lap


class _Alone:
    """A block function with a token of its own (each round a new graph)."""

    def __init__(self, fn, token: int):
        self.fn, self.token = fn, token

    def __call__(self, block):
        return self.fn(block)

    def __dask_tokenize__(self):
        return ("bench-dask-alone", self.token)


class HeatInterior(HeatStep):
    """The same step in 'interior' mode: the kind K.iterate blocks in time."""

    boundary = "interior"


def run(quick: bool, parts: tuple[str, ...] = ("step", "iterate")) -> list[Figure]:
    import distributed

    saved = dict(os.environ)  # LocalCluster sets OMP_NUM_THREADS=1 here, for the direct call
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, memory_limit=0)
    client = distributed.Client(cluster)
    os.environ.clear()
    os.environ.update(saved)
    figures: list[Figure] = []
    try:
        if "step" in parts:
            figures += _step_figures(client, quick)
        if "iterate" in parts:
            figures += _deep_halo_figures(client, quick)
    finally:
        client.close()
        cluster.close()
    return figures


def _decided(cases) -> bool:
    """Whether this process's tuner has chosen a variant for every ``(kernel, shape)``:
    the call ``kernel(u, 0.2)`` on a grid of that shape (run on a worker, or here)."""
    for kernel, shape in cases:
        a, b = np.zeros(shape), np.zeros(shape)
        if kernel.call_jit(a, 0.2).chosen_variant(a, 0.2, b) is None:
            return False
    return True


def _tune(client, rounds, here, there) -> int:
    """Run ``rounds`` (untimed) until the tuners here (``here``: cases for
    :func:`_decided`) and on every worker (``there``) have all decided: a 2-D stencil
    has several variants, each tried over a few rounds per shape (the blocks, their
    strips), which twelve warm-up calls did not finish on either side.  Returns the
    number of rounds."""
    from benchmarks.harness import until_tuned

    return until_tuned(rounds, lambda: (_decided(here) and all(
        client.run(_decided, there).values())) or None, limit=300)


def _slabs(client, n: int, seed: int):
    """An n x n grid made on the workers in two row slabs, one per worker (as a cluster
    holds a large grid; the scheduler may have put both on one worker)."""
    import dask.array as da
    import distributed
    from distributed import futures_of

    ud = da.random.default_rng(seed).random((n, n), chunks=(n // 2, n)).persist()
    distributed.wait(ud)
    client.rebalance(futures_of(ud))
    holders = client.who_has(ud)
    if len({w for ws in holders.values() for w in ws}) != 2:
        # The scheduler kept both on one worker: place one slab on each explicitly.
        rng = np.random.default_rng(seed)
        workers = sorted(client.scheduler_info()["workers"])[:2]
        parts = [client.scatter(rng.random((n // 2, n)), workers=[w]) for w in workers]
        ud = da.concatenate([da.from_delayed(p, (n // 2, n), dtype=float) for p in parts])
        ud = ud.persist()
        distributed.wait(ud)
        holders = client.who_has(ud)
    if len({w for ws in holders.values() for w in ws}) != 2:
        raise RuntimeError(f"the two slabs did not spread over both workers: {holders}")
    return ud, holders


def _step_figures(client, quick: bool) -> list[Figure]:
    import dask.array as da
    import distributed
    from distributed import futures_of

    from specializers.stencil.dask import apply, gather, iterate, ship_by_value
    from specializers.stencil.dask.shipping import BlockCall

    n = 2048 if quick else 8192
    step = HeatStep()
    ship_by_value(step)
    # Row slabs, one per worker: halos are contiguous rows.  The grid is made on the
    # workers, as a time-stepping run's state is (the previous step's output).
    ud, holders = _slabs(client, n, 0)
    # gather, not compute(): compute() concatenates the slabs on one worker, and
    # Dask's memory manager may then keep that copy in place of the original,
    # leaving one worker to compute both slabs in every later step.
    u = gather(ud)
    out = apply(step, ud, 0.2).persist()
    agree = float(np.abs(gather(out) - step(u, 0.2)).max())
    del out
    rs = itertools.count()

    held = []

    def via_dask(method="split"):
        # A new r each time: the same graph keys would find last round's result.
        out = apply(step, ud, 0.2 + 1e-9 * next(rs), method=method).persist()
        distributed.wait(out)
        held.append(out)

    def release():
        # As a time-stepping loop drops the state before last: the workers free it.
        held.clear()
        gc.collect()
        # The client sends its messages in batches at most every 10 ms: a step
        # submitted right now would wait behind this release.  A loop
        # `u = heat(u).persist()` submits first and releases after, so it never does.
        time.sleep(0.015)

    def direct():
        step(u, 0.2)

    steps = 10

    def run_dask():
        # A time-stepping run: `steps` steps in one graph, persisted at the end, one
        # halo exchange per step (the deep halos are timed by _deep_halo_figures).
        out = iterate(step, ud, steps, 0.2 + 1e-9 * next(rs), persist_every=steps,
                      steps_per_exchange=1).persist()
        distributed.wait(out)
        held.append(out)

    def run_direct():
        v = u
        for _ in range(steps):
            v = step(v, 0.2)

    # Dask's own floor: the same kernel on each block with no halo at all (wrong at
    # the block edges, so only timed): one task per block, no neighbour data.
    alone = BlockCall(step, (True, False), (0.2,), None)

    def floor():
        out = ud.map_blocks(_Alone(alone, next(rs)), dtype=ud.dtype).persist()
        distributed.wait(out)
        held.append(out)

    # Online tuning finished on both sides (the workers tune the blocks' interiors, the
    # strips, the floor's and map_overlap's blocks apart; here the whole grid), then the
    # steady state a time-stepping run sees.
    interior = step.with_options(boundary="interior")  # what the split's tasks run
    h = n // 2
    tuned = _tune(client, lambda: (via_dask(), release(), floor(), release(),
                                   via_dask("overlap"), release(), direct()),
                  [(step, (n, n))], [(interior, (h, n)), (interior, (3, n + 2)),
                                     (interior, (h + 2, 3)), (step, (h, n)),
                                     (step, (h + 2, n + 2))])
    best = interleaved({"dask": via_dask, "direct": direct, "floor": floor,
                        "overlap": lambda: via_dask("overlap")}, warmup=1,
                       repeat=3 if quick else 7,
                       after={"dask": release, "overlap": release, "floor": release})
    runs = interleaved({"dask": run_dask, "direct": run_direct}, warmup=1,
                       repeat=2 if quick else 4, after={"dask": release})
    if client.who_has(ud) != holders:
        raise RuntimeError(f"the slabs moved while timing: {client.who_has(ud)}")
    u = ud = None

    # Twice the grid (2n x n rows): Dask's cost per step is about fixed, the work
    # doubles.  Where the ratio crosses 1.5x on this machine.
    ud2 = da.random.default_rng(1).random((2 * n, n), chunks=(n, n)).persist()
    distributed.wait(ud2)
    client.rebalance(futures_of(ud2))
    if len({w for ws in client.who_has(ud2).values() for w in ws}) != 2:
        raise RuntimeError("the two slabs of the larger grid did not spread")
    u2 = gather(ud2)

    def via_dask2():
        out = apply(step, ud2, 0.2 + 1e-9 * next(rs)).persist()
        distributed.wait(out)
        held.append(out)

    _tune(client, lambda: (via_dask2(), release(), step(u2, 0.2)), [(step, (2 * n, n))],
          [(interior, (n, n)), (interior, (3, n + 2)), (interior, (n + 2, 3))])
    big = interleaved({"dask": via_dask2, "direct": lambda: step(u2, 0.2)}, warmup=1,
                      repeat=2 if quick else 5, after={"dask": release})
    u2 = ud2 = None
    ratio = best["dask"] / best["direct"]
    detail = (f"{n}x{n} float64, 2 workers x 1 thread vs 1 process x 2 threads, timed "
              f"after {tuned} rounds that tuned both sides")
    return [
        Figure("dask", "heat step: direct call", best["direct"] * 1e3, None, unit="ms",
               better="lower", detail=detail),
        Figure("dask", "heat step: via Dask", best["dask"] * 1e3, None, unit="ms",
               better="lower", detail=f"{detail}; max |diff| {agree:.1e}"),
        Figure("dask", "Dask overhead (dask / direct)", ratio, 1.5, unit="x", better="lower",
               detail=f"{detail}; method='split'"),
        Figure("dask", f"{steps}-step run: Dask / direct", runs["dask"] / runs["direct"], None,
               unit="x", better="lower",
               detail=f"{detail}; per step {runs['dask'] / steps * 1e3:.0f} vs "
                      f"{runs['direct'] / steps * 1e3:.0f} ms (one graph of {steps} steps)"),
        Figure("dask", "Dask floor (no halo) / direct", best["floor"] / best["direct"], None,
               unit="x", better="lower",
               detail=f"{detail}; the same kernel per block with no halo: one task per "
                      f"block ({best['floor'] * 1e3:.0f} ms)"),
        Figure("dask", "map_overlap method / direct", best["overlap"] / best["direct"], None,
               unit="x", better="lower",
               detail=f"{detail}; method='overlap' ({best['overlap'] * 1e3:.0f} ms)"),
        Figure("dask", "twice the grid: Dask / direct", big["dask"] / big["direct"], None,
               unit="x", better="lower",
               detail=f"{2 * n}x{n} float64: {big['dask'] * 1e3:.0f} vs "
                      f"{big['direct'] * 1e3:.0f} ms (Dask's cost per step is about fixed)"),
    ]


def _deep_halo_figures(client, quick: bool) -> list[Figure]:
    """Per step: dask ``iterate`` with one halo exchange per step, with the rule's deep
    halos, and the direct ``K.iterate`` on the whole grid."""
    import distributed

    from benchmarks.bench_iterate import tuning_steps
    from benchmarks.harness import until_tuned
    from specializers.stencil.dask import gather, iterate, ship_by_value
    from specializers.stencil.dask.deep import (
        STRIP_BLOCKED_FROM,
        exchange_depth,
        steps_per_exchange,
        strip_shapes,
        strips_pay,
    )
    from specializers.stencil.dask.partition import deep_plan
    from specializers.stencil.iterate import iteration_jit

    n, steps = (2048 if quick else 8192), 32
    k = HeatInterior()
    ship_by_value(k)
    ud, holders = _slabs(client, n, 2)
    u = gather(ud)
    per = steps_per_exchange(((0, n // 2, n), (0, n)), 1, 1, "interior", steps)  # the rule
    rs = itertools.count()
    held = []

    def dask_run(t=None):
        out = iterate(k, ud, steps, 0.2 + 1e-9 * next(rs), persist_every=steps,
                      steps_per_exchange=t).persist()
        distributed.wait(out)
        held.append(out)

    def settle():
        # Each side timed on a quiet machine: the workers free the last run's grids
        # (a per-step run leaves 32 of them) before anything else starts.
        held.clear()
        gc.collect()
        client.run(gc.collect)
        time.sleep(0.2)

    # Bit for bit only under the same flags on both sides (see docs: Exactness).
    out = iterate(k, ud, steps, 0.2, persist_every=steps).persist()
    diff = float(np.abs(gather(out) - k.iterate(u, 0.2, steps=steps)).max())
    del out

    # Tune every side first: the workers' blocked iteration (on their slabs alone, or on
    # the grown slabs when strips do not pay), the single steps of the per-step path,
    # and the direct blocked iteration.
    h = exchange_depth(per, 1, 1)
    plan = deep_plan(((0, n // 2, n), (0, n)), h, "interior", (0, 0))
    # The shapes each worker iterates: its block and strips (tuned apart), or its grown block.
    shapes = [(n // 2, n)] + (strip_shapes(plan, h) if per >= STRIP_BLOCKED_FROM else []) \
        if strips_pay(plan, h) else [plan.shape]

    def workers_undecided():
        def undecided(shapes=shapes):
            # The kernel as the workers' tasks have it: the class imported there.  ``k``
            # in this closure would travel by value (its module is registered so), a
            # class of its own on the worker with its own JitKernel, never called: the
            # check never held, and the warm-up ran to its 300 s limit every time.
            from benchmarks.bench_dask import HeatInterior as Imported

            left = []
            for shape in shapes:
                jit = iteration_jit(Imported(), np.zeros(shape), 0.2)
                probe = (np.zeros(shape), 0.2, np.zeros(shape), np.zeros(shape), per)
                if jit is None or jit.chosen_variant(*probe) is None:
                    left.append("x".join(map(str, shape)))
            return left

        return sorted({s for left in client.run(undecided).values() for s in left})

    warm = until_tuned(lambda: (dask_run(), settle()),
                       lambda: None if workers_undecided() else True, limit=300)
    left = workers_undecided()
    warm = f"{warm} rounds" + (f" (300 s limit; undecided: {', '.join(left)})" if left else "")
    # The direct iterate tuned on calls as deep as its space's deepest variant (32 steps,
    # as timed): on 16-step calls its depth-32 variants ran at depth 16 and it chose
    # among them as if depth 32 did not exist (see benchmarks/bench_iterate.py).
    deep = tuning_steps(u.ndim, steps)
    k.iterate(u, 0.2, steps=deep)
    probe = (u, 0.2, np.zeros_like(u), np.zeros_like(u), deep)
    until_tuned(lambda: k.iterate(u, 0.2, steps=deep),
                lambda: iteration_jit(k, u, 0.2).chosen_variant(*probe), limit=300)
    # The per-step path is timed on its own, after: its grown blocks are another size,
    # and between deep rounds they would take the workers' kept output blocks
    # (asp.runtime.new_output), so each deep round would fault in fresh pages (about
    # 0.3 s per 269 MB block on this VM), which a loop of deep rounds never does.
    t = interleaved({"deep": dask_run, "direct": lambda: k.iterate(u, 0.2, steps=steps)},
                    warmup=3, repeat=2 if quick else 6,
                    after={"deep": settle, "direct": settle})
    t.update(interleaved({"per step": lambda: dask_run(1)}, warmup=1,
                         repeat=1 if quick else 3, after={"per step": settle}))
    if client.who_has(ud) != holders:
        raise RuntimeError(f"the slabs moved while timing: {client.who_has(ud)}")
    ms = {name: v / steps * 1e3 for name, v in t.items()}
    detail = (f"{n}x{n} float64 'interior' heat, {steps} steps, 2 workers x 1 thread (row "
              f"slabs) vs 1 process x 2 threads; T = {per}; the workers tuned shapes "
              f"{', '.join('x'.join(map(str, sh)) for sh in shapes)} in {warm}")
    return [
        Figure("dask", "iterate, one exchange per step", ms["per step"], None, unit="ms",
               better="lower", detail=f"{detail}; per step"),
        Figure("dask", "iterate, deep halos (T per exchange)", ms["deep"], None, unit="ms",
               better="lower", detail=f"{detail}; per step; max |diff| {diff:.1e}"),
        Figure("dask", "deep halos: per-step exchange / deep", t["per step"] / t["deep"], None,
               unit="x", better="higher", detail=detail),
        Figure("dask", "deep halos: dask iterate / direct K.iterate", t["deep"] / t["direct"],
               1.15, unit="x", better="lower",
               detail=f"{detail}; direct {ms['direct']:.1f} ms per step"),
    ]


if __name__ == "__main__":  # python -m benchmarks.bench_dask [--quick] [--iterate]
    parts = ("iterate",) if "--iterate" in sys.argv else ("step", "iterate")
    for f in run("--quick" in sys.argv, parts):
        print(f"{f.name:32s} {f.value:10.3f} {f.unit}  target {f.target}  {f.detail}")
