## The matrix-powers variants: V[l] = g_l (A - t_l I) V[l-1] for l = 1..L, with
## t = shift, g = scale, L = rows of V - 1; with two=True also V2 (L2 <= L levels, the
## same shifts), as s-step CG needs for its p and r bases.  Every variant takes the same
## named parameters (powers_kernel.py) and reads only its own plan: every PA1 variant the
## one PA1 plan (blk, runptr, runs, base, span: made for the variant that runs), a window
## variant the step its slot names.  Context: two, slot, nd, plus matrix.c.mako's types.
<%def name="prologue()">
    const mat_t M = ASP_MATRIX, *A = &M;
    const int64_t n = V_n1, L = V_n0 - 1;
    if (L < 0 || ASP_BAD_MATRIX(n)) return ASP_ERR_SHAPE;
% if two:
    const int64_t L2 = V2_n0 - 1;
    if (V2_n1 != n || L2 < 0 || L2 > L) return ASP_ERR_SHAPE;
% endif
    if (shift_n0 < L || scale_n0 < L) return ASP_ERR_LEVELS;
</%def>

## Pure CSR, one level after another (both bases from the same rows of A): the
## baseline the others must beat.
<%def name="naive()">
${prologue()}
    #pragma omp parallel if(n > ASP_PAR_MIN)
    for (int64_t l = 1; l <= L; ++l) {
        const vt *src = V + (l - 1) * n;
        vt *dst = V + l * n;
        const vt t = (vt)shift[l - 1], g = (vt)scale[l - 1];
% if two:
        const int both = l <= L2;
        const vt *src2 = both ? V2 + (l - 1) * n : V2;
        vt *dst2 = both ? V2 + l * n : V2;
% endif
        #pragma omp for schedule(static)
        for (int64_t r = 0; r < n; ++r) {
            dst[r] = row_apply(ptr, idx, val, src, 0, r, t, g);
% if two:
            if (both)
                dst2[r] = row_apply(ptr, idx, val, src2, 0, r, t, g);
% endif
        }
    }
    return 0;
</%def>

## PA1: rows cut into cache-sized blocks; each block computes levels 1..L-1 on its
## precomputed ghost zone (row runs) into thread-private scratch W, redundantly with its
## neighbours, then level L on its own rows.  No communication between blocks.
<%def name="pa1()">
${prologue()}
    const int64_t nb = blk_n0 - 1;
    if (nb < 0 || base_n0 != nb || K < 1 || L > K || span < 1
            || runptr_n0 != nb * (K - 1) + 1 || blk[0] != 0 || blk[nb] != n
            || runs_n0 < 2 * runptr[nb * (K - 1)])
        return ASP_ERR_PLAN;
    int err = 0;
    #pragma omp parallel if(n > ASP_PAR_MIN)
    {
        vt *W = L > 1 ? malloc(sizeof(vt) * (size_t)(L - 1) * (size_t)span) : NULL;
        if (L > 1 && W == NULL) {
            #pragma omp atomic write
            err = ASP_ERR_SCRATCH;
        }
        #pragma omp barrier
        if (!err) {
            pa1_sweep(A, V, n, L, K, shift, scale, blk, runptr, runs, base, nb, span, W);
% if two:
            if (L2 > 0)
                pa1_sweep(A, V2, n, L2, K, shift, scale, blk, runptr, runs, base, nb, span, W);
% endif
        }
        free(W);
    }
    return err;
</%def>

## One basis by PA1, inside the caller's parallel region (the blocks are shared among
## the team).  The plan was made for K levels; a partial basis of L levels uses the
## ghost zones of its last L levels, which start o = K - L levels in.
<%def name="pa1_sweep()">
    const int64_t o = K - L;
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
</%def>

## For banded matrices.  Each thread sweeps its row chunk once, level l trailing level
## l-1 by the upper bandwidth, so the rows of A a level needs are still in cache from the
## level before: A is read from memory once for all L levels (and, with two, for both
## bases).  The few rows near chunk seams that need the neighbour's values are filled in
## afterwards, level by level; nothing is computed twice.
<%def name="window()">
${prologue()}
    const int64_t *ch = chunks;
    const int64_t T = chunks_n0 - 1, step = step_${slot};
    if (T < 1 || ch[0] != 0 || ch[T] != n || step < 1 || bl < 0 || bu < 0)
        return ASP_ERR_PLAN;
    #pragma omp parallel if(T > 1 && n > ASP_PAR_MIN)
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
                                   (vt)shift[l - 1], (vt)scale[l - 1]);
% if two:
                        if (l <= L2)  /* the same rows of A, still in cache */
                            rows_apply(A, V2 + (l - 1) * n, 0, V2 + l * n, 0, done[l], e,
                                       (vt)shift[l - 1], (vt)scale[l - 1]);
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
                           m + (l - 1) * bl, (vt)shift[l - 1], (vt)scale[l - 1]);
% if two:
                if (l <= L2)
                    rows_apply(A, V2 + (l - 1) * n, 0, V2 + l * n, 0, m - (l - 1) * bu,
                               m + (l - 1) * bl, (vt)shift[l - 1], (vt)scale[l - 1]);
% endif
            }
        }
    }
    return 0;
</%def>
