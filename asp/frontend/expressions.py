"""Scalar Python expressions to typed platform IR, as Python and NumPy compute them.

:class:`ExpressionTranslator` is the expression half of the core's front end (the
statements are :class:`asp.frontend.translator.ScalarTranslator`'s): numbers and their
types (NumPy's promotion with NEP 50's weak Python scalars, :mod:`asp.ir.pyscalar`),
Python's meaning of ``/ // % **`` and shifts, comparisons (chained too), ``and or not``,
``x if c else y``, the builtins, ``math`` and NumPy functions (:mod:`asp.frontend.calls`),
module-level constants resolved as Python resolves names, and the checks that hand a
call to Python where only Python represents a value: Python-int overflow and float ->
int conversions (the ``asp_py_*`` and ``asp_fcheck`` helpers raise the ``UNREP`` flag).
"""
from __future__ import annotations

import ast
import functools
import math
import types
from collections.abc import Mapping

import numpy as np

from asp.frontend.calls import MATH_CONST, callable_kind, defined_at, known_call
from asp.frontend.mixed import Mixed, Split, as_ternaries, member_name
from asp.frontend.source import KernelSource, describe
from asp.ir import platform as ir
from asp.ir.names import Namer, user
from asp.ir.pymath import divisor
from asp.ir.pyscalar import (
    COMPARE_OPS,
    DOUBLE_EITHER,
    FLOAT,
    INT,
    UNREP,
    T,
    arith,
    binop_type,
    cast,
    checked,
    converted,
    floordiv,
    invert,
    mod,
    negate,
    numeric,
    shift,
    translate_compare,
)
from asp.passes.fold import PY_INT_OPS, fold_constants, python_int

__all__ = ["BINOPS", "NUMBERS", "ExpressionTranslator", "describe"]

#: Python's binary operators (``ast`` classes) as the translator's operator names.
BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
          ast.Mod: "%", ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
          ast.LShift: "<<", ast.RShift: ">>"}

NUMBERS = (int, float, bool, np.number, np.bool_, complex)

class ExpressionTranslator:
    """Translates Python expressions to typed platform IR: ``expr(node)`` gives
    ``(ir.Expr, T)``.

    ``params`` types the parameters, ``env`` the local variables (a statement translator
    updates it as assignments are met).  ``ns`` is what the function's free names mean
    (:func:`asp.frontend.names.namespace`); ``names`` hands out the temporaries' names.
    An expression that needs a value computed once first (the base of ``(a + b) ** 3``)
    appends the statement to ``pending``: whoever translates the enclosing statement
    emits them before it.
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
        # The choices the statement being translated is translated under (mixed.py): a
        # mixed variable's member index by name, a ternary's branch (True: its body) by node.
        self.pins: dict[str | ast.AST, int | bool] = {}
        self._chains: dict[ast.AST, ast.AST] = {}  # constructs rewritten (see rewritten)
        # A Python float and a float64 differ only where they meet a float32 (the weak one
        # becomes float32): in a kernel without float32 values they are one type, and a
        # variable holding either needs no tag.  ``settle`` assumes so, and translates
        # again without the assumption when a float32 was seen.  Such a value's type is
        # ``DOUBLE_EITHER``: where a Python float raises (a zero divisor) it is checked as
        # one (F18).
        self.one_double = True
        self.saw_float32 = False
        # A DOUBLE_EITHER variable's type on the straight-line path since its last
        # assignment, where known (the translator keeps it: ``acc = 0.0`` then
        # ``acc += u[y]`` is a float64 from there on, and divides as one).
        self.exact: dict[str, T] = {}

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
        e, t = self.dispatch("e", node)
        if t.ctype == "float":
            self.saw_float32 = True
        return e, t

    def kind_of(self, t: T) -> T:
        """``t``, or the type it cannot be told apart from in this kernel."""
        return DOUBLE_EITHER if self.one_double and t.ctype == "double" else t

    def e_Constant(self, node: ast.Constant):
        return self.constant(node.value, node)

    def e_Name(self, node: ast.Name):
        name = node.id
        if name in self.params:
            return self.variable(name), self.params[name]
        if name in self.env:
            t = self.env[name]
            if isinstance(t, Mixed):
                if name not in self.pins:
                    raise Split(name)  # the statement is translated once per member
                i = self.pins[name]
                return ir.Var(member_name(self.variable(name).name, i)), t.members[i]
            return self.variable(name), self.exact.get(name, t) if t.either else t
        if name in self.assigned:
            raise self.err(node, f"local {name!r} is used before it is assigned")
        value = self.lookup(name, node)
        if isinstance(value, NUMBERS):
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
        if isinstance(node.op, ast.Not):  # Python's bool, whatever its operand
            return ir.UnaryOp("!", self.condition(node.operand)), T("bool", True)
        e, t = self.expr(node.operand)
        if isinstance(node.op, ast.UAdd | ast.USub) and t.is_bool and not t.weak:
            # NumPy raises TypeError for +np.True_ and -np.True_ (Python's +True is 1).
            sign = "+" if isinstance(node.op, ast.UAdd) else "-"
            raise self.err(node, f"unary '{sign}' of a NumPy bool: NumPy raises TypeError "
                                 "(use int(...) for a number, '~' for not)")
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
        """``node`` as the test of an ``if``, ``while`` or ternary, folded (a constant where
        Python's is: its dead branch compiles not).  Here ``a and b`` may join values of
        any types: ``bool(a and b)`` is ``bool(a) and bool(b)``."""
        if isinstance(node, ast.BoolOp):
            op = "&&" if isinstance(node.op, ast.And) else "||"
            return fold_constants(functools.reduce(lambda a, b: ir.BinOp(op, a, b), [
                self.condition(v) for v in node.values]))
        return fold_constants(self.truth(*self.expr(node)))

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
                and op in PY_INT_OPS:
            # Two Python ints: Python's unbounded arithmetic, folded exactly (C's int64 would
            # wrap 7 << 100 to 0).
            try:
                v = python_int(op, le.value, re_.value)
            except OverflowError as e:
                raise self.err(node, f"'{ast.unparse(node)}' is {e} (Python ints are "
                                     "unbounded; compiled ints are not)") from None
            if v is not None:
                return ir.Const(v, "int64_t"), INT
        if lt.is_bool and rt.is_bool and not (lt.weak and rt.weak):
            # NumPy's bools (a Python bool meeting one is one): + and * are 'or' and
            # 'and', - raises, and // % ** << >> compute in int8 (np.True_ // np.True_).
            if op in ("+", "*", "|", "&", "^"):
                c_op = {"+": "||", "|": "||", "*": "&&", "&": "&&", "^": "!="}[op]
                if c_op != "!=" and checked(re_):  # NumPy computes both (F22): no || &&
                    return ir.Cast("bool", ir.BinOp(c_op[0], le, re_)), T("bool")
                return ir.BinOp(c_op, le, re_), T("bool")
            if op == "-":
                raise self.err(node, "NumPy's bools cannot be subtracted (Python raises "
                                     "TypeError; use 'x != y' or int(x) - int(y))")
            if op != "/":
                lt = rt = T("int8_t")
        if op in ("&", "|", "^", "<<", ">>"):
            if lt.is_float or rt.is_float:
                raise self.err(node, f"'{op}' needs integer operands")
            t = binop_type(lt, rt)
            if t.is_float:  # uint64 with a signed integer: NumPy has no common integer
                raise self.err(node, f"'{op}' of {lt.ctype} and {rt.ctype}: NumPy has no "
                                     "integer type for both (Python raises TypeError)")
            a, b = converted(le, lt, t.ctype), converted(re_, rt, t.ctype)
            return (shift(op, a, b, t) if op in ("<<", ">>") else arith(op, a, b, t)), t
        python = lt.pythonic and rt.pythonic  # two Python numbers: a zero divisor raises
        if op == "/":
            t = binop_type(lt, rt, true_div=True)
            b = cast(re_, rt, t.ctype)
            return ir.BinOp("/", cast(le, lt, t.ctype),
                            divisor(b, t.ctype, UNREP) if python else b), t
        if op == "**":
            return self.power(node, le, lt, re_, rt)
        t = binop_type(lt, rt)
        a, b = converted(le, lt, t.ctype), converted(re_, rt, t.ctype)
        if python and op in ("//", "%"):
            b = divisor(b, t.ctype, UNREP)
        if op == "//":
            return floordiv(a, b, t), t
        if op == "%":
            return mod(a, b, t), t
        return arith(op, a, b, t), t

    def power(self, node, le, lt, re_, rt):
        t = binop_type(lt, rt)
        if t.pythonic and t.is_float:
            # Python floats: pow() as Python calls it, and where Python's result is complex
            # ((-8.0) ** (1/3)) or an error (0.0 ** -1, 10.0 ** 400) the call is Python's.
            return ir.Call("asp_py_fpow", (cast(le, lt, "double"), cast(re_, rt, "double"),
                                           UNREP)), t
        if isinstance(re_, ir.Const) and not rt.is_float and 0 <= re_.value <= 32:
            n = int(re_.value)
            if n == 0:
                if checked(le):
                    # Python evaluates the base, which may raise ((r // 0) ** 0): its
                    # checks run before the statement, and x ** 0 is 1 (F21).
                    self.temporary(le, lt)
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
        a, b = converted(le, lt, t.ctype), converted(re_, rt, t.ctype)
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
        # Python's bool when both sides are Python's, NumPy's otherwise (True + True is 2,
        # np.True_ + np.True_ is True); a chain is 'and' of its pairs, of either kind.
        bad = [op for op in node.ops if type(op).__name__ not in COMPARE_OPS]
        if bad:  # `is`, `in`: refused before their operands (None is no value here)
            raise self.err(node, f"comparison {type(bad[0]).__name__} is not supported")
        items = [self.expr(e) for e in (node.left, *node.comparators)]
        weak = {lt.weak and rt.weak for (_, lt), (_, rt) in zip(items, items[1:])}
        if len(weak) > 1:
            return self.expr(self.rewritten(node, lambda: as_ternaries(node)))
        operands = iter(items)
        e, _ = translate_compare(node, lambda _: next(operands), self.err)
        return e, T("bool", weak.pop())

    def e_BoolOp(self, node: ast.BoolOp):
        # As a value, 'a or b' is one of its operands: compiled only where that is a bool.
        op = "&&" if isinstance(node.op, ast.And) else "||"
        values = [self.expr(v) for v in node.values]
        if not all(t.is_bool for _, t in values):
            raise self.err(node, f"'{ast.unparse(node)}': 'and'/'or' are supported on "
                                 "booleans (comparisons) only, or as a test")
        if len({t for _, t in values}) > 1:  # a Python bool and a NumPy one: the one picked
            return self.expr(self.rewritten(node, lambda: as_ternaries(node)))
        out = values[0][0]
        for e, _ in values[1:]:
            out = ir.BinOp(op, out, e)
        return out, values[0][1]

    def e_IfExp(self, node: ast.IfExp):
        if node in self.pins:  # its condition was evaluated before the statement
            return self.expr(node.body if self.pins[node] else node.orelse)
        c = self.condition(node.test)
        if isinstance(c, ir.Const):
            # Python evaluates only the branch taken, and the value has that branch's
            # type: `b[x] if True else x[0] + 1` is b's int16, which wraps, not the join
            # of both (int64 here: a silently different product, found by the fuzzer).
            return self.expr(node.body if c.value else node.orelse)
        a, at = self.expr(node.body)
        b, bt = self.expr(node.orelse)
        if self.kind_of(at) != self.kind_of(bt):
            # Its value has the type of the branch taken, and no one C type is both
            # (`(z * 7 if c else 0) << 3` wraps at 16 bits only when z's int16 is picked).
            raise Split(node)
        return ir.Ternary(c, a, b), (at if at == bt else self.kind_of(at))

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
        if kind in ("min", "max") and len({self.kind_of(t) for _, t in args}) > 1:
            # Python's max returns the operand it picked, with that operand's type.
            return self.expr(self.rewritten(node, lambda: as_ternaries(node, kind)))
        return known_call(node, kind, cname, args, self.err, self.truth, self.temporary)

    def rewritten(self, node: ast.AST, build) -> ast.AST:
        """``build()``, the construct ``node`` means in Python's terms, built once per node
        (a split statement is translated again, and pins are kept by node)."""
        if node not in self._chains:
            self._chains[node] = build()
        return self._chains[node]

    def domain_call(self, node: ast.Call, fn) -> tuple[ir.Expr, T]:
        """A call of ``fn``, which the core does not translate: a domain front end
        translates its own functions here and leaves the rest to this, which refuses."""
        name = ast.unparse(node.func)
        module = (getattr(fn, "__module__", None) or "") if callable(fn) else ""
        if module == "math" or module.split(".")[0] == "numpy" or isinstance(fn, np.ufunc):
            # (before, "can call only ... math and NumPy functions", of one of them)
            raise self.err(node, f"'{name}' is not among the math and NumPy functions "
                                 f"{self.kind} can call (see asp.frontend.calls)")
        if callable(fn):
            raise self.err(node, f"call to function '{name}'{defined_at(fn)} is not "
                                 f"supported: {self.kind} can call only {self.callables}")
        raise self.err(node, f"call to unknown function '{name}'")
