"""Lowering of the stencil domain IR to the core's platform IR, one function per variant.

The iteration space is the grid of the output (``'interior'`` mode: the points at
least ``ghost_depth`` from every edge).  With a boundary mode, it is split into
an *interior box*, where every neighbour read stays inside the grid and the
code has no bounds checks (so the innermost loop vectorizes), and *border
slabs*, where each read's index is remapped by the mode (scipy.ndimage's
rules).  The box and the slabs of one call run on one team of threads (one
:class:`~asp.ir.platform.Region`, each nest a work-shared loop): the slabs are
thin, and a team of their own each cost more than their work.  The slabs are one
work-sharing helper function every variant's team calls, so they are compiled
once per signature, not once per variant.  The output point
is kept in a register (``asp_acc``): read once if the kernel reads or accumulates
into it, written once at the end.  The neighbourhoods' offsets and distances are
constant tables in the IR (:class:`~asp.ir.platform.Declare` with ``values``).
"""
from __future__ import annotations

import dataclasses

from asp.codegen.entry import abi_params, extent_name
from asp.ir import platform as ir
from asp.ir.node import Transformer
from asp.ir.pyscalar import UNREP
from asp.runtime.abi import ArgSpec
from specializers.stencil.aliasing import lag_prologue, line_loops
from specializers.stencil.domain import (
    Coord,
    Distance,
    GridRead,
    GridWrite,
    NeighborLoop,
    StencilIR,
    TableRead,
    radius,
)

__all__ = ["MODES", "lower", "neighbor_loops", "needs_load"]

MODES = ("interior", "constant", "nearest", "reflect", "mirror", "wrap")
I64 = "int64_t"


def _c(v: int) -> ir.Const:
    return ir.Const(v, I64)


def _add(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    if isinstance(b, ir.Const) and b.value == 0:
        return a
    if isinstance(b, ir.Const) and b.value < 0:
        return ir.BinOp("-", a, _c(-b.value))
    return ir.BinOp("+", a, b)


def _mul(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    return ir.BinOp("*", a, b)


def pname(name: str) -> str:
    """The C name of a kernel parameter (never a C keyword or an asp name)."""
    return f"p_{name}"


def needs_load(kernel: StencilIR) -> bool:
    """Whether the point's old output value is needed: the kernel reads or accumulates
    into ``out[x]`` before it first assigns it unconditionally."""
    out = kernel.out
    for stmt in kernel.loop.body.body:
        touches = any(isinstance(n, GridRead | GridWrite) and n.grid == out for n in stmt.walk())
        if not touches:
            continue
        if isinstance(stmt, GridWrite):
            return any(isinstance(n, GridRead) and n.grid == out for n in stmt.value.walk())
        return True
    return True


def neighbor_loops(kernel: StencilIR) -> list[NeighborLoop]:
    """The neighbour loops left after unrolling, in the order they are numbered
    (``asp_k<k>``, ``asp_off<k>``, ...)."""
    return [n for n in kernel.walk() if isinstance(n, NeighborLoop)]


def _tables(k: int, lp: NeighborLoop) -> list[ir.Stmt]:
    """The constant tables of neighbour loop ``k``: its offsets (``dim`` per point), and
    the distance of each point from the centre if the kernel asks for it."""
    flat = tuple(o for off in lp.offsets for o in off) or (0,)  # C has no empty array
    out: list[ir.Stmt] = [ir.Declare(I64, f"asp_off{k}", values=flat)]
    if any(isinstance(n, Distance) and n.nbr == lp.var for n in lp.walk()):
        dist = tuple(sum(o * o for o in off) ** 0.5 for off in lp.offsets) or (0.0,)
        out.append(ir.Declare("double", f"asp_dist{k}", values=dist))
    return out


class _Body(Transformer):
    """The per-point body in platform IR, for either the interior box or a border slab."""

    def __init__(self, kernel: StencilIR, loops: list[NeighborLoop], dim: int, *,
                 checked: bool, mode: str, cval: float, ivars: list[ir.Expr]):
        self.k, self.dim, self.checked, self.mode, self.cval = kernel, dim, checked, mode, cval
        self.loop_ids = {id(lp): i for i, lp in enumerate(loops)}
        self.nbr_ids: dict[str, int] = {}
        self.ivars = ivars
        self.scalars = {n for n, _ in kernel.scalars}
        self.locals = {n for n, _ in kernel.locals}
        self.shape_of = kernel.loop.grid

    def extent(self, grid: str, axis: int) -> ir.Expr:
        return ir.Var(extent_name(pname(grid), axis))

    def coords(self, offset, nbr) -> list[ir.Expr]:
        if offset is not None:
            return [_add(v, _c(o)) for v, o in zip(self.ivars, offset)]
        if nbr is not None:
            k = self.nbr_ids[nbr]
            return [_add(v, ir.ArrayRef(f"asp_off{k}", _add(_mul(ir.Var(f"asp_k{k}"),
                                                                 _c(self.dim)), _c(a))))
                    for a, v in enumerate(self.ivars)]
        return list(self.ivars)

    def linear(self, grid: str, coords: list[ir.Expr]) -> ir.Expr:
        e = coords[0]
        for a in range(1, len(coords)):
            e = _add(_mul(e, self.extent(grid, a)), coords[a])
        return e

    def visit_GridRead(self, node: GridRead):
        if node.grid == self.k.out and node.offset is None and node.nbr is None:
            return ir.Var("asp_acc")
        arr = pname(node.grid)
        if not self.checked:
            if node.nbr is not None:  # linear offsets precomputed once per call
                k = self.nbr_ids[node.nbr]
                base = self.linear(node.grid, list(self.ivars))
                return ir.ArrayRef(arr, _add(base, ir.ArrayRef(f"asp_lin{k}",
                                                               ir.Var(f"asp_k{k}"))))
            return ir.ArrayRef(arr, self.linear(node.grid, self.coords(node.offset, node.nbr)))
        coords = self.coords(node.offset, node.nbr)
        if self.mode == "constant":
            inside = None
            for a, c in enumerate(coords):
                test = ir.BinOp("<", ir.Cast("uint64_t", c),
                                ir.Cast("uint64_t", self.extent(node.grid, a)))
                inside = test if inside is None else ir.BinOp("&&", inside, test)
            ctype = self.k.grid(node.grid).ctype
            return ir.Ternary(inside, ir.ArrayRef(arr, self.linear(node.grid, coords)),
                              ir.Const(self.cval, ctype))
        fixed = [ir.Call(f"asp_{self.mode}", (c, self.extent(node.grid, a)))
                 for a, c in enumerate(coords)]
        return ir.ArrayRef(arr, self.linear(node.grid, fixed))

    def visit_TableRead(self, node: TableRead):
        index = self.visit(node.index)
        fixed = ir.Call("asp_index", (index, ir.Var(extent_name(pname(node.grid), 0)),
                                      ir.UnaryOp("&", ir.Var("asp_bad"))))
        return ir.ArrayRef(pname(node.grid), fixed)

    def visit_Distance(self, node: Distance):
        k = self.nbr_ids[node.nbr]
        return ir.ArrayRef(f"asp_dist{k}", ir.Var(f"asp_k{k}"))

    def visit_Coord(self, node: Coord):
        if node.axis >= self.dim:
            return _c(0)
        return self.coords(node.offset, node.nbr)[node.axis]

    def visit_Var(self, node: ir.Var):
        if node.name in self.scalars:
            return ir.Var(pname(node.name))
        if node.name in self.locals:
            return ir.Var(f"l_{node.name}")
        return node

    def visit_GridWrite(self, node: GridWrite):
        return ir.Assign(ir.Var("asp_acc"), self.visit(node.value))

    def visit_NeighborLoop(self, node: NeighborLoop):
        k = self.loop_ids[id(node)]
        self.nbr_ids[node.var] = k
        body = self.visit(node.body)
        return ir.For(f"asp_k{k}", _c(0), _c(len(node.offsets)), body)


def _point_body(kernel, loops, dim, ivars, *, checked, mode, cval, load, store) -> ir.Block:
    lowered = _Body(kernel, loops, dim, checked=checked, mode=mode, cval=cval,
                    ivars=ivars).visit(kernel.loop.body)
    out = kernel.grid(kernel.out)
    t = _Body(kernel, loops, dim, checked=False, mode=mode, cval=cval, ivars=ivars)
    here = ir.ArrayRef(pname(out.name), t.linear(out.name, list(ivars)))
    head: list[ir.Stmt] = [ir.Declare(out.ctype, "asp_acc", here if load else None)]
    head += [ir.Declare(ct, f"l_{n}", ir.Const(0, ct)) for n, ct in kernel.locals]
    tail = store(here) if store else [ir.Assign(here, ir.Var("asp_acc"))]
    return ir.Block((*head, *lowered.body, *tail))


def _nest(ranges, body: ir.Block, first: int = 0) -> ir.For:
    # A point writes only the output at itself and reads no output elsewhere (the front
    # end enforces both): the points are independent, which the passes cannot prove for
    # jammed rows and streaming stores.
    for a in reversed(range(len(ranges))):
        lo, hi = ranges[a]
        body = ir.For(f"asp_i{first + a}", lo, hi, body if isinstance(body, ir.Block)
                      else ir.Block((body,)), independent=True)
    return body


def lower(kernel: StencilIR, names: list[str], specs: tuple[ArgSpec, ...], *, mode: str,
          cval: float, ghost: int, loops: list[NeighborLoop], streaming: bool,
          name: str, border: str | None = None, jam: int = 1,
          unjammed: str | None = None) -> ir.Function:
    """The kernel function of one variant (before platform passes).

    With a boundary mode, ``border`` names the work-sharing function (from
    :func:`.border.lower_border`) that computes the border slabs, and the interior box and a
    call of it are one :class:`~asp.ir.platform.Region`: every loop of the team
    without a barrier (``independent``: the box and the slabs write disjoint points,
    each only its own, and read no output another writes; the region's end waits for
    all), each thread's error bits or-ed together at the end.

    ``streaming``: the interior box writes each output row through a small buffer
    and non-temporal stores (only valid when :func:`needs_load` is False); ``jam``
    rows at a time (see :func:`_streaming_nest`).  ``unjammed``: the function (of the
    same parameters) a jammed variant calls when rows cannot be jammed, instead of a
    copy of that code of its own (the ``stream`` variant: one copy a unit).
    """
    dim = kernel.grid(kernel.loop.grid).ndim
    grid = pname(kernel.loop.grid)
    n = [ir.Var(extent_name(grid, a)) for a in range(dim)]
    ivars = [ir.Var(f"asp_i{a}") for a in range(dim)]
    load = needs_load(kernel)
    pre = _prologue(kernel, loops, dim, n)
    if mode == "interior":
        box = [(_c(ghost), ir.BinOp("-", n[a], _c(ghost)) if ghost else n[a])
               for a in range(dim)]
    else:
        lo, hi = radius(kernel, dim)
        box = _box(lo, hi, n, pre)
    if streaming:
        interior = _streaming_nest(kernel, loops, dim, box, ivars, mode, cval, pre, jam)
    else:
        body = _point_body(kernel, loops, dim, ivars, checked=False, mode=mode, cval=cval,
                           load=load, store=None)
        interior = _nest(box, body)
    params = abi_params([pname(x) for x in names], specs)
    if border is None:
        work: ir.Stmt = interior
    else:
        call = ir.Call(border, tuple(ir.Var(p.name) for p in params))
        work = _team(interior, ir.Assign(ir.Var("asp_bad"), call, "|"))
    if unjammed is not None and isinstance(work, ir.If):  # jammed rows, or the rows alone
        call = ir.Call(unjammed, tuple(ir.Var(p.name) for p in params))
        work = dataclasses.replace(work, orelse=ir.Block((ir.Return(call),)))
    body = ir.Block((*pre, work, _result(kernel)))
    return ir.Function(name, params, body, ret="int")


def _team(interior: ir.Stmt, border: ir.Stmt) -> ir.Stmt:
    """The interior box and the call of the border slabs in one region.  A choice
    between two boxes (the jammed rows or not) is made before the team starts: a region
    in each branch, one per call either way."""
    if isinstance(interior, ir.If):
        then, orelse = interior.then.body, interior.orelse.body
        return dataclasses.replace(interior, then=ir.Block((_team(*then, border),)),
                                   orelse=ir.Block((_team(*orelse, border),)))
    return ir.Region(ir.Block((_shared(interior), border)), independent=True,
                     reductions=(("|", "asp_bad"),))


def _shared(stmt: ir.Stmt, collapse: int = 1) -> ir.Stmt:
    """``stmt`` with its outermost loops work-shared among a region's team, without a
    barrier at their ends (2-D jammed rows are a block of two loops: groups of rows,
    then the rows left over)."""
    if isinstance(stmt, ir.Block):
        return ir.Block(tuple(_shared(s, collapse) for s in stmt.body))
    return dataclasses.replace(stmt, parallel=ir.Parallel(collapse=collapse, nowait=True))


#: Bytes of one cache line: the unit of a streaming store.
LINE = 64


def _streaming_nest(kernel, loops, dim, box, ivars, mode, cval, prologue: list[ir.Stmt],
                    jam: int = 1) -> ir.Stmt:
    """The interior box, each row's cache-line-aligned middle written with streaming stores.

    Per row: points up to the first 64-byte boundary of the output are stored as
    usual; then each cache line's points are computed (``omp simd``) into a
    line-sized buffer and leave with one non-temporal store, so the output is never
    read for ownership: at once, or ``asp_lag`` lines later through a ring in L1 when
    the output's page offset would make the loads wait on the pending stores (the lag
    chosen per call in ``prologue``: :mod:`.aliasing`); the remainder is stored as
    usual; an ``sfence`` at the end of each iteration of the outermost loop (a row in
    2-D, a plane in 3-D) orders the streamed lines before the loop's barrier.  Needs
    ``dim >= 2`` (the fence runs on the thread that streamed).

    ``jam > 1`` (unroll and jam): ``jam`` neighbouring rows along the next-to-last
    axis are computed in the same loops, so a point's neighbours in the rows they
    share are loaded once for all of them (a 5-point sweep loads 1.5 rows per row
    instead of 3).  The rows' cache lines then start at the same column only when
    a row is a whole number of lines long; otherwise each row is done alone; the rows
    left over (fewer than ``jam``) are stored as usual.
    """
    out = kernel.grid(kernel.out)
    last = dim - 1
    iv = ivars[last]
    width = LINE // (8 if out.ctype == "double" else 4)
    c, a0, tail = ir.Var("asp_c"), ir.Var("asp_a0"), ir.Var("asp_tail")
    s0, e = box[last]
    t = _Body(kernel, loops, dim, checked=False, mode=mode, cval=cval, ivars=ivars)
    optr = ir.Var(pname(out.name))
    prologue += lag_prologue(kernel, dim, [lo for lo, _ in box], jam,
                             t.linear, pname)

    def rows(count: int) -> ir.Block:
        """``count`` rows starting at the current index of the next-to-last axis."""
        r = dim - 2
        names = [list(ivars)] if count == 1 else [
            [ir.Var(f"asp_j{k}") if a == r else v for a, v in enumerate(ivars)]
            for k in range(count)]
        pre = [] if count == 1 else [
            ir.Declare(I64, f"asp_j{k}", ir.BinOp("+", ivars[r], _c(k)), const=True)
            for k in range(count)]
        bufs = ["asp_buf" if count == 1 else f"asp_buf{k}" for k in range(count)]

        def to_buffer(buf):
            return lambda here: [ir.Assign(ir.ArrayRef(buf, ir.BinOp("-", iv, c)),
                                           ir.Var("asp_acc"))]

        # One row's body as it is; several in a scope each (they declare alike).
        lines = [_point_body(kernel, loops, dim, v, checked=False, mode=mode, cval=cval,
                             load=False, store=to_buffer(buf)) for v, buf in zip(names, bufs)]
        lines = lines[0] if count == 1 else ir.Block(tuple(lines))
        # The points before the first whole line and after the last (fewer than a line
        # each) a row at a time, whatever the jam: one copy of the body, not one a row
        # (a 2-D unit's three jammed variants held 28 copies for them, now 6; gcc's time).
        one = list(ivars) if count == 1 else [
            ir.Var("asp_jr") if a == r else v for a, v in enumerate(ivars)]
        plain = _point_body(kernel, loops, dim, one, checked=False, mode=mode, cval=cval,
                            load=False, store=None)

        def scalar(lo, hi) -> ir.For:
            loop = ir.For(iv.name, lo, hi, plain, independent=True)
            if count == 1:
                return loop
            return ir.For("asp_jk", _c(0), _c(count), ir.Block((
                ir.Declare(I64, "asp_jr", ir.BinOp("+", ivars[r], ir.Var("asp_jk")),
                           const=True), loop)), independent=True)
        starts = [t.linear(out.name, [*v[:last], _c(0)]) for v in names]
        first_line = ir.Call(f"asp_line_start_{_suffix(out.ctype)}", (optr, starts[0], s0))
        # The line's points from a counter at 0: with ``iv`` from asp_c to asp_c + width
        # gcc guarded every line against the bound's overflow (a 3-D ringed sweep 7-10 %
        # slower, the ring loop's invariants spilled).
        simd = ir.For("asp_k", _c(0), _c(width), ir.Block((
            ir.Declare(I64, iv.name, ir.BinOp("+", c, ir.Var("asp_k")), const=True), lines)),
            independent=True, simd=True)
        return ir.Block((
            *pre,
            ir.Declare(I64, "asp_a0", ir.Ternary(ir.BinOp("<", first_line, e), first_line, e),
                       const=True),
            ir.Declare(I64, "asp_tail", ir.BinOp("+", a0, ir.BinOp(
                "*", ir.BinOp("/", ir.BinOp("-", e, a0), _c(width)), _c(width))), const=True),
            scalar(s0, a0),
            line_loops(simd, optr, starts, bufs, out.ctype, _suffix(out.ctype), e),
            scalar(tail, e),
        ))

    def fenced(stmt: ir.Stmt) -> ir.Stmt:
        """One ``sfence`` at the end of each iteration of the outermost loops (the ones a
        thread is given), not per row: it waits for the streamed lines to drain, and per
        row of a 256^3 grid (2 KiB) it made every streaming variant 1.2-1.5x slower
        than plain stores."""
        if isinstance(stmt, ir.Block):
            return ir.Block(tuple(fenced(x) for x in stmt.body))
        if isinstance(stmt, ir.For):
            fence = ir.ExprStmt(ir.Call("asp_sfence", ()))
            return dataclasses.replace(stmt, body=ir.Block((*stmt.body.body, fence)))
        return stmt

    one = fenced(_nest(box[:last], rows(1)))
    if jam == 1 or dim < 2:
        return one
    r = dim - 2
    lo, hi = box[r]
    full = ir.BinOp("+", lo, ir.BinOp("*", ir.BinOp("/", ir.BinOp("-", hi, lo), _c(jam)),
                                      _c(jam)))
    # The rows left over (fewer than ``jam``, of the grid in 2-D, of each plane in 3-D)
    # with plain stores: a streamed row of its own was a fourth copy of the body in each
    # jammed variant, for at most 0.3 % of a 4096^2 grid's rows.
    plain = _point_body(kernel, loops, dim, ivars, checked=False, mode=mode, cval=cval,
                        load=False, store=None)
    groups = ir.Block((ir.For(ivars[r].name, lo, full, rows(jam), step=_c(jam),
                              independent=True),
                       _nest([(full, hi), box[last]], plain, first=r)))
    jammed = fenced(_nest(box[:r], groups))
    # A row is a whole number of cache lines: every row's lines start at one column.
    stride = t.linear(out.name, [_c(1) if a == r else _c(0) for a in range(dim)])
    size = 8 if out.ctype == "double" else 4
    whole = ir.BinOp("==", ir.BinOp("%", ir.BinOp("*", stride, _c(size)), _c(LINE)), _c(0))
    return ir.If(whole, ir.Block((jammed,)), ir.Block((one,)))


def _suffix(ctype: str) -> str:
    return {"double": "f64", "float": "f32"}.get(ctype, "any")


def converts(kernel) -> bool:
    """Whether the kernel has checked operations (a float -> int conversion, Python-int
    arithmetic) that report through the UNREP flag."""
    return any(n == UNREP for n in kernel.walk())


def _result(kernel) -> ir.Stmt:
    """``return`` of the error code: 1 (bit 0) a lookup table index out of range, 2
    (bit 1) a float -> int conversion Python would refuse or do with an unbounded int."""
    if not converts(kernel):
        return ir.Return(ir.Var("asp_bad"))
    return ir.Return(ir.BinOp("|", ir.Var("asp_bad"),
                              ir.Ternary(ir.Var("asp_unrep_v"), _c(2), _c(0))))


def _prologue(kernel, loops, dim, n) -> list[ir.Stmt]:
    pre: list[ir.Stmt] = [ir.Declare("int", "asp_bad", ir.Const(0, "int"))]
    if converts(kernel):
        pre += [ir.Declare("int", "asp_unrep_v", ir.Const(0, "int")),
                ir.Declare("int *const", UNREP.name, ir.UnaryOp("&", ir.Var("asp_unrep_v")))]
    for k, lp in enumerate(loops):
        pre += _tables(k, lp)
        # Linear offsets of the neighbourhood for this call's grid shape.
        cnt = len(lp.offsets)
        pre.append(ir.Declare(I64, f"asp_lin{k}", size=max(cnt, 1)))
        strides = [n[a] for a in range(1, dim)] + [_c(1)] * (3 - dim)
        pre.append(ir.ExprStmt(ir.Call("asp_linear_offsets", (
            ir.Var(f"asp_lin{k}"), ir.Var(f"asp_off{k}"), _c(cnt), _c(dim), *strides[:2]))))
    return pre


def _box(lo, hi, n, pre: list[ir.Stmt]) -> list[tuple[ir.Expr, ir.Expr]]:
    """The interior box's bounds per axis (declared into ``pre``)."""
    box = []
    for a in range(len(n)):
        s, e = f"asp_s{a}", f"asp_e{a}"
        pre.append(ir.Declare(I64, s, ir.Ternary(ir.BinOp("<", _c(lo[a]), n[a]), _c(lo[a]),
                                                 n[a]), const=True))
        stop = ir.BinOp("-", n[a], _c(hi[a])) if hi[a] else n[a]
        pre.append(ir.Declare(I64, e, ir.Ternary(ir.BinOp(">", ir.Var(s), stop), ir.Var(s),
                                                 stop), const=True))
        box.append((ir.Var(s), ir.Var(e)))
    return box
