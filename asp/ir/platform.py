"""The platform IR: a small, C-like loop-nest IR shared by every specializer.

Specializers lower their domain IR to this; the platform passes
(:mod:`asp.passes`) annotate and restructure it; :mod:`asp.codegen` prints it
through cgen.  Types are C type names (``'double'``, ``'int64_t'``, see
:mod:`asp.ir.types`).  Arrays are flat: an :class:`ArrayRef` takes one
linear index expression.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from asp.ir.node import Node

__all__ = [
    "ArrayRef", "Assign", "BinOp", "Block", "Break", "Call", "Cast", "Const", "Continue",
    "Declare", "Expr", "ExprStmt", "For", "Function", "If", "Module", "Param", "Parallel",
    "Pragma", "Region", "Return", "Stmt", "Ternary", "UnaryOp", "Var", "Verbatim", "While",
    "rounds_a_call_to",
]


# -- expressions ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Expr(Node):
    """Base of expressions."""


@dataclass(frozen=True)
class Const(Expr):
    """A literal; ``ctype`` decides how it is printed (``1.0`` vs ``1.0f`` vs ``1``)."""

    value: float | int | bool
    ctype: str = "double"


@dataclass(frozen=True)
class Var(Expr):
    name: str


@dataclass(frozen=True)
class BinOp(Expr):
    """``left op right`` with a C operator (``+ - * / % < <= == != && || & | ^ << >>``)."""

    op: str
    left: Expr
    right: Expr
    child_fields: ClassVar = ("left", "right")


@dataclass(frozen=True)
class UnaryOp(Expr):
    op: str  # '-', '!', '~', '+', '&' (address of an ArrayRef)
    operand: Expr
    child_fields: ClassVar = ("operand",)


@dataclass(frozen=True)
class Ternary(Expr):
    cond: Expr
    then: Expr
    orelse: Expr
    child_fields: ClassVar = ("cond", "then", "orelse")


@dataclass(frozen=True)
class Call(Expr):
    """A call of a C function by name (math functions, helper functions of the module)."""

    func: str
    args: tuple[Expr, ...]
    child_fields: ClassVar = ("args",)


@dataclass(frozen=True)
class Cast(Expr):
    ctype: str
    expr: Expr
    child_fields: ClassVar = ("expr",)


@dataclass(frozen=True)
class ArrayRef(Expr):
    """``array[index]`` on a flat array."""

    array: str
    index: Expr
    child_fields: ClassVar = ("index",)


# -- statements ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Stmt(Node):
    """Base of statements."""


@dataclass(frozen=True)
class Block(Stmt):
    body: tuple[Stmt, ...] = ()
    child_fields: ClassVar = ("body",)


@dataclass(frozen=True)
class Declare(Stmt):
    """``ctype name = init;`` (``init`` may be None); ``size`` makes it a local array
    ``ctype name[size];`` (no initializer).

    ``values`` makes it a constant table, ``static const ctype name[N] = {...};``
    (``N`` the number of values; ``size``, if given, must agree): offset and weight
    tables as IR the passes and the dump see, not C text.  Each value is printed as a
    literal of ``ctype``.  Declared in a :class:`Region`'s body (outside its loops), an
    array or scalar is private to each thread: that is thread-private scratch.
    """

    ctype: str
    name: str
    init: Expr | None = None
    const: bool = False
    size: int | None = None
    values: tuple[float | int | bool, ...] | None = None
    child_fields: ClassVar = ("init",)

    def __post_init__(self):
        if self.values is not None:
            # C has no empty array; a table of no entries is a lowering bug.
            if not self.values:
                raise ValueError(f"constant table {self.name!r} has no values")
            if self.size is not None and self.size != len(self.values):
                raise ValueError(f"constant table {self.name!r}: size {self.size} but "
                                 f"{len(self.values)} values")
            if self.init is not None:
                raise ValueError(f"constant table {self.name!r}: values and init")


@dataclass(frozen=True)
class Assign(Stmt):
    """``target op= value;`` with ``op`` '' for plain assignment, or one of ``+ - * /``."""

    target: Expr
    value: Expr
    op: str = ""
    child_fields: ClassVar = ("target", "value")


@dataclass(frozen=True)
class ExprStmt(Stmt):
    expr: Expr
    child_fields: ClassVar = ("expr",)


@dataclass(frozen=True)
class If(Stmt):
    """``if (cond) then else orelse``.  ``role="threshold"``: ``then`` is the parallel
    code, ``orelse`` the serial code for calls too small for a team
    (:func:`asp.passes.serial_below`); printed ``if (ASP_PARALLEL(cond))``, which a
    quick first tier defines as 1 (:data:`asp.runtime.build.QUICK`): it compiles no
    serial code."""

    cond: Expr
    then: Block
    orelse: Block | None = None
    role: str | None = None
    child_fields: ClassVar = ("cond", "then", "orelse")


@dataclass(frozen=True)
class Parallel(Node):
    """How a loop is shared among threads: ``#pragma omp parallel for ...``, or, for a
    loop inside a :class:`Region`, ``#pragma omp for ...`` (the region's team shares it;
    ``num_threads`` and ``when`` belong to the region then, and must be unset)."""

    schedule: str = "static"  # static | dynamic | guided
    chunk: int | None = None
    collapse: int = 1
    num_threads: int | None = None
    #: Run in parallel only when this holds (``if(...)`` clause), e.g. enough work.
    when: Expr | None = None
    #: In a region: no barrier at the loop's end (``nowait``); a thread that finishes
    #: its share goes on to the next statement while others still work on theirs.
    nowait: bool = False
    child_fields: ClassVar = ("when",)


@dataclass(frozen=True)
class For(Stmt):
    """``for (int64_t var = start; var < stop; var += step) body`` with annotations.

    ``parallel``: OpenMP work sharing; ``simd``: ``#pragma omp simd``;
    ``unroll``: ``#pragma GCC unroll``; ``tile``: a request a tiling pass consumes;
    ``reductions``: ``(operator, variable)`` pairs the loop reduces across its
    iterations, a ``reduction(op:var)`` clause on its ``parallel`` or ``simd``
    pragma (the passes that set those add them; see :mod:`asp.passes.loops`);
    ``independent``: the specializer guarantees, by what its domain allows, that
    no iteration reads or writes array elements another iteration writes (a
    stencil's point loops: each point writes only its own output), which the
    passes' own analysis cannot always see (rows written by streaming stores);
    scalars and early exits are still checked.
    ``role``: what the loop is in the source it came from, for passes and lowerings that
    treat such loops specially (``"range"``: a Python ``for ... in range(...)`` loop, as
    :mod:`asp.frontend.scalar` translates it); ``""``: a loop a lowering made.
    """

    var: str
    start: Expr
    stop: Expr
    body: Block
    step: Expr = Const(1, "int64_t")
    parallel: Parallel | None = None
    simd: bool = False
    unroll: int | None = None
    tile: int | None = None
    reductions: tuple[tuple[str, str], ...] = ()
    independent: bool = False
    role: str = ""
    child_fields: ClassVar = ("start", "stop", "step", "body", "parallel")


@dataclass(frozen=True)
class Region(Stmt):
    """A parallel region: ``#pragma omp parallel`` and a block one team of threads runs.

    Every thread runs every statement of ``body``, except the loops whose ``parallel``
    is set: those are work-shared (``#pragma omp for``), each thread taking its share
    of the iterations, with a barrier at the loop's end unless ``Parallel.nowait``.
    Several loops in one region pay for one team, not one each.  Variables declared
    before the region are shared; declared in ``body``, they are private to each thread
    (thread-private scratch, see :class:`Declare`).  A condition inside the body that
    decides whether a work-shared loop runs must come out the same on every thread.

    ``when``: run on a team only when this holds (``if(...)``); ``num_threads``: the
    team's size.  ``independent``: the specializer guarantees, by what its domain
    allows, that the work-shared loops of ``body`` (and of the work-sharing functions
    it calls) write disjoint elements and none reads what another writes (a stencil's
    interior box and border slabs), so no thread need wait between them: the passes
    then give them ``nowait``.  ``reductions``: ``(operator, variable)`` pairs of
    variables declared before the region that each thread updates in its own copy,
    combined at the region's end (``reduction(op:var)``; e.g. an error flag every
    thread may raise).
    """

    body: Block
    when: Expr | None = None
    num_threads: int | None = None
    independent: bool = False
    reductions: tuple[tuple[str, str], ...] = ()
    child_fields: ClassVar = ("body", "when")


@dataclass(frozen=True)
class While(Stmt):
    cond: Expr
    body: Block
    child_fields: ClassVar = ("cond", "body")


@dataclass(frozen=True)
class Break(Stmt):
    pass


@dataclass(frozen=True)
class Continue(Stmt):
    pass


@dataclass(frozen=True)
class Return(Stmt):
    value: Expr | None = None
    child_fields: ClassVar = ("value",)


@dataclass(frozen=True)
class Pragma(Stmt):
    text: str


@dataclass(frozen=True)
class Verbatim(Stmt):
    """C statements written by hand or rendered from a template (a specializer in the
    template style, see :mod:`asp.codegen.template`): printed as they are; passes do
    not look inside.  ``what`` names them in the IR dump."""

    text: str
    what: str = ""


# -- functions and modules ------------------------------------------------------------------

@dataclass(frozen=True)
class Param(Node):
    """A parameter: a scalar, or a pointer (``pointer=True``) with const/restrict qualifiers."""

    name: str
    ctype: str
    pointer: bool = False
    const: bool = False
    restrict: bool = False


@dataclass(frozen=True)
class Function(Node):
    """A C function.  ``worksharing``: it is called by every thread of a
    :class:`Region`'s team, and its parallel loops are that team's work-shared loops
    (``#pragma omp for``, OpenMP's orphaned work sharing); called outside a region,
    they run on the calling thread alone.  One such helper serves every variant's
    region, so its loops are compiled once."""

    name: str
    params: tuple[Param, ...]
    body: Block
    ret: str = "void"
    static: bool = False
    inline: bool = False
    worksharing: bool = False
    #: An optimization level for this function alone (``"O2"``), under GCC, except in a
    #: quick first tier (built at ``-O1``): code that costs much compile time at ``-O3``
    #: for no speed.  The function is then never inlined into one of another level.
    optimize: str = ""
    child_fields: ClassVar = ("params", "body")


@dataclass(frozen=True)
class Module(Node):
    """A translation unit: includes, C preamble text (types, macros), the helper
    functions the kernels call, then the kernel functions."""

    functions: tuple[Function, ...]
    includes: tuple[str, ...] = ("stdint.h", "math.h")
    preamble: str = ""
    helpers: tuple[Function, ...] = ()
    child_fields: ClassVar = ("helpers", "functions")


def rounds_a_call_to(ctype: str, *nodes: Node) -> bool:
    """Whether any of ``nodes`` (functions, blocks) casts a call's result to ``ctype``:
    a float32 math function is computed in double and rounded (``(float)expm1((double)
    x)``), which may differ in the last place from NumPy's own float32 loop, so a kernel
    that calls one (``np.expm1`` of an int16 is a float32) is checked with float32's
    tolerance although none of its arrays is a float32."""
    return any(isinstance(n, Cast) and n.ctype == ctype and isinstance(n.expr, Call)
               for node in nodes for n in node.walk())
