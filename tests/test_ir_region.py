"""Parallel regions, constant tables and thread-private scratch in the platform IR: the
printer's golden strings, the passes' legality around a region, generated C that
compiles and computes with a team of at least two threads, and the stencil's border
slabs on the same team as its interior box."""
from __future__ import annotations

import ctypes
import dataclasses
import re

import numpy as np
import pytest
from conftest import MIN_THREADS, openmp_max_threads

from asp.codegen import function_to_cgen, module_to_c
from asp.codegen.cprinter import _STMT
from asp.ir import platform as ir
from asp.jit import build
from asp.passes import (
    dependences,
    parallelize_outer,
    serial_below,
    tile_loops,
    vectorize_inner,
)
from specializers.stencil import StencilKernel

V = ir.Var


def I(v):  # noqa: E743 - an int64 literal
    return ir.Const(v, "int64_t")


def stmt(s: ir.Stmt) -> str:
    return "\n".join(str(g) for g in _STMT.visit(s))


def fill(array: str, value: ir.Expr, var: str = "i") -> ir.For:
    """``for (var = 0; var < n; ++var) array[var] = value;``"""
    return ir.For(var, I(0), V("n"), ir.Block((ir.Assign(ir.ArrayRef(array, V(var)), value),)))


def shared(loop: ir.For, **kw) -> ir.For:
    return dataclasses.replace(loop, parallel=ir.Parallel(**kw))


# -- printing --------------------------------------------------------------------------------

def test_region_golden():
    region = ir.Region(ir.Block((shared(fill("a", I(1)), nowait=True),
                                 shared(fill("b", I(2)), schedule="dynamic", chunk=8))),
                       when=ir.BinOp(">", V("n"), I(100)), num_threads=4,
                       reductions=(("|", "bad"),))
    assert stmt(region) == """\
#pragma omp parallel num_threads(4) if(n > 100) reduction(|:bad)
{
  #pragma omp for schedule(static) nowait
  for (int64_t i = 0; i < n; ++i)
  {
    a[i] = 1;
  }
  #pragma omp for schedule(dynamic, 8)
  for (int64_t i = 0; i < n; ++i)
  {
    b[i] = 2;
  }
}"""


def test_a_parallel_loop_outside_a_region_is_a_team_of_its_own():
    text = stmt(shared(fill("a", I(1)), nowait=True))
    assert text.splitlines()[0] == "#pragma omp parallel for schedule(static)"  # no nowait


def test_work_shared_loop_clauses_inside_a_region():
    loop = dataclasses.replace(fill("a", I(1)), simd=True, reductions=(("+", "s"),),
                               parallel=ir.Parallel(collapse=2, nowait=True))
    text = stmt(ir.Region(ir.Block((loop,))))
    assert "#pragma omp for simd schedule(static) collapse(2) reduction(+:s) nowait" in text


def test_loops_nested_in_a_region_print_by_where_they_are():
    """A serial loop every thread runs may hold a work-shared loop (each thread meets it
    the same times); inside a work-shared loop's body a parallel loop is a new team."""
    inner = shared(fill("a", I(1), var="j"))
    serial_outer = ir.For("t", I(0), I(3), ir.Block((inner,)))
    shared_outer = shared(ir.For("t", I(0), I(3), ir.Block((inner,))))
    text = stmt(ir.Region(ir.Block((serial_outer,))))
    assert text.count("#pragma omp for") == 1 and "parallel for" not in text
    text = stmt(ir.Region(ir.Block((shared_outer,))))
    assert text.count("#pragma omp for") == 1 and text.count("#pragma omp parallel for") == 1


@pytest.mark.parametrize("clause", [{"when": V("big")}, {"num_threads": 2}])
def test_team_clauses_on_a_work_shared_loop_are_refused(clause):
    with pytest.raises(ValueError, match="belong to its parallel region"):
        stmt(ir.Region(ir.Block((shared(fill("a", I(1)), **clause),))))


def test_a_worksharing_function_prints_orphaned_omp_for():
    fn = ir.Function("slabs", (), ir.Block((shared(fill("a", I(1)), nowait=True),)),
                     worksharing=True)
    text = str(function_to_cgen(fn))
    assert "#pragma omp for schedule(static) nowait" in text
    assert "omp parallel" not in text


def test_constant_table_golden():
    assert stmt(ir.Declare("int64_t", "off", values=(-1, 0, 2**40))) == \
        "static const int64_t off[3] = {-1, 0, INT64_C(1099511627776)};"
    assert stmt(ir.Declare("double", "w", values=(0.1, 1.0, -2.5e-300))) == \
        "static const double w[3] = {0.1, 1.0, -2.5e-300};"
    assert stmt(ir.Declare("float", "h", values=(0.5,), size=1)) == \
        "static const float h[1] = {0.5f};"


@pytest.mark.parametrize("kw, why", [({"values": ()}, "no values"),
                                      ({"values": (1, 2), "size": 3}, "size 3 but 2"),
                                      ({"values": (1,), "init": I(1)}, "values and init")])
def test_bad_constant_tables_are_refused(kw, why):
    with pytest.raises(ValueError, match=why):
        ir.Declare("int64_t", "t", **kw)


def test_scratch_declared_in_a_region_is_inside_its_block():
    text = stmt(ir.Region(ir.Block((ir.Declare("double", "scratch", size=8),
                                    shared(fill("a", I(1)))))))
    lines = text.splitlines()
    assert lines[:3] == ["#pragma omp parallel", "{", "  double scratch[8];"]


# -- compiled ------------------------------------------------------------------------------

def compiled(fn: ir.Function, *, includes=("stdint.h", "math.h"), helpers=()):
    lib = build(module_to_c(ir.Module((fn,), includes=includes, helpers=helpers)),
                kernel=f"test_ir_region.{fn.name}")
    cfn = getattr(lib.cdll, fn.name)
    cfn.restype = None
    cfn.argtypes = [ctypes.c_void_p] * (len(fn.params) - 1) + [ctypes.c_int64]
    return cfn


def params(*arrays: str, ctype: str = "double") -> tuple[ir.Param, ...]:
    return (*(ir.Param(a, ctype, pointer=True, restrict=True) for a in arrays),
            ir.Param("n", "int64_t"))


def test_team_runs_both_loops_and_constant_table():
    """Two work-shared loops on one team, the second reading a constant table."""
    tab = ir.ArrayRef("tab", ir.BinOp("%", V("i"), I(3)))
    body = ir.Block((
        ir.Declare("double", "tab", values=(0.5, -1.0, 2.0)),
        ir.Region(ir.Block((shared(fill("a", ir.Cast("double", V("i"))), nowait=True),
                            shared(fill("b", tab), nowait=True))), independent=True)))
    fn = compiled(ir.Function("two_loops", params("a", "b"), body))
    n = 1001
    a, b = np.zeros(n), np.zeros(n)
    fn(a.ctypes.data, b.ctypes.data, n)
    np.testing.assert_array_equal(a, np.arange(n))
    np.testing.assert_array_equal(b, np.resize([0.5, -1.0, 2.0], n))


def test_scratch_in_a_region_is_each_threads_own():
    """``me`` and ``scratch``, declared in the region, are private: each thread writes its
    own number into its share of the rows (shared, they would race to one number)."""
    threads = openmp_max_threads()
    assert threads is not None and threads >= MIN_THREADS
    me = ir.Declare("int64_t", "me", ir.Call("omp_get_thread_num", ()))
    scratch = ir.Declare("int64_t", "scratch", size=4)
    j = V("j")
    row = ir.For("i", I(0), V("n"), ir.Block((
        ir.For("j", I(0), I(4), ir.Block((
            ir.Assign(ir.ArrayRef("scratch", j), ir.BinOp("+", V("me"), j)),))),
        ir.Assign(ir.ArrayRef("who", V("i")),
                  ir.BinOp("-", ir.ArrayRef("scratch", I(3)), I(3))),
    )), parallel=ir.Parallel())
    body = ir.Block((ir.Region(ir.Block((me, scratch, row))),))
    fn = compiled(ir.Function("private_scratch", params("who", ctype="int64_t"), body),
                  includes=("stdint.h", "omp.h"))
    n = 4096
    who = np.full(n, -1, np.int64)
    fn(who.ctypes.data, n)
    # schedule(static): thread t takes the t-th contiguous block of rows.
    blocks = np.array_split(np.arange(n), threads)
    for t, rows in enumerate(blocks):
        assert (who[rows] == t).all(), t


# -- passes --------------------------------------------------------------------------------

def region_fn(*, independent: bool) -> ir.Function:
    body = ir.Block((ir.Region(ir.Block((fill("a", ir.Cast("double", V("i"))),
                                         fill("b", ir.Const(2.0)))),
                               independent=independent),))
    return ir.Function("in_team", params("a", "b"), body)


def regions_and_loops(fn: ir.Function):
    return ([n for n in fn.walk() if isinstance(n, ir.Region)],
            [n for n in fn.walk() if isinstance(n, ir.For)])


@pytest.mark.parametrize("independent", [True, False])
def test_parallelize_outer_shares_a_regions_loops_on_its_team(independent):
    when = ir.BinOp(">", V("n"), I(1000))
    out = parallelize_outer(region_fn(independent=independent), collapse=2, when=when)
    (region,), loops = regions_and_loops(out)
    assert region.when == when  # the condition is the team's, not a loop's
    assert [lp.parallel for lp in loops] == [ir.Parallel(nowait=independent)] * 2
    text = str(function_to_cgen(out))
    assert text.count("#pragma omp parallel") == 1 and text.count("#pragma omp for") == 2
    assert parallelize_outer(out, collapse=2, when=when) == out  # idempotent


def test_parallelize_outer_leaves_a_dependent_loop_in_a_region_as_written():
    carried = ir.For("i", I(1), V("n"), ir.Block((ir.Assign(
        ir.ArrayRef("a", V("i")), ir.ArrayRef("a", ir.BinOp("-", V("i"), I(1)))),)))
    fn = ir.Function("f", params("a"), ir.Block((ir.Region(ir.Block((carried,))),)))
    assert regions_and_loops(parallelize_outer(fn))[1][0].parallel is None


def test_a_loop_holding_a_region_gets_no_team_of_its_own():
    """No nested team: the loop's body already starts one per iteration."""
    steps = ir.For("t", I(0), I(10), ir.Block((region_fn(independent=True).body.body[0],)))
    fn = ir.Function("steps", params("a", "b"), ir.Block((steps,)))
    out = vectorize_inner(parallelize_outer(fn))
    _, loops = regions_and_loops(out)
    assert loops[0].var == "t" and loops[0].parallel is None and not loops[0].simd
    assert all(lp.parallel == ir.Parallel(nowait=True) for lp in loops[1:])
    assert "omp parallel for" not in str(function_to_cgen(out))


def test_parallelize_outer_in_a_worksharing_function():
    fn = ir.Function("slabs", params("a"), ir.Block((fill("a", I(1)),)), worksharing=True)
    out = parallelize_outer(fn, when=V("big"))
    (loop,) = regions_and_loops(out)[1]
    assert loop.parallel == ir.Parallel()  # no if(): the caller's region decides
    assert "#pragma omp for" in str(function_to_cgen(out))


def test_tile_loops_inside_a_region_keeps_the_loop_shared():
    row = ir.ArrayRef("a", ir.BinOp("+", ir.BinOp("*", V("i"), V("n")), V("j")))
    nest = ir.For("i", I(0), V("n"), ir.Block((
        ir.For("j", I(0), V("n"), ir.Block((ir.Assign(row, ir.Const(1.0)),))),)))
    fn = ir.Function("t", params("a"), ir.Block((ir.Region(ir.Block((nest,)),
                                                           independent=True),)))
    out = tile_loops(parallelize_outer(fn), sizes=(None, 4))
    (_, loops) = regions_and_loops(out)
    assert loops[0].var == "j_t" and loops[0].parallel == ir.Parallel(nowait=True)


def test_serial_below_splits_a_region_and_both_branches_compute():
    when = ir.BinOp(">", V("n"), I(500))
    out = serial_below(parallelize_outer(region_fn(independent=True)), when=when)
    (top,) = out.body.body
    assert isinstance(top, ir.If) and top.cond == when
    (region,) = top.then.body
    assert isinstance(region, ir.Region)
    assert [s.parallel for s in top.orelse.body] == [None, None]  # one thread, no team
    cfn = compiled(out)
    for n in (100, 1000):  # the serial branch, then the team's
        a, b = np.zeros(n), np.zeros(n)
        cfn(a.ctypes.data, b.ctypes.data, n)
        np.testing.assert_array_equal(a, np.arange(n))
        np.testing.assert_array_equal(b, np.full(n, 2.0))


# -- the stencil: interior box and border slabs on one team ----------------------------------

class Correlate(StencilKernel):
    def kernel(self, u, c, w, out):
        for x in out.interior_points():
            s = c * u[x]
            for y in u.neighbors(x, 1):
                s += w * u[y]
            out[x] = s


class Accumulate(StencilKernel):
    """Reads its output (``+=``), so no streaming variants."""

    def kernel(self, u, out):
        for x in out.interior_points():
            for y in u.neighbors(x, 1):
                out[x] += 0.5 * u[y]


def regions_per_call(node: ir.Node) -> int:
    """How many parallel regions one run of ``node`` starts, on the path that starts most
    (an ``if`` runs one branch; a region inside a loop would start one per iteration)."""
    if isinstance(node, ir.Region):
        return 1
    if isinstance(node, ir.If):
        return max(regions_per_call(node.then),
                   regions_per_call(node.orelse) if node.orelse else 0)
    inside = sum(regions_per_call(c) for c in node.children())
    assert not (isinstance(node, ir.For | ir.While) and inside), "a region in a loop"
    return inside


def c_functions(source: str) -> dict[str, str]:
    """Each C function of ``source`` by name, its text up to the next function."""
    starts = list(re.finditer(r"^(?:static )?int (\w+)\(", source, re.M))
    return {m.group(1): source[m.start(): nxt.start() if nxt else len(source)]
            for m, nxt in zip(starts, [*starts[1:], None])}


MODES = ["constant", "nearest", "reflect", "mirror", "wrap"]


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("cls", [Correlate, Accumulate])
def test_border_slabs_run_on_the_interiors_team(cls, dim, mode, rng, monkeypatch):
    monkeypatch.setenv("ASP_TIERED", "0")  # every variant in the one source
    assert openmp_max_threads() >= MIN_THREADS
    shape = {2: (11, 37), 3: (5, 9, 19)}[dim]
    u = rng.uniform(-1, 1, shape)
    scalars = (1.5, 0.25) if cls is Correlate else ()
    k = cls(boundary=mode, cval=0.5)
    s = k.specialization(u, *scalars, np.zeros(shape))
    assert s.check_failures == {}, s.check_failures
    # The slabs: one work-sharing helper, in the IR (the dump shows it), shared loops only.
    (border,) = [h for h in s.plan.helpers if h.worksharing]
    assert border.worksharing and border.name == "stencil_border"
    assert border.optimize == "O2" and '__attribute__((optimize("O2")))' in s.source
    slabs = [lp for lp in border.body.body if isinstance(lp, ir.For)]
    assert len(slabs) == 2 * dim
    for lp in slabs:  # each slab's points independent, as the lowering shares them
        nest = [lp, lp.body.body[0]][:lp.parallel.collapse]
        assert lp.parallel.nowait and dependences(lp, tuple(x.var for x in nest)).independent
    funcs = c_functions(s.source)
    assert "omp parallel" not in funcs["stencil_border"]
    assert funcs["stencil_border"].count("#pragma omp for") == 2 * dim
    for v in s.plan.variants:
        # One team per call: the box's shared loops and the call of the slabs in it.
        assert regions_per_call(v.function.body) == 1, v.name
        text = funcs[v.function.name]  # (the tile points share ``stencil_tiled``)
        assert "omp parallel for" not in text, v.name
        regions = text.count("#pragma omp parallel reduction(|:asp_bad)")
        assert regions == 1, v.name  # a jammed one calls stencil_stream for unjammed rows
        assert text.count("return stencil_stream(") == v.name.startswith("stream_jam"), v.name
        assert text.count("stencil_border(") == regions, v.name  # the team's
        # Below the threshold: the serial loop every variant calls, the slabs in it.
        assert text.count("return stencil_serial(") == 1, v.name
    assert "omp parallel" not in funcs["stencil_serial"]
    assert funcs["stencil_serial"].count("stencil_border(") == 1
    # Every variant's team (the suite's threshold is 0) against the Python.
    args = (u, *scalars, np.zeros(shape))
    want = np.zeros(shape)
    cls(boundary=mode, cval=0.5, pure_python=True).kernel(u.copy(), *scalars, want)
    for name in s.variant_names:
        got = k.run_variant(name, *[a.copy() if isinstance(a, np.ndarray) else a
                                    for a in args])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12, err_msg=name)
