"""The core's translator of scalar Python to typed platform IR, which domain front ends extend.

:class:`ScalarTranslator` translates what every kernel language shares: the expressions
of :class:`~asp.frontend.expressions.ExpressionTranslator` (Python's arithmetic on NumPy's
types, comparisons, ``and or not``, ternaries, the builtins, ``math`` and NumPy
functions, module constants) and the statements of a scalar function: assignments
(tuple, chained, augmented, annotated), ``if``, ``for ... in range``, ``while``,
``break``/``continue`` and ``return``.

A domain front end subclasses it and overrides only its domain; the stencil's front end
(:mod:`specializers.stencil.frontend`) is the example.  The hooks:

* ``e_<Node>``, ``s_<Node>``: translate one kind of ``ast`` node; a domain adds its own
  (``e_Subscript``: ``grid[x]``), extends one and calls ``super()`` for the rest
  (``e_Name``, ``e_Attribute``), or refuses one by setting it to ``None``
  (``s_While = None``);
* ``variable(name)``: a user variable's name in the IR (:func:`asp.ir.names.user` by
  default: ``v_x``);
* ``static_value(node)``: what a call calls (the stencil: ``self.method``);
  ``domain_call(node, fn)``: the domain's own functions (``distance``);
* ``store(target, e, t, node)``: assignments to the domain's targets (``out[x] = ...``);
  ``assign_name``: which names may not be assigned;
* ``temporary(e, t)``: a value bound to a fresh name (a declaration by default);
* ``kind``, ``callables``: how messages name the kernel, and what it may call.

Every refusal is a :class:`~asp.errors.FrontendError` at the construct's ``file:line``.
"""
from __future__ import annotations

import ast
from collections.abc import Callable, Iterable, Mapping

from asp.frontend.calls import callable_kind
from asp.frontend.expressions import BINOPS, ExpressionTranslator
from asp.frontend.source import KernelSource
from asp.ir import platform as ir
from asp.ir.names import Namer
from asp.ir.pyscalar import INT, T, cast, join

__all__ = ["ScalarTranslator", "settle"]


class ScalarTranslator(ExpressionTranslator):
    """Translates Python statements to typed platform IR: ``block(stmts)`` gives an
    ``ir.Block``, ``stmt(node)`` a list of statements.

    ``env`` is updated as assignments are met (a variable's type is the
    :func:`~asp.ir.pyscalar.join` of all it is assigned), so a caller translates until
    it stops changing (:func:`settle`).
    """

    def __init__(self, src: KernelSource, ns: Mapping[str, object], params: dict[str, T],
                 env: dict[str, T], *, kind: str = "a kernel", names: Namer | None = None):
        super().__init__(src, ns, params, env, kind=kind, names=names)
        self.loop_depth = 0
        self.returns: list[T] = []
        self.ret: T | None = None  # the function's return type, once known

    def block(self, stmts: Iterable[ast.stmt]) -> ir.Block:
        out: list[ir.Stmt] = []
        for s in stmts:
            self.pending = []
            produced = self.stmt(s)
            out.extend(self.pending)
            out.extend(produced)
        return ir.Block(tuple(out))

    def nested(self, stmts: Iterable[ast.stmt]) -> ir.Block:
        """The body of an ``if`` or a loop: its temporaries stay inside it, the statement
        that holds it keeps its own."""
        pending = self.pending
        try:
            return self.block(stmts)
        finally:
            self.pending = pending

    def stmt(self, node) -> list[ir.Stmt]:
        return self.dispatch("s", node)

    def assign_name(self, name: str, e: ir.Expr, t: T, node) -> ir.Stmt:
        if name in self.params:
            raise self.err(node, f"cannot assign to parameter {name!r}; use a new local name")
        self.env[name] = join(self.env.get(name), t)
        return ir.Assign(self.variable(name), cast(e, t, self.env[name].ctype))

    def store(self, target, e: ir.Expr, t: T, node) -> list[ir.Stmt]:
        """``target = e``: a name here; a domain front end adds its own targets."""
        if isinstance(target, ast.Name):
            return [self.assign_name(target.id, e, t, node)]
        raise self.err(target, f"only names can be assigned in {self.kind}")

    def s_Assign(self, node: ast.Assign):
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple):
            target = node.targets[0]
            if not isinstance(node.value, ast.Tuple) or len(node.value.elts) != len(target.elts):
                raise self.err(node, "tuple assignment needs a tuple of the same length")
            # Evaluate every right-hand side before assigning any (Python's semantics).
            values = [self.temporary(*self.expr(v)) for v in node.value.elts]
            return [s for tgt, (e, t) in zip(target.elts, values)
                    for s in self.store(tgt, e, t, node)]
        e, t = self.expr(node.value)
        return [s for tgt in node.targets for s in self.store(tgt, e, t, node)]

    def s_AnnAssign(self, node: ast.AnnAssign):
        if node.value is None:
            raise self.err(node, "annotated assignment needs a value")
        return self.store(node.target, *self.expr(node.value), node)

    def s_AugAssign(self, node: ast.AugAssign):
        op = BINOPS.get(type(node.op))
        if op is None:
            raise self.err(node, "unsupported augmented assignment")
        le, lt = self.expr(node.target)  # the target's value: x += v reads x
        re_, rt = self.expr(node.value)
        return self.store(node.target, *self.binop(node, op, le, lt, re_, rt), node)

    def s_Expr(self, node: ast.Expr):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return []  # a docstring
        if isinstance(node.value, ast.Call):
            self.expr(node.value)  # a call that cannot be compiled is reported as such
        raise self.err(node, f"an expression statement has no effect in {self.kind}")

    def s_Pass(self, node):
        return []

    def s_Return(self, node: ast.Return):
        if node.value is None:
            raise self.err(node, f"{self.kind} must return a value")
        if isinstance(node.value, ast.Tuple):
            raise self.err(node, "returning several values is not supported; "
                                 "write one kernel per output")
        e, t = self.expr(node.value)
        self.returns.append(t)
        ret = self.ret.ctype if self.ret is not None else t.ctype
        return [ir.Return(cast(e, t, ret))]

    def s_If(self, node: ast.If):
        c = self.condition(node.test)
        if isinstance(c, ir.Const):
            # Python runs only the branch taken: what the other assigns must not widen
            # a variable's type (its value would have the taken branch's type).
            taken = node.body if c.value else node.orelse
            return [self.nested(taken)] if taken else []
        then = self.nested(node.body)
        orelse = self.nested(node.orelse) if node.orelse else None
        return [ir.If(c, then, orelse)]

    def s_While(self, node: ast.While):
        if node.orelse:
            raise self.err(node, "'while ... else' is not supported")
        c = self.condition(node.test)
        if self.pending:
            raise self.err(node, "a while condition must be a simple expression")
        self.loop_depth += 1
        body = self.nested(node.body)
        self.loop_depth -= 1
        return [ir.While(c, body)]

    def s_For(self, node: ast.For):
        """``for v in range(...)``: a loop of ``role="range"`` over the trip count."""
        if node.orelse:
            raise self.err(node, "'for ... else' is not supported")
        it = node.iter
        if not (isinstance(it, ast.Call) and not it.keywords
                and callable_kind(self.static_value(it.func))[0] == "range"):
            raise self.err(node, "only 'for ... in range(...)' loops are supported")
        if not isinstance(node.target, ast.Name):
            raise self.err(node, "the loop variable must be a plain name")
        args = [self.expr(a) for a in it.args]
        if not 1 <= len(args) <= 3 or any(t.is_float for _, t in args):
            raise self.err(node, "range() takes one to three integer arguments")
        zero, one = ir.Const(0, "int64_t"), ir.Const(1, "int64_t")
        if len(args) == 1:
            start, stop, step = zero, cast(*args[0], "int64_t"), one
        else:
            start, stop = cast(*args[0], "int64_t"), cast(*args[1], "int64_t")
            step = cast(*args[2], "int64_t") if len(args) == 3 else one
        if isinstance(step, ir.Const) and step.value == 0:
            raise self.err(node, "range() step must not be zero")
        name = node.target.id
        if name in self.params:
            raise self.err(node, f"cannot use parameter {name!r} as a loop variable")
        self.env[name] = join(self.env.get(name), INT)
        counter = self.names.fresh("i")
        v_start, v_step, v_count = (ir.Var(self.names.fresh(h))
                                    for h in ("start", "step", "count"))
        # Python's range: the trip count is computed once, up front (len(range(...))).
        count = ir.Call("asp_range_len", (v_start, stop, v_step))
        header = [ir.Declare("int64_t", v_start.name, start, const=True),
                  ir.Declare("int64_t", v_step.name, step, const=True),
                  ir.Declare("int64_t", v_count.name, count, const=True)]
        self.loop_depth += 1
        body = self.nested(node.body)
        self.loop_depth -= 1
        # The loop variable takes each value in turn and keeps the last one after the loop.
        value = ir.BinOp("+", v_start, ir.BinOp("*", ir.Var(counter), v_step))
        copy = ir.Assign(self.variable(name), cast(value, INT, self.env[name].ctype))
        loop = ir.For(counter, zero, v_count, ir.Block((copy, *body.body)), role="range")
        return [*header, loop]

    def s_Break(self, node):
        if not self.loop_depth:
            raise self.err(node, "'break' outside a loop")
        return [ir.Break()]

    def s_Continue(self, node):
        if not self.loop_depth:
            raise self.err(node, "'continue' outside a loop")
        return [ir.Continue()]


def settle(make: Callable[[dict[str, T]], ScalarTranslator], stmts: list[ast.stmt],
           rounds: int = 12) -> tuple[ScalarTranslator, ir.Block]:
    """Translate ``stmts`` with a fresh ``make(env)`` translator until the locals' types in
    ``env`` stop changing (a later assignment can widen a type an earlier read used; types
    only widen, so this comes quickly).  Returns the last translator and its block."""
    env: dict[str, T] = {}
    for _ in range(rounds):
        before = dict(env)
        tr = make(env)
        block = tr.block(stmts)
        if env == before:
            break
    return tr, block
