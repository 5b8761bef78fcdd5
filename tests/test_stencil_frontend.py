"""Stencil front end, checks and fallback: bad arguments, unsupported constructs, the
grid API, the paper's examples, and where the OpenMP pragma lands."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from asp.errors import AspFallbackWarning, FrontendError
from asp.frontend import get_source
from asp.frontend.names import namespace
from asp.ir import platform as ir
from asp.passes import outer_loops
from specializers.stencil import StencilGrid, StencilKernel, distance
from specializers.stencil.domain import NeighborLoop
from specializers.stencil.frontend import ArgInfo, translate
from specializers.stencil.passes import fold_constants, unroll_neighbors


class Laplacian(StencilKernel):
    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            for y in in_grid.neighbors(x, 1):
                out_grid[x] += in_grid[y]
            out_grid[x] -= 4 * in_grid[x]


# -- the grid ----------------------------------------------------------------------------

def test_grid_api():
    g = StencilGrid([4, 5])
    assert g.shape == (4, 5) and g.dim == 2 and g.ghost_depth == 1
    assert g.data.dtype == np.float64 and not g.data.any()
    assert g.neighbor_definition[0] == [(0, 0)]
    assert sorted(g.neighbor_definition[1]) == [(-1, 0), (0, -1), (0, 1), (1, 0)]
    assert list(g.interior_points()) == [(i, j) for i in (1, 2) for j in (1, 2, 3)]
    assert len(list(g.border_points())) == 20 - 6
    assert list(g.neighbors((1, 1), 0)) == [(1, 1)]
    g[(2, 3)] = 7.0
    assert g[(2, 3)] == 7.0 and g.data[2, 3] == 7.0
    g.data = np.ones((4, 5), np.float32)
    assert g.shape == (4, 5) and g.dtype == np.float32
    assert StencilGrid([8], dtype=np.float32).data.dtype == np.float32
    g3 = StencilGrid([3, 3, 3])
    assert len(g3.neighbor_definition[1]) == 6 and list(g3.interior_points()) == [(1, 1, 1)]
    with pytest.raises(ValueError):
        StencilGrid([2, 2, 2, 2])


# -- argument checks ----------------------------------------------------------------------

def test_bad_arguments_name_the_argument(rng):
    k = Laplacian()
    a, out = rng.random((8, 8)), np.zeros((8, 8))
    with pytest.raises(TypeError, match="'in_grid'.*complex"):
        k.kernel(a.astype(complex), out)
    with pytest.raises(TypeError, match="'out_grid' is None"):
        k.kernel(a, None)
    with pytest.raises(TypeError, match="'in_grid' must be"):
        k.kernel("grid", out)
    with pytest.raises(ValueError, match="'out_grid' has shape"):
        k.kernel(a, np.zeros((8, 9)))
    with pytest.raises(ValueError, match="4 dimensions"):
        k.kernel(np.zeros((3, 3, 3, 3)), np.zeros((3, 3, 3, 3)))
    with pytest.raises(ValueError, match="different numbers of dimensions|has shape"):
        k.kernel(np.zeros(8), out)
    ro = np.zeros((8, 8))
    ro.flags.writeable = False
    k.kernel(a, out)  # a hot entry exists now: the checks must still hold
    with pytest.raises(ValueError, match="'out_grid' is read-only"):
        k.kernel(a, ro)
    with pytest.raises(ValueError, match="overlaps input 'in_grid'"):
        k.kernel(a, a)
    with pytest.raises(TypeError, match="takes 2 argument"):
        k.kernel(a)


def test_unknown_boundary_mode_lists_the_valid_ones():
    with pytest.raises(ValueError, match="'warp'.*'interior'.*'wrap'"):
        Laplacian(boundary="warp")
    with pytest.raises(ValueError, match="'nearest'"):
        class Bad(StencilKernel):
            boundary = "clamp"


def test_interior_offset_beyond_ghost_depth_is_an_error_before_native_code(rng):
    g = StencilGrid([10, 10])
    g.data = rng.random((10, 10))
    g.neighbor_definition[1] = [(0, 2), (0, -1)]
    with pytest.raises(ValueError, match="ghost depth 1"):
        Laplacian().kernel(g, StencilGrid([10, 10]))
    out = StencilGrid([10, 10])
    out.ghost_depth = 2
    Laplacian().kernel(g, out)  # deep enough now
    ref = StencilGrid([10, 10])
    ref.ghost_depth = 2
    Laplacian(pure_python=True).kernel(g, ref)
    np.testing.assert_allclose(out.data, ref.data)
    # with a boundary mode every reach is fine
    Laplacian(boundary="nearest")(g)


# -- fallback -----------------------------------------------------------------------------

class WhileKernel(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            n = 0
            while n < 2:
                n += 1
            out[x] = a[x] * n


class CallKernel(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = np.linalg.norm(a[x])  # NumPy's Python, written for arrays


class WriteInputKernel(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            a[x] = 1.0
            out[x] = a[x]


class IsKernel(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            if a[x] is None:
                out[x] = 0.0
            else:
                out[x] = a[x]


@pytest.mark.parametrize("cls, what", [(WhileKernel, "'while' loops"),
                                       (CallKernel, "'np.linalg.norm' is not among"),
                                       (WriteInputKernel, "writing input grid 'a'"),
                                       (IsKernel, "comparison Is is not supported")])
def test_unsupported_constructs_fall_back_with_one_warning(cls, what, rng):
    a = rng.random((6, 6))
    with pytest.warns(AspFallbackWarning, match=re.escape(what)) as rec:
        out = cls().kernel(a.copy(), np.zeros((6, 6)))
        cls().kernel(a.copy(), np.zeros((6, 6)))
    assert len(rec) == 1
    ref = np.zeros((6, 6))
    cls(pure_python=True).kernel(a.copy(), ref)
    np.testing.assert_array_equal(out, ref)
    k = cls()
    with pytest.raises(FrontendError, match=r"test_stencil_frontend\.py:\d+"):
        k.specialization(a, np.zeros((6, 6)))


def test_pure_python_flag_never_compiles(rng):
    class Twice(StencilKernel):
        pure_python = True

        def kernel(self, a, out):
            for x in out.interior_points():
                out[x] = 2 * a[x]

    a = rng.random((5, 5))
    out = Twice()(a)
    np.testing.assert_array_equal(out[1:-1, 1:-1], 2 * a[1:-1, 1:-1])
    assert Twice().jit_for(a, out)._specs == {}


# -- domain passes and the platform IR -----------------------------------------------------

def _ir(cls, ndim=2):
    src = get_source(cls.kernel)
    nd = tuple(tuple(lst) for lst in StencilGrid([4] * ndim).neighbor_definition)
    info = {"in_grid": ArgInfo("grid", "double", ndim, nd),
            "out_grid": ArgInfo("grid", "double", ndim, nd)}
    return translate(src, namespace(cls.kernel), info)


def test_unroll_and_fold_passes():
    k = _ir(Laplacian)
    assert sum(isinstance(n, NeighborLoop) for n in k.walk()) == 1
    u = fold_constants(unroll_neighbors(k))
    assert not any(isinstance(n, NeighborLoop) for n in u.walk())
    reads = [n.offset for n in u.walk() if type(n).__name__ == "GridRead" and n.offset]
    assert reads == [(-1, 0), (1, 0), (0, -1), (0, 1)]  # the neighbourhood's order
    assert unroll_neighbors(k, limit=2) == k  # too big: stays a loop


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("boundary", ["interior", "wrap"])
def test_parallel_pragma_on_the_outermost_loop(dim, boundary, rng):
    a = rng.random((6,) * dim)
    k = Laplacian(boundary=boundary)
    s = k.specialization(a, np.zeros_like(a))
    for v in s.plan.variants:
        fn = v.function
        nests = [lp for lp in fn.body.walk() if isinstance(lp, ir.For) and lp.parallel]
        assert nests, v.name
        for lp in nests:
            # the parallel loop is a point (or tile) loop no other loop encloses ...
            assert lp in outer_loops(fn) or any(lp is o for o in _outer_in_ifs(fn))
            # ... the first axis (or its tile), and the contiguous axis runs SIMD inside
            assert lp.var in ("asp_i0", "asp_i1_t", "asp_c") or lp.var.endswith("_t"), lp.var
            inner = [n for n in lp.walk() if isinstance(n, ir.For) and n.simd]
            assert inner and all(n.var == f"asp_i{dim - 1}" for n in inner)
            if dim == 1 and v.name != "stream":
                assert lp.simd  # the one loop is both
    # and in the C: each 'omp parallel for' is followed by the outermost point loop
    for m in re.finditer(r"#pragma omp parallel for[^\n]*\n\s*for \(int64_t (\w+)", s.source):
        assert m.group(1) in ("asp_i0", "asp_i1_t", "asp_c"), m.group(0)


def _outer_in_ifs(fn):
    """Outermost loops, looking through the serial/parallel ``if`` of serial_below."""
    out = []
    for stmt in fn.body.body:
        if isinstance(stmt, ir.If):
            for blk in (stmt.then, stmt.orelse):
                out += [s for s in (blk.body if blk else ()) if isinstance(s, ir.For)]
        elif isinstance(stmt, ir.For):
            out.append(stmt)
    return out


def test_tiny_grids_run_serially(rng, monkeypatch):
    # The shipped default, not the suite's ASP_PARALLEL_THRESHOLD=0 (tests/conftest.py).
    monkeypatch.delenv("ASP_PARALLEL_THRESHOLD", raising=False)
    a = rng.random((16, 16))
    jit = Laplacian().jit_for(a, a)
    jit.clear()
    try:
        s = Laplacian().specialization(a, np.zeros_like(a))
        assert "> 32768" in s.source  # serial_below: a 16x16 call never starts a team
    finally:
        jit.clear()  # later tests build under the suite's setting again


# -- the paper's examples ------------------------------------------------------------------

def test_identity(rng):
    class Identity(StencilKernel):
        def kernel(self, in_grid, out_grid):
            for x in out_grid.interior_points():
                out_grid[x] = in_grid[x]

    a = rng.random((7, 9))
    out = Identity()(a)
    np.testing.assert_array_equal(out[1:-1, 1:-1], a[1:-1, 1:-1])


def test_1d_neighbour_sum(rng):
    class Sum1D(StencilKernel):
        def kernel(self, in_grid, out_grid):
            for x in out_grid.interior_points():
                for y in in_grid.neighbors(x, 1):
                    out_grid[x] = out_grid[x] + in_grid[y]

    g = StencilGrid([100])
    g.data = rng.random(100)
    out = StencilGrid([100])
    Sum1D().kernel(g, out)
    np.testing.assert_allclose(out.data[1:-1], g.data[:-2] + g.data[2:])


def test_2d_laplacian_of_cubic_is_linear():
    n = 40
    h = 1.0 / (n - 1)
    xs = np.arange(n) * h
    g = StencilGrid([n, n])
    g.data = xs[:, None] ** 3 + xs[None, :] ** 3
    out = StencilGrid([n, n])
    Laplacian().kernel(g, out)
    want = 6 * xs[:, None] + 6 * xs[None, :]
    np.testing.assert_allclose(out.data[1:-1, 1:-1] / h**2, want[1:-1, 1:-1], atol=1e-7)


def test_1d_fourth_order_derivative_of_sin_is_cos():
    class Deriv4(StencilKernel):
        def kernel(self, f, h, out):
            for x in out.interior_points():
                for y in f.neighbors(x, 2):
                    d = y[0] - x[0]
                    w = 8.0 if abs(d) == 1 else -1.0
                    out[x] += w * f[y] * (1 if d > 0 else -1) / (12 * h)

    n = 400
    h = 2 * math.pi / n
    f = StencilGrid([n])
    f.data = np.sin(np.arange(n) * h)
    f.neighbor_definition.append([(-2,), (-1,), (1,), (2,)])
    out = StencilGrid([n])
    out.ghost_depth = 2
    Deriv4().kernel(f, h, out)
    np.testing.assert_allclose(out.data[2:-2], np.cos(np.arange(n) * h)[2:-2], atol=1e-7)


def test_3d_bilateral_filter_without_unrolling(rng):
    class Bilateral(StencilKernel):
        should_unroll = False

        def kernel(self, in_img, filter_d, filter_s, out_img):
            for x in out_img.interior_points():
                for y in in_img.neighbors(x, 1):
                    out_img[x] += in_img[y] * filter_d[int(distance(x, y))] * \
                        filter_s[abs(int(in_img[x] - in_img[y]))]

    r = 2
    nd = [[(0, 0, 0)], [(i, j, k) for i in range(-r, r + 1) for j in range(-r, r + 1)
                        for k in range(-r, r + 1)]]
    img = StencilGrid([9, 9, 9])
    img.data = rng.random((9, 9, 9)) * 20
    img.neighbor_definition = nd
    out = StencilGrid([9, 9, 9])
    out.ghost_depth = r
    fd = np.exp(-np.arange(2 * r + 1.0) ** 2 / 4)
    fs = np.exp(-np.arange(32.0) ** 2 / 50)
    k = Bilateral()
    k.kernel(img, fd, fs, out)
    s = k.specialization(img, fd, fs, out)
    assert "asp_k0 < 125" in s.source  # the neighbourhood stayed a loop
    ref = StencilGrid([9, 9, 9])
    ref.ghost_depth = r
    Bilateral(pure_python=True).kernel(img, fd, fs, ref)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12)
    for name in s.variant_names:
        o = StencilGrid([9, 9, 9])
        o.ghost_depth = r
        np.testing.assert_allclose(k.run_variant(name, img, fd, fs, o), ref.data, rtol=1e-12)



# -- the core's scalar translator, with the stencil's domain --------------------------------

def test_the_front_end_is_the_core_translator_plus_the_domain():
    from asp.frontend.scalar import ScalarTranslator
    from specializers.stencil.frontend import StencilTranslator

    assert issubclass(StencilTranslator, ScalarTranslator)
    # The expression language is inherited, never written again here.
    shared = ("expr", "constant", "truth", "condition", "binop", "power", "e_BinOp",
              "e_UnaryOp", "e_Compare", "e_BoolOp", "e_IfExp", "e_Call", "e_Constant",
              "block", "s_If", "s_Assign", "s_Expr")
    assert not [m for m in shared if m in vars(StencilTranslator)]


def _matches_python_in_every_variant(cls, *args, exact=True):
    """Compiles (a front-end refusal raises), and every variant gives Python's output."""
    k = cls()
    s = k.specialization(*args)
    assert not s.check_failures, s.check_failures
    want = args[-1].copy()
    cls(pure_python=True).kernel(*args[:-1], want)
    for name in s.variant_names:
        got = k.run_variant(name, *args[:-1], args[-1].copy())
        if exact:
            np.testing.assert_array_equal(got, want, err_msg=name)
            assert (np.signbit(got) == np.signbit(want)).all(), name  # -0.0 is not 0.0
        else:
            np.testing.assert_allclose(got, want, rtol=1e-15, err_msg=name)


FLAG = True


class IntOps(StencilKernel):
    def kernel(self, a, b, out):
        for x in out.interior_points():
            p, q = a[x] & 255, b[x] ^ ~a[x]
            r = s2 = (p | q) >> 2
            r //= 3
            r **= 2
            for y in a.neighbors(x, 1):
                out[x] += (a[y] - p) ** 3 % 1000
            out[x] += r - s2 + (1 if FLAG else 0)


class FloatFunctions(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            t = np.sqrt(a[x]) + math.hypot(a[x], 2.0) + math.log(a[x] + 1.0, 2.0)
            out[x] = min(t, math.inf) * np.pi if t > 1 else -t


def test_what_the_core_translates_compiles_in_a_stencil_too(rng):
    # Shifts and bitwise operators, '~', tuple and chained assignment, '//=' and '**=',
    # a power of an expression in an unrolled neighbour loop (its temporary an assigned
    # local, as a declaration would stand once per neighbour), a module-level bool.
    a = rng.integers(-100, 100, (7, 8))
    b = rng.integers(-100, 100, (7, 8))
    _matches_python_in_every_variant(IntOps, a, b, np.zeros((7, 8), np.int64))
    # NumPy ufuncs, math.log with a base, math.inf, np.pi.
    _matches_python_in_every_variant(FloatFunctions, rng.random((6, 9)) * 4, np.zeros((6, 9)),
                                     exact=False)


class UnsignedDivide(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = a[x] // 3 + a[x] % 1000


def test_uint64_floor_division_and_modulo_use_unsigned_values():
    # They were computed on the values cast to int64: wrong above 2**63, and not caught.
    a = np.array([2**64 - 5, 2**64 - 5, 2**63 + 12345, 7, 2**64 - 1000, 0], np.uint64)
    _matches_python_in_every_variant(UnsignedDivide, a, np.zeros(6, np.uint64))


class AndOrTests(StencilKernel):
    def kernel(self, a, b, out):
        for x in out.interior_points():
            if a[x] and not (b[x] or a[x] > 0.5):
                out[x] = 1.0
            else:
                out[x] = 2.0 if a[x] or b[x] else 3.0


class AndOrValue(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = a[x] and 2.0


def test_and_or_of_numbers_are_tests_not_values():
    a = np.array([0.0, 0.3, 0.0, 2.0, 0.0, 0.7, 1.0, 0.0])
    b = np.array([0.0, 0.0, 3.0, 4.0, 0.0, 0.0, 0.0, 1.0])
    _matches_python_in_every_variant(AndOrTests, a, b, np.zeros(8))
    # As a value 'a and 2.0' is a's value or 2.0; it was compiled as a bool (0 or 1).
    with pytest.warns(AspFallbackWarning, match="'and'/'or' are supported on booleans"):
        out = AndOrValue().kernel(a, np.zeros(8))
    np.testing.assert_array_equal(out[1:-1], [0.3 and 2.0, 0.0, 2.0, 0.0, 2.0, 2.0])


class HalfPower(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = a[x] ** 0.5


def test_a_half_power_is_pows_at_minus_infinity_and_minus_zero():
    # (GCC vectorizes pow(x, 0.5) as a square root: enough points for the vector loop.)
    a = np.tile([-np.inf, -0.0, 4.0, 2.25, np.inf, 0.0], 12)
    _matches_python_in_every_variant(HalfPower, a, np.zeros(a.size))


BEYOND = 2**70
DIVISOR = 2**60


class Beyond64(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = a[x] + BEYOND // DIVISOR


def test_a_module_int_beyond_64_bits_runs_as_python_saying_so():
    # It was printed as a C literal too large for its type.
    a = np.arange(6)
    with pytest.warns(AspFallbackWarning, match="does not fit in 64 bits"):
        out = Beyond64().kernel(a, np.zeros(6, np.int64))
    np.testing.assert_array_equal(out[1:-1], a[1:-1] + 1024)


class Returns(StencilKernel):
    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            out_grid[x] = in_grid[x]
            return


class Breaks(StencilKernel):
    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            for y in in_grid.neighbors(x, 1):
                out_grid[x] += in_grid[y]
                break


class RangeLoop(StencilKernel):
    def kernel(self, in_grid, out_grid):
        for x in out_grid.interior_points():
            for i in range(3):
                out_grid[x] += in_grid[x] * i


@pytest.mark.parametrize("cls, what", [(Returns, "'return' is not supported"),
                                       (Breaks, "'break' is not supported"),
                                       (RangeLoop, "only 'for x in grid.interior_points()'")])
def test_what_a_stencil_has_no_place_for_is_refused(cls, what):
    with pytest.raises(FrontendError, match=re.escape(what)):
        _ir(cls, ndim=1)
