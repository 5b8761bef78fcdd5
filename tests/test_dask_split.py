"""The split method of specializers.stencil.dask, in process (Dask's synchronous scheduler):
random shapes, chunkings, ghost depths and boundary modes equal the direct call bit for bit,
and only thin halo slices travel between blocks."""
from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

da = pytest.importorskip("dask.array")

from specializers.stencil import MODES, StencilGrid, StencilKernel  # noqa: E402
from specializers.stencil.dask import apply  # noqa: E402
from specializers.stencil.dask.partition import block_plan  # noqa: E402
from specializers.stencil.dask.split import Take  # noqa: E402

# As in test_dask_stencil: no FMA contraction, one variant on both sides.
CFLAGS = "-O3 -march=native -fopenmp -ffp-contract=off"


class Diffuse(StencilKernel):
    """Reads its neighbours and itself; writes every point once."""

    def kernel(self, u, r, out):
        for x in out.interior_points():
            acc = -2.0 * u[x]
            for y in u.neighbors(x, 1):
                acc += 0.5 * u[y]
            out[x] = u[x] + r * acc


class Reach2(StencilKernel):
    """Neighbourhood 1 reaches two points along the axes (ghost depth 2)."""

    def kernel(self, u, out):
        for x in out.interior_points():
            out[x] = 0.1 * u[x]
            for y in u.neighbors(x, 1):
                out[x] += 0.3 * u[y] - 0.01 * u[x]


class TwoFields(StencilKernel):
    """Two grids split into blocks, a lookup table and a number whole to each block."""

    def kernel(self, u, c, table, s, out):
        for x in out.interior_points():
            out[x] = table[int(c[x] * 3) % 4] * s
            for y in u.neighbors(x, 1):
                out[x] += c[y] * u[y]


@pytest.fixture(scope="module", autouse=True)
def pinned_flags():
    saved = {k: os.environ.get(k) for k in ("ASP_TUNE", "ASP_CFLAGS")}
    os.environ.update(ASP_TUNE="off", ASP_CFLAGS=CFLAGS)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def reach2_neighbors(ndim: int) -> list:
    far = []
    for a in range(ndim):
        for step in (-2, -1, 1, 2):
            off = [0] * ndim
            off[a] = step
            far.append(tuple(off))
    return [[(0,) * ndim], far]


def _equal(got: np.ndarray, want: np.ndarray):
    assert got.shape == want.shape and got.dtype == want.dtype
    assert np.array_equal(got, want), f"max diff {np.abs(got - want).max()}"


@st.composite
def layouts(draw, depth: int):
    ndim = draw(st.integers(1, 3))
    shape, chunks = [], []
    for _ in range(ndim):
        n = draw(st.integers(depth + 1, 13 if ndim < 3 else 8))
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=3)))
        edges = [0, *cuts, n]
        shape.append(n)
        chunks.append(tuple(b - a for a, b in zip(edges, edges[1:])))
    return tuple(shape), tuple(chunks)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=layouts(1), mode=st.sampled_from(MODES), seed=st.integers(0, 2**16))
def test_split_equals_direct_call(layout, mode, seed):
    shape, chunks = layout
    a = np.random.default_rng(seed).random(shape)
    k = Diffuse(boundary=mode, cval=0.25)
    got = apply(k, da.from_array(a, chunks=chunks), 0.3).compute(scheduler="sync")
    _equal(got, k(a, 0.3))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layout=layouts(2), mode=st.sampled_from(MODES), seed=st.integers(0, 2**16))
def test_split_with_ghost_depth_two(layout, mode, seed):
    shape, chunks = layout
    a = np.random.default_rng(seed).random(shape)
    nd = reach2_neighbors(len(shape))
    g = StencilGrid(list(shape))
    g.data = a
    g.neighbor_definition = nd
    g.ghost_depth = 2
    k = Reach2(boundary=mode, cval=-1.5)
    got = apply(k, da.from_array(a, chunks=chunks), ghost_depth=2, neighbor_definition=nd)
    _equal(got.compute(scheduler="sync"), k(g))


@pytest.mark.parametrize("mode", MODES)
def test_two_fields_table_and_number(mode, rng):
    u, c, table = rng.random((15, 11)), rng.random((15, 11)), rng.random(4)
    k = TwoFields(boundary=mode, cval=2.0)
    got = apply(k, da.from_array(u, chunks=(4, 6)), da.from_array(c, chunks=(7, 3)), table, 1.5)
    _equal(got.compute(scheduler="sync"), k(u, c, table, 1.5))


@pytest.mark.parametrize("mode", ["constant", "wrap", "interior"])
def test_float32_grids(mode, rng):
    a = rng.random((12, 10)).astype(np.float32)
    k = Diffuse(boundary=mode, cval=0.7)  # 0.7 is not exact in float32: both sides round it
    got = apply(k, da.from_array(a, chunks=(5, 4)), 0.25).compute(scheduler="sync")
    _equal(got, k(a, 0.25))


def test_depth_beyond_the_ghost_keeps_the_interior_border(rng):
    """'interior' with a halo deeper than the ghost depth: the domain's border of the
    ghost depth stays zero and the points just inside it are computed."""
    a = rng.random((16, 14))
    k = Diffuse()
    got = apply(k, da.from_array(a, chunks=(5, 5)), 0.3, depth=3).compute(scheduler="sync")
    _equal(got, k(a, 0.3))
    assert not got[0].any() and got[1, 1:-1].all()


def test_both_methods_agree_and_bad_method(rng):
    a = rng.random((20, 18))
    k = Diffuse(boundary="mirror")
    x = da.from_array(a, chunks=(6, 7))
    split = apply(k, x, 0.1).compute(scheduler="sync")
    _equal(split, apply(k, x, 0.1, method="overlap").compute(scheduler="sync"))
    with pytest.raises(ValueError, match="method='halo'"):
        apply(k, x, 0.1, method="halo")


def test_mirror_needs_one_point_more_than_the_halo():
    k = Diffuse(boundary="mirror")
    with pytest.raises(ValueError, match="fewer than the halo depth 1 plus"):
        apply(k, da.ones((1, 8), chunks=(1, 4)), 0.1)


@pytest.mark.parametrize("mode", MODES)
def test_only_thin_slices_travel(mode):
    """What a block receives from its neighbours is at most the halo's depth across,
    even when one neighbour is both the previous and the next block ('wrap' on two
    chunks): never a whole block."""
    bounds = ((0, 32, 64), (0, 40, 80))
    g = 1
    for index in np.ndindex(2, 2):
        plan = block_plan(bounds, g, mode, 1, index)
        for _, box in plan.halos:
            sizes = [s.stop - s.start for s in box]
            assert min(sizes) <= g, (index, box)
            assert int(np.prod(sizes)) <= g * (40 + 2 * g), (index, box)
        total = sum(int(np.prod([s.stop - s.start for s in box])) for _, box in plan.halos)
        # Two faces, a corner... of a 32 x 40 block: far below its 1280 points.
        assert total <= 2 * (32 + 40) + 4
    first, last = Take(((slice(1, 2), slice(0, 3)), (slice(2, 3), slice(3, 4))))(
        np.arange(12).reshape(3, 4))
    assert np.array_equal(first, [[4, 5, 6]]) and np.array_equal(last, [[11]])
    assert first.flags.owndata and first.flags.c_contiguous  # a copy, not the block


def test_halo_is_remembered_per_class_options_and_types():
    """apply() asks for the halo every step: the answer is cached, and anything the
    halo depends on (boundary mode, dtype, rank, geometry) is part of the key."""
    from specializers.stencil.dask import halo
    from specializers.stencil.dask.halos import HALOS

    HALOS.clear()
    x2 = da.zeros((8, 8), chunks=4)
    assert halo(Diffuse(boundary="wrap"), x2, 0.1) == (1, 1)
    assert len(HALOS) == 1
    assert halo(Diffuse(boundary="wrap"), x2, 0.2) == (1, 1)  # same class, options, types
    assert len(HALOS) == 1
    assert halo(Diffuse(boundary="interior"), x2, 0.1) == (1, 1)
    assert halo(Diffuse(boundary="wrap"), x2.astype(np.float32), 0.1) == (1, 1)
    assert halo(Diffuse(boundary="wrap"), da.zeros((8, 8, 8), chunks=4), 0.1) == (1, 1, 1)
    assert halo(Diffuse(boundary="interior"), x2, 0.1, geometry=(2, (((0, 0),),))) == (2, 2)
    assert len(HALOS) == 5


def test_a_block_keeps_its_cut_slices_until_its_shell_is_done():
    """Every halo slice a block cuts for a neighbour is also named by the block's own
    last task, so the scheduler releases it after that task rather than just before
    it (a release message then would hold the shell back by Dask's 5 ms batching)."""
    from dask.core import get_dependencies

    x = da.zeros((16, 12), chunks=(8, 6))
    out = apply(Diffuse(boundary="wrap"), x, 0.1)
    g = dict(out.__dask_graph__())
    takes = {k: get_dependencies(g, k) for k in g
             if isinstance(k, tuple) and k[0].endswith("-halo0")}
    assert len(takes) == 4 * 3  # each of 4 blocks gets slices from its 3 other blocks
    for index in np.ndindex(2, 2):
        key = (out.name,) + index
        cut = {k for k, deps in takes.items() if deps == {(x.name,) + index}}
        assert len(cut) == 3
        assert cut <= get_dependencies(g, key)
