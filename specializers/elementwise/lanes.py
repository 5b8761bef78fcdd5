"""The ``lanes`` variant: L elements in lockstep, so kernels with loops vectorize.

A scalar function with a data-dependent early exit (the Mandelbrot escape
loop) cannot be vectorized as written: each element leaves its loop at a
different time.  This lowering runs ``L`` elements together, SIMT style:

* every local the elements may disagree on becomes an array of ``L`` values;
  a constant every element computes alike (a ``range`` loop's bounds, when they do
  not depend on the element) and the counters of ``range`` loops stay scalars;
* each statement runs under a per-lane guard (the lane is still alive, and not
  broken out of or continuing in any enclosing loop, and inside every enclosing
  ``if`` branch it took), written as blends (``v[l] = g ? e : v[l]``) so that
  ``#pragma omp simd`` turns each run of statements into vector code;
* ``return`` records the lane's result and kills the lane; a loop stops when
  no lane is left in it.

The last ``n % L`` elements use the scalar function.  Functions with a
``while`` loop or a ``range`` whose bounds depend on the element are not
given this variant (``lanes_function`` returns None).  Loops are recognised by
what the IR says they are (``ir.For.role == "range"``), never by their names.
"""
from __future__ import annotations

from asp.ir import platform as ir
from asp.ir.names import Namer
from asp.ir.node import Transformer

__all__ = ["MASK", "blocked_function", "lanes_function", "lower_lanes"]

MASK = "int64_t"  # the width of a double: blends then need no conversions
_l = ir.Var("l")
_BITWISE = {"&&": "&", "||": "|"}


def _and(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    return ir.BinOp("&", a, b)


def _not(a: ir.Expr) -> ir.Expr:
    return ir.UnaryOp("!", a)


class _Unsupported(Exception):
    pass


def _simd_loop(body: tuple[ir.Stmt, ...]) -> ir.For:
    return ir.For("l", ir.Const(0, "int64_t"), ir.Var("ASP_LANES"), ir.Block(body), simd=True)


class _Lower:
    def __init__(self, sf, arrays: set[str], scalars: set[str]):
        self.sf = sf
        self.arrays = arrays        # element inputs: read at base + l
        self.scalars = scalars      # uniform scalar parameters
        self.uniform: set[str] = set()
        self.varying: dict[str, str] = dict(sf.locals)  # name -> ctype
        self.masks: list[str] = []
        self.loops: list[str] = []  # names of the break/continue flag arrays, innermost last
        self.names = Namer(_names_in(sf.body))

    # -- expressions --------------------------------------------------------------------------
    def lane_expr(self, e: ir.Expr) -> ir.Expr:
        lower = self

        class Sub(Transformer):
            def visit_Var(self, node: ir.Var):
                if node.name in lower.arrays:
                    return ir.ArrayRef(node.name, ir.BinOp("+", ir.Var("asp_base"), _l))
                if node.name in lower.varying:
                    return ir.ArrayRef(node.name, _l)
                if node.name in lower.scalars or node.name in lower.uniform:
                    return node
                raise _Unsupported(node.name)

            def visit_BinOp(self, node: ir.BinOp):
                # Both sides are side-effect free 0/1 values: evaluating both (bitwise)
                # keeps the lane loop free of branches, so it vectorizes.
                node = self.generic_visit(node)
                if node.op in _BITWISE:
                    return ir.BinOp(_BITWISE[node.op], node.left, node.right)
                return node

        return Sub().visit(e)

    def is_uniform(self, e: ir.Expr) -> bool:
        names = {n.name for n in e.walk() if isinstance(n, ir.Var)}
        return names <= (self.scalars | self.uniform)

    def guard(self, masks: tuple[str, ...]) -> ir.Expr:
        g: ir.Expr = ir.ArrayRef("asp_alive", _l)
        for m in masks:
            g = _and(g, ir.ArrayRef(m, _l))
        for flag in self.loops:  # lanes that broke out of, or continue, an enclosing loop
            g = _and(g, _not(ir.BinOp("|", ir.ArrayRef(flag, _l), ir.ArrayRef(flag + "c", _l))))
        return g

    # -- statements ---------------------------------------------------------------------------
    def block(self, stmts, masks: tuple[str, ...]) -> list[ir.Stmt]:
        out: list[ir.Stmt] = []
        run: list[ir.Stmt] = []

        def flush():
            if run:
                out.append(_simd_loop((ir.Declare(MASK, "asp_g", self.guard(masks),
                                                  const=True), *run)))
                run.clear()

        g = ir.Var("asp_g")
        for s in stmts:
            if isinstance(s, ir.Declare) and s.const and self.is_uniform(s.init):
                # Set once, alike in every lane (a range loop's bounds): one scalar serves
                # them all, and a loop bounded by it runs in lockstep.
                flush()
                self.uniform.add(s.name)
                out.append(s)
            elif isinstance(s, ir.Declare | ir.Assign):
                name = s.name if isinstance(s, ir.Declare) else s.target.name
                if isinstance(s, ir.Assign) and s.op:
                    raise _Unsupported("augmented assignment")
                value = s.init if isinstance(s, ir.Declare) else s.value
                if isinstance(s, ir.Declare):
                    self.varying[name] = s.ctype
                ref = ir.ArrayRef(name, _l)
                run.append(ir.Assign(ref, ir.Ternary(g, self.lane_expr(value), ref)))
            elif isinstance(s, ir.Block):
                flush()
                out.extend(self.block(s.body, masks))
            else:
                flush()
                out.extend(self.control(s, masks))
        flush()
        return out

    def control(self, s: ir.Stmt, masks: tuple[str, ...]) -> list[ir.Stmt]:
        g = self.guard(masks)
        if isinstance(s, ir.If):
            then_m, else_m = self.names.fresh("m"), self.names.fresh("m")
            self.masks += [then_m, else_m]
            cond = self.lane_expr(s.cond)
            split = _simd_loop((
                ir.Declare(MASK, "asp_c", cond, const=True),
                ir.Assign(ir.ArrayRef(then_m, _l), _and(g, ir.Var("asp_c"))),
                ir.Assign(ir.ArrayRef(else_m, _l), _and(g, _not(ir.Var("asp_c")))),
            ))
            out = [split, *self.block(s.then.body, masks + (then_m,))]
            if s.orelse is not None:
                out += self.block(s.orelse.body, masks + (else_m,))
            return out
        if isinstance(s, ir.Return):
            value = self.lane_expr(s.value)
            ret = ir.ArrayRef("asp_ret", _l)
            alive = ir.ArrayRef("asp_alive", _l)
            return [_simd_loop((
                ir.Declare(MASK, "asp_g", g, const=True),
                ir.Assign(ret, ir.Ternary(ir.Var("asp_g"), ir.Cast(self.sf.ret.ctype, value),
                                          ret)),
                ir.Assign(alive, _and(alive, _not(ir.Var("asp_g")))),
            ))]
        if isinstance(s, ir.Break | ir.Continue):
            if not self.loops:
                raise _Unsupported("break outside a loop")
            brk, cnt = self.loops[-1], self.loops[-1] + "c"
            flag = ir.ArrayRef(brk if isinstance(s, ir.Break) else cnt, _l)
            # The guard already excludes lanes that broke or continued; set the flag.
            return [_simd_loop((ir.Assign(flag, ir.BinOp("|", flag, self.guard(masks))),))]
        if isinstance(s, ir.For):
            if s.role != "range":
                raise _Unsupported("a loop that is not a Python range loop")
            if not (self.is_uniform(s.start) and self.is_uniform(s.stop)
                    and self.is_uniform(s.step)):
                raise _Unsupported("element-dependent loop bounds")
            entry = self.names.fresh("e")
            self.masks.append(entry)
            self.uniform.add(s.var)
            exits = _own_exits(s.body)
            enter_body = [ir.Assign(ir.ArrayRef(entry, _l), g)]
            live = _and(ir.ArrayRef(entry, _l), ir.ArrayRef("asp_alive", _l))
            reset = []
            if exits:  # flags only for loops that break or continue
                brk = self.names.fresh("b")
                self.masks += [brk, brk + "c"]
                enter_body.append(ir.Assign(ir.ArrayRef(brk, _l), ir.Const(0, MASK)))
                reset = [_simd_loop((ir.Assign(ir.ArrayRef(brk + "c", _l), ir.Const(0, MASK)),))]
                live = _and(live, _not(ir.ArrayRef(brk, _l)))
                self.loops.append(brk)
            body = self.block(s.body.body, masks)
            if exits:
                self.loops.pop()
            # Stop when no lane that entered is still alive (and not broken out).
            anyl = ir.For("l", ir.Const(0, "int64_t"), ir.Var("ASP_LANES"),
                          ir.Block((ir.Assign(ir.Var("asp_any"), live, op="|"),)))
            check = [ir.Declare(MASK, "asp_any", ir.Const(0, MASK)),
                     ir.Pragma("omp simd reduction(|:asp_any)"), anyl,
                     ir.If(ir.UnaryOp("!", ir.Var("asp_any")), ir.Block((ir.Break(),)))]
            loop = ir.For(s.var, s.start, s.stop, ir.Block((*reset, *body,
                                                             ir.Block(tuple(check)))),
                          step=s.step)
            return [_simd_loop(tuple(enter_body)), loop]
        raise _Unsupported(type(s).__name__)


def lower_lanes(sf, names: list[str], specs):
    """The body of one group of lanes (statements of loops over ``l``, the lane, on arrays
    of lane values indexed ``[l]`` and the element inputs at ``[asp_base + l]``), the
    lowering (its ``varying`` locals with their C types, its ``masks``, its ``uniform``
    values) and the element inputs; None if the function cannot run in lockstep."""
    if any(isinstance(n, ir.While) for n in sf.body.walk()) or sf.checked:
        return None  # (checked: its float -> int conversions report through a flag)
    arrays = {n for n, s in zip(names[:-1], specs[:-1]) if s.kind == "array"}
    scalars = {n for n, s in zip(names[:-1], specs[:-1]) if s.kind != "array"}
    low = _Lower(sf, arrays, scalars)
    try:
        body = low.block(sf.body.body, ())
    except _Unsupported:
        return None
    return low, body, arrays


def lanes_function(sf, names: list[str], specs, out_ctype: str, *, lanes: int,
                   schedule: tuple[str, int], when: ir.Expr, size: ir.Expr,
                   params) -> ir.Function | None:
    """The kernel running ``lanes`` elements in lockstep, or None if it does not apply.

    More lanes give more independent work per instruction (latency hiding), but
    lanes that finish early idle until the slowest of their group is done; the
    tuner weighs the two by offering several widths.
    """
    lowered = lower_lanes(sf, names, specs)
    if lowered is None:
        return None
    low, body, arrays = lowered
    decls = [ir.Declare(ct, name, size=lanes) for name, ct in sorted(low.varying.items())]
    decls += [ir.Declare(MASK, m, size=lanes) for m in low.masks]
    decls += [ir.Declare(sf.ret.ctype, "asp_ret", size=lanes),
              ir.Declare(MASK, "asp_alive", size=lanes)]
    init = [_simd_loop(tuple(
        [ir.Assign(ir.ArrayRef(name, _l), ir.Const(0, ct)) for name, ct in
         sorted(low.varying.items())]
        + [ir.Assign(ir.ArrayRef("asp_ret", _l), ir.Const(0, sf.ret.ctype)),
           ir.Assign(ir.ArrayRef("asp_alive", _l), ir.Const(1, MASK))]))]
    out = names[-1]
    store = _simd_loop((ir.Assign(ir.ArrayRef(out, ir.BinOp("+", ir.Var("asp_base"), _l)),
                                  ir.Cast(out_ctype, ir.ArrayRef("asp_ret", _l))),))
    return blocked_function(f"kernel_lanes{lanes}", lanes, [*decls, *init, *body, store],
                            sf=sf, names=names, arrays=arrays, out_ctype=out_ctype,
                            schedule=schedule, when=when, size=size, params=params)


def blocked_function(name: str, lanes: int, block: list[ir.Stmt], *, sf, names, arrays,
                     out_ctype: str, schedule: tuple[str, int], when: ir.Expr, size: ir.Expr,
                     params) -> ir.Function:
    """The function running ``block`` (the statements of one group of ``lanes`` elements,
    from ``asp_base`` on) for every whole group, the groups shared among threads when
    ``when``, and the scalar function on the last ``n % lanes`` elements."""
    out = names[-1]
    block_body = ir.Block((ir.Declare("int64_t", "asp_base",
                                      ir.BinOp("*", ir.Var("b"), ir.Const(lanes, "int64_t")),
                                      const=True), *block))
    nblocks = ir.BinOp("/", ir.Var("n"), ir.Const(lanes, "int64_t"))
    sched, chunk = schedule
    # Block b writes only out[b*L .. b*L + L) (through asp_base, which the dependence
    # analysis cannot follow), and its lane arrays are declared inside it: independent.
    blocks = ir.For("b", ir.Const(0, "int64_t"), ir.Var("asp_nblocks"), block_body,
                    parallel=ir.Parallel(schedule=sched, chunk=chunk), independent=True)
    serial_blocks = ir.For("b", ir.Const(0, "int64_t"), ir.Var("asp_nblocks"), block_body)
    call_args = tuple(ir.ArrayRef(n, ir.Var("k")) if n in arrays else ir.Var(n)
                      for n in names[:-1])
    tail = ir.For("k", ir.BinOp("*", ir.Var("asp_nblocks"), ir.Const(lanes, "int64_t")),
                  ir.Var("n"), ir.Block((ir.Assign(ir.ArrayRef(out, ir.Var("k")),
                                                   ir.Cast(out_ctype, ir.Call(sf.name,
                                                                              call_args))),)))
    # The lane count is a named constant of the generated function's body.
    fn_body = ir.Block((
        ir.Declare("int64_t", "ASP_LANES", ir.Const(lanes, "int64_t"), const=True),
        ir.Declare("int64_t", "n", size, const=True),
        ir.Declare("int64_t", "asp_nblocks", nblocks, const=True),
        ir.If(when, ir.Block((blocks,)), ir.Block((serial_blocks,))),
        tail,
        ir.Return(ir.Const(0, "int32_t")),
    ))
    return ir.Function(name, params, fn_body, ret="int")


def _own_exits(body: ir.Block) -> bool:
    """Whether a loop body has a break/continue of its own (not of a nested loop)."""
    def walk(node) -> bool:
        if isinstance(node, ir.Break | ir.Continue):
            return True
        if isinstance(node, ir.For | ir.While):
            return False
        return any(walk(c) for c in node.children())
    return any(walk(s) for s in body.body)


def _names_in(body: ir.Block) -> set[str]:
    """Every name the body declares, assigns, reads or counts with."""
    out: set[str] = set()
    for n in body.walk():
        if isinstance(n, ir.Var):
            out.add(n.name)
        elif isinstance(n, ir.Declare | ir.For):
            out.add(n.name if isinstance(n, ir.Declare) else n.var)
    return out
