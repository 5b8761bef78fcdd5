## The s-step solver's two vector passes over its basis Y of m = 2s+1 vectors
## (cg_kernels.py), generated for a fixed m so every sum is written out: one sweep over
## the rows, SIMD across rows, no inner loop.  Context: m, pairs (the (i, j) with j <= i),
## par_min.

## G = Y Y^T (lower triangle summed, then mirrored)
<%def name="gram()">
    const int64_t n = Y_n1;
% for i in range(m):
    const double *restrict y${i} = Y + ${i} * n;
% endfor
% for i, j in pairs:
    double g${i}_${j} = 0;
% endfor
    #pragma omp parallel for simd schedule(static) if(n > ${par_min}) \
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
</%def>

## x += Y^T c0; Y[ir] = Y^T c1 (r); Y[ip] = Y^T c2 (p); returns r.r
<%def name="recover()">
    const int64_t n = Y_n1;
    if (x_n0 != n || ip < 0 || ip >= ${m} || ir < 0 || ir >= ${m} || ip == ir)
        return 1;  /* the plan's only error */
% for i in range(m):
    const double a${i} = coef[${i}], b${i} = coef[${m + i}], d${i} = coef[${2 * m + i}];
% endfor
    double *rdst = Y + ir * n, *pdst = Y + ip * n;
    double rr = 0;
    #pragma omp parallel for schedule(static) reduction(+:rr) if(n > ${par_min})
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
</%def>
