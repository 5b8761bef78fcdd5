"""The C of a blocked iteration of a 1-D kernel: overlapped (trapezoid) tiles, each
advanced ``depth`` steps in thread-private buffers before the next tile.

A 2-D or 3-D tile advances as a wavefront along its first axis (rows or planes:
:mod:`specializers.stencil.wavefront`).  A 1-D grid has no row to keep in a ring, so a
tile is swept whole, level after level: level ``l`` of a pass computes the tile and
``(d - l) R`` points on each side of it (what the levels after it read), from the level
before it, into a buffer of ``tile + 2 depth R`` points.  The buffers of the last
``K + 1`` levels (``K`` the state's levels) take turns: level ``l`` writes buffer ``l mod
(K + 1)`` while the ``K`` levels it reads are in the others.  Each level is one
vectorized loop over contiguous points that stays in L1 or L2; only the pass's input is
read from memory and only its last levels written.  Tiles are independent (their halos
overlap and are computed twice), so they are shared dynamically among the threads.

The border of every level after the first is zero, as ``K(u)`` leaves it in
``'interior'`` mode: a buffer whose range meets the grid's border gets zeros where the
next level reads past it.  Results are bit-identical to the step-by-step loop (the
kernel's own expression, in the same order).
"""
from __future__ import annotations

from asp.ir import platform as ir
from asp.ir.types import dtype_of
from specializers.stencil.domain import GridRead
from specializers.stencil.ringir import I64, LINE
from specializers.stencil.ringir import block as _block
from specializers.stencil.ringir import c as _c
from specializers.stencil.ringir import op as _op
from specializers.stencil.ringir import v as _v
from specializers.stencil.ringir import vmax as _max
from specializers.stencil.ringir import vmin as _min
from specializers.stencil.wavefront import BOUND, STEPS, Builder, _LevelBody

__all__ = ["LineBuilder"]


class _PointBody(_LevelBody):
    """A level's point, its buffered sources indexed from the tile's halo origin."""

    def visit_GridRead(self, node: GridRead):
        source = self.sources.get(node.grid)
        if source is None or source[0] != "ring":
            return super().visit_GridRead(node)
        coords = self.coords(node.offset, node.nbr)
        return ir.ArrayRef(source[1], _op("-", coords[0], _v("asp_b0")))


class LineBuilder(Builder):
    """:class:`~specializers.stencil.wavefront.Builder` for 1-D grids: the same entry,
    passes and per-point body, with trapezoid tiles in place of wavefronts."""

    level_body = _PointBody

    def function(self, jam: int = 1) -> ir.Function:
        """The blocked iteration of a 1-D grid; its depth and tile length are parameters
        after the entry's own (``jam`` is not used: a level is one sweep already)."""
        g, R, ct, K = self.g, self.R, self.ctype, self.K
        itemsize = dtype_of(ct).itemsize
        line = max(LINE // itemsize, 1)
        depth, tile, n = _v("asp_depth"), _v("asp_tile0"), self.n(0)
        S, D, L = _v(STEPS), _v("asp_d"), _v("asp_l")
        inner = _op("-", n, 2 * g)
        width = _op("&", _op("+", _op("+", tile, _op("*", _op("*", depth, 2), R)), line - 1),
                    -line)
        pre: list[ir.Stmt] = [
            ir.Declare("int", "asp_bad", ir.Const(0, "int")),
            ir.Declare(I64, "asp_w", width, const=True),
            ir.Declare(I64, "asp_ntiles", ir.Ternary(
                _op(">", inner, 0), _op("/", _op("+", inner, _op("-", tile, 1)), tile), _c(0)),
                const=True),
            ir.Declare(I64, "asp_np", _op("/", _op("+", S, _op("-", depth, 1)), depth),
                       const=True)]
        w, i = _v("asp_w"), _v("asp_i0")

        def slot(level: ir.Expr) -> ir.Expr:
            return _op("+", _v("asp_ring"), _op("*", _op("%", level, K + 1), w))

        def level(case: int, target) -> ir.Block:
            reads = [ir.Declare(f"const {ct} *restrict", f"asp_rin{j}",
                                slot(_op("-", _op("-", L, 1), j)))
                     for j in range(K) if not case or j < case - 1]
            sweep = ir.For("asp_i0", _v("asp_f0"), _v("asp_e0"),
                           self.body(case, target, ()), independent=True)
            return _block(*reads, sweep)

        rout = ir.ArrayRef("asp_rout", _op("-", i, _v("asp_b0")))
        zero = _block(ir.Assign(rout, ir.Const(0, ct)))
        to_buffer = [
            ir.Declare(f"{ct} *restrict", "asp_rout", slot(L)),
            self.by_level(lambda case: level(case, rout)),
            # Where the next level reads past the grid's border: zeros.
            ir.If(_op("==", _v("asp_f0"), g), _block(
                ir.For("asp_i0", _c(g - R), _c(g), zero))),
            ir.If(_op("==", _v("asp_e0"), _op("-", n, g)), _block(
                ir.For("asp_i0", _op("-", n, g), _op("+", _op("-", n, g), R), zero))),
        ]
        for j in range(1, K):  # a level that is an output too, not the pass's last
            copy = ir.Assign(ir.ArrayRef(f"asp_dst{j}", i), rout)
            to_buffer.append(ir.If(_op("==", L, _op("-", D, j)), _block(ir.For(
                "asp_i0", _v("asp_lo0"), _v("asp_hi0"), _block(copy), independent=True))))
        dst0 = ir.ArrayRef("asp_dst0", i)
        ext = _op("*", _op("-", D, L), R)
        levels = ir.For("asp_l", _c(1), _op("+", D, 1), _block(
            ir.Declare(I64, "asp_f0", _max(_op("-", _v("asp_lo0"), ext), _c(g)), const=True),
            ir.Declare(I64, "asp_e0", _min(_op("+", _v("asp_hi0"), ext), _op("-", n, g)),
                       const=True),
            ir.If(_op("==", L, D), _block(self.by_level(lambda case: level(case, dst0))),
                  _block(*to_buffer))))
        lo = _op("+", _c(g), _op("*", _v("asp_t"), tile))
        tile_stmts: list[ir.Stmt] = [
            ir.If(ir.UnaryOp("!", _v("asp_ring")), _block(
                ir.Assign(_v("asp_bad"), ir.Const(1, "int")), ir.Continue())),
            ir.Declare(I64, "asp_lo0", lo, const=True),
            ir.Declare(I64, "asp_hi0", _min(_op("+", _v("asp_lo0"), tile), _op("-", n, g)),
                       const=True),
            ir.Declare(I64, "asp_b0", _op("-", _v("asp_lo0"), _op("*", depth, R)), const=True),
            levels]
        region = self.passes(tile_stmts, _op("*", _c(K + 1), w), itemsize)
        return self.finish("line", pre, region, bound=BOUND[:2])
