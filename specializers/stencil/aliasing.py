"""Streamed rows that stay clear of the loads: 4K aliasing and the ring of lines.

An x86 core first compares a load's address with the pending stores' by the low 12
bits (the offset in a 4 KiB page); a load that matches one waits for it.  Non-temporal
stores stay pending for long (they drain to memory, not to L1), and a sweep's loads run
up to a few hundred bytes ahead of its stores: when an output row's page offset lies
just past an input row's, every line streamed stalls the loads behind it.  That is the
common case, not a corner: two NumPy arrays of one size start at the same page offset.
Measured on a Zen 2 (2-D 5-point 4096^2, two threads): ``stream_jam4`` 5.75 ms a sweep
with the output at the input's page offset and 6.98 at 64 bytes past it, against 4.95
at 2 KiB; 3-D 7-point 256^3 9.2 and 13.5 against 7.4.  Plain stores drain to L1 at once
and hardly notice (``static`` within 3 %).

So the lag between computing a line and streaming it is chosen per call, before the
team starts, from the rows' addresses (:func:`lag_prologue`): 0 when no output row's
offset lies in the band the loads reach, and each line leaves from a buffer at once, as
before; else ``LAG`` lines, through a ring of :data:`RING` lines in L1 (which moves the
band ``64 * LAG`` bytes on).  Measured side by side (the same sweeps, fast memory): at
the input's offset ``stream_jam2`` 9.3-9.6 -> 6.2-6.3 ms, ``stream_jam4`` 5.6-5.7 ->
5.1-5.3, 3-D ``stream`` 9.0-9.4 -> 8.7-9.0; at 64 bytes past it 9.7 -> 6.2, 6.9 -> 5.2,
13.9 -> 8.8; at 2 KiB unchanged.  The ring's store and load per line cost 5-15 %
against a clear offset, hence two loops, not one (the second costs gcc 40 % more time
for the streaming variants, compiled after the first call).
"""
from __future__ import annotations

from asp.ir import platform as ir
from asp.ir.types import dtype_of
from specializers.stencil.domain import GridRead, NeighborLoop, StencilIR
from specializers.stencil.ringir import LINE
from specializers.stencil.ringir import block as _block
from specializers.stencil.ringir import c as _c
from specializers.stencil.ringir import op as _op
from specializers.stencil.ringir import v as _v

__all__ = ["LAG", "LOOKAHEAD", "PREAMBLE", "RING", "lag_prologue", "line_loops", "row_reads"]

#: Lines in a row's ring (a power of two) and the lag used when the stores at once
#: would alias the loads.
RING, LAG = 16, 8

#: C helpers: which lags alias, the lag to use, the store of a line ``lag`` behind the
#: one just computed and the lines still in the ring at the row's end.  A pending line
#: at byte ``s`` of the output (``d`` bytes past the input's page offset) meets the loads
#: of the input row at points ahead of it, which reach ``below`` bytes before the point
#: and ``above`` after it, if ``d`` lies in ``(-below, LOOKAHEAD + above)``.  Measured:
#: stores 0-256 bytes past an input row read at its points' left neighbours stalled, 320
#: and more did not, nor did 0 for rows read at the point only.
LOOKAHEAD = 320
PREAMBLE = (f"#define ASP_RING {RING}\n#define ASP_LAG {LAG}\n#define ASP_LOOKAHEAD {LOOKAHEAD}\n"
            + r"""
static inline int asp_alias_bits(uintptr_t out, uintptr_t in, int64_t below, int64_t above) {
    /* bit k: the output's page offset lies in the band the loads reach with lag k * LAG */
    int bits = 0;
    for (int k = 0; k < 2; ++k) {
        int64_t lo = 64 * ASP_LAG * k + 1 - below, width = ASP_LOOKAHEAD - 1 + below + above;
        if ((int64_t)((out - in - (uintptr_t)lo) & 4095) < width) bits |= 1 << k;
    }
    return bits;
}
static inline int64_t asp_pick_lag(int bits) { return (bits & 1) && !(bits & 2) ? ASP_LAG : 0; }
#if defined(__GNUC__)
#define ASP_NOINLINE __attribute__((noinline))  /* once a row: inlined, +15 % compile time */
#else
#define ASP_NOINLINE
#endif
#define ASP_LAG_LINES(SFX, T, W) \
static inline void asp_lag_line_##SFX(T *dst, const T *ring, int64_t stride, uint64_t line, \
                                      int64_t lag) { \
    if (line >= (uint64_t)lag) \
        asp_stream_line_##SFX(dst - lag * W, ring + ((line - lag) & (ASP_RING - 1)) * stride); \
} \
static ASP_NOINLINE void asp_lag_drain_##SFX(T *first, const T *ring, int64_t stride, \
                                             int64_t lines, int64_t lag) { \
    for (int64_t l = lines > lag ? lines - lag : 0; l < lines; ++l) \
        asp_stream_line_##SFX(first + l * W, ring + (l & (ASP_RING - 1)) * stride); \
}
ASP_LAG_LINES(f64, double, 8)
ASP_LAG_LINES(f32, float, 16)
""")


def row_reads(kernel: StencilIR, dim: int) -> dict[tuple[str, tuple[int, ...]], tuple[int, int]]:
    """The rows the kernel reads (the output's own point aside): (grid, offset along every
    axis but the last) -> how far before and after the point it reads in that row."""
    loops = {n.var: n for n in kernel.walk() if isinstance(n, NeighborLoop)}
    reads: dict[tuple[str, tuple[int, ...]], tuple[int, int]] = {}
    for n in kernel.walk():
        if not isinstance(n, GridRead):
            continue
        if n.grid == kernel.out and n.offset is None and n.nbr is None:
            continue
        offsets = ([n.offset] if n.offset is not None else
                   list(loops[n.nbr].offsets) if n.nbr is not None else [(0,) * dim])
        for off in offsets:
            key = (n.grid, tuple(off[:-1]))
            below, above = reads.get(key, (0, 0))
            reads[key] = (max(below, -off[-1]), max(above, off[-1]))
    return reads


def lag_prologue(kernel: StencilIR, dim: int, first: list[ir.Expr], jam: int,
                 linear, pname) -> list[ir.Stmt]:
    """``asp_lag`` for this call: the rows of the first group of ``jam`` (``first``: the
    box's lowest index per axis) against every input row they read.  Rows further on
    are as far apart when the grids' rows are (their shapes agree); otherwise the
    lag suits the first rows only, which costs speed at worst, never a result."""
    out = kernel.grid(kernel.out)

    def address(grid: str, shift: tuple[int, ...], k: int) -> ir.Expr:
        size = dtype_of(kernel.grid(grid).ctype).itemsize
        r = dim - 2
        coords = [ir.BinOp("+", b, ir.Const(s + (k if a == r else 0), "int64_t"))
                  for a, (b, s) in enumerate(zip(first[:-1], shift))] + [first[-1]]
        return ir.BinOp("+", ir.Cast("uintptr_t", ir.Var(pname(grid))),
                        ir.Cast("uintptr_t", ir.BinOp("*", linear(grid, coords),
                                                      ir.Const(size, "int64_t"))))

    bits = ir.Var("asp_alias")
    stmts: list[ir.Stmt] = [ir.Declare("int", "asp_alias", ir.Const(0, "int"))]
    for (grid, shift), (below, above) in sorted(row_reads(kernel, dim).items()):
        size = dtype_of(kernel.grid(grid).ctype).itemsize
        for k in range(jam):
            store = address(out.name, (0,) * (dim - 1), k)
            stmts.append(ir.Assign(bits, ir.Call("asp_alias_bits", (
                store, address(grid, shift, k), ir.Const(below * size, "int64_t"),
                ir.Const(above * size, "int64_t"))), "|"))
    stmts.append(ir.Declare("int64_t", "asp_lag", ir.Call("asp_pick_lag", (bits,)),
                            const=True))
    return stmts


def line_loops(simd: ir.For, optr: ir.Var, starts: list[ir.Expr], bufs: list[str],
               ctype: str, sfx: str, end: ir.Expr) -> ir.Stmt:
    """The loop over a row group's whole lines (``asp_c`` from ``asp_a0``): ``simd``
    computes each row's line into its buffer ``bufs[k]``, streamed to ``optr`` at
    ``starts[k] + asp_c``.  With ``asp_lag`` 0 the buffers are local arrays, streamed at
    once; else slots of one ring (slot ``s`` holds line ``s`` of every row), each line
    streamed ``asp_lag`` lines later and the last ones after the loop.  Two loops: one
    loop for both ran 5-10 % slower at offsets that do not alias (the ring's stores and
    the test in every line), and the lag is fixed for a call."""
    count = len(bufs)
    width = LINE // dtype_of(ctype).itemsize
    c, a0, tail, lag = _v("asp_c"), _v("asp_a0"), _v("asp_tail"), _v("asp_lag")

    def at(start, col):
        return ir.UnaryOp("&", ir.ArrayRef(optr.name, _op("+", start, col)))

    def loop(*body: ir.Stmt) -> ir.For:
        return ir.For("asp_c", a0, _op("-", end, width - 1), _block(*body), step=_c(width),
                      independent=True)

    direct = loop(*(ir.Declare(ctype, buf, size=width) for buf in bufs), simd,
                  *(ir.ExprStmt(ir.Call(f"asp_stream_line_{sfx}", (at(start, c), _v(buf))))
                    for start, buf in zip(starts, bufs)))
    nth = _op("/", ir.Cast("uint64_t", _op("-", c, a0)), width)
    stride = _c(count * width)
    rings = [_op("+", _v("asp_ring"), k * width) for k in range(count)]
    ringed = loop(
        ir.Declare(f"{ctype} *const", "asp_slot", _op("+", _v("asp_ring"), _op(
            "*", _op("&", nth, RING - 1), stride))),
        *(ir.Declare(f"{ctype} *const", buf, _op("+", _v("asp_slot"), k * width))
          for k, buf in enumerate(bufs)), simd,
        *(ir.ExprStmt(ir.Call(f"asp_lag_line_{sfx}", (at(start, c), ring, stride, nth, lag)))
          for start, ring in zip(starts, rings)))
    lines = _op("/", _op("-", tail, a0), width)
    drain = [ir.ExprStmt(ir.Call(f"asp_lag_drain_{sfx}", (at(start, a0), ring, stride, lines,
                                                          lag)))
             for start, ring in zip(starts, rings)]
    return ir.If(_op("==", lag, 0), _block(direct), _block(
        ir.Declare(ctype, "asp_ring", size=RING * count * width), ringed, *drain))
