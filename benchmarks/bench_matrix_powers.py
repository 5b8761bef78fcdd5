"""Matrix powers and CA-CG against SciPy on the 2-D 5-point Poisson matrix.

Targets (issue 5): k=4 powers on the 2000x2000-grid matrix (4M rows, 20M
nonzeros) >= 4x faster than four SciPy ``A @ v``; ghost-zone overhead <= 25 %
of the matrix; ``ca_cg`` to relative residual 1e-8 on the 1000x1000 grid >= 3x
faster than SciPy's ``cg``, ``cg`` >= 2x.  Setup (partitioning, ghost zones,
tuning) is reported apart from per-call time; effective bandwidth is reported
beside STREAM copy on the reference machine (35.6 GB/s).
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from benchmarks.harness import Figure, interleaved, until_tuned
from specializers.matrix_powers import MatrixPowers, ca_cg, cg

STREAM_COPY_GBS = 35.6


def poisson2d(m: int) -> sp.csr_matrix:
    T = sp.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(m, m))
    eye = sp.identity(m)
    return (sp.kron(eye, T) + sp.kron(T, eye)).tocsr()


def _powers(quick: bool) -> list[Figure]:
    m, k = (500, 4) if quick else (2000, 4)
    A = poisson2d(m)
    n = A.shape[0]
    x = np.random.default_rng(0).standard_normal(n)
    t0 = time.perf_counter()
    mp = MatrixPowers(A, k)
    construct = time.perf_counter() - t0
    V = np.empty((k + 1, n))
    V[0] = x
    t0 = time.perf_counter()
    mp.powers(V)  # the first call builds (or loads) the kernel and every variant's plans
    remembered = mp.chosen_variant() is not None  # a winner stored on disk by an earlier run
    while mp.chosen_variant() is None:  # online tuning: every variant timed, the winner stored
        mp.powers(V)
    tune = time.perf_counter() - t0

    def scipy4():
        y = x
        for _ in range(k):
            y = A @ y

    t = interleaved({"scipy": scipy4, "asp": lambda: mp.powers(V)}, repeat=7)
    ref = x
    for _ in range(k):
        ref = A @ ref
    err = np.abs(V[k] - ref).max() / np.abs(ref).max()
    winner = mp.chosen_variant()
    stats = mp.variant_stats(winner)
    pa1 = [v for v in mp.variants if v.startswith("pa1")][-1]
    pa1_stats = mp.variant_stats(pa1)
    moved = mp.matrix_bytes + (k + 1) * n * 8  # A once, x read, k vectors written
    scipy_moved = k * (A.data.nbytes + A.indices.nbytes + A.indptr.nbytes + 2 * n * 8)
    group = f"matrix powers {m}x{m} k={k}"
    detail = (f"n={n:,} nnz={A.nnz:,}; asp {t['asp'] * 1e3:.1f} ms ({winner}) vs SciPy "
              f"{t['scipy'] * 1e3:.1f} ms; max rel err {err:.1e}")
    return [
        Figure(group, "k=4 powers vs 4 SciPy SpMVs", t["scipy"] / t["asp"], 4.0, detail=detail),
        Figure(group, "setup (construct + first calls until tuned)", construct + tune, None,
               unit="s", better="lower",
               detail=f"construct {construct:.2f} s, calls {tune:.2f} s "
                      + ("(winner remembered from an earlier run: one call)" if remembered
                         else "(every variant's plans built, online tuning)")),
        Figure(group, f"ghost-zone overhead ({winner})", stats["ghost_overhead"], 0.25,
               unit="ratio", better="lower",
               detail=f"PA1 ({pa1}): stored {pa1_stats['ghost_overhead']:.4f} of A, scratch "
                      f"{pa1_stats['scratch_bytes'] / 2**20:.1f} MiB per call, redundant "
                      f"work {pa1_stats['redundant_work']:.1%}"),
        Figure(group, "effective bandwidth (asp)", moved / t["asp"] / 1e9, None, unit="GB/s",
               detail=f"STREAM copy {STREAM_COPY_GBS} GB/s; SciPy SpMVs "
                      f"{scipy_moved / t['scipy'] / 1e9:.1f} GB/s"),
    ]


def _solvers(quick: bool) -> list[Figure]:
    m = 250 if quick else 1000
    A = poisson2d(m)
    b = np.random.default_rng(1).standard_normal(A.shape[0])
    rtol = 1e-8
    solvers = {"scipy": lambda: spla.cg(A, b, rtol=rtol, maxiter=100000),
               "cg": lambda: cg(A, b, rtol=rtol, maxiter=100000),
               "ca_cg": lambda: ca_cg(A, b, s=4, rtol=rtol, maxiter=100000)}
    cg(A, b, rtol=1e-3)  # compile before the clock runs
    # ca_cg's two-basis matrix-powers kernel tunes online over its first calls, and its
    # late variants compile meanwhile: a solve to 1e-3 (340 outer steps) on an empty
    # cache had not decided yet, and the timed solve then ran the tuner's trials of the
    # naive variant.  Solve loosely until it has decided (its decision is per matrix
    # structure and depth, not per shifts), as a user's second solve finds it.
    probe = MatrixPowers(A, 4, basis="newton", shifts=np.ones(4), scales=np.ones(4))
    until_tuned(lambda: ca_cg(A, b, s=4, rtol=1e-3), lambda: probe.chosen_variant(4, 3),
                limit=300)
    results = {}
    # Twice each, the best kept: one solve is 10-40 s on a shared host, and asp's two
    # threads lose more to another tenant than SciPy's one.
    t = interleaved({k: (lambda k=k, f=f: results.__setitem__(k, f()))
                     for k, f in solvers.items()}, repeat=2, warmup=0)
    res = {k: np.linalg.norm(b - A @ x) / np.linalg.norm(b) for k, (x, _) in results.items()}
    group = f"CG {m}x{m} to 1e-8"
    detail = "; ".join(f"{k} {t[k]:.2f} s, info {results[k][1]}, res {res[k]:.1e}"
                       for k in solvers)
    return [
        Figure(group, "ca_cg (s=4) vs SciPy cg", t["scipy"] / t["ca_cg"], 3.0, detail=detail),
        Figure(group, "cg vs SciPy cg", t["scipy"] / t["cg"], 2.0, detail=detail),
    ]


def run(quick: bool = False) -> list[Figure]:
    return _powers(quick) + _solvers(quick)


if __name__ == "__main__":
    for f in run(quick=True):
        print(f"{f.group:28} {f.name:44} {f.value:8.3g} {f.unit:5} target {f.target} "
              f"{f.detail}")
