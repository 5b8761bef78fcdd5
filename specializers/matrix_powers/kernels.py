"""Generated C/OpenMP for the matrix-powers kernel and the fused CG kernels.

One module of C is rendered (Mako) per (value type, index type) and compiled
through :func:`asp.jit.build` into asp's disk cache; every entry uses asp's
kernel ABI and is wrapped by :func:`asp.runtime.make_entry`, so the guards
(dtype, ndim, contiguity, writeability) are checked in C and the GIL is
released while a kernel runs.  Symbol names depend only on the types, so the
source, and with it the cache key, is stable.

Three ways to fill ``V[1..L]`` with ``V[l] = g_l (A - t_l I) V[l-1]``:

* ``naive``: L parallel CSR SpMVs, the matrix streamed from memory L times.
* ``pa1``: the PA1 algorithm.  Rows are cut into cache-sized blocks; each
  block computes levels 1..L-1 on its precomputed ghost zone (row runs) into a
  thread-private scratch, redundantly with its neighbours, then level L on its
  own rows.  No communication between blocks, so any sparsity works.
* ``window``: for banded matrices.  Each thread sweeps its row chunk once,
  level l trailing level l-1 by the upper bandwidth, so the rows of A that a
  level needs are still in cache from the level before: A is read from memory
  once for all L levels.  The few rows near chunk seams that need the
  neighbour's values are filled in afterwards, level by level; nothing is
  computed twice.  ``window2`` sweeps two bases at once (s-step CG's p and r).

The s-step solver's Gram matrix and recovery are generated per basis size
(:func:`sstep_kernels`), so every sum is written out and vectorizes.

Each stage (render, build, load) raises a :class:`asp.errors.SpecializationError`
naming the kernel and the stage, whatever went wrong inside it (an ``OSError``
from a read-only or full cache becomes a ``CompileError``); callers turn it into
one fallback warning (:mod:`specializers.matrix_powers.fallback`).  Without
``-fopenmp`` (a serial ``ASP_CFLAGS``) the OpenMP calls have one-thread stand-ins.
"""
from __future__ import annotations

import functools

import numpy as np
from mako.template import Template

from asp.errors import CompileError, LoadError
from asp.jit import build
from asp.runtime import ArgSpec, make_entry
from specializers.matrix_powers.fallback import RenderError, stage

__all__ = ["INDEX_TYPES", "VALUE_TYPES", "kernels", "sstep_kernels"]

VALUE_TYPES = {np.dtype(np.float64): "double", np.dtype(np.float32): "float"}
INDEX_TYPES = {np.dtype(np.int32): "int32_t", np.dtype(np.int64): "int64_t"}

_SOURCE = Template(r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifdef _OPENMP
#include <omp.h>
#else
/* A serial build (ASP_CFLAGS without -fopenmp): the pragmas are ignored, one thread. */
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#endif

/* Below this many rows a kernel runs on one thread: a team's barriers cost more. */
#define ASP_PAR_MIN 20000

typedef ${vt} vt;
typedef ${it} it;

/* The matrix: CSR, plus (when ND > 0) runs of consecutive rows whose entries lie
   exactly on the ND diagonals off[] in that order: there the column indices need
   not be read and the loop over rows vectorizes. */
typedef struct {
    const it *ptr; const it *idx; const vt *val;
    const int64_t *runs; int64_t nruns; const int64_t *off; int64_t nd;
} mat_t;

/* One row of (A - t I) src, scaled by g; src is indexed by global row minus off. */
static inline vt row_apply(const it *restrict ptr, const it *restrict idx,
                           const vt *restrict val, const vt *restrict src,
                           int64_t off, int64_t r, vt t, vt g)
{
    vt acc = 0;
    const it end = ptr[r + 1];
    for (it j = ptr[r]; j < end; ++j)
        acc += val[j] * src[idx[j] - off];
    return (acc - t * src[r - off]) * g;
}

static void csr_rows(const mat_t *A, const vt *restrict src, int64_t soff,
                     vt *restrict dst, int64_t doff, int64_t a, int64_t b, vt t, vt g)
{
    for (int64_t r = a; r < b; ++r)
        dst[r - doff] = row_apply(A->ptr, A->idx, A->val, src, soff, r, t, g);
}

% if nd > 0:
static void diag_rows(const mat_t *A, const vt *restrict src, int64_t soff,
                      vt *restrict dst, int64_t doff, int64_t a, int64_t b, vt t, vt g)
{
    const vt *restrict v = A->val + A->ptr[a];
    const vt *restrict s = src - soff;
    vt *restrict d = dst - doff;
% for j in range(nd):
    const int64_t o${j} = A->off[${j}];
% endfor
    /* the row stride is read at run time: GCC vectorizes a variable stride with
       strided loads, but gives up on the constant stride-5 load group */
    const int64_t w = A->nd;
    const int64_t m = b - a;
    #pragma omp simd
    for (int64_t i = 0; i < m; ++i) {
        const int64_t r = a + i;
        const vt acc = ${" + ".join(f"v[w * i + {j}] * s[r + o{j}]" for j in range(nd))};
        d[r] = (acc - t * s[r]) * g;
    }
}
% endif

/* Rows [a, b) of dst = g (A - t I) src, by diagonal runs where there are any. */
static void rows_apply(const mat_t *A, const vt *src, int64_t soff, vt *dst, int64_t doff,
                       int64_t a, int64_t b, vt t, vt g)
{
% if nd > 0:
    int64_t lo = 0, hi = A->nruns;
    while (lo < hi) {  /* first run that ends after a */
        const int64_t mid = (lo + hi) / 2;
        if (A->runs[2 * mid + 1] <= a) lo = mid + 1; else hi = mid;
    }
    for (int64_t q = lo; q < A->nruns && a < b; ++q) {
        const int64_t rs = A->runs[2 * q], re = A->runs[2 * q + 1];
        if (rs >= b) break;
        if (a < rs) { csr_rows(A, src, soff, dst, doff, a, rs, t, g); a = rs; }
        const int64_t e = re < b ? re : b;
        diag_rows(A, src, soff, dst, doff, a, e, t, g);
        a = e;
    }
% endif
    if (a < b) csr_rows(A, src, soff, dst, doff, a, b, t, g);
}

#define MAT_ARGS \
    const mat_t M = {ptrs[0], ptrs[1], ptrs[2], ptrs[3], dims[3] / 2, ptrs[4], dims[4]}; \
    const mat_t *A = &M;

/* Pure CSR, one level after another: the baseline the others must beat. */
int ${sym}_naive(void **ptrs, const int64_t *dims, const double *f, const int64_t *iv)
{
    const it *ptr = ptrs[0]; const it *idx = ptrs[1]; const vt *val = ptrs[2];
    vt *V = ptrs[5]; const double *th = ptrs[6]; const double *ga = ptrs[7];
    const int64_t L = dims[5] - 1, n = dims[6];
    (void)f; (void)iv;
    #pragma omp parallel if(n > ASP_PAR_MIN)
    for (int64_t l = 1; l <= L; ++l) {
        const vt *src = V + (l - 1) * n;
        vt *dst = V + l * n;
        const vt t = (vt)th[l - 1], g = (vt)ga[l - 1];
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < n; ++r)
            dst[r] = row_apply(ptr, idx, val, src, 0, r, t, g);
    }
    return 0;
}

int ${sym}_pa1(void **ptrs, const int64_t *dims, const double *f, const int64_t *iv)
{
    MAT_ARGS
    vt *V = ptrs[5]; const double *th = ptrs[6]; const double *ga = ptrs[7];
    const int64_t *blk = ptrs[8], *runptr = ptrs[9], *runs = ptrs[10], *base = ptrs[11];
    const int64_t L = dims[5] - 1, n = dims[6], nb = dims[9] - 1;
    const int64_t K = iv[0], span = iv[1], o = K - L;
    int err = 0;
    (void)f;
    #pragma omp parallel if(n > ASP_PAR_MIN)
    {
        vt *W = L > 1 ? malloc(sizeof(vt) * (size_t)(L - 1) * (size_t)span) : NULL;
        if (L > 1 && W == NULL) {
            #pragma omp atomic write
            err = 1;
        }
        #pragma omp barrier
        if (!err) {
            #pragma omp for schedule(dynamic, 1)
            for (int64_t b = 0; b < nb; ++b) {
                const int64_t lo = blk[b], hi = blk[b + 1], bs = base[b];
                for (int64_t l = 1; l <= L; ++l) {
                    const vt *src = l == 1 ? V : W + (l - 2) * span;
                    const int64_t soff = l == 1 ? 0 : bs;
                    const vt t = (vt)th[l - 1], g = (vt)ga[l - 1];
                    if (l == L) {
                        rows_apply(A, src, soff, V + l * n, 0, lo, hi, t, g);
                        continue;
                    }
                    vt *w = W + (l - 1) * span;
                    const int64_t j = b * (K - 1) + (l + o - 1);
                    for (int64_t q = runptr[j]; q < runptr[j + 1]; ++q)
                        rows_apply(A, src, soff, w, bs, runs[2 * q], runs[2 * q + 1], t, g);
                    memcpy(V + l * n + lo, w + (lo - bs), sizeof(vt) * (size_t)(hi - lo));
                }
            }
        }
        free(W);
    }
    return err;
}

<%def name="window_kernel(name, two)">\
int ${sym}_${name}(void **ptrs, const int64_t *dims, const double *f, const int64_t *iv)
{
    MAT_ARGS
    vt *V = ptrs[5]; const double *th = ptrs[6]; const double *ga = ptrs[7];
% if two:
    vt *V2 = ptrs[8]; const int64_t *ch = ptrs[9];
    const int64_t L = dims[5] - 1, n = dims[6], L2 = dims[9] - 1, T = dims[11] - 1;
% else:
    const int64_t *ch = ptrs[8];
    const int64_t L = dims[5] - 1, n = dims[6], T = dims[9] - 1;
% endif
    const int64_t bl = iv[0], bu = iv[1], step = iv[2];
    (void)f;
    #pragma omp parallel if(T > 1)
    {
        /* more chunks than threads, taken dynamically: a thread the OS holds back
           on a shared machine leaves its chunks to the others */
        #pragma omp for schedule(dynamic, 1)
        for (int64_t c = 0; c < T; ++c) {
            const int64_t lo = ch[c], hi = ch[c + 1];
            int64_t done[L + 1], stop[L + 1];
            for (int64_t l = 1; l <= L; ++l) {
                done[l] = lo == 0 ? 0 : lo + (l - 1) * bl;
                stop[l] = hi == n ? n : hi - (l - 1) * bu;
            }
            /* Level l trails level l-1 by bu rows: its inputs were just written. */
            for (int64_t p = lo + step;; p += step) {
                int more = 0;
                for (int64_t l = 1; l <= L; ++l) {
                    int64_t e = p - (l - 1) * bu;
                    if (e > stop[l]) e = stop[l];
                    if (e > done[l]) {
                        rows_apply(A, V + (l - 1) * n, 0, V + l * n, 0, done[l], e,
                                   (vt)th[l - 1], (vt)ga[l - 1]);
% if two:
                        if (l <= L2)  /* the same rows of A, still in cache */
                            rows_apply(A, V2 + (l - 1) * n, 0, V2 + l * n, 0, done[l], e,
                                       (vt)th[l - 1], (vt)ga[l - 1]);
% endif
                        done[l] = e;
                    }
                    more |= done[l] < stop[l];
                }
                if (!more) break;
            }
        }
        /* The seams between chunks, level by level: each needs both sides' level l-1. */
        #pragma omp for schedule(static, 1)
        for (int64_t c = 1; c < T; ++c) {
            const int64_t m = ch[c];
            for (int64_t l = 2; l <= L; ++l) {
                rows_apply(A, V + (l - 1) * n, 0, V + l * n, 0, m - (l - 1) * bu,
                           m + (l - 1) * bl, (vt)th[l - 1], (vt)ga[l - 1]);
% if two:
                if (l <= L2)
                    rows_apply(A, V2 + (l - 1) * n, 0, V2 + l * n, 0, m - (l - 1) * bu,
                               m + (l - 1) * bl, (vt)th[l - 1], (vt)ga[l - 1]);
% endif
            }
        }
    }
    return 0;
}
</%def>
${window_kernel("window", False)}
/* Two bases in one sweep (s-step CG's p and r bases): A is streamed once for both. */
${window_kernel("window2", True)}

% if cg:
/* Rows of one thread's static share of [0, n). */
static inline void share(int64_t n, int64_t *a, int64_t *b)
{
    const int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
    *a = n * t / T;
    *b = n * (t + 1) / T;
}

/* q = A p; out[0] = p.q */
int ${sym}_cg_spmv(void **ptrs, const int64_t *dims, const double *f, const int64_t *iv)
{
    MAT_ARGS
    const vt *p = ptrs[5]; vt *q = ptrs[6]; double *out = ptrs[7];
    const int64_t n = dims[5];
    double pq = 0;
    (void)f; (void)iv;
    #pragma omp parallel reduction(+:pq) if(n > ASP_PAR_MIN)
    {
        int64_t a, b;
        share(n, &a, &b);
        rows_apply(A, p, 0, q, 0, a, b, 0, 1);
        #pragma omp simd reduction(+:pq)
        for (int64_t r = a; r < b; ++r)
            pq += p[r] * q[r];
    }
    out[0] = pq;
    return 0;
}

/* x += a p; r -= a q; out[0] = r.r */
int ${sym}_cg_update(void **ptrs, const int64_t *dims, const double *f, const int64_t *iv)
{
    vt *x = ptrs[0]; vt *r = ptrs[1]; const vt *p = ptrs[2]; const vt *q = ptrs[3];
    double *out = ptrs[4];
    const int64_t n = dims[0];
    const vt a = f[0];
    double rr = 0;
    (void)iv;
    #pragma omp parallel for simd schedule(static) reduction(+:rr) if(n > ASP_PAR_MIN)
    for (int64_t i = 0; i < n; ++i) {
        x[i] += a * p[i];
        const vt ri = r[i] - a * q[i];
        r[i] = ri;
        rr += ri * ri;
    }
    out[0] = rr;
    return 0;
}

/* p = r + b p */
int ${sym}_cg_direction(void **ptrs, const int64_t *dims, const double *f, const int64_t *iv)
{
    vt *p = ptrs[0]; const vt *r = ptrs[1];
    const int64_t n = dims[0];
    const vt b = f[0];
    (void)iv;
    #pragma omp parallel for simd schedule(static) if(n > ASP_PAR_MIN)
    for (int64_t i = 0; i < n; ++i)
        p[i] = r[i] + b * p[i];
    return 0;
}

/* r = b - A x; out[0] = r.r */
int ${sym}_residual(void **ptrs, const int64_t *dims, const double *f, const int64_t *iv)
{
    MAT_ARGS
    const vt *x = ptrs[5]; const vt *b = ptrs[6]; vt *r = ptrs[7]; double *out = ptrs[8];
    const int64_t n = dims[5];
    double rr = 0;
    (void)f; (void)iv;
    #pragma omp parallel reduction(+:rr) if(n > ASP_PAR_MIN)
    {
        int64_t a, e;
        share(n, &a, &e);
        rows_apply(A, x, 0, r, 0, a, e, 0, 1);
        #pragma omp simd reduction(+:rr)
        for (int64_t i = a; i < e; ++i) {
            const vt v = b[i] - r[i];
            r[i] = v;
            rr += v * v;
        }
    }
    out[0] = rr;
    return 0;
}

% endif
""")

_ERRORS = ((MemoryError, "matrix powers: cannot allocate the per-thread scratch"),)


class Kernels:
    """The guarded entries of one (value type, index type, diagonal count) module."""

    def __init__(self, vdtype: np.dtype, idtype: np.dtype, ndiag: int):
        vt, it = VALUE_TYPES[vdtype], INDEX_TYPES[idtype]
        sym = f"asp_mpk_{vt[0]}{it[3:5]}_d{ndiag}"
        self.kernel = f"matrix_powers:{vt}/{it}/d{ndiag}"
        self.source = stage(RenderError, self.kernel, lambda: _SOURCE.render(
            vt=vt, it=it, sym=sym, nd=ndiag, cg=vdtype == np.float64))
        self.library = stage(CompileError, self.kernel, lambda: build(
            self.source, kernel=self.kernel, name=f"matrix_powers_{vt}_{it}_d{ndiag}"))
        self.entries = stage(LoadError, self.kernel, lambda: self._entries(vdtype, idtype, sym))

    def _entries(self, vdtype: np.dtype, idtype: np.dtype, sym: str) -> dict:
        i64 = np.dtype(np.int64)
        f64 = np.dtype(np.float64)
        mat = (ArgSpec("array", idtype, 1), ArgSpec("array", idtype, 1),
               ArgSpec("array", vdtype, 1), ArgSpec("array", i64, 1),
               ArgSpec("array", i64, 1))
        powers = mat + (ArgSpec("array", vdtype, 2, write=True), ArgSpec("array", f64, 1),
                        ArgSpec("array", f64, 1))
        vec = ArgSpec("array", vdtype, 1, group=0)
        wvec = ArgSpec("array", vdtype, 1, write=True, group=0)
        out = ArgSpec("array", f64, 1, write=True)
        fl, ii = ArgSpec("float"), ArgSpec("int")
        specs = {
            "naive": powers,
            "pa1": powers + (ArgSpec("array", i64, 1),) * 4 + (ii, ii),
            "window": powers + (ArgSpec("array", i64, 1), ii, ii, ii),
            "window2": powers + (ArgSpec("array", vdtype, 2, write=True),
                                 ArgSpec("array", i64, 1), ii, ii, ii),
        }
        if vdtype == np.float64:
            specs.update({
                "cg_spmv": mat + (vec, wvec, out),
                "cg_update": (wvec, wvec, vec, vec, out, fl),
                "cg_direction": (wvec, vec, fl),
                "residual": mat + (vec, vec, wvec, out),
            })
        return {
            name: make_entry(self.library.address(f"{sym}_{name}"), spec, errors=_ERRORS,
                             keepalive=self.library)
            for name, spec in specs.items()
        }

    def __getitem__(self, name: str):
        return self.entries[name]


@functools.cache
def kernels(vdtype: np.dtype, idtype: np.dtype, ndiag: int = 0) -> Kernels:
    """The compiled kernels for one (value dtype, index dtype, diagonal count)."""
    return Kernels(np.dtype(vdtype), np.dtype(idtype), int(ndiag))


# The s-step solver's two vector passes, generated for a fixed basis size m = 2s+1 so
# every sum is written out: one sweep over the rows, SIMD across rows, no inner loop.
_SSTEP = Template(r"""
#include <stdint.h>
#include <string.h>

#define ASP_PAR_MIN 20000

/* G = Y Y^T (lower triangle summed, then mirrored); Y is (${m}, n). */
int ${sym}_gram(void **ptrs, const int64_t *dims, const double *f, const int64_t *iv)
{
    const double *Y = ptrs[0]; double *G = ptrs[1];
    const int64_t n = dims[1];
% for i in range(m):
    const double *restrict y${i} = Y + ${i} * n;
% endfor
% for i, j in pairs:
    double g${i}_${j} = 0;
% endfor
    (void)f; (void)iv;
    #pragma omp parallel for simd schedule(static) if(n > ASP_PAR_MIN) \
        reduction(+:${", ".join(f"g{i}_{j}" for i, j in pairs)})
    for (int64_t r = 0; r < n; ++r) {
% for i, j in pairs:
        g${i}_${j} += y${i}[r] * y${j}[r];
% endfor
    }
% for i, j in pairs:
    G[${i * m + j}] = G[${j * m + i}] = g${i}_${j};
% endfor
    return 0;
}

/* x += Y^T c0; Y[ir] = Y^T c1 (r); Y[ip] = Y^T c2 (p); out[0] = r.r */
int ${sym}_recover(void **ptrs, const int64_t *dims, const double *f, const int64_t *iv)
{
    double *Y = ptrs[0]; double *restrict x = ptrs[1]; const double *c = ptrs[2];
    double *out = ptrs[3];
    const int64_t n = dims[1], ip = iv[0], ir = iv[1];
% for i in range(m):
    const double a${i} = c[${i}], b${i} = c[${m + i}], d${i} = c[${2 * m + i}];
% endfor
    double *restrict rdst = Y + ir * n, *restrict pdst = Y + ip * n;
    double rr = 0;
    (void)f;
    #pragma omp parallel for schedule(static) reduction(+:rr) if(n > ASP_PAR_MIN)
    for (int64_t lo = 0; lo < n; lo += 1024) {
        const int64_t hi = lo + 1024 < n ? lo + 1024 : n;
        #pragma omp simd reduction(+:rr)
        for (int64_t r = lo; r < hi; ++r) {
% for i in range(m):
            const double y${i} = Y[${i} * n + r];
% endfor
            const double xs = ${" + ".join(f"a{i} * y{i}" for i in range(m))};
            const double rs = ${" + ".join(f"b{i} * y{i}" for i in range(m))};
            const double ps = ${" + ".join(f"d{i} * y{i}" for i in range(m))};
            x[r] += xs;
            rdst[r] = rs;
            pdst[r] = ps;
            rr += rs * rs;
        }
    }
    out[0] = rr;
    return 0;
}
""")


class SStepKernels:
    """Gram matrix and recovery entries for a basis of ``m`` float64 vectors."""

    def __init__(self, m: int):
        sym = f"asp_sstep_m{m}"
        pairs = [(i, j) for i in range(m) for j in range(i + 1)]
        self.kernel = f"matrix_powers:sstep/m{m}"
        self.source = stage(RenderError, self.kernel,
                            lambda: _SSTEP.render(m=m, sym=sym, pairs=pairs))
        self.library = stage(CompileError, self.kernel, lambda: build(
            self.source, kernel=self.kernel, name=f"matrix_powers_sstep_m{m}"))
        self.entries = stage(LoadError, self.kernel, lambda: self._entries(m, sym))

    def _entries(self, m: int, sym: str) -> dict:
        f64 = np.dtype(np.float64)
        basis = ArgSpec("array", f64, 2, shape=(m, -1))
        specs = {
            "gram": (basis, ArgSpec("array", f64, 2, write=True, shape=(m, m))),
            "recover": (ArgSpec("array", f64, 2, write=True, shape=(m, -1)),
                        ArgSpec("array", f64, 1, write=True), ArgSpec("array", f64, 2,
                                                                       shape=(3, m)),
                        ArgSpec("array", f64, 1, write=True), ArgSpec("int"), ArgSpec("int")),
        }
        return {
            name: make_entry(self.library.address(f"{sym}_{name}"), spec,
                             keepalive=self.library)
            for name, spec in specs.items()
        }

    def __getitem__(self, name: str):
        return self.entries[name]


@functools.cache
def sstep_kernels(m: int) -> SStepKernels:
    """The s-step kernels for a basis of ``m = 2s+1`` vectors, built once per process."""
    return SStepKernels(int(m))
