"""The C helpers that :mod:`asp.ir.pyscalar`'s translations call: Python's and NumPy's
integer floor division and modulo, float modulo and floor division, the checks that flag
a call for Python (``*unrep``: a Python int beyond 64 bits, a float that no integer type
holds, ``**``'s and ``math``'s errors), and NumPy's shifts and ``abs`` per integer type.

Every compiled kernel's preamble holds them (``static inline``: what a kernel does not
call costs nothing at run time).
"""
from __future__ import annotations

from asp.ir.powers import POWERS
from asp.ir.pymath import PYMATH

__all__ = ["HELPERS", "SHORT"]

#: The suffix of a helper's name per integer type (``asp_shl_i16``).
SHORT = {"int8_t": "i8", "int16_t": "i16", "int32_t": "i32", "int64_t": "i64",
          "uint8_t": "u8", "uint16_t": "u16", "uint32_t": "u32", "uint64_t": "u64"}


def _integer_helpers() -> str:
    """Shifts and ``abs`` per integer type, as NumPy computes them."""
    out = []
    for ctype, short in SHORT.items():
        signed = not ctype.startswith("u")
        u = "u" + ctype if signed else ctype
        bits = int(short[1:])
        beyond = "(a < 0 ? -1 : 0)" if signed else "0"
        out.append(
            f"static inline {ctype} asp_shl_{short}({ctype} a, {ctype} b) {{\n"
            f"    return ({u})b < {bits}u ? ({ctype})(({u})a << ({u})b) : ({ctype})0;\n}}\n"
            f"static inline {ctype} asp_shr_{short}({ctype} a, {ctype} b) {{\n"
            f"    return ({u})b < {bits}u ? ({ctype})(a >> b) : ({ctype}){beyond};\n}}")
        if signed:
            # NumPy's abs wraps at the minimum (abs(int16(-32768)) is -32768).  Not
            # written as a < 0 ? -a : a: gcc 12 vectorizes that for 8- and 16-bit types in
            # wider lanes, where the minimum's abs is positive (abs(x) < 1 came out False
            # at -32768; the fuzzer's seed 120412).  The sign mask flips and adds one.
            out.append(f"static inline {ctype} asp_abs_{short}({ctype} a) {{\n"
                       f"    {u} m = ({u})0 - ({u})(a < 0);\n"
                       f"    return ({ctype})((({u})a ^ m) - m);\n}}")
    return "\n".join(out) + "\n"


#: C helpers for Python's integer floor division and modulo and float modulo, and
#: NumPy's shifts and ``abs``.  NumPy's integer ``x // 0`` and ``x % 0`` are 0, and
#: ``INT64_MIN // -1`` wraps to ``INT64_MIN`` (C traps: SIGFPE).
HELPERS = r"""
static inline int64_t asp_floordiv_i64(int64_t a, int64_t b) {
    if (b == 0) return 0;
    if (b == -1) return (int64_t)(0 - (uint64_t)a);
    int64_t q = a / b;
    if ((a % b != 0) && ((a < 0) != (b < 0))) q -= 1;
    return q;
}
static inline int64_t asp_mod_i64(int64_t a, int64_t b) {
    if (b == 0 || b == -1) return 0;
    int64_t r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
}
/* A float about to become an integer: itself when its truncation lies in [lo, hi), else
 * 0 with *unrep set (NaN and infinities fail both tests).  Several threads may set it. */
static inline double asp_fcheck(double x, double lo, double hi, int *unrep) {
    if (x > lo - 1.0 && x < hi) return x;
    __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);
    return 0.0;
}
/* Python's float ** float: pow(), unless Python's result is complex (a negative base, a
 * finite fractional exponent), or it raises (0.0 to a negative power, an overflow). */
static inline double asp_py_fpow(double a, double b, int *unrep) {
    double r = pow(a, b);
    if ((a < 0.0 && isfinite(b) && b != floor(b)) || (a == 0.0 && b < 0.0)
            || (isinf(r) && isfinite(a) && isfinite(b)))
        __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);
    return r;
}
/* int() of a uint64: a Python int, which int64 holds only up to INT64_MAX. */
static inline int64_t asp_ucheck(uint64_t x, int *unrep) {
    if (x <= (uint64_t)INT64_MAX) return (int64_t)x;
    __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);
    return 0;
}
/* A Python int meeting a NumPy integer type: itself if that type holds it (in [lo, hi]),
 * else *unrep is set (NumPy raises OverflowError, or Python keeps its int). */
static inline int64_t asp_pyint_in(int64_t x, int64_t lo, int64_t hi, int *unrep) {
    if (x < lo || x > hi) __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);
    return x;
}
static inline int64_t asp_pyint_out(int *unrep) {
    __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);
    return 0;
}
/* Python ints: a result beyond 64 bits flags the call (*unrep) for Python to redo. */
static inline int64_t asp_py_add(int64_t a, int64_t b, int *unrep) {
    int64_t r;
    if (__builtin_add_overflow(a, b, &r)) __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);
    return r;
}
static inline int64_t asp_py_sub(int64_t a, int64_t b, int *unrep) {
    int64_t r;
    if (__builtin_sub_overflow(a, b, &r)) __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);
    return r;
}
static inline int64_t asp_py_mul(int64_t a, int64_t b, int *unrep) {
    int64_t r;
    if (__builtin_mul_overflow(a, b, &r)) __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);
    return r;
}
static inline int64_t asp_py_shl(int64_t a, int64_t b, int *unrep) {
    if (a == 0 && b >= 0) return 0;
    if (b < 0 || b >= 63 || (a >> (63 - b)) != (a < 0 ? -1 : 0)) {
        __atomic_store_n(unrep, 1, __ATOMIC_RELAXED);  /* beyond 64 bits, or ValueError */
        return 0;
    }
    return (int64_t)((uint64_t)a << b);
}
static inline int64_t asp_py_shr(int64_t a, int64_t b, int *unrep) {
    if (b < 0) { __atomic_store_n(unrep, 1, __ATOMIC_RELAXED); return 0; }
    return b >= 64 ? (a < 0 ? -1 : 0) : a >> b;
}
static inline uint64_t asp_floordiv_u64(uint64_t a, uint64_t b) { return b ? a / b : 0; }
static inline uint64_t asp_mod_u64(uint64_t a, uint64_t b) { return b ? a % b : 0; }
static inline int64_t asp_range_len(int64_t start, int64_t stop, int64_t step) {
    if (step > 0) return stop > start ? (stop - start + step - 1) / step : 0;
    if (step < 0) return start > stop ? (start - stop - step - 1) / (-step) : 0;
    return 0;
}
static inline double asp_mod_f64(double a, double b) {
    double r = fmod(a, b);
    if (r != 0.0 && ((r < 0.0) != (b < 0.0))) r += b;
    else if (r == 0.0) r = copysign(0.0, b);
    return r;
}
/* Python's float floor division (and NumPy's): floor(a / b) rounds a / b first and
 * is wrong by one when the quotient lands on an integer, e.g. 1.0 // 0.1 == 9.0. */
static inline double asp_floordiv_f64(double a, double b) {
    if (b == 0.0) return a / b;
    double mod = fmod(a, b);
    double div = (a - mod) / b;
    if (mod != 0.0 && ((b < 0.0) != (mod < 0.0))) div -= 1.0;
    if (div == 0.0) return copysign(0.0, a / b);
    double q = floor(div);
    if (div - q > 0.5) q += 1.0;
    return q;
}
""" + POWERS + PYMATH + _integer_helpers()
