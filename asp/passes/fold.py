"""Constant folding on platform IR expressions, for any specializer's domain passes.

Before: ``x * (2.0 * 3.0)``  After: ``x * 6.0``; ``(double)2`` becomes ``2.0``;
``g[x] * 1`` (an integer one) becomes ``g[x]``.  Only operations whose C result
is exactly what Python computes on the same constants are folded: ``+ - *`` on two
constants of one type (``double``, or ``int64_t`` when the result fits), casts of
finite constants to ``double``, ``float`` or ``int64_t``; comparisons of two constants of
one type, ``!`` of a constant, and ``&&`` / ``||`` whose constant left operand decides
(C does not evaluate the right one either).  A condition folded to a constant is how a
front end knows a branch is dead: Python never runs it, so its values must not widen a
type (``if LIMIT > 5: return 0.5`` with ``LIMIT = 3`` must not make an ``int64``
function's results ``float64``).
"""
from __future__ import annotations

import math
import operator

import numpy as np

from asp.ir import platform as ir
from asp.ir.node import Node, Transformer

__all__ = ["PY_INT_OPS", "fold_constants", "python_int"]

_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
            "==": operator.eq, "!=": operator.ne}


def _as_float32(v) -> np.float32:
    with np.errstate(over="ignore"):  # 1e300f is inf in C too
        return np.float32(v)


#: The constants' C types whose comparisons fold, and their values as C reads the literal.
_COMPARED = {"bool": bool, "double": float, "float": _as_float32, "int64_t": int,
             "int32_t": int, "int16_t": int, "int8_t": int}


class _Fold(Transformer):
    def visit_BinOp(self, node: ir.BinOp):
        node = self.generic_visit(node)
        a, b = node.left, node.right
        if isinstance(a, ir.Const) and isinstance(b, ir.Const) and a.ctype == b.ctype \
                and node.op in _OPS and a.ctype in ("double", "int64_t"):
            value = _OPS[node.op](a.value, b.value)
            if a.ctype == "double" or -(2**63) <= value < 2**63:
                return ir.Const(value, a.ctype)
        if isinstance(a, ir.Const) and isinstance(b, ir.Const) and a.ctype == b.ctype \
                and node.op in _COMPARE and a.ctype in _COMPARED:
            # Values of one C type compare in Python as in C (ints exactly, floats by IEEE;
            # a float literal is rounded to float first, as C reads 0.1f).
            x, y = (_COMPARED[a.ctype](a.value), _COMPARED[b.ctype](b.value))
            return ir.Const(bool(_COMPARE[node.op](x, y)), "bool")
        if isinstance(a, ir.Const) and node.op in ("&&", "||") \
                and bool(a.value) == (node.op == "||"):
            return ir.Const(node.op == "||", "bool")  # decided by the left operand
        if isinstance(a, ir.Const) and isinstance(b, ir.Const) and node.op in ("&&", "||"):
            return ir.Const(bool(b.value), "bool")  # the left did not decide: the right does
        if node.op == "*" and isinstance(b, ir.Const) and b.value == 1 \
                and b.ctype == "int64_t" and isinstance(a, ir.Const | ir.Var) \
                and not isinstance(b.value, bool):
            return a
        return node

    def visit_UnaryOp(self, node: ir.UnaryOp):
        node = self.generic_visit(node)
        if node.op == "!" and isinstance(node.operand, ir.Const):
            return ir.Const(not node.operand.value, "bool")
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


#: Python's operators on two ints, as a front end folds them (:func:`python_int`).
PY_INT_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv,
              "%": operator.mod, "<<": operator.lshift, ">>": operator.rshift,
              "&": operator.and_, "|": operator.or_, "^": operator.xor}


def python_int(op: str, a: int, b: int) -> int | None:
    """Python's ``a op b`` on two Python ints (unbounded, exact), for a front end to fold;
    None where Python raises (the compiled code's check hands that call to Python).
    Raises OverflowError, saying what the value is, where it does not fit 64 bits."""
    if (op == "<<" and a and b >= 64) or (op == "**" and abs(a) >= 2 and b >= 64):
        # Surely beyond 64 bits; not computed (4294967296 << 2147483647 has 2**31 bits:
        # the fuzzer's folding ran out of time and memory).
        raise OverflowError("beyond 64 bits")
    try:
        v = PY_INT_OPS[op](a, b)
    except (ZeroDivisionError, ValueError, OverflowError):
        return None
    if not -(2**63) <= v < 2**63:
        shown = str(v) if v.bit_length() < 200 else f"a {v.bit_length()}-bit int"
        raise OverflowError(f"{shown}, beyond 64 bits")
    return v
