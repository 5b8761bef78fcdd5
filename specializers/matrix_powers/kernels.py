"""What the matrix-powers kernels share: the analysed matrix, the C they all include,
small valid problems to check them on, and this process's :class:`JitKernel` objects.

This package is a template-style specializer on asp's runtime: its C is in Mako
template files (``templates/*.c.mako``), each kernel body a def rendered into an IR
function with named parameters (:func:`asp.codegen.template.template_function`).
Building, the disk cache, warm-start records, the C-side guards, the check of every
variant against its NumPy/SciPy reference, tuning and the fallback to that reference
(one :class:`~asp.errors.AspFallbackWarning`; ``ASP_STRICT=1`` raises) are the
runtime's.  The kernels of one operation share a fallback group: a compiler or cache
that fails one kernel fails them all, and the user is told once.

A matrix's structure (bandwidths, a reordering, diagonal runs) is analysed once per
:class:`Matrix`; if that analysis fails, the kernels' ``prepare`` raises it as a
:class:`~asp.errors.SpecializationError` and the runtime runs the call as the reference.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from asp import config
from asp.codegen.template import render, template
from asp.errors import SpecializationError
from asp.ir import platform as ir
from asp.runtime import ArgSpec, JitKernel, Specializer, as_native
from asp.runtime.mapargs import native
from specializers.matrix_powers import partition

__all__ = ["ERRORS", "INDEX_TYPES", "MATRIX_NAMES", "TEMPLATES", "VALUE_TYPES", "Matrix",
           "Structure", "TemplateKernel", "as_csr", "check_finite", "check_structure",
           "forget", "jit", "matrix_specs"]

TEMPLATES = Path(__file__).parent / "templates"
VALUE_TYPES = {np.dtype(np.float64): "double", np.dtype(np.float32): "float"}
INDEX_TYPES = {np.dtype(np.int32): "int32_t", np.dtype(np.int64): "int64_t"}
I64, F64 = np.dtype(np.int64), np.dtype(np.float64)
#: Rows below which a kernel runs on one thread (``ASP_PARALLEL_THRESHOLD`` overrides).
PAR_MIN = 20000
INCLUDES = ("stdint.h", "stdlib.h", "string.h", "math.h")
#: The kernels' error codes (ASP_ERR_* in templates/matrix.c.mako), in order.
ERRORS = (
    (MemoryError, "matrix powers: cannot allocate the per-thread scratch"),
    (ValueError, "matrix powers: the vectors do not fit the matrix (V must have one column "
                 "per row of A, V2 as many columns as V and no more rows)"),
    (ValueError, "matrix powers: shift and scale need one value per level"),
    (ValueError, "matrix powers: a variant's plan (PA1 blocks, window chunks, K or the "
                 "step) does not fit the matrix"),
)
MATRIX_NAMES = ("ptr", "idx", "val", "druns", "doff", "dval")


# -- the matrix --------------------------------------------------------------------------

def as_csr(A, name: str = "A") -> sp.csr_matrix:
    """``A`` as a valid square float32/float64 CSR matrix with finite values and int32/64
    indices (a copy only where needed); errors name ``name``."""
    if sp.issparse(A):
        M = A.tocsr()
    elif isinstance(A, np.ndarray) or hasattr(A, "__array__"):
        arr = np.asarray(A)
        if arr.ndim != 2:
            raise ValueError(f"{name} must be 2-D (a square matrix), got shape {arr.shape}")
        if native(arr.dtype) not in VALUE_TYPES:
            raise TypeError(f"{name} has dtype {arr.dtype}; expected float64 or float32")
        M = sp.csr_matrix(arr.astype(native(arr.dtype), copy=False))
    else:
        raise TypeError(f"{name} must be a scipy sparse matrix or a numpy array, "
                        f"not {type(A).__name__}")
    if M.ndim != 2 or M.shape[0] != M.shape[1]:
        raise ValueError(f"{name} must be square, got shape {M.shape}")
    if native(M.dtype) not in VALUE_TYPES:
        raise TypeError(f"{name} has dtype {M.dtype}; expected float64 or float32")
    if not M.dtype.isnative:  # big-endian values (a file's): a native copy
        M = M.astype(native(M.dtype))
    if not np.isfinite(M.data).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    n, nnz = M.shape[0], M.indptr[-1] if M.indptr.size else 0
    # The kernels trust the structure: an index out of range would be read out of bounds.
    if M.indptr.size != n + 1 or M.indptr[0] != 0 or np.any(np.diff(M.indptr) < 0) \
            or M.indices.size < nnz or M.data.size < nnz \
            or (nnz and (M.indices[:nnz].min() < 0 or M.indices[:nnz].max() >= n)):
        raise ValueError(f"{name} is not a valid CSR matrix (indptr or indices out of range)")
    idt = np.dtype(np.int32) if M.nnz < 2**31 - 1 and n < 2**31 - 1 else I64
    if M.indices.dtype != idt or M.indptr.dtype != idt:
        M = sp.csr_matrix((M.data, M.indices.astype(idt), M.indptr.astype(idt)), shape=M.shape)
    if not all(a.flags.c_contiguous and a.flags.aligned for a in (M.data, M.indices, M.indptr)):
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


@dataclass(frozen=True)
class Structure:
    """A matrix as the kernels read it: CSR in the kernels' row order (``perm`` applied,
    if any), its dominant diagonal pattern and the runs of rows that follow it, the
    values of those rows diagonal by diagonal (``dvals``, see
    :func:`~.partition.diagonal_values`), its (lower, upper) bandwidths and a digest of
    its structure (the tuning bucket)."""

    csr: sp.csr_matrix
    offsets: np.ndarray
    runs: np.ndarray
    dvals: np.ndarray
    bandwidth: tuple[int, int]
    fingerprint: str
    perm: np.ndarray | None = None
    iperm: np.ndarray | None = None

    @property
    def arrays(self) -> tuple:
        """The kernels' first six arguments: ptr, idx, val, druns, doff, dval."""
        return (self.csr.indptr, self.csr.indices, self.csr.data, self.runs, self.offsets,
                self.dvals)

    @property
    def signature(self) -> str:
        """What the C depends on: the value and index types and the number of diagonals."""
        return (f"{VALUE_TYPES[self.csr.dtype]}/{INDEX_TYPES[self.csr.indices.dtype]}"
                f"/d{self.offsets.size}")


def analyse(M: sp.csr_matrix, reorder: bool | None, symmetric: bool | None,
            depth: int) -> Structure:
    """Bandwidths, the reordering (``None``: tried when the bandwidth is too wide for
    ``depth`` levels of blocks and windows, kept if it halves it), diagonal runs."""
    n = M.shape[0]
    bl, bu = partition.bandwidths(M.indptr, M.indices, n)
    perm = iperm = None
    if reorder is None:
        reorder = max(bl, bu) * 4 * config.num_threads() * depth > n and n > 1000
    if reorder:
        p = partition.rcm_permutation(M, symmetric)
        P = M[p][:, p].tocsr()
        pbl, pbu = partition.bandwidths(P.indptr, P.indices, n)
        if max(pbl, pbu) * 2 <= max(bl, bu):
            M, bl, bu, perm = as_csr(P), pbl, pbu, p.astype(np.intp)
            iperm = np.argsort(perm)
    offsets, runs = partition.diagonal_runs(M.indptr, M.indices, n)
    dvals = partition.diagonal_values(M.indptr, M.data, n, offsets.size, runs)
    return Structure(M, offsets, runs, dvals, (bl, bu),
                     partition.fingerprint(M.indptr, M.indices, n), perm, iperm)


class Matrix:
    """A validated square CSR matrix ``A`` and the analysis of its structure, done once
    (at construction, unless ``ASP_DISABLE_JIT=1``; else on first use).

    ``A`` is copied: the analysis keeps derived copies of its values (the diagonal runs'
    ``dvals``, a reordered matrix), so a caller changing its matrix in place afterwards
    would have some rows computed from the new values and some from the old (a silently
    wrong basis, and variants disagreeing with each other and with the reference).  With
    the copy every variant and the reference read the matrix as it was at construction."""

    def __init__(self, A: sp.csr_matrix, *, reorder: bool | None = False,
                 symmetric: bool | None = None, depth: int = 1):
        self.A = A.copy()
        self._options = (reorder, symmetric, depth)
        self._structure: Structure | None = None
        self._error: SpecializationError | None = None
        if not config.jit_disabled():
            self._analyse()

    def _analyse(self) -> None:
        try:
            self._structure = analyse(self.A, *self._options)
        except Exception as exc:  # noqa: BLE001 - a bug in the analysis: the runtime falls back
            self._error = SpecializationError(
                f"analysing the matrix failed: {type(exc).__name__}: {exc}", stage="planning")

    @property
    def analysed(self) -> Structure | None:
        """The structure, or None if the analysis failed or has not run."""
        return self._structure

    def structure(self) -> Structure:
        """The structure; raises the analysis's failure as a SpecializationError."""
        if self._structure is None and self._error is None:
            self._analyse()
        if self._error is not None:
            raise self._error
        return self._structure


def matrix_specs(vdtype: np.dtype, idtype: np.dtype, nd: int) -> tuple[ArgSpec, ...]:
    """Guards of ptr, idx, val, druns, doff (exactly ``nd`` offsets: the C reads them
    all) and dval (its length, ``nd`` values per row, is checked in C: ASP_BAD_MATRIX)."""
    return (ArgSpec("array", idtype, 1), ArgSpec("array", idtype, 1),
            ArgSpec("array", vdtype, 1), ArgSpec("array", I64, 1),
            ArgSpec("array", I64, 1, shape=(nd,)), ArgSpec("array", vdtype, 1))


def csr_of(args: tuple) -> sp.csr_matrix:
    """The scipy matrix of a kernel call's first five arguments (the references' view)."""
    ptr, idx, val = args[:3]
    n = ptr.size - 1
    return sp.csr_matrix((val, idx, ptr), shape=(n, n))


# -- the C they share ----------------------------------------------------------------------

def render_def(file: str, name: str, *, kernel: str, **context) -> str:
    """The text of def ``name`` of ``templates/<file>``; any failure (a missing file, a
    template bug) is a SpecializationError of the rendering stage."""
    try:
        tmpl = template(TEMPLATES / file).get_def(name)
    except Exception as exc:  # noqa: BLE001 - whatever Mako or the file system raises
        raise SpecializationError(f"rendering the template failed: {type(exc).__name__}: "
                                  f"{exc}", kernel=kernel, stage="rendering") from exc
    return render(tmpl, kernel=kernel, **context)


def c_context(vdtype: np.dtype, idtype: np.dtype, nd: int) -> dict:
    return {"vt": VALUE_TYPES[vdtype], "it": INDEX_TYPES[idtype], "nd": nd,
            "par_min": config.parallel_threshold(PAR_MIN)}


def _p(name: str, ctype: str, pointer: bool = False, const: bool = False,
       restrict: bool = False) -> ir.Param:
    return ir.Param(name, ctype, pointer=pointer, const=const, restrict=restrict)


def _rows_params(restrict: bool) -> tuple[ir.Param, ...]:
    return (_p("A", "mat_t", True, True), _p("src", "vt", True, True, restrict),
            _p("soff", "int64_t"), _p("dst", "vt", True, False, restrict), _p("doff", "int64_t"),
            _p("a", "int64_t"), _p("b", "int64_t"), _p("t", "vt"), _p("g", "vt"))


def helper(name: str, params: tuple[ir.Param, ...], body: str, ret: str = "void", *,
           inline: bool = False) -> ir.Function:
    return ir.Function(name, params, ir.Block((ir.Verbatim(body, name),)), ret=ret,
                       static=True, inline=inline)


def matrix_helpers(kernel: str, ctx: dict) -> tuple[ir.Function, ...]:
    """row_apply (one row of g (A - t I) src), csr_rows, diag_rows (with diagonals),
    rows_apply (rows [a, b), by diagonal runs where there are any) and share (a thread's
    static share of the rows)."""
    def body(name):
        return render_def("matrix.c.mako", name, kernel=kernel, **ctx)

    row = (_p("ptr", "it", True, True, True), _p("idx", "it", True, True, True),
           _p("val", "vt", True, True, True), _p("src", "vt", True, True, True),
           _p("off", "int64_t"), _p("r", "int64_t"), _p("t", "vt"), _p("g", "vt"))
    out = [helper("row_apply", row, body("row_apply"), "vt", inline=True),
           helper("csr_rows", _rows_params(True), body("csr_rows"))]
    if ctx["nd"] > 0:
        out.append(helper("diag_rows", _rows_params(True), body("diag_rows")))
    out.append(helper("rows_apply", _rows_params(False), body("rows_apply")))
    out.append(helper("share", (_p("n", "int64_t"), _p("a", "int64_t", True),
                                _p("b", "int64_t", True)), body("share"), inline=True))
    return tuple(out)


def matrix_preamble(kernel: str, ctx: dict) -> str:
    return render_def("matrix.c.mako", "preamble", kernel=kernel, **ctx)


class TemplateKernel(Specializer):
    """A kernel family of this package: ``family`` names it; ``variants`` are the variants
    it builds, so they key its warm-start record with the family (the C of a signature
    depends on nothing else: types and sizes are in the signature, the templates in the
    package's fingerprint)."""

    def __init__(self, family: str, variants: tuple[str, ...]):
        self.family, self.variants = family, tuple(variants)
        self.name = f"matrix_powers:{family}"
        self.digest = hashlib.sha256(f"{self.name}|{','.join(self.variants)}".encode()
                                     ).hexdigest()


# -- small problems to check variants on ---------------------------------------------------

def check_structure(nd: int, vdtype: np.dtype, idtype: np.dtype, n: int = 400,
                    seed: int = 2026) -> Structure:
    """A random banded matrix (bandwidth <= 9) with empty rows, irregular rows and, when
    ``nd`` > 0, runs of rows on ``nd`` diagonals: every path of the kernels."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.choice(np.arange(-9, 10), nd, replace=False)).astype(np.int64)
    rows, follow = [], np.zeros(n, bool)
    for r in range(n):
        u = rng.random()
        if nd and u < 0.75 and 0 <= r + offsets[0] and r + offsets[-1] < n:
            cols = r + offsets
            follow[r] = True
        elif u < 0.8:
            cols = np.zeros(0, np.int64)
        else:
            cols = np.unique(np.clip(r + rng.integers(-9, 10, rng.integers(1, 7)), 0, n - 1))
        rows.append(cols)
    indptr = np.concatenate([[0], np.cumsum([c.size for c in rows])]).astype(idtype)
    indices = np.concatenate(rows).astype(idtype)
    data = rng.uniform(-1, 1, indices.size).astype(vdtype)
    M = sp.csr_matrix((data, indices, indptr), shape=(n, n))
    edges = np.diff(np.concatenate([[0], follow.astype(np.int8), [0]]))
    runs = np.empty(2 * int((edges == 1).sum()), np.int64)
    runs[0::2], runs[1::2] = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    dvals = partition.diagonal_values(indptr, data, n, nd, runs)
    return Structure(M, offsets, runs, dvals, partition.bandwidths(indptr, indices, n),
                     partition.fingerprint(indptr, indices, n))


# -- this process's kernels ----------------------------------------------------------------

_GROUP: set[str] = set()  # every kernel of this package: one fallback warning among them
_KERNELS: dict[tuple, JitKernel] = {}


def jit(factory: Callable[..., Specializer], *key) -> JitKernel:
    """The JitKernel of ``factory(*key)``, made once per process and shared by every
    matrix and solver (its specializations and tuning are per signature and bucket)."""
    k = _KERNELS.get((factory, key))
    if k is None:
        k = _KERNELS[(factory, key)] = JitKernel(factory(*key), fallback_group=_GROUP)
    return k


def forget() -> None:
    """Drop this process's kernels and fallback warning (tests that change the
    environment use this; the disk cache and tuning database stay)."""
    _KERNELS.clear()
    _GROUP.clear()
