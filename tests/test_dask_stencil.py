"""Stencil kernels on dask arrays across a local two-process cluster: every boundary mode
equals the single-array call bit for bit, halos wider than chunks, time stepping (one
exchange per step, and deep halos: several steps per exchange), pickling, and a worker
killed in the middle of a computation (of one step, and of deep-halo rounds)."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
import signal
import time

import numpy as np
import pytest
from conftest import environ_restored

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from specializers.stencil import MODES, StencilGrid, StencilKernel  # noqa: E402
from specializers.stencil.dask import apply, gather, iterate, ship_by_value  # noqa: E402

# Same flags on both sides: gcc contracts a*b+c into an FMA in some loop versions and
# not others, so without this a point's last bit could depend on its column in a block.
CFLAGS = "-O3 -march=native -fopenmp -ffp-contract=off"


class Heat(StencilKernel):
    def kernel(self, u, alpha, out):
        for x in out.interior_points():
            out[x] = u[x]
            for y in u.neighbors(x, 1):
                out[x] += alpha * (u[y] - u[x])


class Lap(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            for y in a.neighbors(x, 1):
                out[x] += 0.3 * a[y]
            out[x] -= 1.1 * a[x]


class Wide(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, 1):
                out[x] += 0.5 * u[y]


class Table(StencilKernel):
    def kernel(self, a, table, out):
        for x in out.interior_points():
            out[x] = table[int(a[x] * 7) % 8]
            for y in a.neighbors(x, 1):
                out[x] += a[y]


class Slow(StencilKernel):
    """A kernel only the fault test compiles (so workers may die while compiling it)."""

    def kernel(self, a, out):
        for x in out.interior_points():
            for y in a.neighbors(x, 1):
                out[x] += 0.25 * a[y] * a[x]


class SlowRounds(StencilKernel):
    """Only the deep-halo fault test compiles it (and its blocked iteration): workers may
    die while compiling either.  A local accumulator, so it can be blocked in time."""

    def kernel(self, a, out):
        for x in out.interior_points():
            acc = 0.5 * a[x]
            for y in a.neighbors(x, 1):
                acc += 0.125 * a[y] * a[x]
            out[x] = acc


ship_by_value(Heat)  # this module is not importable on the workers: send classes whole


@pytest.fixture(scope="module")
def client(_asp_cache):
    saved = {k: os.environ.get(k) for k in ("ASP_TUNE", "ASP_CFLAGS")}
    os.environ.update(ASP_TUNE="off", ASP_CFLAGS=CFLAGS)
    env = {"ASP_CACHE_DIR": str(_asp_cache), "ASP_TUNE": "off", "ASP_CFLAGS": CFLAGS,
           "OMP_NUM_THREADS": "1"}
    with environ_restored():
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           dashboard_address=None, env=env)
        c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def _equal(got: np.ndarray, want: np.ndarray):
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.array_equal(got, want), f"max diff {np.abs(got - want).max()}"


@pytest.mark.parametrize("method", ["split", "overlap"])
@pytest.mark.parametrize("mode", MODES)
def test_every_mode_bit_for_bit_2d_and_3d(client, mode, method, rng):
    a2 = rng.random((23, 17))
    k = Heat(boundary=mode, cval=0.7)
    out = apply(k, da.from_array(a2, chunks=((5, 9, 9), (4, 7, 6))), 0.1, method=method)
    _equal(out.compute(), k(a2, 0.1))
    a3 = rng.random((9, 10, 11))
    k3 = Lap(boundary=mode, cval=-0.5)
    _equal(apply(k3, da.from_array(a3, chunks=(4, 3, 5)), method=method).compute(), k3(a3))


def test_interior_leaves_the_border_untouched(client, rng):
    a = rng.random((12, 10))
    out = apply(Lap(), da.from_array(a, chunks=(3, 4))).compute()
    assert not out[0].any() and not out[-1].any() and not out[:, 0].any()
    _equal(out, Lap()(a))


@pytest.mark.parametrize("mode", ["wrap", "mirror", "reflect", "interior"])
def test_halo_wider_than_chunks_rechunks_or_raises(client, mode, rng):
    nd = [[(0, 0)], [(-2, 0), (2, 0), (0, -2), (0, 2), (1, 1)]]
    g = StencilGrid([11, 9])
    g.data = rng.random((11, 9))
    g.neighbor_definition = nd
    g.ghost_depth = 2
    k = Wide(boundary=mode)
    want = k(g)
    x = da.from_array(g.data, chunks=((1, 1, 4, 5), (3, 1, 5)))
    got = apply(k, x, neighbor_definition=nd, ghost_depth=2)
    _equal(got.compute(), want)
    with pytest.raises(ValueError, match="smaller than the halo depth 2"):
        apply(k, x, neighbor_definition=nd, ghost_depth=2, rechunk=False)
    with pytest.raises(ValueError, match="fewer than the halo depth"):
        apply(k, da.ones((1, 9), chunks=1), neighbor_definition=nd, ghost_depth=2)


def test_tables_and_scalars_go_whole_to_every_block(client, rng):
    a, table = rng.random((14, 13)), rng.random(8)
    k = Table(boundary="nearest")
    _equal(apply(k, da.from_array(a, chunks=5), table).compute(), k(a, table))


def test_time_stepping_with_persist(client, rng):
    u0 = rng.random((24, 20))
    k = Heat(boundary="wrap")
    want = u0
    for _ in range(7):
        want = k(want, 0.2)
    u = iterate(k, da.from_array(u0, chunks=(13, 11)), 7, 0.2, persist_every=3)
    _equal(u.compute(), want)
    # The documented loop, by hand.
    u = da.from_array(u0, chunks=(11, 13))
    for t in range(1, 8):
        u = apply(k, u, 0.2)
        if t % 3 == 0:
            u = u.persist()
    _equal(u.compute(), want)


@pytest.mark.parametrize("mode", ["interior", "wrap"])
def test_deep_halo_rounds_with_persist_on_the_cluster(client, mode, rng):
    """Rounds of 3 steps per exchange, persisted on the workers after the rounds ending
    at steps 6 and 12, equal the loop of single-array calls."""
    u0 = rng.random((40, 36))
    k = Heat(boundary=mode)
    want = u0
    for _ in range(14):
        want = k(want, 0.2)
    u = iterate(k, da.from_array(u0, chunks=(13, (20, 16))), 14, 0.2, persist_every=5,
                steps_per_exchange=3)
    _equal(u.compute(), want)


def test_gather_leaves_blocks_where_they_are(client, rng):
    """compute() concatenates on a worker (which then holds copies of the other
    blocks); gather() fetches the blocks to the client and moves nothing."""
    from distributed import futures_of

    a = rng.random((20, 18, 3))
    u = da.from_array(a, chunks=(7, 6, 2)).persist()  # 3 x 3 x 2 blocks
    distributed.wait(u)
    where = client.who_has(u)
    got = gather(u)
    _equal(got, a)
    assert got.flags.aligned and got.flags.c_contiguous
    assert client.who_has(u) == where
    # Not persisted, or not a dask array at all.
    _equal(gather(da.from_array(a, chunks=5) * 2), a * 2)
    with pytest.raises(TypeError, match="x must be a dask array"):
        gather(a)
    assert len(futures_of(u)) == 18


def test_kernel_pickles_without_compiled_state(rng):
    import cloudpickle

    k = Heat(boundary="reflect")
    a = rng.random((8, 8))
    first = k(a, 0.3)  # now holds native entries (ctypes), which cannot be pickled
    back = pickle.loads(cloudpickle.dumps(k))
    assert type(back) is Heat and back.boundary == "reflect"
    _equal(back(a, 0.3), first)


def test_workers_share_the_session_cache(client, _asp_cache):
    dirs = client.run(lambda: os.environ["ASP_CACHE_DIR"])
    assert set(dirs.values()) == {str(_asp_cache)}
    flags = client.run(lambda: os.environ.get("ASP_CFLAGS"))
    assert set(flags.values()) == {CFLAGS}


def test_dask_input_through_the_kernel_call(client, rng):
    """StencilKernel.__call__ hands dask inputs to specializers.stencil.dask."""
    a = rng.random((10, 12))
    k = Heat(boundary="wrap")
    got = k(da.from_array(a, chunks=5), 0.1)
    assert isinstance(got, da.Array)
    _equal(got.compute(), k(a, 0.1))


def _slow_copy(block):
    time.sleep(0.15)
    return block.copy()


def test_worker_killed_mid_computation(client, _asp_cache, rng):
    a = rng.random((64, 48))
    k = Slow(boundary="wrap")
    x = da.from_array(a, chunks=(8, 12)).map_blocks(_slow_copy, dtype=a.dtype)
    future = client.compute(apply(k, x))
    time.sleep(0.8)  # both workers busy: specializing Slow, or sleeping in _slow_copy
    pids = client.run(os.getpid)
    victim = sorted(pids)[0]
    os.kill(pids[victim], signal.SIGKILL)
    got = future.result(timeout=120)
    _equal(got, k(a))
    root = _asp_cache
    leftovers = [p for p in root.rglob("*") if p.name.endswith(".tmp")
                 and p.parent.name in ("lib", "entries")]
    assert not leftovers
    entries = list((root / "entries").glob("*.json"))
    assert entries
    for e in entries:
        meta = json.loads(e.read_text())
        so = root / "lib" / f"{e.stem}.so"
        assert so.is_file(), e.name
        assert hashlib.sha256(so.read_bytes()).hexdigest() == meta["sha256"], e.name


@pytest.mark.parametrize("strips", [False, True])
def test_worker_killed_during_deep_halo_rounds(client, rng, monkeypatch, strips):
    """The same fault under iterate's deep halos: rounds of 4 steps per exchange, a
    worker killed while it slices, compiles or iterates; the retried tasks give the
    loop's bits.  Also when every round runs on the blocks and strips (a block's own
    steps, then the strips pasted into that task's result)."""
    from specializers.stencil.dask import deep
    from specializers.stencil.dask.deep import DeepCore, DeepRound

    monkeypatch.setattr(deep, "STRIP_WORK", float("inf") if strips else -1.0)
    a = rng.random((64, 48))
    k = SlowRounds()
    x = da.from_array(a, chunks=(16, 24)).map_blocks(_slow_copy, dtype=a.dtype)
    u = iterate(k, x, 10, steps_per_exchange=4)
    steps = {t[0].deep.call.steps for t in dict(u.__dask_graph__()).values()
             if isinstance(t, tuple) and isinstance(t[0], DeepRound)}
    assert steps == {4, 2}  # rounds of 4, 4 and 2 steps: the deep path
    assert strips == any(isinstance(t, tuple) and isinstance(t[0], DeepCore)
                         for t in dict(u.__dask_graph__()).values())
    future = client.compute(u)
    time.sleep(0.8)  # both workers busy: sleeping in _slow_copy, or compiling SlowRounds
    pids = client.run(os.getpid)
    os.kill(pids[sorted(pids)[0]], signal.SIGKILL)
    got = future.result(timeout=180)
    want = a
    for _ in range(10):
        want = k(want)
    _equal(got, want)
