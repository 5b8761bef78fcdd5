"""The core's Python front end: scalar Python to typed IR, for every specializer.

Two layers, both public API:

* :class:`ScalarTranslator` (from :mod:`asp.frontend.translator`) translates scalar
  Python statements and expressions to platform IR, every value typed by Python and
  NumPy's rules for scalars, NEP 50 included: a Python ``int``/``float`` literal or
  scalar argument is *weak* and takes the type of the array element it meets (see
  :mod:`asp.ir.pyscalar`).  A domain front end subclasses it and overrides only its
  domain (the stencil's grids and point loops); everything else it inherits.
* :func:`translate` uses it as it is, for kernels that *are* a scalar function of
  scalars (the elementwise map's body, a reduction's term).  Its domain IR is
  :class:`ScalarFunction`: the user's function with every value typed, its body
  already in platform IR statements.

Supported: arithmetic ``+ - * / // % ** & | ^ << >> ~``, comparisons (chained too),
``and or not`` (on booleans, or as a test), ``x if c else y``, local variables and
tuple assignment, augmented assignment, ``if/elif/else``, ``for`` over ``range`` with
``break``/``continue``, ``while``, early ``return``, the builtins ``abs min max int
float bool``, the functions of ``math`` and their NumPy counterparts, module-level
numeric constants (names resolve as Python resolves them: closure, module, builtins), and
calls of the user's own Python functions (:mod:`asp.frontend.helpers`: ``sf.helpers``).
Anything else raises a :class:`~asp.errors.FrontendError` naming ``file:line``.

::

    sf = translate(get_source(fn), fn, {"x": T("double"), "n": INT})
    sf.ret          # T('double')
    sf.as_function()  # a static inline C function, for a specializer's loop to call

A domain front end (the sketch of :mod:`specializers.stencil.frontend`)::

    class StencilTranslator(ScalarTranslator):
        s_While = None                     # a construct the domain refuses

        def e_Subscript(self, node):       # grid[x]: the domain's own expression
            ...
            return GridRead(grid), T(ctype)

        def domain_call(self, node, fn):   # distance(x, y)
            if fn is distance:
                return self.distance(node)
            return super().domain_call(node, fn)
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from asp.frontend.helpers import Helpers
from asp.frontend.mixed import local_vars
from asp.frontend.names import namespace
from asp.frontend.source import KernelSource
from asp.frontend.translator import ScalarTranslator, settle
from asp.ir import platform as ir
from asp.ir.names import user
from asp.ir.node import Node, Transformer
from asp.ir.pyscalar import FLOAT, HELPERS, INT, UNREP, T, join, unrep_flag

__all__ = ["FLOAT", "INT", "PREAMBLE", "ScalarFunction", "ScalarTranslator", "T", "c_name",
           "hoist_guards", "translate"]

#: The C helpers this front end's code calls (Python's ``//``, ``%``, ``range`` length).
PREAMBLE = HELPERS

#: The C identifier of a Python name (:func:`asp.ir.names.user`): prefixed, so it never
#: meets a generated name (``n``, ``k``, ``asp_*``), a C keyword or a libm function.
c_name = user


@dataclass(frozen=True)
class ScalarFunction(Node):
    """The domain IR: one typed scalar function (the body of the elementwise map)."""

    name: str
    params: tuple[ir.Param, ...]
    param_types: tuple[T, ...]
    ret: T
    locals: tuple[tuple[str, str], ...]
    body: ir.Block
    #: The body converts floats to ints (``int(x)``, ``math.floor``) or computes on Python
    #: ints: the function takes the :data:`~asp.ir.pyscalar.UNREP` flag as a last
    #: parameter, which it sets when a value has no int64 counterpart (Python's result
    #: would be an unbounded int, or an error); the caller must then run the call as Python.
    checked: bool = False
    #: Scalar arguments tested once per call instead of at each use (``(index, lo,
    #: hi)``: the Python int argument ``params[index]`` meets a NumPy integer type that
    #: holds only ``[lo, hi]``; see :func:`hoist_guards`).  A kernel function calling this
    #: one tests them before its loop, through :meth:`flagged`.
    guards: tuple[tuple[int, int, int], ...] = ()
    #: The user's functions the body calls (:mod:`asp.frontend.helpers`), translated, each
    #: after the ones it calls: the kernel's C defines them before this function.
    helpers: tuple[ScalarFunction, ...] = dataclasses.field(default=(), repr=False)
    #: The types of its ``return`` statements (``ret`` joins them): a caller of a function
    #: whose returns differ follows Python only where the difference cannot show.
    returns: tuple[T, ...] = dataclasses.field(default=(), repr=False)
    child_fields = ("body",)

    def as_function(self) -> ir.Function:
        decls = tuple(ir.Declare(ct, name, ir.Const(0, ct)) for name, ct in self.locals)
        params = self.params + ((ir.Param(UNREP.name, "int", pointer=True),)
                                if self.checked else ())
        return ir.Function(self.name, params, ir.Block(decls + self.body.body),
                           ret=self.ret.ctype, static=True, inline=True)

    def call(self, args: tuple[ir.Expr, ...]) -> ir.Call:
        """A call of the function (with the flag, when it takes one)."""
        return ir.Call(self.name, args + ((UNREP,) if self.checked else ()))

    def flagged(self, stmts: tuple[ir.Stmt, ...], code: int,
                args: tuple[ir.Expr, ...]) -> tuple[ir.Stmt, ...]:
        """The statements of a kernel function that calls this one with ``args`` (its
        scalar arguments the same at every call): the flag declared, ``return code``
        after ``stmts`` if a call set it, and before them if a guard fails."""
        out = unrep_flag(stmts, code)
        fail = None
        for i, lo, hi in self.guards:
            test = ir.BinOp("||", ir.BinOp("<", args[i], ir.Const(lo, "int64_t")),
                            ir.BinOp(">", args[i], ir.Const(hi, "int64_t")))
            fail = test if fail is None else ir.BinOp("||", fail, test)
        if fail is None:
            return out
        return (ir.If(fail, ir.Block((ir.Return(ir.Const(code, "int32_t")),))), *out)


class _Hoist(Transformer):
    def __init__(self, params: dict[str, int]):
        self.params = params
        self.bounds: dict[int, tuple[int, int]] = {}

    def visit_Call(self, node: ir.Call):
        node = self.generic_visit(node)
        if node.func == "asp_pyint_in" and isinstance(node.args[0], ir.Var) \
                and node.args[0].name in self.params:
            i = self.params[node.args[0].name]
            lo, hi = node.args[1].value, node.args[2].value
            old = self.bounds.get(i, (lo, hi))
            self.bounds[i] = (max(lo, old[0]), min(hi, old[1]))
            return node.args[0]
        return node


def hoist_guards(sf: ScalarFunction) -> ScalarFunction:
    """Tests of Python int arguments moved out of the function (a domain pass).

    A Python int scalar argument that meets a NumPy integer type is range-tested where it
    converts (:func:`asp.ir.pyscalar.converted`), at every element.  GCC moves one such
    test out of a simple loop, but not several: a body using two arguments four times
    (``y = x * c + d`` ...) on 200k int16 elements took 1.35-1.4x the time of the same
    body with constants.  The argument is the same for every element: it is tested once
    per call (:attr:`ScalarFunction.guards`, the tightest range of all its
    conversions), before any element, and converts plainly.  A call whose argument fails
    runs as Python, which raises ``OverflowError`` where it converts, or keeps its int
    where it does not (where no element reaches the conversion: right, and slower).

    Before: ``return x + (int16_t)asp_pyint_in(c, -32768, 32767, asp_unrep);``
    After: ``return x + (int16_t)c;`` and the guard ``(1, -32768, 32767)``.
    """
    weak = {p.name: i for i, (p, t) in enumerate(zip(sf.params, sf.param_types)) if t == INT}
    if not weak or not sf.checked:
        return sf
    h = _Hoist(weak)
    body = h.visit(sf.body)
    if not h.bounds:
        return sf
    return dataclasses.replace(sf, body=body, guards=tuple(
        (i, lo, hi) for i, (lo, hi) in sorted(h.bounds.items())))


def translate(src: KernelSource, fn, param_types: dict[str, T], *,
              name: str = "asp_elem", kind: str = "an elementwise kernel",
              helpers: Helpers | None = None) -> ScalarFunction:
    """The typed scalar function for ``src`` with parameters of ``param_types``; ``kind``
    is how messages name the kernel.  Calls of the user's own functions are translated
    too (into ``helpers``, a new :class:`~asp.frontend.helpers.Helpers` by default)."""
    helpers = Helpers() if helpers is None else helpers
    func = src.func
    a = func.args
    if a.vararg or a.kwarg:
        raise src.error(func, f"{kind}: named parameters only (no *args or **kwargs)")
    # Defaults and keyword-only parameters are the call's business: it binds every
    # parameter (asp.runtime.mapargs.bind_keywords), and the C takes them all in order.
    names = [p.arg for p in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    if set(names) != set(param_types):
        raise src.error(func, "internal: parameter types do not match the signature")
    ns = namespace(fn)

    def make(env):
        tr = ScalarTranslator(src, ns, param_types, env, kind=kind)
        tr.helpers = helpers
        return tr

    tr, first = settle(make, func.body)
    # Whether control can pass the end is asked of the translation, which knows what
    # Python knows when compiling (an `if` on a module constant, a loop over a constant
    # range that is entered): asked of the syntax, `if LIMIT > 2: return x` was refused.
    if not tr.returns or not tr.ends(first.body):
        raise src.error(func, f"'{func.name}' can reach its end without returning a value")
    ret = tr.returns[0]
    for t in tr.returns[1:]:
        ret = join(ret, t)
    # Once more, now that the return type is known (every return converts to it).
    tr, one_double = make(tr.env), tr.one_double
    tr.one_double = one_double
    tr.ret = ret
    body = tr.block(func.body)
    params = tuple(ir.Param(user(n), param_types[n].ctype) for n in names)
    locals_ = tuple(local_vars(tr.env, user))
    return ScalarFunction(name=name, params=params,
                          param_types=tuple(param_types[n] for n in names), ret=ret,
                          locals=locals_, body=body,
                          checked=any(n == UNREP for n in body.walk()),
                          helpers=helpers.used_by(body), returns=tuple(tr.returns))
