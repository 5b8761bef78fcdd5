"""GMM's kernels in the template style: rendered from ``templates/em.c.mako``, run by the core.

Three kernel families, each a :class:`~asp.runtime.Specializer` for one
(kind, M, D) whose signature is X's dtype (``kind`` is ``full`` for full and
tied mixtures, ``diag`` for diag and spherical ones), each run by one
:class:`~asp.runtime.JitKernel` per process (:func:`kernel`):

* ``em``: one fused EM pass, (sum log p(x), statistics centred on the means), in
  four variants that split the work over threads differently:

  - ``events_b1``: parallel over contiguous ranges of events, one event at a
    time, per-thread partial sums reduced at the end;
  - ``events_b32``, ``events_b128``: the same, but events go in transposed
    blocks so the inner loops run across events in SIMD lanes;
  - ``components``: a responsibilities pass parallel over events into the N x M
    ``work`` array, then a statistics pass parallel over components;

* ``estep``: the E-step alone (log-probabilities, labels and/or the
  log-likelihood), for ``predict``, ``score_samples``, the final E-step of
  ``fit_predict`` and the likelihood a ``train`` returns;
* ``mstats``: the M-step statistics from given responsibilities (the
  initialisation).

``plan`` renders each kernel's body from a ``<%def>`` of the template
(:mod:`specializers.gmm.source`) and wraps it with
:func:`~asp.codegen.template.template_function`, so every argument reaches the C
by name and is guarded in C (dtype, shape, writeability); helpers are IR
functions.  The core builds, caches, records, checks every variant against
``run_python`` (the NumPy of :mod:`specializers.gmm.reference`), tunes per
power-of-4 bucket of N, and falls back to ``run_python`` with one warning.
"""
from __future__ import annotations

import hashlib
import math
from abc import abstractmethod

import numpy as np

from asp import config
from asp.codegen.template import template_function
from asp.ir import platform as ir
from asp.runtime import ArgSpec, JitKernel, Plan, Prepared, Specializer, Variant, as_native

from . import reference as ref
from . import source

__all__ = ["BLOCKS", "FAMILIES", "PAR_MIN_WORK", "VARIANTS", "EMKernel", "EStepKernel",
           "GMMKernel", "MStatsKernel", "check_problem", "kernel", "kind_of", "n_bucket",
           "threads_for"]

BLOCKS = (1, 32, 128)  # blocked variants work in chunks of 32 events (4 SIMD vectors of 8)
assert all(b == 1 or b % 32 == 0 for b in BLOCKS)
# The first is what ASP_TUNE=off runs: the blocked kernel that wins on most shapes.
VARIANTS = tuple(f"events_b{b}" for b in sorted(BLOCKS, reverse=True)) + ("components",)
ESTEP_BLOCK = max(BLOCKS)  # the E-step alone goes in the largest blocks
_CTYPES = {np.dtype(np.float64): "double", np.dtype(np.float32): "float"}
_F64 = np.dtype(np.float64)

# Below this many (event, component, feature) triples one thread is faster: waking
# an OpenMP team and meeting at its barrier costs tens of microseconds, and
# milliseconds on a loaded machine when a thread is descheduled.
PAR_MIN_WORK = 1 << 17


def kind_of(cvtype: str) -> str:
    return "full" if cvtype in ("full", "tied") else "diag"


def n_bucket(n: int) -> tuple[int, tuple[int, int]]:
    """Events are tuned per power-of-4 bucket, nearby sizes sharing a winner: the
    bucket's size 4^k (the power at or above ``n``) and its range [lo, hi) of N."""
    k = 0
    while 4 ** k < n:
        k += 1
    return 4 ** k, ((4 ** (k - 1) + 1 if k else 0), 4 ** k + 1)


def threads_for(n: int, m: int, d: int) -> int:
    """Threads for a kernel call over ``n`` events: one below :data:`PAR_MIN_WORK`
    triples (``ASP_PARALLEL_THRESHOLD`` overrides it; 0 always runs the team)."""
    return 1 if n * m * d < config.parallel_threshold(PAR_MIN_WORK) else config.num_threads()


# -- the specializers ------------------------------------------------------------------------
class GMMKernel(Specializer):
    """What the three families share: (kind, M, D), the template, argument checks."""

    family = ""
    names: tuple[str, ...] = ()
    blocks: tuple[int, ...] = ()
    errors: tuple[tuple[type[Exception], str], ...] = ()

    def __init__(self, kind: str, m: int, d: int):
        if kind not in ("full", "diag"):
            raise ValueError(f"kind={kind!r}: expected 'full' or 'diag'")
        self.kind, self.m, self.d = kind, int(m), int(d)
        self.full = kind == "full"
        self.nstat = 1 + d + (d * d if self.full else d)
        self.name = f"gmm.{self.family}[{kind},M={m},D={d}]"

    def code_digest(self) -> str:
        # The signature is X's dtype; everything else the C depends on is here.
        return hashlib.sha256(repr((self.name, BLOCKS, VARIANTS, ESTEP_BLOCK,
                                    source.template_digest())).encode()).hexdigest()

    # -- arguments ----------------------------------------------------------------------
    def _fail(self, exc: type[Exception], what: str) -> Exception:
        return exc(f"{self.name}: {what}")

    def _unpack(self, args: tuple) -> tuple:
        if len(args) != len(self.names):
            raise self._fail(TypeError, f"expected {len(self.names)} arguments "
                                        f"({', '.join(self.names)}), got {len(args)}")
        return args

    def _data(self, X, name: str = "X") -> tuple[np.ndarray, bool]:
        if not isinstance(X, np.ndarray) or X.dtype not in _CTYPES:
            raise self._fail(TypeError, f"{name}: expected a float32 or float64 array, got "
                                        f"{getattr(X, 'dtype', type(X).__name__)}")
        if X.ndim != 2 or X.shape[1] != self.d:
            raise self._fail(ValueError, f"{name}: expected shape (N, {self.d}), got "
                                         f"{X.shape}")
        native = as_native(X)
        return native, native is X

    def _array(self, a, name: str, shape: tuple[int, ...], dtype=_F64, *,
               write: bool = False) -> tuple[np.ndarray, bool]:
        """``a`` checked against ``shape`` (-1: any extent) and ``dtype``; inputs that are
        not C-contiguous and aligned are copied, outputs must be so already."""
        if not isinstance(a, np.ndarray) or a.dtype != dtype:
            raise self._fail(TypeError, f"{name}: expected a {np.dtype(dtype).name} array, "
                                        f"got {getattr(a, 'dtype', type(a).__name__)}")
        if a.ndim != len(shape) or any(s >= 0 and s != n for s, n in zip(shape, a.shape)):
            want = tuple("N" if s < 0 else s for s in shape)
            raise self._fail(ValueError, f"{name}: expected shape {want}, got {a.shape}")
        if not write:
            native = as_native(a)
            return native, native is a
        if not (a.flags.c_contiguous and a.flags.aligned and a.flags.writeable):
            raise self._fail(ValueError, f"{name}: an output must be a writeable, "
                                         "C-contiguous and aligned array")
        return a, True

    def _int(self, v, name: str) -> int:
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise self._fail(TypeError, f"{name}: expected an int, got {type(v).__name__}")
        return int(v)

    def _params_in(self, mu, P, logc) -> tuple[list, bool]:
        m, d = self.m, self.d
        pshape = (m, d, d) if self.full else (m, d)
        got = [self._array(mu, "mu", (m, d)), self._array(P, "P", pshape),
               self._array(logc, "logc", (m,))]
        return [a for a, _ in got], all(s for _, s in got)

    def _rows(self, a, name: str, n: int, allowed: tuple[int, ...]) -> None:
        if a.shape[0] not in allowed:
            raise self._fail(ValueError, f"{name}: expected {' or '.join(map(str, allowed))} "
                                         f"rows for X's {n} events, got {a.shape[0]}")

    # -- the C ----------------------------------------------------------------------------
    @abstractmethod
    def _specs(self, dtype) -> tuple[ArgSpec, ...]:
        """The guards of the arguments ``names`` when X has ``dtype``."""

    def _model_specs(self, dtype) -> tuple[ArgSpec, ...]:
        """X (N, D) of ``dtype``; the means (M, D), precision factors (M, D, D) or (M, D)
        and log constants (M,) in float64."""
        m, d = self.m, self.d
        return (ArgSpec("array", np.dtype(dtype), 2, shape=(-1, d)),
                ArgSpec("array", _F64, 2, shape=(m, d)),
                ArgSpec("array", _F64, 3 if self.full else 2,
                        shape=(m, d, d) if self.full else (m, d)),
                ArgSpec("array", _F64, 1, shape=(m,)))

    def _context(self, dtype) -> dict:
        return dict(M=self.m, D=self.d, full=self.full, ctype=_CTYPES[np.dtype(dtype)],
                    blocks=BLOCKS)

    def _render(self, part: str, dtype, **extra) -> str:
        return source.render_part(part, kernel=self.name, **self._context(dtype), **extra)

    def _helpers(self, dtype) -> tuple[ir.Function, ...]:
        return source.helper_functions(lambda part, **extra: self._render(part, dtype, **extra),
                                       self.blocks)

    def _kernel(self, symbol: str, part: str, block: int | None, dtype) -> ir.Function:
        return template_function(symbol, self.names, self._specs(dtype),
                                 self._render(part, dtype, B=block))

    def _plan(self, prepared: Prepared, variants: tuple[Variant, ...], check_args) -> Plan:
        dtype = prepared.args[0].dtype
        return Plan(prepared.signature, self._specs(dtype), variants, errors=self.errors,
                    preamble=self._render("preamble", dtype), helpers=self._helpers(dtype),
                    includes=("stdint.h", "stdlib.h", "string.h", "math.h"),
                    check_args=check_args, rtol=1e-9, atol=1e-9)

    def _check_threads(self) -> int:
        # The check runs the threaded code even on one core: per-thread partials, splits.
        return max(2, config.num_threads())


_MEMORY = (MemoryError, "out of memory for the GMM kernel's working buffers")


def _em_body(variant: str) -> tuple[str, int | None]:
    """The template def of an EM variant's body, and its block of events."""
    if variant == "components":
        return "em_components", None
    block = int(variant.removeprefix("events_b"))
    return ("em_events_b1" if block == 1 else "em_events_blocked"), block


class EMKernel(GMMKernel):
    """One fused EM pass: arguments ``(X, mu, P, logc, nthreads, work, stats, ll)``.

    ``work`` (N, M) is working space (only ``components`` writes it, the
    responsibilities); ``stats`` (M, NSTAT) and ``ll`` (1,) receive the statistics
    centred on ``mu`` and sum log p(x).
    """

    family = "em"
    names = ("X", "mu", "P", "logc", "nthreads", "work", "stats", "ll")
    blocks = tuple(sorted(b for b in BLOCKS if b > 1))
    errors = (_MEMORY, (ValueError, "work: expected one row per event of X"))

    def _specs(self, dtype) -> tuple[ArgSpec, ...]:
        return (*self._model_specs(dtype), ArgSpec("int"),
                ArgSpec("array", _F64, 2, write=True, scratch=True, noalias=True,
                        shape=(-1, self.m)),
                ArgSpec("array", _F64, 2, write=True, noalias=True, shape=(self.m, self.nstat)),
                ArgSpec("array", _F64, 1, write=True, noalias=True, shape=(1,)))

    def prepare(self, args: tuple) -> Prepared:
        X, mu, P, logc, nthreads, work, stats, ll = self._unpack(args)
        X, same = self._data(X)
        params, same_p = self._params_in(mu, P, logc)
        nthreads = self._int(nthreads, "nthreads")
        work, _ = self._array(work, "work", (-1, self.m), write=True)
        self._rows(work, "work", X.shape[0], (X.shape[0],))
        stats, _ = self._array(stats, "stats", (self.m, self.nstat), write=True)
        ll, _ = self._array(ll, "ll", (1,), write=True)
        bucket, size_range = self.bucket(X.shape[0], nthreads)
        return Prepared((X, *params, nthreads, work, stats, ll), X.dtype.name,
                        same=same and same_p, bucket=bucket, size_range=size_range)

    def bucket(self, n: int, nthreads: int) -> tuple[str, tuple[int, int]]:
        """Calls are tuned per power-of-4 bucket of N and per thread count; the range is
        in elements of X, cut where one thread takes over, so the hot path serves each
        bucket with its own winner."""
        size, (lo, hi) = n_bucket(n)
        par = math.ceil(config.parallel_threshold(PAR_MIN_WORK) / (self.m * self.d))
        if nthreads == 1 and n < par:
            hi = min(hi, par)
        elif n >= par:
            lo = max(lo, par)
        return f"N~{size} threads={nthreads}", (lo * self.d, hi * self.d)

    def plan(self, prepared: Prepared) -> Plan:
        dtype = prepared.args[0].dtype
        variants = tuple(Variant(v, self._kernel(f"gmm_em_{v}", *_em_body(v), dtype))
                         for v in VARIANTS)

        def check_args():
            X, mu, P, logc = check_problem(self.kind, self.m, self.d, dtype, 301)
            return (X, mu, P, logc, self._check_threads(), np.zeros((len(X), self.m)),
                    np.zeros((self.m, self.nstat)), np.zeros(1))

        return self._plan(prepared, variants, check_args)

    def run_python(self, args: tuple):
        """The kernel's outputs by NumPy: ``stats`` and ``ll`` (and the responsibilities in
        ``work``, as ``components`` leaves them)."""
        X, mu, P, logc, _, work, stats, ll = args
        total, resp, st = ref.em_statistics(X, mu, P, logc)
        stats[...] = st
        ll[0] = total
        work[...] = resp


class EStepKernel(GMMKernel):
    """The E-step alone: arguments ``(X, mu, P, logc, nthreads, out, labels, ll)``.

    ``out`` (N, M) receives log w_k + log N(x | k), ``labels`` (N,) the argmax of
    each row, ``ll`` (1,) sum log p(x); an output with no rows is not wanted.
    """

    family = "estep"
    names = ("X", "mu", "P", "logc", "nthreads", "out", "labels", "ll")
    blocks = (ESTEP_BLOCK,)
    errors = (_MEMORY, (ValueError, "out, labels, ll: expected X's rows (one for ll), or "
                                    "none"))

    def _specs(self, dtype) -> tuple[ArgSpec, ...]:
        return (*self._model_specs(dtype), ArgSpec("int"),
                ArgSpec("array", _F64, 2, write=True, noalias=True, shape=(-1, self.m)),
                ArgSpec("array", np.dtype(np.int64), 1, write=True, noalias=True),
                ArgSpec("array", _F64, 1, write=True, noalias=True))

    def prepare(self, args: tuple) -> Prepared:
        X, mu, P, logc, nthreads, out, labels, ll = self._unpack(args)
        X, same = self._data(X)
        params, same_p = self._params_in(mu, P, logc)
        n = X.shape[0]
        out, _ = self._array(out, "out", (-1, self.m), write=True)
        labels, _ = self._array(labels, "labels", (-1,), np.dtype(np.int64), write=True)
        ll, _ = self._array(ll, "ll", (-1,), write=True)
        self._rows(out, "out", n, (0, n))
        self._rows(labels, "labels", n, (0, n))
        self._rows(ll, "ll", n, (0, 1))
        return Prepared((X, *params, self._int(nthreads, "nthreads"), out, labels, ll),
                        X.dtype.name, same=same and same_p)

    def plan(self, prepared: Prepared) -> Plan:
        dtype = prepared.args[0].dtype
        variant = Variant(f"blocked_b{ESTEP_BLOCK}", self._kernel(
            "gmm_estep", "estep", ESTEP_BLOCK, dtype))

        def check_args():
            X, mu, P, logc = check_problem(self.kind, self.m, self.d, dtype, 301)
            return (X, mu, P, logc, self._check_threads(), np.zeros((len(X), self.m)),
                    np.zeros(len(X), np.int64), np.zeros(1))

        return self._plan(prepared, (variant,), check_args)

    def run_python(self, args: tuple):
        X, mu, P, logc, _, out, labels, ll = args
        wlp = ref.kernel_log_prob(X, mu, P, logc)
        if len(out):
            out[...] = wlp
        if len(labels):
            labels[...] = np.argmax(wlp, axis=1)
        if len(ll):
            ll[0] = ref.log_likelihood_sum(wlp)


class MStatsKernel(GMMKernel):
    """The M-step statistics from responsibilities: arguments
    ``(X, resp, nthreads, centre, c, stats)``.

    With ``centre`` non-zero, ``c`` (M, D) receives each component's
    responsibility-weighted mean (0 without weight) and ``stats`` the statistics
    centred on it; with ``centre`` 0, ``c`` is 0 and ``stats`` the raw sums.
    """

    family = "mstats"
    names = ("X", "resp", "nthreads", "centre", "c", "stats")
    errors = (_MEMORY, (ValueError, "resp: expected one row per event of X"))

    def _specs(self, dtype) -> tuple[ArgSpec, ...]:
        m, d = self.m, self.d
        return (ArgSpec("array", np.dtype(dtype), 2, shape=(-1, d)),
                ArgSpec("array", np.dtype(dtype), 2, shape=(-1, m)),
                ArgSpec("int"), ArgSpec("int"),
                ArgSpec("array", _F64, 2, write=True, noalias=True, shape=(m, d)),
                ArgSpec("array", _F64, 2, write=True, noalias=True, shape=(m, self.nstat)))

    def prepare(self, args: tuple) -> Prepared:
        X, resp, nthreads, centre, c, stats = self._unpack(args)
        X, same = self._data(X)
        resp, same_r = self._array(resp, "resp", (-1, self.m), X.dtype)
        self._rows(resp, "resp", X.shape[0], (X.shape[0],))
        c, _ = self._array(c, "c", (self.m, self.d), write=True)
        stats, _ = self._array(stats, "stats", (self.m, self.nstat), write=True)
        return Prepared((X, resp, self._int(nthreads, "nthreads"), self._int(centre, "centre"),
                         c, stats), X.dtype.name, same=same and same_r)

    def plan(self, prepared: Prepared) -> Plan:
        dtype = prepared.args[0].dtype
        variant = Variant("two_pass", self._kernel("gmm_mstats", "mstats", None, dtype))

        def check_args():
            rng = np.random.default_rng(12)
            X, _, _, _ = check_problem(self.kind, self.m, self.d, dtype, 301)
            resp = rng.dirichlet(np.ones(self.m), len(X))
            resp[::2] = np.eye(self.m)[rng.integers(0, self.m, len(resp[::2]))]  # one-hot
            return (X, resp.astype(dtype), self._check_threads(), 1,
                    np.zeros((self.m, self.d)), np.zeros((self.m, self.nstat)))

        return self._plan(prepared, (variant,), check_args)

    def run_python(self, args: tuple):
        X, resp, _, centre, c, stats = args
        c[...], stats[...] = ref.responsibility_statistics(X, resp, centre=bool(centre),
                                                           full=self.full)


FAMILIES = {"em": EMKernel, "estep": EStepKernel, "mstats": MStatsKernel}
_kernels: dict[tuple, JitKernel] = {}
_groups: dict[tuple, set] = {}


def kernel(family: str, kind: str, m: int, d: int) -> JitKernel:
    """The process's :class:`JitKernel` of one family for (kind, M, D): made once, so its
    specializations, tuning and hot entries serve every fit, predict and Dask chunk.

    The three families of one (kind, M, D) share a fallback group: a compiler or cache
    that fails one fails them all, so a fit that cannot be specialized warns once."""
    key = (family, kind, int(m), int(d))
    k = _kernels.get(key)
    if k is None:
        group = _groups.setdefault(key[1:], set())
        k = _kernels[key] = JitKernel(FAMILIES[family](kind, m, d), fallback_group=group)
    return k


def check_problem(kind: str, m: int, d: int, dtype, n: int, *, seed: int = 2026,
                  spread: float = 1.0) -> tuple[np.ndarray, ...]:
    """A small, valid random problem ``(X, mu, P, logc)`` in the kernels' form: M
    clusters of N events in total, well-conditioned precision factors (upper
    triangular for ``full``) times ``spread``, log weights plus log-determinants.
    ``spread`` 1e4 gives the log densities of a start from data points (near -1e9)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(scale=3.0, size=(m, d))
    X = (mu[rng.integers(0, m, n)] + rng.normal(size=(n, d))).astype(dtype)
    diag = rng.uniform(0.5, 1.5, (m, d)) * spread
    if kind == "full":
        P = np.triu(rng.normal(scale=0.2 * spread, size=(m, d, d)), 1)
        P[:, np.arange(d), np.arange(d)] = diag
    else:
        P = diag
    logc = (np.log(rng.dirichlet(np.ones(m))) + np.log(diag).sum(axis=1)
            - 0.5 * d * math.log(2 * math.pi))
    return X, mu, P, logc
