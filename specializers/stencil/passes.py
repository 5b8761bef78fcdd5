"""Domain passes on the stencil IR: neighbour-loop unrolling, propagation of locals'
constants (which decides the type tests of path-dependent locals once the code is
straight) and constant folding.

Each is a pure function ``StencilIR -> StencilIR``.
"""
from __future__ import annotations

import dataclasses
import math

from asp.ir import platform as ir
from asp.ir.node import Transformer
from asp.passes.fold import fold_constants as fold_expressions
from asp.passes.propagate import propagate_constants, unread_locals
from specializers.stencil.domain import Coord, Distance, GridRead, NeighborLoop, StencilIR

__all__ = ["MAX_UNROLL", "fold_constants", "propagate_locals", "unroll_neighbors"]

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


def propagate_locals(kernel: StencilIR) -> StencilIR:
    """Propagate the constants assigned to locals (:func:`asp.passes.propagate.
    propagate_constants`) and drop the locals nothing uses any more.  After unrolling, a
    local whose type depends on the path (``lap = 0.0`` then ``lap += u[y]`` on a
    float32 grid: a Python float, then float32) has a known type at every statement,
    and the tests of its type tag go: one store, no branch (so the kernel can be
    blocked in time and stream its stores).

    Before: ``lap__k = 0; ...; if (lap__k == 0) out[x] = f(lap__m0); else out[x] = f(lap__m1);``
    (with ``lap__k = 1`` on every path between)  After: ``out[x] = f(lap__m1);``
    """
    loop = propagate_constants(kernel.loop)
    if loop is kernel.loop:
        return kernel
    gone = unread_locals(loop, [name for name, _ in kernel.locals])
    return dataclasses.replace(kernel, loop=loop,
                               locals=tuple(v for v in kernel.locals if v[0] not in gone))
