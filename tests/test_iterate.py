"""``StencilKernel.iterate``: the time loop as one call, bit for bit the step loop's result,
blocked in time where it can be (every blocked variant checked on grids larger than its
tiles, with at least two threads), step by step where it cannot."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from asp.errors import AspFallbackWarning
from asp.runtime import Space
from specializers.stencil import StencilGrid, StencilKernel, temporal
from specializers.stencil import iterate as iterate_module
from specializers.stencil.wavefront import ring_rows


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


class Smooth1(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = 0.25 * u[x]
            for y in u.neighbors(x, 1):
                out[x] += 0.375 * u[y]


class Forced(StencilKernel):
    """A source term ``f`` read at every step (a constant input besides the state)."""

    def kernel(self, u, f, out):
        for x in out.interior_points():
            acc = f[x] - 4 * u[x]
            for y in u.neighbors(x, 1):
                acc += u[y]
            out[x] = u[x] + 0.2 * acc


class Life(StencilKernel):
    """Conway's game of life on int64 cells: an integer automaton, exact."""

    def kernel(self, u, out):
        for x in out.interior_points():
            n = 0
            for y in u.neighbors(x, 1):
                n += u[y]
            out[x] = 1 if n == 3 or (n == 2 and u[x] == 1) else 0


class Wave(StencilKernel):
    """Leapfrog for the wave equation: two previous levels."""

    def kernel(self, u, u_prev, c2, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = 2.0 * u[x] - u_prev[x] + c2 * lap


class Wave3(StencilKernel):
    def kernel(self, u, u_prev, c2, out):
        for x in out.interior_points():
            lap = -6.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = 2.0 * u[x] - u_prev[x] + c2 * lap


class ThreeLevels(StencilKernel):
    """Three previous levels, one read at a neighbour's offset."""

    def kernel(self, a, b, c, out):
        for x in out.interior_points():
            acc = 0.5 * a[x] - 0.25 * c[x]
            for y in b.neighbors(x, 1):
                acc += 0.125 * b[y]
            out[x] = acc


class Accumulate(StencilKernel):
    """Reads its output: iterated step by step."""

    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, 1):
                out[x] += 0.25 * u[y]


def loop(k, u, *args, steps):
    for _ in range(steps):
        u = k(u, *args)
    return u


def moore(dim: int):
    return StencilGrid((3,) * dim).neighbor_definition


RNG = np.random.default_rng(20261202)
SHIPPED_SAMPLE = temporal.SAMPLE


@pytest.fixture(autouse=True)
def _one_point_per_depth(monkeypatch):
    """One blocking point per depth, not the shipped sample: a test here that calls
    ``iterate`` once runs one variant (the tuner's first), and the every-variant tests
    below compile and run whole spaces.  The shipped sample made such a test compile
    about ten blocked variants to run one (this file took 480 of a fresh-clone make
    test's 850 compile-seconds)."""
    monkeypatch.setattr(temporal, "SAMPLE", 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["interior", "constant", "nearest", "reflect", "mirror", "wrap"])
def test_iterate_is_the_step_loop_bit_for_bit_in_every_mode(mode, dtype):
    k = Heat(boundary=mode, cval=0.5)
    u = RNG.random((70, 90)).astype(dtype)
    got = k.iterate(u, 0.2, steps=13)
    assert got.dtype == dtype and got is not u
    np.testing.assert_array_equal(got, loop(k, u, 0.2, steps=13))


@pytest.mark.parametrize("shape,cls,args", [((2000,), Smooth1, ()),
                                            ((41, 37, 29), Heat3, ())])
def test_iterate_in_one_and_three_dimensions(shape, cls, args):
    k = cls()
    u = RNG.random(shape)
    np.testing.assert_array_equal(k.iterate(u, *args, steps=9), loop(k, u, *args, steps=9))


def test_integers_are_exact_and_a_constant_input_is_read_every_step():
    life = Life()
    cells = (RNG.random((120, 130)) < 0.35).astype(np.int64)
    np.testing.assert_array_equal(life.iterate(cells, steps=30), loop(life, cells, steps=30))
    k = Forced()
    u, f = RNG.random((300, 200)), RNG.random((300, 200))
    np.testing.assert_array_equal(k.iterate(u, f, steps=17), loop(k, u, f, steps=17))


def _every_blocked_variant(monkeypatch, k, levels, args, steps, caches=None):
    """Compile the whole space (not a sample) and run each variant against the loop, with
    the machine's caches and spaces, or small tiles: ``caches`` (L1, L2, L3), shallow depths,
    few rows and any amount of halo work."""
    monkeypatch.setattr(temporal, "SAMPLE", 1000)
    if caches is not None:
        monkeypatch.setattr(temporal, "cache_sizes", lambda: caches)
        monkeypatch.setattr(temporal, "DEPTHS", {1: (4, 16), 2: (4, 8, 16), 3: (2, 4)})
        monkeypatch.setattr(temporal, "ROWS", {2: (1, 4), 3: (1, 4)})
        monkeypatch.setattr(temporal, "MAX_WORK", 100.0)
    iterate_module._JITS.clear()  # a new iteration specializer, with the whole space
    state = levels if len(levels) > 1 else levels[0]
    want = wave_loop(k, levels, args, steps)
    got = k.iterate(state, *args, steps=steps)
    for g, w in zip(got if len(levels) > 1 else (got,), want):
        np.testing.assert_array_equal(g, w)
    jit = iterate_module.iteration_jit(k, state, *args)
    assert jit is not None, "not blocked"
    u = levels[0]
    K = len(levels)

    def full():
        older = [np.zeros_like(u) for _ in range(K - 1)]
        return older, (*levels, *args, np.zeros_like(u), *older,
                       *(np.zeros_like(u) for _ in range(K)), steps)

    s = jit.specialization(*full()[1])
    # its size class; jammed sweeps in two forms where they are vectors (tested in
    # test_iterate_vectors)
    east = any(name.endswith("_e") for name in s.entries)
    points = temporal.blocking_points(u.ndim, u.itemsize, u.shape, 1, K, east=east)
    assert points, "no blocked variant fits"
    assert len(s.entries) == 1 + sum(
        len(Space("", p, None, where=temporal.point_exists).points("", whole=True))
        for p in points.values())
    assert not s.check_failures
    for name in s.entries:
        older, call = full()
        np.testing.assert_array_equal(jit.run_variant(name, *call), want[0], err_msg=name)
        for g, w in zip(older, want[1:]):
            np.testing.assert_array_equal(g, w, err_msg=name)
    return s


def wave_loop(k, levels, args, steps):
    """The loop ``state = (K(*state, *args), *state[:-1])``, its last state."""
    state = tuple(levels)
    for _ in range(steps):
        state = (k(*state, *args), *state[:-1])
    return state


def test_every_blocked_variant_2d_across_tiles_and_passes(monkeypatch):
    # Larger than the widest tiles, steps not a multiple of any depth.
    _every_blocked_variant(monkeypatch, Heat(), (RNG.random((1100, 2200)),), (0.1,), 21)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_blocked_variant_on_small_caches_many_tiles(monkeypatch, dtype):
    # Small caches make small tiles: many of them, at every edge, over several passes.
    u = RNG.random((300, 333)).astype(dtype)
    s = _every_blocked_variant(monkeypatch, Forced(), (u,), (RNG.random(u.shape).astype(dtype),),
                               37, caches=(4 << 10, 64 << 10, 0))
    assert len(s.entries) >= 3


def test_every_blocked_variant_3d_across_tiles_and_passes(monkeypatch):
    _every_blocked_variant(monkeypatch, Heat3(), (RNG.random((70, 140, 150)),), (), 11)


def test_every_blocked_variant_3d_on_small_caches(monkeypatch):
    _every_blocked_variant(monkeypatch, Heat3(), (RNG.random((40, 45, 50)),), (), 13,
                           caches=(8 << 10, 128 << 10, 0))


def test_every_blocked_variant_3d_with_square_tiles_across_long_rows(monkeypatch):
    # Rows too long for rings that span them: tiles square across the contiguous axis
    # too, several of them along it.
    monkeypatch.setattr(temporal, "cache_sizes", lambda: (8 << 10, 128 << 10, 0))
    u = RNG.random((30, 40, 600))
    points = temporal.blocking_points(3, 8, u.shape, 1)
    assert points and not any("span" in p for p in points.values())
    assert max(w for p in points.values() for w in p["width"]) < 300
    _every_blocked_variant(monkeypatch, Heat3(), (u,), (), 9, caches=(8 << 10, 128 << 10, 0))


@pytest.mark.parametrize("steps", [2, 3, 17, 40])
def test_every_blocked_variant_of_a_two_level_state(monkeypatch, steps):
    u = RNG.random((150, 170))
    _every_blocked_variant(monkeypatch, Wave(), (u, RNG.random(u.shape)), (0.2,), steps,
                           caches=(4 << 10, 64 << 10, 0))


def test_every_blocked_variant_of_a_two_level_state_3d(monkeypatch):
    u = RNG.random((40, 45, 50))
    _every_blocked_variant(monkeypatch, Wave3(), (u, RNG.random(u.shape)), (0.1,), 9,
                           caches=(8 << 10, 128 << 10, 0))


def test_a_two_level_state_one_step_and_three_levels():
    k = Wave()
    u, v = RNG.random((60, 70)), RNG.random((60, 70))
    got = k.iterate((u, v), 0.2, steps=1)  # fewer steps than levels: step by step
    want = wave_loop(k, (u, v), (0.2,), 1)
    assert got[1] is u
    np.testing.assert_array_equal(got[0], want[0])
    k3 = ThreeLevels()
    w = RNG.random((60, 70))
    for steps in (3, 11):
        got = k3.iterate((u, v, w), steps=steps)
        for g, x in zip(got, wave_loop(k3, (u, v, w), (), steps)):
            np.testing.assert_array_equal(g, x)
    assert iterate_module.iteration_jit(k3, (u, v, w)) is not None


def test_a_grid_state_keeps_its_geometry_and_comes_back_a_grid():
    k = Heat3()
    g = StencilGrid((30, 31, 32))
    g.data = RNG.random((30, 31, 32))
    g.ghost_depth = 2
    g.neighbor_definition = [[(0, 0, 0)], [(a, b, c) for a in (-2, 0, 2) for b in (-2, 0, 2)
                                           for c in (-2, 0, 2) if (a, b, c) != (0, 0, 0)]]
    got = k.iterate(g, steps=7)
    assert isinstance(got, StencilGrid) and got.ghost_depth == 2
    assert got.neighbor_definition == g.neighbor_definition
    want = g
    for _ in range(7):
        out = StencilGrid.from_array(np.zeros(g.shape))
        out.ghost_depth, out.neighbor_definition = g.ghost_depth, g.neighbor_definition
        k.kernel(want, out)
        want = out
    np.testing.assert_array_equal(got.data, want.data)


def test_two_level_state_rotates_newest_first():
    k = Wave()
    u = np.zeros((150, 160))
    u[70:80, 75:85] = 1.0
    u_prev = u.copy()
    got = k.iterate((u, u_prev), 0.2, steps=40)
    want = (u, u_prev)
    for _ in range(40):
        want = (k(want[0], want[1], 0.2), want[0])
    assert isinstance(got, tuple) and len(got) == 2
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
    assert got[0] is not u and got[1] is not u  # the caller's arrays are never written
    assert np.array_equal(u_prev[70:80, 75:85], np.ones((10, 10)))


def test_a_kernel_that_reads_its_output_iterates_step_by_step():
    k = Accumulate()
    u = RNG.random((64, 80))
    np.testing.assert_array_equal(k.iterate(u, steps=6), loop(k, u, steps=6))


def test_zero_steps_is_the_state_itself():
    u = RNG.random((10, 10))
    assert Heat().iterate(u, 0.1, steps=0) is u


@pytest.mark.parametrize("steps,error,match", [(-1, ValueError, "steps=-1"),
                                               (1.5, TypeError, "steps must be an int"),
                                               (True, TypeError, "steps must be an int")])
def test_bad_steps(steps, error, match):
    with pytest.raises(error, match=match):
        Heat().iterate(np.zeros((8, 8)), 0.1, steps=steps)


def test_bad_state():
    with pytest.raises(TypeError, match="state: expected a numpy array or a StencilGrid"):
        Heat().iterate([[1.0, 2.0]], 0.1, steps=2)
    with pytest.raises(ValueError, match=r"state\[1\] has shape"):
        Wave().iterate((np.zeros((8, 8)), np.zeros((8, 9))), 0.1, steps=2)
    with pytest.raises(TypeError, match="dtype"):  # the kernel's own check names it
        Heat().iterate(np.zeros((8, 8), dtype=complex), 0.1, steps=2)


def test_a_failed_blocked_specialization_warns_once_and_steps(monkeypatch, fresh_cache):
    def broken(self, prepared):
        raise RuntimeError("planning bug")

    monkeypatch.setattr(temporal.IterateSpecializer, "plan", broken)
    k = Forced()  # a class of its own: no iterate specialization cached yet
    u, f = RNG.random((50, 60)), RNG.random((50, 60))
    iterate_module._JITS.clear()
    with pytest.warns(AspFallbackWarning, match="iterating step by step"):
        got = k.iterate(u, f, steps=5)
    np.testing.assert_array_equal(got, loop(k, u, f, steps=5))


def test_tune_show_says_why_a_kernel_is_not_blocked(fresh_cache):
    k = Heat(boundary="wrap")
    k.iterate(RNG.random((40, 40)), 0.1, steps=3)
    out = subprocess.run([sys.executable, "-m", "asp.cli", "tune", "show", "iterate"],
                         capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert out.returncode == 0, out.stderr
    assert "iterates step by step, not blocked in time: boundary='wrap'" in out.stdout


def test_rings_may_fill_a_threads_part_of_l3(monkeypatch):
    # A 256^2 plane is 512 KiB: an L2 of 512 KiB holds depth 2 and narrow tiles only; a
    # thread's part of a 32 MiB L3 holds deeper passes and whole-width tiles.  2-D
    # tiles as wide as their rings fit in L2 without an L3, up to the whole grid's width
    # with one.
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(temporal, "cache_sizes", lambda: (32 << 10, 512 << 10, 0))
    small = temporal.blocking_points(3, 8, (254,) * 3, 1)
    flat = temporal.blocking_points(2, 8, (4094,) * 2, 1)
    assert set(small) == {2} and max(small[2]["width"]) < 128
    assert flat[16]["width"] == (256,) and flat[16]["jam"] == (2, 4)
    monkeypatch.setattr(temporal, "cache_sizes", lambda: (32 << 10, 512 << 10, 32 << 20))
    big = temporal.blocking_points(3, 8, (254,) * 3, 1)
    assert set(big) == {2, 4, 8} and 256 in big[4]["width"]  # the class's: whole planes
    # 3-D tiles span the rows whole (256) where their rings fit so: at depth 8, with
    # 64 rows of a plane a tile (rings of 128 rows would not fit).
    assert all(p["span"] == (256,) for p in big.values()) and big[8]["width"] == (64,)
    wide = temporal.blocking_points(2, 8, (4094,) * 2, 1)
    # The two widest whose rings fit in L3, and the widest whose rings fit in L2 (with
    # pairs of rows: in fours no width fits 384 KiB at these depths).
    assert wide[16]["width"] == (256, 2048, 4096) and wide[32]["width"] == (256, 2048, 4096)
    # 8190 wide, a ring of 32 steps no longer fits: the two widest that do.
    assert temporal.blocking_points(2, 8, (8190,) * 2, 1)[32]["width"] == (256, 2048, 4096)
    for dim, space in ((3, big), (2, wide)):  # every kept point's rings fit in a quarter
        for depth, p in space.items():        # of the L3
            for w in p["width"]:
                for jam in p["jam"]:
                    across = (w + 2 * depth) ** (dim - 2) * (p.get("span", (w,))[0] + 2 * depth)
                    rings = (depth - 1) * ring_rows(1, 1, jam) * across
                    assert rings * 8 <= 0.25 * (32 << 20)


def test_a_space_keeps_tiles_whose_rings_fit_in_l2_besides_those_for_l3(monkeypatch):
    # An Intel Xeon VM reports its host's 300 MiB of L3 beside 2 MiB of L2 a core: every
    # width fits a thread's part of that L3, but rings in L2 ran faster there (4096^2
    # heat at depth 32, 512 wide: 3.0-3.2 ms a step against 3.7-3.8 at 2048, 5.6-6.6 at
    # 4096).  The space keeps the two widest for L3 and the widest for L2; the tuner
    # picks.
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(temporal, "cache_sizes", lambda: (48 << 10, 2 << 20, 300 << 20))
    space = temporal.blocking_points(2, 8, (4094,) * 2, 1)
    assert space[16]["width"] == (1024, 2048, 4096)
    assert space[32]["width"] == (512, 2048, 4096)
    for depth, p in space.items():  # the L2-sized one: every jam's rings in 3/4 of L2
        for w in p["width"][:1]:
            for jam in p["jam"]:
                rings = (depth - 1) * ring_rows(1, 1, jam) * (w + 2 * depth) * 8
                assert rings <= 0.75 * (2 << 20), (depth, w, jam)
    # Without an L3 the two kinds are one: the widest tiles that fit in L2.
    monkeypatch.setattr(temporal, "cache_sizes", lambda: (48 << 10, 2 << 20, 0))
    assert temporal.blocking_points(2, 8, (4094,) * 2, 1)[32]["width"] == (256, 512)


def test_a_jam_is_left_out_where_a_larger_one_has_rings_as_small(monkeypatch):
    # Ring rows are a power of two: in 3-D with reach 1 one plane at a time and planes
    # in pairs both need rings of 4 planes, so pairs (which read less) are the only
    # jam; with two state levels pairs need 8 and both stay.  2-D: rows one at a time
    # and in pairs need rings of 4 rows, so pairs stay, and rows in fours (8) too; with
    # two state levels pairs need 8 rows, as fours do, and one at a time (4) stays.
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(temporal, "cache_sizes", lambda: (32 << 10, 512 << 10, 32 << 20))
    assert ring_rows(1, 1, 1) == ring_rows(1, 1, 2) == 4 and ring_rows(2, 1, 2) == 8
    one = temporal.blocking_points(3, 8, (254,) * 3, 1)
    assert one and all(p["jam"] == (2,) for p in one.values())
    two = temporal.blocking_points(3, 8, (254,) * 3, 1, levels=2)
    assert any(p["jam"] == (1, 2) for p in two.values())
    flat = temporal.blocking_points(2, 8, (4094,) * 2, 1)
    assert flat[16]["jam"] == (2, 4)
    flat2 = temporal.blocking_points(2, 8, (4094,) * 2, 1, levels=2)
    assert flat2[16]["jam"] == (1, 4)


def test_ring_rows_are_aligned_and_their_peel_loops_stay_scalar(fresh_cache, monkeypatch):
    # Rings start on cache lines; each level's vectorized loop begins at an aligned
    # point after a peel loop that is not marked simd (results: the every-variant tests).
    # A fresh cache: a specialization loaded from its record keeps no source.
    monkeypatch.setattr(temporal, "SAMPLE", 1000)
    iterate_module._JITS.clear()
    u = RNG.random((200, 300))
    k = Heat()
    np.testing.assert_array_equal(k.iterate(u, 0.1, steps=19), loop(k, u, 0.1, steps=19))
    jit = iterate_module.iteration_jit(k, u, 0.1)
    s = jit.specialization(u, 0.1, np.zeros_like(u), np.zeros_like(u), 19)
    src = s.source
    # One blocked function per jam; every point of the space is an entry that calls one
    # with its depth and tile sizes.
    blocked = re.findall(r"^int (stencil_iter_j\d+e?)\(", src, re.M)
    assert blocked and src.count("aligned_alloc(64, ") == len(blocked)
    calls = re.findall(r"return (stencil_iter_j\d+e?)\(.*INT64_C\((\d+)\), INT64_C\((\d+)\), "
                       r"INT64_C\((\d+)\)\);", src)
    assert len(calls) == len(s.entries) - 1 and {c[0] for c in calls} == set(blocked)
    for name in s.entries:
        if name != "steps":
            m = re.fullmatch(r"blk_d(\d+)_r(\d+)_w(\d+)(?:_j(\d+))?(_e)?", name)
            assert m, name
            jam, east = m.group(4) or "1", "e" if m.group(5) else ""
            assert (f"stencil_iter_j{jam}{east}", *m.group(1, 2, 3)) in calls, name
    peel = re.findall(r"(#pragma omp simd\s*)?for \(int64_t asp_i1 = asp_f1; asp_i1 < asp_al;", src)
    assert peel and not any(pragma for pragma in peel)
    # gcc's loop vectorizer is off in the blocked functions (it halved their build), so
    # every sweep of a row, the rows a jam does one by one and jam 1's included, is
    # explicit vectors from the aligned point on: no scalar loop starts there.
    attributed = re.findall(r'__attribute__\(\(optimize\("no-tree-loop-vectorize"\)\)\)\n'
                            r"#endif\nint (stencil_iter_j\d+e?)\(", src)
    assert sorted(attributed) == sorted(blocked)
    assert "asp_vs = asp_al > asp_f1 ? asp_al : asp_f1" in src
    assert "asp_i1 = asp_al > asp_f1 ? asp_al : asp_f1" not in src


def test_release_memory_lets_the_scratch_grids_go():
    # iterate keeps its scratch grids for the next call of the same shape; the memory
    # release users call frees them too (and the next call makes new ones).
    from asp.runtime import release_memory

    u = RNG.random((130, 150))
    k = Heat()
    want = loop(k, u, 0.1, steps=21)
    np.testing.assert_array_equal(k.iterate(u, 0.1, steps=21), want)
    assert iterate_module._SCRATCH[(u.shape, u.dtype.str)]
    kept = [a for pool in iterate_module._SCRATCH.values() for a in pool]
    assert release_memory() >= sum(a.nbytes for a in kept)
    assert not any(iterate_module._SCRATCH.values())
    np.testing.assert_array_equal(k.iterate(u, 0.1, steps=21), want)


def test_scratch_grids_survive_calls_of_another_shape():
    # A Dask worker's deep rounds alternate a large block and thin strips: the strip's
    # call must not drop the block's scratch grids (the block's two-pass variants then
    # faulted in fresh pages every round, 4-6x slower), up to SCRATCH_SHAPES shapes.
    from asp.runtime import release_memory

    release_memory()
    k = Heat()
    big, strip = RNG.random((130, 150)), RNG.random((12, 150))
    want_big, want_strip = loop(k, big, 0.1, steps=21), loop(k, strip, 0.1, steps=21)
    np.testing.assert_array_equal(k.iterate(big, 0.1, steps=21), want_big)
    kept = {id(a) for a in iterate_module._SCRATCH[(big.shape, big.dtype.str)]}
    assert kept
    for _ in range(3):
        np.testing.assert_array_equal(k.iterate(strip, 0.1, steps=21), want_strip)
        assert {id(a) for a in iterate_module._SCRATCH[(big.shape, big.dtype.str)]} == kept
        np.testing.assert_array_equal(k.iterate(big, 0.1, steps=21), want_big)
        assert {id(a) for a in iterate_module._SCRATCH[(big.shape, big.dtype.str)]} == kept
    # More shapes than the pool keeps: the least recently used go first.
    for rows in range(20, 20 + iterate_module.SCRATCH_SHAPES):
        k.iterate(RNG.random((rows, 150)), 0.1, steps=21)
    assert len(iterate_module._SCRATCH) == iterate_module.SCRATCH_SHAPES
    assert (big.shape, big.dtype.str) not in iterate_module._SCRATCH
    release_memory()


def test_on_release_memory_takes_a_callable():
    from asp.runtime import on_release_memory

    with pytest.raises(TypeError, match="drop must be a callable"):
        on_release_memory(42)


def test_each_size_class_gets_its_own_tiles(monkeypatch):
    """The blocked variants are made for the grid's size class (extents rounded up to
    powers of two), not for whichever grid came first: a small grid first, then one of
    a larger class gets tiles as wide as its own class allows (before, it reused the
    small grid's), and a grid of the same class shares the variants.  Every result is
    still the step-by-step loop's."""
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setattr(temporal, "cache_sizes", lambda: (32 << 10, 512 << 10, 32 << 20))
    monkeypatch.setattr(temporal, "SAMPLE", SHIPPED_SAMPLE)  # every width: compared below
    k = Heat()

    def widths(u):
        jit = iterate_module.iteration_jit(k, u, 0.1)
        cls = "x".join(map(str, temporal.size_class(u.shape)))
        (sig,) = [s for s in jit.specializations if f"@{cls}|" in s]
        spec = jit.specializations[sig]
        return sig, {int(m.group(1)) for v in spec.entries
                     if (m := re.search(r"_w(\d+)", v))}

    small = RNG.random((70, 90))   # class 128 x 128
    large = RNG.random((600, 1000))  # class 1024 x 1024
    same = RNG.random((530, 900))    # the same class
    for u in (small, large, same):
        want = u
        for _ in range(19):
            want = k(want, 0.1)
        np.testing.assert_array_equal(k.iterate(u, 0.1, steps=19), want)
    sig_small, w_small = widths(small)
    sig_large, w_large = widths(large)
    assert sig_small != sig_large
    assert max(w_small) <= 128 and max(w_large) > 128, (w_small, w_large)
    assert w_large == set(temporal.blocking_points(2, 8, large.shape, 1)[16]["width"]) \
        | set(temporal.blocking_points(2, 8, large.shape, 1).get(32, {}).get("width", ()))
    assert temporal.size_class(same.shape) == temporal.size_class(large.shape)
    assert len([s for s in iterate_module.iteration_jit(k, large, 0.1).specializations
                if "@1024x1024|" in s]) == 1



class Rooted(StencilKernel):
    """Its Python raises on the random check grids (uniform in (0.05, 1)): a square root
    of ``f - 0.5``, a source term the caller keeps at 0.5 or more."""

    def kernel(self, u, f, out):
        for x in out.interior_points():
            acc = math.sqrt(f[x] - 0.5) - 4 * u[x]
            for y in u.neighbors(x, 1):
                acc += u[y]
            out[x] = u[x] + 0.2 * acc


def test_a_kernel_whose_sweeps_are_not_explicit_vectors_keeps_gccs_vectorizer(fresh_cache):
    # Its jammed sweeps (a call: not plain arithmetic) are gcc's own vectors: its blocked
    # functions keep the loop vectorizer that the explicit-vector kernels' units go without.
    iterate_module._JITS.clear()
    u, f = RNG.random((200, 300)), np.full((200, 300), 0.75)
    k = Rooted()
    np.testing.assert_array_equal(k.iterate(u, f, steps=19), loop(k, u, f, steps=19))
    jit = iterate_module.iteration_jit(k, u, f)
    src = jit.specialization(u, f, np.zeros_like(u), np.zeros_like(u), 19).source
    assert re.search(r"^int stencil_iter_j\d+e?\(", src, re.M)
    assert "no-tree-loop-vectorize" not in src


def test_a_kernel_whose_python_raises_on_random_grids_is_blocked(monkeypatch):
    """Its iteration is checked on the corner of the call's own grids, as its single step
    is, and blocked (it iterated step by step, with a warning, before); every variant of
    it is the loop bit for bit."""
    u = RNG.random((130, 170))
    f = 0.5 + RNG.random(u.shape)
    k = Rooted(boundary="interior")
    with warnings.catch_warnings():
        warnings.simplefilter("error", AspFallbackWarning)
        np.testing.assert_array_equal(k.iterate(u, f, steps=19), loop(k, u, f, steps=19))
    s = _every_blocked_variant(monkeypatch, k, (u,), (f,), 19)
    assert any(name.startswith("blk_") for name in s.entries)
