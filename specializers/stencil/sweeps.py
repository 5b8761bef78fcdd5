"""The jammed sweeps of the blocked iteration (:mod:`specializers.stencil.wavefront`):
``jam`` rows (planes) of a level computed in one sweep along the other axes, in explicit
vectors where the kernel allows (:mod:`specializers.stencil.vectors`)."""
from __future__ import annotations

import functools

from asp.ir import platform as ir
from specializers.stencil.lowering import pname
from specializers.stencil.ringir import I64, ring_index
from specializers.stencil.ringir import block as _block
from specializers.stencil.ringir import c as _c
from specializers.stencil.ringir import op as _op
from specializers.stencil.ringir import v as _v
from specializers.stencil.vectors import Loads, NotVector, lanes, store, vector_block, vtype

__all__ = ["LAST", "JammedSweeps"]

#: Whether level ``asp_l`` is the pass's last (``asp_d``): its rows go to the output grid.
LAST = _op("==", _v("asp_l"), _v("asp_d"))


class JammedSweeps:
    """The jammed sweeps of :class:`~specializers.stencil.wavefront.Builder` (whose
    ``body``, ``nest``, ``by_level``, ``rings_in``, ``zero_edges``, ``copy_out``,
    ``ivars``, ``linear`` and ``n`` they use), and where a sweep's rows go."""

    def out_frame(self) -> list[ir.Stmt]:
        """Where level ``l``'s rows go, for one sweep of both kinds: the pass's output
        grid ``asp_dst0`` at its last level (origin 0, the grid's row lengths), else
        the level's ring (origin the tile's halo ``asp_b<a>``, the ring's row lengths):
        ``asp_ob<a>``, ``asp_os<a>`` for the axes after the first (:meth:`out_ref`).
        (Two sweeps, one for each, doubled a blocked function's code: gcc's time.)"""
        out: list[ir.Stmt] = [
            ir.Declare(I64, f"asp_ob{a}", ir.Ternary(LAST, _c(0), _v(f"asp_b{a}")), const=True)
            for a in range(1, self.dim)]
        out += [ir.Declare(I64, f"asp_os{a}", ir.Ternary(LAST, self.n(a), _v(f"asp_rs{a}")),
                           const=True) for a in range(2, self.dim)]
        return out

    def out_row(self, name: str, y: ir.Expr, mask: int) -> ir.Declare:
        """``name``: the start of level ``l``'s row (plane) ``y``, in the pass's output
        grid at its last level, else in the level's ring ``asp_rout`` (:meth:`out_frame`)."""
        grid = _op("+", _v("asp_dst0"), self.linear([y, *([_c(0)] * (self.dim - 1))]))
        ring = _op("+", _v("asp_rout"), _op("*", _op("&", y, mask), _v("asp_plane")))
        return ir.Declare(f"{self.ctype} *restrict", name, ir.Ternary(LAST, grid, ring))

    def out_ref(self, name: str, ix) -> ir.ArrayRef:
        """The point ``ix`` of the row (plane) that starts at ``name`` (:meth:`out_row`)."""
        e: ir.Expr = _op("-", ix[1], _v("asp_ob1"))
        for a in range(2, self.dim):
            e = _op("+", _op("*", e, _v(f"asp_os{a}")), _op("-", ix[a], _v(f"asp_ob{a}")))
        return ir.ArrayRef(name, e)

    def jammed(self, jam: int, lvl: int, rix: tuple, f: list, t: list,
               line: int, east: bool = False) -> ir.Block:
        """Rows ``asp_yj + jj`` (``jj < jam``) of level ``l``, all inside the tile's range
        and off the grid's border, in one sweep along the other axes (each row's point
        in a block of its own, as a row alone computes it), then each row's edges and
        copy, as for a row alone.  ``east``: the vector loop's form
        (:class:`~specializers.stencil.vectors.Loads`)."""
        rows = [[_v(f"asp_i0_{jj}"), *self.ivars()[1:]] for jj in range(jam)]
        at = [ir.Declare(I64, f"asp_i0_{jj}", _op("+", _v("asp_yj"), jj), const=True)
              for jj in range(jam)]

        def sweep(case: int, target) -> ir.Block:
            # Every row's value first, then the stores: a store to a ring row between
            # them makes the compiler reload what the next row reads (the rings are one
            # allocation, so it cannot tell them apart).  3-D heat 256^3, depth 8 on 64 x
            # 256 tiles, planes in pairs, on a Zen 4: 5.13 against 5.47 ms a step (both
            # libraries interleaved in one process, best of 15; medians 5.27 and 5.83);
            # 2-D 4096^2 unchanged (2.87 ms either way).
            vals = [_v(f"asp_v{jj}") for jj in range(jam)]
            points = [ir.Declare(self.ctype, v.name) for v in vals]
            points += [self.body(case, v, rix, ix) for v, ix in zip(vals, rows)]
            points += [ir.Assign(target(ix), v) for v, ix in zip(vals, rows)]
            vector = self.vector_rows(target, rows, rix, east, case)
            return _block(*self.rings_in(case, lvl),
                          self.nest(_block(*points), f, t, aligned=line, vector=vector))

        # Level l's rows: the pass's output at its last level, else its ring (one sweep
        # for both: Builder.out_frame), in a block of its own (``asp_o<jj>`` are
        # restrict; the edges and copies read the rows through ``asp_rout``).
        outs = [self.out_row(f"asp_o{jj}", _op("+", _v("asp_yj"), jj), rix[0])
                for jj in range(jam)]

        def target(ix) -> ir.ArrayRef:
            return self.out_ref(f"asp_o{rows.index(ix)}", ix)

        rout = ir.ArrayRef("asp_rout", ring_index(self.ivars(), *rix))
        each = [_block(ir.Declare(I64, "asp_y", _op("+", _v("asp_yj"), jj), const=True),
                       ir.Declare(I64, "asp_i0", _v("asp_y"), const=True),
                       *self.zero_edges(rout), *self.copy_out(rout)) for jj in range(jam)]
        return _block(*at, _block(*outs, self.by_level(lambda c: sweep(c, target))),
                      ir.If(ir.UnaryOp("!", LAST), _block(*each)))

    def vector_rows(self, target, rows: list, rix: tuple, east: bool = False,
                    case: int = 0, base: ir.Expr | None = None) -> ir.Block | None:
        """The body of a jammed sweep's vector loop for level case ``case`` (see
        :meth:`body`: the levels a pass has not computed yet are read from its input
        grids, the others from rings; :mod:`specializers.stencil.vectors`), or None if
        the kernel's body is not plain arithmetic on the grid's type; ``rows`` are
        ``base + jj`` (``base``: ``asp_yj``, the jam's first row, by default).  (Level 1
        left to the compiler ran 3-D heat at 256^3, depth 4, on a Zen 2 core at
        10.8-11.0 ms a step; in explicit vectors, 10.4-10.5.)"""
        ct, last = self.ctype, self.dim - 1
        n = lanes(ct)
        if n < 2:
            return None
        ix = self.ivars()

        grids = {f"asp_src{j}" for j in range(self.K)}  # a pass's input (level ``case``)
        base = _v("asp_yj") if base is None else base

        def address(key: tuple, shift: int) -> ir.ArrayRef:
            array, row, *offs = key
            coords = [_op("+", base, row),
                      *(_op("+", i, o) for i, o in zip(ix[1:last], offs)),
                      _op("+", ix[last], shift * n)]
            return ir.ArrayRef(array, self.linear(coords) if array in grids
                               else ring_index(coords, *rix))

        loads = Loads(ct, address, east, direct=lambda key: key[0] in grids)
        scalars = {pname(name): t for name, t in self.k.scalars}
        local = {f"l_{name}" for name, _ in self.k.locals}
        points = []
        try:
            for jj, row in enumerate(rows):
                body = self.body(case, _v(f"asp_v{jj}"), rix, row, loads=loads, jj=jj)
                points.append(vector_block(body, ct, scalars, {
                    "asp_acc", f"asp_v{jj}", *local, *loads.read_names}))
        except NotVector:
            return None
        return _block(*loads.statements(),
                      *(ir.Declare(vtype(ct), f"asp_v{jj}") for jj in range(len(rows))),
                      *points, *(store(target(row), _v(f"asp_v{jj}"), ct)
                                 for jj, row in enumerate(rows)))

    @functools.cached_property
    def vectorizes(self) -> bool:
        """Whether a jammed sweep of this kernel is explicit vectors (then its two forms,
        shuffled or loaded neighbours, are different code, and its blocked functions need
        no loop vectorizer); asked once per builder."""
        rows = [[_v("asp_i0_0"), *self.ivars()[1:]]]
        rix = (3, (None, *(_v(f"asp_rs{a}") for a in range(1, self.dim))))
        return self.vector_rows(lambda ix: ir.ArrayRef("asp_rout", ring_index(ix, *rix)),
                                rows, rix) is not None
