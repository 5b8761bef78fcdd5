"""Front end of the stencil specializer: a ``kernel()`` method to the stencil domain IR.

The kernel's body must be one point loop::

    for x in out_grid.interior_points():
        for y in in_grid.neighbors(x, 1):
            out_grid[x] += in_grid[y]
        out_grid[x] -= 4 * in_grid[x]

Inside it: neighbour loops, reads of grids at ``x``/``y``, reads of 1-D lookup
tables at an integer expression, writes of the output grid at ``x``, local
scalar variables, ``if``/``else``, arithmetic, the builtins ``abs int float
min max``, ``math`` functions and ``distance(x, y)``.  Values are typed by
NumPy's rules (NEP 50: Python scalars are weak).  Anything else raises a
:class:`~asp.errors.FrontendError` naming ``file:line`` and the construct.
"""
from __future__ import annotations

import ast
import builtins
import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from asp.frontend import KernelSource
from asp.ir import platform as ir
from asp.ir.pyscalar import (
    BOOL,
    FLOAT,
    INT,
    T,
    absolute,
    arith,
    binop_type,
    cast,
    checked_int,
    floordiv,
    join,
    mod,
    negate,
    translate_compare,
)
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

__all__ = ["ArgInfo", "T", "translate"]


@dataclass(frozen=True)
class ArgInfo:
    """What the front end knows of one argument: a grid (dtype, ndim, neighbourhoods) or a
    scalar (``kind`` 'float' or 'int')."""

    kind: str
    ctype: str = "double"
    ndim: int = 0
    neighbors: tuple[tuple[tuple[int, ...], ...], ...] = ()


_MATH = {"sqrt": 1, "exp": 1, "log": 1, "sin": 1, "cos": 1, "tan": 1, "pow": 2, "fabs": 1,
         "atan": 1, "atan2": 2, "tanh": 1, "hypot": 2, "log10": 1, "cbrt": 1}
_MATH_INT = {"floor", "ceil", "trunc"}
_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
           ast.Mod: "%", ast.Pow: "**"}
_UNSUPPORTED = {"While": "'while' loops", "Try": "'try'", "With": "'with'", "Return": "'return'",
                "Lambda": "lambdas", "ListComp": "list comprehensions", "Global": "'global'",
                "FunctionDef": "nested functions", "Yield": "'yield'", "Raise": "'raise'",
                "Import": "'import'", "Delete": "'del'", "Assert": "'assert'",
                "Break": "'break'", "Continue": "'continue'"}


def _describe(node) -> str:
    return _UNSUPPORTED.get(type(node).__name__, f"'{type(node).__name__}'")


_BUILTINS = {id(getattr(builtins, n)): n for n in ("abs", "int", "float", "min", "max")}


class _Translator:
    def __init__(self, src: KernelSource, ns: Mapping[str, object], args: dict[str, ArgInfo],
                 out: str, env: dict[str, T], owner=None):
        self.src, self.ns, self.args, self.out, self.env = src, ns, args, out, env
        self.owner = owner
        self.self_name = src.func.args.args[0].arg if src.func.args.args else None
        self.point: str | None = None      # the point loop variable
        self.nbrs: dict[str, tuple[str, tuple]] = {}  # neighbour var -> (grid, offsets)
        self.roles: dict[str, str] = {}
        self.tmp = 0

    def err(self, node, msg: str):
        return self.src.error(node, msg)

    # -- roles ------------------------------------------------------------------------------
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

    # -- expressions ------------------------------------------------------------------------
    def expr(self, node) -> tuple[ir.Expr, T]:
        method = getattr(self, f"e_{type(node).__name__}", None)
        if method is None:
            raise self.err(node, f"{_describe(node)} not supported in a stencil kernel")
        return method(node)

    def constant(self, value, node):
        if isinstance(value, bool | np.bool_):
            return ir.Const(int(value), "int64_t"), INT
        if isinstance(value, int | np.integer):
            return ir.Const(int(value), "int64_t"), INT
        if isinstance(value, float | np.floating):
            return ir.Const(float(value), "double"), FLOAT
        raise self.err(node, f"{type(value).__name__} value cannot be used in a stencil kernel")

    def e_Constant(self, node):
        return self.constant(node.value, node)

    def e_Name(self, node):
        name = node.id
        if name in self.env:
            return ir.Var(name), self.env[name]
        if name in self.args:
            a = self.args[name]
            if a.kind == "grid":
                raise self.err(node, f"grid {name!r} must be indexed (write {name}[x])")
            return ir.Var(name), (FLOAT if a.kind == "float" else INT)
        if name == self.point or name in self.nbrs:
            raise self.err(node, f"point {name!r} cannot be used as a number "
                                 f"(use {name}[0] for a coordinate)")
        value = self.ns.get(name)
        if isinstance(value, int | float | np.number) and not isinstance(value, bool):
            return self.constant(value, node)
        raise self.err(node, f"name {name!r} cannot be used in a stencil kernel")

    def e_Attribute(self, node):
        if isinstance(node.value, ast.Name) and self.is_grid(node.value.id) \
                and node.attr == "dim":
            return ir.Const(self.args[node.value.id].ndim, "int64_t"), INT
        if isinstance(node.value, ast.Name) and self.module(node.value.id) is math:
            if node.attr in ("pi", "e", "tau"):
                return self.constant(getattr(math, node.attr), node)
        raise self.err(node, f"attribute '{ast.unparse(node)}' is not supported in a stencil "
                             "kernel")

    def e_Subscript(self, node):
        base = node.value
        if isinstance(base, ast.Attribute) and base.attr == "shape" \
                and isinstance(base.value, ast.Name) and self.is_grid(base.value.id):
            g, axis = base.value.id, node.slice
            if not (isinstance(axis, ast.Constant) and isinstance(axis.value, int)
                    and 0 <= axis.value < self.args[g].ndim):
                raise self.err(node, f"{g}.shape needs a constant axis below {self.args[g].ndim}")
            return ir.Var(f"p_{g}_n{axis.value}"), INT
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

    def e_UnaryOp(self, node):
        e, t = self.expr(node.operand)
        if isinstance(node.op, ast.USub):
            return negate(e, t), t
        if isinstance(node.op, ast.UAdd):
            return e, t
        if isinstance(node.op, ast.Not):
            return ir.UnaryOp("!", self.truth(e, t)), BOOL
        raise self.err(node, "operator '~' is not supported in a stencil kernel")

    def truth(self, e, t: T):
        if t.ctype == "bool":
            return e
        return ir.BinOp("!=", e, ir.Const(0, t.ctype))

    def e_BinOp(self, node):
        op = _BINOPS.get(type(node.op))
        if op is None:
            raise self.err(node, f"operator {type(node.op).__name__} is not supported")
        return self.binop(node, op, *self.expr(node.left), *self.expr(node.right))

    def binop(self, node, op, le, lt, re_, rt):
        if op == "/":
            t = binop_type(lt, rt, true_div=True)
            return ir.BinOp("/", cast(le, lt, t.ctype), cast(re_, rt, t.ctype)), t
        t = binop_type(lt, rt)
        if op == "**":
            if isinstance(re_, ir.Const) and not rt.is_float and 0 <= re_.value <= 8:
                base = cast(le, lt, t.ctype)
                if re_.value == 0:
                    return ir.Const(1, t.ctype), t
                if t.is_float and re_.value >= 3:
                    # Python and NumPy call pow(): x * x * x rounds twice (1 ulp off).
                    n = int(re_.value)
                    wide = (ir.Call(f"asp_pow{n}", (cast(base, t, "double"),)) if n <= 4 else
                            ir.Call("pow", (cast(base, t, "double"),
                                            ir.Const(float(n), "double"))))
                    return cast(wide, FLOAT, t.ctype), t
                out = base
                for _ in range(int(re_.value) - 1):
                    out = arith("*", out, base, t)
                return out, t
            if not t.is_float:
                raise self.err(node, "an integer power needs a constant exponent 0..8")
            # NEP 50: both operands take the result type first (a float32 base rounds a
            # weak Python float exponent to float32), then pow computes in double.
            a, b = cast(le, lt, t.ctype), cast(re_, rt, t.ctype)
            call = ir.Call("pow", (cast(a, t, "double"), cast(b, t, "double")))
            return cast(call, FLOAT, t.ctype), t
        a, b = cast(le, lt, t.ctype), cast(re_, rt, t.ctype)
        if op in ("%", "//"):
            # The helpers take int64/double: widen, then narrow the result back to t.
            wide = T("double" if t.is_float else "int64_t")
            a, b = cast(a, t, wide.ctype), cast(b, t, wide.ctype)
            r = mod(a, b, wide) if op == "%" else floordiv(a, b, wide)
            return cast(r, wide, t.ctype), t
        return arith(op, a, b, t), t

    def e_Compare(self, node):
        return translate_compare(node, self.expr, self.err)

    def e_BoolOp(self, node):
        op = "&&" if isinstance(node.op, ast.And) else "||"
        vals = [self.truth(*self.expr(v)) for v in node.values]
        out = vals[0]
        for v in vals[1:]:
            out = ir.BinOp(op, out, v)
        return out, BOOL

    def e_IfExp(self, node):
        c, ct = self.expr(node.test)
        a, at = self.expr(node.body)
        b, bt = self.expr(node.orelse)
        t = join(at, bt)
        return ir.Ternary(self.truth(c, ct), cast(a, at, t.ctype), cast(b, bt, t.ctype)), t

    def e_Call(self, node):
        f = node.func
        if node.keywords:
            raise self.err(node, "keyword arguments are not supported in a stencil kernel")
        name = ast.unparse(f)
        target = self.callee(f)
        if target is _distance:
            return self.distance(node)
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                and self.module(f.value.id) is math:
            args = [self.expr(a) for a in node.args]
            if f.attr in _MATH and len(args) == _MATH[f.attr]:
                return ir.Call(f.attr, tuple(cast(e, t, "double") for e, t in args)), FLOAT
            if f.attr in _MATH_INT and len(args) == 1:
                return checked_int(ir.Call(f.attr, (cast(*args[0], "double"),)), FLOAT,
                                   "int64_t"), INT
            raise self.err(node, f"call to unknown function '{name}'")
        if id(target) in _BUILTINS and target is getattr(builtins, _BUILTINS[id(target)]):
            args = [self.expr(a) for a in node.args]
            return self.builtin(node, _BUILTINS[id(target)], args)
        if target is not None and callable(target):
            where = ""
            try:
                where = f" (defined at {inspect.getsourcefile(target)}:" \
                        f"{inspect.getsourcelines(target)[1]})"
            except (TypeError, OSError):
                pass
            raise self.err(node, f"call to function '{name}'{where} is not supported: a "
                                 "stencil kernel can call only the built-in distance(), abs, "
                                 "int, float, min, max and math functions")
        raise self.err(node, f"call to unknown function '{name}'")

    def module(self, name: str):
        """What a bare name used as a module refers to (None for a local or argument)."""
        if name in self.env or name in self.args:
            return None
        return self.ns.get(name)

    def callee(self, f):
        """The object a call's function expression refers to, resolved as Python would:
        a bare name through the closure, the module and the builtins; ``self.name``
        through the kernel object (its own attributes, then its class's)."""
        if isinstance(f, ast.Name):
            if f.id in self.env or f.id in self.args:
                return None
            return self.ns.get(f.id)
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) \
                and f.value.id == self.self_name and self.owner is not None:
            if f.attr in vars(self.owner):
                return vars(self.owner)[f.attr]
            try:
                attr = inspect.getattr_static(type(self.owner), f.attr)
            except AttributeError:
                return None
            if isinstance(attr, staticmethod):
                return attr.__func__
            return getattr(self.owner, f.attr, None)
        return None

    def builtin(self, node, fn, args):
        if fn in ("min", "max"):
            if len(args) < 2:
                raise self.err(node, f"{fn}() needs at least two arguments in a kernel")
            e, t = args[0]
            for e2, t2 in args[1:]:
                tt = binop_type(t, t2)
                a, b = cast(e, t, tt.ctype), cast(e2, t2, tt.ctype)
                e, t = ir.Ternary(ir.BinOp("<" if fn == "min" else ">", b, a), b, a), tt
            return e, t
        if len(args) != 1:
            raise self.err(node, f"{fn}() takes one argument here")
        e, t = args[0]
        if fn == "int":
            return checked_int(e, t, "int64_t"), INT
        if fn == "float":
            return cast(e, t, "double"), FLOAT
        return absolute(e, t), t

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
    def block(self, stmts) -> ir.Block:
        out = []
        for s in stmts:
            method = getattr(self, f"s_{type(s).__name__}", None)
            if method is None:
                raise self.err(s, f"{_describe(s)} not supported in a stencil kernel")
            out.extend(method(s))
        return ir.Block(tuple(out))

    def s_Expr(self, node):
        if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            return []
        if isinstance(node.value, ast.Call):
            self.expr(node.value)  # an unknown call is reported as such
        raise self.err(node, "an expression statement has no effect in a stencil kernel")

    def s_Pass(self, node):
        return []

    def s_If(self, node):
        c, ct = self.expr(node.test)
        then = self.block(node.body)
        orelse = self.block(node.orelse) if node.orelse else None
        return [ir.If(self.truth(c, ct), then, orelse)]

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
            body = self.block(node.body)
            return [PointLoop(var, grid, body)]
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
            body = self.block(node.body)
            del self.nbrs[var]
            return [NeighborLoop(var, grid, nid, offsets, body)]
        raise self.err(node, f"'{grid}.{method}()' cannot be iterated in a stencil kernel")

    def s_Assign(self, node):
        if len(node.targets) != 1:
            raise self.err(node, "chained assignment is not supported in a stencil kernel")
        return self.assign(node, node.targets[0], None, node.value)

    def s_AugAssign(self, node):
        op = _BINOPS.get(type(node.op))
        if op is None or op in ("//", "**"):
            raise self.err(node, "unsupported augmented assignment in a stencil kernel")
        return self.assign(node, node.target, op, node.value)

    def assign(self, node, target, op, value):
        if isinstance(target, ast.Subscript) and isinstance(target.value, ast.Name):
            grid = target.value.id
            if grid != self.out:
                what = "input grid" if self.is_grid(grid) else "name"
                raise self.err(node, f"writing {what} {grid!r} is not supported: a stencil "
                                     f"kernel writes only its output grid {self.out!r}")
            ref = self.point_ref(target.slice)
            if ref != {}:
                raise self.err(node, f"the output grid may be written only at the point "
                                     f"being computed ({self.out}[{self.point}])")
            self.use(grid, "field", node)
            ot = T(self.args[grid].ctype)
            v, vt = self.expr(value)
            if op is not None:
                v, vt = self.binop(node, op, GridRead(grid), ot, v, vt)
            if vt.is_float and not ot.is_float:
                # NumPy stores a float in an int grid as Python's int() would: NaN, an
                # infinity or a value out of range raises there.
                return [GridWrite(grid, checked_int(v, vt, ot.ctype))]
            return [GridWrite(grid, cast(v, vt, ot.ctype))]
        if not isinstance(target, ast.Name):
            raise self.err(node, f"cannot assign to '{ast.unparse(target)}' in a stencil kernel")
        name = target.id
        if name in self.args or name == self.point or name in self.nbrs:
            raise self.err(node, f"cannot assign to {name!r}; use a new local name")
        v, vt = self.expr(value)
        if op is not None:
            if name not in self.env:
                raise self.err(node, f"local {name!r} is used before it is assigned")
            v, vt = self.binop(node, op, ir.Var(name), self.env[name], v, vt)
        self.env[name] = join(self.env.get(name), vt)
        return [ir.Assign(ir.Var(name), cast(v, vt, self.env[name].ctype))]


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
              owner=None) -> StencilIR:
    """The domain IR of the kernel ``src`` for arguments described by ``args``.

    ``ns`` maps the kernel's free names as Python would resolve them (closure, module,
    builtins: :func:`asp.frontend.names.namespace`); ``owner`` is the kernel object
    ``self.name`` calls resolve through."""
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
        raise src.error(bad, f"{_describe(bad)} outside the point loop: a stencil kernel's "
                             "body is one 'for x in grid.interior_points()' loop")
    env: dict[str, T] = {}
    for _ in range(8):  # local types only widen: a fixed point comes quickly
        before = dict(env)
        tr = _Translator(src, ns, args, out, env, owner)
        block = tr.block(body)
        if env == before:
            break
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
            scalars.append((p, "double" if info.kind == "float" else "int64_t"))
    return StencilIR(params=tuple(params), grids=tuple(grids), scalars=tuple(scalars), out=out,
                     locals=tuple(sorted((k, v.ctype) for k, v in env.items())), loop=loop)
