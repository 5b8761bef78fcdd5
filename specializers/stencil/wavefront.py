"""The C of one blocked iteration variant: overlapped tiles, a wavefront over time levels
within each tile, thread-private rings of rows (see :mod:`specializers.stencil.temporal`).

A kernel's state may have several levels (``K``: the wave equation's ``u, u_prev`` is
two): level ``l`` of a pass reads state parameter ``j`` at level ``l - 1 - j``, from a
ring when that level was computed in this pass, else from the pass's input grids
(``asp_src<j>``, the newest first).  A ring holds the rows its level's readers may
still need: ``(K + 1) R + 1`` rows, rounded up to a power of two.  The last ``K``
levels of a pass are its output (``asp_dst<j>``); all but the very last are also read
from their rings by later levels, so they are computed into the ring and their tile's
part copied out.

Nothing in a ring is read that this tile did not write, except at the grid's border,
which is zero after the first step (as ``K(u)`` leaves it): a ring row on the border is
cleared, and a ring row of a tile at the grid's edge gets zeros in the border columns
its readers reach (no clearing of whole rings per tile).
"""
from __future__ import annotations

import dataclasses

from asp.codegen.entry import abi_params, extent_name
from asp.ir import platform as ir
from asp.ir.pyscalar import UNREP
from asp.ir.types import dtype_of
from specializers.stencil.domain import GridRead
from specializers.stencil.lowering import _Body, converts, pname
from specializers.stencil.ringir import I64, LINE, ring_index, ring_rows
from specializers.stencil.ringir import block as _block
from specializers.stencil.ringir import c as _c
from specializers.stencil.ringir import op as _op
from specializers.stencil.ringir import v as _v
from specializers.stencil.ringir import vmax as _max
from specializers.stencil.ringir import vmin as _min
from specializers.stencil.sweeps import LAST, JammedSweeps
from specializers.stencil.variants import serial_points, vectorize_points
from specializers.stencil.vectors import Loads, NotVector, lanes

__all__ = ["BOUND", "STEPS", "Builder", "ring_rows"]

STEPS = "asp_steps"
#: The blocked function's parameters after the entry's own: the depth (steps per
#: pass), then the tile's extent along each axis (as many as the grid has).
BOUND = ("asp_depth", "asp_tile0", "asp_tile1", "asp_tile2")


class _LevelBody(_Body):
    """The kernel's per-point body with each state level read from ``sources``: state
    parameter -> ``("grid", array)`` or ``("ring", array)``."""

    def __init__(self, *args, sources: dict, ring: tuple, loads: Loads | None = None,
                 jj: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.sources, self.ring, self.loads, self.jj = sources, ring, loads, jj

    def visit_GridRead(self, node: GridRead):
        if node.grid not in self.sources:
            return super().visit_GridRead(node)
        kind, array = self.sources[node.grid]
        if self.loads is not None:  # a vector of a ring or grid row (jam row + offset, ...)
            if node.nbr is not None:
                raise NotVector("a read that is not at a constant offset")
            off = tuple(node.offset) if node.offset is not None else (0,) * self.dim
            return self.loads.read((array, self.jj + off[0], *off[1:-1]), off[-1])
        coords = self.coords(node.offset, node.nbr)
        if kind == "grid":
            return ir.ArrayRef(array, self.linear(node.grid, coords))
        return ir.ArrayRef(array, ring_index(coords, *self.ring))


class Builder(JammedSweeps):
    """Builds the IR function of one variant (depth, tile rows, tile width) of a kernel
    whose state is its first ``levels`` parameters.  ``names`` are the C names of the
    entry's parameters: the kernel's, then the other outputs ``asp_out<j>``, the scratch
    grids ``asp_tmp<j>`` and the number of steps."""

    level_body = _LevelBody  # how a level's point reads its sources

    def __init__(self, k, states: tuple[str, ...], names, specs, dim, ghost, reach):
        self.k, self.states, self.names, self.specs = k, states, names, specs
        self.K = len(states)
        self.dim, self.g, self.R = dim, ghost, reach
        self.ctype = k.grid(k.out).ctype
        self.outs = [pname(k.out)] + [f"asp_out{j}" for j in range(1, self.K)]
        self.tmps = [f"asp_tmp{j}" for j in range(self.K)]

    def n(self, a: int) -> ir.Var:
        return _v(extent_name(pname(self.states[0]), a))

    def linear(self, coords) -> ir.Expr:
        e = coords[0]
        for a in range(1, self.dim):
            e = _op("+", _op("*", e, self.n(a)), coords[a])
        return e

    def ivars(self) -> list[ir.Var]:
        return [_v(f"asp_i{a}") for a in range(self.dim)]

    def body(self, level_case: int, target: ir.ArrayRef, ring: tuple,
             ivars: list[ir.Var] | None = None, loads: Loads | None = None,
             jj: int = 0) -> ir.Block:
        """One point of a level ``l`` (``level_case``: ``l`` if ``l <= K``, else 0 for
        every state level from a ring), stored to ``target``; ``ivars``: the point's
        index variables (the loop's by default); ``loads``: its reads are the vectors
        of these (jam row ``jj``)."""
        sources = {}
        for j, name in enumerate(self.states):
            if level_case and j >= level_case - 1:  # the pass's input, level 1 - l + j
                sources[name] = ("grid", f"asp_src{j - (level_case - 1)}")
            else:
                sources[name] = ("ring", f"asp_rin{j}")
        t = self.level_body(self.k, [], self.dim, checked=False, mode="interior", cval=0.0,
                       ivars=ivars or self.ivars(), sources=sources, ring=ring,
                       loads=loads, jj=jj)
        lowered = t.visit(self.k.loop.body)
        head = [ir.Declare(self.ctype, "asp_acc")]
        head += [ir.Declare(ct, f"l_{n}", ir.Const(0, ct)) for n, ct in self.k.locals]
        return ir.Block((*head, *lowered.body, ir.Assign(target, _v("asp_acc"))))

    def nest(self, body: ir.Block, lo: list, hi: list, *, independent=True,
             aligned: int = 0, vector: ir.Block | None = None) -> ir.Stmt:
        """Loops over the axes after the first, ``lo[a - 1] <= asp_i<a> < hi[a - 1]``.
        ``aligned``: the points of the last axis whose ring index is a multiple of this
        many start a loop of their own, after a *peel* loop over the first few: in the
        vectorized loop every access to a ring row is aligned (loads that split cache
        lines cost a 256^2 heat sweep a fifth of its speed).  ``vector``: that loop's
        body in explicit vectors (:mod:`specializers.stencil.vectors`), a vector of
        points at a time, the last few points scalar."""
        last = self.dim - 1
        stmt: ir.Stmt = body
        for a in reversed(range(1, self.dim)):
            inner = stmt if isinstance(stmt, ir.Block) else _block(stmt)
            stmt = ir.For(f"asp_i{a}", lo[a - 1], hi[a - 1], inner, independent=independent)
            if a == last and aligned > 1:
                b = _v(f"asp_b{last}")
                at = _op("+", b, _op("&", _op("+", _op("-", lo[a - 1], b), aligned - 1),
                                     -aligned))
                start = _max(_v("asp_al"), lo[a - 1])
                main: list[ir.Stmt] = [ir.For(f"asp_i{a}", start, hi[a - 1], inner,
                                              independent=independent)]
                if vector is not None:
                    n = lanes(self.ctype)
                    end = _op("+", _v("asp_vs"), _op("*", _op(
                        "/", _max(_op("-", hi[a - 1], _v("asp_vs")), _c(0)), n), n))
                    main = [ir.Declare(I64, "asp_vs", start, const=True),
                            ir.Declare(I64, "asp_ve", end, const=True),
                            ir.For(f"asp_i{a}", _v("asp_vs"), _v("asp_ve"), vector,
                                   step=_c(n), role="vector", independent=independent),
                            ir.For(f"asp_i{a}", _v("asp_ve"), hi[a - 1], inner,
                                   independent=independent)]
                stmt = _block(
                    ir.Declare(I64, "asp_al", _min(at, hi[a - 1]), const=True),
                    ir.For(f"asp_i{a}", lo[a - 1], _v("asp_al"), inner, role="peel",
                           independent=independent),
                    *main)
        return stmt

    def by_level(self, make) -> ir.Stmt:
        """``make(case)`` for the level's case: ``l == 1``, ..., ``l == K``, else."""
        stmt: ir.Stmt = make(0)
        for case in reversed(range(1, self.K + 1)):
            stmt = ir.If(_op("==", _v("asp_l"), case), make(case),
                         stmt if isinstance(stmt, ir.Block) else _block(stmt))
        return stmt

    def rings_in(self, case: int, lvl: int) -> list[ir.Stmt]:
        ct = self.ctype
        return [ir.Declare(f"const {ct} *restrict", f"asp_rin{j}", _op("+", _v("asp_ring"), _op(
            "*", _op("-", _v("asp_l"), 2 + j), lvl)))
            for j in range(self.K) if not case or j < case - 1]

    def function(self, jam: int = 1, east: bool = False) -> ir.Function:
        """The blocked iteration that computes ``jam`` rows (planes) of a level in one
        sweep along the other axes, which read the rows they share once (the wavefront
        advances ``jam`` rows at a time); ``east``: that sweep's vectors load the
        neighbours after a point rather than shuffle them (:mod:`.vectors`).  Its depth
        and the tile's extent along each axis are parameters after the entry's own
        (:data:`BOUND`): every point of a space with this jam and form is one variant of
        this one function (:attr:`asp.runtime.Variant.bound`), so a space costs a compile
        per jam and form, not per point."""
        dim, g, R, ct, K = self.dim, self.g, self.R, self.ctype, self.K
        ring = ring_rows(K, R, jam)
        mask = ring - 1
        # Ring rows start on cache lines (an aligned allocation, rows a whole number of
        # lines long): their vectorized loops begin at an aligned point (see nest).
        itemsize = dtype_of(ct).itemsize
        line = max(LINE // itemsize, 1)
        depth = _v("asp_depth")
        tiles = [_v(f"asp_tile{a}") for a in range(dim)]
        halo = _op("*", _op("*", depth, 2), R)
        n = [self.n(a) for a in range(dim)]
        S, D, y, ext, s = _v(STEPS), _v("asp_d"), _v("asp_y"), _v("asp_ext"), _v("asp_s")
        ix = self.ivars()

        pre: list[ir.Stmt] = [ir.Declare("int", "asp_bad", ir.Const(0, "int"))]
        # A ring row: the tile and its halo along each axis after the first, the last
        # rounded up to whole cache lines; one level's ring: ``ring`` such rows.
        for a in range(1, dim):
            extent = _op("+", tiles[a], halo)
            if a == dim - 1:
                extent = _op("&", _op("+", extent, line - 1), -line)
            pre.append(ir.Declare(I64, f"asp_rs{a}", extent, const=True))
        plane: ir.Expr = _v("asp_rs1")
        for a in range(2, dim):
            plane = _op("*", plane, _v(f"asp_rs{a}"))
        pre += [ir.Declare(I64, "asp_plane", plane, const=True),
                ir.Declare(I64, "asp_lvl", _op("*", _c(ring), _v("asp_plane")), const=True)]
        plane, lvl = _v("asp_plane"), _v("asp_lvl")  # elements of a row, of a level's ring
        rix = (mask, (None, *(_v(f"asp_rs{a}") for a in range(1, dim))))
        count: ir.Expr = _c(1)
        for a in range(dim):  # tiles along each axis of the interior [g, n - g)
            inner = _op("-", n[a], 2 * g)
            pre.append(ir.Declare(I64, f"asp_nt{a}", ir.Ternary(
                _op(">", inner, 0), _op("/", _op("+", inner, _op("-", tiles[a], 1)), tiles[a]),
                _c(0)), const=True))
            count = _op("*", count, _v(f"asp_nt{a}"))
        pre += [ir.Declare(I64, "asp_ntiles", count, const=True),
                ir.Declare(I64, "asp_np", _op("/", _op("+", S, _op("-", depth, 1)), depth),
                           const=True)]

        # -- one tile ------------------------------------------------------------------
        tile: list[ir.Stmt] = []
        tile.append(ir.If(ir.UnaryOp("!", _v("asp_ring")), _block(
            ir.Assign(_v("asp_bad"), ir.Const(1, "int")), ir.Continue())))
        rest: ir.Expr = _v("asp_t")
        for a in reversed(range(dim)):
            tile.append(ir.Declare(I64, f"asp_k{a}", _op("%", rest, _v(f"asp_nt{a}"))
                                   if a else rest, const=True))
            rest = _op("/", rest, _v(f"asp_nt{a}"))
        for a in range(dim):
            lo = _op("+", g, _op("*", _v(f"asp_k{a}"), tiles[a]))
            tile += [ir.Declare(I64, f"asp_lo{a}", lo, const=True),
                     ir.Declare(I64, f"asp_hi{a}", _min(_op("+", _v(f"asp_lo{a}"), tiles[a]),
                                                        _op("-", n[a], g)), const=True)]
            if a:
                tile.append(ir.Declare(I64, f"asp_b{a}", _op("-", _v(f"asp_lo{a}"),
                                                             _op("*", depth, R)), const=True))

        # -- one level of the wavefront at position s: rows yj .. yj + jam - 1 ----------
        yj = _v("asp_yj")
        first = _max(_op("-", _v("asp_lo0"), ext), _c(0))
        stop = _min(_op("+", _v("asp_hi0"), ext), n[0])
        head: list[ir.Stmt] = [
            ir.Declare(I64, "asp_yj", _op("-", s, _op("*", _op("-", _v("asp_l"), 1), R)),
                       const=True),
            ir.Declare(I64, "asp_ext", _op("*", _op("-", D, _v("asp_l")), R), const=True),
            ir.Declare(f"{ct} *restrict", "asp_rout", _op("+", _v("asp_ring"), _op(
                "*", _op("-", _v("asp_l"), 1), lvl))),
            *self.out_frame(),
        ]
        for a in range(1, dim):
            head += [ir.Declare(I64, f"asp_f{a}", _max(_op("-", _v(f"asp_lo{a}"), ext), _c(g)),
                                const=True),
                     ir.Declare(I64, f"asp_t{a}", _min(_op("+", _v(f"asp_hi{a}"), ext),
                                                       _op("-", n[a], g)), const=True)]
        step: list[ir.Stmt] = [  # one row y: skipped outside the tile's range at level l
            ir.If(_op("||", _op("<", y, first), _op(">=", y, stop)), _block(ir.Continue())),
        ]
        set_i0 = ir.Declare(I64, "asp_i0", y, const=True)
        f = [_v(f"asp_f{a}") for a in range(1, dim)]
        t = [_v(f"asp_t{a}") for a in range(1, dim)]

        def compute(case: int, target) -> ir.Block:
            # A row alone (jam 1, or a tile's first and last rows of a jam) in explicit
            # vectors too, where the kernel's are: its blocked functions have no loop
            # vectorizer (below).
            vector = self.vector_rows(lambda _: target, [ix], rix, east, case, base=y)
            return _block(*self.rings_in(case, lvl), self.nest(
                self.body(case, target, rix), f, t, aligned=line, vector=vector))

        rout = ir.ArrayRef("asp_rout", ring_index(ix, *rix))
        zero_row = ir.ExprStmt(ir.Call("memset", (
            ir.UnaryOp("&", ir.ArrayRef("asp_rout", _op("*", _op("&", y, mask), plane))),
            _c(0), _op("*", plane, ir.Call("sizeof", (_v(ct),))))))
        # Rows of the grid's border are zero after the first step (as K(u) leaves
        # them): a ring slot that a border row takes is cleared, not computed.
        border = _op("||", _op("<", y, g), _op(">=", y, _op("-", n[0], g)))
        out = self.out_ref("asp_o", ix)
        step += [
            ir.If(_op("&&", ir.UnaryOp("!", LAST), border), _block(zero_row, ir.Continue())),
            set_i0,
            # (a block of its own: ``asp_o`` is restrict, the edges and copy read the row
            # through ``asp_rout``)
            _block(self.out_row("asp_o", y, mask),
                   self.by_level(lambda c: compute(c, out))),
        ]
        if edges := [*self.zero_edges(rout), *self.copy_out(rout)]:
            step.append(ir.If(ir.UnaryOp("!", LAST), _block(*edges)))
        if jam == 1:  # the row alone (its ``continue`` goes on to the next level)
            rows = _block(ir.Declare(I64, "asp_y", yj, const=True), *step)
        else:  # every row in range and off the border: in one sweep; else each alone
            rows = ir.For("asp_jj", _c(0), _c(jam), _block(
                ir.Declare(I64, "asp_y", _op("+", yj, _v("asp_jj")), const=True), *step))
            whole = _op("&&", _op("&&", _op(">=", yj, first), _op("<", _op("+", yj, jam - 1),
                                                                     stop)),
                        _op("&&", _op(">=", yj, g), _op("<", _op("+", yj, jam - 1),
                                                        _op("-", n[0], g))))
            rows = ir.If(whole, self.jammed(jam, lvl, rix, f, t, line, east), _block(rows))
        wave = ir.For("asp_s", _op("-", _v("asp_lo0"), _op("*", _op("-", D, 1), R)),
                      _op("+", _v("asp_hi0"), _op("*", _op("-", D, 1), R)), _block(
                          ir.For("asp_l", _c(1), _op("+", D, 1), _block(*head, rows))),
                      step=_c(jam))
        tile.append(wave)

        region = self.passes(tile, _op("*", _op("-", depth, 1), lvl), itemsize)
        fn = self.finish(f"j{jam}" + ("e" if east else ""), pre, region, bound=BOUND[:1 + dim])
        if not self.vectorizes:  # its sweeps are gcc's vectors: keep its vectorizer
            return fn
        # Every row's sweep is explicit vectors (the jammed rows, and a row alone: jam 1,
        # a tile's first and last rows), which need no vectorizer; gcc's spent half of
        # each build (2-D heat: a unit of four blocked functions 7.5-9.9 s of gcc, 3.7-4.5
        # without).  Without it the rest is scalar, ``omp simd`` loops included (gcc 12:
        # -fopt-info-vec lists 5 vectorized loops in that unit, against about 65): each
        # row's peel and tail, fewer than a vector's points.  (While the rows alone were
        # left to gcc, they were scalar too: 64 x 256 tiles of 1024^2 ran 3-10 % slower,
        # a 96 x 8192 Dask halo strip up to 7 %, 3-D tiles of 32 x 256 1-4 %; one thread,
        # 2 on 256^3, both objects alternated.  A vector at any point for the peel and
        # one for the tail, every read unaligned, was no faster: 3-D 5-8 % slower.)
        return dataclasses.replace(fn, optimize="no-tree-loop-vectorize")

    def passes(self, tile: list[ir.Stmt], elems: ir.Expr, itemsize: int) -> ir.Block:
        """The passes, in one parallel region: each computes ``asp_d`` steps of every tile
        (``tile``, shared dynamically among the threads, ``asp_t`` its number) from its
        input grids ``asp_src<j>`` into its outputs ``asp_dst<j>``; every thread has
        ``elems`` elements of buffers at ``asp_ring``."""
        K, ct, S = self.K, self.ctype, _v(STEPS)
        np_, p = _v("asp_np"), _v("asp_p")
        # Passes of as equal depths as can be (a short last pass blocks poorly; with
        # several state levels, every pass computes at least K levels).
        per = [ir.Declare(I64, "asp_d", _op("+", _op("/", S, np_), ir.Ternary(
            _op("<", p, _op("%", S, np_)), _c(1), _c(0))), const=True)]
        last_in_outs = _op("==", _op("%", _op("-", _op("-", np_, 1), p), 2), 0)
        for j in range(K):
            prev = ir.Ternary(_op("==", _op("%", _op("-", np_, p), 2), 0),
                              _v(self.outs[j]), _v(self.tmps[j]))
            per.append(ir.Declare(f"const {ct} *", f"asp_src{j}", ir.Ternary(
                _op("==", p, 0), _v(pname(self.states[j])), prev)))
        for j in range(K):
            per.append(ir.Declare(f"{ct} *", f"asp_dst{j}", ir.Ternary(
                last_in_outs, _v(self.outs[j]), _v(self.tmps[j]))))
        passes = ir.For("asp_p", _c(0), np_, _block(
            *per,
            ir.For("asp_t", _c(0), _v("asp_ntiles"), ir.Block(tuple(tile)),
                   parallel=ir.Parallel(schedule="dynamic", chunk=1), independent=True),
        ))
        # (aligned_alloc takes a size that is a whole number of its alignment; a line
        # before and after the rings: what a vector sweep's loads may reach)
        size = _op("&", _op("+", _op("*", elems, itemsize), 3 * LINE - 1), -LINE)
        region = _block(
            ir.Declare(f"{ct} *", "asp_rings", ir.Cast(f"{ct} *", ir.Call(
                "aligned_alloc", (_c(LINE), size)))),
            ir.Declare(f"{ct} *", "asp_ring", ir.Ternary(
                _v("asp_rings"), _op("+", _v("asp_rings"), LINE // itemsize), _c(0))),
            passes,
            ir.ExprStmt(ir.Call("free", (_v("asp_rings"),))))
        return region

    def finish(self, name: str, pre: list[ir.Stmt], region: ir.Block,
               bound: tuple[str, ...] = ()) -> ir.Function:
        """The entry function: ``pre``, then ``region`` on a team of threads when the grid
        is large enough; returns 1 (bit 0) if a thread's buffers could not be allocated,
        2 (bit 1) if a checked operation met a value only Python represents or an error
        only Python raises (``int()`` of NaN, ``math.log(0.0)``: the steps then run as
        Python).  ``bound``: ``int64_t`` parameters after the entry's own (a variant's
        constants)."""
        size: ir.Expr = self.n(0)
        for a in range(1, self.dim):
            size = _op("*", size, self.n(a))
        team = ir.Region(region, when=_op(">", size, serial_points()),
                         reductions=(("|", "asp_bad"),))
        params = (*abi_params(self.names, self.specs),
                  *(ir.Param(b, I64) for b in bound))
        code: ir.Expr = _v("asp_bad")
        if converts(self.k):  # the flag is shared by the team (set atomically)
            pre = [ir.Declare("int", "asp_unrep_v", ir.Const(0, "int")),
                   ir.Declare("int *const", UNREP.name, ir.UnaryOp("&", _v("asp_unrep_v"))),
                   *pre]
            code = _op("|", code, ir.Ternary(_v("asp_unrep_v"), _c(2), _c(0)))
        fn = ir.Function(f"stencil_iter_{name}", params,
                         _block(*pre, team, ir.Return(code)), ret="int")
        return vectorize_points(fn, var=f"asp_i{self.dim - 1}")

    def steps_function(self, name: str) -> ir.Function:
        """The plain step-by-step sweep, one pass over memory per step: step ``t`` writes
        level ``t`` into buffer ``(S - t) % (K + 1)`` of the outputs and one scratch grid
        (so that the last ``K`` levels end in the outputs), reading the ``K`` levels
        before it from there or from the state."""
        K, g, ct = self.K, self.g, self.ctype
        S, t = _v(STEPS), _v("asp_t")
        bufs = [*self.outs, self.tmps[0]]

        def buffer(level: ir.Expr) -> ir.Expr:
            which = _op("%", _op("-", S, level), K + 1)
            e: ir.Expr = _v(bufs[K])
            for b in reversed(range(K)):
                e = ir.Ternary(_op("==", which, b), _v(bufs[b]), e)
            return e

        per: list[ir.Stmt] = []
        for j in range(K):
            level = _op("-", t, 1 + j)
            e = buffer(level)
            for back in reversed(range(j + 1)):  # level -back is state parameter back
                e = ir.Ternary(_op("==", level, -back if back else 0),
                               _v(pname(self.states[back])), e)
            per.append(ir.Declare(f"const {ct} *", f"asp_src{j}", e))
        per.append(ir.Declare(f"{ct} *", "asp_dst0", buffer(t)))
        ix = self.ivars()
        body = self.body(1, ir.ArrayRef("asp_dst0", self.linear(ix)), (0, ()))
        lo = [_c(g)] * (self.dim - 1)
        hi = [_op("-", self.n(a), g) for a in range(1, self.dim)]
        sweep = ir.For("asp_i0", _c(g), _op("-", self.n(0), g),
                       _block(self.nest(body, lo, hi)),
                       parallel=ir.Parallel(schedule="static"), independent=True)
        region = _block(ir.For("asp_t", _c(1), _op("+", S, 1), _block(*per, sweep)))
        return self.finish(name, [ir.Declare("int", "asp_bad", ir.Const(0, "int"))], region)

    def zero_edges(self, rout: ir.ArrayRef) -> list[ir.Stmt]:
        """Zeros in the border columns next to a ring row whose range meets the grid's
        edge, as far as the next levels read (``R``), across the others' reach."""
        g, R, dim = self.g, self.R, self.dim
        out: list[ir.Stmt] = []
        zero = _block(ir.Assign(rout, ir.Const(0, self.ctype)))
        for a in range(1, dim):
            for at_edge, lo in ((_op("==", _v(f"asp_f{a}"), g), _c(g - R)),
                                (_op("==", _v(f"asp_t{a}"), _op("-", self.n(a), g)),
                                 _op("-", self.n(a), g))):
                los = [_op("-", _v(f"asp_f{b}"), R) for b in range(1, dim)]
                his = [_op("+", _v(f"asp_t{b}"), R) for b in range(1, dim)]
                los[a - 1], his[a - 1] = lo, _op("+", lo, R)
                out.append(ir.If(at_edge, _block(self.nest(zero, los, his))))
        return out

    def copy_out(self, rout: ir.ArrayRef) -> list[ir.Stmt]:
        """A level that is one of the pass's outputs but not its last: the tile's part of
        the ring row, copied to its grid ``asp_dst<d - l>``."""
        if self.K == 1:
            return []
        lo = [_v(f"asp_lo{a}") for a in range(1, self.dim)]
        hi = [_v(f"asp_hi{a}") for a in range(1, self.dim)]
        y, D, L = _v("asp_y"), _v("asp_d"), _v("asp_l")
        out = []
        for j in range(1, self.K):
            own = _op("&&", _op("&&", _op("==", L, _op("-", D, j)), _op(">=", y, _v("asp_lo0"))),
                      _op("<", y, _v("asp_hi0")))
            copy = ir.Assign(ir.ArrayRef(f"asp_dst{j}", self.linear(self.ivars())), rout)
            out.append(ir.If(own, _block(self.nest(_block(copy), lo, hi))))
        return out
