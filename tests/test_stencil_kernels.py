"""Stencil kernels: every compiled variant against the Python kernel, boundary modes
against scipy.ndimage, several inputs, lookup tables, scalar parameters."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import scipy.ndimage as ndi

from specializers.stencil import StencilGrid, StencilKernel, distance
from specializers.stencil.variants import TILE_SAMPLE, jam_sample, variant_specs


class Laplacian(StencilKernel):
    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            for y in in_grid.neighbors(x, 1):
                out_grid[x] += in_grid[y]
            out_grid[x] -= 4 * in_grid[x]


class Weighted(StencilKernel):
    """A correlation: centre weight c, neighbour weight w (scalar parameters)."""

    def kernel(self, u, c, w, out):
        for x in out.interior_points():
            s = c * u[x]
            for y in u.neighbors(x, 1):
                s += w * u[y]
            out[x] = s


def python_result(kernel_cls, args, **opts):
    args = [a.copy() if isinstance(a, np.ndarray) else a for a in args]
    kernel_cls(pure_python=True, **opts).kernel(*args)
    return args[-1]


def check_every_variant(k, args, rtol):
    expected = python_result(type(k), args, boundary=k.boundary, cval=k.cval,
                             should_unroll=k.should_unroll)
    s = k.specialization(*args)
    names = s.variant_names
    # Every variant the specializer offers compiled (none lost to a compiler error), and
    # each passed the core's own check against the Python.
    dim = np.ndim(args[-1])
    streaming = "stream" in names
    plain = [n for n, _ in variant_specs(dim, streaming)]
    searched = names[len(plain):]
    assert names[:len(plain)] == plain, names
    # Then the sampled points of the tile (3-D) and jam (streaming) spaces, all of them.
    assert [n for n in searched if n.startswith("tile")] == \
        [n for n in searched[:TILE_SAMPLE if dim == 3 else 0]], names
    assert len([n for n in searched if n.startswith("stream_jam")]) == \
        (jam_sample(dim) if streaming and dim >= 2 else 0), names
    assert all(re.fullmatch(r"tile\d+|stream_jam\d+", n) for n in searched), names
    assert s.check_failures == {}, s.check_failures
    for name in names:
        got = k.run_variant(name, *[a.copy() if isinstance(a, np.ndarray) else a
                                    for a in args])
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=rtol, err_msg=name)
    return names


def test_published_api_laplacian():
    g = StencilGrid([40, 30])
    g.data = np.random.default_rng(1).random((40, 30))
    out = StencilGrid([40, 30])
    Laplacian().kernel(g, out)
    d = g.data
    want = d[:-2, 1:-1] + d[2:, 1:-1] + d[1:-1, :-2] + d[1:-1, 2:] - 4 * d[1:-1, 1:-1]
    np.testing.assert_allclose(out.data[1:-1, 1:-1], want, rtol=1e-12)
    assert not out.data[0].any() and not out.data[:, -1].any()  # the border is untouched
    again = StencilGrid([40, 30])
    Laplacian().kernel(g, again)  # a new instance reuses the compiled code
    np.testing.assert_array_equal(again.data, out.data)


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_variant_matches_python(dim, dtype, rng):
    # Rows long enough for several 64-byte lines, plus unaligned heads and tails.
    shape = {1: (50,), 2: (13, 77), 3: (7, 8, 41)}[dim]
    a = rng.random(shape).astype(dtype)
    names = check_every_variant(Laplacian(), (a, np.zeros(shape, dtype)),
                                1e-5 if dtype == np.float32 else 1e-12)
    assert "static" in names
    names = check_every_variant(Weighted(), (a, -2.0 * dim, 1.0, np.zeros(shape, dtype)),
                                1e-5 if dtype == np.float32 else 1e-12)
    # Written once, never read: streaming stores are offered (in 2-D and 3-D, where each
    # thread fences the rows it streamed).
    assert ("stream" in names) == (dim >= 2)


@pytest.mark.parametrize("shape", [(13, 80), (6, 16), (5, 32), (9, 2, 64), (5, 11, 48)])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("mode", ["interior", "wrap", "constant"])
def test_jammed_rows_match_python(shape, dtype, mode, rng):
    """Rows a whole number of cache lines long take the jammed path of 'stream_jam<N>'
    (N rows per pass, every N of the space); row counts leave rows over for the one-row
    path."""
    a = rng.random(shape).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    k = Weighted(boundary=mode, cval=0.25)
    names = check_every_variant(k, (a, -2.0 * len(shape), 1.0, np.zeros(shape, dtype)), rtol)
    assert any(n.startswith("stream_jam") for n in names)
    assert shape[-1] * np.dtype(dtype).itemsize % 64 == 0  # the jammed branch runs
    from asp.codegen import function_to_cgen
    from specializers.stencil.variants import JAMS, JAMS_3D

    args = (a, 1.0, 1.0, np.zeros(shape, dtype))
    spec = k.jit_for(*args).specializer
    plan = spec.plan(spec.prepare(args))
    (jams,) = [sp for sp in plan.spaces if sp.name == "jam"]
    for jam_rows in JAMS if len(shape) == 2 else JAMS_3D:  # every point of the space
        jam = str(function_to_cgen(jams.make(jam=jam_rows).function))
        last = jam_rows - 1
        assert f"asp_j{last}" in jam and f"asp_buf{last}" in jam and f"asp_j{jam_rows}" not in jam


MODES = ["constant", "nearest", "reflect", "mirror", "wrap"]


def correlation_weights(dim: int, c: float, w: float) -> np.ndarray:
    wts = np.zeros((3,) * dim)
    centre = (1,) * dim
    wts[centre] = c
    for a in range(dim):
        for s in (0, 2):
            idx = list(centre)
            idx[a] = s
            wts[tuple(idx)] = w
    return wts


def correlation_oracle(a: np.ndarray, mode: str, c: float, w: float,
                       cval: float = 0.0) -> np.ndarray:
    """What ``Weighted`` (or, with c=-4 and w=1, ``Laplacian`` into zeros) computes, by
    scipy.ndimage; in 'interior' mode the border stays zero."""
    wts = correlation_weights(a.ndim, c, w)
    if mode != "interior":
        return ndi.correlate(a, wts, mode=mode, cval=cval)
    want = np.zeros_like(a)
    inner = (slice(1, -1),) * a.ndim
    want[inner] = ndi.correlate(a, wts, mode="constant")[inner]
    return want


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_boundary_modes_match_scipy(mode, dim, rng):
    shape = {1: (11,), 2: (6, 9), 3: (5, 4, 6)}[dim]
    a = rng.random(shape)
    k = Weighted(boundary=mode, cval=0.5)
    out = k(a, -3.0, 0.75)
    want = ndi.correlate(a, correlation_weights(dim, -3.0, 0.75), mode=mode, cval=0.5)
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-12)
    check_every_variant(k, (a, -3.0, 0.75, np.zeros(shape)), 1e-12)


@pytest.mark.parametrize("mode", MODES)
def test_boundary_modes_float32_and_wide_reach(mode, rng):
    """Offsets of 2 on a 3-point axis: the remapping must fold more than once."""
    class Wide(StencilKernel):
        def kernel(self, u, out):
            for x in out.interior_points():
                for y in u.neighbors(x, 1):
                    out[x] += 0.5 * u[y]

    g = StencilGrid([3, 8], dtype=np.float32)
    g.data = rng.random((3, 8)).astype(np.float32)
    g.neighbor_definition[1] = [(-2, 0), (2, 0), (0, -2), (0, 2), (1, 1)]
    k = Wide(boundary=mode, cval=1.5)
    out = k(g)
    wts = np.zeros((5, 5))
    for off in g.neighbor_definition[1]:
        wts[off[0] + 2, off[1] + 2] = 0.5
    want = ndi.correlate(g.data.astype(np.float64), wts, mode=mode, cval=1.5)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


def test_scalar_parameter_change_does_not_recompile(rng):
    a = rng.random((20, 20))
    k = Weighted()
    out1 = np.zeros_like(a)
    k.kernel(a, -4.0, 1.0, out1)
    np.testing.assert_allclose(out1, correlation_oracle(a, "interior", -4.0, 1.0))
    s = k.specialization(a, -4.0, 1.0, out1)
    out2 = np.zeros_like(a)
    k.kernel(a, 2.0, 0.5, out2)
    assert k.specialization(a, 2.0, 0.5, out2) is s
    np.testing.assert_allclose(out2, python_result(Weighted, (a, 2.0, 0.5, np.zeros_like(a))))
    k.kernel(a, 3, 1, out2)  # ints: another signature, still right
    np.testing.assert_allclose(out2, python_result(Weighted, (a, 3, 1, np.zeros_like(a))))


def test_multiple_inputs_tables_and_math(rng):
    class Mixed(StencilKernel):
        def kernel(self, a, b, table, k, out):
            for x in out.interior_points():
                t = table[abs(int(a[x] * 10 - b[x] * 10)) % 16]
                if a[x] > b[x]:
                    t = t + math.sqrt(a[x]) - min(a[x], b[x], 0.5)
                else:
                    t -= max(float(k), math.exp(-b[x]))
                for y in b.neighbors(x, 1):
                    out[x] += b[y] * math.cos(a[y]) + distance(x, y) + x[0] * 0.01
                out[x] += t * k + math.floor(a[x] * 3)

    a, b = rng.random((9, 12)), rng.random((9, 12))
    table = rng.random(16)
    args = (a, b, table, 3, np.zeros((9, 12)))
    check_every_variant(Mixed(), args, 1e-12)
    check_every_variant(Mixed(boundary="mirror"), args, 1e-12)


def test_table_index_out_of_range_raises_index_error(rng):
    class Lookup(StencilKernel):
        def kernel(self, a, table, out):
            for x in out.interior_points():
                out[x] = table[int(a[x])]

    a = np.full((6, 6), 3.0)
    with pytest.raises(IndexError):
        Lookup().kernel(a, np.ones(3), np.zeros((6, 6)))
    a[:] = -1.0  # Python's negative index: from the end
    out = Lookup().kernel(a, np.arange(3.0), np.zeros((6, 6)))
    assert out[2, 2] == 2.0


def test_numpy_arrays_grids_and_noncontiguous(rng):
    a = rng.random((10, 12))
    out = np.zeros((10, 12))
    Laplacian().kernel(a, out)
    want = np.zeros_like(a)
    want[1:-1, 1:-1] = (a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:]
                        - 4 * a[1:-1, 1:-1])
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-15)
    grid_out = StencilGrid([10, 12])
    Laplacian().kernel(StencilGrid.from_array(a), grid_out)
    np.testing.assert_array_equal(out, grid_out.data)
    big = np.zeros((10, 24))
    Laplacian().kernel(a, big[:, ::2])  # a strided output is written through a copy
    np.testing.assert_array_equal(big[:, ::2], out)
    np.testing.assert_array_equal(Laplacian()(a.T.copy().T), out)


def test_ghost_depth_and_custom_neighbourhood(rng):
    class Sum(StencilKernel):
        def kernel(self, a, out):
            for x in out.interior_points():
                for y in a.neighbors(x, 2):
                    out[x] += a[y]

    a = StencilGrid([12, 12])
    a.data = rng.random((12, 12))
    a.neighbor_definition.append([(-2, 0), (2, 0), (0, 2), (1, -1)])
    out = StencilGrid([12, 12])
    out.ghost_depth = 2
    Sum().kernel(a, out)
    ref = StencilGrid([12, 12])
    ref.ghost_depth = 2
    Sum(pure_python=True).kernel(a, ref)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12)
    assert not out.data[1].any()
    d, want = a.data, np.zeros((12, 12))
    for di, dj in [(-2, 0), (2, 0), (0, 2), (1, -1)]:  # the points 2 from every edge
        want[2:-2, 2:-2] += d[2 + di:10 + di, 2 + dj:10 + dj]
    np.testing.assert_allclose(out.data, want, rtol=1e-12)


# -- large outputs of __call__ come from reused, unzeroed memory ----------------------------
def _poison_reuse_cache(shape, dtype=np.float64):
    """Leave a freed block of this size full of NaN in asp's output cache, so the next
    output of that size reuses it (and shows anything not written or zeroed)."""
    from asp.runtime import new_output

    junk = new_output(shape, dtype)
    junk.fill(np.nan)
    del junk


@pytest.mark.parametrize("kernel_cls, args", [
    (Laplacian, ()),            # accumulates into out: everything must start at zero
    (Weighted, (0.5, 0.125)),   # assigns every point: only the border is left
])
@pytest.mark.parametrize("mode", ["interior", "wrap", "constant"])
def test_large_call_output_reuses_memory_and_zeroes_what_it_must(kernel_cls, args, mode, rng):
    a = rng.random((512, 384))  # 1.5 MiB: above the reuse threshold
    k = kernel_cls(boundary=mode, cval=0.5)
    want = np.zeros_like(a)
    k.kernel(a, *args, want)  # into zeros the caller made
    c, w = args or (-4.0, 1.0)
    np.testing.assert_allclose(want, correlation_oracle(a, mode, c, w, cval=0.5),
                               rtol=1e-12, atol=1e-12)
    _poison_reuse_cache(a.shape)
    got = k(a, *args)
    assert not np.isnan(got).any()
    np.testing.assert_array_equal(got, want)
    if mode == "interior":
        assert not got[0].any() and not got[:, -1].any()


def test_large_call_output_zeroes_the_widest_ghost_border(rng):
    """The loop walks a grid of ghost depth 2 while the output has 1: a border two
    deep stays zero."""

    class Walk(StencilKernel):
        def kernel(self, u, out):
            for x in u.interior_points():
                out[x] = 2.0 * u[x]

    u = StencilGrid([600, 300])
    u.data = rng.random((600, 300))
    u.ghost_depth = 2
    want = np.zeros((600, 300))
    want[2:-2, 2:-2] = 2.0 * u.data[2:-2, 2:-2]
    _poison_reuse_cache((600, 300))
    got = Walk()(u)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [object, ">c16", complex, np.float16, np.longdouble])
def test_large_call_with_a_bad_dtype_names_the_argument(dtype):
    """The reusing allocator is skipped for dtypes no kernel takes: the kernel's own
    check speaks, naming the argument."""
    with pytest.raises(TypeError, match="argument 'in_grid' has dtype"):
        Laplacian()(np.zeros((512, 512), dtype=dtype))
