"""Domain passes on the stencil IR: neighbour-loop unrolling and constant folding.

Each is a pure function ``StencilIR -> StencilIR``.
"""
from __future__ import annotations

import dataclasses
import math

from asp.ir import platform as ir
from asp.ir.node import Transformer
from asp.passes.fold import fold_constants as fold_expressions
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


def fold_constants(kernel: StencilIR) -> StencilIR:
    """Fold arithmetic on literals of one type, and drop multiplications by one (the
    core's folding on the point loop).

    Before: ``g[x] * (2.0 * 0.5)``  After: ``g[x] * 1.0``; ``g[x] * 1`` becomes ``g[x]``.
    """
    return dataclasses.replace(kernel, loop=fold_expressions(kernel.loop))
