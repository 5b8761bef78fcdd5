"""Domain passes on the stencil IR: neighbour-loop unrolling and constant folding.

Each is a pure function ``StencilIR -> StencilIR``.
"""
from __future__ import annotations

import dataclasses
import math
import operator

from asp.ir import platform as ir
from asp.ir.node import Transformer
from specializers.stencil.domain import Coord, Distance, GridRead, NeighborLoop, StencilIR

__all__ = ["MAX_UNROLL", "fold_constants", "unroll_neighbors"]

#: Neighbourhoods larger than this stay loops over an offset table even when unrolling.
MAX_UNROLL = 64


class _Bind(Transformer):
    """Replace references to the neighbour variable ``var`` by the constant ``offset``."""

    def __init__(self, var: str, offset: tuple[int, ...]):
        self.var, self.offset = var, offset

    def visit_GridRead(self, node: GridRead):
        return GridRead(node.grid, offset=self.offset) if node.nbr == self.var else node

    def visit_Coord(self, node: Coord):
        return Coord(node.axis, offset=self.offset) if node.nbr == self.var else node

    def visit_Distance(self, node: Distance):
        if node.nbr != self.var:
            return node
        return ir.Const(math.sqrt(sum(o * o for o in self.offset)), "double")


def unroll_neighbors(kernel: StencilIR, *, limit: int = MAX_UNROLL) -> StencilIR:
    """Replace each neighbour loop of at most ``limit`` offsets by one copy of its body per
    offset, in the neighbourhood's order (so sums associate exactly as in Python).

    Before: ``for y in g.neighbors(x, 1): out[x] += g[y]`` (2-D)
    After:  ``out[x] += g[x+(-1,0)]; out[x] += g[x+(1,0)]; out[x] += g[x+(0,-1)]; ...``
    """
    class Unroll(Transformer):
        def visit_NeighborLoop(self, node: NeighborLoop):
            node = self.generic_visit(node)
            if len(node.offsets) > limit:
                return node
            out: list[ir.Stmt] = []
            for off in node.offsets:
                out.extend(_Bind(node.var, off).visit(node.body).body)
            return tuple(out)

    return dataclasses.replace(kernel, loop=Unroll().visit(kernel.loop))


_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


def fold_constants(kernel: StencilIR) -> StencilIR:
    """Fold arithmetic on literals of one type, and drop multiplications by one.

    Before: ``g[x] * (2.0 * 0.5)``  After: ``g[x] * 1.0`` then ``g[x]``.
    """
    class Fold(Transformer):
        def visit_BinOp(self, node: ir.BinOp):
            node = self.generic_visit(node)
            a, b = node.left, node.right
            if isinstance(a, ir.Const) and isinstance(b, ir.Const) and a.ctype == b.ctype \
                    and node.op in _OPS and a.ctype in ("double", "int64_t"):
                value = _OPS[node.op](a.value, b.value)
                if a.ctype == "double" or -(2**63) <= value < 2**63:
                    return ir.Const(value, a.ctype)
            if node.op == "*" and isinstance(b, ir.Const) and b.value == 1 \
                    and b.ctype == "int64_t" and isinstance(a, ir.Const | ir.Var):
                return a
            return node

        def visit_Cast(self, node: ir.Cast):
            node = self.generic_visit(node)
            e = node.expr
            if isinstance(e, ir.Const) and node.ctype in ("double", "float", "int64_t") \
                    and e.ctype in ("double", "int64_t"):
                if node.ctype == "int64_t":
                    return ir.Const(int(e.value), "int64_t")
                if node.ctype == "double":
                    return ir.Const(float(e.value), "double")
            return node

    return dataclasses.replace(kernel, loop=Fold().visit(kernel.loop))
