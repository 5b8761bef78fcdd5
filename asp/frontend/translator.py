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
from asp.frontend.helpers import helper_function
from asp.frontend.mixed import (
    MAX_MEMBERS,
    MAX_SPLITS,
    Mixed,
    Split,
    member_name,
    tag_name,
    with_member,
)
from asp.frontend.source import KernelSource
from asp.ir import platform as ir
from asp.ir.names import Namer
from asp.ir.pyscalar import BOOL, INT, T, cast, converted

__all__ = ["ScalarTranslator", "settle"]


class ScalarTranslator(ExpressionTranslator):
    """Translates Python statements to typed platform IR: ``block(stmts)`` gives an
    ``ir.Block``, ``stmt(node)`` a list of statements.

    ``env`` is updated as assignments are met (a variable assigned values of several
    types is :class:`~asp.frontend.mixed.Mixed`), so a caller translates until it stops
    changing (:func:`settle`).  A statement that reads a mixed variable, or holds a
    ternary whose branches differ in type, is translated once per choice (:meth:`split`).

    ``exact`` follows a ``DOUBLE_EITHER`` variable along the path: after ``acc = 0.0`` it
    is a Python float, after ``acc += u[y]`` a float64, whatever ``env`` joins.  A loop
    (a domain's too: :meth:`stmt`) forgets what its body assigns (:meth:`forget`), in it
    and after it unless its handler adds it to ``trips``; an ``if`` keeps what both
    branches agree on, and a statement translated once per choice forgets what it assigns.
    """

    def __init__(self, src: KernelSource, ns: Mapping[str, object], params: dict[str, T],
                 env: dict[str, T], *, kind: str = "a kernel", names: Namer | None = None):
        super().__init__(src, ns, params, env, kind=kind, names=names)
        self.loop_depth = 0
        self.trips: set[ast.AST] = set()  # loops whose whole body runs at least once
        self.entered: set[str] = set()  # counters of loops over constant, non-empty ranges
        self.returns: list[T] = []
        self.ret: T | None = None  # the function's return type, once known
        self.helpers = None  # a Helpers: calls of the user's functions are compiled too

    def domain_call(self, node: ast.Call, fn) -> tuple[ir.Expr, T]:
        own = helper_function(fn) if self.helpers is not None else None
        if own is None:
            return super().domain_call(node, fn)
        e, t = self.helpers.call(self, node, own)  # the user's own function
        if own is not fn:  # an elementwise kernel's: it returns an array's element, a
            # NumPy scalar, never a Python number (``return 3`` gives an int64: an int8
            # plus it is an int64, where plus a Python 3 it would wrap as an int8)
            t = T(t.ctype)
        return e, t

    @property
    def callables(self) -> str:  # (what refusals of a call say it may call)
        own = ", and functions of your own written in Python (a def)" if self.helpers \
            is not None else ""
        return ExpressionTranslator.callables + own

    def block(self, stmts: Iterable[ast.stmt]) -> ir.Block:
        out: list[ir.Stmt] = []
        for s in stmts:
            self.pending = []
            produced = self.stmt(s)
            out.extend(self.pending)
            out.extend(produced)
            if self.ends(produced):
                # What follows never runs, in Python or C: it must not widen a type either
                # (`return x * 3` then `return 0.5` made an int64 kernel's results float64).
                break
        return ir.Block(tuple(out))

    def ends(self, stmts) -> bool:
        """Whether control never passes the end of translated statements ``stmts``: the
        last is a ``return``, ``break`` or ``continue``, an ``if`` all of whose branches
        end, a ``while`` whose test is true with no ``break`` of its own, or a ``for``
        over a constant range that is not empty whose body ends with no ``break`` or
        ``continue`` of its own (its first pass ends it)."""
        last = stmts[-1] if stmts else None
        if isinstance(last, ir.Return | ir.Break | ir.Continue):
            return True
        if isinstance(last, ir.Block):
            return self.ends(last.body)
        if isinstance(last, ir.If):
            return self.ends(last.then.body) and last.orelse is not None \
                and self.ends(last.orelse.body)
        if isinstance(last, ir.While):
            return isinstance(last.cond, ir.Const) and bool(last.cond.value) \
                and not _jumps(last.body, (ir.Break,))
        if isinstance(last, ir.For):
            return last.var in self.entered and self.ends(last.body.body) \
                and not _jumps(last.body, (ir.Break, ir.Continue))
        return False

    def nested(self, stmts: Iterable[ast.stmt]) -> ir.Block:
        """The body of an ``if`` or a loop: its temporaries stay inside it, the statement
        that holds it keeps its own."""
        pending = self.pending
        try:
            return self.block(stmts)
        finally:
            self.pending = pending

    def stmt(self, node) -> list[ir.Stmt]:
        if isinstance(node, ast.While | ast.For):  # a domain's loops too
            # Its body may run after its own later assignments, and not at all (or
            # stop at a break): what it assigns has no path type in it nor after it,
            # unless its handler knows it runs whole at least once (``trips``).
            self.forget(node)
            out = self.dispatch("s", node)
            if node not in self.trips:
                self.forget(node)
            return out
        if isinstance(node, ast.If):
            return self.dispatch("s", node)  # it settles its own test
        return self.split(lambda: self.dispatch("s", node), node)

    def forget(self, node) -> None:
        """Drop the path types (:attr:`exact`) of the names ``node`` assigns."""
        for n in ast.walk(node):
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
                self.exact.pop(n.id, None)

    # -- values whose type depends on the path (asp.frontend.mixed) -------------------------
    def split(self, produce: Callable[[], list[ir.Stmt]], node, depth: int = 0) \
            -> list[ir.Stmt]:
        """``produce()``, the statements of ``node``; when it meets a choice it cannot
        type statically (:class:`~asp.frontend.mixed.Split`), once per choice, pinned,
        under a run-time ``if`` that picks the translation matching the value's type."""
        saved = list(self.pending)
        try:
            return produce()
        except Split as s:
            key = s.key
        if depth >= MAX_SPLITS:
            raise self.err(node, f"the types of this statement's values depend on the path "
                                 f"taken in more than {MAX_SPLITS} ways; give its variables "
                                 "one type (e.g. float(0) or np.int16(0) for a literal)")
        self.pending = saved
        if isinstance(key, str):  # a mixed variable: its tag says which member it holds
            n = len(self.env[key].members)
            tag = ir.Var(tag_name(self.variable(key).name))
            choices = [(ir.BinOp("==", tag, ir.Const(i, "int")), i) for i in range(n - 1)]
            choices.append((None, n - 1))
        else:  # a ternary: its condition, evaluated before the statement
            c = self.settled(lambda: self.condition(key.test), BOOL, key)
            choices = [(c, True), (None, False)]
        branches = []
        for cond, pin in choices:
            self.forget(node)  # each choice assigns its own types: none is the path's
            self.pins[key] = pin
            outer, self.pending = self.pending, []
            try:
                stmts = self.split(produce, node, depth + 1)
                branches.append((cond, ir.Block((*self.pending, *stmts))))
            finally:
                self.pending = outer
                del self.pins[key]
        self.forget(node)
        out = branches[-1][1]
        for cond, block in reversed(branches[:-1]):
            out = ir.Block((ir.If(cond, block, out),))
        return list(out.body)

    def settled(self, value: Callable[[], ir.Expr], t: T, node) -> ir.Expr:
        """``value()`` (an expression of type ``t``); if it needs a :meth:`split`, computed
        into a temporary before the statement instead."""
        saved = list(self.pending)
        try:
            return value()
        except Split:
            self.pending = saved
        var, _ = self.temporary(ir.Const(False if t.is_bool else 0, t.ctype), t)
        stmts = self.split(lambda: [ir.Assign(var, value())], node)  # (replaces pending)
        self.pending.extend(stmts)
        return var

    def bind(self, name: str, e: ir.Expr, t: T, node) -> list[ir.Stmt]:
        """``name = e`` for a value of type ``t``: a variable that holds values of several
        types keeps each in its own C variable, and a tag saying which it holds now."""
        old, t0 = self.env.get(name), t
        if old is not None and old != t:  # a Python float and a float64 may be one type
            t = self.kind_of(t)
            old = old if isinstance(old, Mixed) else self.kind_of(old)
        new = with_member(old, t)
        if not isinstance(new, Mixed):
            self.env[name] = new
            if t0.ctype == "double" and not t0.either:
                self.exact[name] = t0
            else:
                self.exact.pop(name, None)
            return [ir.Assign(self.variable(name), e)]
        self.exact.pop(name, None)
        base = self.variable(name).name
        if len(new.members) > MAX_MEMBERS:
            raise self.err(node, f"{name!r} is assigned values of {len(new.members)} types "
                                 f"({new}); at most {MAX_MEMBERS} are compiled")
        ours = {member_name(base, i) for i in range(len(new.members))} | {tag_name(base)}
        if ours & {self.variable(n).name for n in self.assigned | set(self.params)}:
            raise self.err(node, f"{name!r} has values of several types and a name of the "
                                 f"kind asp gives their parts ({sorted(ours)}); rename it")
        self.env[name] = new
        i = new.members.index(t)
        return [ir.Assign(ir.Var(member_name(base, i)), e),
                ir.Assign(ir.Var(tag_name(base)), ir.Const(i, "int"))]

    def assign_name(self, name: str, e: ir.Expr, t: T, node) -> list[ir.Stmt]:
        if name in self.params:
            raise self.err(node, f"cannot assign to parameter {name!r}; use a new local name")
        return self.bind(name, e, t, node)

    def store(self, target, e: ir.Expr, t: T, node) -> list[ir.Stmt]:
        """``target = e``: a name here; a domain front end adds its own targets."""
        if isinstance(target, ast.Name):
            return self.assign_name(target.id, e, t, node)
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
        return [ir.Return(converted(e, t, ret))]

    def s_If(self, node: ast.If):
        c = self.settled(lambda: self.condition(node.test), BOOL, node)
        if isinstance(c, ir.Const):
            # Python runs only the branch taken: what the other assigns must not widen
            # a variable's type (its value would have the taken branch's type).
            taken = node.body if c.value else node.orelse
            return [self.nested(taken)] if taken else []
        before = dict(self.exact)
        then = self.nested(node.body)
        after_then, self.exact = self.exact, before
        orelse = self.nested(node.orelse) if node.orelse else None
        self.exact = {k: t for k, t in self.exact.items() if after_then.get(k) == t}
        return [ir.If(c, then, orelse)]

    def s_While(self, node: ast.While):
        if node.orelse:
            raise self.err(node, "'while ... else' is not supported")
        saved = list(self.pending)
        try:
            c, head = self.condition(node.test), []
            if self.pending[len(saved):]:
                raise self.err(node, "a while condition must be a simple expression")
        except Split:  # computed afresh each time round: while True: c = ...; if not c: break
            self.pending = saved
            flag, _ = self.temporary(ir.Const(False, "bool"), BOOL)
            inner, self.pending = self.pending, []
            head = self.split(lambda: [ir.Assign(flag, self.condition(node.test))], node)
            if self.pending:
                raise self.err(node, "a while condition must be a simple expression") from None
            self.pending = inner
            c = ir.Const(True, "bool")
            head.append(ir.If(ir.UnaryOp("!", flag), ir.Block((ir.Break(),))))
        if isinstance(c, ir.Const) and not c.value:
            return []  # never runs: what it assigns must not widen a variable's type
        self.loop_depth += 1
        body = self.nested(node.body)
        self.loop_depth -= 1
        return [ir.While(c, ir.Block((*head, *body.body)))]

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
        if not 1 <= len(it.args) <= 3:
            raise self.err(node, "range() takes one to three integer arguments")

        def bound(a):
            e, t = self.expr(a)
            if t.is_float:
                raise self.err(node, "range() takes one to three integer arguments")
            return cast(e, t, "int64_t")

        args = [self.settled(lambda a=a: bound(a), T("int64_t"), node) for a in it.args]
        zero, one = ir.Const(0, "int64_t"), ir.Const(1, "int64_t")
        if len(args) == 1:
            start, stop, step = zero, args[0], one
        else:
            start, stop = args[0], args[1]
            step = args[2] if len(args) == 3 else one
        if isinstance(step, ir.Const) and step.value == 0:
            raise self.err(node, "range() step must not be zero")
        known = all(isinstance(a, ir.Const) for a in (start, stop, step))
        if known and not range(start.value, stop.value, step.value):
            return []  # never runs (range(LIMIT - 3)): as an if whose test is constant
        name = node.target.id
        if name in self.params:
            raise self.err(node, f"cannot use parameter {name!r} as a loop variable")
        counter = self.names.fresh("i")
        if known:
            self.entered.add(counter)
        v_start, v_step, v_count = (ir.Var(self.names.fresh(h))
                                    for h in ("start", "step", "count"))
        # Python's range: the trip count is computed once, up front (len(range(...))).
        count = ir.Call("asp_range_len", (v_start, stop, v_step))
        header = [ir.Declare("int64_t", v_start.name, start, const=True),
                  ir.Declare("int64_t", v_step.name, step, const=True),
                  ir.Declare("int64_t", v_count.name, count, const=True)]
        # The loop variable takes each value in turn and keeps the last one after the loop.
        value = ir.BinOp("+", v_start, ir.BinOp("*", ir.Var(counter), v_step))
        copy = self.bind(name, value, INT, node)
        self.loop_depth += 1
        body = self.nested(node.body)
        self.loop_depth -= 1
        loop = ir.For(counter, zero, v_count, ir.Block((*copy, *body.body)), role="range")
        return [*header, loop]

    def s_Break(self, node):
        if not self.loop_depth:
            raise self.err(node, "'break' outside a loop")
        return [ir.Break()]

    def s_Continue(self, node):
        if not self.loop_depth:
            raise self.err(node, "'continue' outside a loop")
        return [ir.Continue()]


def _jumps(node, kinds: tuple) -> bool:
    """Whether ``node`` holds a statement of ``kinds`` (break, continue) of the loop that
    holds ``node``: not inside a loop of its own."""
    if isinstance(node, kinds):
        return True
    if isinstance(node, ir.While | ir.For):
        return False
    return any(_jumps(c, kinds) for c in node.children() if isinstance(c, ir.Stmt))


def settle(make: Callable[[dict[str, T]], ScalarTranslator], stmts: list[ast.stmt],
           rounds: int = 12) -> tuple[ScalarTranslator, ir.Block]:
    """Translate ``stmts`` with a fresh ``make(env)`` translator until the locals' types in
    ``env`` stop changing (a later assignment can widen a type an earlier read used; types
    only widen, so this comes quickly).  Returns the last translator and its block."""
    for one_double in (True, False):  # see ExpressionTranslator.one_double
        env: dict[str, T] = {}
        for _ in range(rounds):
            before = dict(env)
            tr = make(env)
            tr.one_double = one_double
            block = tr.block(stmts)
            if env == before:
                break
        if not tr.saw_float32:
            break
    return tr, block
