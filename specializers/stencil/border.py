"""The border slabs: the points of the output outside the interior box, as one
work-sharing helper function every variant's team calls (see :func:`.lowering.lower`).

Two kinds: a boundary mode's slabs compute each point with its reads remapped by the
mode; in ``'interior'`` mode, a fresh output's slabs are zeroed (what
``StencilKernel.__call__`` returns has zeros where the kernel does not write).
Zeroing them in the team, each thread the rows it computes, keeps every cache line
of the output on the core that writes it: zeroing a 512^2 output's border from the
calling thread first cost 20-35 us a step, a third of the step, in lines moved
between the cores.
"""
from __future__ import annotations

from asp.codegen.entry import abi_params, extent_name
from asp.ir import platform as ir
from asp.runtime.abi import ArgSpec
from specializers.stencil.domain import NeighborLoop, StencilIR, radius
from specializers.stencil.lowering import (
    _box,
    _c,
    _nest,
    _point_body,
    _prologue,
    _result,
    _shared,
    needs_load,
    pname,
)

__all__ = ["lower_border"]


def lower_border(kernel: StencilIR, names: list[str], specs: tuple[ArgSpec, ...], *,
                 mode: str, cval: float, loops: list[NeighborLoop], name: str,
                 zero: int | None = None) -> ir.Function:
    """The border slabs of a boundary mode: every point within the neighbourhood's reach
    of an edge, each read remapped by ``mode``; or, with ``zero`` (a ghost depth, in
    ``'interior'`` mode), every point at most ``zero`` from an edge, assigned 0.  Along
    axis ``a``, the slabs below and above the box span the box on the axes before ``a``
    and the whole grid after it, so every point outside the box is in exactly one slab.

    A work-sharing function: every thread of a variant's region calls it, and each
    slab is a loop the team shares without a barrier, its first two axes collapsed (a
    slab is a point or two thin along one axis: shared along that axis alone, it
    would be one thread's work).  No SIMD: remapped reads do not vectorize, and the
    border is a thin shell of the grid.  Shared by all variants of a signature."""
    dim = kernel.grid(kernel.loop.grid).ndim
    n = [ir.Var(extent_name(pname(kernel.loop.grid), a)) for a in range(dim)]
    ivars = [ir.Var(f"asp_i{a}") for a in range(dim)]
    if zero is None:
        pre = _prologue(kernel, loops, dim, n)
        lo, hi = radius(kernel, dim)
        body = _point_body(kernel, loops, dim, ivars, checked=True, mode=mode, cval=cval,
                           load=needs_load(kernel), store=None)
        result = _result(kernel)
    else:
        # The box of the kernel's loop (the output has the loop grid's shape: both are
        # fields, which the guards hold to one shape).
        pre = [ir.Declare("int", "asp_bad", ir.Const(0, "int"))]
        lo = hi = (zero,) * dim
        out = kernel.grid(kernel.out)
        index: ir.Expr = ivars[0]
        for a in range(1, dim):
            index = ir.BinOp("+", ir.BinOp("*", index, ir.Var(extent_name(pname(out.name), a))),
                             ivars[a])
        body = ir.Block((ir.Assign(ir.ArrayRef(pname(out.name), index),
                                   ir.Const(0, out.ctype)),))
        result = ir.Return(ir.Var("asp_bad"))
    box = _box(lo, hi, n, pre)
    nests: list[ir.Stmt] = []
    for a in range(dim):
        if not (lo[a] or hi[a]):
            continue
        for part in ((_c(0), box[a][0]), (box[a][1], n[a])):
            ranges = [box[b] if b < a else (part if b == a else (_c(0), n[b]))
                      for b in range(dim)]
            nests.append(_shared(_nest(ranges, body), collapse=min(dim, 2)))
    params = abi_params([pname(x) for x in names], specs)
    return ir.Function(name, params, ir.Block((*pre, *nests, result)), ret="int",
                       static=True, worksharing=True)
