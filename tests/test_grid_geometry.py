"""A grid's geometry (ghost depth, neighbourhoods) follows the values it belongs to.

* ``K(g)`` for a grid with a geometry of its own returns a :class:`GridArray`, an
  array that remembers it: the loop ``g = K(g)`` walks every step as the first, which is
  what ``K.iterate`` does (before, steps after the first silently walked the array with
  the defaults);
* changing a grid's neighbourhoods between two calls of the same ghost depth gives the
  code for the new ones (before, the remembered call path served the old code);
* a GridArray never reaches the default-geometry code through the hot call path, and an
  output's border is zeroed as deep as its ghost depth in reused memory;
* the blocked iteration's scratch grids, reused after a kernel of a shallower ghost,
  are zero on the deeper border (before, K.iterate silently read the other's values).

Grids are above the reuse size and the parallel threshold (the suite sets it to 0) with
2 threads, so the parallel code and the remembered call path both run.
"""
from __future__ import annotations

import pickle

import numpy as np
import pytest

from asp.runtime import new_output, release_memory
from specializers.stencil import GridArray, StencilGrid, StencilKernel
from specializers.stencil.iterate import iteration_jit

FAR = [[(0, 0)], [(-2, 0), (2, 0), (0, -2), (0, 2)]]
NEAR = [[(0, 0)], [(-1, 0), (1, 0), (0, -1), (0, 1)]]


class Sum(StencilKernel):
    def kernel(self, u, out):
        for x in u.interior_points():
            s = 0.0
            for y in u.neighbors(x, 1):
                s += u[y]
            out[x] = 0.25 * s


def _grid(data, depth=2, nbrs=FAR) -> StencilGrid:
    g = StencilGrid.from_array(data)
    g.ghost_depth = depth
    g.neighbor_definition = [list(lst) for lst in nbrs]
    return g


def _python_steps(data, steps, depth=2, nbrs=FAR):
    """The kernel's Python on a grid of this geometry, ``steps`` times, into zeros."""
    ref = Sum(pure_python=True)
    u = data
    for _ in range(steps):
        out = np.zeros_like(u)
        ref.kernel(_grid(u, depth, nbrs), _grid(out, depth, nbrs))
        u = out
    return u


def _poisoned(shape) -> None:
    """Leave one freed block of this size, full of NaN, as the only one asp reuses."""
    release_memory()
    junk = new_output(shape, np.float64)
    junk.fill(np.nan)
    del junk


@pytest.fixture
def data(rng):
    return rng.random((640, 480))  # 2.4 MB: outputs come from reused memory


def test_the_loop_over_a_grid_keeps_its_geometry(data):
    k = Sum()
    g = _grid(data)
    u = g
    for _ in range(4):
        _poisoned(data.shape)
        u = k(u)
        assert type(u) is GridArray
        assert u.ghost_depth == 2 and u.neighbor_definition == FAR
    want = _python_steps(data, 4)
    np.testing.assert_array_equal(u, want)
    np.testing.assert_array_equal(k.iterate(g, steps=4).data, want)
    # An array state of that geometry iterates as the grid does, and stays one.
    it = k.iterate(k(g), steps=3)
    assert type(it) is GridArray and it.ghost_depth == 2
    np.testing.assert_array_equal(it, want)


def test_new_neighbourhoods_of_the_same_ghost_depth_get_their_own_code(data):
    k = Sum()
    g = _grid(data)
    for _ in range(2):  # the second call runs what the first remembered
        np.testing.assert_array_equal(k(g), _python_steps(data, 1))
    g.neighbor_definition = [list(lst) for lst in NEAR]
    for _ in range(2):
        np.testing.assert_array_equal(k(g), _python_steps(data, 1, nbrs=NEAR))


def test_the_hot_path_leaves_a_grid_array_to_its_geometry(data):
    k = Sum()
    out = np.zeros_like(data)
    for _ in range(3):  # plain arrays: the hot path serves these calls
        k.kernel(data, out)
    np.testing.assert_array_equal(out, _python_steps(data, 1, depth=1, nbrs=NEAR))
    ga = k(_grid(data))
    target = np.zeros_like(data)
    k.kernel(ga, target)
    np.testing.assert_array_equal(target, _python_steps(data, 2))


def test_a_reused_output_is_zeroed_as_deep_as_the_grid_arrays_ghost(data):
    k = Sum()
    ga = k(_grid(data))
    for _ in range(3):
        _poisoned(data.shape)
        got = k(ga)
        assert not np.isnan(got).any()
        assert not got[:2].any() and not got[-2:].any()
        assert not got[:, :2].any() and not got[:, -2:].any()
        ga = got


def test_a_grid_array_is_an_array(data):
    ga = Sum()(_grid(data))
    assert isinstance(ga, np.ndarray)
    assert type(ga.sum()) is np.float64 and type(ga.max()) is np.float64
    assert type(np.asarray(ga)) is np.ndarray
    for derived in (ga * 2.0, ga[1:-1, 1:-1], np.zeros_like(ga), ga.copy()):
        assert type(derived) is GridArray and derived.ghost_depth == 2
        assert derived.neighbor_definition == FAR
    assert ga[3].ghost_depth == 1  # another number of dimensions: the defaults
    back = pickle.loads(pickle.dumps(ga))
    assert back.ghost_depth == 2 and back.neighbor_definition == FAR
    np.testing.assert_array_equal(back, ga)
    g = StencilGrid.from_array(ga)
    assert g.ghost_depth == 2 and g.neighbor_definition == FAR
    assert type(g.data) is np.ndarray and np.shares_memory(g.data, ga)


def test_a_grid_of_the_default_geometry_gives_a_plain_array(data):
    k = Sum()
    u = StencilGrid.from_array(data)
    for _ in range(3):
        u = k(u)
        assert type(u) is np.ndarray
    np.testing.assert_array_equal(u, _python_steps(data, 3, depth=1, nbrs=NEAR))


def test_dask_blocks_of_a_grid_array_are_plain_arrays(data):
    """Blocks reach the kernel as arrays of the defaults unless the call names a geometry
    (the halos are computed for it); a GridArray's own is not taken from its blocks."""
    da = pytest.importorskip("dask.array")
    k = Sum()
    ga = k(_grid(data))
    got = k(da.from_array(ga, chunks=(320, 240))).compute(scheduler="synchronous")
    assert type(got) is np.ndarray
    np.testing.assert_array_equal(got, k(np.asarray(ga)))


class Step3(StencilKernel):
    def kernel(self, u, s, out):
        for x in out.interior_points():
            n = s * u[x]
            for y in u.neighbors(x, 1):
                n += u[y] * u[y]
            out[x] = n


@pytest.mark.parametrize("shape", [(6, 17, 22), (40, 33)])
def test_scratch_reused_from_a_shallower_ghost_reads_a_zero_border(shape, rng):
    """The blocked iteration keeps scratch grids per shape and dtype, zero on the border it
    reads as a pass's input; one used by a ghost of depth 1 holds values in what a ghost
    of depth 2 reads as border (found by the fuzzer: 221 wrong points of 4 steps)."""
    u = rng.uniform(-1, 1, shape)
    k = Step3()
    k.iterate(u, 0.25, steps=4)  # ghost 1: fills the pool for this shape
    nd = len(shape)
    g = StencilGrid.from_array(u.copy())
    g.ghost_depth = 2
    g.neighbor_definition = [[(0,) * nd], [(-2, -1, -2)[:nd], (1,) * nd]]
    loop = g
    for _ in range(4):
        loop = k(loop, 0.25)
    got = k.iterate(g, 0.25, steps=4)
    assert iteration_jit(k, g, 0.25) is not None  # the blocked iteration ran
    np.testing.assert_array_equal(got.data, loop)
