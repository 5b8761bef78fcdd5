"""Generated EM kernels: render the Mako template, compile, pick a variant, run.

One shared object per (M, D, kind, dtype) holds every variant (``kind`` is
``full`` for full/tied mixtures and ``diag`` for diag/spherical ones).  The
variants differ in how the work is split over threads:

* ``events_b1``: parallel over contiguous ranges of events, one event at a
  time, per-thread partial sums reduced at the end;
* ``events_b32``, ``events_b128``: the same, but events go in transposed blocks
  so the inner loops run across events in SIMD lanes;
* ``components``: a responsibilities pass parallel over events, then a
  statistics pass parallel over components (no reduction, an N x M buffer).

Beside the variants, the same object holds ``gmm_logprob`` (the blocked
E-step alone: log-probabilities and/or labels, for ``predict``, ``score_samples``
and the final E-step of ``fit_predict``) and ``gmm_mstats`` (the M-step from
given responsibilities: the initialisation of a ``full`` mixture).

:class:`EMStepper` is what the public faces use: it runs the tuned variant (or
a forced one), turns the kernel's centred statistics into scikit-learn's
M-step, and falls back to :mod:`specializers.gmm.reference` with one
:class:`~asp.errors.AspFallbackWarning` when the kernels cannot be had, for
whatever reason (template, compiler, cache directory, disk): building raises
only :class:`~asp.errors.SpecializationError`, naming the kernel and the stage.
"""
from __future__ import annotations

import ctypes
import math
import time
import warnings
from functools import lru_cache
from pathlib import Path

import numpy as np
from mako.template import Template

from asp import config
from asp.errors import AspFallbackWarning, CompileError, LoadError, SpecializationError
from asp.jit import build
from asp.runtime import generator_fingerprint
from asp.tune import Tuning

from . import reference as ref

__all__ = ["BLOCKS", "PAR_MIN_WORK", "VARIANTS", "EMKernels", "EMStepper", "kernel_params",
           "kernels_for", "moments_from_stats", "native_kernels", "params_from_stats",
           "render_source", "threads_for"]

BLOCKS = (1, 32, 128)  # blocked variants work in chunks of 32 events (4 SIMD vectors of 8)
assert all(b == 1 or b % 32 == 0 for b in BLOCKS)
# The first is what ASP_TUNE=off runs: the blocked kernel that wins on most shapes.
VARIANTS = tuple(f"events_b{b}" for b in sorted(BLOCKS, reverse=True)) + ("components",)
_TEMPLATE = Path(__file__).with_name("templates") / "em.c.mako"
_CTYPES = {np.dtype(np.float64): "double", np.dtype(np.float32): "float"}
_LOG2PI = math.log(2 * math.pi)


def kind_of(cvtype: str) -> str:
    return "full" if cvtype in ("full", "tied") else "diag"


@lru_cache(maxsize=1)
def _template() -> Template:
    return Template(filename=str(_TEMPLATE))


def render_source(m: int, d: int, kind: str, dtype) -> str:
    """The C source of every variant for one (M, D, kind, dtype)."""
    return _template().render(M=m, D=d, full=(kind == "full"),
                              ctype=_CTYPES[np.dtype(dtype)], blocks=BLOCKS)


# Below this many (event, component, feature) triples one thread is faster: waking
# an OpenMP team and meeting at its barrier costs tens of microseconds, and
# milliseconds on a loaded machine when a thread is descheduled.
PAR_MIN_WORK = 1 << 17


def threads_for(n: int, m: int, d: int) -> int:
    """Threads for a kernel call over ``n`` events."""
    return 1 if n * m * d < PAR_MIN_WORK else config.num_threads()


def n_bucket(n: int) -> int:
    """Events are tuned per power-of-4 bucket: nearby sizes share a winner."""
    return 4 ** max(0, math.ceil(math.log(max(n, 1), 4)))


class EMKernels:
    """The compiled variants for one (M, D, kind, dtype), called through ctypes.

    Construction raises only :class:`SpecializationError` (naming this kernel and
    the stage that failed), whatever went wrong: a template bug, a compiler
    error, a cache directory that cannot be written, a full disk.
    """

    def __init__(self, m: int, d: int, kind: str, dtype):
        self.m, self.d, self.kind, self.dtype = m, d, kind, np.dtype(dtype)
        self.name = f"gmm.em[{kind},M={m},D={d},{self.dtype.name}]"
        try:
            source = render_source(m, d, kind, self.dtype)
        except Exception as exc:  # a template bug must fall back, not crash the fit
            raise SpecializationError(f"rendering the EM template failed: {_why(exc)}",
                                      kernel=self.name) from exc
        try:
            self.lib = build(source, kernel=self.name, name="gmm_em")
        except SpecializationError as exc:
            raise exc.with_context(kernel=self.name) from exc.__cause__
        except OSError as exc:
            # A cache directory that cannot be made or written (read-only, HOME
            # unwritable), a full disk ([Errno 27] File too large), ...
            raise CompileError(f"building the EM kernels failed, the kernel cache could not "
                               f"be used: {_why(exc)}", kernel=self.name) from exc
        except Exception as exc:
            raise CompileError(f"building the EM kernels failed: {_why(exc)}",
                               kernel=self.name) from exc
        try:
            self.fns = {v: self._fn(f"gmm_em_{v}", [ctypes.c_int64] + [ctypes.c_void_p] * 7
                                    + [ctypes.c_int64] * 2) for v in VARIANTS}
            self.logprob = self._fn("gmm_logprob", [ctypes.c_int64] + [ctypes.c_void_p] * 6
                                    + [ctypes.c_int64])
            self.mstats_fn = self._fn("gmm_mstats", [ctypes.c_int64] + [ctypes.c_void_p] * 4
                                      + [ctypes.c_int64] * 2)
        except SpecializationError as exc:
            raise exc.with_context(kernel=self.name) from exc.__cause__
        except Exception as exc:
            raise LoadError(f"binding the EM kernels failed: {_why(exc)}",
                            kernel=self.name) from exc
        self.nstat = 1 + d + (d * d if kind == "full" else d)

    def _fn(self, symbol: str, argtypes: list):
        try:
            fn = getattr(self.lib.cdll, symbol)
        except AttributeError:
            raise LoadError(f"symbol {symbol!r} missing", kernel=self.name) from None
        fn.argtypes = argtypes
        fn.restype = ctypes.c_int
        return fn

    def _check(self, rc: int, what: str) -> None:
        if rc:
            raise MemoryError(f"{self.name}: out of memory in {what}")

    def _guard(self, X: np.ndarray) -> None:
        # The C reads X as N x D of the compiled type, row-major: anything else
        # would be read as garbage, so it is refused before the call.
        if not (isinstance(X, np.ndarray) and X.dtype == self.dtype and X.ndim == 2
                and X.shape[1] == self.d and X.flags.c_contiguous and X.flags.aligned):
            raise ValueError(f"X: {self.name} expects a C-contiguous (N, {self.d}) "
                             f"{self.dtype.name} array, got {getattr(X, 'shape', '?')} "
                             f"{getattr(X, 'dtype', type(X).__name__)}")

    def em(self, variant: str, X: np.ndarray, kp: tuple, work: np.ndarray | None, *,
           e_only: bool = False):
        """Run one variant: (sum of log p(x), stats of shape (M, NSTAT)).

        ``e_only`` skips the statistics (zero): the E-step alone."""
        self._guard(X)
        mu, P, logc = kp
        stats = np.empty((self.m, self.nstat))
        ll = np.empty(1)
        rc = self.fns[variant](X.shape[0], X.ctypes.data, mu.ctypes.data, P.ctypes.data,
                               logc.ctypes.data, stats.ctypes.data, ll.ctypes.data,
                               None if work is None else work.ctypes.data,
                               threads_for(X.shape[0], self.m, self.d), int(e_only))
        self._check(rc, f"variant {variant}")
        return float(ll[0]), stats

    def estep(self, X: np.ndarray, kp: tuple, *, log_prob: bool = True,
              labels: bool = False) -> tuple[np.ndarray | None, np.ndarray | None]:
        """(log w_k + log N(x | k) of shape (N, M), argmax labels (N,)); each only
        if asked for."""
        self._guard(X)
        mu, P, logc = kp
        n = X.shape[0]
        out = np.empty((n, self.m)) if log_prob else None
        lab = np.empty(n, dtype=np.int64) if labels else None
        rc = self.logprob(n, X.ctypes.data, mu.ctypes.data, P.ctypes.data, logc.ctypes.data,
                          None if out is None else out.ctypes.data,
                          None if lab is None else lab.ctypes.data,
                          threads_for(n, self.m, self.d))
        self._check(rc, "the E-step")
        return out, lab

    def weighted_log_prob(self, X: np.ndarray, kp: tuple) -> np.ndarray:
        return self.estep(X, kp)[0]

    def mstats(self, X: np.ndarray, resp: np.ndarray, *,
               centre: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(stats (M, NSTAT) centred on c, c (M, D)) from responsibilities ``resp``
        (N, M); c is the responsibility-weighted mean of each component, or 0
        (raw sums) when ``centre`` is false."""
        self._guard(X)
        resp = np.ascontiguousarray(resp, dtype=X.dtype)
        if resp.shape != (X.shape[0], self.m):
            raise ValueError(f"resp: expected shape {(X.shape[0], self.m)}, got {resp.shape}")
        c = np.empty((self.m, self.d))
        stats = np.empty((self.m, self.nstat))
        rc = self.mstats_fn(X.shape[0], X.ctypes.data, resp.ctypes.data, c.ctypes.data,
                            stats.ctypes.data, threads_for(X.shape[0], self.m, self.d),
                            int(centre))
        self._check(rc, "the initial M-step")
        return stats, c


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


_kernels: dict[tuple, EMKernels] = {}
_tunings: dict[str, Tuning] = {}


def kernels_for(m: int, d: int, cvtype: str, dtype) -> EMKernels:
    """The compiled kernels (built once per process, cached on disk); raises
    :class:`SpecializationError`, and nothing else, if they cannot be built."""
    key = (m, d, kind_of(cvtype), np.dtype(dtype).name)
    k = _kernels.get(key)
    if k is None:
        try:
            k = EMKernels(m, d, kind_of(cvtype), dtype)
        except SpecializationError:
            raise
        except Exception as exc:  # planning the kernels must never escape as a crash
            raise SpecializationError(f"preparing the EM kernels failed: {_why(exc)}",
                                      kernel=f"gmm.em[{cvtype},M={m},D={d}]") from exc
        _kernels[key] = k
    return k


def native_kernels(m: int, d: int, cvtype: str, dtype, *,
                   instead: str = "running the NumPy reference EM instead",
                   stacklevel: int = 3) -> EMKernels | None:
    """The kernels, or None for the NumPy reference: silently when asked for
    (``ASP_DISABLE_JIT``), with one :class:`AspFallbackWarning` when they cannot
    be built, and never under ``ASP_STRICT=1`` (the error is raised)."""
    if config.jit_disabled():
        return None
    try:
        return kernels_for(m, d, cvtype, dtype)
    except SpecializationError as exc:
        if config.strict():
            raise
        warnings.warn(f"{exc}; {instead}", AspFallbackWarning, stacklevel=stacklevel + 1)
        return None


def kernel_params(p: ref.Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(means, P, log constants) in float64 as the kernels read them."""
    m, d = p.means.shape
    mu = np.ascontiguousarray(p.means, dtype=np.float64)
    pc = np.asarray(p.prec_chol, dtype=np.float64)
    if p.cvtype == "full":
        P = pc
    elif p.cvtype == "tied":
        P = np.broadcast_to(pc, (m, d, d))
    elif p.cvtype == "diag":
        P = pc
    else:
        P = np.broadcast_to(pc[:, None], (m, d))
    log_det = np.broadcast_to(ref.log_det_cholesky(pc, p.cvtype, d), (m,))
    with np.errstate(divide="ignore"):
        logc = np.log(np.asarray(p.weights, dtype=np.float64)) + log_det - 0.5 * d * _LOG2PI
    return mu, np.ascontiguousarray(P), np.ascontiguousarray(logc)


def moments_from_stats(stats: np.ndarray, c: np.ndarray, reg_covar: float, cvtype: str,
                       dtype) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(nk, means, covariances) as scikit-learn computes them, from statistics
    centred on ``c`` (M, D).

    With d = x - c, s = sum r d, S = sum r d d^T and e = new mean - c,
    sum r (x - mean)(x - mean)^T = S - s e^T - e s^T + (sum r) e e^T exactly,
    so no large sums cancel.
    """
    dtype = np.dtype(dtype)
    m, d = c.shape
    c = np.asarray(c, dtype=np.float64)
    sumr = stats[:, 0]
    s = stats[:, 1:1 + d]
    nk = sumr + 10 * np.finfo(dtype).eps
    means = (s + c * sumr[:, None]) / nk[:, None]
    e = means - c
    if cvtype in ("full", "tied"):
        S = stats[:, 1 + d:].reshape(m, d, d)
        S = np.triu(S) + np.triu(S, 1).transpose(0, 2, 1)  # kernels fill the upper half
        se = s[:, :, None] * e[:, None, :]
        S = S - se - se.transpose(0, 2, 1) + sumr[:, None, None] * e[:, :, None] * e[:, None, :]
        if cvtype == "full":
            cov = S / nk[:, None, None]
            cov[:, np.arange(d), np.arange(d)] += reg_covar
        else:
            cov = S.sum(axis=0) / nk.sum()
            cov.flat[:: d + 1] += reg_covar
    else:
        S = stats[:, 1 + d:]
        cov = (S - 2 * s * e + sumr[:, None] * e * e) / nk[:, None] + reg_covar
        if cvtype == "spherical":
            cov = cov.mean(axis=1)
    return nk, means, cov.astype(dtype)


def params_from_stats(stats: np.ndarray, old: ref.Params, reg_covar: float,
                      dtype) -> ref.Params:
    """scikit-learn's M-step from statistics centred on the old means."""
    dtype = np.dtype(dtype)
    nk, means, cov = moments_from_stats(stats, old.means, reg_covar, old.cvtype, dtype)
    return ref.Params(old.cvtype, (nk / nk.sum()).astype(dtype), means.astype(dtype), cov,
                      ref.precision_cholesky(cov, old.cvtype))


class EMStepper:
    """EM iterations for one public call (one ``fit``/``train``/``predict``).

    Specializes on construction; if that fails it warns once (or raises under
    ``ASP_STRICT=1``) and every step runs the NumPy reference.  ``variant``
    forces one variant (tests use it); otherwise the tuner chooses per
    (M, D, N bucket, cvtype, dtype) and remembers the choice on disk.
    """

    def __init__(self, m: int, d: int, cvtype: str, dtype, *, variant: str | None = None,
                 python: bool = False):
        if variant is not None and variant not in VARIANTS:
            raise ValueError(f"variant={variant!r}: expected one of {', '.join(VARIANTS)}")
        self.m, self.d, self.cvtype, self.dtype = m, d, cvtype, np.dtype(dtype)
        self.forced = variant
        self.last_variant = "python"
        self._work: np.ndarray | None = None
        self.kernels: EMKernels | None = None if python else native_kernels(
            m, d, cvtype, dtype, stacklevel=3)

    @property
    def native(self) -> bool:
        return self.kernels is not None

    def _tuning(self, n: int) -> Tuning:
        sig = (f"M={self.m} D={self.d} N~{n_bucket(n)} cv={self.cvtype} "
               f"dtype={self.dtype.name} threads={config.num_threads()}")
        t = _tunings.get(sig)
        if t is None:
            try:
                t = Tuning("gmm.em", sig, list(VARIANTS), code=generator_fingerprint(__name__))
            except Exception:
                # The tuning database is in the cache directory; if that cannot be
                # opened the compiled kernels still run, untuned (ASP_TUNE=off's pick).
                t = Tuning("gmm.em", sig, list(VARIANTS), mode="off")
            _tunings[sig] = t
        return t

    def step(self, X: np.ndarray, p: ref.Params, reg_covar: float) -> tuple[float, ref.Params]:
        """One EM iteration: (lower bound under ``p``, new parameters)."""
        if self.kernels is None:
            return ref.em_iteration(X, p, reg_covar)
        kp = kernel_params(p)
        tuning = None if self.forced else self._tuning(X.shape[0])
        variant = self.forced or tuning.pick()
        work = None
        if variant == "components":
            if self._work is None or self._work.shape[0] != X.shape[0]:
                self._work = np.empty((X.shape[0], self.m))
            work = self._work
        t0 = time.perf_counter()
        ll, stats = self.kernels.em(variant, X, kp, work)
        if tuning is not None:
            tuning.record(variant, time.perf_counter() - t0)
        self.last_variant = variant
        _check_finite(ll)
        return ll / X.shape[0], params_from_stats(stats, p, reg_covar, self.dtype)

    def initial_moments(self, X: np.ndarray, resp: np.ndarray,
                        reg_covar: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(nk, means, covariances) from responsibilities, as scikit-learn's
        ``_estimate_gaussian_parameters`` (the M-step of an initialisation).

        ``full`` takes centred sums from the kernel, as scikit-learn centres
        its full covariances; diag and spherical take raw sums and follow
        scikit-learn's raw-moment formula in X's dtype (sum r x^2 / nk - mu^2),
        so that its rounding, large when covariances are tiny, is
        scikit-learn's.  ``tied`` is two matrix products (X^T X - sum nk mu mu^T,
        which is not a weighted sum when, as at initialisation, rows of
        ``resp`` do not sum to 1): NumPy's."""
        if self.kernels is None or self.cvtype == "tied":
            return ref.estimate_parameters(X, resp, reg_covar, self.cvtype)
        dt = self.dtype
        if self.cvtype == "full":
            stats, c = self.kernels.mstats(X, resp)
            nk, means, cov = moments_from_stats(stats, c, reg_covar, self.cvtype, dt)
            return nk.astype(dt), means.astype(dt), cov
        d = self.d
        stats = self.kernels.mstats(X, resp, centre=False)[0].astype(dt)
        nk = stats[:, 0] + 10 * np.finfo(dt).eps
        means = stats[:, 1:1 + d] / nk[:, None]
        cov = stats[:, 1 + d:] / nk[:, None] - means ** 2 + reg_covar
        if self.cvtype == "spherical":
            cov = cov.mean(axis=1)
        return nk, means, cov

    def weighted_log_prob(self, X: np.ndarray, p: ref.Params) -> np.ndarray:
        """log w_k + log N(x | k), shape (N, M), in X's dtype."""
        if self.kernels is None:
            return ref.weighted_log_prob(X, p)
        return self.kernels.estep(X, kernel_params(p))[0].astype(X.dtype, copy=False)

    def labels(self, X: np.ndarray, p: ref.Params) -> np.ndarray:
        """The most likely component of each event (np.argmax of the above)."""
        if self.kernels is None:
            return np.argmax(ref.weighted_log_prob(X, p), axis=1)
        return self.kernels.estep(X, kernel_params(p), log_prob=False, labels=True)[1]

    def log_likelihood(self, X: np.ndarray, p: ref.Params) -> float:
        """sum over X of log p(x): the fused kernel's E-step alone."""
        if self.kernels is None:
            wlp = ref.weighted_log_prob(X, p).astype(np.float64)
            mx = wlp.max(axis=1, keepdims=True)
            return float((mx[:, 0] + np.log(np.exp(wlp - mx).sum(axis=1))).sum())
        ll, _ = self.kernels.em(VARIANTS[0], X, kernel_params(p), None, e_only=True)
        _check_finite(ll)
        return ll


def _check_finite(ll: float) -> None:
    if not np.isfinite(ll):
        raise ValueError("the log-likelihood is not finite: X has values too large "
                         "for the current parameters (scale the input data)")
