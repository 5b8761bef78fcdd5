"""``MatrixPowers``: the Krylov basis {x, Ax, ..., A^k x} (or its Newton form) in one call.

::

    akx = MatrixPowers(A, 4)                 # setup: CSR once, bandwidths, tuning key
    V = akx(x)                               # V[j] = A^j x, shape (5, n)
    akx.powers(V)                            # in place: V[0] in, V[1..4] out
    G = gram_matrix(V)                       # V V^T

Variants (see :mod:`specializers.matrix_powers.kernels`) are chosen per
(structure fingerprint, k, dtype, basis) by :class:`asp.tune.Tuning`; the
winner is remembered on disk.  Setup work (ghost zones, reordering) is timed
apart from the calls: ``setup_seconds``; ``ghost_overhead`` is the extra
memory of the chosen variant relative to the matrix.

Nothing native is ever needed for a right answer: when the kernels cannot be
rendered, built (compiler error, read-only or full cache, unwritable ``HOME``)
or loaded, or the matrix analysis or a variant's plan fails, the same products
run through SciPy after one :class:`asp.errors.AspFallbackWarning` naming the
kernel and the stage (``ASP_STRICT=1`` raises instead); see
:mod:`specializers.matrix_powers.fallback`.
"""
from __future__ import annotations

import sqlite3
import time

import numpy as np
import scipy.sparse as sp

from asp import config
from asp.errors import SpecializationError
from asp.runtime import MISS, as_native, generator_fingerprint
from asp.tune import Tuning
from specializers.matrix_powers import partition
from specializers.matrix_powers.fallback import PlanningError, give_up, native
from specializers.matrix_powers.kernels import VALUE_TYPES, kernels, sstep_kernels

__all__ = ["MatrixPowers", "as_csr", "gram_matrix", "native_kernels"]

BASES = ("monomial", "newton")
# rows of A per PA1 block are chosen so a block's part of A fills about this much cache
_PA1_BYTES = (256 << 10, 1 << 20)
_WINDOW_STEPS = (256, 2048)
# each seam between window chunks costs a little re-reading; a few chunks per thread
# buy load balance when the cores are shared
_WINDOW_CHUNKS_PER_THREAD = 4


def native_kernels(vdtype, idtype, ndiag: int):
    """The compiled kernels, or None (after one AspFallbackWarning) if they cannot be built.

    Any failure -- rendering, compiling, a read-only or full cache, loading -- falls
    back.  ``ASP_DISABLE_JIT=1`` gives None silently; ``ASP_STRICT=1`` raises instead.
    """
    return native(kernels, np.dtype(vdtype), np.dtype(idtype), int(ndiag), stacklevel=4)


def as_csr(A, name: str = "A") -> sp.csr_matrix:
    """``A`` as a square float32/float64 CSR matrix with finite values and int32/64 indices."""
    if sp.issparse(A):
        M = A.tocsr()
    elif isinstance(A, np.ndarray) or hasattr(A, "__array__"):
        arr = np.asarray(A)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (a square matrix), got shape {arr.shape}")
        if arr.dtype not in VALUE_TYPES:
            raise TypeError(f"{name} has dtype {arr.dtype}; expected float64 or float32")
        M = sp.csr_matrix(arr)
    else:
        raise TypeError(f"{name} must be a scipy sparse matrix or a numpy array, "
                        f"not {type(A).__name__}")
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be square, got shape {M.shape}")
    if M.dtype not in VALUE_TYPES:
        raise TypeError(f"{name} has dtype {M.dtype}; expected float64 or float32")
    if not np.isfinite(M.data).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    idt = np.dtype(np.int32) if M.nnz < 2**31 - 1 and M.shape[0] < 2**31 - 1 \
        else np.dtype(np.int64)
    if M.indices.dtype != idt or M.indptr.dtype != idt:
        M = sp.csr_matrix((M.data, M.indices.astype(idt), M.indptr.astype(idt)),
                          shape=M.shape)
    if not all(a.flags.c_contiguous and a.flags.aligned
               for a in (M.data, M.indices, M.indptr)):
        M = sp.csr_matrix((as_native(M.data), as_native(M.indices), as_native(M.indptr)),
                          shape=M.shape)
    return M


def check_finite(x: np.ndarray, name: str) -> None:
    """Raise if ``x`` holds NaN/inf: one sum (NaN and inf propagate), exact check if needed."""
    # a sum, not a BLAS dot: BLAS threads would spin against the kernels' OpenMP threads
    with np.errstate(all="ignore"):
        s = x.sum()
    if not np.isfinite(s) and not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values")


def gram_matrix(V) -> np.ndarray:
    """``V V^T`` of a (m, n) basis (one pass over V through BLAS)."""
    V = np.asarray(V)
    if V.ndim != 2:
        raise ValueError(f"V must be 2-D (m, n), got shape {V.shape}")
    if V.dtype not in VALUE_TYPES:
        raise TypeError(f"V has dtype {V.dtype}; expected float64 or float32")
    return V @ V.T


class MatrixPowers:
    """The matrix-powers kernel of a fixed square matrix ``A`` and depth ``k``.

    ``basis='monomial'`` gives ``V[j] = A^j x``; ``basis='newton'`` with ``k``
    ``shifts`` gives ``V[j] = (A - shifts[j-1] I) V[j-1]``.  ``scales`` (optional,
    length k) multiplies level j by ``scales[j-1]`` (s-step solvers use it to keep
    the basis well scaled).  ``symmetric`` tells the reordering that A's
    structure is symmetric (None: not assumed).  ``variant`` forces one variant
    instead of tuning (see :attr:`variants`).  ``reorder`` forces (True) or
    forbids (False) reverse Cuthill-McKee; by default it is tried when the
    bandwidth is too wide for the window and blocks, and kept if it halves it.
    ``native=False`` runs the SciPy products without trying to build anything (a
    solver whose own kernels failed passes it, so one failure warns once).
    """

    def __init__(self, A, k: int, basis: str = "monomial", shifts=None, symmetric=None, *,
                 scales=None, variant: str | None = None, reorder: bool | None = None,
                 native: bool = True):
        t0 = time.perf_counter()
        if isinstance(k, bool) or not isinstance(k, int | np.integer):
            raise TypeError(f"k must be an integer, not {type(k).__name__}")
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if basis not in BASES:
            raise ValueError(f"basis must be one of {BASES}, got {basis!r}")
        self.k = int(k)
        self.basis = basis
        self.shifts = self._levels(shifts, "shifts", 0.0, required=basis == "newton")
        if basis == "monomial" and shifts is not None and np.any(self.shifts):
            raise ValueError("shifts are only used with basis='newton'")
        self.scales = self._levels(scales, "scales", 1.0)
        self.symmetric = symmetric
        M = as_csr(A)
        self.n = M.shape[0]
        self.dtype = M.dtype
        # what the SciPy path needs; _analyse() replaces it with the native setup
        self.A = M
        self.perm = None
        self.bandwidth = (0, 0)
        self.diagonals = self.diagonal_runs = np.zeros(0, np.int64)
        self.fingerprint = ""
        self._k = None
        self._sstep: dict[int, object] = {}
        self.matrix_bytes = M.data.nbytes + M.indices.nbytes + M.indptr.nbytes
        row_bytes = max(1.0, (M.data.itemsize + M.indices.itemsize) * M.nnz / max(self.n, 1))
        pa1_sizes = sorted({max(64, int(b / row_bytes)) for b in _PA1_BYTES})
        self.variants = (["naive"] + [f"pa1-{r}" for r in pa1_sizes]
                         + [f"window-{s}" for s in _WINDOW_STEPS])
        self._valid(variant)
        self.forced = variant
        self._plans: dict[str, object] = {}
        if native and not config.jit_disabled():
            config.num_threads()  # a malformed OMP_NUM_THREADS is the user's error: raise it
            try:
                self._analyse(M, reorder)
            except Exception as exc:  # a bug in the setup must not reach the user's program
                give_up(PlanningError(f"analysing the matrix failed: {type(exc).__name__}: "
                                      f"{exc}", kernel="matrix_powers"))
            else:
                self._k = native_kernels(self.A.dtype, self.A.indices.dtype,
                                         self.diagonals.size)
        self._tunings: dict[tuple[int, str], Tuning] = {}
        self.setup_seconds = time.perf_counter() - t0
        self.last_variant: str | None = None

    def _analyse(self, M: sp.csr_matrix, reorder: bool | None) -> None:
        """Bandwidths, the reordering, diagonal runs and the structure fingerprint;
        the attributes are set only once all of it succeeded."""
        n = self.n
        bl, bu = partition.bandwidths(M.indptr, M.indices, n)
        perm = iperm = None
        if reorder is None:
            reorder = max(bl, bu) * 4 * config.num_threads() * self.k > n and n > 1000
        if reorder:
            p = partition.rcm_permutation(M, self.symmetric)
            P = M[p][:, p].tocsr()
            pbl, pbu = partition.bandwidths(P.indptr, P.indices, n)
            if max(pbl, pbu) * 2 <= max(bl, bu):
                M, bl, bu, perm = as_csr(P), pbl, pbu, p.astype(np.intp)
                iperm = np.argsort(perm)
        diagonals, runs = partition.diagonal_runs(M.indptr, M.indices, n)
        fingerprint = partition.fingerprint(M.indptr, M.indices, n)
        self.A, self.perm, self.bandwidth = M, perm, (bl, bu)
        if perm is not None:
            self.iperm = iperm
        self.diagonals, self.diagonal_runs, self.fingerprint = diagonals, runs, fingerprint
        self._csr = (M.indptr, M.indices, M.data, runs, diagonals)

    def _levels(self, values, name: str, default: float, required: bool = False) -> np.ndarray:
        if values is None:
            if required:
                raise ValueError(f"basis='newton' needs {name}: {self.k} values")
            return np.full(self.k, default)
        arr = np.asarray(values, dtype=np.float64).ravel()
        if arr.size != self.k:
            raise ValueError(f"{name} must have k={self.k} values, got {arr.size}")
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return as_native(arr)

    def _valid(self, variant: str | None) -> None:
        # besides the tuned list, any block size or window step may be forced
        if variant is None or variant in self.variants:
            return
        head, _, size = variant.partition("-")
        if head not in ("pa1", "window") or not size.isdigit() or int(size) < 1:
            raise ValueError(f"variant must be one of {self.variants} (or pa1-<rows>, "
                             f"window-<step>), got {variant!r}")

    # -- plans ---------------------------------------------------------------
    def _plan(self, variant: str, levels: int):
        key = variant if not variant.startswith("window") else f"{variant}/{levels}"
        plan = self._plans.get(key)
        if plan is None:
            t0 = time.perf_counter()
            bl, bu = self.bandwidth
            if variant.startswith("pa1-"):
                plan = partition.pa1_plan(self.A.indptr, self.A.indices, self.n, self.k,
                                          int(variant[4:]))
            elif variant.startswith("window-"):
                threads = config.num_threads()
                chunks = 1 if threads == 1 else _WINDOW_CHUNKS_PER_THREAD * threads
                plan = partition.window_chunks(self.n, levels, bl, bu, chunks)
            self._plans[key] = plan
            self.setup_seconds += time.perf_counter() - t0
        return plan

    def variant_stats(self, variant: str) -> dict:
        """What a variant costs beyond A: stored ghost zones (bytes, ratio to A), the
        per-call scratch it allocates, and its redundant row computations / (k n)."""
        plan = self._plan(variant, self.k)
        scratch, redundant, extra = 0, 0, 0
        if isinstance(plan, partition.Pa1Plan):
            scratch = config.num_threads() * (self.k - 1) * plan.span * self.dtype.itemsize
            extra, redundant = plan.nbytes, plan.redundant_rows
        elif plan is not None:
            extra = plan.nbytes
        return {"extra_bytes": extra, "ghost_overhead": extra / max(self.matrix_bytes, 1),
                "scratch_bytes": scratch, "redundant_work": redundant / max(self.k * self.n, 1)}

    @property
    def ghost_overhead(self) -> float:
        """Extra memory of the current (or, before any call, the PA1) variant / size of A."""
        v = self.last_variant or self.variants[1]
        return self.variant_stats(v)["ghost_overhead"]

    # -- calls ---------------------------------------------------------------
    def _check_v(self, V, levels: int | None = None) -> int:
        if not isinstance(V, np.ndarray):
            raise TypeError(f"V must be a numpy array, not {type(V).__name__}")
        if V.dtype != self.dtype:
            raise TypeError(f"V has dtype {V.dtype}; the matrix is {self.dtype}")
        if V.ndim != 2 or V.shape[1] != self.n:
            raise ValueError(f"V must have shape (k+1, n) = ({self.k + 1}, {self.n}), "
                             f"got {V.shape}")
        rows = V.shape[0] - 1
        if levels is None and rows != self.k:
            raise ValueError(f"V must have k+1 = {self.k + 1} rows, got {V.shape[0]}")
        if not 1 <= rows <= self.k:
            raise ValueError(f"V must have between 2 and {self.k + 1} rows, got {V.shape[0]}")
        if not V.flags.writeable:
            raise ValueError("V is read-only; powers() fills V[1:] in place")
        if not (V.flags.c_contiguous and V.flags.aligned):
            raise ValueError("V must be C-contiguous and aligned")
        check_finite(V[0], "V[0] (the input vector x)")
        return rows

    def powers(self, V: np.ndarray, *, variant: str | None = None) -> np.ndarray:
        """Fill ``V[1..k]`` from ``V[0]`` in place; returns V."""
        self._check_v(V)
        return self._run(V, variant)

    def partial(self, V: np.ndarray, *, variant: str | None = None) -> np.ndarray:
        """Like :meth:`powers` but ``V`` may have fewer than k+1 rows (levels 1..len(V)-1)."""
        self._check_v(V, levels=V.shape[0] - 1 if isinstance(V, np.ndarray) else None)
        return self._run(V, variant)

    def __call__(self, x) -> np.ndarray:
        """A new (k+1, n) array ``V`` with ``V[0] = x`` and the k products below it."""
        x = np.asarray(x)
        if x.ndim != 1 or x.shape[0] != self.n:
            raise ValueError(f"x must have shape ({self.n},), got {x.shape}")
        if x.dtype != self.dtype:
            raise TypeError(f"x has dtype {x.dtype}; the matrix is {self.dtype}")
        V = np.empty((self.k + 1, self.n), dtype=self.dtype)
        V[0] = x
        return self.powers(V)

    def _run(self, V: np.ndarray, variant: str | None) -> np.ndarray:
        levels = V.shape[0] - 1
        self._valid(variant)
        variant = variant or self.forced
        W = V
        if self.perm is not None:
            W = np.empty_like(V)
            W[0] = V[0][self.perm]
        if self._k is None:  # nothing to tune: the SciPy products
            variant = "scipy"
            self._launch(variant, W, levels)
        elif variant is not None:
            self._launch(variant, W, levels)
        else:
            tuning = self._tuning(levels)
            if tuning.done:
                variant = tuning.winner
                self._launch(variant, W, levels)
            elif tuning.mode == "exhaustive":
                variant = tuning.run_exhaustive(lambda v: self._launch(v, W, levels))
                self._launch(variant, W, levels)
            else:
                variant = tuning.pick()
                t0 = time.perf_counter()
                self._launch(variant, W, levels)
                if self._k is not None:  # not a SciPy timing after a planning failure
                    tuning.record(variant, time.perf_counter() - t0)
        self.last_variant = variant
        if self.perm is not None:
            V[1:] = W[1:, self.iperm]
        return V

    def pair(self, V: np.ndarray, V2: np.ndarray) -> None:
        """Fill two bases at once: ``V`` (k+1 rows) and ``V2`` (at most k+1 rows).

        Inputs are not re-checked (s-step solvers call this with vectors they own).
        When the tuned variant for ``V`` is a window, one sweep fills both, so A
        is read once; otherwise the two are filled one after the other.
        """
        levels, levels2 = V.shape[0] - 1, V2.shape[0] - 1
        variant = None
        if self._k is not None and self.perm is None and levels2 >= 1:
            tuning = self._tuning(levels)
            variant = self.forced or (tuning.winner if tuning.done else None)
        plan = None
        if variant is not None and variant.startswith("window"):
            plan = self._checked_plan(variant, levels)
        if plan is None:  # no window (or no native code): one basis after the other
            self._run(V, None)
            if levels2 >= 1:
                self._run(V2, None)
            return
        bl, bu = self.bandwidth
        rc = self._k["window2"](*self._csr, V, self.shifts[:levels], self.scales[:levels], V2,
                                plan, bl, bu, int(variant[7:]))
        if rc is MISS:
            raise TypeError("matrix powers: an argument does not match the compiled kernel")
        self.last_variant = variant

    def sstep_basis(self, Y: np.ndarray, G: np.ndarray) -> None:
        """One outer step of s-step CG: ``Y`` is (2s+1, n) float64 with ``Y[0] = p`` and
        ``Y[s+1] = r``; fill ``P = Y[:s+1]`` (s levels), ``R = Y[s+1:]`` (s-1 levels)
        and ``G = Y Y^T``.

        Tuned as one operation, apart from :meth:`powers`: a window variant fills
        both bases in one sweep (A read once for both), the others one after the
        other, so the variant that wins for one basis need not win here.  G takes
        one more pass.  Inputs are not re-checked.
        """
        s = (Y.shape[0] - 1) // 2
        if self._k is None or self.perm is not None:
            self.pair(Y[:s + 1], Y[s + 1:])
            self._gram(Y, G)
            return
        variant = self.forced
        if variant is None:
            tuning = self._tuning(s, "sstep")
            if tuning.done:
                variant = tuning.winner
            elif tuning.mode == "exhaustive":
                variant = tuning.run_exhaustive(lambda v: self._sstep_launch(v, Y, s, G))
            else:
                variant = tuning.pick()
                t0 = time.perf_counter()
                self._sstep_launch(variant, Y, s, G)
                if self._k is not None:
                    tuning.record(variant, time.perf_counter() - t0)
                self.last_variant = variant
                return
        self._sstep_launch(variant, Y, s, G)
        self.last_variant = variant

    def _sstep_launch(self, variant: str, Y: np.ndarray, s: int, G: np.ndarray) -> None:
        P, R = Y[:s + 1], Y[s + 1:]
        plan = None
        if variant.startswith("window") and s >= 2:
            plan = self._checked_plan(variant, s)
        if plan is not None:
            bl, bu = self.bandwidth
            rc = self._k["window2"](*self._csr, P, self.shifts[:s], self.scales[:s], R,
                                    plan, bl, bu, int(variant[7:]))
            if rc is MISS:
                raise TypeError("matrix powers: an argument does not match the compiled "
                                "kernel")
        else:
            self._launch(variant, P, s)
            if s >= 2:
                self._launch(variant, R, s - 1)
        # G in one more pass: summing it inside the window sweep was tried and is
        # slower (the sweep's loop cannot keep all m(m+1)/2 sums in registers).
        self._gram(Y, G)

    def native_sstep(self, m: int):
        """The s-step kernels for a basis of ``m`` vectors, or None: without the matrix
        kernels (everything runs in SciPy) or after one warning that they failed."""
        if self._k is None:
            return None
        if m not in self._sstep:
            self._sstep[m] = native(sstep_kernels, int(m), stacklevel=5)
        return self._sstep[m]

    def _gram(self, Y: np.ndarray, G: np.ndarray) -> None:
        sk = self.native_sstep(Y.shape[0])
        if sk is None:
            G[:] = Y @ Y.T
        elif sk["gram"](Y, G) is MISS:
            raise TypeError(f"matrix powers: the Gram kernel rejected Y {Y.dtype} {Y.shape}")

    def _tuning(self, levels: int, step: str = "") -> Tuning:
        """The tuning of ``levels`` levels of one basis, or (``step='sstep'``) of the
        s-step solver's two bases and Gram matrix, which may pick another winner."""
        key = (levels, step)
        t = self._tunings.get(key)
        if t is None:
            sig = (f"{self.fingerprint}:n{self.n}:k{levels}:{self.dtype}:{self.basis}"
                   + (f":{step}" if step else "") + f":t{config.num_threads()}")
            code = generator_fingerprint(__name__)
            try:
                t = Tuning("matrix_powers", sig, self.variants, code=code)
            except (OSError, sqlite3.Error, SpecializationError):
                # no tuning database (a read-only cache, an unwritable HOME): tune in
                # memory for this process; the winner is simply not remembered
                mode = config.tune_mode()
                t = Tuning("matrix_powers", sig, self.variants, code=code, mode="off")
                if mode != "off":
                    t.mode, t.winner = mode, None
            self._tunings[key] = t
        return t

    def _checked_plan(self, variant: str, levels: int):
        """``_plan``, but a failure (a bug in the planning) warns once, or raises under
        ``ASP_STRICT=1``, and switches this object to SciPy (``_k`` is None after)."""
        try:
            return self._plan(variant, levels)
        except Exception as exc:
            give_up(PlanningError(f"planning variant {variant!r} failed: "
                                  f"{type(exc).__name__}: {exc}", kernel="matrix_powers"),
                    stacklevel=4)
            self._k = None
            return None

    def _launch(self, variant: str, W: np.ndarray, levels: int) -> None:
        plan = self._checked_plan(variant, levels) if self._k is not None else None
        if self._k is None:  # no native code: the same products with SciPy
            for j in range(levels):
                W[j + 1] = (self.A @ W[j] - self.shifts[j] * W[j]) * self.scales[j]
            return
        # a partial basis of L levels uses the first L shifts
        th, ga = self.shifts[:levels], self.scales[:levels]
        if variant == "naive":
            rc = self._k["naive"](*self._csr, W, th, ga)
        elif variant.startswith("pa1-"):
            rc = self._k["pa1"](*self._csr, W, th, ga, plan.blk, plan.runptr, plan.runs,
                                plan.base, self.k, plan.span)
        else:
            bl, bu = self.bandwidth
            rc = self._k["window"](*self._csr, W, th, ga, plan, bl, bu, int(variant[7:]))
        if rc is MISS:
            raise TypeError("matrix powers: an argument does not match the compiled kernel "
                            f"(V {W.dtype} {W.shape}, A {self.dtype})")
