"""The matrix-powers kernel: ``V[l] = g_l (A - t_l I) V[l-1]``, l = 1..L, as tuned variants.

One plan per (value type, index type, diagonals); its variants share one argument
list -- the matrix, V (and V2 for the two-basis kernel), the shifts and scales, and
the plan of the variant that runs -- and each reads only what it needs:

* ``naive``: L parallel CSR products, the matrix streamed L times;
* ``pa1_<N>k``: PA1 with blocks of rows holding about N KiB of A each: the block size
  is a search space (:data:`PA1_KIB`, :func:`pa1_space`), of which the runtime compiles
  :data:`PA1_SAMPLE` points and the tuner races them with the others;
* ``window_short``, ``window_long``: the one-pass sliding window, 256 and 2048 rows
  per step (for banded matrices; works for any).

The runtime checks each against :meth:`PowersKernel.run_python` on a small random
problem with its own plans, and tunes among them per structure, depth and thread
count (the ``bucket``).  A variant forced by the caller (``pa1-<rows>``,
``window-<step>``, ``naive``) is a one-variant kernel of its own (``pa1`` reads the
forced rows' plan).

The caller's arguments are ``(problem, V, forced)`` (``(problem, V, V2, forced)``
for two bases): :class:`PowersProblem` holds the matrix, k, shifts, scales and the
plans, each made once per problem; ``prepare`` turns them into the kernel's
arguments (permuting V when the matrix was reordered), and makes the plan of the
variant the runtime says the call runs (``Prepared.complete``): the one the tuner
picks while it times them, the winner's once it has chosen (a remembered window
winner never makes a PA1 plan).  A plan that cannot be made raises a
:class:`~asp.errors.SpecializationError`, so the call runs as the reference.
"""
from __future__ import annotations

import time

import numpy as np
import scipy.sparse as sp

from asp import config
from asp.codegen.template import template_function
from asp.errors import SpecializationError
from asp.ir import platform as ir
from asp.runtime import ArgSpec, Plan, Prepared, Space, Variant
from specializers.matrix_powers import partition
from specializers.matrix_powers.kernels import (
    ERRORS,
    F64,
    I64,
    INCLUDES,
    MATRIX_NAMES,
    Matrix,
    TemplateKernel,
    c_context,
    check_structure,
    csr_of,
    helper,
    matrix_helpers,
    matrix_preamble,
    matrix_specs,
    render_def,
)

__all__ = ["PA1_KIB", "PA1_SAMPLE", "TUNED", "TUNED_COUNT", "VARIANTS", "PowersKernel",
           "PowersProblem", "fill_basis", "kind", "pa1_space"]

#: C variant -> (template def, plan slot): the plain variants (``pa1``: a forced block
#: size's; the tuned kernel's PA1 variants are the points of :func:`pa1_space`)
VARIANTS = {"naive": ("naive", None), "pa1": ("pa1", None),
            "window_short": ("window", "short"), "window_long": ("window", "long")}
#: The tuned kernel: these plain variants and a sample of the PA1 block sizes, in KiB of
#: A per block (rows = KiB / bytes per row of A, at least 64): the two fixed sizes it had
#: (256 KiB, 1 MiB) and the cache sizes around them.
TUNED = ("naive", "window_short", "window_long")
PA1_KIB, PA1_SAMPLE = (64, 128, 256, 512, 1024, 2048), 4
TUNED_COUNT = len(TUNED) + min(PA1_SAMPLE, len(PA1_KIB))
WINDOW_STEPS = {"short": 256, "long": 2048}
# each seam between window chunks costs a little re-reading; a few chunks per thread
# buy load balance when the cores are shared
WINDOW_CHUNKS_PER_THREAD = 4
PLAN_NAMES = ("blk", "runptr", "runs", "base", "chunks", "K", "span", "bl", "bu",
              "step_short", "step_long")
_EMPTY = np.zeros(0, np.int64)
_EMPTY.setflags(write=False)


def fill_basis(A: sp.csr_matrix, V: np.ndarray, shifts: np.ndarray, scales: np.ndarray) -> None:
    """The reference: ``V[l] = scales[l-1] (A V[l-1] - shifts[l-1] V[l-1])`` in V's type."""
    for j in range(V.shape[0] - 1):
        t, g = V.dtype.type(shifts[j]), V.dtype.type(scales[j])
        V[j + 1] = (A @ V[j] - t * V[j]) * g


class PowersProblem:
    """What the powers kernels read besides V: the :class:`Matrix`, depth ``k``, shifts,
    scales, and the variants' plans, each made once on first use (``setup_seconds``
    adds up the time)."""

    def __init__(self, matrix: Matrix, k: int, shifts: np.ndarray, scales: np.ndarray,
                 row_bytes: float):
        self.matrix, self.k, self.shifts, self.scales = matrix, k, shifts, scales
        self.row_bytes = row_bytes
        self.setup_seconds = 0.0
        self._plans: dict[tuple, object] = {}

    def pa1_rows(self, kib: int) -> int:
        """Rows of A per PA1 block for blocks of about ``kib`` KiB of A (at least 64)."""
        return max(64, int((kib << 10) / self.row_bytes))

    def plan(self, variant: str, levels: int):
        """The plan of a public variant name: a Pa1Plan, window chunks, or None (naive)."""
        head, _, size = variant.partition("-")
        if head == "pa1":
            return self._made(("pa1", int(size)), variant, lambda: partition.pa1_plan(
                *self._csr_index(), self.k, int(size)))
        if head == "window":
            threads = config.num_threads()
            chunks = 1 if threads == 1 else WINDOW_CHUNKS_PER_THREAD * threads
            bl, bu = self.matrix.structure().bandwidth
            n = self.matrix.A.shape[0]
            return self._made(("window", levels, chunks), variant, lambda: partition.window_chunks(
                n, levels, bl, bu, chunks))
        return None

    def _csr_index(self):
        M = self.matrix.structure().csr
        return M.indptr, M.indices, M.shape[0]

    def _made(self, key: tuple, variant: str, make):
        got = self._plans.get(key)
        if got is None:
            t0 = time.perf_counter()
            try:
                got = make()
            except Exception as exc:  # noqa: BLE001 - a bug in planning: the call falls back
                got = SpecializationError(f"planning variant {variant!r} failed: "
                                          f"{type(exc).__name__}: {exc}", stage="planning")
            self._plans[key] = got
            self.setup_seconds += time.perf_counter() - t0
        if isinstance(got, SpecializationError):
            raise got
        return got

    def plan_args(self, levels: int, forced: str | None, variants: tuple[str, ...]) -> tuple:
        """The plan arguments of a call that runs one of ``variants`` (C names; the
        runtime names one): their plans (made now if not yet), empty arrays for the
        others.  A forced variant's plan is the one its name asks for.  PA1 variants
        share one plan slot: the first PA1 variant named fills it."""
        pa1, chunks, steps = None, None, dict(WINDOW_STEPS)
        for name in variants:
            head, slot = kind(name)
            if head == "pa1" and pa1 is None:
                rows = int(forced[4:]) if forced else self.pa1_rows(slot)
                pa1 = self.plan(f"pa1-{rows}", levels)
            elif head == "window":
                if forced:
                    steps[slot] = int(forced[7:])
                chunks = self.plan(f"window-{steps[slot]}", levels)
        out = [_EMPTY] * 4 if pa1 is None else [pa1.blk, pa1.runptr, pa1.runs, pa1.base]
        bl, bu = self.matrix.structure().bandwidth
        return (*out, _EMPTY if chunks is None else chunks, self.k,
                1 if pa1 is None else pa1.span, bl, bu, steps["short"], steps["long"])


def kind(name: str) -> tuple[str, object]:
    """(template def, slot) of a C variant: a plain one's, or a PA1 point's (``pa1_<N>k``:
    its KiB of A per block)."""
    if name.startswith("pa1_") and name.endswith("k") and name[4:-1].isdigit():
        return "pa1", int(name[4:-1])
    return VARIANTS[name]


def pa1_space(make) -> Space:
    """The PA1 block size as a search space: ``make(kib)`` gives the point's variant."""
    return Space("pa1_block", {"kib": PA1_KIB}, lambda kib: make(f"pa1_{kib}k"),
                 sample=PA1_SAMPLE)


def forced_variant(forced: str) -> str:
    """The C variant that runs a forced public variant name."""
    if forced.startswith("pa1-"):
        return "pa1"
    if forced.startswith("window-"):
        return "window_short"
    return "naive"


class PowersKernel(TemplateKernel):
    """The powers kernel of one basis (``two=False``) or of two bases in one call."""

    def __init__(self, two: bool, variants: tuple[str, ...] = TUNED, spaces: bool = True):
        """``variants``: the plain variants; ``spaces``: with the PA1 block-size space
        (the tuned kernel; a forced variant's kernel has none)."""
        super().__init__("powers2" if two else "powers",
                         (*variants, *((f"pa1_space{PA1_KIB}/{PA1_SAMPLE}",) if spaces else ())))
        self.plain, self.spaces = tuple(variants), spaces
        self.two = two
        self.names = (*MATRIX_NAMES, "V", *(("V2",) if two else ()), "shift", "scale",
                      *PLAN_NAMES)

    def prepare(self, args: tuple) -> Prepared:
        if len(args) != (4 if self.two else 3):
            raise TypeError(f"{self.name}: expected (problem, V{', V2' if self.two else ''}, "
                            f"forced), got {len(args)} arguments")
        problem, V, *rest = args
        V2 = rest[0] if self.two else None
        forced = rest[-1]
        st = problem.matrix.structure()
        n = st.csr.shape[0]
        for name, B in (("V", V), ("V2", V2))[: 1 + self.two]:
            if not isinstance(B, np.ndarray) or B.dtype != st.csr.dtype or B.ndim != 2:
                raise TypeError(f"{name} must be a 2-D {st.csr.dtype} array")
            if B.shape[1] != n or B.shape[0] < 1:
                raise ValueError(f"{name} must have shape (levels+1, {n}), got {B.shape}")
        levels = V.shape[0] - 1
        bases, finish = (V, V2)[: 1 + self.two], None
        if st.perm is not None:
            bases = tuple(_permuted(B, st.perm) for B in bases)

            def finish(_, out=(V, V2)[: 1 + self.two], work=bases, iperm=st.iperm):
                for B, W in zip(out, work):
                    B[1:] = W[1:, iperm]
        bucket = ""
        if forced is None:
            depth = f"{levels}/{V2.shape[0] - 1}" if self.two else f"{levels}"
            bucket = f"{st.fingerprint} L{depth} t{config.num_threads()}"
        head = (*st.arrays, *bases, problem.shifts, problem.scales)

        def complete(variants: tuple[str, ...]) -> tuple:
            # only the plans of the variants this call may run: every one while the
            # tuner is timing them, the winner's alone once it has chosen
            return (*head, *problem.plan_args(levels, forced, variants))

        return Prepared((*head, *problem.plan_args(levels, forced, ())), st.signature,
                        finish=finish, same=False, bucket=bucket, complete=complete)

    def specs(self, vdtype: np.dtype, idtype: np.dtype, nd: int) -> tuple[ArgSpec, ...]:
        basis = ArgSpec("array", vdtype, 2, write=True)
        levels = ArgSpec("array", F64, 1)
        plan_array, integer = ArgSpec("array", I64, 1), ArgSpec("int")
        return (*matrix_specs(vdtype, idtype, nd), basis, *((basis,) if self.two else ()),
                levels, levels, *(plan_array,) * 5, *(integer,) * 6)

    def plan(self, prepared: Prepared) -> Plan:
        idx, val, doff = prepared.args[1], prepared.args[2], prepared.args[4]
        vdtype, idtype, nd = val.dtype, idx.dtype, doff.size
        ctx = c_context(vdtype, idtype, nd)
        specs = self.specs(vdtype, idtype, nd)

        def make(name: str) -> Variant:
            body, slot = kind(name)
            text = render_def("powers.c.mako", body, kernel=self.name, two=self.two,
                              slot=slot, **ctx)
            return Variant(name, template_function(f"mpk_{name}", self.names, specs, text))

        variants = [make(name) for name in self.plain]
        helpers = matrix_helpers(self.name, ctx)
        if self.spaces or any(kind(v)[0] == "pa1" for v in self.plain):
            helpers += (pa1_sweep(self.name, ctx),)
        f32 = vdtype == np.float32
        return Plan(prepared.signature, specs, tuple(variants), errors=ERRORS,
                    spaces=(pa1_space(make),) if self.spaces else (),
                    preamble=matrix_preamble(self.name, ctx), helpers=helpers,
                    includes=INCLUDES, check_args=lambda: self.check_args(vdtype, idtype, nd),
                    rtol=1e-4 if f32 else 1e-10, atol=1e-5 if f32 else 1e-12)

    def check_args(self, vdtype: np.dtype, idtype: np.dtype, nd: int) -> tuple:
        """A 400-row banded problem (``check_structure``) with 3 levels (V2: 2), small PA1
        blocks (23 rows: the C of every block size is the same, its plan differs) and four
        window chunks stepped by 5 and 37 rows: many blocks, ghost zones, chunks and
        seams."""
        st = check_structure(nd, vdtype, idtype)
        rng = np.random.default_rng(7)
        n, K = st.csr.shape[0], 3
        V = np.zeros((K + 1, n), vdtype)
        V[0] = rng.standard_normal(n)
        bases = [V]
        if self.two:
            V2 = np.zeros((K, n), vdtype)
            V2[0] = rng.standard_normal(n)
            bases.append(V2)
        shifts, scales = rng.uniform(-1, 1, K), rng.uniform(0.2, 0.4, K)
        p = partition.pa1_plan(st.csr.indptr, st.csr.indices, n, K, 23)
        bl, bu = st.bandwidth
        chunks = partition.window_chunks(n, K, bl, bu, 4)
        return (*st.arrays, *bases, shifts, scales, p.blk, p.runptr, p.runs, p.base, chunks,
                K, p.span, bl, bu, 5, 37)

    def run_python(self, args: tuple):
        """The reference, from the caller's arguments or from the kernel's own."""
        if isinstance(args[0], PowersProblem):
            problem = args[0]
            A, shifts, scales = problem.matrix.A, problem.shifts, problem.scales
            bases = args[1:3] if self.two else args[1:2]
        else:
            A = csr_of(args)
            m = len(MATRIX_NAMES)  # the matrix's arrays, then V (V2), shift, scale
            bases = args[m:m + 1 + self.two]
            shifts, scales = args[m + 1 + self.two], args[m + 2 + self.two]
        for B in bases:
            fill_basis(A, B, shifts, scales)


def _permuted(B: np.ndarray, perm: np.ndarray) -> np.ndarray:
    W = np.empty_like(B)
    W[0] = B[0][perm]
    return W


def pa1_sweep(kernel: str, ctx: dict) -> ir.Function:
    """The helper that runs one basis by PA1 inside the caller's parallel region."""
    def p(name, ctype, pointer=False, const=False):
        return ir.Param(name, ctype, pointer=pointer, const=const)

    params = (p("A", "mat_t", True, True), p("V", "vt", True), p("n", "int64_t"),
              p("L", "int64_t"), p("K", "int64_t"), p("th", "double", True, True),
              p("ga", "double", True, True), p("blk", "int64_t", True, True),
              p("runptr", "int64_t", True, True), p("runs", "int64_t", True, True),
              p("base", "int64_t", True, True), p("nb", "int64_t"), p("span", "int64_t"),
              p("W", "vt", True))
    return helper("pa1_sweep", params, render_def("powers.c.mako", "pa1_sweep",
                                                  kernel=kernel, **ctx))
