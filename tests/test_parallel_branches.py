"""The OpenMP branches of every stencil and elementwise variant, against independent oracles.

Generated kernels run a loop on an OpenMP team only above a threshold of work
(``if (points > T) { #pragma omp parallel for ... } else { serial copy }``).  The
per-variant checks use small inputs, so with the shipped thresholds they only
ever ran the serial copy.  tests/conftest.py sets ``ASP_PARALLEL_THRESHOLD=0``
and at least two OpenMP threads; here each variant's parallel branch is shown
to be the one that runs (its guard is ``> 0``) and is compared with the Python
reference on random inputs and edge values, and with NumPy/SciPy where they
compute the same thing.  A few calls above the default thresholds, with the
default setting, exercise the shipped configuration too.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.ndimage as ndi
from conftest import MIN_THREADS, openmp_max_threads, until_decided

from asp import config
from asp.ir import platform as ir
from asp.passes import dependences
from asp.runtime.specialization import expand_spaces
from specializers.elementwise import elementwise
from specializers.elementwise.lowering import SERIAL_ELEMENTS, SERIAL_ELEMENTS_LOOPS
from specializers.stencil import StencilGrid, StencilKernel
from specializers.stencil.variants import (
    SERIAL_POINTS,
    TILE_SAMPLE,
    jam_sample,
    variant_spaces,
    variant_specs,
)

MODES = ["interior", "constant", "nearest", "reflect", "mirror", "wrap"]
CVAL = 0.5


# -- where the parallel loops are, and what guards them -------------------------------------

def parallel_guards(fn: ir.Function) -> list[tuple[ir.For, ir.Expr | None]]:
    """Each parallel loop of ``fn`` with the condition it runs under: the ``if (work >
    T)`` that :func:`asp.passes.serial_below` (or the lanes lowering) put around it (the
    nearest: other conditions, e.g. whether rows are aligned, choose between parallel
    codes), else its own ``if()`` clause or its region's, else None (always parallel)."""
    found: list[tuple[ir.For, ir.Expr | None]] = []

    def walk(node: ir.Node, guard: ir.Expr | None) -> None:
        if isinstance(node, ir.If):
            walk(node.cond, guard)
            threshold = isinstance(node.cond, ir.BinOp) and node.cond.op == ">" \
                and isinstance(node.cond.right, ir.Const)
            walk(node.then, node.cond if threshold else guard)
            if node.orelse is not None:
                walk(node.orelse, guard)
            return
        if isinstance(node, ir.Region) and node.when is not None:  # its ``if()`` clause
            walk(node.body, node.when)
            return
        if isinstance(node, ir.For) and node.parallel is not None:
            found.append((node, node.parallel.when if node.parallel.when is not None
                          else guard))
        for child in node.children():
            walk(child, guard)

    walk(fn.body, None)
    return found


def threshold_of(guard: ir.Expr | None) -> int:
    """T of a guard ``work > T`` (a loop without a guard is always parallel: T = -1)."""
    if guard is None:
        return -1
    assert isinstance(guard, ir.BinOp) and guard.op == ">", guard
    assert isinstance(guard.right, ir.Const), guard
    return int(guard.right.value)


def collapsed(loop: ir.For) -> tuple[str, ...]:
    """The indices a parallel loop shares among threads (``collapse(n)``: n of its nest)."""
    nest = [loop]
    while len(nest) < loop.parallel.collapse and len(nest[-1].body.body) == 1 \
            and isinstance(nest[-1].body.body[0], ir.For):
        nest.append(nest[-1].body.body[0])
    assert len(nest) == loop.parallel.collapse, f"collapse({loop.parallel.collapse}) " \
        f"over a nest of {len(nest)}"
    return tuple(lp.var for lp in nest)


def assert_parallel_loop_is_legal(name: str, loop: ir.For) -> None:
    """Translation validation of one parallel loop of a finished variant: the dependence
    analysis of :mod:`asp.passes.loops`, run again on the final IR, finds its iterations
    independent and every reduction it finds declared in the loop's clause."""
    deps = dependences(loop, collapsed(loop))
    assert deps.independent, f"variant {name}: loop {loop.var} is parallel but {deps.blocking}"
    missing = set(deps.reductions) - set(loop.reductions)
    assert not missing, f"variant {name}: loop {loop.var} lacks reduction clauses {missing}"


def assert_parallel_branch_runs(variants, work: int, *, source: str | None = None) -> set[int]:
    """Every variant has parallel loops, each legal as annotated, and each one's guard lets
    ``work`` through: the branch taken on these inputs is the ``#pragma omp parallel for``
    one.  Returns the thresholds seen."""
    assert variants
    seen = set()
    for v in variants:
        guarded = parallel_guards(v.function)
        assert guarded, f"variant {v.name}: no parallel loop"
        for loop, guard in guarded:
            assert_parallel_loop_is_legal(v.name, loop)
            seen.add(threshold_of(guard))
            assert threshold_of(guard) < work, (v.name, loop.var, guard)
    if source is not None:  # what was compiled, including helpers printed as text
        for line in source.splitlines():
            if "#pragma omp parallel" in line and " if(" in line:
                seen.add(int(line.rsplit(">", 1)[1].strip(" )")))
                assert int(line.rsplit(">", 1)[1].strip(" )")) < work, line
    return seen


def test_suite_runs_parallel_branches_on_a_team():
    """The settings conftest.py makes for the whole suite are in force."""
    assert config.parallel_threshold(SERIAL_POINTS) == 0
    assert config.parallel_threshold(SERIAL_ELEMENTS) == 0
    threads = openmp_max_threads()
    assert threads is not None and threads >= MIN_THREADS


# -- stencils -------------------------------------------------------------------------------

class Correlate(StencilKernel):
    """A correlation with weight ``c`` at the centre and ``w`` at each neighbour; written
    once per point and never read, so the streaming variants are offered too."""

    def kernel(self, u, c, w, out):
        for x in out.interior_points():
            s = c * u[x]
            for y in u.neighbors(x, 1):
                s += w * u[y]
            out[x] = s


class Accumulate(StencilKernel):
    """Adds into the output (no streaming variants): the Laplacian of Asp's papers."""

    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, 1):
                out[x] += u[y]
            out[x] -= 4 * u[x]


def axis_offsets(dim: int, reach: int) -> list[tuple[int, ...]]:
    """-d then +d along each axis, for d = 1..reach."""
    out = []
    for a in range(dim):
        for d in range(1, reach + 1):
            for s in (-d, d):
                off = [0] * dim
                off[a] = s
                out.append(tuple(off))
    return out


def grids(u: np.ndarray, ghost: int) -> tuple[StencilGrid, StencilGrid]:
    """Input and output grids of ghost depth ``ghost`` whose neighbourhood reaches it."""
    g = StencilGrid.from_array(u)
    g.ghost_depth = ghost
    g.neighbor_definition[1] = axis_offsets(u.ndim, ghost)
    out = StencilGrid(u.shape, u.dtype)
    out.ghost_depth = ghost
    return g, out


def weights(dim: int, reach: int, c: float, w: float) -> np.ndarray:
    wts = np.zeros((2 * reach + 1,) * dim)
    wts[(reach,) * dim] = c
    for off in axis_offsets(dim, reach):
        wts[tuple(reach + o for o in off)] = w
    return wts


def scipy_oracle(u: np.ndarray, mode: str, reach: int, c: float, w: float) -> np.ndarray:
    """The correlation by scipy.ndimage; in 'interior' mode only points ``reach`` from
    every edge are computed and the rest stay zero."""
    wts = weights(u.ndim, reach, c, w)
    u64 = u.astype(np.float64)
    if mode != "interior":
        return ndi.correlate(u64, wts, mode=mode, cval=CVAL)
    want = np.zeros_like(u64)
    inner = (slice(reach, -reach),) * u.ndim
    want[inner] = ndi.correlate(u64, wts, mode="constant")[inner]
    return want


def python_oracle(kernel_cls, mode: str, ghost: int, u: np.ndarray, *scalars) -> np.ndarray:
    """The user's kernel run as Python (the specification) on fresh grids."""
    g, out = grids(u.copy(), ghost)
    with np.errstate(all="ignore"):  # inf - inf is NaN, as in C
        return kernel_cls(boundary=mode, cval=CVAL, pure_python=True).kernel(g, *scalars, out)


def edge_values(dtype) -> np.ndarray:
    info = np.finfo(dtype)
    return np.array([0.0, -0.0, np.inf, -np.inf, np.nan, info.max / 64, -info.tiny,
                     info.smallest_subnormal, 1.0, -1.0], dtype=dtype)


def with_edges(u: np.ndarray, rng) -> np.ndarray:
    """``u`` with edge values at random points, including a corner and the centre."""
    v = u.copy().reshape(-1)
    e = edge_values(u.dtype)
    where = rng.choice(v.size, size=min(v.size, 3 * e.size), replace=False)
    v[where] = np.resize(e, where.size)
    v[0] = np.nan
    v[v.size // 2] = np.inf
    return v.reshape(u.shape)


def assert_variant_shape(v, options: dict) -> None:
    """A variant is the transformation it is named for (the Python cannot tell: these
    change speed, not results): its parallel nest is collapsed as asked, and a tiled
    variant shares its tile loop, stepping by the tile size, among the threads."""
    loops = [loop for loop, _ in parallel_guards(v.function)]
    assert max(lp.parallel.collapse for lp in loops) == options.get("collapse", 1), v.name
    sizes = [s for s in options.get("tile", ()) if s]
    tiles = [lp for lp in loops if lp.var.endswith("_t")]
    # The tiled variants share one function: its tile loop steps by a parameter,
    # ``asp_tile<axis>``, which the variant's entry binds to its size.
    axes = [a for a, s in enumerate(options.get("tile", ())) if s]
    assert [lp.step for lp in tiles[:1]] == [ir.Var(f"asp_tile{a}") for a in axes[:1]], v.name
    assert v.bound == tuple(sizes), v.name


def run_every_stencil_variant(k, u, ghost, scalars, want, rtol, *, threshold: int = 0):
    """Each variant of ``k`` on ``u`` vs ``want``; its parallel branch, guarded by
    ``threshold``, is the one taken."""
    g, out = grids(u, ghost)
    args = (g, *scalars, out)
    jit = k.jit_for(*args)
    s = k.specialization(*args)
    assert s.check_failures == {}, s.check_failures
    spec = jit.specializer
    arrays = tuple(a.data if isinstance(a, StencilGrid) else a for a in args)
    # The plain variants and the points the runtime sampled from the tile and jam spaces.
    plan, _ = expand_spaces(spec.plan(spec.prepare(arrays)), f"{s.kernel}|{s.signature}")
    assert [v.name for v in plan.variants] == s.variant_names
    assert assert_parallel_branch_runs(plan.variants, u.size, source=s.source) == {threshold}
    options = dict(variant_specs(u.ndim, True))
    for _, params, _, point in variant_spaces(u.ndim, True):
        (param, values), = params.items()
        options.update(point(**{param: value}) for value in values)
    for v in plan.variants:
        assert_variant_shape(v, options[v.name])
    for name in s.variant_names:
        g2, out2 = grids(u.copy(), ghost)
        got = k.run_variant(name, g2, *scalars, out2)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, equal_nan=True,
                                   err_msg=f"variant {name}")
    return s.variant_names


SHAPES = {1: [(70,), (33,)], 2: [(13, 48), (11, 37)], 3: [(5, 40, 16), (4, 37, 19)]}


def _stencil_cases():
    # Every (dimension, mode) once, the (dtype, ghost depth) pair cycling with both: every
    # pair of factors meets (each mode gets three of the four pairs, each dimension all
    # four), at a quarter of the compilations of the full product.
    combos = [(np.float64, 1), (np.float32, 2), (np.float64, 2), (np.float32, 1)]
    for dim in (1, 2, 3):
        for i, mode in enumerate(MODES):
            dtype, ghost = combos[(i + dim) % 4]
            yield pytest.param(dim, mode, dtype, ghost,
                               id=f"{dim}d-{mode}-{np.dtype(dtype).name}-ghost{ghost}")


@pytest.mark.parametrize("dim, mode, dtype, ghost", list(_stencil_cases()))
def test_every_stencil_variant_parallel_branch(dim, mode, dtype, ghost, rng):
    """Shapes with rows a whole number of cache lines (the jammed streaming path) and
    ragged ones; tiles of 8 and 32 with a remainder; random values, then edge values."""
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    k = Correlate(boundary=mode, cval=CVAL)
    c, w = -1.5 * dim, 0.75
    for shape in SHAPES[dim]:
        u = rng.uniform(-1, 1, shape).astype(dtype)
        names = run_every_stencil_variant(k, u, ghost, (c, w),
                                          scipy_oracle(u, mode, ghost, c, w), rtol)
        streaming = dim >= 2
        plain = [n for n, _ in variant_specs(dim, streaming)]
        assert names[:len(plain)] == plain
        assert len(names) == len(plain) + (TILE_SAMPLE if dim == 3 else 0) + \
            (jam_sample(dim) if streaming else 0), names
        # The Python reference agrees with SciPy here: it is a fair oracle for the edges.
        np.testing.assert_allclose(python_oracle(Correlate, mode, ghost, u, c, w),
                                   scipy_oracle(u, mode, ghost, c, w), rtol=rtol, atol=rtol)
        e = with_edges(u, rng)
        run_every_stencil_variant(k, e, ghost, (c, w),
                                  python_oracle(Correlate, mode, ghost, e, c, w), rtol)


@pytest.mark.parametrize("dim", [1, 2, 3])
def test_accumulating_stencil_parallel_branch(dim, rng):
    """A kernel that reads its output (``+=``): no streaming; ghost depth 2 in 3-D."""
    shape = SHAPES[dim][1]
    u = rng.uniform(-1, 1, shape)
    ghost = 2 if dim == 3 else 1
    k = Accumulate(boundary="reflect", cval=CVAL)
    names = run_every_stencil_variant(k, u, ghost, (), scipy_oracle(u, "reflect", ghost, -4, 1),
                                      1e-12)
    plain = [n for n, _ in variant_specs(dim, False)]
    assert names == plain + [n for n in names[len(plain):] if n.startswith("tile")]
    assert len(names) == len(plain) + (TILE_SAMPLE if dim == 3 else 0), names


# -- stencils above the shipped threshold, with the shipped setting ------------------------

class CorrelateDefault(Correlate):
    """Its own class: compiled only under the default threshold (the suite's kernels
    were compiled under 0)."""


@pytest.mark.parametrize("shape, mode", [((200, 200), "interior"), ((36, 36, 36), "wrap")])
def test_stencil_above_the_default_threshold(shape, mode, rng, monkeypatch):
    monkeypatch.delenv("ASP_PARALLEL_THRESHOLD")
    assert config.parallel_threshold(SERIAL_POINTS) == SERIAL_POINTS
    assert np.prod(shape) > SERIAL_POINTS
    u = rng.uniform(-1, 1, shape)
    k = CorrelateDefault(boundary=mode, cval=CVAL)
    names = run_every_stencil_variant(k, u, 1, (2.0, 0.5), scipy_oracle(u, mode, 1, 2.0, 0.5),
                                      1e-12, threshold=SERIAL_POINTS)
    plain = [n for n, _ in variant_specs(u.ndim, True)]
    assert names[:len(plain)] == plain
    assert len(names) == len(plain) + (TILE_SAMPLE if u.ndim == 3 else 0) + jam_sample(u.ndim)
    # Every call agrees while the tuner races the variants, and the winner's after.
    want = scipy_oracle(u, mode, 1, 2.0, 0.5)

    def call():
        np.testing.assert_allclose(k(u, 2.0, 0.5), want, rtol=1e-12, atol=1e-12)

    until_decided(call, lambda: k.call_jit(u, 2.0, 0.5).chosen_variant(
        u, 2.0, 0.5, np.zeros_like(u)) is not None, len(names))
    for _ in range(8):
        call()


# -- stencils below a threshold: the serial loop every variant shares -----------------------

class CorrelateSmall(Correlate):
    """Its own class: compiled under a threshold the small grids here stay below."""


SMALL = 4000


def assert_serial_branch_calls(variants, helpers, serial: str = "stencil_serial") -> None:
    """Each variant's whole body is its parallel branch; its serial branch is one call of
    ``serial``, a function with no team and no shared loop (one copy a unit)."""
    fn, = [h for h in helpers if h.name == serial]
    assert fn.static and not any(isinstance(n, ir.Region) or isinstance(n, ir.For)
                                 and n.parallel is not None for n in fn.walk()), serial
    for v in variants:
        branch, = v.function.body.body
        assert isinstance(branch, ir.If) and threshold_of(branch.cond) == SMALL, v.name
        ret, = branch.orelse.body
        assert isinstance(ret, ir.Return) and ret.value.func == serial, v.name
        assert [a.name for a in ret.value.args] == [p.name for p in fn.params], v.name


@pytest.mark.parametrize("dim, mode, dtype", [(1, "reflect", np.float64),
                                              (2, "interior", np.float32),
                                              (2, "wrap", np.float64),
                                              (3, "constant", np.float64)])
def test_stencil_below_the_threshold_runs_the_shared_serial_loop(dim, mode, dtype, rng,
                                                                 monkeypatch):
    """With the threshold at 4000 points: on grids below it every variant (the plain
    ones and the sampled tile and jam points) runs ``stencil_serial`` and agrees with
    SciPy and, on edge values, with the Python; on a grid above it, the parallel
    branch of the same variants."""
    monkeypatch.setenv("ASP_PARALLEL_THRESHOLD", str(SMALL))
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    k = CorrelateSmall(boundary=mode, cval=CVAL)
    c, w = -1.5 * dim, 0.75
    small = SHAPES[dim][1]
    assert np.prod(small) <= SMALL
    u = rng.uniform(-1, 1, small).astype(dtype)
    g, out = grids(u, 1)
    spec = k.jit_for(g, c, w, out).specializer
    s = k.specialization(g, c, w, out)
    plan, _ = expand_spaces(spec.plan(spec.prepare((u, c, w, out.data))),
                            f"{s.kernel}|{s.signature}")
    assert [v.name for v in plan.variants] == s.variant_names
    assert len(s.variant_names) > (1 if dim > 1 else 0)
    assert_serial_branch_calls(plan.variants, plan.helpers)
    assert s.source.count("stencil_serial(") == 1 + len({id(v.function) for v in plan.variants})
    for e in (u, with_edges(u, rng)):
        want = (scipy_oracle(e, mode, 1, c, w) if e is u
                else python_oracle(Correlate, mode, 1, e, c, w))
        for name in s.variant_names:
            g2, out2 = grids(e.copy(), 1)
            np.testing.assert_allclose(k.run_variant(name, g2, c, w, out2), want, rtol=rtol,
                                       atol=rtol, equal_nan=True, err_msg=f"variant {name}")
    big = rng.uniform(-1, 1, (SMALL + 1,) if dim == 1 else (9,) * (dim - 2) + (70, 70))
    big = big.astype(dtype)
    run_every_stencil_variant(k, big, 1, (c, w), scipy_oracle(big, mode, 1, c, w), rtol,
                              threshold=SMALL)


# -- elementwise ----------------------------------------------------------------------------

@elementwise
def cubic(x):
    return 3 * x**3 - 2 * x**2 + x + 1


@elementwise
def pick(x, y):
    if x > y:
        return x
    return -1 if x == y else y


@elementwise
def escape(cr, ci, maxiter):
    zr, zi = cr, ci
    for i in range(maxiter):
        zr, zi = zr * zr - zi * zi + cr, 2.0 * zr * zi + ci
        if zr * zr + zi * zi > 4.0:
            return i
    return maxiter


@elementwise
def damped(x):
    acc = 0.0
    for i in range(6):
        if math.isnan(x):
            break
        acc = acc * 0.5 + x * i
    return acc


def elementwise_reference(fn, *args) -> np.ndarray:
    """The user's function on each element (as NumPy scalars, so NumPy's typing)."""
    n = next(a.size for a in args if isinstance(a, np.ndarray))
    with np.errstate(all="ignore"):
        vals = [fn.py_func(*[a.reshape(-1)[k] if isinstance(a, np.ndarray) else a
                             for a in args]) for k in range(n)]
    return np.asarray([v.item() if isinstance(v, np.generic) else v for v in vals])


def run_every_elementwise_variant(fn, *args, want, rtol: float, expected: set[str],
                                  threshold: int = 0):
    s = fn.jit.specialization(*args, None)
    assert s.check_failures == {}, s.check_failures
    assert set(s.variant_names) == expected
    spec = fn.jit.specializer
    plan = spec.plan(spec.prepare((*args, None)))
    n = next(a.size for a in args if isinstance(a, np.ndarray))
    assert assert_parallel_branch_runs(plan.variants, n, source=s.source) == {threshold}
    for name in s.variant_names:
        got = fn.jit.run_variant(name, *args, None)
        if got.dtype.kind in "iu":
            np.testing.assert_array_equal(got, want.astype(got.dtype), err_msg=name)
        else:
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, equal_nan=True,
                                       err_msg=name)


SCHEDULES = {"chunk", "stride", "dynamic"}
STREAMED = SCHEDULES | {"stream"}  # loop-free, a float result: its lines streamed
LANES = SCHEDULES | {"lanes8", "lanes32"}
VLANES = LANES | {"vlanes4", "vlanes8"}  # 8-byte values only: escape, not damped


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_elementwise_float_variants_parallel_branch(dtype, rng):
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    x = rng.uniform(-4, 4, 301).astype(dtype)
    run_every_elementwise_variant(cubic, x, want=3 * x.astype(float)**3
                                  - 2 * x.astype(float)**2 + x + 1, rtol=rtol,
                                  expected=STREAMED)
    e = np.resize(edge_values(dtype), 301)
    e[::7] = x[::7]
    run_every_elementwise_variant(cubic, e, want=elementwise_reference(cubic, e), rtol=rtol,
                                  expected=STREAMED)
    run_every_elementwise_variant(damped, e, want=elementwise_reference(damped, e), rtol=rtol,
                                  expected=LANES)


@pytest.mark.parametrize("dtype", [np.int64, np.int32])
def test_elementwise_int_variants_parallel_branch(dtype, rng):
    info = np.iinfo(dtype)
    edges = np.array([0, -1, 1, info.min, info.max, info.min + 1, info.max - 1], dtype)
    x = np.concatenate([rng.integers(-1000, 1000, 290, dtype=dtype), edges])
    y = np.concatenate([rng.integers(-1000, 1000, 290, dtype=dtype), edges[::-1]])
    y[:50] = x[:50]  # the x == y branch
    run_every_elementwise_variant(pick, x, y, want=np.where(x > y, x, np.where(x == y, -1, y)),
                                  rtol=0, expected=SCHEDULES)
    small = rng.integers(-1000, 1000, 297, dtype=dtype)  # no overflow in the cubic
    run_every_elementwise_variant(cubic, small,
                                  want=elementwise_reference(cubic, small), rtol=0,
                                  expected=SCHEDULES)


def test_elementwise_lanes_variants_parallel_branch(rng):
    # 32 * 9 + 5 elements: several lane blocks for each thread, and a scalar tail.
    cr, ci = rng.uniform(-2, 1, 293), rng.uniform(-1.5, 1.5, 293)
    cr[:4] = [0.0, -0.0, np.inf, np.nan]
    run_every_elementwise_variant(escape, cr, ci, 40, want=elementwise_reference(escape, cr, ci,
                                                                                 40),
                                  rtol=0, expected=VLANES)


# -- elementwise above the shipped thresholds, with the shipped setting --------------------

def test_elementwise_above_the_default_thresholds(rng, monkeypatch):
    monkeypatch.delenv("ASP_PARALLEL_THRESHOLD")
    light = elementwise(cubic.py_func)  # new kernels: compiled under the default only
    heavy = elementwise(escape.py_func)
    x = rng.uniform(-4, 4, SERIAL_ELEMENTS + 3001)
    run_every_elementwise_variant(light, x, want=3 * x**3 - 2 * x**2 + x + 1, rtol=1e-12,
                                  expected=STREAMED, threshold=SERIAL_ELEMENTS)
    cr = rng.uniform(-2, 1, SERIAL_ELEMENTS_LOOPS * 4 + 7)
    ci = rng.uniform(-1.5, 1.5, cr.size)
    run_every_elementwise_variant(heavy, cr, ci, 30, want=elementwise_reference(escape, cr, ci,
                                                                                30),
                                  rtol=0, expected=VLANES, threshold=SERIAL_ELEMENTS_LOOPS)


# -- the setting itself ---------------------------------------------------------------------

@pytest.mark.parametrize("value", ["-1", "many", "1.5"])
def test_bad_threshold_is_an_error(value, monkeypatch):
    monkeypatch.setenv("ASP_PARALLEL_THRESHOLD", value)
    with pytest.raises(ValueError, match="ASP_PARALLEL_THRESHOLD"):
        config.parallel_threshold(SERIAL_POINTS)


class CorrelateKeyed(Correlate):
    """Its own class: built here under two thresholds."""


def test_threshold_keys_records_and_tuning(monkeypatch, fresh_cache, rng):
    """Code built under one threshold is never reused under another: not from the
    warm-start record, not through a remembered tuning winner."""
    u = rng.uniform(-1, 1, (12, 20))
    args = (u, 1.0, 0.5, np.zeros_like(u))
    k = CorrelateKeyed()
    jit = k.jit_for(*args)
    zero = k.specialization(*args)
    assert "> 0)" in zero.source
    jit.clear()
    assert k.specialization(*args).source is None  # a warm start: from the record
    jit.clear()
    monkeypatch.delenv("ASP_PARALLEL_THRESHOLD")
    default = k.specialization(*args)
    assert default.source is not None and f"> {SERIAL_POINTS})" in default.source
    assert default.tuning.signature != zero.tuning.signature
    np.testing.assert_allclose(k(u, 1.0, 0.5), scipy_oracle(u, "interior", 1, 1.0, 0.5),
                               rtol=1e-12, atol=1e-12)
    jit.clear()


def test_streaming_sweeps_fence_once_per_outer_iteration(rng):
    """A streamed sweep's ``sfence`` ends each iteration of the loop a thread is given (a
    plane in 3-D), before the barrier, and nowhere deeper: per 2 KiB row of a 256^3
    grid it made the streaming variants 1.2-1.5x slower than plain stores."""
    u = rng.uniform(-1, 1, (5, 40, 16))
    g, out = grids(u, 1)
    args = (g, -4.5, 0.75, out)
    jit = Correlate().jit_for(*args)
    spec = jit.specializer
    s = Correlate().specialization(*args)
    plan, _ = expand_spaces(spec.plan(spec.prepare((u, -4.5, 0.75, out.data))),
                            f"{s.kernel}|{s.signature}")
    streamed = [v for v in plan.variants if v.name.startswith("stream")]
    assert streamed, [v.name for v in plan.variants]

    def fences(node) -> int:
        return sum(isinstance(n, ir.Call) and n.func == "asp_sfence" for n in node.walk())

    for v in streamed:
        outer = [n for n in v.function.walk() if isinstance(n, ir.For) and n.parallel]
        assert outer, v.name
        for loop in outer:
            last = loop.body.body[-1]
            assert fences(last) == 1 and isinstance(last, ir.ExprStmt), v.name
            assert fences(loop) == 1, (v.name, fences(loop))  # none per row


# -- jammed variants: the rows they cannot jam go to the ``stream`` variant's code ----------

class NanBelow(StencilKernel):
    """Streams (writes each point once, never reads it); a NaN constant in its code."""

    def kernel(self, u, out):
        for x in out.interior_points():
            s = u[x]
            for y in u.neighbors(x, 1):
                s += u[y]
            out[x] = s if s > 0.0 else math.nan


@pytest.mark.parametrize("shape", [(45, 37), (45, 64), (7, 9, 37)])
def test_jammed_variants_call_the_stream_variant_for_rows_they_cannot_jam(shape, rng):
    """Rows of 37 float64 are no whole number of cache lines (a jammed variant calls
    ``stencil_stream``), rows of 64 are (it jams them): each variant agrees with the
    Python either way (NaN where the sum is not positive).  The unit holds
    ``stencil_stream`` once: the ``stream`` variant's own function object, which each
    jammed variant names as its callee (not a second lowering of the same code)."""
    k = NanBelow()
    u = rng.uniform(-1, 1, shape)
    s = k.specialization(u, np.zeros(shape))
    assert s.check_failures == {}, s.check_failures
    stream, = [v for v in s.plan.variants if v.name == "stream"]
    jams = [v for v in s.plan.variants if v.name.startswith("stream_jam")]
    assert jams and all(len(v.calls) == 1 and v.calls[0] is stream.function for v in jams)
    assert s.source.count("int stencil_stream(") == 1
    want = np.zeros(shape)
    NanBelow(pure_python=True).kernel(u.copy(), want)
    for name in s.variant_names:
        np.testing.assert_array_equal(k.run_variant(name, u, np.zeros(shape)), want,
                                      err_msg=f"variant {name}")
