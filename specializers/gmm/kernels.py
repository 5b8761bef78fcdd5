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

:class:`EMStepper` is what the two public faces use: it runs the tuned
variant (or a forced one), turns the kernel's centred statistics into
scikit-learn's M-step, and falls back to :mod:`specializers.gmm.reference`
with one :class:`~asp.errors.AspFallbackWarning` when specialization fails.
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
from asp.errors import AspFallbackWarning, LoadError, SpecializationError
from asp.jit import build
from asp.runtime import generator_fingerprint
from asp.tune import Tuning

from . import reference as ref

__all__ = ["BLOCKS", "PAR_MIN_WORK", "VARIANTS", "EMKernels", "EMStepper", "kernels_for",
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


# The kernels keep per-thread working sets on the stack (an event block, the
# block's log-probabilities, one component's statistics); past this they could
# overflow an OpenMP thread's stack, so larger problems run the NumPy reference.
STACK_LIMIT = 1 << 20


def stack_bytes(m: int, d: int) -> int:
    """The largest per-thread stack footprint of any variant, in bytes."""
    b = max(BLOCKS)
    return 8 * (2 * d * b + m * b + m * d + 1 + d + d * d)


def n_bucket(n: int) -> int:
    """Events are tuned per power-of-4 bucket: nearby sizes share a winner."""
    return 4 ** max(0, math.ceil(math.log(max(n, 1), 4)))


class EMKernels:
    """The compiled variants for one (M, D, kind, dtype), called through ctypes."""

    def __init__(self, m: int, d: int, kind: str, dtype):
        self.m, self.d, self.kind, self.dtype = m, d, kind, np.dtype(dtype)
        self.name = f"gmm.em[{kind},M={m},D={d},{self.dtype.name}]"
        if stack_bytes(m, d) > STACK_LIMIT:
            raise SpecializationError(
                f"M={m}, D={d} is too large for the kernels' per-thread stack buffers "
                f"({stack_bytes(m, d) >> 10} KiB > {STACK_LIMIT >> 10} KiB)", kernel=self.name)
        try:
            source = render_source(m, d, kind, self.dtype)
        except Exception as exc:  # a template bug must fall back, not crash the fit
            raise SpecializationError(f"rendering the EM template failed: {exc}",
                                      kernel=self.name) from None
        self.lib = build(source, kernel=self.name, name="gmm_em")
        self.fns = {v: self._fn(f"gmm_em_{v}", 10) for v in VARIANTS}
        self.logprob = self._fn("gmm_logprob", 7)
        self.nstat = 1 + d + (d * d if kind == "full" else d)

    def _fn(self, symbol: str, nargs: int):
        try:
            fn = getattr(self.lib.cdll, symbol)
        except AttributeError:
            raise LoadError(f"symbol {symbol!r} missing", kernel=self.name) from None
        nptr = 6 if symbol == "gmm_logprob" else 7
        fn.argtypes = ([ctypes.c_int64] + [ctypes.c_void_p] * nptr
                       + [ctypes.c_int64] * (nargs - 1 - nptr))
        fn.restype = ctypes.c_int
        return fn

    def em(self, variant: str, X: np.ndarray, kp: tuple, work: np.ndarray | None, *,
           e_only: bool = False):
        """Run one variant: (sum of log p(x), stats of shape (M, NSTAT)).

        ``e_only`` skips the statistics (zero): the E-step alone, for benchmarks."""
        mu, P, logc = kp
        stats = np.empty((self.m, self.nstat))
        ll = np.empty(1)
        rc = self.fns[variant](X.shape[0], X.ctypes.data, mu.ctypes.data, P.ctypes.data,
                               logc.ctypes.data, stats.ctypes.data, ll.ctypes.data,
                               None if work is None else work.ctypes.data,
                               threads_for(X.shape[0], self.m, self.d), int(e_only))
        if rc:
            raise MemoryError(f"{self.name}: out of memory in variant {variant}")
        return float(ll[0]), stats

    def weighted_log_prob(self, X: np.ndarray, kp: tuple) -> np.ndarray:
        mu, P, logc = kp
        out = np.empty((X.shape[0], self.m))
        self.logprob(X.shape[0], X.ctypes.data, mu.ctypes.data, P.ctypes.data,
                     logc.ctypes.data, out.ctypes.data, threads_for(X.shape[0], self.m, self.d))
        return out


_kernels: dict[tuple, EMKernels] = {}
_tunings: dict[str, Tuning] = {}


def kernels_for(m: int, d: int, cvtype: str, dtype) -> EMKernels:
    """The compiled kernels (built once per process, cached on disk); raises
    :class:`SpecializationError` if they cannot be built."""
    key = (m, d, kind_of(cvtype), np.dtype(dtype).name)
    k = _kernels.get(key)
    if k is None:
        k = _kernels[key] = EMKernels(m, d, kind_of(cvtype), dtype)
    return k


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


def params_from_stats(stats: np.ndarray, old: ref.Params, reg_covar: float,
                      dtype) -> ref.Params:
    """scikit-learn's M-step from statistics centred on the old means ``c``.

    With d = x - c, s = sum r d, S = sum r d d^T and e = new mean - c,
    sum r (x - mean)(x - mean)^T = S - s e^T - e s^T + (sum r) e e^T exactly,
    so no large sums cancel.
    """
    dtype = np.dtype(dtype)
    m, d = old.means.shape
    c = np.asarray(old.means, dtype=np.float64)
    sumr = stats[:, 0]
    s = stats[:, 1:1 + d]
    nk = sumr + 10 * np.finfo(dtype).eps
    means = (s + c * sumr[:, None]) / nk[:, None]
    e = means - c
    cvtype = old.cvtype
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
    cov = cov.astype(dtype)
    return ref.Params(cvtype, (nk / nk.sum()).astype(dtype), means.astype(dtype), cov,
                      ref.precision_cholesky(cov, cvtype))


def _fallback(exc: SpecializationError) -> None:
    if config.strict():
        raise exc
    warnings.warn(f"{exc}; running the NumPy reference EM instead", AspFallbackWarning,
                  stacklevel=4)


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
        self.kernels: EMKernels | None = None
        self.last_variant = "python"
        self._work: np.ndarray | None = None
        if python:
            return
        if config.jit_disabled():  # asked for: the NumPy reference EM, silently
            return
        try:
            self.kernels = kernels_for(m, d, cvtype, dtype)
        except SpecializationError as exc:
            _fallback(exc)

    @property
    def native(self) -> bool:
        return self.kernels is not None

    def _tuning(self, n: int) -> Tuning:
        sig = (f"M={self.m} D={self.d} N~{n_bucket(n)} cv={self.cvtype} "
               f"dtype={self.dtype.name} threads={config.num_threads()}")
        t = _tunings.get(sig)
        if t is None:
            t = _tunings[sig] = Tuning("gmm.em", sig, list(VARIANTS),
                                       code=generator_fingerprint(__name__))
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
        if not np.isfinite(ll):
            raise ValueError("the log-likelihood is not finite: X has values too large "
                             "for the current parameters (scale the input data)")
        return ll / X.shape[0], params_from_stats(stats, p, reg_covar, self.dtype)

    def weighted_log_prob(self, X: np.ndarray, p: ref.Params) -> np.ndarray:
        """log w_k + log N(x | k), shape (N, M), in X's dtype."""
        if self.kernels is None:
            return ref.weighted_log_prob(X, p)
        return self.kernels.weighted_log_prob(X, kernel_params(p)).astype(X.dtype, copy=False)
