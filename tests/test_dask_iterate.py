"""Deep halos in specializers.stencil.dask.iterate, in process (Dask's synchronous
scheduler): T steps per halo exchange equal the loop of single-array calls bit for bit
(2-D and 3-D, float64 and float32, uneven chunks and chunks smaller than the halo, a
last round shorter than T), one exchange per T steps in the graph, the rule for T, and
clear errors."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")

from specializers.stencil import StencilGrid, StencilKernel  # noqa: E402
from specializers.stencil.dask import iterate  # noqa: E402
from specializers.stencil.dask.deep import (  # noqa: E402
    MAX_STEPS_PER_EXCHANGE,
    DeepRound,
    exchange_depth,
    steps_per_exchange,
)
from specializers.stencil.dask.partition import deep_plan, grown_volume  # noqa: E402
from specializers.stencil.iterate import iteration_jit  # noqa: E402

# As in test_dask_stencil: no FMA contraction, one variant on both sides.
CFLAGS = "-O3 -march=native -fopenmp -ffp-contract=off"


class Heat(StencilKernel):
    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * lap


class Heat3(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            acc = -6.0 * u[x]
            for y in u.neighbors(x, 1):
                acc += u[y]
            out[x] = u[x] + 0.1 * acc


class Smooth(StencilKernel):
    """Any rank (1-D is iterated step by step inside the task)."""

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = 0.25 * u[x]
            for y in u.neighbors(x, 1):
                out[x] += 0.125 * u[y]


class Forced(StencilKernel):
    """A second grid read at every step (split into blocks and grown too) and a number."""

    def kernel(self, u, f, s, out):
        for x in out.interior_points():
            acc = f[x] * s - 4.0 * u[x]
            for y in u.neighbors(x, 1):
                acc += u[y]
            out[x] = u[x] + 0.2 * acc


class Reach2(StencilKernel):
    """Neighbourhood 1 reaches two points along the axes (ghost depth 2)."""

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = 0.5 * u[x]
            for y in u.neighbors(x, 1):
                out[x] += 0.0625 * u[y]


@pytest.fixture(scope="module", autouse=True)
def pinned_flags():
    import dask

    saved = {k: os.environ.get(k) for k in ("ASP_TUNE", "ASP_CFLAGS")}
    os.environ.update(ASP_TUNE="off", ASP_CFLAGS=CFLAGS)
    with dask.config.set(scheduler="sync"):  # persist() too runs in this process
        yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def loop(k, u, *args, steps):
    for _ in range(steps):
        u = k(u, *args)
    return u


def run(u):
    return u.compute()


def _equal(got: np.ndarray, want: np.ndarray):
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.array_equal(got, want), f"max diff {np.abs(got - want).max()}"


def rounds_of(u) -> list[int]:
    """Per round in ``u``'s graph, the steps its block tasks run (one entry per round)."""
    g = dict(u.__dask_graph__())
    per_round: dict[str, int] = {}
    for key, task in g.items():
        if isinstance(task, tuple) and isinstance(task[0], DeepRound):
            per_round[key[0]] = task[0].deep.call.steps
    return sorted(per_round.values(), reverse=True)


@st.composite
def layouts(draw):
    ndim = draw(st.sampled_from([2, 2, 3]))
    shape, chunks = [], []
    for _ in range(ndim):
        n = draw(st.integers(4, 26 if ndim == 2 else 11))
        # At most 16 blocks (4 x 4, 2 x 2 x 2): each block shape compiles its kernels, and
        # a 3-D example of 4 x 4 x 4 blocks took 3.6 s (one run of this test, 142 s).
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=3 if ndim == 2 else 1)))
        edges = [0, *cuts, n]
        shape.append(n)
        chunks.append(tuple(b - a for a, b in zip(edges, edges[1:])))
    return tuple(shape), tuple(chunks)


# ASP_TUNE=off (above) compiles only a signature's first variant: each new block shape
# costs its step kernel and the iteration's "steps" variant, not a dozen blocked ones
# (before, 24 examples took 589 s of one worker in a fresh-clone make test; 40 now
# take about 50 s).  Every blocked variant is checked against the loop in test_iterate.
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=layouts(), mode=st.sampled_from(["interior", "wrap"]),
       dtype=st.sampled_from([np.float64, np.float32]), steps=st.integers(1, 13),
       per=st.integers(2, 6), seed=st.integers(0, 2**16), strips=st.booleans())
def test_deep_rounds_equal_the_loop(layout, mode, dtype, steps, per, seed, strips):
    """Uneven chunks, chunks of one point (smaller than the halo: slices come from
    blocks further away), steps a multiple of T or not, fewer steps than T; rounds on
    grown blocks, or on the blocks and strips around them (as large blocks run: then
    strips longer than the block, overlapping each other, reaching past small chunks)."""
    from specializers.stencil.dask import deep

    shape, chunks = layout
    u = np.random.default_rng(seed).random(shape).astype(dtype)
    k = (Heat if len(shape) == 2 else Heat3)(boundary=mode)
    args = (0.2,) if len(shape) == 2 else ()
    saved, deep.STRIP_WORK = deep.STRIP_WORK, (float("inf") if strips else -1.0)
    try:
        got = iterate(k, da.from_array(u, chunks=chunks), steps, *args,
                      steps_per_exchange=per, persist_every=100)
        assert steps == 1 or rounds_of(got)[0] == min(per, steps)
        result = run(got)
    finally:
        deep.STRIP_WORK = saved
    _equal(result, loop(k, u, *args, steps=steps))


@pytest.mark.parametrize("mode", ["interior", "wrap"])
def test_rounds_on_the_block_and_strips_with_a_second_field(mode, monkeypatch, rng):
    """Strips cut from every field (the second one is read at every step), on blocks
    thinner than the halo, uneven, cut along both axes (few block shapes: each shape
    class compiles its own blocked variants)."""
    from specializers.stencil.dask import deep

    monkeypatch.setattr(deep, "STRIP_WORK", float("inf"))
    u, f = rng.random((23, 30)), rng.random((23, 30))
    chunks = ((3, 10, 10), (15, 15))
    k = Forced(boundary=mode)
    got = iterate(k, da.from_array(u, chunks=chunks), 11, da.from_array(f, chunks=chunks),
                  1.5, steps_per_exchange=5, persist_every=100)
    _equal(run(got), loop(k, u, f, 1.5, steps=11))


def test_large_blocks_run_on_strips_and_are_not_copied(monkeypatch, rng):
    """Row slabs 64 times the halo deep: the rule takes the strips (two of 3 halos each,
    9.4 % more points), so no round grows a block into a new array; blocks of the same
    size cut along both axes (strips on four sides, 19 %) and thin slabs (50 %) grow
    the block."""
    import dask

    from specializers.stencil.dask import deep

    made = []
    real = deep.new_output
    monkeypatch.setattr(deep, "new_output",
                        lambda shape, dtype: made.append(tuple(shape)) or real(shape, dtype))
    h = exchange_depth(4, 1, 1)
    assert deep.strips_pay(deep_plan(((0, 256, 512, 768), (0, 40)), h, "interior", (1, 0)), h)
    assert not deep.strips_pay(deep_plan(((0, 256, 512, 768),) * 2, h, "interior", (1, 1)), h)
    assert not deep.strips_pay(deep_plan(((0, 12, 24, 36), (0, 40)), h, "interior", (1, 0)), h)
    u = rng.random((768, 40))
    u0 = u.copy()
    x = iterate(Heat(), da.from_array(u, chunks=(256, 40)), 12, 0.1, steps_per_exchange=4,
                persist_every=100)
    with dask.config.set(scheduler="synchronous"):
        got = x.compute()
    _equal(got, loop(Heat(), u, 0.1, steps=12))
    assert np.array_equal(u, u0) and made == []


@pytest.mark.parametrize("mode", ["interior", "wrap"])
def test_rounds_on_strips_start_the_block_at_once(mode, monkeypatch, rng):
    """A round on the block and strips is two tasks per block: the block's own steps
    (DeepCore: it reads the block and runs after the slices it cuts, never waiting for a
    neighbour's), then the strips pasted into its result (DeepRound).  From
    STRIP_BLOCKED_FROM steps per round on, the strips iterate temporally blocked, below
    step by step; either way the loop's bits."""
    import dask

    from specializers.stencil.dask import deep, shipping

    monkeypatch.setattr(deep, "STRIP_WORK", float("inf"))
    stepwise = []
    real = shipping.IterateCall.__call__

    def spy(self, blocks, **how):
        stepwise.append((blocks[0].shape, how.get("stepwise", False)))
        return real(self, blocks, **how)

    monkeypatch.setattr(shipping.IterateCall, "__call__", spy)
    u = rng.random((300, 40))
    k = Heat(boundary=mode)
    for per in (deep.STRIP_BLOCKED_FROM - 1, deep.STRIP_BLOCKED_FROM):
        stepwise.clear()
        x = iterate(k, da.from_array(u, chunks=(100, 40)), 2 * per, 0.1,
                    steps_per_exchange=per, persist_every=100)
        g = dict(x.__dask_graph__())
        cores = {key: t for key, t in g.items()
                 if isinstance(t, tuple) and isinstance(t[0], deep.DeepCore)}
        assert len(cores) == 3 * 2  # every block of both rounds
        for key, task in cores.items():
            deps = {d for d in dask.core.get_dependencies(g, key)}
            # only its own block (of the round before) and the slices cut from it
            assert all(d[1:] == key[1:] or "-halo" in d[0] for d in deps), deps
        with dask.config.set(scheduler="synchronous"):
            got = x.compute()
        _equal(got, loop(k, u, 0.1, steps=2 * per))
        strips = [flag for shape, flag in stepwise if shape[0] < 100]
        assert strips and all(flag == (per < deep.STRIP_BLOCKED_FROM) for flag in strips)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode,per", [("interior", 16), ("wrap", 8)])
def test_rule_chosen_rounds_on_larger_blocks(mode, per, dtype, rng):
    """Without steps_per_exchange the rule picks T (the largest whose halos add at most
    10 % to the points computed): 37 steps are rounds of T and a shorter last one."""
    u = rng.random((720, 640)).astype(dtype)
    k = Heat(boundary=mode)
    got = iterate(k, da.from_array(u, chunks=(360, 320)), 37, 0.1, persist_every=100)
    assert rounds_of(got) == [per] * (37 // per) + [37 % per]
    _equal(run(got), loop(k, u, 0.1, steps=37))


def test_three_d_uneven_chunks_and_float32(rng):
    u = rng.random((23, 19, 30)).astype(np.float32)
    k = Heat3()
    x = da.from_array(u, chunks=((12, 11), (4, 15), (30,)))
    _equal(run(iterate(k, x, 9, steps_per_exchange=4)), loop(k, u, steps=9))


@pytest.mark.parametrize("mode", ["interior", "wrap"])
def test_row_slabs_come_back_as_views_and_equal_the_loop(mode, monkeypatch, rng):
    """In 'interior' mode a row slab is one contiguous run of its grown result: the
    round returns it as a view (no copy), C-contiguous.  Blocks cut along both axes,
    and 'wrap' blocks (padded on every side), come back as arrays of their own.  Either
    way the rounds equal the loop."""
    import dask

    from specializers.stencil.dask import deep

    monkeypatch.setattr(deep, "STRIP_WORK", -1.0)  # every round on grown blocks
    u = rng.random((360, 48))
    k = Heat(boundary=mode)
    for chunks, viewed in (((120, 48), mode == "interior"), ((120, 24), False)):
        x = iterate(k, da.from_array(u, chunks=chunks), 11, 0.1, steps_per_exchange=4)
        _equal(run(x), loop(k, u, 0.1, steps=11))
        key = (x.name, 1, 0)  # a middle block of the last round
        assert isinstance(dict(x.__dask_graph__())[key][0], DeepRound)
        block = dask.get(x.__dask_graph__(), key)
        assert block.flags.c_contiguous and block.shape == (120, chunks[1])
        assert (block.base is not None) == viewed
        assert np.array_equal(block, loop(k, u, 0.1, steps=11)[120:240, :chunks[1]])


@pytest.mark.parametrize("forced", [False, True])
def test_later_rounds_grow_row_slabs_in_place(forced, monkeypatch, rng):
    """A round whose block is the core of the last round's grown result (a row slab
    returned as a view) fills only the rows around it, in that array: no new grown
    array and no copy of the block (256 MB a block on 8192^2).  The first round's
    blocks are the input's, and a second field is the input's in every round: those
    are grown into new arrays, and the caller's arrays are never written.  Results
    equal the loop either way."""
    import dask

    from specializers.stencil.dask import deep

    made = []
    real = deep.new_output

    def counting(shape, dtype):
        made.append(tuple(shape))
        return real(shape, dtype)

    monkeypatch.setattr(deep, "new_output", counting)
    monkeypatch.setattr(deep, "STRIP_WORK", -1.0)  # every round on grown blocks
    u, f = rng.random((360, 48)), rng.random((360, 48))
    u0, f0 = u.copy(), f.copy()
    k, args = (Forced(), (da.from_array(f, chunks=(120, 48)), 1.5)) if forced \
        else (Heat(), (0.1,))
    x = iterate(k, da.from_array(u, chunks=(120, 48)), 12, *args, steps_per_exchange=4,
                persist_every=100)
    with dask.config.set(scheduler="synchronous"):
        got = x.compute()
    _equal(got, loop(k, u, *((f, 1.5) if forced else (0.1,)), steps=12))
    assert np.array_equal(u, u0) and np.array_equal(f, f0)
    # 3 rounds of 3 blocks: the state's blocks grown anew in the first round only
    assert len(made) == 3 + (9 if forced else 0), made


def test_the_blocked_variant_runs_inside_the_tasks(rng):
    """The grown blocks go through StencilKernel.iterate: for a kernel that can be
    blocked in time, its blocked iteration is made (on the task's own grown block)."""
    class Blocked(Heat):  # a class of its own: no iteration made before this test
        pass

    u = rng.random((64, 40))
    k = Blocked()
    _equal(run(iterate(k, da.from_array(u, chunks=(32, 40)), 6, 0.3, steps_per_exchange=6)),
           loop(k, u, 0.3, steps=6))
    grown = np.zeros((32 + exchange_depth(6, 1, 1), 40))  # a block grown on one side
    assert iteration_jit(k, grown, 0.3) is not None


class Heat1(StencilKernel):
    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -2.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * lap


@pytest.mark.parametrize("mode", ["interior", "wrap"])
@pytest.mark.parametrize("strips", [False, True])
def test_one_dimension_deep_rounds_of_a_kernel_blocked_in_time(mode, strips, monkeypatch,
                                                               rng):
    """A 1-D kernel that ``iterate`` blocks in time (specializers.stencil.lines; each
    blocked variant is checked against the loop in test_iterate_lines): uneven chunks,
    one smaller than the halo, a last round shorter than T, rounds on grown blocks or on
    blocks and strips, against the loop."""
    from specializers.stencil.dask import deep

    monkeypatch.setattr(deep, "STRIP_WORK", float("inf") if strips else -1.0)
    u = rng.random(1001)
    k = Heat1(boundary=mode)
    got = iterate(k, da.from_array(u, chunks=((300, 5, 400, 296),)), 23, 0.2,
                  steps_per_exchange=8, persist_every=100)
    assert rounds_of(got)[0] == 8
    _equal(run(got), loop(k, u, 0.2, steps=23))
    assert iteration_jit(k.with_options(boundary="interior"),
                         np.zeros(400 + 2 * exchange_depth(8, 1, 1)), 0.2) is not None


def test_one_exchange_per_round_in_the_graph():
    """10 steps at T = 4 are 3 rounds: 3 layers of block tasks, and slices cut 3 times
    (not 10), each at most the exchange depth 4 across."""
    x = da.zeros((24, 24), chunks=(12, 12))
    out = iterate(Heat(), x, 10, 0.1, steps_per_exchange=4)
    assert rounds_of(out) == [4, 4, 2]
    g = dict(out.__dask_graph__())
    deep = [k for k, t in g.items() if isinstance(t, tuple) and isinstance(t[0], DeepRound)]
    takes = [k for k in g if isinstance(k, tuple) and "-halo" in k[0]]
    assert len(deep) == 3 * 4
    assert len(takes) == 3 * 4 * 3  # each of 4 blocks gets slices from its 3 others
    for task in (g[k] for k in deep):
        assert task[0].deep.h == 4
        for box in (b for _, b in deep_plan(task[0].deep.bounds, 4, "interior",
                                            task[0].index).halos):
            assert min(s.stop - s.start for s in box) <= 4


def test_zero_steps_and_one_step():
    x = da.ones((8, 8), chunks=4)
    assert iterate(Heat(), x, 0, 0.1) is x
    one = iterate(Heat(), x, 1, 0.1, steps_per_exchange=5)
    assert rounds_of(one) == []  # one step: the per-step path
    _equal(run(one), Heat()(np.ones((8, 8)), 0.1))


def test_a_second_field_and_a_number_go_with_the_state(rng):
    u, f = rng.random((30, 28)), rng.random((30, 28))
    k = Forced()
    got = iterate(k, da.from_array(u, chunks=(9, 14)), 11, da.from_array(f, chunks=(15, 7)),
                  1.5, steps_per_exchange=3)
    _equal(run(got), loop(k, u, f, 1.5, steps=11))


@pytest.mark.parametrize("mode", ["interior", "wrap"])
def test_ghost_depth_two(mode, rng):
    """A neighbourhood reaching 2: the halo is 2 per step (h = 2T), blocks are grids."""
    nd = [[(0, 0)], [(-2, 0), (2, 0), (0, -2), (0, 2), (1, 1), (-1, 0)]]
    a = rng.random((31, 27))
    k = Reach2(boundary=mode)
    want = StencilGrid([31, 27])
    want.data, want.neighbor_definition, want.ghost_depth = a, nd, 2
    for _ in range(7):
        out = StencilGrid([31, 27])
        out.data = k(want)
        out.neighbor_definition, out.ghost_depth = nd, 2
        want = out
    got = iterate(k, da.from_array(a, chunks=(8, (5, 10, 12))), 7, steps_per_exchange=3,
                  ghost_depth=2, neighbor_definition=nd)
    assert {t[0].deep.h for t in dict(got.__dask_graph__()).values()
            if isinstance(t, tuple) and isinstance(t[0], DeepRound)} == {6}
    _equal(run(got), want.data)


def test_one_dimension(rng):
    u = rng.random(300)
    k = Smooth()
    _equal(run(iterate(k, da.from_array(u, chunks=70), 12, steps_per_exchange=5)),
           loop(k, u, steps=12))


@pytest.mark.parametrize("mode", ["nearest", "reflect", "mirror", "constant"])
def test_other_modes_exchange_every_step(mode, rng):
    u = rng.random((20, 18))
    k = Heat(boundary=mode, cval=0.5)
    got = iterate(k, da.from_array(u, chunks=(7, 9)), 5, 0.2)
    assert rounds_of(got) == []
    _equal(run(got), loop(k, u, 0.2, steps=5))
    with pytest.raises(ValueError, match=f"steps_per_exchange=4: boundary='{mode}' exchanges"):
        iterate(k, da.from_array(u, chunks=(7, 9)), 5, 0.2, steps_per_exchange=4)


def test_persist_every_counts_steps_in_rounds(monkeypatch):
    """The state is persisted at the end of the first round that brings the steps since
    the last persist to persist_every (never after the last round)."""
    made = []
    real = da.Array.persist

    def counting(self, **kwargs):
        made.append(self)
        return real(self, **kwargs)

    monkeypatch.setattr(da.Array, "persist", counting)
    x = da.from_array(np.arange(144.0).reshape(12, 12), chunks=6)
    out = iterate(Heat(), x, 25, 0.1, persist_every=10, steps_per_exchange=4)
    # Rounds end at 4, 8, 12 (persist), 16, 20, 24 (persist), 25.
    assert len(made) == 2
    assert rounds_of(out) == [1]
    made.clear()
    iterate(Heat(boundary="nearest"), x, 7, 0.1, persist_every=3)  # per step: at 3 and 6
    assert len(made) == 2


def test_the_rule_for_steps_per_exchange():
    def edges(n, chunk):
        return tuple(range(0, n + 1, chunk))

    slabs = (edges(4096, 2048), edges(4096, 4096))
    assert steps_per_exchange(slabs, 1, 1, "interior", 100) == MAX_STEPS_PER_EXCHANGE
    assert steps_per_exchange(slabs, 1, 1, "interior", 7) == 7  # never more than the steps
    cube = (edges(1024, 256),) * 3
    t = steps_per_exchange(cube, 1, 1, "interior", 100)
    assert t == 5
    assert grown_volume(cube, exchange_depth(t, 1, 1), "interior") <= 1.1
    assert grown_volume(cube, exchange_depth(t + 1, 1, 1), "interior") > 1.1
    # Small blocks: no T > 1 keeps the halos within 10 %, so one exchange per step.
    assert steps_per_exchange((edges(40, 10),) * 2, 1, 1, "interior", 100) == 1
    # A wider reach grows the halo faster; 'wrap' grows every block on both sides.
    assert steps_per_exchange(slabs, 2, 2, "interior", 100) == MAX_STEPS_PER_EXCHANGE
    assert steps_per_exchange((edges(512, 128),) * 2, 2, 2, "wrap", 100) < \
        steps_per_exchange((edges(512, 128),) * 2, 1, 1, "wrap", 100)
    # The grown volume, exactly: interior blocks clip at the grid's edge.
    assert grown_volume(((0, 10, 20),), 3, "interior") == 26 / 20
    assert grown_volume(((0, 10, 20),), 3, "wrap") == 32 / 20


def test_deep_plan_reaches_past_small_chunks():
    """A halo deeper than the chunks next to the block comes from the blocks beyond;
    'interior' never grows past the grid's edge, 'wrap' grows round it."""
    bounds = ((0, 2, 3, 9, 10),)
    plan = deep_plan(bounds, 4, "interior", (2,))
    assert plan.shape == (10,) and plan.core == (slice(3, 9),)  # [3-4, 9+4) clipped
    assert {j for j, _ in plan.halos} == {(0,), (1,), (3,)}
    plan = deep_plan(bounds, 4, "wrap", (0,))
    assert plan.shape == (10,) and plan.core == (slice(4, 6),)
    got = np.empty(10, int)
    blocks = [np.arange(lo, hi) for lo, hi in zip(bounds[0], bounds[0][1:])]
    for p in plan.pieces:
        src = blocks[0] if p.source < 0 else blocks[plan.halos[p.source][0][0]][
            plan.halos[p.source][1]]
        got[p.dest] = src[p.src]
    assert got.tolist() == [6, 7, 8, 9, 0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="'wrap' and 'interior' mode only"):
        deep_plan(bounds, 2, "nearest", (0,))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"steps_per_exchange": 0}, ValueError, "steps_per_exchange=0: expected an integer >= 1"),
    ({"steps_per_exchange": 2.5}, TypeError, "steps_per_exchange must be an int"),
    ({"steps_per_exchange": True}, TypeError, "steps_per_exchange must be an int"),
    ({"persist_every": 0}, ValueError, "persist_every=0"),
    ({"method": "halo"}, ValueError, "method='halo'"),
    ({"chunks": 4}, TypeError, "unexpected option"),
])
def test_bad_arguments_are_named(kwargs, error, match):
    with pytest.raises(error, match=match):
        iterate(Heat(), da.zeros((8, 8), chunks=4), 5, 0.1, **kwargs)


def test_bad_steps_and_state():
    with pytest.raises(ValueError, match="steps=-1"):
        iterate(Heat(), da.zeros((8, 8), chunks=4), -1, 0.1)
    with pytest.raises(TypeError, match="steps must be an int"):
        iterate(Heat(), da.zeros((8, 8), chunks=4), 2.0, 0.1)
    with pytest.raises(TypeError, match="u must be a dask array"):
        iterate(Heat(), np.zeros((8, 8)), 2, 0.1)


def test_kernel_iterate_hands_a_dask_state_to_the_deep_halo_iteration():
    """``K.iterate(u, *args, steps=S)`` on a dask array is the Dask iteration (lazy, one
    exchange per several steps), bit for bit the loop on the computed array."""
    import dask.array as da

    k = Heat()
    u = np.random.default_rng(5).random((60, 50))
    got = k.iterate(da.from_array(u, chunks=(30, 25)), 0.1, steps=7)
    assert hasattr(got, "__dask_graph__")
    want = u
    for _ in range(7):
        want = k(want, 0.1)
    np.testing.assert_array_equal(got.compute(scheduler="synchronous"), want)


def test_step_by_step_names_a_bad_step_count():
    from specializers.stencil.iterate import step_by_step

    u = np.zeros((8, 8))
    with pytest.raises(TypeError, match="steps must be an int, not bool"):
        step_by_step(Heat(), u, 0.1, steps=True)
    with pytest.raises(ValueError, match="steps=-1: must be at least 0"):
        step_by_step(Heat(), u, 0.1, steps=-1)
