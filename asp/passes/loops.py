"""Loop passes on the platform IR.  Each is a pure function ``Function -> Function``.

The passes act on *loop nests*: a ``For`` whose body is exactly one ``For``
(possibly after declarations that do not depend on the inner index) continues
the nest.  Parameters are bound with ``functools.partial``.
"""
from __future__ import annotations

import dataclasses

from asp.ir import platform as ir
from asp.ir.node import Transformer, Visitor

__all__ = [
    "innermost_loops", "outer_loops", "parallelize_outer", "serial_below", "tile_loops",
    "unroll_inner", "vectorize_inner",
]


class _Collect(Visitor):
    def __init__(self):
        self.found = []

    def visit_For(self, node: ir.For, depth: int = 0):
        self.found.append((node, depth))
        self.generic_visit(node, depth + 1)

    def generic_visit(self, node, depth: int = 0):
        for child in node.children():
            self.visit(child, depth)


def outer_loops(fn: ir.Function) -> list[ir.For]:
    """The loops not nested in another loop."""
    c = _Collect()
    c.visit(fn.body)
    return [n for n, d in c.found if d == 0]


def _has(node: ir.Node, *kinds: type) -> bool:
    return any(isinstance(n, kinds) for n in node.walk())


def innermost_loops(fn: ir.Function) -> list[ir.For]:
    """The loops with no loop inside them."""
    return [n for n in fn.body.walk()
            if isinstance(n, ir.For) and not _has(n.body, ir.For, ir.While)]


def _nest(loop: ir.For) -> list[ir.For]:
    """The perfectly nested loops starting at ``loop`` (outermost first)."""
    out = [loop]
    while len(out[-1].body.body) == 1 and isinstance(out[-1].body.body[0], ir.For):
        out.append(out[-1].body.body[0])
    return out


def parallelize_outer(fn: ir.Function, *, schedule: str = "static", chunk: int | None = None,
                      collapse: int = 1, when: ir.Expr | None = None) -> ir.Function:
    """Share each outermost loop among OpenMP threads.

    Before: ``for (i...) for (j...) s;``
    After:  ``#pragma omp parallel for schedule(static)`` above ``for (i...)``.
    With ``collapse=2`` the pragma covers both loops of a perfect nest (a
    shallower nest gets what depth it has); ``when`` becomes an ``if()``
    clause (e.g. only go parallel for enough work).
    """
    if schedule not in ("static", "dynamic", "guided"):
        raise ValueError(f"schedule={schedule!r}: expected static, dynamic or guided")

    class Par(Transformer):
        def visit_For(self, node: ir.For):
            depth = min(collapse, len(_nest(node)))
            # The loop bounds of a collapsed nest must not depend on outer indices.
            return dataclasses.replace(
                node, parallel=ir.Parallel(schedule=schedule, chunk=chunk, collapse=depth,
                                           when=when))

        def visit_While(self, node):
            return node

    return dataclasses.replace(fn, body=Par().visit(fn.body))


def _carries_scalar(loop: ir.For) -> bool:
    """Whether the loop body assigns a scalar declared outside it (a loop-carried value)."""
    declared = {n.name for n in loop.body.walk() if isinstance(n, ir.Declare)}
    return any(isinstance(n, ir.Assign) and isinstance(n.target, ir.Var)
               and n.target.name not in declared for n in loop.body.walk())


def vectorize_inner(fn: ir.Function) -> ir.Function:
    """Mark each innermost loop with ``#pragma omp simd`` when that is safe.

    Before: ``for (j...) a[j] = b[j] + 1;``  After: ``#pragma omp simd`` above it.
    Left alone: loops with an early exit (``break``/``return``/``continue``), and
    loops that carry a scalar from one iteration to the next (``s += a[j]``):
    ``omp simd`` promises no such dependence, so marking them would be wrong.
    """
    class Simd(Transformer):
        def visit_For(self, node: ir.For):
            node = self.generic_visit(node)
            if (not _has(node.body, ir.For, ir.While, ir.Break, ir.Return, ir.Continue)
                    and not _carries_scalar(node)):
                return dataclasses.replace(node, simd=True)
            return node

    return dataclasses.replace(fn, body=Simd().visit(fn.body))


def unroll_inner(fn: ir.Function, *, factor: int = 4) -> ir.Function:
    """Ask the compiler to unroll each innermost loop ``factor`` times (``#pragma GCC unroll``)."""
    if factor < 1:
        raise ValueError("unroll factor must be >= 1")

    class Unroll(Transformer):
        def visit_For(self, node: ir.For):
            node = self.generic_visit(node)
            if not _has(node.body, ir.For, ir.While):
                return dataclasses.replace(node, unroll=factor)
            return node

    return dataclasses.replace(fn, body=Unroll().visit(fn.body))


def _min(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    return ir.Ternary(ir.BinOp("<", a, b), a, b)


def tile_loops(fn: ir.Function, *, sizes: tuple[int | None, ...]) -> ir.Function:
    """Cache-block each outermost perfect nest: loop ``k`` is split into tiles of ``sizes[k]``.

    Before, with sizes (None, 64)::

        for (i = a; i < b; ++i) for (j = c; j < d; ++j) s;

    After::

        for (j_t = c; j_t < d; j_t += 64)
          for (i = a; i < b; ++i)
            for (j = j_t; j < min(j_t + 64, d); ++j) s;

    Tile loops go outermost (in nest order) and take over the outer loop's
    ``parallel`` annotation; point loops keep ``simd``.  ``None`` or 0 leaves
    a level untiled.  Only unit-step loops whose bounds do not depend on
    other indices of the nest are tiled; anything else is returned unchanged.
    """
    class Tile(Transformer):
        def visit_For(self, node: ir.For):
            nest = _nest(node)[: len(sizes)]
            names = {lp.var for lp in nest}
            plan = []
            for lp, size in zip(nest, sizes):
                if not size or lp.step != ir.Const(1, "int64_t"):
                    plan.append(None)
                    continue
                used = {v.name for e in (lp.start, lp.stop) for v in e.walk()
                        if isinstance(v, ir.Var)}
                plan.append(size if not used & names else None)
            if not any(plan):
                return node
            inner_body = nest[-1].body
            points = []
            for lp, size in zip(nest, plan):
                if size:
                    tv = ir.Var(lp.var + "_t")
                    start = tv
                    stop = _min(ir.BinOp("+", tv, ir.Const(size, "int64_t")), lp.stop)
                    points.append(dataclasses.replace(lp, start=start, stop=stop, parallel=None))
                else:
                    points.append(dataclasses.replace(lp, parallel=None))
            body = inner_body
            for lp in reversed(points):
                body = ir.Block((dataclasses.replace(lp, body=body),))
            tiles = [ir.For(lp.var + "_t", lp.start, lp.stop, ir.Block(()),
                            step=ir.Const(size, "int64_t"))
                     for lp, size in zip(nest, plan) if size]
            for t in reversed(tiles):
                body = ir.Block((dataclasses.replace(t, body=body),))
            outer = body.body[0]
            if node.parallel is not None:
                outer = dataclasses.replace(
                    outer, parallel=dataclasses.replace(node.parallel,
                                                        collapse=min(node.parallel.collapse,
                                                                     len(tiles))))
            return outer

        def visit_While(self, node):
            return node

    return dataclasses.replace(fn, body=Tile().visit(fn.body))


def serial_below(fn: ir.Function, *, when: ir.Expr) -> ir.Function:
    """Run each parallel loop in parallel only when ``when`` holds, else serially.

    Before: ``#pragma omp parallel for`` ``for (...) s;``
    After:  ``if (when) { #pragma omp parallel for  for (...) s; } else { for (...) s; }``
    An OpenMP ``if()`` clause still pays for a team of one thread; a plain
    branch makes a call on a tiny array cost nothing extra.
    """
    class Split(Transformer):
        def visit_For(self, node: ir.For):
            if node.parallel is None:
                return node
            serial = dataclasses.replace(node, parallel=None)
            return ir.If(when, ir.Block((node,)), ir.Block((serial,)))

        def visit_While(self, node):
            return node

    return dataclasses.replace(fn, body=Split().visit(fn.body))
