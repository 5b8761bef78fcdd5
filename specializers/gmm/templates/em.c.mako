<%doc>
The GMM kernels as C/OpenMP, for one (M, D, kind, dtype): the template style.

Nothing here is a complete translation unit.  specializers/gmm/kernels.py
renders each <%def> on its own: `preamble` becomes Plan.preamble (macros,
types, and exp_neg, whose `declare simd` pragma a helper function cannot
carry), every `h_*` def the Verbatim body of one helper function (Plan.helpers,
IR the dump shows), and every kernel def the body of one template_function,
whose parameters are the kernel ABI's: each array a named `restrict` pointer
followed by its extents `<name>_n0, <name>_n1, ...`, each int an int64_t.  The
core prints the entry points, builds, guards the arguments in C, checks every
variant against the NumPy reference, tunes and falls back.

Render context: M, D, full (kind 'full'), ctype (of X), blocks (of the blocked
variants), B (the block of a blocked variant or helper).

kind 'full': P[k] is the upper-triangular Cholesky factor of component k's
precision (sklearn's precisions_cholesky_), so the Mahalanobis term is
|(x - mu_k) P_k|^2.  kind 'diag': P[k][i] = 1/sigma_ki.  Tied and spherical
mixtures reuse these kernels with P broadcast over components.

The EM variants write, per component k, the sufficient statistics centred on
the current means (shifted sums keep the covariance free of cancellation):
    stats[k] = [ sum_n r_nk,  sum_n r_nk d_n (D),  sum_n r_nk d_n d_n^T (upper, DxD) or r d^2 (D) ]
with d_n = x_n - mu_k, and ll[0] = sum_n log p(x_n).  The caller turns them
into sklearn's M-step.  Variants differ only in how the work is split over
threads.

Every buffer whose size grows with M or D lives on the heap, one allocation
per call split into per-thread slices: OpenMP threads get small stacks
(OMP_STACKSIZE, 2-8 MiB by default, as little as 16 KiB when set), and a full
D=128 block is 256 KiB.  Only scalars and GCC vectors stay on the stack.

Kernels return 0; 1 when memory cannot be allocated (MemoryError); 2 when an
array's rows do not match X's (ValueError): the error table is the Plan's.
</%doc>

<%def name="preamble()">
/* A serial build (ASP_CFLAGS without -fopenmp) must still compile and load:
   the pragmas are then ignored, and one thread does all the work. */
#ifdef _OPENMP
#include <omp.h>
#define THREAD_ID() omp_get_thread_num()
#define TEAM_SIZE() omp_get_num_threads()
#else
#define THREAD_ID() 0
#define TEAM_SIZE() 1
#endif

#define M ${M}
#define D ${D}
#define DD ${'(D * D)' if full else 'D'}
#define PSTRIDE ${'(D * D)' if full else 'D'}
#define NSTAT (1 + D + DD)
typedef ${ctype} real_t;

/* Responsibilities below exp(EXP_CUT) are flushed to exactly zero.  A
   responsibility that small cannot move any sum by more than N e-261, far below
   rounding; but multiplied by small differences x - mu its products are
   subnormal, and subnormal arithmetic is 10-100 times slower.  From a
   data-point initialisation (tiny covariances, log densities down to -1e9)
   nearly every (event, component) pair sits at that floor. */
#define EXP_CUT (-600.0)

/* Sums across a block of events are kept in W explicit lanes (a GCC vector
   of one machine register) and added up once per block.  Left to itself gcc
   lowers `omp simd reduction` here to lanes in memory, or vectorises the wrong
   loop, both several times slower.  W is the register's width: a vector wider
   than the target's registers is lowered through the stack (8 lanes on AVX2
   ran the EM step at 8 % of peak). */
#if defined(__AVX512F__)
#define W 8
#elif defined(__AVX__)
#define W 4
#else
#define W 2
#endif
typedef double vd __attribute__((vector_size(8 * W)));
typedef int64_t vi __attribute__((vector_size(8 * W)));

/* exp(x) for x <= 0, branch-free so loops across events vectorise (glibc's exp
   does not without -ffast-math).  Cody-Waite reduction x = n ln2 + r,
   |r| <= ln2/2, a degree-12 Taylor polynomial (relative error ~3e-16), and
   2^n built in the exponent bits: n is read from the low mantissa bits of
   x log2(e) + 1.5 * 2^52, which avoids a float->int conversion that would not
   vectorise.  Below EXP_CUT (and at -inf) the result is 0 (see above); NaN
   stays NaN.  The cut is applied with an integer mask, not `?:` on doubles:
   without AVX-512's masked lanes gcc will not if-convert a floating-point
   compare (-ftrapping-math), and the whole loop calling this stayed scalar. */
#pragma omp declare simd notinbranch
static inline double exp_neg(double x)
{
    const int64_t keep = -(int64_t)!(x < EXP_CUT);  /* all ones, or 0 below the cut */
    const double cut = EXP_CUT;
    int64_t xb, cb;
    memcpy(&xb, &x, sizeof xb);
    memcpy(&cb, &cut, sizeof cb);
    xb = (xb & keep) | (cb & ~keep);
    double xc;
    memcpy(&xc, &xb, sizeof xc);
    const double t = xc * 1.4426950408889634 + 6755399441055744.0;
    const double n = t - 6755399441055744.0;
    const double r = (xc - n * 0.693147180369123816490) - n * 1.90821492927058770002e-10;
    /* 1/12!, 1/11!, ... as literals (1.0 / 479001600.0 and so on, correctly rounded):
     * under -frounding-math the compiler would divide at run time. */
    double p = 2.08767569878681e-09;
    p = p * r + 2.505210838544172e-08;
    p = p * r + 2.755731922398589e-07;
    p = p * r + 2.7557319223985893e-06;
    p = p * r + 2.48015873015873e-05;
    p = p * r + 0.0001984126984126984;
    p = p * r + 0.001388888888888889;
    p = p * r + 0.008333333333333333;
    p = p * r + 0.041666666666666664;
    p = p * r + 0.16666666666666666;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    int64_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = ((bits + 1023) << 52) & keep;  /* 2^n, or +0 below the cut */
    double scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}
</%def>

## -- helper functions (bodies; kernels.py declares them) ---------------------------------

<%def name="h_slice_doubles()">
/* Per-thread slices of one heap block are each a multiple of 64 bytes, so
   slices start on their own cache line (aligned loads, no false sharing). */
return (n + 7) & ~(size_t)7;
</%def>

<%def name="h_alloc_slices()">
const size_t bytes = (size_t)nt * per * sizeof(double);
return aligned_alloc(64, bytes ? bytes : 64);
</%def>

<%def name="h_quad()">
/* Mahalanobis term of one event against component k; d receives x - mu_k,
   y is D doubles of scratch. */
for (int i = 0; i < D; ++i) d[i] = x[i] - mu[i];
%if full:
/* y = d P with P upper triangular: the zero lower half is skipped. */
for (int j = 0; j < D; ++j) y[j] = 0.0;
for (int i = 0; i < D; ++i) {
    const double di = d[i];
    for (int j = i; j < D; ++j) y[j] += di * P[i * D + j];
}
double q = 0.0;
for (int j = 0; j < D; ++j) q += y[j] * y[j];
%else:
(void)y;
double q = 0.0;
for (int i = 0; i < D; ++i) { const double v = d[i] * P[i]; q += v * v; }
%endif
return q;
</%def>

<%def name="h_normalize()">
/* log-sum-exp over components: lp holds log w_k + log N(x|k); returns log p(x)
   and turns lp into responsibilities.  Subtracting the max keeps exp in range. */
double mx = lp[0];
for (int k = 1; k < M; ++k) mx = lp[k] > mx ? lp[k] : mx;
double s = 0.0;
for (int k = 0; k < M; ++k) { lp[k] = exp_neg(lp[k] - mx); s += lp[k]; }
const double inv = 1.0 / s;
for (int k = 0; k < M; ++k) lp[k] *= inv;
return mx + log(s);
</%def>

<%def name="h_accumulate()">
/* One event's weighted statistics for one component. */
st[0] += r;
double *restrict sd = st + 1, *restrict sdd = st + 1 + D;
for (int i = 0; i < D; ++i) sd[i] += r * d[i];
%if full:
for (int i = 0; i < D; ++i) {
    const double ri = r * d[i];
    for (int j = i; j < D; ++j) sdd[i * D + j] += ri * d[j];
}
%else:
for (int i = 0; i < D; ++i) sdd[i] += r * d[i] * d[i];
%endif
</%def>

<%def name="h_load_event()">
for (int i = 0; i < D; ++i) x[i] = (double)X[e * D + i];
</%def>

<%def name="h_reduce_partials()">
/* The per-thread partials summed in thread order, so results do not depend on
   timing: M * NSTAT statistics, then the log-likelihood. */
const int64_t len = (int64_t)M * NSTAT + 1;
memset(stats, 0, sizeof(double) * M * NSTAT);
*ll = 0.0;
for (int t = 0; t < nt; ++t) {
    const double *p = part + (int64_t)t * len;
    for (int64_t s = 0; s < (int64_t)M * NSTAT; ++s) stats[s] += p[s];
    *ll += p[(int64_t)M * NSTAT];
}
</%def>

<%def name="h_vload()">
vd v;
memcpy(&v, p, sizeof v);
return v;
</%def>

<%def name="h_vmax()">
/* a > b ? a : b lane by lane, as a mask: a `?:` on doubles stays scalar (see exp_neg). */
const vi gt = a > b;
return (vd)(((vi)a & gt) | ((vi)b & ~gt));
</%def>

<%def name="h_hsum()">
#if W == 8
return ((a[0] + a[4]) + (a[1] + a[5])) + ((a[2] + a[6]) + (a[3] + a[7]));
#elif W == 4
return (a[0] + a[2]) + (a[1] + a[3]);
#else
return a[0] + a[1];
#endif
</%def>

<%def name="h_load_block()">
/* Events e0 .. e0+nb-1 into xt (D x ${B}, row i at xt + i * ${B}: transposed); a
   short last block is padded with its first event, so every lane holds a real
   event. */
for (int b = 0; b < nb; ++b)
    for (int i = 0; i < D; ++i) xt[i * ${B} + b] = (double)X[(e0 + b) * D + i];
for (int b = nb; b < ${B}; ++b)
    for (int i = 0; i < D; ++i) xt[i * ${B} + b] = xt[i * ${B}];
</%def>

<%def name="h_quad_block()">
/* q[b] = |(x_b - mu_k) P_k|^2 for the ${B} events of xt, with the component's
   parameters broadcast across the SIMD lanes.  dt is D x ${B} scratch. */
%if full:
for (int i = 0; i < D; ++i)
    for (int b = 0; b < ${B}; ++b) dt[i * ${B} + b] = xt[i * ${B} + b] - m[i];
/* y = d U column by column for 4W events at a time, so the partial sums of y
   and q stay in registers */
for (int b0 = 0; b0 < ${B}; b0 += 4 * W) {
    vd q0 = {0}, q1 = {0}, q2 = {0}, q3 = {0};
    for (int j = 0; j < D; ++j) {
        vd y0 = {0}, y1 = {0}, y2 = {0}, y3 = {0};
        for (int i = 0; i <= j; ++i) {
            const double p = Pk[i * D + j];
            const double *row = dt + i * ${B} + b0;
            y0 += vload(row) * p;
            y1 += vload(row + W) * p;
            y2 += vload(row + 2 * W) * p;
            y3 += vload(row + 3 * W) * p;
        }
        q0 += y0 * y0;
        q1 += y1 * y1;
        q2 += y2 * y2;
        q3 += y3 * y3;
    }
    memcpy(&q[b0], &q0, sizeof q0);
    memcpy(&q[b0 + W], &q1, sizeof q1);
    memcpy(&q[b0 + 2 * W], &q2, sizeof q2);
    memcpy(&q[b0 + 3 * W], &q3, sizeof q3);
}
%else:
(void)dt;
for (int b0 = 0; b0 < ${B}; b0 += 4 * W) {
    vd q0 = {0}, q1 = {0}, q2 = {0}, q3 = {0};
    for (int i = 0; i < D; ++i) {
        const double p = Pk[i], c = m[i];  /* (x - mu) p: no cancellation */
        const double *row = xt + i * ${B} + b0;
        const vd y0 = (vload(row) - c) * p;
        const vd y1 = (vload(row + W) - c) * p;
        const vd y2 = (vload(row + 2 * W) - c) * p;
        const vd y3 = (vload(row + 3 * W) - c) * p;
        q0 += y0 * y0;
        q1 += y1 * y1;
        q2 += y2 * y2;
        q3 += y3 * y3;
    }
    memcpy(&q[b0], &q0, sizeof q0);
    memcpy(&q[b0 + W], &q1, sizeof q1);
    memcpy(&q[b0 + 2 * W], &q2, sizeof q2);
    memcpy(&q[b0 + 3 * W], &q3, sizeof q3);
}
%endif
</%def>

## -- the EM step: one variant per def ---------------------------------------------------
## Parameters: X (N, D), mu (M, D), P (M, D, D) or (M, D), logc (M,), nthreads,
## work (N, M), stats (M, NSTAT), ll (1,).

<%def name="em_events_b1()">
/* Variant events_b1: threads take contiguous ranges of events; each event is
   handled start to finish (quadratic forms, responsibilities, statistics)
   while it is in registers; per-thread partial sums are reduced at the end. */
const int64_t n = X_n0;
if (work_n0 != n) return 2;
const int nt = nthreads > 0 ? (int)nthreads : 1;
const int64_t len = (int64_t)M * NSTAT + 1;
double *part = calloc((size_t)nt * len, sizeof(double));
const size_t per = slice_doubles((size_t)D * (M + 2) + M);
double *buf = alloc_slices(nt, per);
if (!part || !buf) { free(part); free(buf); return 1; }
#pragma omp parallel num_threads(nt)
{
    const int t = THREAD_ID(), T = TEAM_SIZE();
    const int64_t lo = n * t / T, hi = n * (t + 1) / T;
    double *restrict st = part + (int64_t)t * len;
    double *w = buf + (size_t)t * per;
    double *restrict x = w, *restrict y = w + D, *restrict lp = w + 2 * D;
    double (*restrict dk)[D] = (double (*)[D])(w + 2 * D + M);
    double lsum = 0.0;
    for (int64_t e = lo; e < hi; ++e) {
        load_event(X, e, x);
        for (int k = 0; k < M; ++k)
            lp[k] = logc[k] - 0.5 * quad(x, mu + k * D, P + k * PSTRIDE, dk[k], y);
        lsum += normalize(lp);
        for (int k = 0; k < M; ++k) accumulate(st + k * NSTAT, lp[k], dk[k]);
    }
    st[(int64_t)M * NSTAT] = lsum;
}
reduce_partials(part, nt, stats, ll);
free(buf);
free(part);
return 0;
</%def>

<%def name="em_events_blocked()">
/* Variant events_b${B}: like events_b1, but events go in blocks of ${B}, stored
   transposed so every inner loop runs across ${B} events (SIMD lanes) with
   the component's parameters broadcast. */
enum { B = ${B} };
const int64_t n = X_n0;
if (work_n0 != n) return 2;
const int nt = nthreads > 0 ? (int)nthreads : 1;
const int64_t len = (int64_t)M * NSTAT + 1;
double *part = calloc((size_t)nt * len, sizeof(double));
/* xt, dt (D x B each), lp (M x B), then q, mx, s, r, rd (B each) */
const size_t per = (2 * (size_t)D + M + 5) * B;
double *buf = alloc_slices(nt, per);
if (!part || !buf) { free(part); free(buf); return 1; }
#pragma omp parallel num_threads(nt)
{
    const int t = THREAD_ID(), T = TEAM_SIZE();
    const int64_t lo = n * t / T, hi = n * (t + 1) / T;
    double *restrict st = part + (int64_t)t * len;
    double *w = buf + (size_t)t * per;
    double (*restrict xt)[B] = (double (*)[B])w;
    double (*restrict dt)[B] = (double (*)[B])(w + (size_t)D * B);
    double (*restrict lp)[B] = (double (*)[B])(w + 2 * (size_t)D * B);
    double *restrict q = w + (2 * (size_t)D + M) * B;
    double *restrict mx = q + B, *restrict s = mx + B, *restrict r = s + B;
    double *restrict rd = r + B;
    double lsum = 0.0;
    for (int64_t e0 = lo; e0 < hi; e0 += B) {
        const int nb = (hi - e0) < B ? (int)(hi - e0) : B;
        load_block_${B}(X, e0, nb, xt[0]);
        for (int k = 0; k < M; ++k) {
            quad_block_${B}(xt[0], dt[0], mu + k * D, P + k * PSTRIDE, q);
            for (int b = 0; b < B; ++b) lp[k][b] = logc[k] - 0.5 * q[b];
        }
        /* log-sum-exp across components, vectorised across the block */
        for (int b0 = 0; b0 < B; b0 += W) {
            vd v = vload(&lp[0][b0]);
            for (int k = 1; k < M; ++k) v = vmax(vload(&lp[k][b0]), v);
            memcpy(&mx[b0], &v, sizeof v);
        }
        for (int b = 0; b < B; ++b) s[b] = 0.0;
        for (int k = 0; k < M; ++k) {
            #pragma omp simd
            for (int b = 0; b < B; ++b) {
                const double v = exp_neg(lp[k][b] - mx[b]);
                lp[k][b] = v;
                s[b] += v;
            }
        }
        for (int b = 0; b < nb; ++b) lsum += mx[b] + log(s[b]);
        for (int b = 0; b < B; ++b) s[b] = b < nb ? 1.0 / s[b] : 0.0;  /* padding weighs 0 */
        for (int k = 0; k < M; ++k) {
            const double *restrict m = mu + k * D;
            double *restrict sk = st + k * NSTAT;
            /* Two sums per statistic, over alternate groups of W events: one chain
               of adds waits on the latency of the last at every step (no FMA
               here: -ffp-contract=off), which cost diag a third of its time. */
            vd rs = {0}, rs2 = {0};
            for (int b0 = 0; b0 < B; b0 += 2 * W) {
                const vd rv = vload(&lp[k][b0]) * vload(&s[b0]);
                const vd rv2 = vload(&lp[k][b0 + W]) * vload(&s[b0 + W]);
                memcpy(&r[b0], &rv, sizeof rv);
                memcpy(&r[b0 + W], &rv2, sizeof rv2);
                rs += rv;
                rs2 += rv2;
            }
            sk[0] += hsum(rs + rs2);
%if full:
            for (int i = 0; i < D; ++i) {
                vd a = {0}, a2 = {0};
                for (int b0 = 0; b0 < B; b0 += 2 * W) {
                    const vd d = vload(&xt[i][b0]) - m[i];
                    const vd d2 = vload(&xt[i][b0 + W]) - m[i];
                    memcpy(&dt[i][b0], &d, sizeof d);
                    memcpy(&dt[i][b0 + W], &d2, sizeof d2);
                    a += vload(&r[b0]) * d;
                    a2 += vload(&r[b0 + W]) * d2;
                }
                sk[1 + i] += hsum(a + a2);
            }
            /* the upper half of sum r d d^T, four columns at a time so each
               load of r d feeds four FMAs */
            for (int i = 0; i < D; ++i) {
                for (int b0 = 0; b0 < B; b0 += W) {
                    const vd v = vload(&r[b0]) * vload(&dt[i][b0]);
                    memcpy(&rd[b0], &v, sizeof v);
                }
                double *restrict row = sk + 1 + D + i * D;
                int j = i;
                for (; j + 4 <= D; j += 4) {
                    vd a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                    for (int b0 = 0; b0 < B; b0 += W) {
                        const vd v = vload(&rd[b0]);
                        a0 += v * vload(&dt[j][b0]);
                        a1 += v * vload(&dt[j + 1][b0]);
                        a2 += v * vload(&dt[j + 2][b0]);
                        a3 += v * vload(&dt[j + 3][b0]);
                    }
                    row[j] += hsum(a0);
                    row[j + 1] += hsum(a1);
                    row[j + 2] += hsum(a2);
                    row[j + 3] += hsum(a3);
                }
                for (; j < D; ++j) {
                    vd a0 = {0};
                    for (int b0 = 0; b0 < B; b0 += W) a0 += vload(&rd[b0]) * vload(&dt[j][b0]);
                    row[j] += hsum(a0);
                }
            }
%else:
            (void)rd;
            for (int i = 0; i < D; ++i) {
                vd a1 = {0}, a2 = {0}, c1 = {0}, c2 = {0};
                for (int b0 = 0; b0 < B; b0 += 2 * W) {
                    const vd d = vload(&xt[i][b0]) - m[i], v = vload(&r[b0]) * d;
                    const vd e = vload(&xt[i][b0 + W]) - m[i], u = vload(&r[b0 + W]) * e;
                    a1 += v;
                    a2 += v * d;
                    c1 += u;
                    c2 += u * e;
                }
                sk[1 + i] += hsum(a1 + c1);
                sk[1 + D + i] += hsum(a2 + c2);
            }
%endif
        }
    }
    st[(int64_t)M * NSTAT] = lsum;
}
reduce_partials(part, nt, stats, ll);
free(buf);
free(part);
return 0;
</%def>

<%def name="em_components()">
/* Variant components: the paper's other strategy.  Pass 1 (parallel over
   events) writes the N x M responsibilities to `work`; pass 2 is parallel over
   components, each thread owning whole components, so no reduction is needed. */
const int64_t n = X_n0;
if (work_n0 != n) return 2;
const int nt = nthreads > 0 ? (int)nthreads : 1;
/* pass 1: x, d, y (D each); pass 2: the component's statistics and d */
const size_t per = slice_doubles(NSTAT + (size_t)D > 3 * (size_t)D ? NSTAT + (size_t)D
                                                                   : 3 * (size_t)D);
double *buf = alloc_slices(nt, per);
if (!buf) return 1;
double lsum = 0.0;
#pragma omp parallel num_threads(nt) reduction(+:lsum)
{
    double *w = buf + (size_t)THREAD_ID() * per;
    double *restrict x = w, *restrict d = w + D, *restrict y = w + 2 * D;
    #pragma omp for schedule(static)
    for (int64_t e = 0; e < n; ++e) {
        double *restrict lp = work + e * M;
        load_event(X, e, x);
        for (int k = 0; k < M; ++k)
            lp[k] = logc[k] - 0.5 * quad(x, mu + k * D, P + k * PSTRIDE, d, y);
        lsum += normalize(lp);
    }
}
ll[0] = lsum;
#pragma omp parallel num_threads(nt)
{
    double *w = buf + (size_t)THREAD_ID() * per;
    double *restrict st = w, *restrict d = w + NSTAT;
    #pragma omp for schedule(dynamic, 1)
    for (int k = 0; k < M; ++k) {
        memset(st, 0, sizeof(double) * NSTAT);
        const double *restrict m = mu + k * D;
        for (int64_t e = 0; e < n; ++e) {
            for (int i = 0; i < D; ++i) d[i] = (double)X[e * D + i] - m[i];
            accumulate(st, work[e * M + k], d);
        }
        memcpy(stats + k * NSTAT, st, sizeof(double) * NSTAT);
    }
}
free(buf);
return 0;
</%def>

## -- the E-step alone --------------------------------------------------------------------
<%def name="estep()">
/* predict, score_samples, the final E-step of fit_predict, the log-likelihood
   after a train: the weighted log-probabilities log w_k + log N(x|k) into out
   (N x M), their argmax into labels (the first maximum, as np.argmax), and
   sum log p(x) into ll[0].  An output given with no rows is not wanted and not
   written.  Blocks of ${B} events, as the events_b${B} variant. */
enum { B = ${B} };
const int64_t n = X_n0;
if ((out_n0 != 0 && out_n0 != n) || (labels_n0 != 0 && labels_n0 != n) || ll_n0 > 1)
    return 2;
const int want_out = n > 0 && out_n0 == n, want_labels = n > 0 && labels_n0 == n;
const int want_ll = ll_n0 == 1;
const int nt = nthreads > 0 ? (int)nthreads : 1;
/* xt, dt (D x B each), lp (M x B), q, best, arg (B each); each thread's partial
   log-likelihood in its own cache line of `part`, summed in thread order */
const size_t per = slice_doubles((2 * (size_t)D + M) * B) + 4 * (size_t)B;
double *buf = alloc_slices(nt, per);
double *part = calloc((size_t)nt * 8, sizeof(double));
if (!buf || !part) { free(buf); free(part); return 1; }
#pragma omp parallel num_threads(nt)
{
    const int t = THREAD_ID(), T = TEAM_SIZE();
    const int64_t lo = n * t / T, hi = n * (t + 1) / T;
    double *w = buf + (size_t)t * per;
    double *restrict xt = w, *restrict dt = w + (size_t)D * B;
    double (*restrict lp)[B] = (double (*)[B])(w + 2 * (size_t)D * B);
    double *restrict q = w + slice_doubles((2 * (size_t)D + M) * B);
    double *restrict best = q + B, *restrict arg = best + B, *restrict s = arg + B;
    double lsum = 0.0;
    for (int64_t e0 = lo; e0 < hi; e0 += B) {
        const int nb = (hi - e0) < B ? (int)(hi - e0) : B;
        load_block_${B}(X, e0, nb, xt);
        for (int k = 0; k < M; ++k) {
            quad_block_${B}(xt, dt, mu + k * D, P + k * PSTRIDE, q);
            for (int b = 0; b < B; ++b) lp[k][b] = logc[k] - 0.5 * q[b];
            if (want_out)
                for (int b = 0; b < nb; ++b) out[(e0 + b) * M + k] = lp[k][b];
        }
        /* the first maximum over components (np.argmax), lane by lane with masks */
        for (int b0 = 0; b0 < B; b0 += W) {
            vd v = vload(&lp[0][b0]), a = {0};
            for (int k = 1; k < M; ++k) {
                const vd u = vload(&lp[k][b0]);
                const vi gt = u > v;
                const vd kv = (vd){0} + (double)k;
                v = (vd)(((vi)u & gt) | ((vi)v & ~gt));
                a = (vd)(((vi)kv & gt) | ((vi)a & ~gt));
            }
            memcpy(&best[b0], &v, sizeof v);
            memcpy(&arg[b0], &a, sizeof a);
        }
        if (want_labels)
            for (int b = 0; b < nb; ++b) labels[e0 + b] = (int64_t)arg[b];
        if (want_ll) {
            for (int b = 0; b < B; ++b) s[b] = 0.0;
            for (int k = 0; k < M; ++k) {
                #pragma omp simd
                for (int b = 0; b < B; ++b) s[b] += exp_neg(lp[k][b] - best[b]);
            }
            for (int b = 0; b < nb; ++b) lsum += best[b] + log(s[b]);
        }
    }
    part[(size_t)t * 8] = lsum;
}
if (want_ll) {
    double sum = 0.0;
    for (int t = 0; t < nt; ++t) sum += part[(size_t)t * 8];
    ll[0] = sum;
}
free(part);
free(buf);
return 0;
</%def>

## -- the M-step from given responsibilities ----------------------------------------------
<%def name="mstats()">
/* The M-step from given responsibilities resp (N x M), as at initialisation.
   With centre != 0, pass 1 sums r and r x per component and sets c[k] to the
   weighted mean (0 for a component without weight), and pass 2 writes stats
   centred on c, free of cancellation; with centre == 0, c is 0 and stats hold
   the raw sums (sum r, sum r x, sum r x x^T or r x^2), from which the caller
   reproduces scikit-learn's raw-moment formulas.  Zero responsibilities are
   skipped: initialisations from data points or k-means labels have one
   non-zero per event, or M in all. */
const int64_t n = X_n0;
if (resp_n0 != n) return 2;
const int nt = nthreads > 0 ? (int)nthreads : 1;
const int64_t len = (int64_t)M * NSTAT + 1;
double *part = calloc((size_t)nt * len, sizeof(double));
const size_t per = slice_doubles(2 * (size_t)D);
double *buf = alloc_slices(nt, per);
if (!part || !buf) { free(part); free(buf); return 1; }
double unused;
if (!centre) memset(c, 0, sizeof(double) * M * D);
for (int pass = centre ? 0 : 1; pass < 2; ++pass) {
    #pragma omp parallel num_threads(nt)
    {
        const int t = THREAD_ID(), T = TEAM_SIZE();
        const int64_t lo = n * t / T, hi = n * (t + 1) / T;
        double *restrict st = part + (int64_t)t * len;
        double *w = buf + (size_t)t * per;
        double *restrict x = w, *restrict d = w + D;
        memset(st, 0, sizeof(double) * len);
        for (int64_t e = lo; e < hi; ++e) {
            int loaded = 0;  /* most rows of a data-point start are all zero */
            for (int k = 0; k < M; ++k) {
                const double r = (double)resp[e * M + k];
                if (r == 0.0) continue;
                if (!loaded) { load_event(X, e, x); loaded = 1; }
                double *restrict sk = st + k * NSTAT;
                if (pass == 0) {
                    sk[0] += r;
                    for (int i = 0; i < D; ++i) sk[1 + i] += r * x[i];
                } else {
                    for (int i = 0; i < D; ++i) d[i] = x[i] - c[k * D + i];
                    accumulate(sk, r, d);
                }
            }
        }
    }
    reduce_partials(part, nt, stats, &unused);
    if (pass == 0)
        for (int k = 0; k < M; ++k) {
            const double sr = stats[k * NSTAT];
            for (int i = 0; i < D; ++i)
                c[k * D + i] = sr > 0.0 ? stats[k * NSTAT + 1 + i] / sr : 0.0;
        }
}
free(buf);
free(part);
return 0;
</%def>
