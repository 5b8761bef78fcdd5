"""The core's Python front end for scalar functions: a Python function to typed IR.

Any specializer whose kernel is a scalar function of scalars (the elementwise map's
body, a reduction's term) uses this translator; it is public API.  Its domain IR is
:class:`ScalarFunction`: the user's function with every value typed, its body already
in platform IR statements (a scalar function *is* C-like code; what is domain-specific
is the typing, which follows Python and NumPy's rules for scalars, NEP 50 included: a
Python ``int``/``float`` literal or scalar argument is *weak* and takes the type of the
array element it meets; see :mod:`asp.ir.pyscalar`).

Supported: arithmetic ``+ - * / // % **``, comparisons (chained too),
``and or not`` on booleans, ``x if c else y``, local variables and tuple
assignment, augmented assignment, ``if/elif/else``, ``for`` over ``range``
with ``break``/``continue``, ``while``, early ``return``, the builtins ``abs
min max int float bool``, the functions of ``math`` and their NumPy
counterparts, and module-level numeric constants (names resolve as Python
resolves them: closure, module, builtins).  Anything else raises a
:class:`~asp.errors.FrontendError` naming ``file:line``.

::

    sf = translate(get_source(fn), fn, {"x": T("double"), "n": INT})
    sf.ret          # T('double')
    sf.as_function()  # a static inline C function, for a specializer's loop to call
"""
from __future__ import annotations

import ast
import builtins
import math
import operator
import types
from dataclasses import dataclass

import numpy as np

from asp.frontend import KernelSource
from asp.ir import platform as ir
from asp.ir.node import Node
from asp.ir.pyscalar import (
    BOOL,
    FLOAT,
    HELPERS,
    INT,
    UNREP,
    T,
    absolute,
    arith,
    binop_type,
    cast,
    checked_int,
    floordiv,
    invert,
    join,
    mod,
    negate,
    numeric,
    shift,
    translate_compare,
)

__all__ = ["FLOAT", "INT", "PREAMBLE", "ScalarFunction", "T", "c_name", "translate"]


@dataclass(frozen=True)
class ScalarFunction(Node):
    """The domain IR: one typed scalar function (the body of the elementwise map)."""

    name: str
    params: tuple[ir.Param, ...]
    param_types: tuple[T, ...]
    ret: T
    locals: tuple[tuple[str, str], ...]
    body: ir.Block
    #: The body converts floats to ints (``int(x)``, ``math.floor``): the function takes
    #: the :data:`~asp.ir.pyscalar.UNREP` flag as a last parameter, which it sets when a
    #: value has no int64 counterpart (Python's result would be an unbounded int, or an
    #: error); the caller must then run the call as Python.
    checked: bool = False
    child_fields = ("body",)

    def as_function(self) -> ir.Function:
        decls = tuple(ir.Declare(ct, name, ir.Const(0, ct)) for name, ct in self.locals)
        params = self.params + ((ir.Param(UNREP.name, "int", pointer=True),)
                                if self.checked else ())
        return ir.Function(self.name, params, ir.Block(decls + self.body.body),
                           ret=self.ret.ctype, static=True, inline=True)

    def call(self, args: tuple[ir.Expr, ...]) -> ir.Call:
        """A call of the function (with the flag, when it takes one)."""
        return ir.Call(self.name, args + ((UNREP,) if self.checked else ()))


# Functions of one or more float arguments returning a float (computed in double, like Python).
_MATH_FLOAT = {
    "sqrt": "sqrt", "exp": "exp", "log10": "log10", "log2": "log2", "log1p": "log1p",
    "expm1": "expm1", "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin", "acos": "acos",
    "atan": "atan", "atan2": "atan2", "sinh": "sinh", "cosh": "cosh", "tanh": "tanh",
    "asinh": "asinh", "acosh": "acosh", "atanh": "atanh", "pow": "pow", "fabs": "fabs",
    "hypot": "hypot", "copysign": "copysign", "fmod": "fmod", "erf": "erf", "erfc": "erfc",
    "exp2": "exp2", "cbrt": "cbrt",
}
_MATH_INT = {"floor": "floor", "ceil": "ceil", "trunc": "trunc"}  # return Python ints
_MATH_BOOL = {"isnan": "isnan", "isinf": "isinf", "isfinite": "isfinite"}
_MATH_CONST = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf, "nan": math.nan}
_NP_FLOAT = {
    "sqrt": "sqrt", "exp": "exp", "log": "log", "log10": "log10", "log2": "log2",
    "log1p": "log1p", "expm1": "expm1", "sin": "sin", "cos": "cos", "tan": "tan",
    "arcsin": "asin", "arccos": "acos", "arctan": "atan", "arctan2": "atan2", "sinh": "sinh",
    "cosh": "cosh", "tanh": "tanh", "hypot": "hypot", "floor": "floor", "ceil": "ceil",
    "trunc": "trunc", "fabs": "fabs", "power": "pow", "cbrt": "cbrt", "exp2": "exp2",
}
_NP_CAST = {"float64": "double", "float32": "float", "int64": "int64_t", "int32": "int32_t",
            "double": "double", "single": "float"}


def _resolve_callables() -> dict[int, tuple[str, str]]:
    """Map id(callable) -> (kind, C name) for math and numpy functions."""
    out: dict[int, tuple[str, str]] = {}
    for py, c in _MATH_FLOAT.items():
        out[id(getattr(math, py))] = ("float", c)
    out[id(math.log)] = ("log", "log")
    for py, c in _MATH_INT.items():
        out[id(getattr(math, py))] = ("int", c)
    for py, c in _MATH_BOOL.items():
        out[id(getattr(math, py))] = ("bool", c)
        out[id(getattr(np, py))] = ("bool", c)
    for py, c in _NP_FLOAT.items():
        out[id(getattr(np, py))] = ("npfloat", c)
    for py in ("abs", "absolute"):
        out[id(getattr(np, py))] = ("abs", "abs")
    for py, c in _NP_CAST.items():
        out[id(getattr(np, py))] = ("cast", c)
    for name in ("abs", "min", "max", "int", "bool"):
        out[id(getattr(builtins, name))] = (name, name)
    # Not "float": that kind is a libm function returning a float (float(x) was printed
    # as a call to a C function named float, and never compiled).
    out[id(builtins.float)] = ("tofloat", "float")
    out[id(range)] = ("range", "range")
    return out


_CALLABLES = _resolve_callables()

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
           ast.Mod: "%", ast.Pow: "**", ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^",
           ast.LShift: "<<", ast.RShift: ">>"}

#: Python's operators on two int constants (folded exactly; see ``binop``).
_PY_INT_OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul, "//": operator.floordiv,
               "%": operator.mod, "<<": operator.lshift, ">>": operator.rshift,
               "&": operator.and_, "|": operator.or_, "^": operator.xor}

#: The C helpers this front end's code calls (Python's ``//``, ``%``, ``range`` length).
PREAMBLE = HELPERS


def c_name(name: str) -> str:
    """The C identifier of a Python name: prefixed, so it never meets a generated name
    (``n``, ``k``, ``asp_*``), a C keyword or a libm function."""
    return f"v_{name}"


class _Translator:
    """Translates a function body; run until the local types stop changing."""

    def __init__(self, src: KernelSource, globals_: dict, closure: dict,
                 params: dict[str, T], env: dict[str, T], kind: str = "an elementwise kernel"):
        self.src = src
        self.kind = kind  # how messages name the kernel ("an elementwise kernel")
        self.globals = globals_
        self.closure = closure
        self.params = params
        self.env = env          # local variable types (joined over all assignments)
        self.returns: list[T] = []
        self.ret: T | None = None
        self.tmp = 0
        self.loop_depth = 0
        self.checked = False  # a float -> int conversion needs the UNREP flag

    def err(self, node, message: str):
        return self.src.error(node, message)

    # -- names ------------------------------------------------------------------------------
    def lookup_global(self, name: str, node):
        if name in self.closure:
            return self.closure[name]
        if name in self.globals:
            return self.globals[name]
        if hasattr(builtins, name):
            return getattr(builtins, name)
        raise self.err(node, f"name {name!r} is not defined")

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
        raise self.err(node, f"{type(value).__name__} value cannot be used in a compiled kernel")

    # -- expressions ------------------------------------------------------------------------
    def expr(self, node) -> tuple[ir.Expr, T]:
        method = getattr(self, f"e_{type(node).__name__}", None)
        if method is None:
            raise self.err(node, f"{_describe(node)} is not supported in {self.kind}")
        return method(node)

    def e_Constant(self, node: ast.Constant):
        return self.constant(node.value, node)

    def e_Name(self, node: ast.Name):
        if node.id in self.params:
            return ir.Var(c_name(node.id)), self.params[node.id]
        if node.id in self.env:
            return ir.Var(c_name(node.id)), self.env[node.id]
        value = self.lookup_global(node.id, node)
        if isinstance(value, int | float | bool | np.number | np.bool_ | complex):
            return self.constant(value, node)
        raise self.err(node, f"{node.id!r} ({type(value).__name__}) cannot be used as a value "
                             "in a compiled kernel")

    def e_Attribute(self, node: ast.Attribute):
        base = self.static_value(node.value)
        if base is math and node.attr in _MATH_CONST:
            return self.constant(_MATH_CONST[node.attr], node)
        if base is np and node.attr in ("pi", "e", "inf", "nan"):
            return self.constant(float(getattr(np, node.attr)), node)
        raise self.err(node, f"attribute '{ast.unparse(node)}' is not supported")

    def static_value(self, node):
        """The Python object a name or dotted name refers to (modules, functions)."""
        if isinstance(node, ast.Name):
            if node.id in self.params or node.id in self.env:
                raise self.err(node, f"'{node.id}' is a value, not a module or function")
            return self.lookup_global(node.id, node)
        if isinstance(node, ast.Attribute):
            base = self.static_value(node.value)
            if isinstance(base, types.ModuleType) and hasattr(base, node.attr):
                return getattr(base, node.attr)
            raise self.err(node, f"'{ast.unparse(node)}' is not supported")
        raise self.err(node, f"'{ast.unparse(node)}' cannot be called in a compiled kernel")

    def e_UnaryOp(self, node: ast.UnaryOp):
        e, t = self.expr(node.operand)
        if isinstance(node.op, ast.Not):
            return ir.UnaryOp("!", self.truth(e, t)), BOOL
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
        if t.is_bool:
            return e
        zero = ir.Const(0.0 if t.is_float else 0, t.ctype)
        return ir.BinOp("!=", e, zero)

    def e_BinOp(self, node: ast.BinOp):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.err(node, f"operator {type(node.op).__name__} is not supported")
        le, lt = self.expr(node.left)
        re_, rt = self.expr(node.right)
        return self.binop(node, op, le, lt, re_, rt)

    def binop(self, node, op, le, lt, re_, rt):
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
                # Repeat a plain name, not an expression: bind it to a temporary.
                name = self.fresh()
                self.pending.append(ir.Declare(t.ctype, name, base))
                base = ir.Var(name)
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
            return cast(ir.Call("sqrt", (cast(le, lt, "double"),)), FLOAT, t.ctype), t
        # NEP 50: both operands take the result type first (a weak Python float exponent
        # of a float32 base is rounded to float32), then pow computes in double.
        a, b = cast(le, lt, t.ctype), cast(re_, rt, t.ctype)
        call = ir.Call("pow", (cast(a, t, "double"), cast(b, t, "double")))
        return cast(call, FLOAT, t.ctype), t

    def fresh(self) -> str:
        self.tmp += 1
        return f"asp_t{self.tmp}"

    def e_Compare(self, node):
        return translate_compare(node, self.expr, self.err)

    def e_BoolOp(self, node: ast.BoolOp):
        op = "&&" if isinstance(node.op, ast.And) else "||"
        values = [self.expr(v) for v in node.values]
        if not all(t.is_bool for _, t in values):
            raise self.err(node, f"'{ast.unparse(node)}': 'and'/'or' are supported on "
                                 "booleans (comparisons) only")
        out = values[0][0]
        for e, _ in values[1:]:
            out = ir.BinOp(op, out, e)
        return out, BOOL

    def e_IfExp(self, node: ast.IfExp):
        c, ct = self.expr(node.test)
        a, at = self.expr(node.body)
        b, bt = self.expr(node.orelse)
        t = join(at, bt)
        return ir.Ternary(self.truth(c, ct), cast(a, at, t.ctype), cast(b, bt, t.ctype)), t

    def e_Call(self, node: ast.Call):
        if node.keywords:
            raise self.err(node, "keyword arguments are not supported in kernel calls")
        fn = self.static_value(node.func)
        kind, cname = _CALLABLES.get(id(fn), (None, None))
        name = ast.unparse(node.func)
        if kind is None:
            raise self.err(node, f"call to unknown function '{name}'")
        if kind == "range":
            raise self.err(node, "range() can only be used as a for loop's iterable")
        args = [self.expr(a) for a in node.args]
        if kind in ("float", "npfloat", "log"):
            if kind == "log" and len(args) == 2:
                (x, xt), (b, bt) = args
                return ir.BinOp("/", ir.Call("log", (cast(x, xt, "double"),)),
                                ir.Call("log", (cast(b, bt, "double"),))), FLOAT
            want = {"sqrt": 1, "pow": 2, "atan2": 2, "hypot": 2, "copysign": 2, "fmod": 2}
            n = want.get(cname, 1)
            if len(args) != n:
                raise self.err(node, f"{name}() takes {n} argument(s)")
            if kind == "npfloat":  # a ufunc: its arguments' promoted type (NEP 50)
                t = args[0][1]
                for _, t2 in args[1:]:
                    t = binop_type(t, t2)
                if not t.is_float and cname == "pow":
                    raise self.err(node, f"{name}() of integers is an integer power; "
                                         "write x ** n")
                out = t if t.is_float else _ufunc_float(t, node, name, self.err)
                call = ir.Call(cname, tuple(cast(cast(e, et, out.ctype), out, "double")
                                            for e, et in args))
                return cast(call, FLOAT, out.ctype), out
            call = ir.Call(cname, tuple(cast(e, t, "double") for e, t in args))
            return call, FLOAT
        if kind == "int" and cname in _MATH_INT.values():
            self.arity(node, args, 1, name)
            self.checked = True
            return checked_int(ir.Call(cname, (cast(*args[0], "double"),)), FLOAT,
                               "int64_t"), INT
        if kind == "bool" and cname in _MATH_BOOL.values():
            self.arity(node, args, 1, name)
            return ir.Call(cname, (cast(*args[0], "double"),)), BOOL
        if kind == "abs":
            self.arity(node, args, 1, name)
            e, t = args[0]
            nt = numeric(t)
            return absolute(cast(e, t, nt.ctype), nt), nt
        if kind in ("min", "max"):
            if len(args) < 2:
                raise self.err(node, f"{name}() needs at least two arguments in a kernel")
            e, t = args[0]
            for e2, t2 in args[1:]:
                tt = join(t, t2) if (t.weak == t2.weak) else binop_type(t, t2)
                a, b = cast(e, t, tt.ctype), cast(e2, t2, tt.ctype)
                # Python: min(a, b) is b if b < a else a (and max: b if b > a else a).
                cmp = "<" if kind == "min" else ">"
                e, t = ir.Ternary(ir.BinOp(cmp, b, a), b, a), tt
            return e, t
        if kind == "int":
            self.arity(node, args, 1, name)
            self.checked = self.checked or args[0][1].is_float
            return checked_int(args[0][0], args[0][1], "int64_t"), INT
        if kind == "tofloat":
            self.arity(node, args, 1, name)
            return cast(args[0][0], args[0][1], "double"), FLOAT
        if kind == "bool":
            self.arity(node, args, 1, name)
            return self.truth(*args[0]), BOOL
        if kind == "cast":
            self.arity(node, args, 1, name)
            return cast(args[0][0], args[0][1], cname), T(cname)
        raise self.err(node, f"call to unsupported function '{name}'")

    def arity(self, node, args, n, name):
        if len(args) != n:
            raise self.err(node, f"{name}() takes {n} argument(s) here")

    # -- statements -------------------------------------------------------------------------
    def block(self, stmts) -> ir.Block:
        out: list[ir.Stmt] = []
        for s in stmts:
            self.pending: list[ir.Stmt] = []
            produced = self.stmt(s)
            out.extend(self.pending)
            out.extend(produced)
        return ir.Block(tuple(out))

    def stmt(self, node) -> list[ir.Stmt]:
        method = getattr(self, f"s_{type(node).__name__}", None)
        if method is None:
            raise self.err(node, f"{_describe(node)} is not supported in {self.kind}")
        return method(node)

    def assign_name(self, name: str, e: ir.Expr, t: T, node) -> ir.Stmt:
        if name in self.params:
            raise self.err(node, f"cannot assign to parameter {name!r}; use a new local name")
        self.env[name] = join(self.env.get(name), t)
        return ir.Assign(ir.Var(c_name(name)), cast(e, t, self.env[name].ctype))

    def s_Assign(self, node: ast.Assign):
        out = []
        e, t = None, None
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Tuple):
            target = node.targets[0]
            if not isinstance(node.value, ast.Tuple) or len(node.value.elts) != len(target.elts):
                raise self.err(node, "tuple assignment needs a tuple of the same length")
            # Evaluate every right-hand side before assigning any (Python's semantics).
            temps = []
            for v in node.value.elts:
                ve, vt = self.expr(v)
                name = self.fresh()
                out.append(ir.Declare(vt.ctype, name, ve))
                temps.append((ir.Var(name), vt))
            for tgt, (ve, vt) in zip(target.elts, temps):
                if not isinstance(tgt, ast.Name):
                    raise self.err(tgt, f"only names can be assigned in {self.kind}")
                out.append(self.assign_name(tgt.id, ve, vt, node))
            return out
        e, t = self.expr(node.value)
        for tgt in node.targets:
            if not isinstance(tgt, ast.Name):
                raise self.err(tgt, f"only names can be assigned in {self.kind}")
            out.append(self.assign_name(tgt.id, e, t, node))
        return out

    def s_AnnAssign(self, node: ast.AnnAssign):
        if node.value is None or not isinstance(node.target, ast.Name):
            raise self.err(node, "annotated assignment needs a name and a value")
        e, t = self.expr(node.value)
        return [self.assign_name(node.target.id, e, t, node)]

    def s_AugAssign(self, node: ast.AugAssign):
        if not isinstance(node.target, ast.Name):
            raise self.err(node, f"only names can be assigned in {self.kind}")
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.err(node, "unsupported augmented assignment")
        le, lt = self.expr(ast.Name(node.target.id, ast.Load(), lineno=node.lineno))
        re_, rt = self.expr(node.value)
        e, t = self.binop(node, op, le, lt, re_, rt)
        return [self.assign_name(node.target.id, e, t, node)]

    def s_Expr(self, node: ast.Expr):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return []  # a docstring
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
        c, ct = self.expr(node.test)
        pend = self.pending
        then = self.block(node.body)
        orelse = self.block(node.orelse) if node.orelse else None
        self.pending = pend
        return [ir.If(self.truth(c, ct), then, orelse)]

    def s_While(self, node: ast.While):
        if node.orelse:
            raise self.err(node, "'while ... else' is not supported")
        c, ct = self.expr(node.test)
        if self.pending:
            raise self.err(node, "a while condition must be a simple expression")
        self.loop_depth += 1
        body = self.block(node.body)
        self.loop_depth -= 1
        self.pending = []
        return [ir.While(self.truth(c, ct), body)]

    def s_For(self, node: ast.For):
        if node.orelse:
            raise self.err(node, "'for ... else' is not supported")
        it = node.iter
        if not (isinstance(it, ast.Call) and not it.keywords
                and _CALLABLES.get(id(self.static_value(it.func)), (None,))[0] == "range"):
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
        it = self.fresh()
        v_start, v_step, v_count = (ir.Var(f"{it}_start"), ir.Var(f"{it}_step"),
                                    ir.Var(f"{it}_count"))
        # Python's range: the trip count is computed once, up front (len(range(...))).
        count = ir.Call("asp_range_len", (v_start, stop, v_step))
        header = [ir.Declare("int64_t", f"{it}_start", start, const=True),
                  ir.Declare("int64_t", f"{it}_step", step, const=True),
                  ir.Declare("int64_t", f"{it}_count", count, const=True)]
        pend, self.pending = self.pending, []
        self.loop_depth += 1
        body = self.block(node.body)
        self.loop_depth -= 1
        self.pending = pend
        # The loop variable takes each value in turn and keeps the last one after the loop.
        value = ir.BinOp("+", v_start, ir.BinOp("*", ir.Var(it), v_step))
        copy = ir.Assign(ir.Var(c_name(name)), cast(value, INT, self.env[name].ctype))
        loop = ir.For(it, zero, v_count, ir.Block((copy, *body.body)))
        return [*header, loop]

    def s_Break(self, node):
        if not self.loop_depth:
            raise self.err(node, "'break' outside a loop")
        return [ir.Break()]

    def s_Continue(self, node):
        if not self.loop_depth:
            raise self.err(node, "'continue' outside a loop")
        return [ir.Continue()]


def _ufunc_float(t: T, node, name: str, err) -> T:
    """The float type a NumPy ufunc such as ``np.sqrt`` gives an integer argument: the
    smallest float that holds the integer type (float16 for 8 bits, which compiled code
    has no type for; float32 for 16 bits; float64 beyond, and for Python ints)."""
    if t.weak or t.ctype in ("int32_t", "uint32_t", "int64_t", "uint64_t"):
        return T("double", t.weak)
    if t.ctype in ("int16_t", "uint16_t"):
        return T("float")
    raise err(node, f"{name}() of an 8-bit integer or a bool is float16 in NumPy, which "
                    "compiled kernels do not support (convert it first: float(x))")


def _describe(node) -> str:
    names = {"While": "'while' loops", "Lambda": "lambda", "ListComp": "list comprehensions",
             "List": "lists", "Dict": "dicts", "Subscript": "indexing", "Try": "'try'",
             "With": "'with'", "Global": "'global'", "Nonlocal": "'nonlocal'",
             "FunctionDef": "nested functions", "Tuple": "tuples", "JoinedStr": "f-strings",
             "Yield": "'yield'", "Await": "'await'", "Raise": "'raise'", "Assert": "'assert'",
             "Delete": "'del'", "Import": "'import'", "ImportFrom": "'import'"}
    return names.get(type(node).__name__, f"'{type(node).__name__}'")


def _always_returns(stmts) -> bool:
    if not stmts:
        return False
    last = stmts[-1]
    if isinstance(last, ast.Return):
        return True
    if isinstance(last, ast.If):
        return _always_returns(last.body) and _always_returns(last.orelse)
    if isinstance(last, ast.While):
        is_true = isinstance(last.test, ast.Constant) and bool(last.test.value)
        return is_true and not any(isinstance(n, ast.Break) for n in ast.walk(last))
    return False


def translate(src: KernelSource, fn, param_types: dict[str, T], *,
              name: str = "asp_elem", kind: str = "an elementwise kernel") -> ScalarFunction:
    """The typed scalar function for ``src`` with parameters of ``param_types``."""
    func = src.func
    a = func.args
    if a.vararg or a.kwarg or a.kwonlyargs or a.posonlyargs or a.defaults:
        raise src.error(func, f"{kind}: plain positional parameters only "
                              "(no defaults, *args, **kwargs or keyword-only)")
    names = [p.arg for p in a.args]
    if set(names) != set(param_types):
        raise src.error(func, "internal: parameter types do not match the signature")
    if not _always_returns(func.body):
        raise src.error(func, f"'{func.name}' can reach its end without returning a value")
    closure = {}
    if fn.__closure__:
        closure = {n: c.cell_contents for n, c in zip(fn.__code__.co_freevars, fn.__closure__)}
    env: dict[str, T] = {}
    tr = None
    for _ in range(12):  # types of locals only widen, so this reaches a fixed point quickly
        before = dict(env)
        tr = _Translator(src, fn.__globals__, closure, param_types, env, kind)
        tr.block(func.body)
        if env == before:
            break
    ret = tr.returns[0]
    for t in tr.returns[1:]:
        ret = join(ret, t)
    tr = _Translator(src, fn.__globals__, closure, param_types, env, kind)
    tr.ret = ret
    body = tr.block(func.body)
    params = tuple(ir.Param(c_name(n), param_types[n].ctype) for n in names)
    temps = {d.name for d in body.walk() if isinstance(d, ir.Declare)}
    locals_ = tuple(sorted((c_name(k), v.ctype) for k, v in env.items() if k not in temps))
    # Python-int arithmetic checked for overflow needs the flag too (see pyscalar.arith).
    checked = tr.checked or any(n == UNREP for n in body.walk())
    return ScalarFunction(name=name, params=params, param_types=tuple(param_types[n]
                                                                      for n in names),
                          ret=ret, locals=locals_, body=body, checked=checked)
