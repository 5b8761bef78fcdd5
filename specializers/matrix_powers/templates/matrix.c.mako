## What every matrix-powers kernel shares, as Mako defs that kernels.py renders one by one:
## the preamble (types, the matrix struct, error codes) and the bodies of the helper
## functions (their parameter lists are in kernels.py, as IR).
## Context: vt, it (value and index C types), nd (diagonals of the run pattern, 0: none),
## par_min (rows below which a kernel runs on one thread).
<%def name="preamble()">
#ifdef _OPENMP
#include <omp.h>
#else
/* A serial build (ASP_CFLAGS without -fopenmp): the pragmas are ignored, one thread. */
static inline int omp_get_num_threads(void) { return 1; }
static inline int omp_get_thread_num(void) { return 0; }
#endif

/* Below this many rows a kernel runs on one thread: a team's barriers cost more. */
#define ASP_PAR_MIN ${par_min}

/* Error codes: 1-based indices into the plan's error table (kernels.ERRORS). */
#define ASP_ERR_SCRATCH 1
#define ASP_ERR_SHAPE 2
#define ASP_ERR_LEVELS 3
#define ASP_ERR_PLAN 4

typedef ${vt} vt;
typedef ${it} it;

/* The matrix: CSR, plus (when nd > 0) runs of consecutive rows whose entries lie
   exactly on the nd diagonals off[] in that order: there the column indices need
   not be read, the values are read from dval (diagonal j of row r at dval[j*dn + r],
   contiguous along rows) and the loop over rows vectorizes. */
typedef struct {
    const it *ptr; const it *idx; const vt *val;
    const int64_t *runs; int64_t nruns; const int64_t *off; int64_t nd;
    const vt *dval; int64_t dn;
} mat_t;

/* The matrix from a kernel's named parameters ptr, idx, val, druns, doff, dval. */
#define ASP_MATRIX {ptr, idx, val, druns, druns_n0 / 2, doff, doff_n0, dval, ptr_n0 - 1}

/* A matrix that cannot be the n x n CSR matrix a kernel was handed (the Python side
   validated it; this keeps a direct call from reading out of bounds). */
#define ASP_BAD_MATRIX(n) \
    (ptr_n0 != (n) + 1 || idx_n0 < ptr[n] || val_n0 < ptr[n] || druns_n0 % 2 != 0 \
     || dval_n0 < doff_n0 * (n))
</%def>

<%def name="row_apply()">
    vt acc = 0;
    const it end = ptr[r + 1];
    for (it j = ptr[r]; j < end; ++j)
        acc += val[j] * src[idx[j] - off];
    return (acc - t * src[r - off]) * g;
</%def>

<%def name="csr_rows()">
    for (int64_t r = a; r < b; ++r)
        dst[r - doff] = row_apply(A->ptr, A->idx, A->val, src, soff, r, t, g);
</%def>

<%def name="diag_rows()">
    const vt *restrict s = src - soff;
    vt *restrict d = dst - doff;
% for j in range(nd):
    const int64_t o${j} = A->off[${j}];
    const vt *restrict v${j} = A->dval + ${j} * A->dn;
% endfor
    /* CSR's order of a row's sum, one contiguous vector load per diagonal */
    #pragma omp simd
    for (int64_t r = a; r < b; ++r) {
        const vt acc = ${" + ".join(f"v{j}[r] * s[r + o{j}]" for j in range(nd))};
        d[r] = (acc - t * s[r]) * g;
    }
</%def>

<%def name="rows_apply()">
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
</%def>

<%def name="share()">
    const int64_t T = omp_get_num_threads(), t = omp_get_thread_num();
    *a = n * t / T;
    *b = n * (t + 1) / T;
</%def>
