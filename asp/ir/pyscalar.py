"""Python's scalar semantics, for front ends that translate Python arithmetic to C.

A kernel's Python *is* its specification, so its arithmetic must mean in C
what it means in Python on NumPy scalars:

* types follow NumPy's promotion with NEP 50's *weak* Python scalars: a Python
  ``int`` or ``float`` literal (or scalar argument) takes the type of the
  array element it meets, so ``float32 * 2.0`` stays ``float32``;
* ``/`` is true division, ``//`` floors and ``%`` takes the divisor's sign,
  for integers and floats alike (:func:`floordiv` / :func:`mod` emit calls to the
  C of :mod:`asp.ir.pyhelpers`, re-exported here as ``HELPERS``);
* integers wrap as NumPy's arrays do: every result is narrowed to its type
  (C computes ``int8 + int8`` in ``int``), signed overflow wraps (the
  toolchain builds with ``-fwrapv``), ``INT_MIN // -1`` is ``INT_MIN`` and
  ``% -1`` is 0 (C raises SIGFPE), ``x // 0`` and ``x % 0`` are 0, and shifts by
  a negative count or by the type's width or more give 0 (``>>``: -1 for a
  negative ``x``), as :func:`arith`, :func:`negate`, :func:`invert`,
  :func:`absolute` and :func:`shift` emit;
* ``x ** 3`` and ``x ** 4`` on floats round once, as ``pow`` does (:mod:`asp.ir.powers`).

Used by the elementwise and stencil front ends; any specializer may use it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from asp.ir import platform as ir
from asp.ir.pyhelpers import HELPERS, SHORT
from asp.ir.types import ctype_of, dtype_of

__all__ = ["BOOL", "COMPARE_OPS", "DOUBLE_EITHER", "FLOAT", "HELPERS", "INT", "T", "UNREP",
           "absolute", "arith", "binop_type", "cast", "checked", "checked_int", "compare_chain",
           "converted", "floordiv", "invert", "join", "mod", "negate", "numeric", "shift",
           "stored", "translate_compare", "unrep_flag"]


@dataclass(frozen=True)
class T:
    """A value's type: a C type name, and whether it is a weak Python scalar.

    ``either`` marks a NumPy ``double`` that is a Python float on some paths (``acc =
    0.0`` on one and ``acc = y`` on another, or ``1.0 if c else y``): the two compute
    alike in C, but where the Python float would raise (a zero divisor, ``**``'s errors)
    the value is checked as one, and a NumPy float64 taking that check runs as Python
    too (slower, and still right).  A kernel with a ``float32`` keeps the two apart
    instead (:mod:`asp.frontend.mixed`).
    """

    ctype: str
    weak: bool = False
    either: bool = False

    @property
    def pythonic(self) -> bool:
        """Whether the value is, on some path, a Python number."""
        return self.weak or self.either

    @property
    def is_float(self) -> bool:
        return self.ctype in ("double", "float")

    @property
    def is_bool(self) -> bool:
        return self.ctype == "bool"


INT = T("int64_t", weak=True)
FLOAT = T("double", weak=True)
BOOL = T("bool")
DOUBLE_EITHER = T("double", either=True)


def numeric(t: T) -> T:
    return T("int64_t", t.weak) if t.is_bool else t


def binop_type(a: T, b: T, *, true_div: bool = False) -> T:
    """The type of ``a op b`` for an arithmetic operator, by NumPy/NEP 50 rules."""
    # A NumPy bool meets another NumPy type as that type (np.bool_ * np.int8 is int8), and
    # a Python bool as a NumPy bool (np.True_ + True is np.True_, not 2).
    if a.is_bool and b.is_bool and a.weak != b.weak:
        a = b = T("bool")
    if a.is_bool and not a.weak and not b.is_bool and not b.weak:
        a = T(b.ctype)
    elif b.is_bool and not b.weak and not a.is_bool and not a.weak:
        b = T(a.ctype)
    a, b = numeric(a), numeric(b)
    if a.weak and b.weak:
        out = T("double" if (a.is_float or b.is_float) else "int64_t", True)
    elif a.weak or b.weak:
        weak, strong = (a, b) if a.weak else (b, a)
        if weak.is_float and not strong.is_float:
            out = T("double")
        else:
            out = strong
    else:
        out = T(ctype_of(np.promote_types(dtype_of(a.ctype), dtype_of(b.ctype))))
    if true_div and not out.is_float:
        out = T("double", out.weak)
    if out.ctype == "double" and not out.weak and (a.either or b.either) \
            and a.pythonic and b.pythonic:
        out = DOUBLE_EITHER  # a Python float when each operand was a Python number
    return out


def join(a: T | None, b: T) -> T:
    """The type of a variable assigned values of types ``a`` and ``b``."""
    if a is None or a == b:
        return b
    if a.is_bool and b.is_bool:
        return T("bool", a.weak and b.weak)
    weak, strong = (a, b) if a.weak and not b.weak else (b, a) if b.weak and not a.weak \
        else (None, None)
    if weak is not None and not weak.is_float and not weak.is_bool and not strong.is_float \
            and not strong.is_bool and strong.ctype != "uint64_t":
        # A Python int and a narrow integer on different paths (300 or a uint8): the
        # variable holds either value, as Python's does, in int64 (NEP 50's arithmetic
        # rule would narrow the Python int and wrap it).
        return T("int64_t")
    t = binop_type(a, b)
    if t.ctype == "double" and (a.pythonic or b.pythonic) and not (a.weak and b.weak):
        return DOUBLE_EITHER
    return T(t.ctype, a.weak and b.weak)


def cast(e: ir.Expr, src: T, dst: str) -> ir.Expr:
    if src.ctype == dst:
        return e
    if isinstance(e, ir.Const) and not isinstance(e.value, bool):
        if dst == "float":  # rounded now, as NumPy rounds it (1e300 is inf in float32)
            with np.errstate(over="ignore"):
                return ir.Const(float(np.float32(e.value)), dst)
        return ir.Const(float(e.value) if dst == "double" else e.value, dst)
    return ir.Cast(dst, e)


#: Python's comparison operators (``ast`` node classes) as C operators.
COMPARE_OPS = {"Lt": "<", "LtE": "<=", "Gt": ">", "GtE": ">=", "Eq": "==", "NotEq": "!="}


#: What ``x op w`` is for an unsigned ``x`` and a negative ``w`` (``w op x`` mirrored).
_ABOVE_NEGATIVE = {"<": False, "<=": False, ">": True, ">=": True, "==": False, "!=": True}
_MIRROR = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}


def _compare(op: str, left: ir.Expr, lt: T, right: ir.Expr, rt: T) -> ir.Expr:
    """``left op right`` by value, as NumPy 2 compares: a weak Python int is compared with
    an integer element by its value, not after a cast to the element's type (``uint8 x >
    -1`` is always true; C's ``x > (uint8_t)-1`` is ``x > 255``)."""
    t = binop_type(lt, rt)
    lt_, rt_ = numeric(lt), numeric(rt)
    weak_side = "l" if lt_.weak and not rt_.weak else "r" if rt_.weak and not lt_.weak else None
    if weak_side and not t.is_float and not (lt_.is_float or rt_.is_float):
        (x, xt), (w, wt) = ((right, rt), (left, lt)) if weak_side == "l" else ((left, lt),
                                                                              (right, rt))
        xop = _MIRROR[op] if weak_side == "l" else op  # as "x xop w"
        if numeric(xt).ctype != "uint64_t":  # every other integer type fits in int64
            return ir.BinOp(xop, cast(x, xt, "int64_t"), cast(w, wt, "int64_t"))
        wide = ir.BinOp(xop, x, cast(w, wt, "uint64_t"))
        if isinstance(w, ir.Const):
            return _once_evaluated(x, _ABOVE_NEGATIVE[xop]) if w.value < 0 else wide
        return ir.Ternary(ir.BinOp("<", cast(w, wt, "int64_t"), ir.Const(0, "int64_t")),
                          _once_evaluated(x, _ABOVE_NEGATIVE[xop]), wide)
    return ir.BinOp(op, cast(left, lt, t.ctype), cast(right, rt, t.ctype))


def checked(e: ir.Expr) -> bool:
    """Whether evaluating ``e`` runs a check (sets :data:`UNREP`: Python would raise)."""
    return any(sub == UNREP for sub in e.walk())


def _once_evaluated(x: ir.Expr, value: bool) -> ir.Expr:
    """``value``, a comparison's result that the other operand's sign decides, after
    evaluating the unsigned operand ``x`` all the same when it runs checks: Python
    evaluates every operand it compares, and ``min(t << x, -33)`` of a negative Python
    int ``t`` and a uint64 ``x`` raises (the comparison's constant skipped ``t << x``, and
    the kernel returned -33: F22)."""
    if not checked(x):
        return ir.Const(value, "bool")
    zero = ir.Const(0, "uint64_t")
    if value:  # x >= 0 is true, and || stops there: x is evaluated, the value is true
        return ir.BinOp("||", ir.BinOp(">=", x, zero), ir.Const(True, "bool"))
    return ir.BinOp("&&", ir.BinOp("<", x, zero), ir.Const(False, "bool"))


def compare_chain(items: list[tuple[ir.Expr, T]], ops: list[str]) -> tuple[ir.Expr, T]:
    """``a < b <= c`` as ``(a < b) && (b <= c)``, each pair compared in its common type.

    ``items`` are the typed operands, ``ops`` the C operators between them.
    """
    parts = []
    for (left, lt), (right, rt), op in zip(items, items[1:], ops):
        parts.append(_compare(op, left, lt, right, rt))
    out = parts[0]
    for p in parts[1:]:
        out = ir.BinOp("&&", out, p)
    return out, BOOL


def translate_compare(node, expr, err) -> tuple[ir.Expr, T]:
    """A Python ``Compare`` node (``a < b <= c``) in C: ``expr`` translates an operand
    to ``(ir.Expr, T)``, ``err(node, message)`` makes the front end's error for an
    operator C has no counterpart of (``in``, ``is``)."""
    ops = [COMPARE_OPS.get(type(op).__name__) for op in node.ops]
    if None in ops:
        bad = node.ops[ops.index(None)]
        raise err(node, f"comparison {type(bad).__name__} is not supported")
    return compare_chain([expr(e) for e in (node.left, *node.comparators)], ops)


#: Integer types C promotes to ``int`` before any arithmetic: their results must be
#: narrowed back, or ``int8(100) + int8(100) > 100`` would be true (NumPy: -56).
_NARROW = frozenset({"int8_t", "uint8_t", "int16_t", "uint16_t", "bool"})
_INT_MIN = {"int64_t": -(2**63), "int32_t": -(2**31)}


def _narrowed(e: ir.Expr, t: T) -> ir.Expr:
    return ir.Cast(t.ctype, e) if t.ctype in _NARROW else e


#: Python's int arithmetic is unbounded: on two Python ints (weak ``int64_t``), a result
#: beyond 64 bits sets the UNREP flag (the call then runs as Python) instead of wrapping.
_PY_INT_OVERFLOW = {"+": "asp_py_add", "-": "asp_py_sub", "*": "asp_py_mul"}


def arith(op: str, a: ir.Expr, b: ir.Expr, t: T) -> ir.Expr:
    """``a op b`` for ``+ - * & | ^`` on operands already of type ``t``, wrapping in
    ``t`` as NumPy does; on two Python ints (``t`` weak), as Python does: a result beyond
    64 bits sets the :data:`UNREP` flag."""
    if t.weak and t.ctype == "int64_t" and op in _PY_INT_OVERFLOW:
        return ir.Call(_PY_INT_OVERFLOW[op], (a, b, UNREP))
    return _narrowed(ir.BinOp(op, a, b), t)


def negate(e: ir.Expr, t: T) -> ir.Expr:
    """``-e`` in type ``t`` (``-uint8(5)`` is 251, ``-INT_MIN`` is ``INT_MIN``; of a
    Python int, as Python: ``-(-2**63)`` is beyond 64 bits)."""
    if isinstance(e, ir.Const) and not isinstance(e.value, bool) and (
            t.is_float or (t.ctype in ("int64_t", "int32_t") and e.value != _INT_MIN[t.ctype])):
        return ir.Const(-e.value, t.ctype)
    if t.weak and t.ctype == "int64_t":
        return arith("-", ir.Const(0, "int64_t"), e, t)
    return _narrowed(ir.UnaryOp("-", e), t)


def invert(e: ir.Expr, t: T) -> ir.Expr:
    """``~e`` in integer type ``t``."""
    return _narrowed(ir.UnaryOp("~", e), t)


def absolute(e: ir.Expr, t: T) -> ir.Expr:
    """``abs(e)`` in type ``t``: ``abs(INT_MIN)`` is ``INT_MIN`` as in NumPy; unsigned
    values are their own absolute value; of a Python int, as Python: ``abs(-2**63)`` is
    beyond 64 bits (the call goes to Python)."""
    if t.weak and t.ctype == "int64_t":
        return ir.Ternary(ir.BinOp("<", e, ir.Const(0, "int64_t")), negate(e, t), e)
    if t.is_float:
        return ir.Call("fabs" if t.ctype == "double" else "fabsf", (e,))
    if t.ctype.startswith("uint") or t.is_bool:
        return e
    return ir.Call(f"asp_abs_{SHORT[t.ctype]}", (e,))


#: The flag a checked conversion sets (an ``int *``): code that emits
#: :func:`checked_int` declares it, and reports the call as unrepresentable when set.
UNREP = ir.Var("asp_unrep")

_INT_RANGE = {"int64_t": (-(2.0**63), 2.0**63), "int32_t": (-(2.0**31), 2.0**31),
              "int16_t": (-32768.0, 32768.0), "int8_t": (-128.0, 128.0),
              "uint64_t": (0.0, 2.0**64), "uint32_t": (0.0, 2.0**32),
              "uint16_t": (0.0, 65536.0), "uint8_t": (0.0, 256.0)}


def unrep_flag(body: tuple[ir.Stmt, ...], code: int) -> tuple[ir.Stmt, ...]:
    """``body`` (a kernel function's statements up to its final ``return``) with the
    :data:`UNREP` flag declared before it and, after it, ``return code`` if it was set."""
    return (ir.Declare("int", "asp_unrep_v", ir.Const(0, "int")),
            ir.Declare("int *const", UNREP.name, ir.UnaryOp("&", ir.Var("asp_unrep_v"))),
            *body,
            ir.If(ir.Var("asp_unrep_v"), ir.Block((ir.Return(ir.Const(code, "int32_t")),))))


def checked_int(e: ir.Expr, src: T, dst: str) -> ir.Expr:
    """``e`` (of type ``src``) converted to the integer type ``dst`` as Python converts a
    float to an int: exactly, or not at all.  Python's int is unbounded and ``int(nan)``
    raises; C's conversion of NaN, an infinity or an out-of-range value is undefined.
    A float outside ``dst``'s range sets the :data:`UNREP` flag (and gives 0): the
    caller then runs the call as Python, or raises."""
    if src.ctype == "uint64_t" and dst == "int64_t":  # int(np.uint64(2**64 - 1))
        return ir.Call("asp_ucheck", (e, UNREP))
    if not src.is_float:
        return cast(e, src, dst)
    lo, hi = _INT_RANGE[dst]
    check = ir.Call("asp_fcheck", (cast(e, src, "double"), ir.Const(lo, "double"),
                                   ir.Const(hi, "double"), UNREP))
    return ir.Cast(dst, check)


#: The values each NumPy integer type holds, exactly.
_INT_BOUNDS = {c: (int(lo), int(hi) - 1) for c, (lo, hi) in _INT_RANGE.items()}


def converted(e: ir.Expr, src: T, dst: str) -> ir.Expr:
    """``e`` (of type ``src``) converted to ``dst`` as NumPy 2 converts a Python int that
    meets a NumPy integer type (an operand of arithmetic, ``np.uint8(x)``, a store into an
    integer array): exactly, or not at all: ``np.uint64(5) + (-1)``, ``np.uint8(300)``
    and ``a[i] = 300`` for a ``uint8`` array raise OverflowError, and a value that is a
    uint64 on one path and the Python int -1 on another stays -1 in Python (C's
    conversion wrapped each silently).  A constant that fits converts here; one that
    does not, or a value known only at run time that does not, sets the :data:`UNREP`
    flag where it is converted (the call then runs as Python, which raises or keeps its
    Python int).  Any other conversion is :func:`cast`'s."""
    if src != INT or dst not in _INT_BOUNDS or dst == "int64_t":
        return cast(e, src, dst)
    lo, hi = _INT_BOUNDS[dst]
    if isinstance(e, ir.Const) and not isinstance(e.value, bool | float):
        if lo <= e.value <= hi:
            return cast(e, src, dst)
        return ir.Cast(dst, ir.Call("asp_pyint_out", (UNREP,)))
    return ir.Cast(dst, ir.Call("asp_pyint_in", (e, ir.Const(lo, "int64_t"),
                                                 ir.Const(min(hi, 2**63 - 1), "int64_t"),
                                                 UNREP)))


def stored(e: ir.Expr, src: T, dst: str) -> ir.Expr:
    """``e`` (of type ``src``) stored into an element of a NumPy array of type ``dst``, as
    NumPy 2's ``a[i] = v`` converts it: a float as Python's ``int()`` would
    (:func:`checked_int`), a Python int exactly (:func:`converted`), and a NumPy integer
    exactly too when ``dst`` is signed: ``a[i] = np.int64(40000)`` raises OverflowError
    for an int16 ``a`` (NumPy goes through a Python int), while an unsigned ``a`` takes
    any integer modulo its size (``np.int64(-1)`` is 65535 in a uint16), as C's
    conversion does.  A NumPy integer outside a signed ``dst``'s range sets the
    :data:`UNREP` flag (C's conversion wrapped it silently: F20)."""
    if src.is_float and dst in _INT_BOUNDS:
        return checked_int(e, src, dst)
    if src.weak or src.is_float or src.is_bool or src.ctype not in _INT_BOUNDS \
            or dst not in _INT_BOUNDS or dst.startswith("uint"):
        return converted(e, src, dst)
    if src.ctype == "uint64_t" and dst == "int64_t":
        return ir.Call("asp_ucheck", (e, UNREP))
    lo, hi = _INT_BOUNDS[dst]
    slo, shi = _INT_BOUNDS[src.ctype]
    if lo <= slo and shi <= hi:
        return cast(e, src, dst)
    v = ir.Call("asp_ucheck", (e, UNREP)) if src.ctype == "uint64_t" else cast(e, src, "int64_t")
    return ir.Cast(dst, ir.Call("asp_pyint_in", (v, ir.Const(lo, "int64_t"),
                                                 ir.Const(hi, "int64_t"), UNREP)))


def shift(op: str, a: ir.Expr, b: ir.Expr, t: T) -> ir.Expr:
    """``a << b`` or ``a >> b`` on integers already of type ``t``, with NumPy's rule for
    counts outside ``[0, width)`` (C leaves them undefined)."""
    name = "shl" if op == "<<" else "shr"
    if t.weak and t.ctype == "int64_t":  # Python ints: unbounded, and a negative count raises
        return ir.Call(f"asp_py_{name}", (a, b, UNREP))
    return ir.Call(f"asp_{name}_{SHORT[t.ctype]}", (a, b))


def floordiv(a: ir.Expr, b: ir.Expr, t: T) -> ir.Expr:
    """``a // b`` with Python's flooring, for operands already of type ``t``."""
    fn = "asp_floordiv_f64" if t.is_float else (
        "asp_floordiv_u64" if t.ctype == "uint64_t" else "asp_floordiv_i64")
    return ir.Cast(t.ctype, ir.Call(fn, (a, b)))


def mod(a: ir.Expr, b: ir.Expr, t: T) -> ir.Expr:
    """``a % b`` with the divisor's sign, for operands already of type ``t``."""
    fn = "asp_mod_f64" if t.is_float else (
        "asp_mod_u64" if t.ctype == "uint64_t" else "asp_mod_i64")
    return ir.Cast(t.ctype, ir.Call(fn, (a, b)))
