"""The variants of a stencil signature: platform passes over the lowered kernel.

Every variant runs the outermost loop of each nest in parallel (only for grids
big enough to pay for an OpenMP team: :func:`asp.passes.serial_below` with
:func:`serial_points`; with a boundary mode the box and the border slabs share
one team, see :mod:`~specializers.stencil.lowering`) and marks the contiguous
innermost loop ``omp simd``.  They differ in

* ``static``: one block of outer iterations per thread (a stencil's work is
  uniform, so dynamic schedules only add overhead);
* ``collapse``: (3-D) the two outer loops shared as one;
* ``tile<N>``: (3-D) cache blocking of the middle axis by
  :func:`asp.passes.tile_loops` (in 2-D three rows fit in cache anyway: blocking
  the columns measured slower here, so it is not offered);
* ``stream``: (2-D, 3-D) each cache line of an output row computed into a
  register-resident buffer and written with one non-temporal store (no
  read-for-ownership of the output), when the kernel writes each output point
  once and never reads it.
"""
from __future__ import annotations

import dataclasses
import functools

from asp import config
from asp.ir import platform as ir
from asp.ir.node import Transformer
from asp.ir.pyscalar import HELPERS
from asp.passes import parallelize_outer, run_pipeline, serial_below, tile_loops

__all__ = ["PREAMBLE", "SERIAL_POINTS", "apply_variant", "serial_points", "variant_specs",
           "vectorize_points"]

#: Python's scalar helpers (``//``, ``%``), index remapping of scipy.ndimage's boundary
#: modes, Python's table indexing, and the streaming row store (AVX non-temporal stores
#: where the compiler targets AVX).
PREAMBLE = HELPERS + r"""
#if defined(__SSE2__)
#include <immintrin.h>
#endif
static inline int64_t asp_nearest(int64_t i, int64_t n) {
    return i < 0 ? 0 : (i >= n ? n - 1 : i);
}
static inline int64_t asp_wrap(int64_t i, int64_t n) {
    if (i >= 0 && i < n) return i;
    i %= n;
    return i < 0 ? i + n : i;
}
static inline int64_t asp_reflect(int64_t i, int64_t n) {
    if (i >= 0 && i < n) return i;
    int64_t p = 2 * n;
    i %= p;
    if (i < 0) i += p;
    return i < n ? i : p - 1 - i;
}
static inline int64_t asp_mirror(int64_t i, int64_t n) {
    if (i >= 0 && i < n) return i;
    if (n == 1) return 0;
    int64_t p = 2 * n - 2;
    i %= p;
    if (i < 0) i += p;
    return i < n ? i : p - i;
}
static inline int64_t asp_index(int64_t i, int64_t n, int *bad) {
    if (i < 0) i += n;
    if (i < 0 || i >= n) { *bad = 1; return 0; }
    return i;
}
/* Linear offsets of a neighbourhood (dim offsets per point) for extents n1, n2. */
static void asp_linear_offsets(int64_t *lin, const int64_t *off, int64_t count, int64_t dim,
                               int64_t n1, int64_t n2) {
    for (int64_t k = 0; k < count; ++k) {
        const int64_t *o = off + k * dim;
        lin[k] = dim == 1 ? o[0] : (dim == 2 ? o[0] * n1 + o[1] : (o[0] * n1 + o[1]) * n2 + o[2]);
    }
}
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
static inline void asp_stream_line_f64(double *dst, const double *buf) {
#if defined(__AVX512F__)
    _mm512_stream_pd(dst, _mm512_loadu_pd(buf));
#elif defined(__AVX__)
    _mm256_stream_pd(dst, _mm256_loadu_pd(buf));
    _mm256_stream_pd(dst + 4, _mm256_loadu_pd(buf + 4));
#else
    for (int k = 0; k < 8; ++k) dst[k] = buf[k];
#endif
}
static inline void asp_stream_line_f32(float *dst, const float *buf) {
#if defined(__AVX512F__)
    _mm512_stream_ps(dst, _mm512_loadu_ps(buf));
#elif defined(__AVX__)
    _mm256_stream_ps(dst, _mm256_loadu_ps(buf));
    _mm256_stream_ps(dst + 8, _mm256_loadu_ps(buf + 8));
#else
    for (int k = 0; k < 16; ++k) dst[k] = buf[k];
#endif
}
static inline void asp_sfence(void) {
#if defined(__SSE2__)
    _mm_sfence();
#endif
}
"""

#: Below this many points a call runs on one thread (a team costs microseconds).
SERIAL_POINTS = 32768


def serial_points() -> int:
    """The point count a grid must exceed to run on an OpenMP team: ``ASP_PARALLEL_THRESHOLD``
    if set (the test suite sets 0, so small grids run the parallel branch), else
    :data:`SERIAL_POINTS`.  Read at planning time: the value is baked into the C."""
    return config.parallel_threshold(SERIAL_POINTS)


def variant_specs(dim: int, streaming_ok: bool) -> list[tuple[str, dict]]:
    """(name, options) of the variants for a ``dim``-dimensional kernel."""
    out: list[tuple[str, dict]] = [("static", {})]
    if dim == 3:
        out += [("collapse", {"collapse": 2}), ("tile8", {"tile": (None, 8)}),
                ("tile32", {"tile": (None, 32)})]
    if streaming_ok and dim >= 2:
        out.append(("stream", {"streaming": True}))
        out.append(("stream_jam4", {"streaming": True, "jam": 4}))
    return out


def vectorize_points(fn: ir.Function, *, var: str) -> ir.Function:
    """Mark the innermost *point* loops (``var``, the contiguous axis) ``omp simd``.

    Unlike :func:`asp.passes.vectorize_inner` this leaves a neighbour loop that
    stayed a loop alone: it carries the accumulation from one offset to the next.
    Before: ``for (asp_i1 ...) out[...] = ...;``  After: ``#pragma omp simd`` above it.
    """
    class Simd(Transformer):
        def visit_For(self, node: ir.For):
            node = self.generic_visit(node)
            if node.var == var and not any(isinstance(n, ir.For | ir.While)
                                           for n in node.body.walk()):
                return dataclasses.replace(node, simd=True)
            return node

    return dataclasses.replace(fn, body=Simd().visit(fn.body))


def apply_variant(fn: ir.Function, options: dict, size: ir.Expr, title: str,
                  dim: int) -> ir.Function:
    """The platform passes of one variant, as a readable pipeline."""
    schedule, chunk = options.get("schedule", ("static", None))
    passes = []
    if options.get("tile"):
        passes.append(functools.partial(tile_loops, sizes=options["tile"]))
    passes += [
        functools.partial(parallelize_outer, schedule=schedule, chunk=chunk,
                          collapse=options.get("collapse", 1)),
        functools.partial(vectorize_points, var=f"asp_i{dim - 1}"),
        functools.partial(serial_below, when=ir.BinOp(">", size, ir.Const(serial_points(),
                                                                           "int64_t"))),
    ]
    return run_pipeline(fn, passes, title=title)
