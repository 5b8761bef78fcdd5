"""The ``vlanes`` variants: the lanes lowering with every lane value in vector registers.

The ``lanes`` variants (:mod:`specializers.elementwise.lanes`) keep each local of a
group of elements in an array of ``L`` values and turn every run of statements into a
loop over the lanes that the compiler vectorizes: between two such loops the values go
through memory, and each step of the Mandelbrot escape loop stored and reloaded every
local several times (1000 x 1500 points, 20 steps at most, on a Zen 2 core pair:
12.6 ms).  Here the same lowered statements are written with GCC's vector types: a
local is ``NV`` vectors of four 8-byte values (``asp_vd``, ``asp_vi``), a loop over the
lanes becomes a loop over the ``NV`` vectors, which the compiler unrolls and whose
values it keeps in registers (5.7 ms for two vectors, eight elements, in the same
run; 7.2 for one, 8.0 for three).

Each lane computes its element's own expression with the same IEEE operations in the
same order as the scalar function (``-ffp-contract=off`` holds for vector code), so
results are bit for bit those of the other variants.  A guard is a mask vector (every
bit set in a lane that runs, none in one that does not): C's ``g ? e : v`` becomes a
bitwise select, ``!`` of a mask its complement, and a comparison gives a mask directly.

Only 8-byte values are vectorized (locals, element inputs, result and output of C
types ``double`` and ``int64_t``: one mask type serves both), with ``+ - *``, ``/`` on
doubles, bitwise operators on integers, comparisons, negation, conversions between
the two types and selects; values the same in every lane (scalar parameters, ``range``
counters and bounds) may be any C expression and are broadcast.  Anything else (a call
on an element value, Python's integer division or power helpers, another type) gives
no ``vlanes`` variant; the ``lanes`` variants still apply.
"""
from __future__ import annotations

from dataclasses import dataclass

from asp.ir import platform as ir
from specializers.elementwise.lanes import MASK, blocked_function, lower_lanes

__all__ = ["PREAMBLE", "WIDTH", "vlanes_function"]

#: Lanes in one vector (8-byte values in 32 bytes: AVX2; wider processors run them too).
WIDTH = 4
_VT = {"double": "asp_vd", "int64_t": "asp_vi"}
_SCALAR_INTS = {"int64_t", "int32_t", "int", "bool", "int16_t", "int8_t", "uint8_t",
                "uint16_t", "uint32_t"}  # convert to int64_t without changing a value
_ARITH = {"+", "-", "*"}
_COMPARE = {"<", ">", "<=", ">=", "==", "!="}
_BITS = {"&", "|", "^"}

PREAMBLE = """\
typedef double asp_vd __attribute__((vector_size(32)));
typedef int64_t asp_vi __attribute__((vector_size(32)));
typedef double asp_vd_u __attribute__((vector_size(32), aligned(8), may_alias));
typedef int64_t asp_vi_u __attribute__((vector_size(32), aligned(8), may_alias));
static inline asp_vd asp_vsel_d(asp_vi m, asp_vd a, asp_vd b) {
    return (asp_vd)((m & (asp_vi)a) | (~m & (asp_vi)b));
}
static inline asp_vi asp_vsel_i(asp_vi m, asp_vi a, asp_vi b) { return (m & a) | (~m & b); }
static inline asp_vd asp_vbd(double x) { return (asp_vd){x, x, x, x}; }
static inline asp_vi asp_vbi(int64_t x) { return (asp_vi){x, x, x, x}; }
static inline asp_vd asp_vld_d(const double *p) { return *(const asp_vd_u *)p; }
static inline asp_vi asp_vld_i(const int64_t *p) { return *(const asp_vi_u *)p; }
static inline void asp_vst_d(double *p, asp_vd v) { *(asp_vd_u *)p = v; }
static inline void asp_vst_i(int64_t *p, asp_vi v) { *(asp_vi_u *)p = v; }
static inline int asp_vany(asp_vi m) { return (m[0] | m[1] | m[2] | m[3]) != 0; }
"""


class _NotVector(Exception):
    pass


@dataclass(frozen=True)
class _V:
    """A lowered expression: ``kind`` ``"s"`` (a scalar C value, the same in every lane,
    of C type ``ctype`` or None if unknown), ``"v"`` (a vector of ``ctype``) or ``"m"``
    (a mask vector)."""

    expr: ir.Expr
    kind: str
    ctype: str | None = None


def _suffix(ctype: str) -> str:
    return "d" if ctype == "double" else "i"


def _common(a: str | None, b: str | None) -> str:
    """C's usual arithmetic conversion of two operand types, restricted to the two
    vector types (a scalar's small integer types widen to int64_t unchanged)."""
    def norm(t):
        if t == "double" or t == "int64_t":
            return t
        if t in _SCALAR_INTS:
            return "int64_t"
        raise _NotVector(f"a value of type {t}")
    a, b = norm(a), norm(b)
    return "double" if "double" in (a, b) else "int64_t"


def _common_or_none(a: str | None, b: str | None) -> str | None:
    """:func:`_common` of two scalar types, None if either is unknown or not vectorized."""
    try:
        return _common(a, b) if a and b else None
    except _NotVector:
        return None


class _Vectorize:
    def __init__(self, low, sf, arrays: set[str], specs_types: dict[str, str], nv: int):
        self.nv = nv
        self.arrays = arrays
        self.q = ir.Var("asp_q")
        self.masks = set(low.masks) | {"asp_alive"}
        self.varying = {**low.varying, "asp_ret": sf.ret.ctype}
        self.scalar_types = dict(specs_types)  # scalar parameters and uniform values
        self.local_masks: set[str] = set()  # asp_g, asp_c, asp_any: per-loop mask vectors
        for node in sf.body.walk():
            if isinstance(node, ir.For):
                self.scalar_types[node.var] = "int64_t"
        for t in self.varying.values():
            if t not in _VT:
                raise _NotVector(f"a local of type {t}")

    # -- expressions ---------------------------------------------------------------------
    def vec(self, v: _V, ctype: str) -> ir.Expr:
        """``v`` as a vector of ``ctype`` (as C converts it on assignment)."""
        if v.kind == "m":
            # A comparison used as a number: 1 where it holds, as C's 0/1.
            ones = ir.UnaryOp("-", v.expr)
            return ones if ctype == "int64_t" else self.convert(ones, "double")
        if v.kind == "s":
            if v.ctype is None:
                raise _NotVector("a scalar of unknown type")
            _common(v.ctype, ctype)  # a type it converts from
            return ir.Call(f"asp_vb{_suffix(ctype)}", (ir.Cast(ctype, v.expr),))
        return v.expr if v.ctype == ctype else self.convert(v.expr, ctype)

    def element(self, array: str) -> ir.ArrayRef:
        """The first of vector ``asp_q``'s elements in ``array`` (an input or the output)."""
        return ir.ArrayRef(array, ir.BinOp("+", ir.Var("asp_base"),
                                           ir.BinOp("*", self.q, ir.Const(WIDTH, "int64_t"))))

    def convert(self, e: ir.Expr, ctype: str) -> ir.Expr:
        return ir.Call("__builtin_convertvector", (e, ir.Var(_VT[ctype])))

    def mask(self, v: _V) -> ir.Expr:
        """``v`` as a mask: a mask as it is; a number where it is nonzero."""
        if v.kind == "m":
            return v.expr
        if v.kind == "s":
            # A scalar condition, the same in every lane: every bit or none.
            return ir.Call("asp_vbi", (ir.UnaryOp("-", ir.Cast("int64_t", ir.UnaryOp(
                "!", ir.UnaryOp("!", v.expr)))),))
        zero = ir.Call(f"asp_vb{_suffix(v.ctype)}", (ir.Const(0, v.ctype),))
        return ir.BinOp("!=", v.expr, zero)

    def is_lane(self, e: ir.Node) -> bool:
        """Whether an expression or statement reads a lane value."""
        return any(isinstance(n, ir.ArrayRef)
                   or isinstance(n, ir.Var) and n.name in self.local_masks for n in e.walk())

    def scalar_type(self, e: ir.Expr) -> str | None:
        if isinstance(e, ir.Const):
            return e.ctype
        if isinstance(e, ir.Var):
            return self.scalar_types.get(e.name)
        if isinstance(e, ir.Cast):
            return e.ctype
        if isinstance(e, ir.BinOp):
            if e.op in _COMPARE or e.op in ("&&", "||"):
                return "int"
            return _common_or_none(self.scalar_type(e.left), self.scalar_type(e.right))
        if isinstance(e, ir.UnaryOp) and e.op in ("-", "+", "~"):
            return self.scalar_type(e.operand)
        if isinstance(e, ir.UnaryOp) and e.op == "!":
            return "int"
        if isinstance(e, ir.Ternary):
            return _common_or_none(self.scalar_type(e.then), self.scalar_type(e.orelse))
        return None

    def expr(self, e: ir.Expr) -> _V:
        if not self.is_lane(e):
            return _V(e, "s", self.scalar_type(e))
        if isinstance(e, ir.ArrayRef):
            if e.array in self.arrays:  # an element input, at asp_base + l
                ct = self.scalar_types[e.array]
                if ct not in _VT:
                    raise _NotVector(f"an input of type {ct}")
                return _V(ir.Call(f"asp_vld_{_suffix(ct)}",
                                  (ir.UnaryOp("&", self.element(e.array)),)), "v", ct)
            ref = ir.ArrayRef(e.array, self.q)
            if e.array not in self.masks and e.array not in self.varying:
                raise _NotVector(f"an array {e.array}")
            if e.array in self.masks:
                return _V(ref, "m")
            return _V(ref, "v", self.varying[e.array])
        if isinstance(e, ir.Var):  # a guard of this lane loop (asp_g, asp_c)
            return _V(e, "m")
        if isinstance(e, ir.BinOp):
            a, b = self.expr(e.left), self.expr(e.right)
            if e.op in _BITS and a.kind == "m" and b.kind == "m":
                return _V(ir.BinOp(e.op, a.expr, b.expr), "m")
            if e.op in _BITS and "m" in (a.kind, b.kind):
                # A mask with a number: as 0/1 numbers, the type of C's result.
                a, b = [_V(self.vec(x, "int64_t"), "v", "int64_t") if x.kind == "m" else x
                        for x in (a, b)]
            ct = _common(a.ctype if a.kind != "m" else "int64_t",
                         b.ctype if b.kind != "m" else "int64_t")
            if e.op in _COMPARE:
                return _V(ir.BinOp(e.op, self.vec(a, ct), self.vec(b, ct)), "m")
            if e.op in _ARITH or (e.op == "/" and ct == "double") \
                    or (e.op in _BITS and ct == "int64_t"):
                return _V(ir.BinOp(e.op, self.vec(a, ct), self.vec(b, ct)), "v", ct)
            raise _NotVector(f"operator {e.op} on {ct}")
        if isinstance(e, ir.UnaryOp):
            a = self.expr(e.operand)
            if e.op == "!":
                return _V(ir.UnaryOp("~", self.mask(a)), "m")
            if a.kind == "m":
                a = _V(self.vec(a, "int64_t"), "v", "int64_t")
            if e.op == "+":
                return a
            if e.op == "-" or (e.op == "~" and a.ctype == "int64_t"):
                return _V(ir.UnaryOp(e.op, a.expr), "v", a.ctype)
            raise _NotVector(f"unary {e.op}")
        if isinstance(e, ir.Cast):
            if e.ctype not in _VT:
                raise _NotVector(f"a conversion to {e.ctype}")
            return _V(self.vec(self.expr(e.expr), e.ctype), "v", e.ctype)
        if isinstance(e, ir.Ternary):
            return self.select(self.expr(e.cond), self.expr(e.then), self.expr(e.orelse))
        raise _NotVector(type(e).__name__)

    def select(self, cond: _V, a: _V, b: _V, ctype: str | None = None) -> _V:
        if ctype is None:
            if a.kind == "m" and b.kind == "m":
                return _V(ir.Call("asp_vsel_i", (self.mask(cond), a.expr, b.expr)), "m")
            ct = _common(a.ctype if a.kind != "m" else "int64_t",
                         b.ctype if b.kind != "m" else "int64_t")
        else:
            ct = ctype
        return _V(ir.Call(f"asp_vsel_{_suffix(ct)}",
                          (self.mask(cond), self.vec(a, ct), self.vec(b, ct))), "v", ct)

    # -- statements ----------------------------------------------------------------------
    def assign_value(self, name: str, value: ir.Expr) -> ir.Expr:
        """The vector stored into lane array ``name``."""
        if name in self.masks or name in self.local_masks:
            if isinstance(value, ir.Const):
                return ir.Call("asp_vbi", (ir.Const(-1 if value.value else 0, "int64_t"),))
            if isinstance(value, ir.Ternary):  # a guarded mask update
                return ir.Call("asp_vsel_i", (self.mask(self.expr(value.cond)),
                                              self.mask(self.expr(value.then)),
                                              self.mask(self.expr(value.orelse))))
            return self.mask(self.expr(value))
        ct = self.varying[name]
        if isinstance(value, ir.Ternary):  # the guarded assignment of every statement
            return self.select(self.expr(value.cond), self.expr(value.then),
                               self.expr(value.orelse), ct).expr
        return self.vec(self.expr(value), ct)

    def lane_stmt(self, s: ir.Stmt) -> ir.Stmt:
        """A statement of a loop over the lanes, for vector ``asp_q``."""
        if isinstance(s, ir.Declare) and s.ctype == MASK and s.size is None:
            self.local_masks.add(s.name)
            return ir.Declare("asp_vi", s.name, self.mask(self.expr(s.init)), const=s.const)
        if isinstance(s, ir.Assign) and not s.op and isinstance(s.target, ir.ArrayRef) \
                and s.target.array not in self.arrays:
            return ir.Assign(ir.ArrayRef(s.target.array, self.q),
                             self.assign_value(s.target.array, s.value))
        raise _NotVector(f"a lane statement {type(s).__name__}")

    def stmts(self, stmts) -> list[ir.Stmt]:
        out: list[ir.Stmt] = []
        stmts = list(stmts)
        i = 0
        while i < len(stmts):
            s = stmts[i]
            if isinstance(s, ir.For) and s.var == "l" and s.simd:
                self.local_masks = set()
                body = tuple(self.lane_stmt(x) for x in s.body.body)
                out.append(self.over_vectors(body))
            elif isinstance(s, ir.Declare) and s.name == "asp_any":
                # Whether any lane is left in the loop: OR of the vectors, then of lanes.
                pragma, loop, test = stmts[i + 1], stmts[i + 2], stmts[i + 3]
                assert isinstance(pragma, ir.Pragma) and isinstance(loop, ir.For)
                (acc,) = loop.body.body
                self.local_masks = set()
                live = self.mask(self.expr(acc.value))
                out += [ir.Declare("asp_vi", "asp_any", ir.Call("asp_vbi", (
                            ir.Const(0, "int64_t"),))),
                        self.over_vectors((ir.Assign(ir.Var("asp_any"), live, op="|"),)),
                        ir.If(ir.UnaryOp("!", ir.Call("asp_vany", (ir.Var("asp_any"),))),
                              test.then, test.orelse)]
                i += 3
            elif isinstance(s, ir.For):
                out.append(ir.For(s.var, s.start, s.stop, ir.Block(tuple(self.stmts(
                    s.body.body))), step=s.step, role=s.role))
            elif isinstance(s, ir.Block):
                out.append(ir.Block(tuple(self.stmts(s.body))))
            elif isinstance(s, ir.Declare | ir.Break | ir.Continue | ir.Pragma) \
                    and not self.is_lane(s):
                if isinstance(s, ir.Declare) and s.name not in self.scalar_types:
                    self.scalar_types[s.name] = s.ctype
                out.append(s)
            else:
                raise _NotVector(f"a statement {type(s).__name__}")
            i += 1
        return out

    def over_vectors(self, body: tuple[ir.Stmt, ...]) -> ir.For:
        return ir.For("asp_q", ir.Const(0, "int64_t"), ir.Const(self.nv, "int64_t"),
                      ir.Block(body), unroll=self.nv)


def vlanes_function(sf, names: list[str], specs, out_ctype: str, *, vectors: int,
                    schedule: tuple[str, int], when: ir.Expr, size: ir.Expr,
                    params) -> ir.Function | None:
    """The kernel running ``vectors`` vectors of :data:`WIDTH` elements in lockstep, every
    lane value in vector variables; None if the function does not apply (see the module)."""
    lowered = lower_lanes(sf, names, specs)
    if lowered is None or sf.ret.ctype not in _VT or out_ctype not in _VT:
        return None
    low, body, arrays = lowered
    types = {p.name: p.ctype for p in sf.params}
    try:
        vz = _Vectorize(low, sf, arrays, types, vectors)
        inner = vz.stmts(body)
        out = names[-1]
        lanes = vectors * WIDTH
        decls = [ir.Declare(_VT[ct], name, size=vectors)
                 for name, ct in sorted(vz.varying.items())]
        decls += [ir.Declare("asp_vi", m, size=vectors) for m in sorted(vz.masks)]
        init = [vz.over_vectors(tuple(
            [ir.Assign(ir.ArrayRef(name, vz.q), ir.Call(f"asp_vb{_suffix(ct)}", (
                ir.Const(0, ct),))) for name, ct in sorted(vz.varying.items())]
            + [ir.Assign(ir.ArrayRef(m, vz.q), ir.Call("asp_vbi", (
                ir.Const(-1 if m == "asp_alive" else 0, "int64_t"),)))
               for m in sorted(vz.masks)]))]
        result = vz.vec(_V(ir.ArrayRef("asp_ret", vz.q), "v", sf.ret.ctype), out_ctype)
        store = vz.over_vectors((ir.ExprStmt(ir.Call(f"asp_vst_{_suffix(out_ctype)}", (
            ir.UnaryOp("&", vz.element(out)), result))),))
    except _NotVector:
        return None
    return blocked_function(f"kernel_vlanes{lanes}", lanes, [*decls, *init, *inner, store],
                            sf=sf, names=names, arrays=arrays, out_ctype=out_ctype,
                            schedule=schedule, when=when, size=size, params=params)
