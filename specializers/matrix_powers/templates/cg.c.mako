## The fused kernels of conjugate gradients (cg_kernels.py): each reads and writes its
## vectors in one pass and returns its dot product (the entry's scalar result, out[0]).
## Context: the types of matrix.c.mako.

## q = A p; returns p.q
<%def name="spmv_dot()">
    const mat_t M = ASP_MATRIX, *A = &M;
    const int64_t n = p_n0;
    if (ASP_BAD_MATRIX(n)) return ASP_ERR_SHAPE;
    double pq = 0;
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
</%def>

## r = b - A x; returns r.r
<%def name="residual()">
    const mat_t M = ASP_MATRIX, *A = &M;
    const int64_t n = x_n0;
    if (ASP_BAD_MATRIX(n)) return ASP_ERR_SHAPE;
    double rr = 0;
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
</%def>

## x += alpha p; r -= alpha q; returns r.r
<%def name="update()">
    const int64_t n = x_n0;
    const vt a = alpha;
    double rr = 0;
    #pragma omp parallel for simd schedule(static) reduction(+:rr) if(n > ASP_PAR_MIN)
    for (int64_t i = 0; i < n; ++i) {
        x[i] += a * p[i];
        const vt ri = r[i] - a * q[i];
        r[i] = ri;
        rr += ri * ri;
    }
    out[0] = rr;
    return 0;
</%def>

## p = r + beta p
<%def name="direction()">
    const int64_t n = p_n0;
    const vt b = beta;
    #pragma omp parallel for simd schedule(static) if(n > ASP_PAR_MIN)
    for (int64_t i = 0; i < n; ++i)
        p[i] = r[i] + b * p[i];
    return 0;
</%def>
