"""Calls that a vectorized loop can make in vectors: renamed where they are unconditional.

Some helpers have two C forms that return the same bits (:mod:`asp.ir.powers`:
``asp_pow3`` and ``asp_pow3_simd``): an inline one, which gcc if-converts and vectorizes
with the code around it wherever the call sits, and one declared ``omp declare simd``
with hand-written vector versions, much faster in vectors, which gcc 12 calls only where
the call is unconditional (a call under a condition leaves the loop scalar: no masked
versions are called before gcc 14).  This pass renames a call to its vector form where
the function body runs it unconditionally: in the body's statements up to the first that
has control flow (an ``if``, a loop, a ``return`` inside either), outside the branches of
``?:`` and the right operands of ``&&`` and ``||``; the first ``return`` at the top level
is the last statement looked at.

Before: ``double t = asp_pow3(x); if (t > 1.0) return asp_pow3(t); return t;``
After:  ``double t = asp_pow3_simd(x); if (t > 1.0) return asp_pow3(t); return t;``
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from asp.ir import platform as ir
from asp.ir.node import Node, Transformer

__all__ = ["SIMD_FORMS", "simd_calls", "simd_forms_called"]

#: The helpers that have a vector form, and its name.
SIMD_FORMS = {"asp_pow3": "asp_pow3_simd", "asp_pow4": "asp_pow4_simd"}

_CONTROL = (ir.If, ir.For, ir.While, ir.Break, ir.Continue, ir.Return)


class _Rename(Transformer):
    def __init__(self, forms: Mapping[str, str]):
        self.forms = forms

    def visit_Call(self, node: ir.Call):
        node = self.generic_visit(node)
        name = self.forms.get(node.func)
        return dataclasses.replace(node, func=name) if name else node

    def visit_Ternary(self, node: ir.Ternary):
        cond = self.visit(node.cond)  # evaluated always; the branches are not
        return node if cond is node.cond else dataclasses.replace(node, cond=cond)

    def visit_BinOp(self, node: ir.BinOp):
        if node.op in ("&&", "||"):  # the right operand is evaluated conditionally
            left = self.visit(node.left)
            return node if left is node.left else dataclasses.replace(node, left=left)
        return self.generic_visit(node)


def _has_control(stmt: Node) -> bool:
    return any(isinstance(n, _CONTROL) for n in stmt.walk())


def simd_calls(body: ir.Block, forms: Mapping[str, str] = SIMD_FORMS) -> ir.Block:
    """``body`` with the unconditional calls to the helpers in ``forms`` renamed to
    their vector forms (see the module's docstring); the same object if none is."""
    rename = _Rename(forms)
    out: list[ir.Stmt] = []
    stmts = list(body.body)
    for i, stmt in enumerate(stmts):
        if isinstance(stmt, ir.Return):
            out.append(rename.visit(stmt))
            out += stmts[i + 1:]
            break
        if _has_control(stmt):
            out += stmts[i:]
            break
        out.append(rename.visit(stmt))
    if all(a is b for a, b in zip(out, stmts)):
        return body
    return dataclasses.replace(body, body=tuple(out))


def simd_forms_called(node: Node, forms: Mapping[str, str] = SIMD_FORMS) -> frozenset[str]:
    """The vector forms ``node`` calls (its code needs their C)."""
    names = set(forms.values())
    return frozenset(n.func for n in node.walk() if isinstance(n, ir.Call) and n.func in names)
