"""Printing the platform IR as C through cgen.

Statements become cgen nodes (so nesting and indentation come from cgen);
expressions become strings with the fewest parentheses C's precedence
allows.  A parallel loop prints as ``omp parallel for`` (a team of its own), or,
inside a :class:`~asp.ir.platform.Region` or a work-sharing function, as
``omp for`` (a share of the team's work).  Float literals are printed so they round-trip exactly
(``repr`` of a Python float), with an ``f`` suffix for ``float``.
"""
from __future__ import annotations

import math

import cgen as c

from asp.ir import platform as ir
from asp.ir.node import Visitor

__all__ = ["expr_to_c", "function_to_cgen", "module_to_c"]

# C precedence, higher binds tighter.
_PREC = {
    "||": 1, "&&": 2, "|": 3, "^": 4, "&": 5, "==": 6, "!=": 6,
    "<": 7, "<=": 7, ">": 7, ">=": 7, "<<": 8, ">>": 8, "+": 9, "-": 9,
    "*": 10, "/": 10, "%": 10,
}
_UNARY = 11
_POSTFIX = 12
_ATOM = 13


def _literal(value, ctype: str) -> str:
    if ctype == "bool":
        return "1" if value else "0"
    if ctype in ("double", "float"):
        v = float(value)
        if math.isnan(v):
            text = "NAN"
        elif math.isinf(v):
            text = "INFINITY" if v > 0 else "(-INFINITY)"
        else:
            text = repr(v)
            if "e" not in text and "." not in text:
                text += ".0"
        if ctype == "float" and text[-1].isdigit():
            text += "f"
        return text
    v = int(value)
    if ctype == "int64_t":
        if v == -(2**63):  # 9223372036854775808 alone does not fit in int64_t
            return "INT64_MIN"
        return f"INT64_C({v})" if abs(v) >= 2**31 else str(v)
    if ctype == "uint64_t":
        return f"UINT64_C({v})"
    return str(v)


class _ExprPrinter(Visitor):
    """Returns (text, precedence) for an expression."""

    def visit_Const(self, node: ir.Const):
        text = _literal(node.value, node.ctype)
        neg = text.startswith("-") or text.startswith("(-")
        return text, (_UNARY if neg else _ATOM)

    def visit_Var(self, node: ir.Var):
        return node.name, _ATOM

    def visit_ArrayRef(self, node: ir.ArrayRef):
        return f"{node.array}[{self.text(node.index)}]", _POSTFIX

    def visit_Call(self, node: ir.Call):
        return f"{node.func}({', '.join(self.text(a) for a in node.args)})", _POSTFIX

    def visit_Cast(self, node: ir.Cast):
        return f"({node.ctype}){self.wrap(node.expr, _UNARY)}", _UNARY

    def visit_UnaryOp(self, node: ir.UnaryOp):
        inner = self.wrap(node.operand, _UNARY if node.op != "&" else _POSTFIX)
        if node.op == "-" and inner.startswith("-"):
            inner = f"({inner})"
        return f"{node.op}{inner}", _UNARY

    def visit_BinOp(self, node: ir.BinOp):
        p = _PREC[node.op]
        left = self.wrap(node.left, p)
        # C operators are left-associative: the right side needs parens at equal precedence.
        right = self.wrap(node.right, p + 1)
        return f"{left} {node.op} {right}", p

    def visit_Ternary(self, node: ir.Ternary):
        return (f"{self.wrap(node.cond, 1)} ? {self.wrap(node.then, 1)} : "
                f"{self.wrap(node.orelse, 0)}"), 0

    def generic_visit(self, node, *args, **kwargs):
        raise TypeError(f"not an expression: {type(node).__name__}")

    def text(self, node: ir.Expr) -> str:
        return self.visit(node)[0]

    def wrap(self, node: ir.Expr, min_prec: int) -> str:
        text, prec = self.visit(node)
        return text if prec >= min_prec else f"({text})"


_EXPR = _ExprPrinter()


def expr_to_c(expr: ir.Expr) -> str:
    """C text of an expression."""
    return _EXPR.text(expr)


def _reduction_clauses(node: ir.For | ir.Region) -> str:
    by_op: dict[str, list[str]] = {}
    for op, var in node.reductions:
        by_op.setdefault(op, []).append(var)
    return "".join(f" reduction({op}:{', '.join(vs)})" for op, vs in by_op.items())


def _team_clauses(num_threads: int | None, when: ir.Expr | None) -> str:
    out = f" num_threads({num_threads})" if num_threads else ""
    return out + (f" if({expr_to_c(when)})" if when is not None else "")


def _pragmas(loop: ir.For, region: bool) -> list[c.Generable]:
    """The loop's pragmas; ``region``: it is directly in a parallel region's team, so a
    parallel loop is work-shared (``omp for``), not a team of its own."""
    out: list[c.Generable] = []
    reductions = _reduction_clauses(loop)
    if loop.parallel is not None:
        p = loop.parallel
        head = "omp for" if region else "omp parallel for"
        clause = f"{head}{' simd' if loop.simd else ''} schedule({p.schedule}"
        clause += f", {p.chunk})" if p.chunk else ")"
        if p.collapse > 1:
            clause += f" collapse({p.collapse})"
        if region:
            if p.num_threads or p.when is not None:
                raise ValueError(f"loop {loop.var}: num_threads and if() of a work-shared "
                                 "loop belong to its parallel region")
            clause += reductions + (" nowait" if p.nowait else "")
        else:
            # A team of its own ends with the loop: nowait would mean nothing.
            clause += _team_clauses(p.num_threads, p.when) + reductions
        out.append(c.Pragma(clause))
    elif loop.simd:
        out.append(c.Pragma("omp simd" + reductions))
    if loop.unroll:
        out.append(c.Pragma(f"GCC unroll {loop.unroll}"))
    return out


class _StmtPrinter(Visitor):
    """Returns a list of cgen nodes for a statement.

    ``region`` (passed down while printing) says the statement runs on a parallel
    region's team and no work-shared loop of it encloses the statement: there a
    parallel loop is printed as ``omp for``.  Inside a work-shared loop's body it is
    False again (a parallel loop there would be a nested team).
    """

    def visit_Block(self, node: ir.Block, region: bool = False):
        return [c.Block(self.body(node, region))]

    def body(self, block: ir.Block, region: bool = False) -> list[c.Generable]:
        out: list[c.Generable] = []
        for stmt in block.body:
            out.extend(self.visit(stmt, region))
        return out

    def visit_Region(self, node: ir.Region, region: bool = False):
        clause = "omp parallel" + _team_clauses(node.num_threads, node.when)
        return [c.Pragma(clause + _reduction_clauses(node)), c.Block(self.body(node.body, True))]

    def visit_Declare(self, node: ir.Declare, region: bool = False):
        if node.values is not None:
            values = ", ".join(_literal(v, node.ctype) for v in node.values)
            return [c.Statement(f"static const {node.ctype} {node.name}[{len(node.values)}] "
                                f"= {{{values}}}")]
        if node.size is not None:
            return [c.Statement(f"{node.ctype} {node.name}[{node.size}]")]
        decl = c.Value(node.ctype, node.name)
        if node.const:
            decl = c.Const(decl)
        if node.init is None:
            return [c.Statement(f"{node.ctype} {node.name}")]
        return [c.Initializer(decl, expr_to_c(node.init))]

    def visit_Assign(self, node: ir.Assign, region: bool = False):
        return [c.Statement(f"{expr_to_c(node.target)} {node.op}= {expr_to_c(node.value)}")]

    def visit_ExprStmt(self, node: ir.ExprStmt, region: bool = False):
        return [c.Statement(expr_to_c(node.expr))]

    def visit_If(self, node: ir.If, region: bool = False):
        then = c.Block(self.body(node.then, region))
        orelse = (c.Block(self.body(node.orelse, region)) if node.orelse and node.orelse.body
                  else None)
        cond = expr_to_c(node.cond)
        return [c.If(f"ASP_PARALLEL({cond})" if node.role == "threshold" else cond, then,
                     orelse)]

    def visit_For(self, node: ir.For, region: bool = False):
        start = f"int64_t {node.var} = {expr_to_c(node.start)}"
        # The bound may be a ternary (a tile's min): parenthesize below '<'.
        cond = f"{node.var} < {_EXPR.wrap(node.stop, _PREC['<'] + 1)}"
        step = (f"++{node.var}" if node.step == ir.Const(1, "int64_t")
                else f"{node.var} += {expr_to_c(node.step)}")
        inner = region and node.parallel is None  # a serial loop every thread runs
        return [*_pragmas(node, region),
                c.For(start, cond, step, c.Block(self.body(node.body, inner)))]

    def visit_While(self, node: ir.While, region: bool = False):
        return [c.While(expr_to_c(node.cond), c.Block(self.body(node.body, region)))]

    def visit_Break(self, node, region: bool = False):
        return [c.Statement("break")]

    def visit_Continue(self, node, region: bool = False):
        return [c.Statement("continue")]

    def visit_Return(self, node: ir.Return, region: bool = False):
        return [c.Statement("return" if node.value is None else f"return {expr_to_c(node.value)}")]

    def visit_Pragma(self, node: ir.Pragma, region: bool = False):
        return [c.Pragma(node.text)]

    def visit_Verbatim(self, node: ir.Verbatim, region: bool = False):
        # cgen's LiteralLines dedents and insists on a leading newline.
        return [c.LiteralLines("\n" + node.text.strip("\n"))] if node.text.strip() else []

    def generic_visit(self, node, *args, **kwargs):
        raise TypeError(f"not a statement: {type(node).__name__}")


_STMT = _StmtPrinter()


def _param(p: ir.Param) -> c.Generable:
    if not p.pointer:
        return c.Value(p.ctype, p.name)
    # ``const`` qualifies the pointee: ``const double *restrict x``.
    base = c.Value(f"const {p.ctype}" if p.const else p.ctype, p.name)
    return c.RestrictPointer(base) if p.restrict else c.Pointer(base)


def function_to_cgen(fn: ir.Function) -> c.FunctionBody:
    ret = fn.ret
    if fn.inline:
        ret = "inline " + ret
    if fn.static:
        ret = "static " + ret
    decl = c.FunctionDeclaration(c.Value(ret, fn.name), [_param(p) for p in fn.params])
    return c.FunctionBody(decl, c.Block(_STMT.body(fn.body, fn.worksharing)))


_PARALLEL = """
#ifndef ASP_PARALLEL
#define ASP_PARALLEL(work) (work)
#endif"""


def module_to_c(module: ir.Module) -> str:
    """The C source of a translation unit."""
    parts: list[c.Generable] = [c.Include(h, system=True) for h in module.includes]
    if any(isinstance(n, ir.If) and n.role == "threshold"
           for fn in (*module.helpers, *module.functions) for n in fn.walk()):
        # A threshold branch's test; a quick first tier has defined it as 1
        # (asp.runtime.build.QUICK).
        parts += [c.Line(), c.LiteralLines(_PARALLEL)]
    if module.preamble:
        # cgen's LiteralLines insists on a leading newline; accept any preamble text.
        parts += [c.Line(), c.LiteralLines("\n" + module.preamble.lstrip("\n"))]
    for fn in (*module.helpers, *module.functions):
        parts.append(c.Line())
        if fn.optimize:
            if not (fn.optimize.isascii() and fn.optimize.replace("-", "").isalnum()):
                raise ValueError(f"function {fn.name}: optimize={fn.optimize!r} is not a "
                                 "level such as 'O2'")
            parts.append(c.LiteralLines(
                "\n#if defined(__GNUC__) && !defined(__clang__) && !defined(ASP_QUICK_TIER)\n"
                f'__attribute__((optimize("{fn.optimize}")))\n#endif'))
        parts.append(function_to_cgen(fn))
    return str(c.Module(parts)) + "\n"
