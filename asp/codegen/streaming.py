"""Streaming (non-temporal) stores: the C that writes one 64-byte output line from a
buffer without reading the line for ownership, and the rule for the size buckets they
do not suit.

A sweep that writes each output element once and never reads it moves a third less
through memory with streaming stores (no read-for-ownership): the stencil
specializer's ``stream`` variants, the elementwise ``stream`` variant.  But a streamed
output bypasses the cache, so a loop whose next step reads the output back reads it
from memory: for outputs that fit in this process's share of L3 those variants are left
out of the tuning (:func:`unsuited_in_cache`).
"""
from __future__ import annotations

import functools
from collections.abc import Callable

from asp import config

__all__ = ["PREAMBLE", "is_streaming", "unsuited_in_cache"]

#: C text, for its ``#if``s: ``asp_line_start_f64/f32(base, row, k)`` (the first index
#: ``>= k`` of ``base + row`` on a 64-byte boundary), ``asp_stream_line_f64/f32(dst,
#: buf)`` (one line from ``buf`` to ``dst``, 64-byte aligned, non-temporal where the
#: compiler targets AVX) and ``asp_sfence()`` (orders a thread's streamed lines; call it
#: on the thread that streamed, before the team's barrier).  GCC gets its own builtins,
#: what the intrinsics of ``<immintrin.h>`` expand to: parsing that header took 0.2 s of
#: every compile (a third of a cold first call); other compilers get the header.
PREAMBLE = r"""
#if defined(__GNUC__) && !defined(__clang__) && defined(__SSE2__)
#define ASP_NT_BUILTINS 1
#elif defined(__SSE2__)
#include <immintrin.h>
#endif
/* Streaming stores of one 64-byte output line from a (register-resident) buffer. */
static inline int64_t asp_line_start_f64(const double *base, int64_t row, int64_t k) {
    /* the first index >= k whose address in the row is 64-byte aligned */
    uintptr_t a = (uintptr_t)(base + row + k);
    return k + (int64_t)(((64 - (a & 63)) & 63) / sizeof(double));
}
static inline int64_t asp_line_start_f32(const float *base, int64_t row, int64_t k) {
    uintptr_t a = (uintptr_t)(base + row + k);
    return k + (int64_t)(((64 - (a & 63)) & 63) / sizeof(float));
}
#if defined(ASP_NT_BUILTINS) && defined(__AVX512F__)
typedef double asp_v8d_u __attribute__((vector_size(64), aligned(1), may_alias));
typedef float asp_v16f_u __attribute__((vector_size(64), aligned(1), may_alias));
#elif defined(ASP_NT_BUILTINS) && defined(__AVX__)
typedef double asp_v4d_u __attribute__((vector_size(32), aligned(1), may_alias));
typedef float asp_v8f_u __attribute__((vector_size(32), aligned(1), may_alias));
#endif
static inline void asp_stream_line_f64(double *dst, const double *buf) {
#if defined(ASP_NT_BUILTINS) && defined(__AVX512F__)
    __builtin_ia32_movntpd512(dst, *(const asp_v8d_u *)buf);
#elif defined(ASP_NT_BUILTINS) && defined(__AVX__)
    __builtin_ia32_movntpd256(dst, *(const asp_v4d_u *)buf);
    __builtin_ia32_movntpd256(dst + 4, *(const asp_v4d_u *)(buf + 4));
#elif defined(__AVX512F__)
    _mm512_stream_pd(dst, _mm512_loadu_pd(buf));
#elif defined(__AVX__)
    _mm256_stream_pd(dst, _mm256_loadu_pd(buf));
    _mm256_stream_pd(dst + 4, _mm256_loadu_pd(buf + 4));
#else
    for (int k = 0; k < 8; ++k) dst[k] = buf[k];
#endif
}
static inline void asp_stream_line_f32(float *dst, const float *buf) {
#if defined(ASP_NT_BUILTINS) && defined(__AVX512F__)
    __builtin_ia32_movntps512(dst, *(const asp_v16f_u *)buf);
#elif defined(ASP_NT_BUILTINS) && defined(__AVX__)
    __builtin_ia32_movntps256(dst, *(const asp_v8f_u *)buf);
    __builtin_ia32_movntps256(dst + 8, *(const asp_v8f_u *)(buf + 8));
#elif defined(__AVX512F__)
    _mm512_stream_ps(dst, _mm512_loadu_ps(buf));
#elif defined(__AVX__)
    _mm256_stream_ps(dst, _mm256_loadu_ps(buf));
    _mm256_stream_ps(dst + 8, _mm256_loadu_ps(buf + 8));
#else
    for (int k = 0; k < 16; ++k) dst[k] = buf[k];
#endif
}
static inline void asp_sfence(void) {
#if defined(ASP_NT_BUILTINS)
    __builtin_ia32_sfence();
#elif defined(__SSE2__)
    _mm_sfence();
#endif
}
"""


def is_streaming(name: str) -> bool:
    """Whether a variant's name says it streams its output (``stream``, ``stream_...``)."""
    return name == "stream" or name.startswith("stream_")


@functools.cache
def unsuited_in_cache(largest: int) -> Callable[[str], str | None] | None:
    """What :attr:`~asp.runtime.Prepared.unsuited` says of a size bucket whose outputs
    are at most ``largest`` bytes: the streaming variants (:func:`is_streaming`) do not
    suit it if that fits in this process's share of L3 (:func:`asp.config.l3_share`).
    Measured as ``u = K(u)`` loops of the 5-point heat step on an AMD EPYC Zen 2 with 16
    MiB of L3: 1024^2 (8 MiB a grid) ``static`` 289 us a step, the streaming variants
    437-701; 256^2 46 against 67-82; 2048^2 (32 MiB) ``stream_jam4`` 1581 against 2134
    for ``static``.  The online tuner, timing calls on one input, had crowned streaming
    variants at 256^2 and 1024^2 in some runs.  (In a loop it times each variant on its
    own output, since a variant's timed calls follow its warm-up calls: the rule guards
    tunings made on one input.)"""
    _, l2, l3 = config.cache_sizes()
    share = config.l3_share(l2, l3)
    if largest > share:
        return None
    why = (f"streaming stores: this size bucket's outputs (at most {largest >> 10} KiB) fit "
           f"in the L3 cache (this process's share: {share >> 10} KiB)")
    return lambda name: why if is_streaming(name) else None
