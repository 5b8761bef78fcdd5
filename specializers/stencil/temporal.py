"""Temporal blocking: many steps of a stencil per pass over memory.

``K.iterate(u, *args, steps=S)`` is ``for _ in range(S): u = K(u, *args)``.  Step by
step, every step streams the whole grid through memory once, and no step can be faster
than that.  The blocked variants here compute up to ``depth`` steps per pass instead:

* The grid's interior is cut into *tiles*: ``rows`` points along axis 0 and ``width``
  along each other axis.  A tile of the last step needs, one step earlier, itself plus
  the neighbourhood's reach ``R`` on every side, and so on down to the pass's input: the
  tiles of a pass overlap in those halos and are computed independently (overlapped, or
  trapezoid, tiling: a little redundant work at tile edges, no synchronisation between
  tiles, so they are shared dynamically among threads).
* Within a tile the steps advance as a *wavefront* along axis 0: at wavefront position
  ``s``, step ``l`` computes row (2-D) or plane (3-D) ``s - (l - 1) R``, whose inputs
  one step earlier were finished at this or an earlier position.  A step's rows live in
  a thread-private *ring* of ``2R + 1`` rows (rounded up to a power of two), so the
  intermediate steps never leave the cache; only the pass's input is read from memory
  and only its last step written.
* ``S`` steps take ``ceil(S / depth)`` passes, alternating between the output and a
  scratch grid so that the last pass ends in the output.

Every point is computed by the same expression as in a single step (the kernel's
lowered body, read through the ring instead of the grid), in the same order of
operations: results are bit-identical to the step-by-step loop.  The depth and tile
sizes are a search space (:class:`asp.runtime.Space`) the core's tuner samples and
races; the first variant, ``steps``, is the plain step-by-step sweep in C (one pass
per step, no ring), which every blocked variant must beat.

Blocked variants exist for what the scheme covers: ``'interior'`` mode (the border of
every step is zero, as ``K(u)`` leaves it), 2-D and 3-D grids, a kernel whose first
parameter is the state it steps, that writes every output point without reading the
output, and whose neighbour loops are unrolled (the default); :func:`why_not_blocked`
says why another kernel iterates step by step.
"""
from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np

from asp.codegen.entry import abi_params, extent_name
from asp.ir import platform as ir
from asp.runtime import ArgSpec, Plan, Prepared, Space, Specializer, Variant
from specializers.stencil.domain import GridRead, NeighborLoop, StencilIR, TableRead, radius
from specializers.stencil.lowering import _Body, converts, needs_load, pname
from specializers.stencil.specializer import StencilSpecializer  # plans each step's code
from specializers.stencil.variants import PREAMBLE, serial_points, vectorize_points

__all__ = ["IterateSpecializer", "why_not_blocked"]

I64 = "int64_t"
TMP, STEPS = "asp_tmp", "asp_steps"

#: The search space of the blocked variants per number of dimensions: steps per pass,
#: tile extent along axis 0 (the wavefront axis) and along the others.
SPACES = {
    2: {"depth": (4, 8, 16), "rows": (32, 128, 512), "width": (256, 1024, 4096)},
    3: {"depth": (2, 4, 8), "rows": (16, 64), "width": (32, 64, 128)},
}
SAMPLE = 6


def _c(v: int) -> ir.Const:
    return ir.Const(v, I64)


def _v(name: str) -> ir.Var:
    return ir.Var(name)


def _op(op: str, a, b) -> ir.BinOp:
    a = _c(a) if isinstance(a, int) else a
    b = _c(b) if isinstance(b, int) else b
    return ir.BinOp(op, a, b)


def _min(a, b) -> ir.Expr:
    return ir.Ternary(_op("<", a, b), a, b)


def _max(a, b) -> ir.Expr:
    return ir.Ternary(_op(">", a, b), a, b)


def why_not_blocked(k: StencilIR, params: list[str], boundary: str, dim: int) -> str | None:
    """None if the iteration of kernel ``k`` can be blocked in time, else why not."""
    if boundary != "interior":
        return f"boundary={boundary!r}: only 'interior' mode is blocked in time"
    if dim not in (2, 3):
        return f"{dim}-D grids are not blocked in time (2-D and 3-D are)"
    state = params[0]
    if state == k.out or k.grid(state).role != "field":
        return f"the first parameter {state!r} is not an input grid the kernel steps"
    if needs_load(k):
        return "the kernel reads or accumulates into its output"
    if converts(k):
        return "the kernel has operations that may need Python's unbounded ints"
    if any(isinstance(n, NeighborLoop) for n in k.walk()):
        return "a neighbour loop is not unrolled (should_unroll=False, or a large neighbourhood)"
    if any(isinstance(n, TableRead) for n in k.walk()):
        return "the kernel reads a lookup table"
    if k.grid(state).ctype != k.grid(k.out).ctype:
        return "the state and the output have different types"
    return None


class _LevelBody(_Body):
    """The kernel's per-point body with the state read from a step's source: the pass's
    input grid (``asp_src``) or the previous step's ring (``asp_rin``)."""

    def __init__(self, *args, state: str, ring: tuple | None, **kwargs):
        super().__init__(*args, **kwargs)
        self.state, self.ring = state, ring

    def visit_GridRead(self, node: GridRead):
        if node.grid != self.state:
            return super().visit_GridRead(node)
        coords = self.coords(node.offset, node.nbr)
        if self.ring is None:
            return ir.ArrayRef("asp_src", self.linear(node.grid, coords))
        return ir.ArrayRef("asp_rin", _ring_index(coords, *self.ring))


def _ring_index(coords, mask: int, stride: int) -> ir.Expr:
    """The index of a point in one step's ring: the row's slot, then the point's offsets
    from the tile's halo origin (``asp_b<a>``), each axis ``stride`` long."""
    e: ir.Expr = _op("&", coords[0], mask)
    for a in range(1, len(coords)):
        e = _op("+", _op("*", e, stride), _op("-", coords[a], _v(f"asp_b{a}")))
    return e


class IterateSpecializer(Specializer):
    """``steps`` steps of one stencil kernel in one native call: the arguments are the
    kernel's, then a scratch grid like the output and the number of steps."""

    def __init__(self, stencil: StencilSpecializer):
        self.stencil = stencil
        self.name = f"{stencil.name} iterate"
        # The sampled space is part of the code: another sample is another record.
        self.digest = hashlib.sha256(f"{stencil.digest}|iterate-1|{SPACES}|{SAMPLE}".encode()
                                     ).hexdigest() if stencil.digest else ""
        self.why: dict[str, str | None] = {}  # signature -> why not blocked

    def location(self):
        return self.stencil.location()

    def global_reads(self):
        return self.stencil.global_reads()

    def forget(self) -> None:
        self.stencil.forget()

    def prepare(self, args: tuple) -> Prepared:
        *kernel_args, tmp, steps = args
        p = self.stencil.prepare(tuple(kernel_args))
        return dataclasses.replace(p, args=(*p.args, tmp, int(steps)),
                                   signature=f"iterate{p.signature}")

    def plan(self, prepared: Prepared) -> Plan:
        st = self.stencil
        kargs = prepared.args[:-2]
        inner = Prepared(kargs, prepared.signature[len("iterate"):])
        base = st.plan(inner)
        k = st.planned(st.domain_ir(kargs, inner.signature))
        out_i = st.params.index(k.out)
        state = st.params[0]
        dim = kargs[out_i].ndim
        ghost = st.ghost(st.params.index(k.loop.grid))
        specs = (*base.specs, dataclasses.replace(base.specs[out_i], scratch=True,
                                                  noalias=True),
                 ArgSpec("int"))
        names = [pname(n) for n in st.params] + [TMP, STEPS]
        why = why_not_blocked(k, st.params, st.boundary, dim)
        self.why[prepared.signature] = why
        lo, hi = radius(k, dim)
        reach = max((*lo, *hi, 1))
        build = _Builder(k, state, names, specs, dim, ghost, reach, st.params)
        variants = (Variant("steps", build.function("steps", 1, 64, 1 << 30)),)
        spaces = ()
        if why is None:
            def make(depth: int, rows: int, width: int) -> Variant:
                name = f"blk_d{depth}_r{rows}_w{width}"
                return Variant(name, build.function(name, depth, rows, width))
            spaces = (Space("blocking", SPACES[dim], make, sample=SAMPLE),)
        check = base.check_args
        return dataclasses.replace(
            base, signature=prepared.signature, specs=specs, variants=variants,
            spaces=spaces, ret=out_i, helpers=(),
            errors=((MemoryError, "out of memory for the blocked iteration's buffers"),),
            preamble=PREAMBLE, includes=("stdint.h", "stdbool.h", "math.h", "stdlib.h",
                                         "string.h"),
            check_args=lambda: _with_steps(check(), out_i),
            check_args_from=None)

    def run_python(self, args: tuple):
        *kernel_args, tmp, steps = args
        out_i = self.stencil.params.index(
            self.stencil.domain_ir(tuple(kernel_args), self._signature(kernel_args)).out)
        out = kernel_args[out_i]
        u = kernel_args[0]
        for _ in range(steps):
            fresh = np.zeros_like(out)
            step = list(kernel_args)
            step[0], step[out_i] = u, fresh
            u = self.stencil.run_python(tuple(step))
        out[...] = u
        return out

    def _signature(self, kernel_args) -> str:
        return self.stencil.prepare(tuple(kernel_args)).signature


def _with_steps(args: tuple, out_i: int) -> tuple:
    """The stencil's check arguments with the state as the first, a zeroed output and
    scratch, and enough steps for several passes and a remainder (19 = 16 + 3)."""
    args = list(args)
    args[out_i] = np.zeros_like(args[out_i])
    return (*args, np.zeros_like(args[out_i]), 19)


class _Builder:
    """Builds the IR function of one variant (depth, tile rows, tile width)."""

    def __init__(self, k, state, names, specs, dim, ghost, reach, params):
        self.k, self.state, self.names, self.specs = k, state, names, specs
        self.dim, self.g, self.R, self.params = dim, ghost, reach, params
        self.ctype = k.grid(k.out).ctype
        self.out = pname(k.out)

    def n(self, a: int) -> ir.Var:
        return _v(extent_name(pname(self.state), a))

    def body(self, *, ring_in: bool, to_ring: bool, mask: int, stride: int) -> ir.Block:
        """One point: the kernel's body reading the state from the grid or the previous
        step's ring, storing into this step's ring or the destination grid."""
        ivars = [_v(f"asp_i{a}") for a in range(self.dim)]
        t = _LevelBody(self.k, [], self.dim, checked=False, mode="interior", cval=0.0,
                       ivars=ivars, state=self.state,
                       ring=(mask, stride) if ring_in else None)
        lowered = t.visit(self.k.loop.body)
        head = [ir.Declare(self.ctype, "asp_acc")]
        head += [ir.Declare(ct, f"l_{n}", ir.Const(0, ct)) for n, ct in self.k.locals]
        if to_ring:
            target = ir.ArrayRef("asp_rout", _ring_index(ivars, mask, stride))
        else:
            target = ir.ArrayRef("asp_dst", t.linear(self.state, ivars))
        return ir.Block((*head, *lowered.body, ir.Assign(target, _v("asp_acc"))))

    def points(self, body: ir.Block) -> ir.Stmt:
        """The loops over the axes after the first, within this step's ranges."""
        for a in reversed(range(1, self.dim)):
            body = ir.For(f"asp_i{a}", _v(f"asp_f{a}"), _v(f"asp_t{a}"),
                          body if isinstance(body, ir.Block) else ir.Block((body,)),
                          independent=True)
        return body

    def function(self, name: str, depth: int, rows: int, width: int) -> ir.Function:
        dim, g, R, ct = self.dim, self.g, self.R, self.ctype
        ring = 1 << math.ceil(math.log2(2 * R + 1)) if depth > 1 else 1
        mask = ring - 1
        stride = width + 2 * depth * R if depth > 1 else 0
        plane = stride ** (dim - 1) if depth > 1 else 0
        levels = (depth - 1) * ring * plane  # elements of one thread's rings
        n = [self.n(a) for a in range(dim)]
        tiles = [rows] + [width] * (dim - 1)
        S, D, y, ext, s = _v(STEPS), _v("asp_d"), _v("asp_y"), _v("asp_ext"), _v("asp_s")

        pre: list[ir.Stmt] = [ir.Declare("int", "asp_bad", ir.Const(0, "int"))]
        count: ir.Expr = _c(1)
        for a in range(dim):  # tiles along each axis of the interior [g, n - g)
            inner = _op("-", n[a], 2 * g)
            pre.append(ir.Declare(I64, f"asp_nt{a}", ir.Ternary(
                _op(">", inner, 0), _op("/", _op("+", inner, tiles[a] - 1), tiles[a]),
                _c(0)), const=True))
            count = _op("*", count, _v(f"asp_nt{a}"))
        pre += [ir.Declare(I64, "asp_ntiles", count, const=True),
                ir.Declare(I64, "asp_np", _op("/", _op("+", S, depth - 1), depth), const=True)]

        # -- one tile ------------------------------------------------------------------
        tile: list[ir.Stmt] = []
        if depth > 1:
            tile.append(ir.If(ir.UnaryOp("!", _v("asp_ring")), ir.Block((
                ir.Assign(_v("asp_bad"), ir.Const(1, "int")), ir.Continue()))))
        rest: ir.Expr = _v("asp_t")
        for a in reversed(range(dim)):
            tile.append(ir.Declare(I64, f"asp_k{a}", _op("%", rest, _v(f"asp_nt{a}"))
                                   if a else rest, const=True))
            rest = _op("/", rest, _v(f"asp_nt{a}"))
        for a in range(dim):
            lo = _op("+", g, _op("*", _v(f"asp_k{a}"), tiles[a]))
            tile += [ir.Declare(I64, f"asp_lo{a}", lo, const=True),
                     ir.Declare(I64, f"asp_hi{a}", _min(_op("+", _v(f"asp_lo{a}"), tiles[a]),
                                                        _op("-", n[a], g)), const=True)]
            if a and depth > 1:
                tile.append(ir.Declare(I64, f"asp_b{a}", _op("-", _v(f"asp_lo{a}"), depth * R),
                                       const=True))
        if depth > 1:
            tile.append(ir.ExprStmt(ir.Call("memset", (
                _v("asp_ring"), _c(0), _op("*", _c(levels), ir.Call("sizeof", (_v(ct),)))))))

        # -- one step of the wavefront at position s --------------------------------------
        step: list[ir.Stmt] = [
            ir.Declare(I64, "asp_y", _op("-", s, _op("*", _op("-", _v("asp_l"), 1), R)),
                       const=True),
            ir.Declare(I64, "asp_ext", _op("*", _op("-", D, _v("asp_l")), R), const=True),
            ir.If(_op("||", _op("||", _op("<", y, _max(_op("-", _v("asp_lo0"), ext), _c(0))),
                                _op(">=", y, _min(_op("+", _v("asp_hi0"), ext), n[0]))),
                      _c(0)), ir.Block((ir.Continue(),))),
        ]
        for a in range(1, dim):
            step += [ir.Declare(I64, f"asp_f{a}", _max(_op("-", _v(f"asp_lo{a}"), ext), _c(g)),
                                const=True),
                     ir.Declare(I64, f"asp_t{a}", _min(_op("+", _v(f"asp_hi{a}"), ext),
                                                       _op("-", n[a], g)), const=True)]
        set_i0 = ir.Declare(I64, "asp_i0", y, const=True)
        first, last = _op("==", _v("asp_l"), 1), _op("==", _v("asp_l"), D)

        def branch(ring_in: bool, to_ring: bool) -> ir.Block:
            return ir.Block((self.points(self.body(ring_in=ring_in, to_ring=to_ring,
                                                   mask=mask, stride=stride)),))

        if depth == 1:
            step.append(ir.Block((set_i0, *branch(False, False).body)))
        else:
            rout = ir.Declare(f"{ct} *restrict", "asp_rout", _op("+", _v("asp_ring"), _op(
                "*", _op("-", _v("asp_l"), 1), ring * plane)))
            rin = ir.Declare(f"const {ct} *restrict", "asp_rin", _op("+", _v("asp_ring"), _op(
                "*", _op("-", _v("asp_l"), 2), ring * plane)))
            zero_row = ir.ExprStmt(ir.Call("memset", (
                ir.UnaryOp("&", ir.ArrayRef("asp_rout", _op("*", _op("&", y, mask), plane))),
                _c(0), _op("*", _c(plane), ir.Call("sizeof", (_v(ct),))))))
            # Rows of the grid's border are zero after the first step (as K(u) leaves
            # them): a ring slot that a border row takes is cleared, not computed.
            border = _op("||", _op("<", y, g), _op(">=", y, _op("-", n[0], g)))
            to_ring = ir.Block((
                rout,
                ir.If(border, ir.Block((zero_row, ir.Continue()))),
                set_i0,
                ir.If(first, branch(False, True), ir.Block((rin, *branch(True, True).body))),
            ))
            to_dst = ir.Block((set_i0, ir.If(first, branch(False, False),
                                             ir.Block((rin, *branch(True, False).body)))))
            step.append(ir.If(last, to_dst, to_ring))
        wave = ir.For("asp_s", _op("-", _v("asp_lo0"), _op("*", _op("-", D, 1), R)),
                      _op("+", _v("asp_hi0"), _op("*", _op("-", D, 1), R)), ir.Block((
                          ir.For("asp_l", _c(1), _op("+", D, 1), ir.Block(tuple(step))),)))
        tile.append(wave)

        # -- the passes, in one parallel region ---------------------------------------------
        src_t, dst_t = f"const {ct} *", f"{ct} *"
        out, tmp, u = _v(self.out), _v(TMP), _v(pname(self.state))
        np_, p = _v("asp_np"), _v("asp_p")
        passes = ir.For("asp_p", _c(0), np_, ir.Block((
            ir.Declare(I64, "asp_d", ir.Ternary(_op("==", p, _op("-", np_, 1)),
                                                _op("-", S, _op("*", _op("-", np_, 1), depth)),
                                                _c(depth)), const=True),
            ir.Declare(src_t, "asp_src", ir.Ternary(
                _op("==", p, 0), u, ir.Ternary(_op("==", _op("%", _op("-", np_, p), 2), 0),
                                               out, tmp))),
            ir.Declare(dst_t, "asp_dst", ir.Ternary(
                _op("==", _op("%", _op("-", _op("-", np_, 1), p), 2), 0), out, tmp)),
            ir.For("asp_t", _c(0), _v("asp_ntiles"), ir.Block(tuple(tile)),
                   parallel=ir.Parallel(schedule="dynamic", chunk=1), independent=True),
        )))
        region_body: list[ir.Stmt] = []
        if depth > 1:
            region_body.append(ir.Declare(f"{ct} *", "asp_ring", ir.Cast(f"{ct} *", ir.Call(
                "malloc", (_op("*", _c(levels), ir.Call("sizeof", (_v(ct),))),)))))
        region_body.append(passes)
        if depth > 1:
            region_body.append(ir.ExprStmt(ir.Call("free", (_v("asp_ring"),))))
        size: ir.Expr = n[0]
        for a in range(1, dim):
            size = _op("*", size, n[a])
        region = ir.Region(ir.Block(tuple(region_body)),
                           when=_op(">", size, serial_points()),
                           reductions=(("|", "asp_bad"),))
        params = abi_params(self.names, self.specs)
        fn = ir.Function(f"stencil_iter_{name}", params,
                         ir.Block((*pre, region, ir.Return(_v("asp_bad")))), ret="int")
        return vectorize_points(fn, var=f"asp_i{dim - 1}")
