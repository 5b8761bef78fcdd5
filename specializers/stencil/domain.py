"""The stencil domain IR: a point loop over a grid, neighbour loops, grid accesses.

Expressions and scalar statements are the core's platform IR nodes (``BinOp``,
``Call``, ``Assign`` ...); this module adds the nodes only a stencil has.  A
point is named relative to the point being computed: ``offset`` (a constant
offset, after unrolling) or ``nbr`` (the variable of an enclosing
:class:`NeighborLoop`); neither means the centre point itself.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from asp.ir import platform as ir
from asp.ir.node import Node

__all__ = [
    "Coord", "Distance", "GridInfo", "GridRead", "GridWrite", "NeighborLoop", "PointLoop",
    "StencilIR", "TableRead", "radius",
]


@dataclass(frozen=True)
class GridRead(ir.Expr):
    """``grid[x + offset]`` (or ``grid[y]`` for the neighbour variable ``nbr``)."""

    grid: str
    offset: tuple[int, ...] | None = None
    nbr: str | None = None


@dataclass(frozen=True)
class TableRead(ir.Expr):
    """``table[index]`` on a 1-D lookup table, with Python's index semantics."""

    grid: str
    index: ir.Expr
    child_fields: ClassVar = ("index",)


@dataclass(frozen=True)
class Distance(ir.Expr):
    """``distance(x, y)``: Euclidean distance from the centre to a neighbour point."""

    offset: tuple[int, ...] | None = None
    nbr: str | None = None


@dataclass(frozen=True)
class Coord(ir.Expr):
    """``x[axis]`` (or ``y[axis]``): one coordinate of a point, an integer."""

    axis: int
    offset: tuple[int, ...] | None = None
    nbr: str | None = None


@dataclass(frozen=True)
class GridWrite(ir.Stmt):
    """``out[x] = value`` (augmented writes are already ``out[x] op value`` in ``value``)."""

    grid: str
    value: ir.Expr
    child_fields: ClassVar = ("value",)


@dataclass(frozen=True)
class NeighborLoop(ir.Stmt):
    """``for var in grid.neighbors(x, nid)`` over the constant ``offsets``."""

    var: str
    grid: str
    nid: int
    offsets: tuple[tuple[int, ...], ...]
    body: ir.Block
    child_fields: ClassVar = ("body",)


@dataclass(frozen=True)
class PointLoop(ir.Stmt):
    """``for var in grid.interior_points()``: the body is computed for every point."""

    var: str
    grid: str
    body: ir.Block
    child_fields: ClassVar = ("body",)


@dataclass(frozen=True)
class GridInfo(Node):
    """One array parameter: ``role`` is ``'field'`` (indexed by points) or ``'table'``."""

    name: str
    ctype: str
    ndim: int
    role: str


@dataclass(frozen=True)
class StencilIR(Node):
    """A whole kernel: its parameters (in call order), the output, locals and the loop."""

    params: tuple[str, ...]
    grids: tuple[GridInfo, ...]
    scalars: tuple[tuple[str, str], ...]
    out: str
    locals: tuple[tuple[str, str], ...]
    loop: PointLoop
    #: The user's functions the kernel calls (:mod:`asp.frontend.helpers`), callees first.
    helpers: tuple = field(default=(), repr=False)
    child_fields: ClassVar = ("loop",)

    def grid(self, name: str) -> GridInfo:
        return next(g for g in self.grids if g.name == name)


def radius(kernel: StencilIR, dim: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Per axis, how far below (``lo``, as a positive number) and above (``hi``) any
    field read reaches from the centre point."""
    lo, hi = [0] * dim, [0] * dim
    offsets: list[tuple[int, ...]] = []
    loops = {n.var: n for n in kernel.walk() if isinstance(n, NeighborLoop)}
    for n in kernel.walk():
        if isinstance(n, GridRead):
            if n.offset is not None:
                offsets.append(n.offset)
            elif n.nbr is not None:
                offsets.extend(loops[n.nbr].offsets)
    for off in offsets:
        for a, o in enumerate(off):
            lo[a] = max(lo[a], -o)
            hi[a] = max(hi[a], o)
    return tuple(lo), tuple(hi)
