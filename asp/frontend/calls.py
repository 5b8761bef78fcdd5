"""The functions a compiled kernel may call, found by identity, and their translation.

A call is translated by *what it calls*, not by how it is spelled: ``math.sqrt``,
``from math import sqrt; sqrt`` and ``m.sqrt`` (``import math as m``) are one function,
and a user's own function that happens to be named ``sqrt`` is none of them.  Each
known callable has a *kind* (how it is typed) and a C name:

=========== =====================================================================
kind        callables
=========== =====================================================================
float       ``math`` functions of floats giving a float (computed in double)
log         ``math.log`` (one argument, or two: a base)
npfloat     NumPy ufuncs (``np.sqrt``): their arguments' promoted type (NEP 50)
int         ``math.floor/ceil/trunc``: a Python int, converted as Python does
bool        ``math.isnan/isinf/isfinite`` and NumPy's
npextreme   ``np.maximum`` and ``np.minimum``: NEP 50's promoted type, NaN propagated
npscale     ``np.deg2rad``/``radians``, ``np.rad2deg``/``degrees``: times NumPy's factor
npsquare    ``np.square``: ``x * x`` in ``x``'s NumPy type (a bool squares to an int8)
npsign      ``np.sign``: -1, 0 or 1 in ``x``'s NumPy type, NaN for NaN
npwhere     ``np.where(c, a, b)``: ``a`` or ``b`` in their promoted type, both evaluated
npclip      ``np.clip(x, lo, hi)``: NumPy's, Python-int bounds beyond ``x``'s type dropped
abs min max int bool, tofloat (``float``), cast (``np.float32``), range
=========== =====================================================================
"""
from __future__ import annotations

import ast
import builtins
import inspect
import math

import numpy as np

from asp.ir import platform as ir
from asp.ir.pymath import ONE, TWO, math_call
from asp.ir.pyscalar import (
    BOOL,
    FLOAT,
    INT,
    UNREP,
    T,
    absolute,
    arith,
    binop_type,
    cast,
    checked,
    checked_int,
    converted,
    join,
    numeric,
)
from asp.ir.types import dtype_of

__all__ = ["MATH_CONST", "callable_kind", "defined_at", "known_call"]

#: The math functions compiled as libm calls of the same name, checked as CPython's are
#: (:mod:`asp.ir.pymath` keeps the one list; ``math.log`` is its own kind).
_MATH_FLOAT = {f: f for f in (*ONE, *TWO) if f != "log"}
_MATH_INT = {"floor": "floor", "ceil": "ceil", "trunc": "trunc"}  # return Python ints
_MATH_BOOL = {"isnan": "isnan", "isinf": "isinf", "isfinite": "isfinite"}
#: ``math`` constants a kernel may read (``math.pi``).
MATH_CONST = {"pi": math.pi, "e": math.e, "tau": math.tau, "inf": math.inf, "nan": math.nan}
_NP_FLOAT = {
    "sqrt": "sqrt", "exp": "exp", "log": "log", "log10": "log10", "log2": "log2",
    "log1p": "log1p", "expm1": "expm1", "sin": "sin", "cos": "cos", "tan": "tan",
    "arcsin": "asin", "arccos": "acos", "arctan": "atan", "arctan2": "atan2", "sinh": "sinh",
    "cosh": "cosh", "tanh": "tanh", "hypot": "hypot", "floor": "floor", "ceil": "ceil",
    "trunc": "trunc", "fabs": "fabs", "power": "pow", "cbrt": "cbrt", "exp2": "exp2",
    "arcsinh": "asinh", "arccosh": "acosh", "arctanh": "atanh", "copysign": "copysign",
    "fmod": "fmod",
}
#: Angle conversions: NumPy multiplies by a factor rounded in the result's type (float32:
#: ``180f / pi_f``, the float32 constants divided in float32, as NumPy's C has it;
#: checked against NumPy on a million float32s, where ``float32(180 / pi)`` differed in
#: 80 % of them).
_NP_SCALE = {"deg2rad": (np.pi, 180.0), "radians": (np.pi, 180.0),
             "rad2deg": (180.0, np.pi), "degrees": (180.0, np.pi)}
_NP_CAST = {"float64": "double", "float32": "float", "int64": "int64_t", "int32": "int32_t",
            "double": "double", "single": "float"}
#: The rounding ufuncs that return an integer argument as it is (NumPy >= 2.1: floor, ceil
#: and trunc of an int16 are that int16), as the installed NumPy does.
_NP_ROUND_KEEPS_INTS = frozenset(c for c in ("floor", "ceil", "trunc")
                                 if getattr(np, c)(np.int16(3)).dtype == np.int16)
#: Arguments of the float functions that take other than one.
_ARITY = dict.fromkeys(TWO, 2)


def _resolve_callables() -> dict[int, tuple[str, str]]:
    """Map id(callable) -> (kind, C name) for math and numpy functions."""
    out: dict[int, tuple[str, str]] = {}
    for py, c in _MATH_FLOAT.items():
        out[id(getattr(math, py))] = ("float", c)
    out[id(math.log)] = ("log", "log")
    for py, c in _MATH_INT.items():
        out[id(getattr(math, py))] = ("int", c)
    for py, c in _MATH_BOOL.items():
        out[id(getattr(math, py))] = ("bool", c)  # a Python bool
        out[id(getattr(np, py))] = ("npbool", c)  # a NumPy bool
    for py, c in _NP_FLOAT.items():
        out[id(getattr(np, py))] = ("npfloat", c)
    for py in ("abs", "absolute"):
        out[id(getattr(np, py))] = ("npabs", "abs")
    for py in _NP_SCALE:
        out[id(getattr(np, py))] = ("npscale", py)
    out[id(np.square)] = ("npsquare", "square")
    out[id(np.where)] = ("npwhere", "where")
    out[id(np.clip)] = ("npclip", "clip")
    out[id(np.sign)] = ("npsign", "sign")
    out[id(np.maximum)] = ("npextreme", ">")
    out[id(np.minimum)] = ("npextreme", "<")
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


def callable_kind(fn) -> tuple[str | None, str | None]:
    """``(kind, C name)`` of a callable a kernel may call, or ``(None, None)``."""
    return _CALLABLES.get(id(fn), (None, None))


def defined_at(fn) -> str:
    """`` (defined at file:line)`` for a Python function, for messages that refuse it."""
    try:
        return f" (defined at {inspect.getsourcefile(fn)}:{inspect.getsourcelines(fn)[1]})"
    except (TypeError, OSError):
        return ""


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


def _np_unary(node, kind: str, cname: str, e: ir.Expr, t: T, err, temporary) -> tuple[ir.Expr, T]:
    """``np.square``, ``np.sign`` or an angle conversion of ``e`` (of type ``t``), as
    NumPy computes it: a ufunc's result is a NumPy scalar even of a Python number."""
    name = ast.unparse(node.func)
    if kind == "npscale":  # float loops only: an integer converts as np.sqrt's does
        out = T((t if t.is_float else _ufunc_float(t, node, name, err)).ctype)
        num, den = _NP_SCALE[cname]
        factor = float(np.float32(num) / np.float32(den)) if out.ctype == "float" \
            else num / den
        return ir.BinOp("*", cast(e, t, out.ctype), ir.Const(factor, out.ctype)), out
    if t.is_bool:
        if kind == "npsign":
            raise err(node, f"{name}() of a bool: NumPy has no such loop (Python raises "
                            "TypeError; convert it first: int(x))")
        t = T("int8_t")  # np.square(True) is np.int8(1): NumPy's bools square as int8
    out = T(t.ctype)  # strong: np.square(3) is np.int64(9), which wraps as NumPy's do
    x = cast(e, t, out.ctype)
    if not isinstance(x, ir.Var | ir.Const):
        x, _ = temporary(x, out)  # used twice (three times): evaluated once
    if kind == "npsquare":
        return arith("*", x, x, out), out
    zero = ir.Const(0.0 if out.is_float else 0, out.ctype)
    one = ir.Const(1.0 if out.is_float else 1, out.ctype)
    if out.ctype.startswith("uint"):
        return ir.Ternary(ir.BinOp(">", x, zero), one, zero), out
    minus = ir.Const(-1.0 if out.is_float else -1, out.ctype)
    # NumPy's: a NaN is its own sign, and so is no zero (np.sign(-0.0) is 0.0)
    rest = ir.Ternary(ir.BinOp("==", x, zero), zero, x) if out.is_float else zero
    return ir.Ternary(ir.BinOp(">", x, zero), one,
                      ir.Ternary(ir.BinOp("<", x, zero), minus, rest)), out


def _np_clip(x: tuple[ir.Expr, T], lo: tuple[ir.Expr, T], hi: tuple[ir.Expr, T],
             temporary) -> tuple[ir.Expr, T]:
    """``np.clip(x, lo, hi)`` as NumPy 2 computes it: ``x`` made an array (a Python
    number is a strong int64, float64 or bool); a Python-int bound at or beyond the end
    of an integer ``x``'s type is dropped (a bound inside it converts as arithmetic
    converts it, and one beyond the far end raises OverflowError, flagged); then
    ``x`` if it is NaN or not below ``lo``, else ``lo``; that if NaN or not above ``hi``,
    else ``hi``: a NaN anywhere is the result, a value equal to a bound stays ``x`` (the
    sign of a zero), and ``lo > hi`` gives ``hi``."""
    (xe, xt), bounds = x, [lo, hi]
    xt = T(xt.ctype)  # np.asanyarray(x): strong even of a Python number
    t = xt
    for _, bt in bounds:
        t = binop_type(t, bt)
    t = T("bool") if all(bt.is_bool for _, bt in (x, *bounds)) else T(t.ctype)
    if not xt.is_float and not xt.is_bool:
        # NumPy's _clip: a Python-int bound past the end of x's type is no bound at all,
        # the same as that end (x is inside it).
        info = np.iinfo(dtype_of(xt.ctype))
        for k, (end, cmp) in enumerate(((info.min, "<="), (info.max, ">="))):
            b, bt = bounds[k]
            if bt == INT and end < 2**63:  # (a Python int here is an int64)
                if isinstance(b, ir.Const):
                    b = ir.Const(end if (b.value <= end if cmp == "<=" else b.value >= end)
                                 else b.value, "int64_t")
                else:
                    if not isinstance(b, ir.Var):
                        b, _ = temporary(b, bt)
                    b = ir.Ternary(ir.BinOp(cmp, b, ir.Const(end, "int64_t")),
                                   ir.Const(end, "int64_t"), b)
                bounds[k] = (b, bt)
    vals = []
    for e, et in ((xe, xt), *bounds):
        v = converted(e, et, t.ctype)
        if not isinstance(v, ir.Var | ir.Const):
            v, _ = temporary(v, t)  # each is read twice
        vals.append(v)
    xv, lov, hiv = vals

    def nan_or(v: ir.Expr, test: ir.Expr) -> ir.Expr:
        if not t.is_float:
            return test
        return ir.BinOp("||", ir.BinOp("!=", v, v), test)

    low = ir.Ternary(nan_or(xv, ir.BinOp(">=", xv, lov)), xv, lov)
    if not isinstance(low, ir.Var):
        low, _ = temporary(low, t)
    return ir.Ternary(nan_or(low, ir.BinOp("<=", low, hiv)), low, hiv), t


def _arity(err, node, args, n: int, name: str) -> None:
    if len(args) != n:
        raise err(node, f"{name}() takes {n} argument(s) here")


def known_call(node: ast.Call, kind: str, cname: str, args: list[tuple[ir.Expr, T]],
               err, truth, temporary) -> tuple[ir.Expr, T]:
    """The call ``node`` of a known callable of ``kind`` (see :func:`callable_kind`) on the
    typed ``args``, typed as Python and NumPy type it.  ``err(node, message)`` makes the
    front end's error; ``truth(e, t)`` its C truth value of a typed expression;
    ``temporary(e, t)`` a name holding ``e``, evaluated once (an argument used twice)."""
    name = ast.unparse(node.func)
    if kind == "npwhere":
        _arity(err, node, args, 3, name)
        (c, ct), (a, at), (b, bt) = args
        # NumPy's result type of the two values (NEP 50; a 0-d array, strong even of Python
        # numbers), each converted as arithmetic converts it.
        t = T("bool") if at.is_bool and bt.is_bool else T(binop_type(at, bt).ctype)
        x, y = converted(a, at, t.ctype), converted(b, bt, t.ctype)
        if checked(x) or checked(y):  # NumPy evaluates both: where either raises, Python
            x, _ = temporary(x, t)    # does, whichever is picked (a C ?: evaluates one)
            y, _ = temporary(y, t)
        return ir.Ternary(truth(c, ct), x, y), t
    if kind == "npclip":
        _arity(err, node, args, 3, name)
        return _np_clip(*args, temporary)
    if kind in ("npsquare", "npsign", "npscale"):
        _arity(err, node, args, 1, name)
        return _np_unary(node, kind, cname, *args[0], err, temporary)
    if kind in ("float", "npfloat", "log"):
        if kind == "log" and len(args) == 2:
            (x, xt), (b, bt) = args
            return math_call("log", (cast(x, xt, "double"), cast(b, bt, "double")), UNREP), FLOAT
        n = _ARITY.get(cname, 1)
        if len(args) != n:
            raise err(node, f"{name}() takes {n} argument(s)")
        if kind == "npfloat":  # a ufunc: its arguments' promoted type (NEP 50)
            t = args[0][1]
            for _, t2 in args[1:]:
                t = binop_type(t, t2)
            if not t.is_float and cname == "pow":
                raise err(node, f"{name}() of integers is an integer power; write x ** n")
            if not t.is_float and cname == "fmod":
                raise err(node, f"{name}() of integers is not compiled (NumPy's integer "
                                "fmod); convert an argument to float")
            if not t.is_float and cname in _NP_ROUND_KEEPS_INTS:
                # NumPy >= 2.1: np.floor(np.int16(x)) is that int16 (no float in between)
                return args[0][0], T(t.ctype)
            # A ufunc returns a NumPy scalar even of Python numbers (np.arctan2(3.0, 0) is
            # a strong float64: with a float32 it computes in float64).
            out = T((t if t.is_float else _ufunc_float(t, node, name, err)).ctype)
            call = ir.Call(cname, tuple(cast(cast(e, et, out.ctype), out, "double")
                                        for e, et in args))
            return cast(call, FLOAT, out.ctype), out
        # math's functions raise where libm's result is out of domain or range
        return math_call(cname, tuple(cast(e, t, "double") for e, t in args), UNREP), FLOAT
    if kind == "int" and cname in _MATH_INT.values():
        _arity(err, node, args, 1, name)
        t = args[0][1]
        if cname == "trunc" and not t.weak and t.ctype != "double":
            # NumPy's scalars have no __trunc__ but float64 (a Python float): Python's
            # math.trunc(np.float32(2.5)) raises, where C would truncate.
            raise err(node, f"math.trunc() of a NumPy {dtype_of(t.ctype).name}: "
                            "NumPy raises TypeError (use int(...) or np.trunc(...))")
        return checked_int(ir.Call(cname, (cast(*args[0], "double"),)), FLOAT, "int64_t"), INT
    if kind in ("bool", "npbool") and cname in _MATH_BOOL.values():
        _arity(err, node, args, 1, name)
        # C's isinf() is any nonzero int (glibc: -1 for -inf): a bool is 0 or 1.
        test = ir.BinOp("!=", ir.Call(cname, (cast(*args[0], "double"),)), ir.Const(0, "int"))
        return test, (BOOL if kind == "npbool" else T("bool", True))
    if kind in ("abs", "npabs"):
        _arity(err, node, args, 1, name)
        e, t = args[0]
        nt = numeric(t)
        if kind == "npabs" and nt.pythonic:  # np.abs(2.5) is a NumPy float64 (strong)
            nt = T(nt.ctype)
        return absolute(cast(e, t, nt.ctype), nt), nt
    if kind == "npextreme":
        _arity(err, node, args, 2, name)
        (a, at), (b, bt) = args
        # A ufunc: both arguments in their promoted type (NEP 50), a NumPy scalar even of
        # Python numbers; a NaN wins (the first), else the second unless the first is
        # strictly greater (less): np.maximum(0.0, -0.0) is -0.0, np.maximum(-0.0, 0.0) 0.0.
        t = T("bool") if at.is_bool and bt.is_bool else T(binop_type(at, bt).ctype)
        x, y = converted(a, at, t.ctype), converted(b, bt, t.ctype)
        wins = ir.BinOp(cname, x, y)
        if t.is_float:
            nan = ir.BinOp("!=", ir.Call("isnan", (cast(x, t, "double"),)), ir.Const(0, "int"))
            wins = ir.BinOp("||", wins, nan)
        return ir.Ternary(wins, x, y), t
    if kind in ("min", "max"):
        if len(args) < 2:
            raise err(node, f"{name}() needs at least two arguments in a kernel")
        e, t = args[0]
        for e2, t2 in args[1:]:
            tt = join(t, t2)  # (types that differ in more than weakness were split)
            a, b = cast(e, t, tt.ctype), cast(e2, t2, tt.ctype)
            # Python: min(a, b) is b if b < a else a (and max: b if b > a else a).
            cmp = "<" if kind == "min" else ">"
            e, t = ir.Ternary(ir.BinOp(cmp, b, a), b, a), tt
        return e, t
    _arity(err, node, args, 1, name)
    e, t = args[0]
    if kind == "int":
        return checked_int(e, t, "int64_t"), INT
    if kind == "tofloat":
        return cast(e, t, "double"), FLOAT
    if kind == "bool":  # the builtin: a Python bool
        return truth(e, t), T("bool", True)
    if kind == "cast":
        return converted(e, t, cname), T(cname)  # np.uint8(300) raises
    raise err(node, f"call to unsupported function '{name}'")
