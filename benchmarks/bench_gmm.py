"""GMM EM: generated C/OpenMP against scikit-learn, side by side in one run.

Targets (issues 4 and 12), N=200,000 events, D=16, M=16, float64:

* ``full`` and ``diag``: >= 5x faster per EM iteration than
  ``sklearn.mixture.GaussianMixture``, same start, same number of iterations,
  results within 1e-6 relative (checked here);
* a whole real fit, ``fit`` and ``fit_predict`` from scikit-learn's
  ``init_params="random_from_data"`` (initialisation, 3 EM iterations and, for
  ``fit_predict``, the final E-step all timed), >= 5x scikit-learn's; and the
  first EM iteration from that start (tiny covariances, log densities near
  -1e9: once 13x slower than later iterations, from subnormal arithmetic) on
  its own, >= 5x;
* achieved GFLOP/s of the ``full`` E-step and M-step beside the machine peak,
  estimated as 2 cores x clock x 16 double FLOP/cycle (AVX2: two 4-wide FMA
  pipes), the clock read from ``/proc/cpuinfo`` (``cpu MHz``);
* peak RSS of a fit no more than scikit-learn's (each measured in its own
  subprocess, which also holds the data).

One "EM iteration" is exactly what scikit-learn's fit loop does per iteration
(``_e_step`` + ``_m_step`` + lower bound) against our ``EMStepper.step`` (one
fused pass through the EM kernel's tuned hot entry + the small M-step finish);
both are timed from the same parameters, alternately, best of several, with a pause
after each call (:data:`SETTLE`) so that neither runs while the other's idle threads
still spin.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

from benchmarks.harness import Figure, interleaved

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

M, D = 16, 16
ITERS = 3  # EM iterations per timed call
# Seconds asleep after each timed call: OpenBLAS's threads spin for ~0.1-0.2 s after
# scikit-learn's products, and on 2 cores they halved the speed of asp's step timed
# next (38 ms instead of 19); each library is timed as it runs on its own.
SETTLE = 0.3


def make_data(n: int, seed: int = 0) -> np.ndarray:
    """16 Gaussian clusters, built in place in chunks so that making the data
    costs no more memory than the data (the RSS figures measure the fit)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=4.0, size=(M, D))
    scales = rng.uniform(0.5, 2.0, size=(M, D))
    X = rng.standard_normal(size=(n, D))
    for lo in range(0, n, 8192):
        labels = rng.integers(0, M, size=min(8192, n - lo))
        X[lo:lo + len(labels)] *= scales[labels]
        X[lo:lo + len(labels)] += centers[labels]
    return X


def start_params(X: np.ndarray, cvtype: str) -> dict:
    """The shared start: scikit-learn's 'random_from_data' initialisation, on a
    subset (cheap, and it keeps the setup's memory below the fit's)."""
    from sklearn.mixture import GaussianMixture

    init = GaussianMixture(M, covariance_type=cvtype, max_iter=0,
                           init_params="random_from_data", random_state=0).fit(X[:20_000])
    return dict(weights_init=init.weights_ / init.weights_.sum(), means_init=init.means_,
                precisions_init=init.precisions_)


def peak_mhz() -> float:
    mhz = []
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.startswith("cpu MHz")]
    except OSError:
        pass
    return max(mhz) if mhz else 2500.0


def flops_per_pair(d: int) -> tuple[int, int]:
    """Useful FLOPs per (event, component) of the full E-step and M-step.

    E: x - mu (d), y = d U with U upper triangular (d(d+1) as FMAs count 2),
    sum y^2 (2d).  M: x - mu (d), sum r d (2d), r d (d), r d d^T upper half
    (d(d+1)).  exp/log are not counted.
    """
    return d + d * (d + 1) + 2 * d, d + 2 * d + d + d * (d + 1)


_RSS_SCRIPT = r"""
import json, resource, sys, warnings
sys.path.insert(0, {root!r})
from benchmarks.bench_gmm import make_data, start_params
warnings.simplefilter("ignore")
which, cvtype, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
X = make_data(n)
start = start_params(X, cvtype)
if which == "asp":
    from specializers.gmm import GaussianMixture
else:
    from sklearn.mixture import GaussianMixture
GaussianMixture(16, covariance_type=cvtype, tol=0.0, max_iter={iters}, **start).fit(X)
# VmHWM belongs to this address space (fresh at exec); ru_maxrss would carry
# over the peak of the parent that forked us.
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
print(json.dumps(int(hwm[0].split()[1]) / 1024.0 if hwm else
                 resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0))
"""


def peak_rss(which: str, cvtype: str, n: int) -> float:
    code = _RSS_SCRIPT.format(root=ROOT, iters=ITERS)
    out = subprocess.run([sys.executable, "-c", code, which, cvtype, str(n)],
                         capture_output=True, text=True, timeout=900, cwd=ROOT)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    return float(out.stdout.strip().splitlines()[-1])


def _rel(a, b) -> float:
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def bench_cvtype(X: np.ndarray, cvtype: str, repeat: int) -> tuple[list[Figure], dict]:
    from sklearn.mixture import GaussianMixture as SkGM

    from specializers.gmm import reference as ref
    from specializers.gmm import stepper as S

    start = start_params(X, cvtype)
    p0 = ref.Params(cvtype, start["weights_init"], start["means_init"], None,
                    ref.precision_cholesky_from_precisions(start["precisions_init"], cvtype))
    sk = SkGM(M, covariance_type=cvtype, tol=0.0, max_iter=1, **start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X[:1000])  # only to make it a fitted estimator; run_sk resets parameters
    stepper = S.EMStepper(M, D, cvtype, X.dtype)
    p = p0
    # every variant built and checked before tuning starts
    stepper.em.specialization(*stepper.em_args(X, S.kernel_params(p)))
    while stepper.last_variant is None:  # online tuning, as a real fit would do it
        _, p = stepper.step(X, p, 1e-6)
    winner = stepper.last_variant

    def run_asp():
        q = p0
        for _ in range(ITERS):
            lb, q = stepper.step(X, q, 1e-6)
        return lb, q

    def run_sk():
        sk._set_parameters((p0.weights, p0.means, None, p0.prec_chol))
        for _ in range(ITERS):
            lpn, log_resp = sk._e_step(X)
            sk._m_step(X, log_resp)
            lb = sk._compute_lower_bound(log_resp, lpn)
        return lb

    best = interleaved({"asp": run_asp, "sklearn": run_sk}, repeat=repeat, warmup=1,
                       settle=SETTLE)
    lb_asp, q = run_asp()
    lb_sk = run_sk()
    err = max(_rel(q.weights, sk.weights_), _rel(q.means, sk.means_),
              _rel(q.covariances, sk.covariances_), abs(lb_asp - lb_sk) / abs(lb_sk))
    t_asp, t_sk = best["asp"] / ITERS, best["sklearn"] / ITERS
    figs = [
        Figure("gmm", f"{cvtype} EM iteration speed-up vs sklearn", t_sk / t_asp, 5.0,
               detail=f"asp {t_asp * 1e3:.1f} ms ({winner}), sklearn {t_sk * 1e3:.1f} ms "
                      f"per iteration, N={len(X)} D={D} M={M} float64"),
        Figure("gmm", f"{cvtype} max relative difference vs sklearn", err, 1e-6, unit="",
               better="lower", detail=f"after {ITERS} iterations from the same start"),
    ]
    info = {"t_asp": t_asp, "t_sk": t_sk, "winner": winner, "stepper": stepper, "p0": p0}
    return figs, info


def _fit_kwargs(cvtype: str) -> dict:
    return dict(covariance_type=cvtype, init_params="random_from_data", random_state=0,
                max_iter=ITERS, tol=0.0)


def bench_whole_fit(X: np.ndarray, cvtype: str, repeat: int) -> list[Figure]:
    """``fit`` and ``fit_predict`` from ``random_from_data``, everything timed."""
    from sklearn.mixture import GaussianMixture as SkGM

    from specializers.gmm import GaussianMixture as AspGM

    kw = _fit_kwargs(cvtype)
    fns = {"asp fit": lambda: AspGM(M, **kw).fit(X),
           "sklearn fit": lambda: SkGM(M, **kw).fit(X),
           "asp fit_predict": lambda: AspGM(M, **kw).fit_predict(X),
           "sklearn fit_predict": lambda: SkGM(M, **kw).fit_predict(X)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: 3 iterations on purpose
        best = interleaved(fns, repeat=repeat, warmup=1, settle=SETTLE)
        ours, sk = AspGM(M, **kw).fit(X), SkGM(M, **kw).fit(X)
        same_labels = bool(np.array_equal(AspGM(M, **kw).fit_predict(X),
                                          SkGM(M, **kw).fit_predict(X)))
    err = max(_rel(ours.weights_, sk.weights_), _rel(ours.means_, sk.means_),
              _rel(ours.covariances_, sk.covariances_))
    figs = []
    for what in ("fit", "fit_predict"):
        t_asp, t_sk = best[f"asp {what}"], best[f"sklearn {what}"]
        figs.append(Figure(
            "gmm", f"{cvtype} whole {what} speed-up vs sklearn", t_sk / t_asp, 5.0,
            detail=f"asp {t_asp * 1e3:.0f} ms, sklearn {t_sk * 1e3:.0f} ms; init_params="
                   f"'random_from_data', {ITERS} iterations, initialisation"
                   + (" and final E-step" if what == "fit_predict" else "") + " included"))
    figs.append(Figure("gmm", f"{cvtype} whole fit max relative difference vs sklearn", err,
                       1e-6, unit="", better="lower",
                       detail=f"weights, means, covariances; fit_predict labels "
                              f"{'identical' if same_labels else 'DIFFER'}"))
    return figs


def bench_first_iteration(X: np.ndarray, cvtype: str, repeat: int) -> Figure:
    """The first EM iteration from scikit-learn's ``random_from_data`` start on all of X."""
    from sklearn.mixture import GaussianMixture as SkGM

    from specializers.gmm import reference as ref
    from specializers.gmm import stepper as S

    sk = SkGM(M, **dict(_fit_kwargs(cvtype), max_iter=0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk.fit(X)
    start = sk._get_parameters()
    p0 = ref.Params(cvtype, sk.weights_, sk.means_, sk.covariances_, sk.precisions_cholesky_)
    stepper = S.EMStepper(M, D, cvtype, X.dtype)

    def run_sk():
        sk._set_parameters(start)
        lpn, log_resp = sk._e_step(X)
        sk._m_step(X, log_resp)
        return sk._compute_lower_bound(log_resp, lpn)

    best = interleaved({"asp": lambda: stepper.step(X, p0, sk.reg_covar), "sklearn": run_sk},
                       repeat=repeat, warmup=1, settle=SETTLE)
    return Figure("gmm", f"{cvtype} first EM iteration speed-up vs sklearn (random_from_data)",
                  best["sklearn"] / best["asp"], 5.0,
                  detail=f"asp {best['asp'] * 1e3:.1f} ms ({stepper.last_variant}), sklearn "
                         f"{best['sklearn'] * 1e3:.1f} ms; start from all {len(X)} events, "
                         f"log densities down to {ref.weighted_log_prob(X[:20_000], p0).min():.1e}")


def gflops_full(X: np.ndarray, info: dict, repeat: int) -> list[Figure]:
    """The winning EM variant's fused pass, and the E-step kernel alone (the same
    blocked quadratic forms and log-sum-exp, no statistics), both through their
    hot entries."""
    from specializers.gmm import stepper as S

    stepper, p0 = info["stepper"], info["p0"]
    kp = S.kernel_params(p0)
    best = interleaved({"e": lambda: stepper.log_likelihood(X, p0),
                        "em": lambda: stepper.statistics(X, kp)},
                       repeat=repeat, warmup=1)
    fe, fm = flops_per_pair(D)
    pairs = len(X) * M
    peak = 2 * peak_mhz() / 1e3 * 16
    g_e = fe * pairs / best["e"] / 1e9
    g_em = (fe + fm) * pairs / best["em"] / 1e9
    t_m = max(best["em"] - best["e"], 1e-9)
    g_m = fm * pairs / t_m / 1e9
    how = (f"peak {peak:.0f} GFLOP/s = 2 cores x {peak_mhz() / 1e3:.2f} GHz (/proc/cpuinfo) "
           "x 16 FLOP/cycle (AVX2 FMA, double)")
    return [
        Figure("gmm", "full E-step GFLOP/s", g_e, None, unit="GFLOP/s",
               detail=f"the E-step kernel (log-likelihood only), {best['e'] * 1e3:.1f} ms; "
                      f"{how}"),
        Figure("gmm", "full M-step GFLOP/s", g_m, None, unit="GFLOP/s",
               detail=f"fused time minus E-step time ({t_m * 1e3:.1f} ms); {how}"),
        Figure("gmm", "full fused E+M GFLOP/s", g_em, None, unit="GFLOP/s",
               detail=f"{info['winner']}, {best['em'] * 1e3:.1f} ms; "
                      f"{100 * g_em / peak:.0f}% of peak {peak:.0f} GFLOP/s"),
    ]


def run(quick: bool = False) -> list[Figure]:
    n = 20_000 if quick else 200_000
    repeat = 3 if quick else 5
    X = make_data(n)
    figures: list[Figure] = []
    for cvtype in ("full", "diag"):
        figs, info = bench_cvtype(X, cvtype, repeat)  # also tunes, as a first real fit would
        figures += figs
        figures.append(bench_first_iteration(X, cvtype, repeat))
        figures += bench_whole_fit(X, cvtype, 3 if quick else repeat)
        if cvtype == "full":
            figures += gflops_full(X, info, repeat)
    for cvtype in ("full", "diag"):
        rss_asp, rss_sk = peak_rss("asp", cvtype, n), peak_rss("sklearn", cvtype, n)
        figures.append(Figure("gmm", f"{cvtype} peak RSS vs sklearn", rss_asp / rss_sk, 1.0,
                              better="lower",
                              detail=f"asp {rss_asp:.0f} MiB, sklearn {rss_sk:.0f} MiB "
                                     f"(separate processes, fit of {ITERS} iterations)"))
    return figures


if __name__ == "__main__":
    t0 = time.time()
    for f in run(quick="--quick" in sys.argv):
        print(json.dumps(f.as_dict()))
    print(f"{time.time() - t0:.0f} s", file=sys.stderr)
