"""A pass that shares a loop among threads or SIMD lanes proves it legal or leaves it alone.

Before: ``parallelize_outer`` put ``omp parallel for`` on a loop carrying a scalar
(``acc += x[i]`` summed 10M ones to 5,000,000 or 10,000,000 from call to call), and
``vectorize_inner`` checked scalars but not arrays (``a[j] = a[j-1] + 1`` got
``omp simd``).  Each case is checked by structure and, where it runs, by result:
compiled with at least two threads, against NumPy.
"""
from __future__ import annotations

import ctypes
import os

import numpy as np
import pytest

from asp.codegen import module_to_c
from asp.ir import platform as ir
from asp.jit import build
from asp.passes import dependences, parallelize_outer, vectorize_inner
from specializers.stencil import StencilKernel

V = ir.Var
X = ir.Var("i")


def I(v):  # noqa: E743
    return ir.Const(v, "int64_t")


def _fn(name: str, body: tuple, *, scalars=()) -> ir.Function:
    """``void name(double *x, double *y, int64_t n)`` with ``body`` after declaring scalars."""
    params = (ir.Param("x", "double", pointer=True, restrict=True),
              ir.Param("y", "double", pointer=True, restrict=True),
              ir.Param("n", "int64_t"))
    decls = tuple(ir.Declare("double", s, ir.Const(0.0)) for s in scalars)
    return ir.Function(name, params, ir.Block((*decls, *body)), ret="void")


def _loop(*stmts) -> ir.For:
    return ir.For("i", I(0), V("n"), ir.Block(stmts))


def _run(fn: ir.Function, x: np.ndarray, y: np.ndarray) -> None:
    lib = build(module_to_c(ir.Module((fn,))), kernel=f"test_pass_legality.{fn.name}")
    cfn = getattr(lib.cdll, fn.name)
    cfn.restype = None
    cfn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64]
    cfn(x.ctypes.data, y.ctypes.data, x.size)


def _loops(fn):
    return [n for n in fn.walk() if isinstance(n, ir.For)]


@pytest.fixture(autouse=True)
def _two_threads(monkeypatch):
    if int(os.environ.get("OMP_NUM_THREADS", "2") or 2) < 2:
        monkeypatch.setenv("OMP_NUM_THREADS", "2")


def test_a_sum_gets_a_reduction_clause_and_the_right_total():
    total = ir.Assign(ir.ArrayRef("y", I(0)), V("acc"))
    fn = _fn("sum_all", (_loop(ir.Assign(V("acc"), ir.ArrayRef("x", X), "+")), total),
             scalars=("acc",))
    par = vectorize_inner(parallelize_outer(fn))
    (loop,) = _loops(par)
    assert loop.parallel is not None and loop.reductions == (("+", "acc"),)
    assert "reduction(+:acc)" in module_to_c(ir.Module((par,)))
    x, y = np.ones(2_000_000), np.zeros(1)
    for _ in range(3):
        _run(par, x, y)
        assert y[0] == 2_000_000.0


@pytest.mark.parametrize("form", ["s = s * x[i]", "s = x[i] * s"])
def test_both_spellings_of_an_update_are_reductions(form):
    value = (ir.BinOp("*", V("s"), ir.ArrayRef("x", X)) if form.startswith("s = s")
             else ir.BinOp("*", ir.ArrayRef("x", X), V("s")))
    fn = _fn("prod", (_loop(ir.Assign(V("s"), value)),), scalars=("s",))
    assert dependences(_loops(fn)[0]).reductions == (("*", "s"),)


def test_a_scalar_carried_other_than_as_a_reduction_stays_serial():
    # s = x[i] - s: the order of the iterations decides the result.
    fn = _fn("alternating", (_loop(ir.Assign(V("s"), ir.BinOp("-", ir.ArrayRef("x", X), V("s"))),
                                   ir.Assign(ir.ArrayRef("y", X), V("s"))),), scalars=("s",))
    out = vectorize_inner(parallelize_outer(fn))
    (loop,) = _loops(out)
    assert loop.parallel is None and not loop.simd
    x, y = np.arange(1.0, 10_001.0), np.zeros(10_000)
    _run(out, x, y)
    s, expected = 0.0, []
    for v in x:
        s = v - s
        expected.append(s)
    np.testing.assert_array_equal(y, expected)


def test_a_running_sum_is_not_a_reduction():
    # acc += x[i]; y[i] = acc: a prefix sum reads the partial value in every iteration.
    fn = _fn("prefix", (_loop(ir.Assign(V("acc"), ir.ArrayRef("x", X), "+"),
                              ir.Assign(ir.ArrayRef("y", X), V("acc"))),), scalars=("acc",))
    out = vectorize_inner(parallelize_outer(fn))
    (loop,) = _loops(out)
    assert loop.parallel is None and not loop.simd
    x, y = np.ones(100_000), np.zeros(100_000)
    _run(out, x, y)
    np.testing.assert_array_equal(y, np.cumsum(x))


def test_an_array_dependence_is_neither_vectorized_nor_parallelized():
    # y[i] = y[i - 1] + x[i] (for i >= 1): each iteration reads what the previous wrote.
    body = ir.Assign(ir.ArrayRef("y", X),
                     ir.BinOp("+", ir.ArrayRef("y", ir.BinOp("-", X, I(1))),
                              ir.ArrayRef("x", X)))
    loop = ir.For("i", I(1), V("n"), ir.Block((body,)))
    fn = _fn("recurrence", (loop,))
    out = vectorize_inner(parallelize_outer(fn))
    (lp,) = _loops(out)
    assert lp.parallel is None and not lp.simd
    assert "it reads 'y' at an index" in dependences(lp).blocking
    x, y = np.ones(50_000), np.zeros(50_000)
    _run(out, x, y)
    np.testing.assert_array_equal(y, np.arange(50_000.0))


def test_a_write_that_does_not_move_with_the_loop_stays_serial():
    fn = _fn("last", (_loop(ir.Assign(ir.ArrayRef("y", I(0)), ir.ArrayRef("x", X))),))
    out = parallelize_outer(fn)
    assert _loops(out)[0].parallel is None
    x, y = np.arange(30_000.0), np.zeros(1)
    _run(out, x, y)
    assert y[0] == 29_999.0  # the last iteration's value, as in sequential order


def test_a_write_at_an_index_that_can_repeat_stays_serial():
    # y[i % 2] = x[i]: iterations collide on two elements.
    idx = ir.Call("asp_mod_i64", (X, I(2)))
    fn = _fn("mod2", (_loop(ir.Assign(ir.ArrayRef("y", idx), ir.ArrayRef("x", X))),))
    assert _loops(parallelize_outer(fn))[0].parallel is None
    sq = _fn("square", (_loop(ir.Assign(ir.ArrayRef("y", ir.BinOp("*", X, X)),
                                        ir.ArrayRef("x", X))),))
    assert _loops(parallelize_outer(sq))[0].parallel is None


def test_an_early_exit_stays_serial():
    loop = _loop(ir.If(ir.BinOp(">", ir.ArrayRef("x", X), ir.Const(5.0)),
                       ir.Block((ir.Break(),))),
                 ir.Assign(ir.ArrayRef("y", X), ir.Const(1.0)))
    out = parallelize_outer(_fn("until", (loop,)))
    assert _loops(out)[0].parallel is None


def test_independent_iterations_are_still_parallel_and_vectorized():
    fn = _fn("axpy", (_loop(ir.Assign(ir.ArrayRef("y", X),
                                      ir.BinOp("+", ir.ArrayRef("y", X),
                                               ir.BinOp("*", ir.Const(2.0),
                                                        ir.ArrayRef("x", X))))),))
    out = vectorize_inner(parallelize_outer(fn))
    (lp,) = _loops(out)
    assert lp.parallel is not None and lp.simd and lp.reductions == ()
    x, y = np.arange(100_000.0), np.ones(100_000)
    _run(out, x, y)
    np.testing.assert_array_equal(y, 1 + 2 * np.arange(100_000.0))


def test_collapse_stops_at_a_loop_whose_bounds_use_an_outer_index():
    j = V("j")
    inner = ir.For("j", I(0), X, ir.Block((
        ir.Assign(ir.ArrayRef("y", ir.BinOp("+", ir.BinOp("*", X, V("n")), j)),
                  ir.Const(1.0)),)))
    outer = ir.For("i", I(0), V("n"), ir.Block((inner,)))
    out = parallelize_outer(_fn("triangle", (outer,)), collapse=2)
    assert _loops(out)[0].parallel.collapse == 1


class Laplacian(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            for y in a.neighbors(x, 1):
                out[x] += a[y]
            out[x] -= 4 * a[x]


class Heat(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            out[x] = a[x]
            for y in a.neighbors(x, 1):
                out[x] += 0.1 * (a[y] - a[x])


@pytest.mark.parametrize("cls", [Laplacian, Heat])
@pytest.mark.parametrize("shape", [(64,), (32, 32), (8, 8, 8)])
def test_every_stencil_variant_stays_parallel(cls, shape):
    """The stencil's point loops are independent by construction (each point writes only
    its own output): the legality check must not take their parallelism away."""
    a = np.random.default_rng(1).random(shape)
    s = cls().specialization(a, np.zeros_like(a))
    functions = {v.name: v.function.name for v in s.plan.variants}  # tile points share one
    assert set(functions) == set(s.variant_names)
    for name in s.variant_names:
        body = s.source.split(f"{functions[name]}(", 1)[1].split("\nint ", 1)[0]
        assert "#pragma omp parallel for" in body, name


@pytest.mark.parametrize("cond, then, op", [
    (">", "e", "max"), ("<", "acc", "max"), ("<", "e", "min"), (">", "acc", "min")])
def test_max_and_min_updates_are_reductions(cond, then, op):
    e, acc = ir.ArrayRef("x", X), V("m")
    value = ir.Ternary(ir.BinOp(cond, e, acc), e if then == "e" else acc,
                       acc if then == "e" else e)
    fn = _fn("extreme", (_loop(ir.Assign(acc, value)), ir.Assign(ir.ArrayRef("y", I(0)), acc)),
             scalars=("m",))
    par = parallelize_outer(fn)
    assert _loops(par)[0].reductions == ((op, "m"),)
    x, y = np.random.default_rng(5).random(300_000), np.zeros(1)
    _run(par, x, y)
    # m starts at 0.0: the max over [0, 1) values, or min(0, ...) = 0.
    assert y[0] == (x.max() if op == "max" else 0.0)
