"""The small IR vocabulary of the blocked iteration's C (:mod:`specializers.stencil.
wavefront`, :mod:`specializers.stencil.sweeps`): ``int64_t`` constants and operators,
and where a point lives in a level's ring of rows."""
from __future__ import annotations

import math

from asp.ir import platform as ir

__all__ = ["I64", "LINE", "block", "c", "op", "ring_index", "ring_rows", "v", "vmax",
           "vmin"]

I64 = "int64_t"
#: Bytes of a cache line: what ring rows are aligned to.
LINE = 64


def c(value: int) -> ir.Const:
    return ir.Const(value, I64)


def v(name: str) -> ir.Var:
    return ir.Var(name)


def op(operator: str, a, b) -> ir.BinOp:
    """``a operator b``, ints taken as ``int64_t`` constants."""
    a = c(a) if isinstance(a, int) else a
    b = c(b) if isinstance(b, int) else b
    return ir.BinOp(operator, a, b)


def vmin(a, b) -> ir.Expr:
    return ir.Ternary(op("<", a, b), a, b)


def vmax(a, b) -> ir.Expr:
    return ir.Ternary(op(">", a, b), a, b)


def block(*stmts) -> ir.Block:
    return ir.Block(tuple(stmts))


def ring_rows(levels: int, reach: int, jam: int = 1) -> int:
    """Rows of one level's ring: the rows its readers may still need while ``jam`` rows
    are computed at each wavefront position, a power of two."""
    return 1 << math.ceil(math.log2((levels + 1) * reach + jam))


def ring_index(coords, mask: int, strides: tuple) -> ir.Expr:
    """The index of a point in one level's ring: the row's slot, then the point's offsets
    from the tile's halo origin (``asp_b<a>``), axis ``a`` ``strides[a]`` long (an
    expression; ``strides[0]`` is not read)."""
    e: ir.Expr = op("&", coords[0], mask)
    for a in range(1, len(coords)):
        e = op("+", op("*", e, strides[a]), op("-", coords[a], v(f"asp_b{a}")))
    return e
