"""Python's :mod:`math` functions and its division of Python numbers, in C: libm's result
where Python returns one, the :data:`~asp.ir.pyscalar.UNREP` flag where Python raises.

CPython's math module raises where libm's result says the argument was outside the
function's domain or the result outside the range of a float: ``ValueError`` or
``OverflowError`` when the result is a NaN and no argument is, or infinite and every
argument finite (``math.log(0.0)``, ``math.sqrt(-1.0)``, ``math.exp(1000.0)``,
``math.fmod(x, 0.0)``, ``math.hypot(1e308, 1e308)``).  That one rule agrees with CPython
for every function here, argument by argument, on a grid of zeros, signed tiny and huge
values, infinities and NaN (the functions in :data:`ONE` and :data:`TWO`, and
``math.log(x, base)``, which also raises ``ZeroDivisionError`` for a base of 1).  The
compiled code flagged nothing: ``math.log(x)`` gave -inf at ``x = 0`` where the kernel's
Python raises, and the check on random inputs, which held no zero, passed it.

Python numbers (ints and floats, not NumPy's) raise ``ZeroDivisionError`` for a zero
divisor of ``/``, ``//`` and ``%``; NumPy's give inf, NaN or 0.  :func:`divisor` flags a
zero divisor where both operands are Python numbers.

NumPy's functions (``np.log``) never raise: they stay unchecked.
"""
from __future__ import annotations

from asp.ir import platform as ir

__all__ = ["C_NAMES", "NOT_LIBM", "ONE", "PYMATH", "TWO", "divisor", "math_call"]

#: The one- and two-argument functions of :mod:`math` the front ends compile (their names
#: in :mod:`math`; the C function is the same name but for :data:`C_NAMES`).
ONE = ("sqrt", "exp", "log", "log10", "log2", "log1p", "expm1", "sin", "cos", "tan",
       "asin", "acos", "atan", "sinh", "cosh", "tanh", "asinh", "acosh", "atanh", "fabs",
       "erf", "erfc", "exp2", "cbrt", "gamma", "lgamma")
#: ``math.gamma`` is C's ``tgamma``; ``math.lgamma`` is ``lgamma_r``, which keeps the sign
#: of the gamma function to itself where ``lgamma`` writes the global ``signgam`` (a race
#: between OpenMP threads).  CPython computes both itself, not with libm: glibc's
#: results were 1-4 ulps from CPython's on a sample (4e-16 absolute near lgamma's zeros
#: at 1 and 2), and where CPython raises, the one rule above flags (zero and the
#: negative integers, overflow), on the same edge values as the other functions.
C_NAMES = {"gamma": "tgamma", "lgamma": "asp_lgamma"}
#: The functions CPython computes itself: their results are libm's, a few ulps from its.
NOT_LIBM = ("gamma", "lgamma")
TWO = ("atan2", "pow", "hypot", "copysign", "fmod")

PYMATH = r"""
/* Python's math module (asp.ir.pymath): libm's result, and *unrep set where CPython
 * raises: a NaN from arguments that are not, an infinity from finite ones. */
static inline double asp_lgamma(double x) { int sign; return lgamma_r(x, &sign); }
#define ASP_PYMATH1(N, F) static inline double asp_pym_##N(double x, int *unrep) { \
    double r = F(x); \
    if ((isnan(r) && !isnan(x)) || (isinf(r) && isfinite(x))) \
        __atomic_store_n(unrep, 1, __ATOMIC_RELAXED); \
    return r; }
#define ASP_PYMATH2(F) static inline double asp_pym_##F(double x, double y, int *unrep) { \
    double r = F(x, y); \
    if ((isnan(r) && !isnan(x) && !isnan(y)) || (isinf(r) && isfinite(x) && isfinite(y))) \
        __atomic_store_n(unrep, 1, __ATOMIC_RELAXED); \
    return r; }
""" + "".join(f"ASP_PYMATH1({f}, {C_NAMES.get(f, f)})\n" for f in ONE) + "".join(
    f"ASP_PYMATH2({f})\n" for f in TWO) + r"""
/* math.log(x, base): log(x) / log(base), and ZeroDivisionError for a base of 1. */
static inline double asp_pym_logb(double x, double b, int *unrep) {
    double n = asp_pym_log(x, unrep), d = asp_pym_log(b, unrep);
    if (d == 0.0) __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);
    return n / d;
}
/* The divisor of Python numbers: Python raises ZeroDivisionError for zero. */
static inline int64_t asp_py_divisor_i64(int64_t b, int *unrep) {
    if (b == 0) __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);
    return b;
}
static inline double asp_py_divisor_f64(double b, int *unrep) {
    if (b == 0.0) __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);
    return b;
}
"""


def math_call(cname: str, args: tuple[ir.Expr, ...], unrep: ir.Expr) -> ir.Expr:
    """The call of :mod:`math`'s ``cname`` on double ``args``, as Python makes it."""
    if cname == "log" and len(args) == 2:
        return ir.Call("asp_pym_logb", (*args, unrep))
    if cname not in (ONE if len(args) == 1 else TWO):
        raise ValueError(f"internal: math.{cname} with {len(args)} argument(s) is not known")
    return ir.Call(f"asp_pym_{cname}", (*args, unrep))


def divisor(b: ir.Expr, ctype: str, unrep: ir.Expr) -> ir.Expr:
    """``b``, the divisor of Python numbers of C type ``ctype`` (``int64_t`` or ``double``),
    flagged where it is zero (a non-zero constant is left as it is)."""
    if isinstance(b, ir.Const) and b.value != 0:
        return b
    return ir.Call("asp_py_divisor_i64" if ctype == "int64_t" else "asp_py_divisor_f64",
                   (b, unrep))
