"""Explicit vectors for the jammed sweeps of the blocked iteration
(:mod:`specializers.stencil.wavefront`).

Left to the compiler, a jammed sweep of the 5-point heat step loads every neighbour of
every point from memory: 6 vector loads per point-vector, 4 of them unaligned (each
splits across two cache lines), and gcc shares none of them between the rows of the
jam.  Loads, not arithmetic, bound the sweep: rows in fours ran at 0.31-0.38 ns a point
on one Zen 4 core with their rings in cache.  Here each ring row a sweep reads is
loaded once per position, aligned, as whole vectors at ``i - W``, ``i`` and ``i + W``
(``W`` lanes), and a neighbour ``dx`` along the contiguous axis is a shuffle of two of
them (``__builtin_shuffle``, GCC's vector extension): 0.20-0.23 ns a point, the
results bit-identical (every lane computes the point's own expression, in the same
order, with the same IEEE operations; ``-ffp-contract=off`` holds for vector code too).

A body is vectorized only when it is plain arithmetic (``+ - * /``, negation) on values
of the grid's type: its reads of the state rings, its locals, scalar parameters and
constants of that type, and scalar values converted to it (``(float)p_r``).  Anything
else (a call, a comparison, another type) raises :class:`NotVector` and the sweep stays
scalar.  A scalar operand of a vector operation
is broadcast, as C converts it in scalar code; a scalar value assigned to a vector
variable is broadcast by adding it to a vector of ``-0.0`` (which leaves every value,
``-0.0`` included, as it is).

Which is faster, a shuffle or a load, depends on the processor, so the neighbours *after*
the position have a second form, ``east``: loaded unaligned from ``i + dx`` (a vector
that splits a cache line every other time with 32-byte vectors, always with 64-byte
ones) in place of the aligned vector at ``i + W`` and a shuffle; the neighbours before
it are still shuffled with the vector at ``i - W``, which the compiler carries over
from the previous position in a register.  Both forms are points of the blocked
iteration's search space (:mod:`specializers.stencil.temporal`): the tuner picks.  On
a Zen 2 (AVX2), 4096^2 heat at depth 32, whole rows in pairs: 2.72 ms a step against
3.04 with shuffles (an inner loop alone on rows in L2: 1.00-1.07 cycles a point against
1.06-1.14 shuffled, and 1.15-1.20 loading every neighbour unaligned).

The loads of a position may reach ``W`` points before a ring row's first point or past
its last: the rings' allocation has a line of padding at each end.  A row of a pass's
input grid (level 1 reads them) has no such padding: its neighbours are all loaded
unaligned from their own points, ``i + dx`` for ``|dx| <= R``, which the grid's ghost
layers contain.  Lanes loaded
outside what the level computed are only ever moved by shuffles into lanes no output
uses, never computed with; an ``east`` load at ``i + dx`` (``dx <= W``) reaches no
further than the aligned vector at ``i + W`` would, and its lanes are the points
themselves.
"""
from __future__ import annotations

from collections.abc import Callable

from asp.ir import platform as ir
from asp.ir.types import dtype_of
from asp.jit.toolchain import cpu_flags

__all__ = ["Loads", "NotVector", "lanes", "preamble", "store", "vector_block", "vtype"]

#: Vector bytes when the processor's flags cannot be read.
FALLBACK_BYTES = 16
_SCALAR = {"double": "int64_t", "float": "int32_t"}  # a shuffle mask's lane type


class NotVector(Exception):
    """The body is not plain arithmetic on the grid's type: the sweep stays scalar."""


def vector_bytes() -> int:
    """Bytes of the widest vector registers this processor has.  (The widest won where
    both were tried: 4096^2 heat, ``iterate`` tuned in each width on an Intel Xeon VM
    with AVX-512, 3.71 and 4.31 ms a step in 64-byte vectors against 4.65 and 5.47 in
    32-byte ones, side by side; gcc's own loops there are 512-bit too.)"""
    flags = cpu_flags()
    if not flags:
        return FALLBACK_BYTES
    return 64 if "avx512f" in flags else 32 if "avx" in flags else FALLBACK_BYTES


def lanes(ctype: str) -> int:
    """Points in one vector of ``ctype`` (0: no vector type for it)."""
    if ctype not in _SCALAR:
        return 0
    return vector_bytes() // dtype_of(ctype).itemsize


def vtype(ctype: str) -> str:
    return f"asp_v_{ctype}"


def preamble(ctype: str) -> str:
    """The vector type of ``ctype`` (any alignment of one element: loads and stores of
    grids are unaligned), its mask type and shuffle macro, and a vector of ``-0.0``."""
    n, size = lanes(ctype), vector_bytes()
    v = vtype(ctype)
    return (f"typedef {ctype} {v} __attribute__((vector_size({size}), "
            f"aligned(sizeof({ctype}))));\n"
            f"typedef {_SCALAR[ctype]} {v}_mask __attribute__((vector_size({size})));\n"
            f"#define {v.upper()}_SHUFFLE(a, b, ...) "
            f"__builtin_shuffle((a), (b), ({v}_mask){{__VA_ARGS__}})\n"
            f"#define {v.upper()}_NZ (({v}){{{', '.join(['-0.0'] * n)}}})\n")


class Loads:
    """The vectors one position of a vector sweep reads: per ring row (``key``), the
    aligned vectors it needs and the neighbours shuffled from them.  ``address(key,
    shift)`` is the element the vector ``shift`` vectors from the position starts at.
    ``east``: the neighbours after the position are loaded unaligned, not shuffled.
    ``direct(key)``: the row is a grid's, not a ring's (no padding before or after
    it): every neighbour is loaded unaligned from its own point on."""

    def __init__(self, ctype: str, address: Callable[[tuple, int], ir.ArrayRef],
                 east: bool = False, direct: Callable[[tuple], bool] | None = None):
        self.ctype, self.n, self.address, self.east = ctype, lanes(ctype), address, east
        self.direct = direct or (lambda key: False)
        self.keys: dict[tuple, int] = {}
        self.needs: dict[tuple, set[int]] = {}
        self.read_names: set[str] = set()  # the variables read() returned

    def read(self, key: tuple, dx: int) -> ir.Var:
        """The vector of the points ``dx`` along the contiguous axis from the position's,
        in ring row ``key``."""
        if abs(dx) > self.n:
            raise NotVector(f"a neighbour {dx} points away (vectors of {self.n})")
        k = self.keys.setdefault(key, len(self.keys))
        self.needs.setdefault(key, set()).add(dx)
        name = f"asp_w{k}_{'m' if dx < 0 else 'p'}{abs(dx)}"
        self.read_names.add(name)
        return ir.Var(name)

    def statements(self) -> list[ir.Stmt]:
        v, out = vtype(self.ctype), []
        for key, k in self.keys.items():
            dxs, direct = self.needs[key], self.direct(key)
            shifts = {0}  # a grid row: only the vector at the position itself
            if not direct:
                after = max(dxs) > 0 and not self.east
                shifts |= ({-1} if min(dxs) < 0 else set()) | ({1} if after else set())
            for s in sorted(shifts):
                out.append(ir.Declare(v, f"asp_a{k}_{s + 1}", _load(v, self.address(key, s)),
                                      const=True))
            for dx in sorted(dxs):
                if dx and direct or dx > 0 and self.east:  # unaligned, from the point dx on
                    ref = self.address(key, 0)
                    ref = ir.ArrayRef(ref.array, ir.BinOp("+", ref.index, ir.Const(dx, "int64_t")))
                    out.append(ir.Declare(v, f"asp_w{k}_{'m' if dx < 0 else 'p'}{abs(dx)}",
                                          _load(v, ref), const=True))
                    continue
                if dx < 0:  # (previous, this): lanes n + dx ...
                    pair, first = (f"asp_a{k}_0", f"asp_a{k}_1"), self.n + dx
                elif dx > 0:  # (this, next): lanes dx ...
                    pair, first = (f"asp_a{k}_1", f"asp_a{k}_2"), dx
                else:
                    out.append(ir.Declare(v, f"asp_w{k}_p0", ir.Var(f"asp_a{k}_1"), const=True))
                    continue
                mask = tuple(ir.Const(first + j, "int") for j in range(self.n))
                out.append(ir.Declare(v, f"asp_w{k}_{'m' if dx < 0 else 'p'}{abs(dx)}", ir.Call(
                    f"{v.upper()}_SHUFFLE", (ir.Var(pair[0]), ir.Var(pair[1]), *mask)),
                    const=True))
        return out


def _load(v: str, ref: ir.ArrayRef) -> ir.Expr:
    """``*(const v *)&ref``: the vector of points from ``ref`` on."""
    return ir.UnaryOp("*", ir.Cast(f"const {v} *", ir.UnaryOp("&", ref)))


def vector_block(stmts: ir.Block, ctype: str, scalars: dict[str, str],
                 vectors: set[str]) -> ir.Block:
    """``stmts`` (a point's lowered body whose reads are already vector variables, and
    whose declarations are of ``vectors``) with its declarations of vector type and its
    scalar values broadcast; :class:`NotVector` unless it is plain arithmetic on
    ``ctype`` (``scalars``: the scalar variables it may read, with their types)."""
    v = vtype(ctype)

    def scalar(e: ir.Expr) -> None:  # a value the same in every lane, of any type
        if isinstance(e, ir.Var) and e.name in scalars or isinstance(e, ir.Const):
            return
        if isinstance(e, ir.BinOp) and e.op in "+-*/" and len(e.op) == 1:
            scalar(e.left)
            scalar(e.right)
        elif isinstance(e, ir.UnaryOp) and e.op in ("-", "+") or isinstance(e, ir.Cast):
            scalar(e.operand if isinstance(e, ir.UnaryOp) else e.expr)
        else:
            raise NotVector(f"not a scalar: {type(e).__name__}")

    def is_vector(e: ir.Expr) -> bool:
        if isinstance(e, ir.Cast):  # (float)p_r: a scalar of the grid's type
            if e.ctype != ctype:
                raise NotVector(f"a conversion to {e.ctype}")
            scalar(e.expr)
            return False
        if isinstance(e, ir.Var):
            if e.name in vectors:
                return True
            if scalars.get(e.name) != ctype:
                raise NotVector(f"{e.name} is not a {ctype} scalar")
            return False
        if isinstance(e, ir.Const):
            if e.ctype != ctype:
                raise NotVector(f"a constant of type {e.ctype}")
            return False
        if isinstance(e, ir.BinOp) and e.op in "+-*/" and len(e.op) == 1:
            return is_vector(e.left) | is_vector(e.right)
        if isinstance(e, ir.UnaryOp) and e.op in ("-", "+"):
            return is_vector(e.operand)
        raise NotVector(f"not plain arithmetic: {type(e).__name__}")

    def vec(e: ir.Expr | None) -> ir.Expr | None:
        if e is None or is_vector(e):
            return e
        return ir.BinOp("+", ir.Var(f"{v.upper()}_NZ"), e)  # broadcast, -0.0 kept

    def stmt(s: ir.Stmt) -> ir.Stmt:
        if isinstance(s, ir.Block):
            return ir.Block(tuple(stmt(x) for x in s.body))
        if isinstance(s, ir.Declare) and s.name in vectors and s.size is None \
                and s.values is None and s.ctype == ctype:
            return ir.Declare(v, s.name, vec(s.init), const=s.const)
        if isinstance(s, ir.Assign) and isinstance(s.target, ir.Var) \
                and s.target.name in vectors and s.op in ("", "+", "-", "*", "/"):
            if s.op:  # x op= value: a scalar value is broadcast by the operator
                is_vector(s.value)
                return s
            return ir.Assign(s.target, vec(s.value))
        raise NotVector(f"not a plain assignment: {type(s).__name__}")

    return stmt(stmts)


def store(target: ir.ArrayRef, value: ir.Expr, ctype: str) -> ir.Assign:
    """``*(vector *)&target = value``: one vector of points stored from ``target`` on."""
    return ir.Assign(ir.UnaryOp("*", ir.Cast(f"{vtype(ctype)} *", ir.UnaryOp("&", target))),
                     value)
