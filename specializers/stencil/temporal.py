"""Temporal blocking: many steps of a stencil per pass over memory.

``K.iterate(u, *args, steps=S)`` is ``for _ in range(S): u = K(u, *args)``.  Step by
step, every step streams the whole grid through memory once, and no step can be faster
than that.  The blocked variants here compute up to ``depth`` steps per pass instead
(the C is printed by :mod:`specializers.stencil.wavefront`):

* The grid's interior is cut into *tiles*: ``rows`` points along axis 0 and ``width``
  along each other axis, except that a 3-D tile spans the contiguous axis whole
  (``span``) where its rings fit so.  A tile of the last step needs, one step earlier, itself plus
  the neighbourhood's reach ``R`` on every side, and so on down to the pass's input: the
  tiles of a pass overlap in those halos and are computed independently (overlapped, or
  trapezoid, tiling: a little redundant work at tile edges, no synchronisation between
  tiles, so they are shared dynamically among threads).
* Within a tile the steps advance as a *wavefront* along axis 0: at wavefront position
  ``s``, step ``l`` computes row (2-D) or plane (3-D) ``s - (l - 1) R``, whose inputs
  one step earlier were finished at this or an earlier position.  A step's rows live in
  a thread-private *ring* of a few rows, so the intermediate steps never leave the
  cache; only the pass's input is read from memory and only its last step written.
* ``S`` steps take ``ceil(S / depth)`` passes of as equal depths as can be, alternating
  between the outputs and scratch grids so that the last pass ends in the outputs.

A state of several levels (the wave equation's ``(u, u_prev)``, newest first: the
kernel's first ``K`` parameters) is blocked the same way: a step reads the ring of each
level it needs, and a pass writes its last ``K`` levels.

Every point is computed by the same expression as in a single step (the kernel's
lowered body, read through the rings instead of the grid), in the same order of
operations: results are bit-identical to the step-by-step loop.  The depth and tile
sizes are search spaces (:class:`asp.runtime.Space`, one per depth) that the core's
tuner races; the first variant, ``steps``, is the plain step-by-step sweep in C (one
pass per step, no ring), which every blocked variant must beat.  The spaces come from
the machine's caches (:func:`cache_sizes`): tile widths from rows that fit the L1 data
cache several times over up to the whole grid, and only the (depth, width) whose
rings fit in a share of L2 or of a thread's part of L3 and whose halos add little
work (:func:`blocking_points`), and, where a kernel's jammed sweeps are explicit
vectors, the form of those vectors (neighbours after a point shuffled or loaded:
:mod:`specializers.stencil.vectors`), which is the processor's business.

Blocked variants exist for what the scheme covers: ``'interior'`` mode (the border of
every step is zero, as ``K(u)`` leaves it), 1-D (trapezoid tiles swept whole, step after
step: :mod:`specializers.stencil.lines`), 2-D and 3-D grids, a kernel whose first
parameters are the state it steps, that writes every output point without reading the
output, and whose neighbour loops are unrolled (the default); :func:`why_not_blocked`
says why another kernel iterates step by step.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import math

import numpy as np

from asp import config
from asp.config import cache_sizes
from asp.errors import UnrepresentableValue
from asp.runtime import ArgSpec, Plan, Prepared, Space, Specializer, Variant
from specializers.stencil import vectors
from specializers.stencil.domain import NeighborLoop, StencilIR, TableRead, radius
from specializers.stencil.lines import LineBuilder
from specializers.stencil.lowering import needs_load, pname
from specializers.stencil.specializer import StencilSpecializer  # plans each step's code
from specializers.stencil.variants import PREAMBLE, own_functions
from specializers.stencil.vectors import lanes
from specializers.stencil.vectors import preamble as vector_preamble
from specializers.stencil.wavefront import STEPS, Builder, ring_rows

__all__ = ["DEPTHS", "JAMS", "ROWS", "SAMPLE", "IterateSpecializer",
           "blocking_points", "point_exists", "size_class",
           "cache_sizes", "why_not_blocked"]

#: Steps per pass tried, per number of dimensions; tile extents along axis 0 (the
#: wavefront's axis), as multiples of the depth times the reach (the halo a tile adds).
DEPTHS = {1: (64, 128), 2: (16, 32), 3: (2, 4, 8)}
ROWS = {2: (64,), 3: (8, 32)}
#: Rows (planes) of a level computed in one sweep: the rows they share are read once
#: (4096^2 heat, depth 16, on an Intel Xeon with AVX-512: 2.82 ms a step alone, 2.70 in
#: pairs, 2.48 in fours; on a Zen 3 with AVX2's 16 vector registers, pairs win: 3.48-3.53
#: ms against 3.71-3.99 in fours, 8192^2 13.3 against 14.0).  A jam
#: is left out where a larger one has rings as small (ring rows are rounded up to a
#: power of two): the larger one reads less for the same cache.  (3-D heat on a Zen 3,
#: planes in pairs against one at a time: 256^3 5.64 vs 6.44 ms a step at the best
#: tile, faster at 9 of 10 tiles and within 2 % at the tenth; 158^3 and float32 alike.)
#: Larger jams were no faster on the Intel Xeon VM (Emerald Rapids): 2-D rows in eights
#: 3.83-3.92 ms a step against 3.52-3.53 in fours, 3-D planes in fours 7.66 against
#: 7.77 in pairs (each the best tile of its space, side by side).
JAMS = {2: (1, 2, 4), 3: (1, 2)}
#: A thread's rings may take this share of L2 (the pass's input and output rows and
#: the other thread's traffic share it); a point may add at most this much work in
#: halos (averaged over the levels of a tile).
RING_SHARE = 0.75
MAX_WORK = 1.3
#: Rings may also take this share of a thread's part of L3.  3-D: a 256^2 plane is
#: 512 KiB, so an L2 of 512 KiB holds rings of depth 2 and narrow tiles only (256^3
#: heat: 0.82x the best single step; rings in L3, depth 4 on whole-width planes: 1.63x,
#: on a Zen 3 with 32 MiB of L3).  2-D: wide tiles beat L2-sized ones although their
#: rings live in L3 (fewer halo points, longer vector loops; 4096^2 heat at depth 16,
#: rows in fours, same Zen 3: 256 wide 4.74 ms a step, 1024 3.87, 2048 3.65, whole
#: width 3.56; 8192^2: 256 17.1, 2048 14.4, 4096 14.7, whole width 14.6).  3-D tiles
#: that span whole rows (no halo columns, long vector loops) let rings of depth 8 fit:
#: 256^3 heat at depth 8 on 64 x 256 tiles 5.4-5.9 ms a step against 6.2-6.5 for depth
#: 4 on whole planes, the best before, in the same runs (Zen 3).  But on an Intel Xeon
#: (Emerald Rapids VM, 2 MiB of L2 a core, its L3 on a mesh) rings in L3 ran slower
#: than rings that fit L2: 4096^2 heat 3.0-3.2 ms a step at depth 32 on 512-wide tiles
#: in rows of four, 3.7-3.8 at the best L3-sized tiles (depth 16, 2048 wide), 5.6-6.6
#: at 4096; 256^3 7.6 against 9.3.  So a space keeps the widest tiles whose rings fit
#: in L2 besides the widest that fit in L3, and the tuner picks.  (The second widest
#: that fit in L2 was no faster: depth 32 at 256 wide 3.7-4.1 ms, depth 16 at 512 wide
#: 3.7-4.0 against 3.6-4.0 at 1024; kept, it made 16 points a depth to race, and the
#: online choice of one whole run 1.16x the exhaustive tuner's best.)
#: (Measured again on that Xeon, every variant of a space side by side: 4096^2 depth 32
#: at 768 or 1024 wide, rows in pairs, 2.60-2.74 ms a step, no better than 512 wide at
#: 2.60-2.71; 256^3 on square tiles, 32 to 128 wide at depths 4 and 8, 9.7-33 ms against
#: 7.4-8.7 for 32 x 256 tiles spanning whole rows.  What bounds 3-D here: a level's
#: 32 x 256 plane is 64 KiB, so its stores and the planes above and below it come from
#: L2, not L1 (in a profile a fifth of the sweep's samples fall just after a ring store),
#: while a 2-D row of 512 is 4 KiB and its neighbours stay in L1: 16.7M points of 7
#: and 9 operations ran 2.9 ms a step on 4096^2 and 7.4-8.7 on 256^3.)
L3_SHARE = 0.5
#: Points compiled of each depth's space (all of them if there are no more); half as
#: many again of a space whose jammed sweeps come in two forms (``east``: :mod:`.vectors`):
#: its points nearly double, and the form decides as much as the tiles do (4096^2 heat
#: on a Zen 2: 2.72-2.91 ms a step for the four best tiles with loads, 3.04-3.23 with
#: shuffles).  A compile serves every point of one jam and form (the tiles and depth
#: are the function's parameters), so more points cost tuning calls, not builds: 8
#: since the spaces keep L2-sized tiles besides L3-sized ones (up to 12 points a depth,
#: every one compiled).
SAMPLE = 8
def size_class(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The grid sizes that share one blocked iteration's variants: each extent rounded up
    to a power of two.  The search space is made for the class (:func:`blocking_points`),
    so a grid is never run with tiles chosen for a much smaller one (before, the first
    grid's space served every size: a 512^2 first call gave a 4096^2 grid 256-wide
    tiles, 4.7 ms a step against 3.6 at whole width)."""
    return tuple(1 << max(int(n) - 1, 0).bit_length() for n in shape)


def point_exists(point: dict[str, int]) -> bool:
    """Whether a point of a blocking space is a variant: the ``east`` form is one of a
    jammed sweep's (a row alone is left to the compiler's vectors)."""
    return point.get("jam", 1) > 1 or not point.get("east", 0)


def blocking_points(dim: int, itemsize: int, interior: tuple[int, ...], reach: int,
                    levels: int = 1, east: bool = False
                    ) -> dict[int, dict[str, tuple[int, ...]]]:
    """The search space per depth: ``{depth: {"depth": (depth,), "rows": ..., "width":
    ..., "jam": ...}}`` for grids of the :func:`size_class` of ``interior`` (a tile as
    wide or tall as the class covers the grid's whole interior in one tile).  Widths are
    powers of two from rows that take 1/16 of L1 up to the class's width (2-D), or 16 to
    256 points (3-D), no wider than the class.  The two widest are kept whose (depth,
    width, jam) has a thread's rings fit in :data:`RING_SHARE` of L2 or in
    :data:`L3_SHARE` of a thread's part of L3, whichever is more, and whose halos add at
    most :data:`MAX_WORK` of the work of a tile of the smallest rows (a jam whose rings
    fit at no width is left out, so is one whose rings are no smaller than a larger
    jam's, and the widths kept fit with every jam kept); and the widest whose rings fit
    in L2 with every jam that fits there.  A 3-D depth whose rings fit
    at some width and jam with tiles spanning the class's rows whole gets ``"span":
    (length,)``: its tiles are ``width`` along axis 1 and whole along axis 2; other
    depths' tiles are square across both.  An axis a tile covers whole adds no halo.
    ``east``: the jammed sweeps' vectors come in two forms, ``"east": (0, 1)`` (only
    points with ``jam > 1`` take 1: :func:`point_exists`)."""
    interior = size_class(interior)
    l1, l2, l3 = cache_sizes()
    if dim == 1:
        return _line_points(itemsize, interior[0], reach, levels, l2)
    budget = max(RING_SHARE * l2, L3_SHARE * l3 / max(config.num_threads(), 1))

    def pow2(x: float) -> int:
        return 1 << max(int(math.floor(math.log2(max(x, 1)))), 0)

    if dim == 2:
        narrow = pow2(l1 / 16 / itemsize)
        widths = {narrow << e for e in range(max(interior[1] // narrow, 1).bit_length())}
        widths.add(interior[1])
    else:
        widths = {1 << e for e in range(4, 9)}
    widths = {min(w, max(interior[1], 1)) for w in widths}
    whole = max(interior[-1], 1)
    out: dict[int, dict[str, tuple[int, ...]]] = {}
    for depth in DEPTHS[dim]:
        if depth < 2 * levels:  # passes of as equal depths as can be: each >= levels
            continue
        rows = tuple(sorted({min(m * depth * reach, max(interior[0], 1))
                             for m in ROWS[dim]}))

        def fits(w: int, jam: int, depth=depth, rows=rows, span=None, limit=budget) -> bool:
            tile = (rows[0], *(w,) * (dim - 2), span or w)
            rings = (depth - 1) * ring_rows(levels, reach, jam) * itemsize \
                * math.prod(t + 2 * depth * reach for t in tile[1:])
            # A tile as long as the class along an axis adds no halo there.
            work = sum(math.prod((t + 2 * (depth - lv) * reach) / t if t < n else 1.0
                                 for t, n in zip(tile, interior))
                       for lv in range(1, depth + 1)) / depth
            return rings <= limit and work <= MAX_WORK

        # 3-D: tiles span the contiguous axis whole where their rings fit so (no halo
        # columns, one long vector loop a row), else they are square across it.
        span = whole if dim == 3 and any(fits(w, j, span=whole) for w in widths
                                         for j in JAMS[dim]) else None
        if span is not None:
            fits = functools.partial(fits, span=span)

        # The jams whose rings fit at some width, but none whose rings a larger one
        # matches; the widths that fit with all of them.
        jams = tuple(j for j in JAMS[dim] if any(fits(w, j) for w in widths))
        jams = tuple(j for j in jams if not any(
            b > j and ring_rows(levels, reach, b) == ring_rows(levels, reach, j) for b in jams))
        keep = [w for w in sorted(widths) if jams and all(fits(w, j) for j in jams)]
        # And the widest whose rings fit in L2 with every jam that fits there at some
        # width, where L3 would take wider ones: which cache the rings had better live
        # in is the machine's (see L3_SHARE).
        in_l2 = functools.partial(fits, limit=RING_SHARE * l2)
        l2_jams = [j for j in jams if any(in_l2(w, j) for w in widths)]
        small = [w for w in sorted(widths) if l2_jams and all(in_l2(w, j) for j in l2_jams)]
        if keep:
            out[depth] = {"depth": (depth,), "rows": rows,
                          "width": tuple(sorted({*keep[-2:], *small[-1:]})), "jam": jams}
            if span is not None:
                out[depth]["span"] = (span,)
            if east and max(jams) > 1:
                out[depth]["east"] = (0, 1)
    return out


def _line_points(itemsize: int, n: int, reach: int, levels: int, l2: int) -> dict:
    """1-D (:mod:`specializers.stencil.lines`): per depth, two tile lengths (powers of
    two, no longer than the class) among those whose ``levels + 1`` buffers fit in
    :data:`RING_SHARE` of L2 and whose halos add at most :data:`MAX_WORK`: an eighth and
    a thirty-second of the longest, or the shortest (16M-point 1-D heat, 64 steps, on a
    Zen 4 with 1 MiB of L2: 1024-4096 points at depth 64, 3.35-3.45 ms a step, against
    3.8 for 8192 and 32768, 4.1-4.4 at depth 32; ``make bench``: the best single step
    7.9 ms, ``iterate`` 2.2 at depth 128 on 4096 points)."""
    out: dict[int, dict[str, tuple[int, ...]]] = {}
    for depth in DEPTHS[1]:
        if depth < 2 * levels:
            continue
        fit = [w for w in (1 << e for e in range(6, 24)) if w <= max(n, 64)
               and (levels + 1) * (w + 2 * depth * reach) * itemsize <= RING_SHARE * l2
               and (w + depth * reach) / w <= MAX_WORK]
        if fit:
            out[depth] = {"depth": (depth,), "width": tuple(sorted(
                {max(fit[-1] // 32, fit[0]), max(fit[-1] // 8, fit[0])}))}
    return out


def why_not_blocked(k: StencilIR, params: list[str], boundary: str, dim: int,
                    levels: int = 1) -> str | None:
    """None if the iteration of kernel ``k`` (its state: its first ``levels``
    parameters) can be blocked in time, else why not."""
    if boundary != "interior":
        return f"boundary={boundary!r}: only 'interior' mode is blocked in time"
    if dim not in (1, 2, 3):
        return f"{dim}-D grids are not blocked in time (1-D, 2-D and 3-D are)"
    for state in params[:levels]:
        if state == k.out or k.grid(state).role != "field":
            return f"the state parameter {state!r} is not an input grid the kernel steps"
        if k.grid(state).ctype != k.grid(k.out).ctype:
            return "the state and the output have different types"
    if needs_load(k):
        return "the kernel reads or accumulates into its output"
    if any(isinstance(n, NeighborLoop) for n in k.walk()):
        return "a neighbour loop is not unrolled (should_unroll=False, or a large neighbourhood)"
    if any(isinstance(n, TableRead) for n in k.walk()):
        return "the kernel reads a lookup table"
    return None


class IterateSpecializer(Specializer):
    """``steps`` steps of one stencil kernel in one native call.  Its state is the
    kernel's first ``levels`` parameters; the arguments are the kernel's (the output
    receives the newest level), then ``levels - 1`` grids for the older levels of the
    result, ``levels`` scratch grids like the output and the number of steps."""

    def __init__(self, stencil: StencilSpecializer, levels: int = 1):
        self.stencil, self.levels = stencil, levels
        self.prefix = "iterate" + (f"{levels}" if levels > 1 else "")
        self.name = f"{stencil.name} {self.prefix}"
        # The spaces are part of the code: other caches or depths are another record.
        # (Spaces depend on the threads sharing L3.)  So is the vector width: the
        # processor's, which the compiler's identity names only under -march=native, and
        # the tests patch it (without it here, the widths tested in one process after the
        # first loaded its record and ran its code: they passed untested).
        spaces = (f"{DEPTHS}|{ROWS}|{JAMS}|{RING_SHARE}|{L3_SHARE}|{MAX_WORK}|{SAMPLE}|"
                  f"{cache_sizes()}|{config.num_threads()}|v{vectors.vector_bytes()}")
        self.digest = hashlib.sha256(f"{stencil.digest}|iterate-10|{levels}|{spaces}".encode(
            )).hexdigest() if stencil.digest else ""

    def location(self):
        return self.stencil.location()

    def global_reads(self):
        return self.stencil.global_reads()

    def forget(self) -> None:
        self.stencil.forget()

    def _split(self, args: tuple) -> tuple[tuple, tuple, tuple, int]:
        """(kernel arguments, older outputs, scratch grids, steps) of the arguments."""
        K = self.levels
        n = len(args) - 2 * K
        return args[:n], args[n:n + K - 1], args[n + K - 1:-1], args[-1]

    def prepare(self, args: tuple) -> Prepared:
        kernel_args, older, tmps, steps = self._split(args)
        if int(steps) < self.levels:
            raise ValueError(f"steps={steps}: a state of {self.levels} levels is iterated "
                             f"natively for at least {self.levels} steps")
        p = self.stencil.prepare(tuple(kernel_args))
        # the space, and so the variants, are the grid's size class's (size_class)
        cls = "x".join(map(str, size_class(np.shape(p.args[0]))))
        return dataclasses.replace(p, args=(*p.args, *older, *tmps, int(steps)),
                                   signature=f"{self.prefix}@{cls}|{p.signature}")

    def plan(self, prepared: Prepared) -> Plan:
        st, K = self.stencil, self.levels
        kargs = prepared.args[:-2 * K]
        cls, inner_signature = prepared.signature[len(self.prefix) + 1:].split("|", 1)
        inner = Prepared(kargs, inner_signature)
        base = st.plan(inner)
        k = st.planned(st.domain_ir(kargs, inner.signature))
        out_i = st.params.index(k.out)
        dim = kargs[out_i].ndim
        ghost = st.ghost(st.params.index(k.loop.grid))
        out_spec = base.specs[out_i]
        specs = (*base.specs, *(dataclasses.replace(out_spec, noalias=True),) * (K - 1),
                 *(dataclasses.replace(out_spec, scratch=True, noalias=True),) * K,
                 ArgSpec("int"))
        names = ([pname(n) for n in st.params] + [f"asp_out{j}" for j in range(1, K)]
                 + [f"asp_tmp{j}" for j in range(K)] + [STEPS])
        why = why_not_blocked(k, st.params, st.boundary, dim, K)
        lo, hi = radius(k, dim)
        reach = max((*lo, *hi, 1))
        build = (LineBuilder if dim == 1 else Builder)(k, tuple(st.params[:K]), names, specs,
                                                       dim, ghost, reach)
        variants = (Variant("steps", build.steps_function("steps")),)
        spaces = ()
        if why is None:
            blocked = functools.cache(build.function)  # one function per jam and form

            def make(depth: int, rows: int, width: int, jam: int = 1,
                     span: int | None = None, east: int = 0) -> Variant:
                name = (f"blk_d{depth}_r{rows}_w{width}" + (f"x{span}" if span else "")
                        + (f"_j{jam}" if jam > 1 else "") + ("_e" if east else ""))
                tiles = (rows, *(width,) * (dim - 2), span or width)
                return Variant(name, blocked(jam, bool(east)), bound=(depth, *tiles))

            def make_line(depth: int, width: int) -> Variant:  # a 1-D grid's point
                return Variant(f"blk_d{depth}_w{width}", blocked(1), bound=(depth, width))
            bounds = tuple(int(n) for n in cls.split("x"))  # the size class of the grids
            east = dim > 1 and lanes(build.ctype) > 1 and build.vectorizes
            points = blocking_points(dim, np.dtype(out_spec.dtype).itemsize, bounds, reach, K,
                                     east=east)
            spaces = tuple(Space(f"blocking d{d}", params, make_line if dim == 1 else make,
                                 sample=SAMPLE + SAMPLE // 2 if "east" in params else SAMPLE,
                                 where=point_exists)
                           for d, params in points.items())
        check, check_from = base.check_args, base.check_args_from
        return dataclasses.replace(
            base, signature=prepared.signature, specs=specs, variants=variants,
            spaces=spaces, ret=out_i, helpers=own_functions(k),
            errors=(_MEMORY, (UnrepresentableValue, UnrepresentableValue.reason), _MEMORY),
            preamble=PREAMBLE + (vector_preamble(build.ctype) if lanes(build.ctype) > 1
                                 else ""),
            includes=("stdint.h", "stdbool.h", "math.h", "stdlib.h",
                                         "string.h"),
            check_args=lambda: _with_steps(check(), out_i, K),
            # A kernel whose Python raises on random grids (int(a / a) where a holds
            # zeros) is checked on the corner of the call's own grids, as its step is;
            # it iterated step by step before, with a warning.
            check_args_from=lambda call: _with_steps(
                check_from(tuple(self._split(call)[0])), out_i, K))

    def run_python(self, args: tuple):
        kernel_args, older, _, steps = self._split(args)
        st, K = self.stencil, self.levels
        out_i = st.params.index(st.domain_ir(
            tuple(kernel_args), st.prepare(tuple(kernel_args)).signature).out)
        out = kernel_args[out_i]
        state = list(kernel_args[:K])
        for _ in range(steps):
            step = list(kernel_args)
            step[:K] = state
            step[out_i] = np.zeros_like(out)
            state = [st.run_python(tuple(step)), *state[:-1]]
        out[...] = state[0]
        for grid, level in zip(older, state[1:]):
            grid[...] = level
        return out


_MEMORY = (MemoryError, "out of memory for the blocked iteration's buffers")


def _with_steps(args: tuple, out_i: int, levels: int) -> tuple:
    """The stencil's check arguments with a zeroed output, older outputs and scratch,
    and enough steps for several passes and a remainder (19 = 16 + 3)."""
    args = list(args)
    args[out_i] = np.zeros_like(args[out_i])
    extra = [np.zeros_like(args[out_i]) for _ in range(2 * levels - 1)]
    return (*args, *extra, 19)
