"""Front end of the stencil specializer: a ``kernel()`` method to the stencil domain IR.

The kernel's body must be one point loop::

    for x in out_grid.interior_points():
        for y in in_grid.neighbors(x, 1):
            out_grid[x] += in_grid[y]
        out_grid[x] -= 4 * in_grid[x]

Inside it: neighbour loops, reads of grids at ``x``/``y``, reads of 1-D lookup
tables at an integer expression, writes of the output grid at ``x``, coordinates
(``x[0]``), ``grid.dim`` and ``grid.shape[k]``, ``distance(x, y)``, and everything
the core's scalar translator (:class:`asp.frontend.scalar.ScalarTranslator`)
compiles: local variables, ``if``/``else``, Python's arithmetic, comparisons and
boolean operators, the builtins and the functions of ``math`` and NumPy, module
constants, all typed by NumPy's rules (NEP 50: Python scalars are weak).
:class:`StencilTranslator` is that translator with the stencil's domain added; it
refuses ``while``, ``return``, ``break``/``continue`` and loops other than the
grid's.  Anything else raises a :class:`~asp.errors.FrontendError` naming
``file:line`` and the construct.
"""
from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping
from dataclasses import dataclass

from asp.codegen.entry import extent_name
from asp.frontend import KernelSource
from asp.frontend.expressions import NUMBERS, describe
from asp.frontend.helpers import Helpers
from asp.frontend.mixed import local_vars
from asp.frontend.translator import ScalarTranslator, settle
from asp.ir import platform as ir
from asp.ir.names import Namer, param
from asp.ir.pyscalar import FLOAT, INT, T, cast, join, stored
from asp.runtime.mapargs import scalar_arg
from specializers.stencil.domain import (
    Coord,
    Distance,
    GridInfo,
    GridRead,
    GridWrite,
    NeighborLoop,
    PointLoop,
    StencilIR,
    TableRead,
)
from specializers.stencil.grid import distance as _distance

__all__ = ["ArgInfo", "StencilTranslator", "T", "translate"]


@dataclass(frozen=True)
class ArgInfo:
    """What the front end knows of one argument: a grid (dtype, ndim, neighbourhoods) or a
    scalar (``kind`` 'scalar'; ``type``: the translator's type of it, by the core's rule
    for every specializer, :func:`asp.runtime.mapargs.scalar_arg`: a NumPy scalar strong,
    typed as its dtype, a Python number, ``bool`` too, weak)."""

    kind: str
    ctype: str = "double"
    ndim: int = 0
    neighbors: tuple[tuple[tuple[int, ...], ...], ...] = ()
    type: T | None = None

    @staticmethod
    def of_scalar(a) -> ArgInfo:
        """A scalar argument's."""
        t = scalar_arg(a)[0]
        return ArgInfo("scalar", t.ctype, type=t)

    def scalar_type(self) -> T:
        """The translator's type of a scalar argument."""
        return self.type


class StencilTranslator(ScalarTranslator):
    """The core's scalar translator, plus a stencil's grids, points and loops.

    Names stay the user's in the domain IR (the lowering prefixes parameters and locals),
    so temporaries are locals too, named apart from every name the kernel uses.
    """

    callables = ("distance(), the builtins abs, min, max, int, float and bool, math and "
                 "NumPy functions, and functions of your own written in Python (a def)")
    # A stencil's body is one point loop of neighbour loops: no other loops, no early exits.
    s_While = s_Return = s_Break = s_Continue = None

    def __init__(self, src: KernelSource, ns: Mapping[str, object], args: dict[str, ArgInfo],
                 out: str, env: dict[str, T], owner=None, keyed: bool = False):
        scalars = {n: a.scalar_type() for n, a in args.items() if a.kind != "grid"}
        used = {n.id for n in ast.walk(src.func) if isinstance(n, ast.Name)} | set(args)
        super().__init__(src, ns, scalars, env, kind="a stencil kernel", names=Namer(used))
        self.args, self.out, self.owner, self.keyed = args, out, owner, keyed
        self.self_name = src.func.args.args[0].arg if src.func.args.args else None
        self.point: str | None = None      # the point loop variable
        self.nbrs: dict[str, tuple[str, tuple]] = {}  # neighbour var -> (grid, offsets)
        self.roles: dict[str, str] = {}

    # -- grids and points -------------------------------------------------------------------
    def use(self, grid: str, role: str, node) -> None:
        old = self.roles.setdefault(grid, role)
        if old != role:
            raise self.err(node, f"grid {grid!r} is used both as a grid indexed by points and "
                                 "as a lookup table indexed by a number")
        if role == "table" and self.args[grid].ndim != 1:
            raise self.err(node, f"{grid!r} is indexed by a number but has "
                                 f"{self.args[grid].ndim} dimensions; lookup tables are 1-D")

    def is_grid(self, name: str) -> bool:
        return name in self.args and self.args[name].kind == "grid"

    def point_ref(self, node) -> dict | None:
        """``x`` or ``y`` as a point reference (``{'nbr': ...}``), or None."""
        if isinstance(node, ast.Name):
            if node.id == self.point:
                return {}
            if node.id in self.nbrs:
                return {"nbr": node.id}
        return None

    # -- names: the user's own, and the kernel object's methods -----------------------------
    def variable(self, name: str) -> ir.Var:
        return ir.Var(name)

    def is_value(self, name: str) -> bool:
        return (super().is_value(name) or name in self.args or name == self.self_name
                or name == self.point or name in self.nbrs)

    def temporary(self, e: ir.Expr, t: T) -> tuple[ir.Var, T]:
        # An assigned local, not a declaration: unrolling copies a neighbour loop's body,
        # and a declaration would then stand twice in one C scope.
        name = self.names.fresh()
        self.env[name] = join(self.env.get(name), t)
        self.pending.append(ir.Assign(ir.Var(name), cast(e, t, self.env[name].ctype)))
        return ir.Var(name), self.env[name]

    def static_value(self, node):
        """``self.name`` resolves through the kernel object, as Python would: its own
        attributes, then its class's (None where it has none)."""
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == self.self_name and self.owner is not None:
            if node.attr in vars(self.owner):
                return vars(self.owner)[node.attr]
            try:
                attr = inspect.getattr_static(type(self.owner), node.attr)
            except AttributeError:
                return None
            if isinstance(attr, staticmethod):
                return attr.__func__
            return getattr(self.owner, node.attr, None)
        return super().static_value(node)

    # -- expressions ------------------------------------------------------------------------
    def e_Name(self, node):
        name = node.id
        if self.is_grid(name):
            raise self.err(node, f"grid {name!r} must be indexed (write {name}[x])")
        if name == self.point or name in self.nbrs:
            raise self.err(node, f"point {name!r} cannot be used as a number "
                                 f"(use {name}[0] for a coordinate)")
        return super().e_Name(node)

    def e_Attribute(self, node):
        if isinstance(node.value, ast.Name) and self.is_grid(node.value.id) \
                and node.attr == "dim":
            return ir.Const(self.args[node.value.id].ndim, "int64_t"), INT
        if self.keyed and isinstance(node.value, ast.Name) and node.value.id == self.self_name:
            # A number of the kernel object (self.coef) is a constant of this code, which
            # is keyed on the values of what the kernel reads (.state.read_key).
            value = self.static_value(node)
            if isinstance(value, NUMBERS) and not isinstance(value, complex):
                return self.constant(value, node)
        return super().e_Attribute(node)

    def e_Subscript(self, node):
        base = node.value
        if isinstance(base, ast.Attribute) and base.attr == "shape" \
                and isinstance(base.value, ast.Name) and self.is_grid(base.value.id):
            g, axis = base.value.id, node.slice
            if not (isinstance(axis, ast.Constant) and isinstance(axis.value, int)
                    and 0 <= axis.value < self.args[g].ndim):
                raise self.err(node, f"{g}.shape needs a constant axis below {self.args[g].ndim}")
            return ir.Var(extent_name(param(g), axis.value)), INT
        ref = self.point_ref(base)
        if ref is not None:  # x[0]: a coordinate
            axis = node.slice
            if not (isinstance(axis, ast.Constant) and isinstance(axis.value, int)):
                raise self.err(node, "a point's coordinate needs a constant axis (x[0])")
            return Coord(axis.value, **ref), INT
        if not (isinstance(base, ast.Name) and self.is_grid(base.id)):
            raise self.err(node, f"indexing '{ast.unparse(base)}' is not supported; only grid "
                                 "arguments can be indexed")
        grid = base.id
        ctype = self.args[grid].ctype
        ref = self.point_ref(node.slice)
        if ref is not None:
            self.use(grid, "field", node)
            if grid == self.out and ref:
                raise self.err(node, "reading the output grid at a neighbour point is not "
                                     "supported (the result would depend on the visiting order)")
            return GridRead(grid, **ref), T(ctype)
        self.use(grid, "table", node)
        e, t = self.expr(node.slice)
        if t.is_float:
            raise self.err(node, f"lookup table {grid!r} indexed by a float; use int(...)")
        return TableRead(grid, cast(e, t, "int64_t")), T(ctype)

    def domain_call(self, node, fn):
        if fn is _distance:
            return self.distance(node)
        return super().domain_call(node, fn)

    def distance(self, node):
        if len(node.args) != 2:
            raise self.err(node, "distance() takes two points")
        refs = [self.point_ref(a) for a in node.args]
        if any(r is None for r in refs):
            raise self.err(node, "distance() takes the point and a neighbour (distance(x, y))")
        nb = [r["nbr"] for r in refs if r]
        if len(nb) == 2 and nb[0] != nb[1]:
            raise self.err(node, "distance() between two neighbours is not supported")
        if not nb or (len(nb) == 2):
            return ir.Const(0.0, "double"), FLOAT
        return Distance(nbr=nb[0]), FLOAT

    # -- statements -------------------------------------------------------------------------
    def s_For(self, node):
        it = node.iter
        if node.orelse:
            raise self.err(node, "'for ... else' is not supported in a stencil kernel")
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Attribute)
                and isinstance(it.func.value, ast.Name) and self.is_grid(it.func.value.id)
                and isinstance(node.target, ast.Name)):
            raise self.err(node, "only 'for x in grid.interior_points()' and "
                                 "'for y in grid.neighbors(x, id)' loops are supported")
        grid, method, var = it.func.value.id, it.func.attr, node.target.id
        if method == "interior_points":
            if self.point is not None:
                raise self.err(node, "point loops cannot be nested")
            if it.args:
                raise self.err(node, "interior_points() takes no arguments")
            self.point = var
            self.use(grid, "field", node)
            return [PointLoop(var, grid, self.nested(node.body))]
        if method == "neighbors":
            if self.point is None:
                raise self.err(node, "neighbors() must be inside a point loop")
            if len(it.args) != 2 or self.point_ref(it.args[0]) != {}:
                raise self.err(node, f"expected {grid}.neighbors({self.point}, id)")
            nid_e, nid_t = self.expr(it.args[1])
            if not isinstance(nid_e, ir.Const) or nid_t.is_float:
                raise self.err(node, "the neighbourhood id must be a constant integer")
            table = self.args[grid].neighbors
            nid = int(nid_e.value)
            if not 0 <= nid < len(table):
                raise self.err(node, f"grid {grid!r} has no neighbourhood {nid} (it has "
                                     f"{len(table)} in neighbor_definition)")
            offsets = table[nid]
            if any(len(o) != self.args[grid].ndim for o in offsets):
                raise self.err(node, f"neighbourhood {nid} of {grid!r} has offsets of the "
                                     "wrong length")
            self.use(grid, "field", node)
            self.nbrs[var] = (grid, offsets)
            body = self.nested(node.body)
            del self.nbrs[var]
            if offsets:  # (no break in it): after it, the types of its body's last trip
                self.trips.add(node)
            return [NeighborLoop(var, grid, nid, offsets, body)]
        raise self.err(node, f"'{grid}.{method}()' cannot be iterated in a stencil kernel")

    def written(self, target, node) -> str | None:
        """The grid a subscript target writes, checked (the output, at the point being
        computed); None for a target that is not a grid's."""
        if not (isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name)):
            return None
        grid = target.value.id
        if grid != self.out:
            what = "input grid" if self.is_grid(grid) else "name"
            raise self.err(node, f"writing {what} {grid!r} is not supported: a stencil "
                                 f"kernel writes only its output grid {self.out!r}")
        if self.point_ref(target.slice) != {}:
            raise self.err(node, f"the output grid may be written only at the point "
                                 f"being computed ({self.out}[{self.point}])")
        self.use(grid, "field", node)
        return grid

    def s_AugAssign(self, node):
        self.written(node.target, node)  # a write's own checks, before the read's
        return super().s_AugAssign(node)

    def store(self, target, e, t, node):
        grid = self.written(target, node)
        if grid is None:
            return super().store(target, e, t, node)
        # As NumPy stores it: a float in an int grid as Python's int() would (NaN, an
        # infinity or a value out of range raises), a[i] = 300 for uint8 raises, and so
        # does an int16 grid's a[i] = np.int64(40000).
        return [GridWrite(grid, stored(e, t, self.args[grid].ctype))]

    def assign_name(self, name, e, t, node):
        if name in self.args or name == self.point or name in self.nbrs:
            raise self.err(node, f"cannot assign to {name!r}; use a new local name")
        return super().assign_name(name, e, t, node)


def _output(src: KernelSource, params: list[str], args: dict[str, ArgInfo]) -> str:
    """The grid the kernel writes: it must be the last grid parameter."""
    written = []
    for n in ast.walk(src.func):
        targets = n.targets if isinstance(n, ast.Assign) else (
            [n.target] if isinstance(n, ast.AugAssign) else [])
        for t in targets:
            if isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name):
                written.append((t.value.id, n))
    grids = [p for p in params if args[p].kind == "grid"]
    if not grids:
        raise src.error(src.func, "a stencil kernel needs at least one grid argument")
    out = grids[-1]
    for name, node in written:
        if name != out and name in args:
            raise src.error(node, f"writing input grid {name!r} is not supported: a stencil "
                                  f"kernel writes only its output grid {out!r} (the last grid "
                                  "argument)")
    return out


def translate(src: KernelSource, ns: Mapping[str, object], args: dict[str, ArgInfo], *,
              owner=None, keyed: bool = False) -> StencilIR:
    """The domain IR of the kernel ``src`` for arguments described by ``args``.

    ``ns`` maps the kernel's free names as Python would resolve them (closure, module,
    builtins: :func:`asp.frontend.names.namespace`); ``owner`` is the kernel object
    ``self.name`` calls resolve through; ``keyed``: the code is keyed on the values of
    the attributes of ``owner`` the kernel reads, so its numbers (``self.coef``) compile
    as constants (otherwise the kernel runs as Python)."""
    func = src.func
    a = func.args
    if a.vararg or a.kwarg or a.kwonlyargs or a.defaults:
        raise src.error(func, "kernel() takes plain positional parameters only")
    params = [p.arg for p in a.args][1:]  # drop self
    if list(args) != params:
        raise src.error(func, f"kernel() takes {len(params)} argument(s) "
                              f"({', '.join(params)}), got {len(args)}")
    out = _output(src, params, args)
    body = [s for s in func.body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    loops = [s for s in body if isinstance(s, ast.For)]
    if len(body) != 1 or len(loops) != 1:
        bad = next((s for s in body if not isinstance(s, ast.For)), body[-1] if body else func)
        raise src.error(bad, f"{describe(bad)} outside the point loop: a stencil kernel's "
                             "body is one 'for x in grid.interior_points()' loop")
    helpers = Helpers()

    def make(env):
        tr = StencilTranslator(src, ns, args, out, env, owner, keyed)
        tr.helpers = helpers  # the user's own functions it calls, on numbers
        return tr

    tr, block = settle(make, body)
    loop = block.body[0]
    if not isinstance(loop, PointLoop):
        raise src.error(body[0], "a stencil kernel's body is one "
                                 "'for x in grid.interior_points()' loop")
    grids, scalars = [], []
    for p in params:
        info = args[p]
        if info.kind == "grid":
            grids.append(GridInfo(p, info.ctype, info.ndim, tr.roles.get(p, "unused")))
        else:
            scalars.append((p, info.scalar_type().ctype))
    return StencilIR(params=tuple(params), grids=tuple(grids), scalars=tuple(scalars), out=out,
                     locals=tuple(local_vars(tr.env, str)), loop=loop,
                     helpers=helpers.used_by(loop))
