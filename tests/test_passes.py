"""Loop passes: structural effects on the platform IR, purity, and the pipeline's IR dumps."""
from __future__ import annotations

import ctypes
import functools

import numpy as np
import pytest

from asp.codegen import module_to_c
from asp.ir import platform as ir
from asp.jit import build
from asp.passes import (
    dump,
    fold_constants,
    format_ir,
    innermost_loops,
    outer_loops,
    parallelize_outer,
    run_pipeline,
    serial_below,
    tile_loops,
    unroll_inner,
    vectorize_inner,
)

V = ir.Var


def I(v):  # noqa: E743
    return ir.Const(v, "int64_t")


def _nest(depth: int, *, body=None) -> ir.Function:
    """A perfect nest over out[i0, i1, ...] = i0 * 10000 + i1 * 100 + i2 (flat row-major)."""
    names = [f"i{k}" for k in range(depth)]
    dims = [f"n{k}" for k in range(depth)]
    index: ir.Expr = V(names[0])
    value: ir.Expr = V(names[0])
    for k in range(1, depth):
        index = ir.BinOp("+", ir.BinOp("*", index, V(dims[k])), V(names[k]))
        value = ir.BinOp("+", ir.BinOp("*", value, I(100)), V(names[k]))
    stmt = body or ir.Assign(ir.ArrayRef("out", index), ir.Cast("double", value))
    loop: ir.Stmt = stmt
    for k in reversed(range(depth)):
        loop = ir.For(names[k], I(0), V(dims[k]), ir.Block((loop,)))
    params = (ir.Param("out", "double", pointer=True, restrict=True),
              *(ir.Param(d, "int64_t") for d in dims))
    return ir.Function(f"nest{depth}", params, ir.Block((loop,)), ret="void")


def _loops(fn) -> list[ir.For]:
    return [n for n in fn.walk() if isinstance(n, ir.For)]


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_parallelize_outer_marks_only_the_outermost_loop(depth):
    fn = _nest(depth)
    out = parallelize_outer(fn, schedule="dynamic", chunk=8)
    loops = _loops(out)
    assert len(loops) == depth
    assert loops[0].parallel == ir.Parallel("dynamic", 8, 1)
    assert all(lp.parallel is None for lp in loops[1:])
    assert _loops(fn)[0].parallel is None  # pure: the input is unchanged
    assert "#pragma omp parallel for schedule(dynamic, 8)" in format_ir(out)
    assert format_ir(out).count("#pragma omp parallel") == 1


@pytest.mark.parametrize("depth, collapse, expected", [
    (1, 2, 1), (2, 2, 2), (3, 2, 2), (3, 3, 3), (2, 5, 2),
])
def test_parallelize_outer_collapse_is_limited_to_the_nest_depth(depth, collapse, expected):
    out = parallelize_outer(_nest(depth), collapse=collapse)
    loops = _loops(out)
    assert loops[0].parallel.collapse == expected
    assert all(lp.parallel is None for lp in loops[1:])
    text = format_ir(out)
    assert (f"collapse({expected})" in text) == (expected > 1)


def test_parallelize_outer_collapse_stops_at_an_imperfect_nest():
    inner = ir.For("j", I(0), V("m"), ir.Block((ir.Pragma("x"),)))
    outer = ir.For("i", I(0), V("n"), ir.Block((ir.Pragma("before"), inner)))
    fn = ir.Function("f", (), ir.Block((outer,)))
    out = parallelize_outer(fn, collapse=2)
    assert _loops(out)[0].parallel.collapse == 1


def test_parallelize_outer_each_top_level_loop_and_not_in_while():
    a, b = _nest(1).body.body[0], _nest(2).body.body[0]
    w = ir.While(V("c"), ir.Block((a,)))
    fn = ir.Function("f", (), ir.Block((a, b, w)))
    out = parallelize_outer(fn)
    top = out.body.body
    assert top[0].parallel is not None and top[1].parallel is not None
    assert top[1].body.body[0].parallel is None
    assert top[2] is w  # loops under a while are not shared among threads
    assert outer_loops(out) == [top[0], top[1], a]  # outer_loops sees loops under a while too


def test_parallelize_outer_rejects_unknown_schedule():
    with pytest.raises(ValueError, match="schedule"):
        parallelize_outer(_nest(1), schedule="fastest")


def test_parallelize_outer_when_clause():
    cond = ir.BinOp(">", V("n0"), I(1000))
    out = parallelize_outer(_nest(1), when=cond)
    assert _loops(out)[0].parallel.when == cond
    assert "if(n0 > 1000)" in format_ir(out)


def test_vectorize_inner_marks_innermost_loops_without_early_exit():
    for depth in (1, 2, 3):
        loops = _loops(vectorize_inner(_nest(depth)))
        assert [lp.simd for lp in loops] == [False] * (depth - 1) + [True]


@pytest.mark.parametrize("exit_stmt", [ir.Break(), ir.Return(), ir.Continue()])
def test_vectorize_inner_skips_loops_that_exit_early(exit_stmt):
    body = ir.If(V("c"), ir.Block((exit_stmt,)))
    fn = _nest(2, body=body)
    out = vectorize_inner(fn)
    assert not any(lp.simd for lp in _loops(out))
    assert out == fn


def test_vectorize_inner_skips_loops_containing_while():
    body = ir.While(V("c"), ir.Block((ir.Assign(V("c"), I(0)),)))
    fn = _nest(1, body=body)
    assert not _loops(vectorize_inner(fn))[0].simd


def test_unroll_inner():
    out = unroll_inner(_nest(2), factor=4)
    assert [lp.unroll for lp in _loops(out)] == [None, 4]
    assert "#pragma GCC unroll 4" in format_ir(out)
    with pytest.raises(ValueError):
        unroll_inner(_nest(1), factor=0)


def test_innermost_and_outer_loops():
    fn = _nest(3)
    assert [lp.var for lp in innermost_loops(fn)] == ["i2"]
    assert [lp.var for lp in outer_loops(fn)] == ["i0"]


def test_passes_are_pure_and_idempotent():
    fn = _nest(2)
    before = repr(fn)
    once = vectorize_inner(parallelize_outer(fn))
    assert repr(fn) == before
    assert vectorize_inner(parallelize_outer(once)) == once


# -- tiling ------------------------------------------------------------------------------------

def test_tile_loops_structure_2d():
    fn = parallelize_outer(_nest(2), collapse=2)
    tiled = tile_loops(fn, sizes=(4, 8))
    loops = _loops(tiled)
    assert [lp.var for lp in loops] == ["i0_t", "i1_t", "i0", "i1"]
    assert [lp.step for lp in loops] == [I(4), I(8), I(1), I(1)]
    # The tile loops take over the parallel annotation; the point loops have none.
    assert loops[0].parallel.collapse == 2
    assert [lp.parallel for lp in loops[1:]] == [None, None, None]
    assert loops[2].start == V("i0_t")
    assert loops[2].stop == ir.Ternary(ir.BinOp("<", ir.BinOp("+", V("i0_t"), I(4)), V("n0")),
                                       ir.BinOp("+", V("i0_t"), I(4)), V("n0"))
    text = format_ir(tiled)
    assert "for (int64_t i1 = i1_t; i1 < (i1_t + 8 < n1 ? i1_t + 8 : n1); ++i1)" in text


def test_tile_loops_partial_sizes_and_untouched_cases():
    fn = _nest(2)
    tiled = tile_loops(fn, sizes=(None, 16))
    assert [lp.var for lp in _loops(tiled)] == ["i1_t", "i0", "i1"]
    assert tile_loops(fn, sizes=(None, None)) == fn
    assert tile_loops(fn, sizes=(0, 0)) == fn
    # A non-unit step or a bound that depends on another index of the nest is not tiled.
    stepped = ir.Function("f", (), ir.Block((ir.For("i", I(0), V("n"), ir.Block(()),
                                                    step=I(2)),)))
    assert tile_loops(stepped, sizes=(8,)) == stepped
    tri_inner = ir.For("j", I(0), V("i"), ir.Block((ir.Pragma("x"),)))
    tri = ir.Function("t", (), ir.Block((ir.For("i", I(0), V("n"), ir.Block((tri_inner,))),)))
    assert [lp.var for lp in _loops(tile_loops(tri, sizes=(4, 4)))] == ["i_t", "i", "j"]


def _run_nest(fn: ir.Function, dims: tuple[int, ...]) -> np.ndarray:
    src = module_to_c(ir.Module((fn,)))
    lib = build(src, kernel=f"test_passes.{fn.name}")
    cfn = getattr(lib.cdll, fn.name)
    cfn.restype = None
    cfn.argtypes = [ctypes.c_void_p] + [ctypes.c_int64] * len(dims)
    out = np.full(dims, -1.0)
    cfn(out.ctypes.data, *dims)
    return out


def test_tiled_parallel_kernel_computes_the_same_result():
    dims = (13, 7, 5)  # not multiples of the tile sizes: the edge tiles are partial
    base = _nest(3)
    i0, i1, i2 = np.indices(dims)
    expected = (i0 * 100 + i1) * 100 + i2.astype(float)
    pipeline = [functools.partial(parallelize_outer, collapse=2), vectorize_inner,
                functools.partial(tile_loops, sizes=(4, 3, 2))]
    tiled = run_pipeline(base, pipeline, title="tile test")
    assert len(_loops(tiled)) == 6
    np.testing.assert_array_equal(_run_nest(tiled, dims), expected)


# -- serial_below ------------------------------------------------------------------------------

def test_serial_below_makes_an_if_else():
    when = ir.BinOp(">", V("n0"), I(4096))
    par = parallelize_outer(_nest(2), schedule="static", chunk=1)
    out = serial_below(par, when=when)
    (top,) = out.body.body
    assert isinstance(top, ir.If)
    assert top.cond == when
    (p,) = top.then.body
    (s,) = top.orelse.body
    assert p == par.body.body[0]
    assert p.parallel == ir.Parallel("static", 1)
    assert s.parallel is None and s.body == p.body
    text = format_ir(out)
    assert text.count("#pragma omp parallel for") == 1
    assert "else" in text


def test_serial_below_leaves_serial_code_alone():
    fn = _nest(2)
    assert serial_below(fn, when=V("c")) == fn


# -- the pipeline and its dumps ---------------------------------------------------------------

def test_run_pipeline_applies_passes_in_order():
    calls = []

    def a(fn):
        calls.append("a")
        return parallelize_outer(fn)

    def b(fn):
        calls.append("b")
        return vectorize_inner(fn)

    out = run_pipeline(_nest(2), [a, b], title="order")
    assert calls == ["a", "b"]
    assert out == vectorize_inner(parallelize_outer(_nest(2)))


def test_asp_dump_ir_prints_every_stage(monkeypatch, capsys):
    monkeypatch.setenv("ASP_DUMP_IR", "1")
    monkeypatch.setattr(dump, "stages", [])
    run_pipeline(_nest(2), [parallelize_outer, vectorize_inner], title="dumptest")
    err = capsys.readouterr().err
    assert "=== asp: dumptest: input ===" in err
    assert "=== asp: dumptest: after parallelize_outer ===" in err
    assert "=== asp: dumptest: after vectorize_inner ===" in err
    assert err.index("after parallelize_outer") < err.index("after vectorize_inner")
    assert "#pragma omp parallel for schedule(static)" in err
    assert "#pragma omp simd" in err
    assert [t for t, _ in dump.stages] == ["dumptest: input", "dumptest: after parallelize_outer",
                                          "dumptest: after vectorize_inner"]


def test_dump_api_collects_stages_without_printing(monkeypatch, capsys):
    monkeypatch.delenv("ASP_DUMP_IR", raising=False)
    monkeypatch.setattr(dump, "stages", [])
    monkeypatch.setattr(dump, "enabled", True)
    run_pipeline(_nest(1), [functools.partial(parallelize_outer, schedule="guided")],
                 title="api")
    assert capsys.readouterr().err == ""
    titles = [t for t, _ in dump.stages]
    assert titles[0] == "api: input"
    assert titles[1].startswith("api: after ")
    assert "schedule(guided)" in dump.stages[1][1]
    assert "schedule(guided)" not in dump.stages[0][1]


def test_no_dump_when_disabled(monkeypatch, capsys):
    monkeypatch.delenv("ASP_DUMP_IR", raising=False)
    monkeypatch.setattr(dump, "stages", [])
    monkeypatch.setattr(dump, "enabled", False)
    run_pipeline(_nest(1), [parallelize_outer], title="quiet")
    assert dump.stages == []
    assert capsys.readouterr().err == ""


def test_format_ir_of_non_platform_nodes_is_a_tree():
    import dataclasses

    from asp.ir.node import Node

    @dataclasses.dataclass(frozen=True)
    class Stencil(Node):
        radius: int
        body: tuple = ()
        child_fields = ("body",)

    text = format_ir(Stencil(1, (ir.Var("x"),)))
    assert text.splitlines()[0] == "Stencil(radius=1)"
    assert "Var(name='x')" in text


def test_vectorize_inner_gives_a_carried_sum_its_reduction_clause():
    """``s += a[j]`` carries s between iterations: omp simd needs ``reduction(+:s)``."""
    from asp.ir import platform as ir
    from asp.passes import vectorize_inner

    j = ir.Var("j")
    carried = ir.For("j", ir.Const(0, "int64_t"), ir.Var("n"), ir.Block((
        ir.Assign(ir.Var("s"), ir.ArrayRef("a", j), op="+"),)))
    private = ir.For("j", ir.Const(0, "int64_t"), ir.Var("n"), ir.Block((
        ir.Declare("double", "t", ir.ArrayRef("a", j)),
        ir.Assign(ir.Var("t"), ir.Const(2.0), op="*"),
        ir.Assign(ir.ArrayRef("b", j), ir.Var("t")),)))
    fn = ir.Function("f", (), ir.Block((ir.Declare("double", "s", ir.Const(0.0)), carried,
                                        private)))
    out = vectorize_inner(fn)
    loops = [n for n in out.body.walk() if isinstance(n, ir.For)]
    assert [lp.simd for lp in loops] == [True, True]
    assert [lp.reductions for lp in loops] == [(("+", "s"),), ()]


def test_fold_decides_conditions_of_constants_as_c_does():
    """Comparisons of two constants of one type, ``!`` of a constant, and ``&&`` / ``||``
    whose constant left operand decides (C never evaluates the right one) fold to a bool
    constant: how the front end knows a branch is dead.  Anything whose value C computes
    from an operand that is not constant is kept, operand and all (its checks run)."""
    c, x = ir.Const, ir.Var("x")
    assert fold_constants(ir.BinOp(">", c(3, "int64_t"), c(5, "int64_t"))) == c(False, "bool")
    assert fold_constants(ir.BinOp("<=", c(-0.0), c(0.0))) == c(True, "bool")
    assert fold_constants(ir.BinOp("!=", c(float("nan")), c(0.0))) == c(True, "bool")
    assert fold_constants(ir.UnaryOp("!", c(0, "int64_t"))) == c(True, "bool")
    # A float literal is rounded as C reads 0.1f: equal to float32(0.1)'s double value.
    assert fold_constants(ir.BinOp("==", c(0.1, "float"), c(0.10000000149011612, "float"))) \
        == c(True, "bool")
    assert fold_constants(ir.BinOp("&&", c(False, "bool"), ir.BinOp(">", x, c(0.0)))) \
        == c(False, "bool")
    assert fold_constants(ir.BinOp("||", c(1, "int64_t"), x)) == c(True, "bool")
    assert fold_constants(ir.BinOp("||", c(False, "bool"), ir.BinOp(
        "==", c(2, "int64_t"), c(2, "int64_t")))) == c(True, "bool")
    for kept in (ir.BinOp("||", ir.BinOp(">=", x, c(0.0)), c(True, "bool")),  # x still runs
                 ir.BinOp("&&", c(True, "bool"), x),  # the value is x's truth, not x
                 ir.BinOp(">", c(2**53 + 1, "int64_t"), c(2.0**53)),  # two C types
                 ir.BinOp("<", c(1, "uint64_t"), c(2, "uint64_t")),  # not folded: unsigned
                 ir.UnaryOp("!", x)):
        assert fold_constants(kept) == kept
