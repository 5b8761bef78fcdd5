"""The core's translator of scalar Python to typed platform IR, which domain front ends extend.

:class:`ScalarTranslator` translates what every kernel language shares: numbers and their
types (NumPy's promotion with NEP 50's weak Python scalars, :mod:`asp.ir.pyscalar`),
Python's meaning of ``/ // % **``, shifts, comparisons (chained too), ``and or not``,
``x if c else y``, the builtins ``abs min max int float bool``, ``math`` and NumPy
functions, module-level constants (names resolve as Python resolves them), integer
overflow of Python ints and float -> int conversions checked as Python would do them
(the ``asp_py_*`` and ``asp_fcheck`` helpers, which raise the ``UNREP`` flag), and the
statements of a scalar function: assignments (tuple, augmented, annotated), ``if``,
``for ... in range``, ``while``, ``break``/``continue`` and ``return``.

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
import functools
import math
import operator
import types
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from asp.frontend.calls import MATH_CONST, callable_kind, defined_at, known_call
from asp.frontend.source import KernelSource
from asp.ir import platform as ir
from asp.ir.names import Namer, user
from asp.ir.pyscalar import (
    BOOL,
    FLOAT,
    INT,
    T,
    arith,
    binop_type,
    cast,
    floordiv,
    invert,
    join,
    mod,
    negate,
    numeric,
    shift,
    translate_compare,
)

__all__ = ["BINOPS", "ScalarTranslator", "describe", "settle"]

#: Python's binary operators (``ast`` classes) as the translator's operator names.
BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
          ast.Mod: "%", ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
          ast.LShift: "<<", ast.RShift: ">>"}

#: Python's operators on two int constants (folded exactly; see ``binop``).
_PY_INT_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv,
               "%": operator.mod, "<<": operator.lshift, ">>": operator.rshift,
               "&": operator.and_, "|": operator.or_, "^": operator.xor}

_NUMBERS = (int, float, bool, np.number, np.bool_, complex)

_DESCRIBE = {"While": "'while' loops", "Lambda": "lambdas", "ListComp": "list comprehensions",
             "List": "lists", "Dict": "dicts", "Subscript": "indexing", "Try": "'try'",
             "With": "'with'", "Global": "'global'", "Nonlocal": "'nonlocal'",
             "FunctionDef": "nested functions", "Tuple": "tuples", "JoinedStr": "f-strings",
             "Yield": "'yield'", "Await": "'await'", "Raise": "'raise'", "Assert": "'assert'",
             "Delete": "'del'", "Import": "'import'", "ImportFrom": "'import'",
             "Return": "'return'", "Break": "'break'", "Continue": "'continue'"}


def describe(node: ast.AST) -> str:
    """How a message names a construct (``'while' loops``)."""
    return _DESCRIBE.get(type(node).__name__, f"'{type(node).__name__}'")


class ScalarTranslator:
    """Translates Python statements and expressions to typed platform IR.

    ``params`` types the parameters, ``env`` the local variables: it is updated as
    assignments are met (a variable's type is the :func:`~asp.ir.pyscalar.join` of all
    it is assigned), so a caller translates until it stops changing (:func:`settle`).
    ``ns`` is what the function's free names mean (:func:`asp.frontend.names.namespace`).
    ``names`` hands out the temporaries' names.

    Expressions translate to ``(ir.Expr, T)``; statements to a list of ``ir.Stmt``.
    """

    #: What a kernel of this kind may call: the end of the message refusing another call.
    callables = "the builtins abs, min, max, int, float and bool, and math and NumPy functions"

    def __init__(self, src: KernelSource, ns: Mapping[str, object], params: dict[str, T],
                 env: dict[str, T], *, kind: str = "a kernel", names: Namer | None = None):
        self.src = src
        self.ns = ns
        self.params = params
        self.env = env
        self.kind = kind  # how messages name the kernel ("an elementwise kernel")
        self.names = names if names is not None else Namer()
        # Python's scoping: a name assigned anywhere in the function is local in all of it.
        self.assigned = {n.id for n in ast.walk(src.func)
                         if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
        self.pending: list[ir.Stmt] = []  # statements the current one needs first
        self.loop_depth = 0
        self.returns: list[T] = []
        self.ret: T | None = None  # the function's return type, once known

    def err(self, node, message: str):
        return self.src.error(node, message)

    # -- names ------------------------------------------------------------------------------
    def variable(self, name: str) -> ir.Var:
        """The IR variable of a user's parameter or local."""
        return ir.Var(user(name))

    def is_value(self, name: str) -> bool:
        """Whether ``name`` is one of the kernel's values (not a module or function)."""
        return name in self.params or name in self.env or name in self.assigned

    def lookup(self, name: str, node):
        """The object a free name refers to, as Python resolves it."""
        try:
            return self.ns[name]
        except KeyError:
            raise self.err(node, f"name {name!r} is not defined") from None

    def static_value(self, node):
        """The Python object a name or dotted name refers to (modules, functions)."""
        if isinstance(node, ast.Name):
            if self.is_value(node.id):
                raise self.err(node, f"'{node.id}' is a value, not a module or function")
            return self.lookup(node.id, node)
        if isinstance(node, ast.Attribute):
            base = self.static_value(node.value)
            if isinstance(base, types.ModuleType) and hasattr(base, node.attr):
                return getattr(base, node.attr)
            raise self.err(node, f"'{ast.unparse(node)}' is not supported in {self.kind}")
        raise self.err(node, f"'{ast.unparse(node)}' cannot be called in {self.kind}")

    def constant(self, value, node) -> tuple[ir.Expr, T]:
        if isinstance(value, bool | np.bool_):
            return ir.Const(bool(value), "bool"), T("bool", True)
        if isinstance(value, int | np.integer):
            if not -(2**63) <= int(value) < 2**63:
                raise self.err(node, f"integer constant {value} does not fit in 64 bits")
            return ir.Const(int(value), "int64_t"), INT
        if isinstance(value, float | np.floating):
            return ir.Const(float(value), "double"), FLOAT
        if isinstance(value, complex):
            raise self.err(node, "complex numbers are not supported in compiled kernels")
        raise self.err(node, f"{type(value).__name__} value cannot be used in {self.kind}")

    def temporary(self, e: ir.Expr, t: T) -> tuple[ir.Var, T]:
        """``e`` evaluated once, before the statement being translated, into a fresh name."""
        name = self.names.fresh()
        self.pending.append(ir.Declare(t.ctype, name, e))
        return ir.Var(name), t

    # -- expressions ------------------------------------------------------------------------
    def dispatch(self, prefix: str, node):
        # A subclass refuses a construct by setting its method to None (s_While = None).
        method = getattr(self, f"{prefix}_{type(node).__name__}", None)
        if method is None:
            raise self.err(node, f"{describe(node)} is not supported in {self.kind}")
        return method(node)

    def expr(self, node) -> tuple[ir.Expr, T]:
        return self.dispatch("e", node)

    def e_Constant(self, node: ast.Constant):
        return self.constant(node.value, node)

    def e_Name(self, node: ast.Name):
        name = node.id
        if name in self.params:
            return self.variable(name), self.params[name]
        if name in self.env:
            return self.variable(name), self.env[name]
        if name in self.assigned:
            raise self.err(node, f"local {name!r} is used before it is assigned")
        value = self.lookup(name, node)
        if isinstance(value, _NUMBERS):
            return self.constant(value, node)
        raise self.err(node, f"{name!r} ({type(value).__name__}) cannot be used as a value "
                             f"in {self.kind}")

    def e_Attribute(self, node: ast.Attribute):
        if isinstance(node.value, ast.Name) and self.is_value(node.value.id):
            raise self.err(node, f"attribute '{ast.unparse(node)}' is not supported in "
                                 f"{self.kind}")
        base = self.static_value(node.value)
        if base is math and node.attr in MATH_CONST:
            return self.constant(MATH_CONST[node.attr], node)
        if base is np and node.attr in ("pi", "e", "inf", "nan"):
            return self.constant(float(getattr(np, node.attr)), node)
        raise self.err(node, f"attribute '{ast.unparse(node)}' is not supported in {self.kind}")

    def e_UnaryOp(self, node: ast.UnaryOp):
        if isinstance(node.op, ast.Not):
            return ir.UnaryOp("!", self.condition(node.operand)), BOOL
        e, t = self.expr(node.operand)
        if isinstance(node.op, ast.UAdd):
            return e, numeric(t)
        if isinstance(node.op, ast.USub):
            nt = numeric(t)
            return negate(cast(e, t, nt.ctype), nt), nt
        if isinstance(node.op, ast.Invert):
            if t.is_float:
                raise self.err(node, "'~' needs an integer operand")
            if t.is_bool and not t.weak:  # NumPy: ~np.True_ is False
                return ir.UnaryOp("!", e), t
            if t.is_bool:  # Python: ~True is -2, an int
                return invert(cast(e, t, "int64_t"), INT), INT
            return invert(e, t), t
        raise self.err(node, "unsupported unary operator")

    def truth(self, e: ir.Expr, t: T) -> ir.Expr:
        """The C truth value of a typed expression (Python's ``bool(e)``)."""
        if t.is_bool:
            return e
        return ir.BinOp("!=", e, ir.Const(0.0 if t.is_float else 0, t.ctype))

    def condition(self, node) -> ir.Expr:
        """``node`` as the test of an ``if``, ``while`` or ternary.  Here ``a and b`` may
        join values of any types: ``bool(a and b)`` is ``bool(a) and bool(b)``."""
        if isinstance(node, ast.BoolOp):
            op = "&&" if isinstance(node.op, ast.And) else "||"
            return functools.reduce(lambda a, b: ir.BinOp(op, a, b),
                                    [self.condition(v) for v in node.values])
        return self.truth(*self.expr(node))

    def e_BinOp(self, node: ast.BinOp):
        op = BINOPS.get(type(node.op))
        if op is None:
            raise self.err(node, f"operator {type(node.op).__name__} is not supported")
        le, lt = self.expr(node.left)
        re_, rt = self.expr(node.right)
        return self.binop(node, op, le, lt, re_, rt)

    def binop(self, node, op, le, lt, re_, rt):
        """``le op re_`` on typed operands (also the value of ``x op= v``)."""
        if isinstance(le, ir.Const) and isinstance(re_, ir.Const) and lt == INT and rt == INT \
                and op in _PY_INT_OPS:
            # Two Python ints: Python's unbounded arithmetic, folded exactly (C's int64 would
            # wrap 7 << 100 to 0).
            try:
                v = _PY_INT_OPS[op](le.value, re_.value)
            except (ZeroDivisionError, ValueError, OverflowError):
                v = None  # leave it to the C (and the check against Python)
            if isinstance(v, int):
                if not -(2**63) <= v < 2**63:
                    raise self.err(node, f"'{ast.unparse(node)}' is {v}, beyond 64 bits (Python "
                                         "ints are unbounded; compiled ints are not)")
                return ir.Const(v, "int64_t"), INT
        if op in ("&", "|", "^", "<<", ">>"):
            if lt.is_float or rt.is_float:
                raise self.err(node, f"'{op}' needs integer operands")
            t = binop_type(lt, rt)
            a, b = cast(le, lt, t.ctype), cast(re_, rt, t.ctype)
            return (shift(op, a, b, t) if op in ("<<", ">>") else arith(op, a, b, t)), t
        if op == "/":
            t = binop_type(lt, rt, true_div=True)
            return ir.BinOp("/", cast(le, lt, t.ctype), cast(re_, rt, t.ctype)), t
        if op == "**":
            return self.power(node, le, lt, re_, rt)
        t = binop_type(lt, rt)
        a, b = cast(le, lt, t.ctype), cast(re_, rt, t.ctype)
        if op == "//":
            return floordiv(a, b, t), t
        if op == "%":
            return mod(a, b, t), t
        return arith(op, a, b, t), t

    def power(self, node, le, lt, re_, rt):
        t = binop_type(lt, rt)
        if isinstance(re_, ir.Const) and not rt.is_float and 0 <= re_.value <= 32:
            n = int(re_.value)
            if n == 0:
                return ir.Const(1, t.ctype), t
            base = cast(le, lt, t.ctype)
            if not isinstance(base, ir.Var | ir.Const) and n > 1:
                base, _ = self.temporary(base, t)  # repeat a name, not an expression
            if t.is_float and n in (3, 4):
                # Python and NumPy call pow(); x * x * x rounds twice (1 ulp off, which a
                # later x % y turns into anything).  Carrying the first product's error
                # exactly (fma) rounds x**3 and x**4 once, as pow does.
                wide = ir.Call(f"asp_pow{n}", (cast(base, t, "double"),))
                return cast(wide, FLOAT, t.ctype), t
            if t.is_float and n > 4:
                return cast(ir.Call("pow", (cast(base, t, "double"),
                                            ir.Const(float(n), "double"))), FLOAT, t.ctype), t
            result = base
            for _ in range(n - 1):
                result = arith("*", result, base, t)
            return result, t
        if not t.is_float:
            raise self.err(node, "an integer power needs a constant exponent from 0 to 32 "
                                 "(write float(x) ** y for a float power)")
        if isinstance(re_, ir.Const) and re_.value == 0.5:
            return self.square_root(cast(le, lt, t.ctype), t), t
        # NEP 50: both operands take the result type first (a weak Python float exponent
        # of a float32 base is rounded to float32), then pow computes in double.
        a, b = cast(le, lt, t.ctype), cast(re_, rt, t.ctype)
        call = ir.Call("pow", (cast(a, t, "double"), cast(b, t, "double")))
        return cast(call, FLOAT, t.ctype), t

    def square_root(self, x: ir.Expr, t: T) -> ir.Expr:
        """``x ** 0.5`` as pow computes it: ``(-inf) ** 0.5`` is inf and ``(-0.0) ** 0.5``
        is 0.0, where sqrt gives NaN and -0.0.  Written out, because ``pow(x, 0.5)`` is
        not safe from the C compiler either: GCC vectorizes it as a square root."""
        if not isinstance(x, ir.Var | ir.Const):
            x, _ = self.temporary(x, t)
        xd = cast(x, t, "double")
        # sqrt(x) + 0.0: -0.0 + 0.0 is +0.0, and the compiler keeps the addition
        # (it may drop it only under -fno-signed-zeros).
        root = ir.BinOp("+", ir.Call("sqrt", (xd,)), ir.Const(0.0, "double"))
        value = ir.Ternary(ir.BinOp("==", xd, ir.Const(-math.inf, "double")),
                           ir.Const(math.inf, "double"), root)
        return cast(value, FLOAT, t.ctype)

    def e_Compare(self, node):
        return translate_compare(node, self.expr, self.err)

    def e_BoolOp(self, node: ast.BoolOp):
        # As a value, 'a or b' is one of its operands: compiled only where that is a bool.
        op = "&&" if isinstance(node.op, ast.And) else "||"
        values = [self.expr(v) for v in node.values]
        if not all(t.is_bool for _, t in values):
            raise self.err(node, f"'{ast.unparse(node)}': 'and'/'or' are supported on "
                                 "booleans (comparisons) only, or as a test")
        out = values[0][0]
        for e, _ in values[1:]:
            out = ir.BinOp(op, out, e)
        return out, BOOL

    def e_IfExp(self, node: ast.IfExp):
        c = self.condition(node.test)
        a, at = self.expr(node.body)
        b, bt = self.expr(node.orelse)
        t = join(at, bt)
        return ir.Ternary(c, cast(a, at, t.ctype), cast(b, bt, t.ctype)), t

    def e_Call(self, node: ast.Call):
        if node.keywords:
            raise self.err(node, f"keyword arguments are not supported in {self.kind}")
        fn = self.static_value(node.func)
        kind, cname = callable_kind(fn)
        if kind is None:
            return self.domain_call(node, fn)
        if kind == "range":
            raise self.err(node, "range() can only be used as a for loop's iterable")
        args = [self.expr(a) for a in node.args]
        return known_call(node, kind, cname, args, self.err, self.truth)

    def domain_call(self, node: ast.Call, fn) -> tuple[ir.Expr, T]:
        """A call of ``fn``, which the core does not translate: a domain front end
        translates its own functions here and leaves the rest to this, which refuses."""
        name = ast.unparse(node.func)
        if callable(fn):
            raise self.err(node, f"call to function '{name}'{defined_at(fn)} is not "
                                 f"supported: {self.kind} can call only {self.callables}")
        raise self.err(node, f"call to unknown function '{name}'")

    # -- statements -------------------------------------------------------------------------
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
