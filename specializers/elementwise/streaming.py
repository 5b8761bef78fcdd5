"""The ``stream`` variant of an elementwise map: each 64-byte line of the output
computed into a small buffer (``omp simd``) and written with one non-temporal store,
so the output is never read for ownership (:mod:`asp.codegen.streaming`).

A map over large arrays moves its inputs and its output through memory once; with
plain stores each output line is also read first.  Poly on 10M float64 (two threads,
an Intel Xeon VM whose copy reads 24-27 GB/s): 5.2-5.9 ms a call with streaming stores
against 7.3-7.6 with plain ones, bit for bit the same.  The elements before the
output's first line boundary and after its last are stored as usual; each thread
fences its streamed lines before the team's barrier.  Only for maps without loops
(a loop's work hides the stores) whose result is float64 or float32 and that convert
nothing Python would refuse (those report through a flag the lines do not carry).
"""
from __future__ import annotations

from asp.frontend.scalar import ScalarFunction
from asp.ir import platform as ir
from asp.runtime.abi import ArgSpec

__all__ = ["LINE", "stream_function"]

#: Bytes of a cache line: the unit of one streaming store.
LINE = 64
_I64 = "int64_t"
_SUFFIX = {"double": ("f64", 8), "float": ("f32", 4)}


def _c(v: int) -> ir.Const:
    return ir.Const(v, _I64)


def stream_function(sf: ScalarFunction, names: list[str], specs: tuple[ArgSpec, ...],
                    out_ctype: str, *, when: ir.Expr, size: ir.Expr,
                    params: tuple[ir.Param, ...]) -> ir.Function | None:
    """``kernel_stream`` (the output's lines streamed), or None where it does not apply."""
    if out_ctype not in _SUFFIX or sf.checked:
        return None
    sfx, itemsize = _SUFFIX[out_ctype]
    width = LINE // itemsize
    out = names[-1]

    def value(index: ir.Expr) -> ir.Expr:
        args = tuple(ir.ArrayRef(n, index) if s.kind == "array" else ir.Var(n)
                     for n, s in zip(names[:-1], specs[:-1]))
        return ir.Cast(out_ctype, sf.call(args))

    def plain(lo: ir.Expr, hi: ir.Expr) -> ir.For:
        k = ir.Var("k")
        return ir.For("k", lo, hi, ir.Block((ir.Assign(ir.ArrayRef(out, k), value(k)),)),
                      independent=True)

    n, head, lines, tail = (ir.Var(x) for x in ("n", "asp_head", "asp_lines", "asp_tail"))
    start = ir.Call(f"asp_line_start_{sfx}", (ir.Var(out), _c(0), _c(0)))
    c, j = ir.Var("asp_c"), ir.Var("asp_j")
    line = ir.For("asp_l", _c(0), lines, ir.Block((
        ir.Declare(_I64, "asp_c", ir.BinOp("+", head, ir.BinOp("*", ir.Var("asp_l"),
                                                                  _c(width))), const=True),
        ir.Declare(out_ctype, "asp_buf", size=width),
        ir.For("asp_j", _c(0), _c(width), ir.Block((
            ir.Assign(ir.ArrayRef("asp_buf", j), value(ir.BinOp("+", c, j))),)),
            independent=True, simd=True),
        ir.ExprStmt(ir.Call(f"asp_stream_line_{sfx}", (
            ir.UnaryOp("&", ir.ArrayRef(out, c)), ir.Var("asp_buf")))),
    )), parallel=ir.Parallel(schedule="static", nowait=True), independent=True)
    team = ir.Region(ir.Block((line, ir.ExprStmt(ir.Call("asp_sfence", ())))),
                     when=when, independent=True)
    body = ir.Block((
        ir.Declare(_I64, "n", size, const=True),
        ir.Declare(_I64, "asp_head", ir.Ternary(ir.BinOp("<", start, n), start, n),
                   const=True),
        ir.Declare(_I64, "asp_lines", ir.BinOp("/", ir.BinOp("-", n, head), _c(width)),
                   const=True),
        ir.Declare(_I64, "asp_tail", ir.BinOp("+", head, ir.BinOp("*", lines, _c(width))),
                   const=True),
        plain(_c(0), head),
        team,
        plain(tail, n),
        ir.Return(ir.Const(0, "int32_t")),
    ))
    return ir.Function("kernel_stream", params, body, ret="int")
