"""C for ``x ** 3`` and ``x ** 4`` on floats, rounded once as ``pow`` rounds them.

``x * x * x`` rounds twice (1 ulp off ``pow``, which a later ``x % y`` turns into
anything), so the front ends call ``asp_pow3`` / ``asp_pow4`` (:data:`POWERS`, part of
:data:`asp.ir.pyscalar.HELPERS`): the product, plus the rounding errors of its factors
carried exactly, rounded once.

Two forms of the same arithmetic, the same bits:

* ``asp_pow3`` (inline): Dekker's exact products, with ``x`` scaled by a power of two
  into the range where they hold (and the result scaled back); an infinite or zero
  product is the result itself.  No ``fma``: asp compiles with ``-frounding-math``, under
  which gcc takes ``fma()`` for a call that reads the FP environment and vectorizes no
  loop that calls it.  Branch-free, so gcc vectorizes it with the code around it, under
  a condition too.
* ``asp_pow3_simd`` (:func:`simd_powers`; GCC targeting x86-64 with AVX2 and FMA, OpenMP
  on; elsewhere the inline form under this name): declared ``#pragma omp declare simd``,
  with the vector versions the vectorizer calls (the x86 vector function ABI's
  ``_ZGV<isa>N<lanes>v_`` names, for SSE, AVX, AVX2 and AVX-512) written here with the FMA
  instructions: ``fma(a, b, -a * b)`` is the product's rounding error exactly, as
  Dekker's split computes it, in one instruction.  Where every lane's ``|x|`` lies in the
  range where no product or error term overflows or underflows (``[2^-300, 2^300]`` for
  the cube, ``[2^-200, 2^200]`` for the fourth power: there the inline form scales by 1)
  the same formula gives the same bits; other lanes (zeros, subnormals, huge values,
  infinities, NaN) take the inline form, lane by lane.  gcc 12 calls a vector version
  only where the call is unconditional (no masked versions are called before gcc 14), and
  leaves a loop with a conditional call scalar: :func:`asp.passes.simd_calls` renames the
  unconditional calls only.  The vectors are GCC's vector extensions and builtins, not
  ``<immintrin.h>`` (parsing it costs 0.2 s of every compile, see
  :mod:`asp.codegen.streaming`); compiling one costs about 0.05 s, so code includes only
  those it calls.

On an Intel Xeon (AVX-512, 2 threads), poly's ``3 * x**3 + 2 * x**2 + x + 1`` over 10M
float64: 6.8-7.0 ms against 11.8 with the inline form (its Dekker products are ~30 of the
loop's 54 instructions a vector); in a C loop alone 4.4-5.6 ms against 8.7-9.3.
"""
from __future__ import annotations

import string
from collections.abc import Iterable

__all__ = ["POWERS", "simd_powers"]

POWERS = r"""
/* x ** 3 and x ** 4 rounded once (asp.ir.powers).  Dekker's product gives each product's
 * rounding error exactly (round to nearest, no overflow or underflow), so x is scaled by
 * a power of two into the range where that holds (exact), and the result scaled back
 * (exact unless it is subnormal: then it may be 1 ulp off; glibc's pow is not correctly
 * rounded either, and differs from this in about 1 case in 1200 of the normal range).
 * An infinite or zero product is the result itself (an infinite one has no error term). */
static inline double asp_mul_err(double a, double b, double p) {
    double ca = 134217729.0 * a, ah = ca - (ca - a), al = a - ah;
    double cb = 134217729.0 * b, bh = cb - (cb - b), bl = b - bh;
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl;
}
static inline double asp_pow3(double x) {
    double ax = fabs(x);
    double in = ax > 0x1p300 ? 0x1p-300 : ax < 0x1p-300 ? 0x1p300 : 1.0;
    double out = ax > 0x1p300 ? 0x1p900 : ax < 0x1p-300 ? 0x1p-900 : 1.0;
    double y = x * in, p = y * y, e = asp_mul_err(y, y, p);
    double c = p * y, r = c + (asp_mul_err(p, y, c) + e * y);
    return (isfinite(c) && c != 0.0 ? r : c) * out;
}
static inline double asp_pow4(double x) {
    double ax = fabs(x);
    double in = ax > 0x1p200 ? 0x1p-200 : ax < 0x1p-200 ? 0x1p200 : 1.0;
    double out = ax > 0x1p200 ? 0x1p800 : ax < 0x1p-200 ? 0x1p-800 : 1.0;
    double y = x * in, p = y * y, e = asp_mul_err(y, y, p);
    double q = p * p, r = q + (2.0 * p * e + asp_mul_err(p, p, q));
    return (isfinite(q) && q != 0.0 ? r : q) * out;
}
"""

#: The vector forms' common part (see :func:`simd_powers`).
_SIMD_PRELUDE = r"""
#if defined(_OPENMP) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) \
    && defined(__AVX2__) && defined(__FMA__)
/* Vectorized loops call the vector versions of asp_pow<n>_simd (the x86 vector function
 * ABI's names): the scalar form's formula with fma for the error terms, where every lane
 * is in the range where the scalar form scales by 1; the scalar form for the lanes that
 * are not (asp.ir.powers). */
#define ASP_POW_SIMD 1
#define ASP_POW_VIS __attribute__((visibility("hidden")))
typedef double asp_pow_d2 __attribute__((vector_size(16)));
typedef double asp_pow_d4 __attribute__((vector_size(32)));
typedef long long asp_pow_k4 __attribute__((vector_size(32)));
#define ASP_POW_FMS4(a, b, c) __builtin_ia32_vfmsubpd256((a), (b), (c))
#ifdef __AVX512F__
typedef double asp_pow_d8 __attribute__((vector_size(64)));
typedef long long asp_pow_k8 __attribute__((vector_size(64)));
#define ASP_POW_FMS8(a, b, c) __builtin_ia32_vfmsubpd512_mask((a), (b), (c), (unsigned char)-1, 4)
#endif
/* The lanes outside the vector form's range: the scalar form (rare; out of line). */
static __attribute__((noinline, cold)) void asp_pow_lanes(
        const double *x, double *r, const long long *in, int n, double (*scalar)(double)) {
    for (int i = 0; i < n; ++i)
        if (!in[i]) r[i] = scalar(x[i]);
}
#endif
"""

#: One power's vector form: ``$n`` the exponent, ``$lim`` the exponent of two that bounds
#: the range where the scalar form scales by 1, ``$formula`` its arithmetic on the vector
#: ``x`` (``FMS(a, b, c)``: ``a * b - c`` rounded once).
_SIMD_FORM = string.Template(r"""
#ifdef ASP_POW_SIMD
#pragma omp declare simd notinbranch
ASP_POW_VIS double asp_pow${n}_simd(double x) __attribute__((const));
ASP_POW_VIS double asp_pow${n}_one(double x) __asm__("asp_pow${n}_simd");
ASP_POW_VIS double asp_pow${n}_one(double x) { return asp_pow${n}(x); }
#define ASP_POW${n}_VECTOR(N, FMS) \
static __attribute__((noinline)) asp_pow_d##N asp_pow${n}_v##N(asp_pow_d##N x) { \
    asp_pow_d##N ax = (asp_pow_d##N)((asp_pow_k##N)x & 0x7fffffffffffffffLL); \
    asp_pow_k##N in = (ax >= 0x1p-${lim}) & (ax <= 0x1p${lim}); \
    ${formula} \
    long long all = -1; \
    for (int i = 0; i < N; ++i) all &= in[i]; \
    if (__builtin_expect(!all, 0)) \
        asp_pow_lanes((const double *)&x, (double *)&r, (const long long *)&in, N, \
                      asp_pow${n}_one); \
    return r; \
}
ASP_POW${n}_VECTOR(4, ASP_POW_FMS4)
/* SSE (2 lanes, each twice in a 4-lane vector), AVX and AVX2 (4 lanes), AVX-512 (8). */
ASP_POW_VIS asp_pow_d2 _ZGVbN2v_asp_pow${n}_simd(asp_pow_d2 x) {
    asp_pow_d4 r = asp_pow${n}_v4((asp_pow_d4){x[0], x[1], x[0], x[1]});
    return (asp_pow_d2){r[0], r[1]};
}
ASP_POW_VIS asp_pow_d4 _ZGVcN4v_asp_pow${n}_simd(asp_pow_d4 x) { return asp_pow${n}_v4(x); }
ASP_POW_VIS asp_pow_d4 _ZGVdN4v_asp_pow${n}_simd(asp_pow_d4 x) { return asp_pow${n}_v4(x); }
#ifdef __AVX512F__
ASP_POW${n}_VECTOR(8, ASP_POW_FMS8)
ASP_POW_VIS asp_pow_d8 _ZGVeN8v_asp_pow${n}_simd(asp_pow_d8 x) { return asp_pow${n}_v8(x); }
#endif
#else
static inline double asp_pow${n}_simd(double x) { return asp_pow${n}(x); }
#endif
""")

_FORMULAS = {
    3: (300, "asp_pow_d##N p = x * x, c = p * x, e = FMS(x, x, p); \\\n"
             "    asp_pow_d##N r = c + (FMS(p, x, c) + e * x);"),
    4: (200, "asp_pow_d##N p = x * x, c = p * p, e = FMS(x, x, p); \\\n"
             "    asp_pow_d##N r = c + ((2.0 * p) * e + FMS(p, p, c));"),
}


def simd_powers(called: Iterable[str]) -> str:
    """The C of the vector forms among ``called`` (``asp_pow3_simd``, ``asp_pow4_simd``:
    :func:`asp.passes.simd_forms_called`), to follow :data:`POWERS` in code that calls
    them; empty if none.  Compiling one costs about 0.05 s, so code has only those it
    calls."""
    forms = [n for n in sorted(_FORMULAS) if f"asp_pow{n}_simd" in set(called)]
    if not forms:
        return ""
    return _SIMD_PRELUDE + "".join(
        _SIMD_FORM.substitute(n=n, lim=_FORMULAS[n][0], formula=_FORMULAS[n][1])
        for n in forms)
