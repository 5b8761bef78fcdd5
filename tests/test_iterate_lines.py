"""``iterate`` of 1-D kernels, blocked in time by trapezoid tiles
(:mod:`specializers.stencil.lines`): every variant against the step-by-step loop, bit
for bit, across tiles, passes, dtypes, state levels and reaches, in the parallel branch
(the suite's parallel threshold is 0; two OpenMP threads)."""
from __future__ import annotations

import numpy as np
import pytest

from specializers.stencil import StencilGrid, StencilKernel, temporal
from specializers.stencil import iterate as iterate_module
from tests.test_iterate import _every_blocked_variant, loop

RNG = np.random.default_rng(20261204)
SMALL = (4 << 10, 64 << 10, 0)  # caches that make short tiles: many, at both edges


@pytest.fixture(autouse=True)
def _two_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")


class Heat1(StencilKernel):
    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -2.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * lap


class Wave1(StencilKernel):
    def kernel(self, u, u_prev, c2, out):
        for x in out.interior_points():
            lap = -2.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = 2.0 * u[x] - u_prev[x] + c2 * lap


class Rule150(StencilKernel):
    """An integer automaton: each cell the XOR of itself and its two neighbours.  (A
    kernel whose body branches, such as ``1 if n == 1 else 0``, steps: its lowered body
    is not one assignment of the output.)"""

    def kernel(self, u, out):
        for x in out.interior_points():
            acc = u[x]
            for y in u.neighbors(x, 1):
                acc ^= u[y]
            out[x] = acc


class Wide(StencilKernel):
    """Reach 2 (the grid's neighbourhood 1 is +-1 and +-2) and a source term."""

    def kernel(self, u, f, out):
        for x in out.interior_points():
            acc = f[x] - 4.0 * u[x]
            for y in u.neighbors(x, 1):
                acc += u[y]
            out[x] = u[x] + 0.1 * acc


def test_a_1d_kernel_is_blocked_in_time():
    u = RNG.random(5001)
    got = Heat1().iterate(u, 0.2, steps=37)
    np.testing.assert_array_equal(got, loop(Heat1(), u, 0.2, steps=37))
    jit = iterate_module.iteration_jit(Heat1(), u, 0.2)
    assert jit is not None
    assert temporal.blocking_points(1, 8, u.shape, 1)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_blocked_variant_1d_across_tiles_and_passes(monkeypatch, dtype):
    # An odd length, steps not a multiple of any depth (4, 16): several passes.
    u = RNG.random(100_003).astype(dtype)
    s = _every_blocked_variant(monkeypatch, Heat1(), (u,), (dtype(0.2),), 37, caches=SMALL)
    assert len(s.entries) >= 3


def test_every_blocked_variant_1d_with_the_machines_caches(monkeypatch):
    _every_blocked_variant(monkeypatch, Heat1(), (RNG.random(300_001),), (0.1,), 150)


def test_every_blocked_variant_1d_integers(monkeypatch):
    cells = (RNG.random(20_011) < 0.5).astype(np.int64)
    _every_blocked_variant(monkeypatch, Rule150(), (cells,), (), 45, caches=SMALL)


@pytest.mark.parametrize("steps", [2, 3, 17, 40])
def test_every_blocked_variant_1d_two_level_state(monkeypatch, steps):
    u = RNG.random(9_001)
    _every_blocked_variant(monkeypatch, Wave1(), (u, RNG.random(u.shape)), (0.3,), steps,
                           caches=SMALL)


def test_every_blocked_variant_1d_reach_two(monkeypatch):
    monkeypatch.setattr(temporal, "SAMPLE", 1000)
    monkeypatch.setattr(temporal, "cache_sizes", lambda: SMALL)
    monkeypatch.setattr(temporal, "DEPTHS", {1: (4, 16), 2: (16,), 3: (2,)})
    monkeypatch.setattr(temporal, "MAX_WORK", 100.0)
    iterate_module._JITS.clear()
    n = 7_003
    g = StencilGrid((n,))
    g.data[...] = RNG.random(n)
    g.ghost_depth = 2
    g.neighbor_definition = [[(0,)], [(-2,), (-1,), (1,), (2,)]]
    f = RNG.random(n)
    k = Wide()

    want = g  # the loop, each output a grid with the state's geometry
    for _ in range(23):
        out = StencilGrid.from_array(np.zeros(n))
        out.ghost_depth, out.neighbor_definition = g.ghost_depth, g.neighbor_definition
        k.kernel(want, f, out)
        want = out
    got = k.iterate(g, f, steps=23)
    np.testing.assert_array_equal(got.data, want.data)
    jit = iterate_module.iteration_jit(k, g, f)
    assert jit is not None, "not blocked"
    call = (g.data, f, np.zeros(n), np.zeros(n), 23)
    s = jit.specialization(*call)
    blocked = [v for v in s.entries if v.startswith("blk_")]
    points = temporal.blocking_points(1, 8, (n,), 2)
    assert len(blocked) == sum(len(p["width"]) for p in points.values()) >= 2
    for name in s.entries:
        got = jit.run_variant(name, g.data, f, np.zeros(n), np.zeros(n), 23)
        np.testing.assert_array_equal(got, want.data, err_msg=name)


def test_a_short_grid_iterates_step_by_step_and_agrees():
    # Too short for any tile: the plain sweep, same results.
    u = RNG.random(40)
    assert temporal.blocking_points(1, 8, u.shape, 1) == {}
    np.testing.assert_array_equal(Heat1().iterate(u, 0.2, steps=9),
                                  loop(Heat1(), u, 0.2, steps=9))
