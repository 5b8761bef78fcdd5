"""The variants of a stencil signature: platform passes over the lowered kernel.

Every variant runs the outermost loop of each nest in parallel (with a boundary
mode the box and the border slabs share one team, see
:mod:`~specializers.stencil.lowering`) and marks the contiguous innermost loop
``omp simd``.  A grid too small to pay for an OpenMP team (:func:`serial_points`)
runs ``stencil_serial`` instead, one serial loop every variant calls
(:func:`serial_variant`, :func:`asp.passes.serial_below`).  They differ in

* ``static``: one block of outer iterations per thread (a stencil's work is
  uniform, so dynamic schedules only add overhead);
* ``collapse``: (3-D) the two outer loops shared as one;
* ``tile<N>``: (3-D) cache blocking of the middle axis by
  :func:`asp.passes.tile_loops` (in 2-D three rows fit in cache anyway: blocking
  the columns measured slower here, so it is not offered);
* ``stream``: (2-D, 3-D) each cache line of an output row computed into a
  register-resident buffer and written with one non-temporal store (no
  read-for-ownership of the output), when the kernel writes each output point
  once and never reads it;
* ``stream_jam<N>``: the same, ``N`` neighbouring rows per pass (when a row is a
  whole number of cache lines; otherwise the call is the ``stream`` variant's, whose
  function a jammed one calls rather than holding a copy: :attr:`asp.runtime.Variant.calls`).

The tile block ``N`` and the jam factor ``N`` are search spaces
(:class:`asp.runtime.Space`, :func:`variant_spaces`): each signature compiles a
sample of them and the tuner races them with the plain variants.
"""
from __future__ import annotations

import dataclasses
import functools

from asp import config
from asp.codegen.streaming import PREAMBLE as STREAMING
from asp.frontend.helpers import passed
from asp.ir import platform as ir
from asp.ir.node import Transformer
from asp.ir.pyscalar import HELPERS
from asp.passes import parallelize_outer, run_pipeline, serial_below, tile_loops, unshare
from asp.passes.fold import fold_constants
from specializers.stencil.aliasing import PREAMBLE as ALIASING

__all__ = ["HELPER_FUNCTIONS", "JAMS", "JAMS_3D", "JAM_SAMPLE", "PREAMBLE", "SERIAL_POINTS",
           "TILES", "TILE_SAMPLE", "apply_variant", "helpers_for", "jam_sample",
           "own_functions", "serial_points", "serial_variant", "variant_spaces", "variant_specs",
           "vectorize_points"]

#: Python's scalar helpers (``//``, ``%``), the streaming line store
#: (:mod:`asp.codegen.streaming`) and the 4K-aliasing ring (:mod:`.aliasing`): C text.
#: The other helpers are IR (:func:`helpers_for`).
PREAMBLE = HELPERS + STREAMING + ALIASING

def _helpers() -> dict[str, ir.Function]:
    """Index remapping of scipy.ndimage's boundary modes, Python's table indexing and the
    linear offsets of a neighbourhood, as IR functions (``static inline``)."""
    I64 = "int64_t"
    i, n, p, k = ir.Var("i"), ir.Var("n"), ir.Var("p"), ir.Var("k")

    def c(v: int) -> ir.Const:
        return ir.Const(v, I64)

    def op(o: str, a: ir.Expr, b: ir.Expr) -> ir.BinOp:
        return ir.BinOp(o, a, b)

    def fn(name, params, *body, ret=I64, inline=True) -> ir.Function:
        return ir.Function(name, params, ir.Block(body), ret=ret, static=True, inline=inline)

    def when(cond, *then) -> ir.If:
        return ir.If(cond, ir.Block(then))

    index = (ir.Param("i", I64), ir.Param("n", I64))
    inside = when(op("&&", op(">=", i, c(0)), op("<", i, n)), ir.Return(i))
    into_period = (ir.Assign(i, p, "%"), when(op("<", i, c(0)), ir.Assign(i, p, "+")))
    out = [
        fn("asp_nearest", index, ir.Return(ir.Ternary(
            op("<", i, c(0)), c(0), ir.Ternary(op(">=", i, n), op("-", n, c(1)), i)))),
        fn("asp_wrap", index, inside, ir.Assign(i, n, "%"),
           ir.Return(ir.Ternary(op("<", i, c(0)), op("+", i, n), i))),
        fn("asp_reflect", index, inside, ir.Declare(I64, "p", op("*", c(2), n)),
           *into_period, ir.Return(ir.Ternary(op("<", i, n), i, op("-", op("-", p, c(1)), i)))),
        fn("asp_mirror", index, inside, when(op("==", n, c(1)), ir.Return(c(0))),
           ir.Declare(I64, "p", op("-", op("*", c(2), n), c(2))),
           *into_period, ir.Return(ir.Ternary(op("<", i, n), i, op("-", p, i)))),
        # Python's table[i]: a negative index counts from the end; out of range raises
        # (the kernel reports it in *bad and the call raises IndexError).
        fn("asp_index", (*index, ir.Param("bad", "int", pointer=True)),
           when(op("<", i, c(0)), ir.Assign(i, n, "+")),
           when(op("||", op("<", i, c(0)), op(">=", i, n)),
                ir.Assign(ir.ArrayRef("bad", c(0)), ir.Const(1, "int")), ir.Return(c(0))),
           ir.Return(i)),
    ]
    # The linear offsets of a neighbourhood (``dim`` offsets per point) for extents n1, n2:
    # a function, not a loop in the kernel, so no pass takes it for a point loop.
    at = op("*", k, ir.Var("dim"))
    o = [ir.ArrayRef("off", op("+", at, c(a)) if a else at) for a in range(3)]
    n1, n2, dim = ir.Var("n1"), ir.Var("n2"), ir.Var("dim")
    two = op("+", op("*", o[0], n1), o[1])
    lin = ir.Ternary(op("==", dim, c(1)), o[0],
                     ir.Ternary(op("==", dim, c(2)), two, op("+", op("*", two, n2), o[2])))
    out.append(fn("asp_linear_offsets", (
        ir.Param("lin", I64, pointer=True), ir.Param("off", I64, pointer=True, const=True),
        ir.Param("count", I64), ir.Param("dim", I64), ir.Param("n1", I64),
        ir.Param("n2", I64)),
        ir.For("k", c(0), ir.Var("count"), ir.Block((ir.Assign(ir.ArrayRef("lin", k), lin),))),
        ret="void", inline=False))
    return {f.name: f for f in out}


HELPER_FUNCTIONS = _helpers()


def helpers_for(functions) -> tuple[ir.Function, ...]:
    """The helper functions of :data:`HELPER_FUNCTIONS` that ``functions`` call: only
    the boundary mode's remapping, only what the kernel uses."""
    called = {n.func for f in functions for n in f.walk() if isinstance(n, ir.Call)}
    return tuple(f for name, f in HELPER_FUNCTIONS.items() if name in called)


def own_functions(kernel) -> tuple[ir.Function, ...]:
    """The C functions of the user's own functions ``kernel`` (a :class:`StencilIR`)
    calls, callees first, their constants folded (:mod:`asp.frontend.helpers`)."""
    return tuple(h.as_function() for h in passed(kernel, [fold_constants]))


#: Below this many points a call runs on one thread (a team costs microseconds).
SERIAL_POINTS = 32768


def serial_points() -> int:
    """The point count a grid must exceed to run on an OpenMP team: ``ASP_PARALLEL_THRESHOLD``
    if set (the test suite sets 0, so small grids run the parallel branch), else
    :data:`SERIAL_POINTS`.  Read at planning time: the value is baked into the C."""
    return config.parallel_threshold(SERIAL_POINTS)


def variant_specs(dim: int, streaming_ok: bool) -> list[tuple[str, dict]]:
    """(name, options) of the plain variants for a ``dim``-dimensional kernel; the tile
    and jam factors are search spaces (:func:`variant_spaces`)."""
    out: list[tuple[str, dict]] = [("static", {})]
    if dim == 3:
        out.append(("collapse", {"collapse": 2}))
    if streaming_ok and dim >= 2:
        out.append(("stream", {"streaming": True}))
    return out


#: The search spaces: the block of the middle axis of a tiled 3-D sweep, and how many
#: rows a streaming sweep jams into one pass; how many points of each are compiled.
#: Every jam factor is compiled: which wins depends on the machine, and a sample of two
#: (2 and 8, for the README's heat kernel) left the winner out: 1.5x slower.  (It also
#: moved with where the grids' pages land, 4096^2 heat on a Zen 2 in one process: jam 4
#: 6.9 ms, jam 2 10.4, jam 8 10.4, in others all three within 3 %: that was 4K aliasing,
#: which :mod:`.aliasing` now keeps out of every streamed row.)
TILES, TILE_SAMPLE = (8, 16, 32, 64), 3
JAMS, JAM_SAMPLE = (2, 4, 8), 3
JAMS_3D = (2,)


def jam_sample(dim: int) -> int:
    """How many points of the jam space a streaming signature of ``dim`` axes compiles."""
    return min(JAM_SAMPLE, len(JAMS if dim == 2 else JAMS_3D))


def variant_spaces(dim: int, streaming_ok: bool) -> list[tuple[str, dict, int, object]]:
    """(space name, parameters, sample, options of a point) of the searched variants:
    ``tile<N>`` (3-D) and ``stream_jam<N>`` (2-D and 3-D, streaming kernels)."""
    out: list[tuple[str, dict, int, object]] = []
    if dim == 3:
        out.append(("tile", {"tile": TILES}, TILE_SAMPLE,
                    lambda tile: (f"tile{tile}", {"tile": (None, tile)})))
    if streaming_ok and dim >= 2:
        # 3-D: two planes only (four gained 2-4 % over two at 256^3 and cost 0.8 s of
        # gcc, a fifth of the late variants' compile time of a 3-D kernel).
        jams = JAMS if dim == 2 else JAMS_3D
        out.append(("jam", {"jam": jams}, jam_sample(dim),
                    lambda jam: (f"stream_jam{jam}", {"streaming": True, "jam": jam})))
    return out


def vectorize_points(fn: ir.Function, *, var: str) -> ir.Function:
    """Mark the innermost *point* loops (``var``, the contiguous axis) ``omp simd``.

    Unlike :func:`asp.passes.vectorize_inner` this leaves a neighbour loop that
    stayed a loop alone: it carries the accumulation from one offset to the next, and
    a *peel* loop (``role="peel"``: the few points before an aligned start).
    Before: ``for (asp_i1 ...) out[...] = ...;``  After: ``#pragma omp simd`` above it.
    """
    class Simd(Transformer):
        def visit_For(self, node: ir.For):
            node = self.generic_visit(node)
            if node.var == var and node.role not in ("peel", "vector") and not any(
                    isinstance(n, ir.For | ir.While) for n in node.body.walk()):
                return dataclasses.replace(node, simd=True)
            return node

    return dataclasses.replace(fn, body=Simd().visit(fn.body))


def apply_variant(fn: ir.Function, options: dict, size: ir.Expr, title: str,
                  dim: int, serial: ir.Function | None = None) -> ir.Function:
    """The platform passes of one variant, as a readable pipeline.  A call of fewer
    points than :func:`serial_points` runs ``serial`` (:func:`serial_variant`), which
    every variant of the kernel shares, or, without it, a serial copy of the variant."""
    schedule, chunk = options.get("schedule", ("static", None))
    passes = []
    if options.get("tile"):
        passes.append(functools.partial(tile_loops, sizes=options["tile"]))
    passes += [
        functools.partial(parallelize_outer, schedule=schedule, chunk=chunk,
                          collapse=options.get("collapse", 1)),
        functools.partial(vectorize_points, var=f"asp_i{dim - 1}"),
        functools.partial(serial_below, serial=serial,
                          when=ir.BinOp(">", size, ir.Const(serial_points(), "int64_t"))),
    ]
    return run_pipeline(fn, passes, title=title)


def serial_variant(fn: ir.Function, title: str, dim: int) -> ir.Function:
    """The code every variant runs below :func:`serial_points`: ``fn`` (the ``static``
    variant's lowering) on one thread, vectorized, as ``stencil_serial``.  Below the
    threshold the grid sits in cache and the plain loop is what the variants' serial
    copies were worth (they differed only in how they stream to memory and share rows
    among threads); one copy a unit instead of one a variant halves the C gcc compiles."""
    fn = dataclasses.replace(fn, static=True)
    return run_pipeline(fn, [functools.partial(unshare, name="stencil_serial"),
                             functools.partial(vectorize_points, var=f"asp_i{dim - 1}")],
                        title=title)
