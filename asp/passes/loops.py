"""Loop passes on the platform IR.  Each is a pure function ``Function -> Function``.

The passes act on *loop nests*: a ``For`` whose body is exactly one ``For``
(possibly after declarations that do not depend on the inner index) continues
the nest.  Parameters are bound with ``functools.partial``.

A pass that shares a loop's iterations among threads or SIMD lanes must prove
that the iterations are independent, or leave the loop alone (:func:`dependences`):
a scalar carried from one iteration to the next is allowed only as a reduction
(``s += x[i]``, ``s = s * x[i]``, ...), which gets a ``reduction`` clause; an
array both written and read at different indices, or written at an index that
does not move with the loop, is a dependence; so is an early exit.

A :class:`~asp.ir.platform.Region` is one team of threads: inside it a parallel loop
is a share of the team's work, never a team of its own; a loop whose body starts a
team is neither shared (``parallel for``) nor vectorized (``simd``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from asp.ir import platform as ir
from asp.ir.node import Transformer, Visitor

__all__ = [
    "Dependences", "dependences", "innermost_loops", "outer_loops", "parallelize_outer",
    "tile_loops", "unroll_inner", "vectorize_inner",
]


class _Collect(Visitor):
    def __init__(self):
        self.found = []

    def visit_For(self, node: ir.For, depth: int = 0):
        self.found.append((node, depth))
        self.generic_visit(node, depth + 1)

    def generic_visit(self, node, depth: int = 0):
        for child in node.children():
            self.visit(child, depth)


def outer_loops(fn: ir.Function) -> list[ir.For]:
    """The loops not nested in another loop."""
    c = _Collect()
    c.visit(fn.body)
    return [n for n, d in c.found if d == 0]


def _has(node: ir.Node, *kinds: type) -> bool:
    return any(isinstance(n, kinds) for n in node.walk())


def innermost_loops(fn: ir.Function) -> list[ir.For]:
    """The loops with no loop inside them."""
    return [n for n in fn.body.walk()
            if isinstance(n, ir.For) and not _has(n.body, ir.For, ir.While)]


def _nest(loop: ir.For) -> list[ir.For]:
    """The perfectly nested loops starting at ``loop`` (outermost first)."""
    out = [loop]
    while len(out[-1].body.body) == 1 and isinstance(out[-1].body.body[0], ir.For):
        out.append(out[-1].body.body[0])
    return out


#: Operators OpenMP can reduce (``s op= e``, ``s = s op e``; ``max``/``min`` as
#: ``s = e > s ? e : s`` and its mirror images).
_REDUCIBLE = frozenset({"+", "*", "&", "|", "^", "&&", "||", "max", "min"})


@dataclass(frozen=True)
class Dependences:
    """What stops a loop's iterations from running in any order.

    ``reductions`` are ``(op, variable)`` pairs that are safe with a ``reduction``
    clause; ``blocking`` says, in words, the first dependence no clause can fix
    (empty: the iterations are independent).
    """

    reductions: tuple[tuple[str, str], ...] = ()
    blocking: str = ""

    @property
    def independent(self) -> bool:
        return not self.blocking


def _own_nodes(body: ir.Node):
    """Nodes of ``body`` that belong to this loop, not to loops nested in it."""
    for child in body.children():
        yield child
        if not isinstance(child, ir.For | ir.While):
            yield from _own_nodes(child)


def _reads(node: ir.Node):
    """(name, index or None) for every value ``node`` reads."""
    for n in node.walk():
        if isinstance(n, ir.Var):
            yield n.name, None
        elif isinstance(n, ir.ArrayRef):
            yield n.array, n.index


def _update_op(node: ir.Assign, name: str) -> str | None:
    """The reduction operator of ``name op= e`` / ``name = name op e`` (e free of name)."""
    v = node.value
    if node.op:
        op, rest = node.op, (v,)
    elif isinstance(v, ir.BinOp) and v.left == ir.Var(name):
        op, rest = v.op, (v.right,)
    elif isinstance(v, ir.BinOp) and v.right == ir.Var(name) and v.op != "-":
        op, rest = v.op, (v.left,)
    elif isinstance(v, ir.Ternary) and isinstance(v.cond, ir.BinOp) \
            and v.cond.op in ("<", "<=", ">", ">="):
        big, small = ((v.cond.left, v.cond.right) if v.cond.op[0] == ">"
                      else (v.cond.right, v.cond.left))
        acc = ir.Var(name)
        other = small if big == acc else big
        if {big, small} != {acc, other} or {v.then, v.orelse} != {acc, other}:
            return None
        op, rest = ("max" if v.then == big else "min"), (other,)
    else:
        return None
    if op not in _REDUCIBLE or any(r == name for e in rest for r, _ in _reads(e)):
        return None
    return op


def _affine_in(e: ir.Expr, moving: set[str]) -> bool | None:
    """Whether ``e`` involves the moving indices only through ``+ - *`` by expressions
    free of them (True), involves none (False), or involves them otherwise (None: e.g.
    ``i % 2`` or ``i * i``, which can repeat)."""
    if isinstance(e, ir.Var):
        return e.name in moving
    if isinstance(e, ir.Const):
        return False
    if isinstance(e, ir.Cast):
        return _affine_in(e.expr, moving)
    if isinstance(e, ir.UnaryOp) and e.op in ("-", "+"):
        return _affine_in(e.operand, moving)
    if isinstance(e, ir.BinOp) and e.op in ("+", "-", "*"):
        a, b = _affine_in(e.left, moving), _affine_in(e.right, moving)
        if a is None or b is None or (e.op == "*" and a and b):
            return None
        return a or b
    uses = any(isinstance(v, ir.Var) and v.name in moving for v in e.walk())
    return None if uses else False


def dependences(loop: ir.For, indices: tuple[str, ...] | None = None) -> Dependences:
    """The loop-carried dependences of ``loop`` (and of the nest ``indices`` names, when
    several collapsed loops share their iterations).

    Conservative: an array written at one index expression and read (or written) at a
    structurally different one counts as a dependence, and so does a write whose index
    does not involve the loop's indices.  Arrays and scalars declared inside the body are
    private to an iteration.
    """
    moving = set(indices or (loop.var,))
    body = loop.body
    # A loop nested inside whose range moves with these indices moves too (the point
    # loop of a tile: for (i = i_t; i < i_t + 64; ++i)).
    inner = [n for n in body.walk() if isinstance(n, ir.For)]
    grew = True
    while grew:
        grew = False
        for lp in inner:
            if lp.var not in moving and any(isinstance(v, ir.Var) and v.name in moving
                                             for e in (lp.start, lp.stop) for v in e.walk()):
                moving.add(lp.var)
                grew = True
    private = {n.name for n in body.walk() if isinstance(n, ir.Declare)}
    private |= {n.var for n in body.walk() if isinstance(n, ir.For)}
    for n in body.walk():
        if isinstance(n, ir.Return):
            return Dependences(blocking="it can return early")
    if any(isinstance(n, ir.Break) for n in _own_nodes(body)):
        return Dependences(blocking="it can break early")
    updates: dict[str, list[ir.Assign]] = {}
    writes: dict[str, set] = {}
    for n in body.walk():
        if not isinstance(n, ir.Assign):
            continue
        t = n.target
        if isinstance(t, ir.Var) and t.name not in private:
            updates.setdefault(t.name, []).append(n)
        elif isinstance(t, ir.ArrayRef) and t.array not in private:
            writes.setdefault(t.array, set()).add(t.index)
    if loop.independent:  # the specializer's guarantee covers the arrays
        writes = {}
    reductions = []
    for name, assigns in updates.items():
        ops = {_update_op(a, name) for a in assigns}
        op = ops.pop() if len(ops) == 1 else None
        if op is None:
            return Dependences(blocking=f"it carries the scalar {name!r} from one iteration "
                                        "to the next, and not as a reduction")
        # Read anywhere but in its own updates: a thread's partial value would leak.
        mine = sum(1 for a in assigns for n in a.walk() if n == ir.Var(name))
        if sum(1 for n in body.walk() if n == ir.Var(name)) != mine:
            return Dependences(blocking=f"it reads the reduction variable {name!r} before "
                                        "the loop ends")
        reductions.append((op, name))
    for array, targets in writes.items():
        if len(targets) > 1:
            return Dependences(blocking=f"it writes {array!r} at more than one index")
        (index,) = targets
        moves = _affine_in(index, moving)
        if moves is None:
            return Dependences(blocking=f"it writes {array!r} at an index that may repeat "
                                        "across iterations")
        if not moves:
            return Dependences(blocking=f"every iteration writes the same element of {array!r}")
        read_at = {i for n in body.walk() if isinstance(n, ir.Expr)
                   for r, i in _reads(n) if r == array and i is not None}
        if read_at - {index}:
            return Dependences(blocking=f"it reads {array!r} at an index it does not write "
                                        "in the same iteration")
    return Dependences(reductions=tuple(sorted(set(reductions))))


def parallelize_outer(fn: ir.Function, *, schedule: str = "static", chunk: int | None = None,
                      collapse: int = 1, when: ir.Expr | None = None) -> ir.Function:
    """Share each outermost loop among OpenMP threads.

    Before: ``for (i...) for (j...) s;``
    After:  ``#pragma omp parallel for schedule(static)`` above ``for (i...)``.
    With ``collapse=2`` the pragma covers both loops of a perfect nest (a
    shallower nest gets what depth it has); ``when`` becomes an ``if()``
    clause (e.g. only go parallel for enough work).  A loop whose iterations
    depend on each other is left serial; a reduction gets its clause
    (``s += x[i]`` becomes ``reduction(+:s)``).

    Inside a :class:`~asp.ir.platform.Region` (or a ``worksharing`` function) the
    outermost loops are shared by the region's team (``#pragma omp for``, never a
    team of their own): with ``nowait`` when the region is ``independent``; ``when``
    goes to the region (if it has no condition yet).  A loop whose body holds a
    region is left serial (its body starts a team already), and the region's loops
    are shared on that team.
    """
    if schedule not in ("static", "dynamic", "guided"):
        raise ValueError(f"schedule={schedule!r}: expected static, dynamic or guided")

    # Where a loop is: outside any region (a team of its own), on a region's team (shared;
    # ``nowait`` when the region is independent), or below a loop that holds a region
    # (not outermost: only the regions there are looked into).
    top, below = ("top", False), ("below", False)

    class Par(Transformer):
        def visit_Region(self, node: ir.Region, where=top):
            body = self.visit(node.body, ("team", node.independent))
            return dataclasses.replace(node, body=body,
                                       when=node.when if node.when is not None else when)

        def visit_For(self, node: ir.For, where=top):
            if _has(node.body, ir.Region):
                return self.generic_visit(node, below)
            if where == below:
                return node
            nest = _nest(node)[:max(collapse, 1)]
            # The bounds of a collapsed loop must not depend on the indices outside it.
            depth = 1
            while depth < len(nest) and not ({v.name for e in (nest[depth].start,
                                                              nest[depth].stop,
                                                              nest[depth].step)
                                              for v in e.walk() if isinstance(v, ir.Var)}
                                             & {lp.var for lp in nest[:depth]}):
                depth += 1
            deps = dependences(node, tuple(lp.var for lp in nest[:depth]))
            if not deps.independent:
                return node
            if where == top:
                share = ir.Parallel(schedule=schedule, chunk=chunk, collapse=depth, when=when)
            else:
                share = ir.Parallel(schedule=schedule, chunk=chunk, collapse=depth,
                                    nowait=where[1])
            return dataclasses.replace(node, parallel=share, reductions=deps.reductions)

        def visit_While(self, node, where=top):
            return self.generic_visit(node, below) if _has(node.body, ir.Region) else node

    return dataclasses.replace(fn, body=Par().visit(fn.body,
                                                    ("team", False) if fn.worksharing else top))


def vectorize_inner(fn: ir.Function) -> ir.Function:
    """Mark each innermost loop with ``#pragma omp simd`` when that is safe.

    Before: ``for (j...) a[j] = b[j] + 1;``  After: ``#pragma omp simd`` above it.
    Left alone: loops with an early exit (``break``/``return``/``continue``), and
    loops whose iterations depend on each other (``a[j] = a[j-1] + 1``; a scalar
    carried other than as a reduction): ``omp simd`` promises no such dependence.
    A reduction (``s += a[j]``) gets ``reduction(+:s)``.
    """
    class Simd(Transformer):
        def visit_For(self, node: ir.For):
            node = self.generic_visit(node)
            if _has(node.body, ir.For, ir.While, ir.Break, ir.Return, ir.Continue, ir.Region):
                return node
            deps = dependences(node)
            if not deps.independent:
                return node
            return dataclasses.replace(node, simd=True,
                                       reductions=tuple(sorted(set(node.reductions)
                                                               | set(deps.reductions))))

    return dataclasses.replace(fn, body=Simd().visit(fn.body))


def unroll_inner(fn: ir.Function, *, factor: int = 4) -> ir.Function:
    """Ask the compiler to unroll each innermost loop ``factor`` times (``#pragma GCC unroll``)."""
    if factor < 1:
        raise ValueError("unroll factor must be >= 1")

    class Unroll(Transformer):
        def visit_For(self, node: ir.For):
            node = self.generic_visit(node)
            if not _has(node.body, ir.For, ir.While):
                return dataclasses.replace(node, unroll=factor)
            return node

    return dataclasses.replace(fn, body=Unroll().visit(fn.body))


def _min(a: ir.Expr, b: ir.Expr) -> ir.Expr:
    return ir.Ternary(ir.BinOp("<", a, b), a, b)


def tile_loops(fn: ir.Function, *, sizes: tuple[int | ir.Expr | None, ...]) -> ir.Function:
    """Cache-block each outermost perfect nest: loop ``k`` is split into tiles of ``sizes[k]``
    (a constant, or an expression such as a parameter that holds a size > 0, for a
    function that serves several tile sizes: :attr:`asp.runtime.Variant.bound`).

    Before, with sizes (None, 64)::

        for (i = a; i < b; ++i) for (j = c; j < d; ++j) s;

    After::

        for (j_t = c; j_t < d; j_t += 64)
          for (i = a; i < b; ++i)
            for (j = j_t; j < min(j_t + 64, d); ++j) s;

    Tile loops go outermost (in nest order) and take over the outer loop's
    ``parallel`` annotation; point loops keep ``simd``.  ``None`` or 0 leaves
    a level untiled.  Only unit-step loops whose bounds do not depend on
    other indices of the nest are tiled; anything else is returned unchanged.
    """
    class Tile(Transformer):
        def visit_For(self, node: ir.For):
            nest = _nest(node)[: len(sizes)]
            names = {lp.var for lp in nest}
            plan = []
            for lp, size in zip(nest, sizes):
                if not size or lp.step != ir.Const(1, "int64_t"):
                    plan.append(None)
                    continue
                used = {v.name for e in (lp.start, lp.stop) for v in e.walk()
                        if isinstance(v, ir.Var)}
                plan.append(size if not used & names else None)
            if not any(plan):
                return node
            inner_body = nest[-1].body
            points = []
            plan = [ir.Const(size, "int64_t") if isinstance(size, int) and size else size
                    for size in plan]
            for lp, size in zip(nest, plan):
                if size:
                    tv = ir.Var(lp.var + "_t")
                    start = tv
                    stop = _min(ir.BinOp("+", tv, size), lp.stop)
                    points.append(dataclasses.replace(lp, start=start, stop=stop, parallel=None))
                else:
                    points.append(dataclasses.replace(lp, parallel=None))
            body = inner_body
            for lp in reversed(points):
                body = ir.Block((dataclasses.replace(lp, body=body),))
            tiles = [ir.For(lp.var + "_t", lp.start, lp.stop, ir.Block(()),
                            step=size, independent=lp.independent)
                     for lp, size in zip(nest, plan) if size]
            for t in reversed(tiles):
                body = ir.Block((dataclasses.replace(t, body=body),))
            outer = body.body[0]
            if node.parallel is not None:
                outer = dataclasses.replace(
                    outer, parallel=dataclasses.replace(node.parallel,
                                                        collapse=min(node.parallel.collapse,
                                                                     len(tiles))),
                    reductions=node.reductions)
            return outer

        def visit_While(self, node):
            return node

    return dataclasses.replace(fn, body=Tile().visit(fn.body))
