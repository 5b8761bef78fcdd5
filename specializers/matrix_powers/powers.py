"""``MatrixPowers``: the Krylov basis {x, Ax, ..., A^k x} (or its Newton form) in one call.

::

    akx = MatrixPowers(A, 4)                 # setup: CSR once, bandwidths, reordering
    V = akx(x)                               # V[j] = A^j x, shape (5, n)
    akx.powers(V)                            # in place: V[0] in, V[1..4] out
    G = gram_matrix(V)                       # V V^T

The kernel and its variants are :mod:`specializers.matrix_powers.powers_kernel`;
asp's runtime builds them, checks each against the SciPy reference, tunes among
them per (matrix structure, depth, threads) -- the winner is remembered on disk --
and, when anything fails (rendering, compiling, a read-only or full cache, loading,
the analysis of the matrix or a variant's plan), runs the same products with SciPy
after one :class:`asp.errors.AspFallbackWarning` naming the kernel and the stage
(``ASP_STRICT=1`` raises instead).  Setup work (the analysis, the variants' plans)
is timed apart from the calls: ``setup_seconds``; ``ghost_overhead`` is the extra
memory of the chosen variant relative to the matrix.
"""
from __future__ import annotations

import time

import numpy as np

from asp import config
from asp.errors import SpecializationError
from asp.runtime import JitKernel, as_native
from asp.runtime.mapargs import native
from specializers.matrix_powers.cg_kernels import SStepKernel
from specializers.matrix_powers.kernels import (
    VALUE_TYPES,
    Matrix,
    as_csr,
    check_finite,
    jit,
)
from specializers.matrix_powers.partition import Pa1Plan
from specializers.matrix_powers.powers_kernel import (
    PA1_KIB,
    TUNED,
    WINDOW_STEPS,
    PowersKernel,
    PowersProblem,
    fill_basis,
    forced_variant,
    kind,
)

__all__ = ["MatrixPowers", "gram_matrix"]

BASES = ("monomial", "newton")


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
    ``native=False`` runs the SciPy products without building anything.
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
        self.matrix_bytes = M.data.nbytes + M.indices.nbytes + M.indptr.nbytes
        row_bytes = max(1.0, (M.data.itemsize + M.indices.itemsize) * M.nnz / max(self.n, 1))
        # PA1 blocks hold about KiB of A each, over the block-size space the tuner searches
        self._pa1_rows = sorted({max(64, int((kib << 10) / row_bytes)) for kib in PA1_KIB})
        self.variants = (["naive"] + [f"pa1-{r}" for r in self._pa1_rows]
                         + [f"window-{s}" for s in WINDOW_STEPS.values()])
        self._valid(variant)
        self.forced = variant
        self.native = native
        self._problem: PowersProblem | None = None
        if native:
            config.num_threads()  # a malformed OMP_NUM_THREADS is the user's error: raise it
            matrix = Matrix(M, reorder=reorder, symmetric=symmetric, depth=self.k)
            self._csr = matrix.A  # its copy: A as it is now, whatever happens to it later
            self._problem = PowersProblem(matrix, self.k, self.shifts, self.scales,
                                          row_bytes)
        else:
            self._csr = M.copy()  # the same for the SciPy products
        self._last: tuple | None = None
        self._setup = time.perf_counter() - t0

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

    # -- the analysed matrix ---------------------------------------------------------------
    @property
    def _structure(self):
        return self._problem.matrix.analysed if self._problem is not None else None

    @property
    def A(self):
        """The matrix as the kernels read it (reordered when :attr:`perm` is set)."""
        st = self._structure
        return self._csr if st is None else st.csr

    @property
    def perm(self) -> np.ndarray | None:
        """The reordering of rows and columns the kernels use, or None."""
        st = self._structure
        return None if st is None else st.perm

    @property
    def bandwidth(self) -> tuple[int, int]:
        """(lower, upper) bandwidth of :attr:`A`."""
        st = self._structure
        return (0, 0) if st is None else st.bandwidth

    @property
    def setup_seconds(self) -> float:
        """Construction, analysis, and every variant's plan made so far."""
        return self._setup + (self._problem.setup_seconds if self._problem else 0.0)

    def plan(self, variant: str, levels: int | None = None):
        """A variant's plan: a :class:`~.partition.Pa1Plan`, window chunks, or None."""
        self._valid(variant)
        if self._problem is None:
            return None
        return self._problem.plan(variant, self.k if levels is None else levels)

    def variant_stats(self, variant: str) -> dict:
        """What a variant costs beyond A: stored ghost zones (bytes, ratio to A), the
        per-call scratch it allocates, and its redundant row computations / (k n)."""
        plan = self.plan(variant, self.k)
        scratch, redundant, extra = 0, 0, 0
        if isinstance(plan, Pa1Plan):
            scratch = config.num_threads() * (self.k - 1) * plan.span * self.dtype.itemsize
            extra, redundant = plan.nbytes, plan.redundant_rows
        elif plan is not None:
            extra = plan.nbytes
        return {"extra_bytes": extra, "ghost_overhead": extra / max(self.matrix_bytes, 1),
                "scratch_bytes": scratch, "redundant_work": redundant / max(self.k * self.n, 1)}

    @property
    def ghost_overhead(self) -> float:
        """Extra memory of the current (or, before any call, the PA1) variant / size of A."""
        v = self.last_variant
        if v is None or v == "scipy":
            v = self.variants[1]
        return self.variant_stats(v)["ghost_overhead"]

    # -- calls -----------------------------------------------------------------------------
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
        return self._run((V,), variant)

    def partial(self, V: np.ndarray, *, variant: str | None = None) -> np.ndarray:
        """Like :meth:`powers` but ``V`` may have fewer than k+1 rows (levels 1..len(V)-1)."""
        self._check_v(V, levels=V.shape[0] - 1 if isinstance(V, np.ndarray) else None)
        return self._run((V,), variant)

    def __call__(self, x) -> np.ndarray:
        """A new (k+1, n) array ``V`` with ``V[0] = x`` and the k products below it."""
        x = np.asarray(x)
        if x.ndim != 1 or x.shape[0] != self.n:
            raise ValueError(f"x must have shape ({self.n},), got {x.shape}")
        if native(x.dtype) != self.dtype:  # (big-endian values are converted below)
            raise TypeError(f"x has dtype {x.dtype}; the matrix is {self.dtype}")
        V = np.empty((self.k + 1, self.n), dtype=self.dtype)
        V[0] = x
        return self.powers(V)

    def pair(self, V: np.ndarray, V2: np.ndarray) -> None:
        """Fill two bases at once: ``V`` (at most k+1 rows) and ``V2`` (at most as many).

        Inputs are not re-checked (s-step solvers call this with vectors they own).  A
        window variant fills both in one sweep, so A is read once for both; the tuner
        chooses for two bases apart from one.
        """
        self._run((V, V2), None)

    def sstep_basis(self, Y: np.ndarray, G: np.ndarray) -> None:
        """One outer step of s-step CG: ``Y`` is (2s+1, n) float64 with ``Y[0] = p`` and
        ``Y[s+1] = r``; fill ``P = Y[:s+1]`` (s levels), ``R = Y[s+1:]`` (s-1 levels)
        and ``G = Y Y^T``.  Inputs are not re-checked."""
        s = (Y.shape[0] - 1) // 2
        self.pair(Y[:s + 1], Y[s + 1:])
        # G in one more pass: summing it inside the window sweep was tried and is
        # slower (the sweep's loop cannot keep all m(m+1)/2 sums in registers).
        gram = jit(SStepKernel, "gram")
        if self.native:
            gram(Y, G)
        else:
            gram.specializer.run_python((Y, G))

    def _kernel(self, two: bool, forced: str | None) -> JitKernel:
        if forced is None:  # the tuned kernel: its plain variants and the PA1 block sizes
            return jit(PowersKernel, two, TUNED)
        return jit(PowersKernel, two, (forced_variant(forced),), False)

    def _run(self, bases: tuple, variant: str | None) -> np.ndarray:
        self._valid(variant)
        forced = variant or self.forced
        if self._problem is None:  # native=False: the reference, as the fallback runs it
            for B in bases:
                fill_basis(self._csr, B, self.shifts, self.scales)
        else:
            self._kernel(len(bases) == 2, forced)(self._problem, *bases, forced)
        self._last = (tuple(B.shape[0] - 1 for B in bases), forced)
        return bases[0]

    # -- what ran --------------------------------------------------------------------------
    def chosen_variant(self, levels: int | None = None, levels2: int | None = None
                       ) -> str | None:
        """The variant the tuner chose for calls with ``levels`` levels (default k; with
        ``levels2``, for two bases): a name of :attr:`variants`, ``'scipy'`` when such
        calls run the reference, or None while the tuner is still trying variants."""
        if self._problem is None or config.jit_disabled():
            return "scipy"
        depths = (self.k if levels is None else levels,) + (() if levels2 is None else (levels2,))
        probes = tuple(np.empty((d + 1, self.n), self.dtype) for d in depths)
        try:
            chosen = self._kernel(len(probes) == 2, None).chosen_variant(
                self._problem, *probes, None)
        except SpecializationError:
            return "scipy"
        return self._public(chosen)

    @property
    def last_variant(self) -> str | None:
        """The variant of the last call (None before any, or while it was being tuned)."""
        if self._last is None:
            return None
        depths, forced = self._last
        return forced if forced and self._problem is not None else self.chosen_variant(*depths)

    def _public(self, chosen: str | None) -> str | None:
        if chosen is None or chosen == "naive":
            return chosen
        if chosen == "python":
            return "scipy"
        head, slot = kind(chosen)
        if head == "pa1":
            return f"pa1-{self._problem.pa1_rows(slot)}"
        return f"window-{WINDOW_STEPS[slot]}"
