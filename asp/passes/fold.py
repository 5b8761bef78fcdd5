"""Constant folding on platform IR expressions, for any specializer's domain passes.

Before: ``x * (2.0 * 3.0)``  After: ``x * 6.0``; ``(double)2`` becomes ``2.0``;
``g[x] * 1`` (an integer one) becomes ``g[x]``.  Only operations whose C result
is exactly what Python computes on the same constants are folded: ``+ - *`` on two
constants of one type (``double``, or ``int64_t`` when the result fits), casts of
finite constants to ``double``, ``float`` or ``int64_t``.
"""
from __future__ import annotations

import math
import operator

from asp.ir import platform as ir
from asp.ir.node import Node, Transformer

__all__ = ["fold_constants"]

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}


class _Fold(Transformer):
    def visit_BinOp(self, node: ir.BinOp):
        node = self.generic_visit(node)
        a, b = node.left, node.right
        if isinstance(a, ir.Const) and isinstance(b, ir.Const) and a.ctype == b.ctype \
                and node.op in _OPS and a.ctype in ("double", "int64_t"):
            value = _OPS[node.op](a.value, b.value)
            if a.ctype == "double" or -(2**63) <= value < 2**63:
                return ir.Const(value, a.ctype)
        if node.op == "*" and isinstance(b, ir.Const) and b.value == 1 \
                and b.ctype == "int64_t" and isinstance(a, ir.Const | ir.Var) \
                and not isinstance(b.value, bool):
            return a
        return node

    def visit_Cast(self, node: ir.Cast):
        node = self.generic_visit(node)
        e = node.expr
        if isinstance(e, ir.Const) and not isinstance(e.value, bool) \
                and node.ctype in ("double", "int64_t") and e.ctype in ("double", "int64_t") \
                and math.isfinite(e.value):
            if node.ctype == "int64_t" and -(2**63) <= int(e.value) < 2**63:
                return ir.Const(int(e.value), "int64_t")
            if node.ctype == "double":
                return ir.Const(float(e.value), "double")
        return node


def fold_constants(tree: Node) -> Node:
    """``tree`` with constant arithmetic folded (see the module docstring)."""
    return _Fold().visit(tree)
