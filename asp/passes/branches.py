"""The serial branch of a parallel function: calls too small to pay for a team.

An OpenMP ``if()`` clause still starts a team of one thread, and the outlined body it
runs is compiled with less knowledge than inline code: a call of a 5-point stencil on
180x180 float64 took 23.8 us that way against 16.9 us serially inline, on 16x16 3.2 us
against 0.9 us.  So a parallel function gets a plain branch instead, in one of two shapes:

- :func:`serial_below` with no ``serial``: each parallel loop or region and a serial
  copy of it (``if (work > T) { parallel } else { serial copy }``);
- :func:`serial_below` with ``serial``: the whole body is the parallel branch and the
  serial one calls ``serial``, a function of the same parameters that several variants
  share (:func:`unshare` makes it).  A unit of five stencil variants compiles six bodies
  instead of ten.

Either branch is an :class:`~asp.ir.platform.If` of role ``"threshold"``: a quick first
tier (:data:`asp.runtime.build.QUICK`) takes the parallel code at every size and
compiles no serial code (a 3-D stencil's first variant 0.17 -> 0.12 s of gcc).
"""
from __future__ import annotations

import dataclasses

from asp.ir import platform as ir
from asp.ir.node import Transformer

__all__ = ["serial_below", "unshare"]


class _Unshare(Transformer):
    """A region's body as one thread runs it: its work-shared loops serial."""

    def visit_For(self, node: ir.For):
        node = self.generic_visit(node)
        return dataclasses.replace(node, parallel=None) if node.parallel is not None else node

    def visit_Region(self, node: ir.Region):
        return node


class _Serial(_Unshare):
    """Every region replaced by its body, every loop serial."""

    def visit_Region(self, node: ir.Region):
        return self.visit(node.body)


def unshare(fn: ir.Function, name: str) -> ir.Function:
    """``fn`` as one thread runs it, named ``name``: each region replaced by its body (the
    statements outside its shared loops only touch what the body declares for itself),
    each parallel loop serial.  Work-sharing functions it calls run on a team of one.

    Before: ``#pragma omp parallel`` ``{ #pragma omp for nowait  for (...) s; b(); }``
    After:  ``{ for (...) s; b(); }``
    """
    return dataclasses.replace(fn, name=name, body=_Serial().visit(fn.body))


def serial_below(fn: ir.Function, *, when: ir.Expr,
                 serial: ir.Function | None = None) -> ir.Function:
    """Run each parallel loop (and each parallel region) in parallel only when ``when``
    holds, else serially.

    Before: ``#pragma omp parallel for`` ``for (...) s;``
    After:  ``if (when) { #pragma omp parallel for  for (...) s; } else { for (...) s; }``
    A region's serial copy is its body with the work-shared loops serial: the same
    work, once, when the statements outside those loops only touch what each thread
    declares for itself (what a region's body holds).

    With ``serial`` (whose parameters are the first of ``fn``'s: a tiled variant passes
    its tile sizes after them), the serial branch is a call of it instead of a copy:
    ``if (when) { body } else { return serial(p...); }``.  ``when`` may read only the
    parameters.
    """
    if serial is not None:
        names = [p.name for p in fn.params]
        if [p.name for p in serial.params] != names[:len(serial.params)]:
            raise ValueError(f"{serial.name}'s parameters are not the first of {fn.name}'s")
        call = ir.Call(serial.name, tuple(ir.Var(p.name) for p in serial.params))
        other = (ir.Return(call) if fn.ret != "void" else ir.ExprStmt(call))
        return dataclasses.replace(fn, body=ir.Block((ir.If(when, fn.body, ir.Block((other,)),
                                                            role="threshold"),)))

    class Split(Transformer):
        def visit_For(self, node: ir.For):
            if node.parallel is None:
                return self.generic_visit(node)
            serial = dataclasses.replace(node, parallel=None)
            return ir.If(when, ir.Block((node,)), ir.Block((serial,)), role="threshold")

        def visit_Region(self, node: ir.Region):
            return ir.If(when, ir.Block((node,)), _Unshare().visit(node.body),
                         role="threshold")

        def visit_While(self, node):
            return node

    return dataclasses.replace(fn, body=Split().visit(fn.body))
