"""``u = K(u, r)``: the output ``StencilKernel.__call__`` allocates (reused memory, not
zeroed by the system) holds exactly what ``K.kernel`` writes into zeros, on the call that
finds out what to zero and on every later call that remembers it, for every boundary mode,
1-D to 3-D, ghost depths 1 and 2, and after anything the plan depends on changes.

Each call is preceded by a freed block full of NaN as the only one asp keeps for reuse,
so the output comes from it and a point neither written nor zeroed shows.
"""
from __future__ import annotations

import numpy as np
import pytest

from asp.runtime import new_output, release_memory
from specializers.stencil import StencilGrid, StencilKernel

MODES = ["interior", "constant", "nearest", "reflect", "mirror", "wrap"]
SHAPES = {1: (300_000,), 2: (512, 384), 3: (72, 64, 40)}  # 1.5-2.4 MB: reused memory


class Assign(StencilKernel):
    """Assigns every point it visits: only what it does not visit needs zeros."""

    def kernel(self, u, c, out):
        for x in out.interior_points():
            s = c * u[x]
            for y in u.neighbors(x, 1):
                s += 0.125 * u[y]
            out[x] = s


class Accumulate(StencilKernel):
    """Reads its output: everything needs zeros."""

    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, 1):
                out[x] += u[y]
            out[x] -= 2 * u[x]


class Walk(StencilKernel):
    """Walks the input's interior, which may be deeper than the output's."""

    def kernel(self, u, out):
        for x in u.interior_points():
            out[x] = 2.0 * u[x]


def _poisoned(shape, dtype=np.float64) -> None:
    """Leave one freed block of this size, full of NaN (or ones), as asp's only one kept."""
    release_memory()
    junk = new_output(shape, dtype)
    junk.fill(np.nan if np.dtype(dtype).kind == "f" else 1)
    del junk


def _expected(k: StencilKernel, *inputs):
    first = next(a for a in inputs if isinstance(a, np.ndarray | StencilGrid))
    data = first.data if isinstance(first, StencilGrid) else first
    out = np.zeros_like(data)
    target = out
    if isinstance(first, StencilGrid):
        target = StencilGrid.from_array(out)
        target.ghost_depth = first.ghost_depth
    k.kernel(*inputs, target)
    return out


def _steps(k: StencilKernel, u, *rest, calls: int = 3):
    """``calls`` calls ``u = K(u, *rest)``, each on a poisoned block, against the kernel
    into zeros."""
    for _ in range(calls):
        want = _expected(k, u, *rest)
        _poisoned(want.shape, want.dtype)
        got = k(u, *rest)
        assert got.shape == want.shape and got.dtype == want.dtype
        np.testing.assert_array_equal(got, want)
        u = got
    return u


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dim", [1, 2, 3])
def test_assigning_kernel_remembers_its_border(mode, dim, rng):
    k = Assign(boundary=mode, cval=0.5)
    u = rng.random(SHAPES[dim])
    got = _steps(k, u, 0.25)
    assert k._fresh is not None  # later calls took the remembered plan
    if mode == "interior":
        for axis in range(dim):
            assert not np.take(got, [0, -1], axis=axis).any()


@pytest.mark.parametrize("mode", ["interior", "wrap"])
def test_accumulating_kernel_gets_zeros_everywhere(mode, rng):
    _steps(Accumulate(boundary=mode), rng.random(SHAPES[2]))


@pytest.mark.parametrize("mode", ["interior", "wrap"])
def test_small_grids_remember_their_plan_too(mode, rng):
    """A small grid's loop remembers its plan as a large grid's does (before, every call
    under 1 MiB planned afresh: 6 us a 16^2 step against 1 us for ``K.kernel`` into a
    preallocated output).  Its outputs come from malloc, not zeroed: each call follows a
    freed block of the same size full of NaN, which malloc hands out again."""
    k = Assign(boundary=mode, cval=0.5)
    u = rng.random((40, 30))
    for _ in range(3):
        want = _expected(k, u, 0.25)
        junk = np.empty_like(want)
        junk.fill(np.nan)
        del junk
        got = k(u, 0.25)
        np.testing.assert_array_equal(got, want)
        u = got
    assert k._fresh is not None


def test_several_kinds_of_calls_are_remembered(rng, monkeypatch):
    """A kernel called on grids of several shapes in turn (a multigrid cycle's smoother)
    keeps each one's plan, a bounded number of them (before, only the last: alternating
    16^2 and 20^2 grids planned every call afresh, 26 us a call against 3.5)."""
    from specializers.stencil import fresh, kernel

    k = Assign(boundary="interior")
    grids = [rng.random((16, 16)), rng.random((20, 20)), rng.random((512, 384))]
    for u in grids:
        _steps(k, u, 0.25, calls=2)

    def planning(*args):
        raise AssertionError("a remembered kind of call planned again")

    with monkeypatch.context() as m:
        m.setattr(kernel, "call_fresh", planning)
        for _ in range(2):
            for u in grids:
                np.testing.assert_array_equal(k(u, 0.25), _expected(k, u, 0.25))
    for n in range(4, 4 + 2 * fresh.REMEMBERED):
        k(rng.random((n, 5)), 0.25)
    assert len(k._fresh) == fresh.REMEMBERED


def test_outputs_of_128_kib_and_more_are_reused(rng):
    """A 256^2 float64 output (512 KiB) goes back to the reusing allocator when freed
    (before, only outputs of 1 MiB and more did: a 256^2 loop paid for fresh pages
    every step, 59 us against 16 for the kernel into a preallocated output)."""
    from asp import _native

    k = Assign()
    u = rng.random((256, 256))
    _steps(k, u, 0.25, calls=2)
    release_memory()
    got = k(u, 0.25)
    del got
    assert _native.cached_bytes() >= u.nbytes


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_other_dtypes(dtype, rng):
    u = (rng.random((800, 700)) * 100).astype(dtype)
    _steps(Assign(), u, dtype(2) if dtype is np.int32 else 0.5)


def test_ghost_depth_two_keeps_a_border_two_deep(rng):
    u = StencilGrid([600, 300])
    u.data = rng.random((600, 300))
    u.ghost_depth = 2
    k = Walk()
    for _ in range(3):
        want = np.zeros((600, 300))
        want[2:-2, 2:-2] = 2.0 * u.data[2:-2, 2:-2]
        _poisoned(want.shape)
        got = k(u)
        np.testing.assert_array_equal(got, want)
    # The same kernel on a plain array (ghost depth 1) does not reuse that plan.
    a = rng.random((600, 300))
    _poisoned(a.shape)
    want = np.zeros_like(a)
    want[1:-1, 1:-1] = 2.0 * a[1:-1, 1:-1]
    np.testing.assert_array_equal(k(a), want)


def test_an_axis_that_is_all_border(rng):
    """Two points along an axis: the interior is empty and everything is zeroed."""
    u = rng.random((2, 150_000))
    for _ in range(3):
        _poisoned(u.shape)
        got = Assign()(u, 0.5)
        assert not got.any()


def test_what_the_plan_depends_on(rng):
    """A remembered plan serves only the same kinds, shapes and options."""
    k = Assign()
    u = rng.random((512, 384))
    _steps(k, u, 0.25)
    # Another shape, another dtype, a scalar of another type, the mode, pure Python.
    _steps(k, rng.random((384, 512)), 0.25, calls=2)
    _steps(k, u.astype(np.float32), 0.25, calls=2)
    _steps(k, u, 1, calls=2)
    k.boundary = "nearest"
    _steps(k, u, 0.25, calls=2)
    k.boundary = "interior"
    _steps(k, u, 0.25, calls=2)
    k.pure_python = True
    small = rng.random((12, 9))
    np.testing.assert_array_equal(k(small, 0.25), _expected(Assign(pure_python=True), small,
                                                              0.25))


def test_an_array_subclass_of_another_shape(rng):
    class Sub(np.ndarray):
        pass

    k = Assign()
    u = rng.random((512, 384)).view(Sub)
    for _ in range(2):
        k(u, 0.25)
    v = rng.random((384, 512)).view(Sub)
    got = k(v, 0.25)
    assert got.shape == v.shape
    np.testing.assert_array_equal(got, _expected(k, np.asarray(v), 0.25))


def test_wrong_arguments_still_name_themselves_after_a_remembered_call(rng):
    k = Assign()
    u = rng.random((512, 384))
    _steps(k, u, 0.25, calls=2)
    with pytest.raises(TypeError, match=r"takes 2 argument\(s\) \(u, c; the output is made\), "
                                         r"got 1"):
        k(u)
    with pytest.raises(TypeError, match="needs at least one input grid"):
        k(1.0, 0.25)


def test_a_dask_array_after_a_remembered_call(rng):
    da = pytest.importorskip("dask.array")
    k = Assign()
    u = rng.random((512, 384))
    _steps(k, u, 0.25, calls=2)
    lazy = k(da.from_array(u, chunks=(256, 384)), 0.25)
    assert hasattr(lazy, "__dask_graph__")
    np.testing.assert_allclose(lazy.compute(scheduler="sync"), k(u, 0.25), rtol=1e-15)


@pytest.mark.parametrize("dim,dtype", [(1, np.float64), (2, np.float64), (2, np.float32),
                                       (2, np.int64), (3, np.float64), (3, np.float32)])
def test_every_variant_of_the_zeroing_code(dim, dtype, rng):
    """In 'interior' mode ``__call__`` runs code that zeroes the border in the variant's
    own team (:mod:`specializers.stencil.border`): every variant of it, the sampled points
    of its spaces included, on outputs full of NaN (or ones), at sizes above the parallel
    threshold, against the kernel into zeros; the Python reference agrees."""
    u = (rng.random(SHAPES[dim]) * 100).astype(dtype)
    c = dtype(2) if np.dtype(dtype).kind == "i" else 0.5
    want = _expected(Assign(), u, c)
    k = Assign()
    junk = np.full(u.shape, np.nan if np.dtype(dtype).kind == "f" else 1, dtype)
    jit = k.jit_for(u, c, junk, zero=True)
    names = jit.specialization(u, c, junk).variant_names
    assert len(names) >= (2 if dim > 1 and np.dtype(dtype).kind == "f" else 1), names
    for name in names:
        got = jit.run_variant(name, u, c, junk.copy())
        np.testing.assert_array_equal(got, want, err_msg=name)
    reference = jit.specializer.run_python((u, c, junk.copy()))
    np.testing.assert_allclose(reference, want, rtol=1e-6 if dtype == np.float32 else 0)


def test_zeroing_code_with_a_deeper_ghost_on_the_loop_grid(rng):
    """The loop walks a grid with ghost depth 2: the code zeroes two deep, every variant."""
    u = StencilGrid([600, 300])
    u.data = rng.random((600, 300))
    u.ghost_depth = 2
    want = np.zeros((600, 300))
    want[2:-2, 2:-2] = 2.0 * u.data[2:-2, 2:-2]
    k = Walk()
    out = np.full((600, 300), np.nan)
    jit = k.jit_for(u, out, zero=True)
    for name in jit.specialization(u.data, out).variant_names:
        np.testing.assert_array_equal(jit.run_variant(name, u.data, out.copy()), want,
                                      err_msg=name)


def test_call_jit_without_a_grid_names_the_kernel():
    with pytest.raises(TypeError, match=r"Assign\(\) needs at least one input grid"):
        Assign().call_jit(0.5)
