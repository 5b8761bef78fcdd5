"""Random kernels for the differential fuzzer: typed expression trees, bodies, batches.

A kernel is a :class:`Body`: a few local variables, an optional ``if``/``else``
statement assigning one more, and a result expression (for a stencil also an
accumulation over the neighbours); one in four calls a function of the user's (a
*helper*: a module-level ``def`` with a body of its own, which the specializers compile
with the kernel; for an elementwise kernel, one in three of those is an ``@elementwise``
kernel itself), whose value the result adds.  Trees are generated *by kind* (``'b'`` bool,
``'i'`` integer, ``'f'`` float), so an ``&`` gets integer operands and a
``math.sqrt`` a number: only what the front ends claim to accept, so that
few kernels fall back.  Everything is drawn from hypothesis strategies, so a
failing batch shrinks (the pytest run), and the same strategies drive the long
``python -m tests.fuzz`` campaign.

A :class:`Batch` is many kernels over one set of argument dtypes and one set of
inputs; :mod:`tests.fuzz.render` writes it as one kernel with a branch per
generated kernel, so many kernels share one compilation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

__all__ = ["Batch", "Body", "E", "batches", "edge_values", "kind_of"]

#: The specializers fuzzed: a reduction batch is an elementwise batch whose kernels
#: are reduced (option ``op``), so it shares the elementwise generator and typing.
EW, ST, RD = "elementwise", "stencil", "reduction"
REDUCE_OPS = ("+", "+", "*", "max", "min")

INT_DTYPES = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
FLOAT_DTYPES = ("float32", "float64")


@dataclass(frozen=True)
class E:
    """An expression: ``op`` is 'leaf', 'bin', 'un', 'call', 'cmp', 'ifexp' or 'boolop';
    ``text`` the leaf's source, the operator(s) or the function; ``kind`` 'b', 'i' or 'f'."""

    op: str
    text: str
    args: tuple[E, ...] = ()
    kind: str = "f"

    def src(self, prefix: str = "") -> str:
        a = [x.src(prefix) for x in self.args]
        if self.op == "leaf":
            return self.text.replace("$", prefix)
        if self.op == "bin":
            return f"({a[0]} {self.text} {a[1]})"
        if self.op == "un":
            return f"(not {a[0]})" if self.text == "not" else f"({self.text}{a[0]})"
        if self.op == "call":
            return f"{self.text.replace('$', prefix)}({', '.join(a)})"
        if self.op == "cmp":
            out = a[0]
            for op, b in zip(self.text.split(), a[1:]):
                out += f" {op} {b}"
            return f"({out})"
        if self.op == "ifexp":
            return f"({a[1]} if {a[0]} else {a[2]})"
        if self.op == "boolop":
            return f"({f' {self.text} '.join(a)})"
        raise ValueError(self.op)

    def size(self) -> int:
        return 1 + sum(x.size() for x in self.args)


@dataclass(frozen=True)
class Body:
    """One generated kernel: ``lets`` (local name, value; a name may come again: assigned
    again), an optional ``if`` statement
    ``(test, then, else)`` assigning the local ``$r``, the ``result``; for a stencil also
    ``acc`` ('=' or '+=': how the result reaches ``out[x]``) and ``nbr``, a value added
    to ``out[x]`` for each neighbour ``y`` (None: no neighbour loop)."""

    lets: tuple[tuple[str, E], ...]
    branch: tuple[E, E, E] | None
    result: E
    acc: str = "="
    nbr: E | None = None
    #: An elementwise kernel's loop, after the locals: ``(count, init, update, test,
    #: exit)``: ``$c = init``, then ``count`` times ``$c = update`` (which may read ``$c``
    #: and the counter ``$i``), leaving the loop (``exit`` 'break') after an update that
    #: makes ``test`` true, or skipping the update (``exit`` 'continue') when ``test`` is
    #: true before it (no test: no exit).  It makes the kernel's lockstep variants
    #: (``lanes``, ``vlanes``) run, which loop-free kernels never get.
    loop: tuple | None = None
    #: Functions of the user's own the kernel calls (``$h<j>(...)``, assigned to a local
    #: the result adds): ``(name, parameter kinds, body)``, each body a function's
    #: (``return result``), its parameters ``p0, p1, ...``.
    helpers: tuple[tuple[str, str, Body], ...] = ()

    def helper_lines(self, prefix: str) -> list[str]:
        """The module-level ``def`` of each helper (named with ``prefix``), unindented."""
        out = []
        for name, kinds, body in self.helpers:
            fname = name.replace("$", prefix)
            params = ", ".join(f"p{j}" for j in range(len(kinds)))
            out += ["@elementwise"] if name.startswith("$e") else []
            out += [f"def {fname}({params}):",
                    *("    " + ln for ln in body.lines(f"{fname}_", stencil=False)), ""]
        return out

    def lines(self, prefix: str, *, stencil: bool) -> list[str]:
        """The statements of the kernel, unindented (locals renamed with ``prefix``)."""
        out = [f"{prefix}{name[1:]} = {e.src(prefix)}" for name, e in self.lets]
        if self.loop is not None:
            count, init, update, test, exit_ = self.loop
            step = [f"    {prefix}c = {update.src(prefix)}"]
            if test is not None:
                leave = [f"    if {test.src(prefix)}:", f"        {exit_}"]
                step = step + leave if exit_ == "break" else leave + step
            out += [f"{prefix}c = {init.src(prefix)}", f"for {prefix}i in range({count}):",
                    *step]
        if self.branch is not None:
            test, then, orelse = self.branch
            out += [f"if {test.src(prefix)}:", f"    {prefix}r = {then.src(prefix)}",
                    "else:", f"    {prefix}r = {orelse.src(prefix)}"]
        if not stencil:
            return [*out, f"return {self.result.src(prefix)}"]
        out.append(f"out[x] {self.acc} {self.result.src(prefix)}")
        if self.nbr is not None:
            out += ["for y in a.neighbors(x, 1):", f"    out[x] += {self.nbr.src(prefix)}"]
        return out

    def size(self) -> int:
        parts = [e for _, e in self.lets] + list(self.branch or ()) + [self.result]
        parts += [e for e in (self.loop or ())[1:4] if e is not None]
        return (sum(e.size() for e in parts) + (self.nbr.size() if self.nbr else 0)
                + sum(b.size() for _, _, b in self.helpers))


@dataclass(frozen=True)
class Batch:
    """Kernels sharing argument dtypes and inputs.  ``params`` are (name, dtype or
    'int'/'float' for a Python scalar); ``inputs`` the argument values (arrays of one
    shape, scalars); ``options`` the stencil's boundary mode and output dtype."""

    specializer: str
    params: tuple[tuple[str, str], ...]
    bodies: tuple[Body, ...]
    inputs: tuple = field(compare=False)
    options: tuple[tuple[str, str], ...] = ()

    def option(self, name: str, default: str = "") -> str:
        return dict(self.options).get(name, default)


def kind_of(dtype: str) -> str:
    dtype = dtype.removeprefix("np.")  # a NumPy scalar's: its dtype's kind
    if dtype in ("bool", "pybool"):  # pybool: a Python bool argument
        return "b"
    if dtype in INT_DTYPES or dtype == "int":
        return "i"
    return "f"


# -- edge values ---------------------------------------------------------------------------------

def edge_values(dtype: str) -> list:
    """The values most likely to expose a difference: 0, +-1, the limits, NaN, +-inf, -0.0,
    the smallest subnormal and normal, the largest finite, and a few plain ones."""
    if dtype == "bool":
        return [False, True]
    if dtype in INT_DTYPES:
        info = np.iinfo(dtype)
        vals = [0, 1, 2, 3, 7, 100, info.max, info.max - 1]
        if info.min < 0:
            vals += [-1, -2, -7, info.min, info.min + 1]
        return vals
    info = np.finfo(dtype)
    return [0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0, -2.5, 0.1, 10.0, math.nan, math.inf,
            -math.inf, float(info.tiny), float(info.smallest_subnormal), float(info.max),
            -float(info.max), float(info.eps), 1e10 if dtype == "float64" else 1e6]


def _values(dtype: str, *, specials: bool) -> st.SearchStrategy:
    """One element of ``dtype``: an edge value or a random one (no NaN/inf/limits
    unless ``specials``: a stencil's Python stops at the first error on the grid)."""
    if dtype == "bool":
        return st.booleans()
    if dtype in INT_DTYPES:
        info = np.iinfo(dtype)
        edge = edge_values(dtype) if specials else [v for v in edge_values(dtype)
                                                     if abs(v) < 2**15]
        return st.one_of(st.sampled_from(edge), st.integers(int(info.min), int(info.max)),
                         st.integers(-20, 20).filter(lambda v: v >= info.min))
    width = 32 if dtype == "float32" else 64
    if specials:
        return st.one_of(st.sampled_from(edge_values(dtype)),
                         st.floats(width=width, allow_nan=True, allow_infinity=True),
                         st.floats(-100, 100, width=width))
    return st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0, 3.0, -2.5, 0.1]),
                     st.floats(-1e3, 1e3, width=width))


# -- expressions -----------------------------------------------------------------------------------

_INT_CONSTS = ("0", "1", "2", "3", "5", "7", "13", "100")
_BIG_INT_CONSTS = ("127", "255", "2147483647", "9223372036854775807", "4294967296")
_FLOAT_CONSTS = ("0.0", "0.5", "1.0", "2.0", "3.0", "1.5", "0.1", "1e-300", "1e300", "1e10",
                 "-0.0")
_EW_FLOAT_NAMES = ("math.pi", "math.inf", "math.nan", "np.pi")
_EW_UNARY = ("math.sqrt", "math.exp", "math.log", "math.log10", "math.log2", "math.log1p",
             "math.expm1", "math.sin", "math.cos", "math.tan", "math.asin", "math.acos",
             "math.atan", "math.sinh", "math.cosh", "math.tanh", "math.asinh", "math.acosh",
             "math.atanh", "math.fabs", "math.erf", "math.erfc", "math.exp2", "math.cbrt",
             "math.gamma", "math.lgamma",
             "np.sqrt", "np.exp", "np.log", "np.log10", "np.log2", "np.log1p", "np.expm1",
             "np.sin", "np.cos", "np.tan", "np.arcsin", "np.arccos", "np.arctan", "np.sinh",
             "np.cosh", "np.tanh", "np.fabs", "np.cbrt", "np.exp2", "np.floor", "np.ceil",
             "np.trunc", "np.arcsinh", "np.arccosh", "np.arctanh", "np.deg2rad", "np.radians",
             "np.rad2deg", "np.degrees", "np.square", "np.sign")
_EW_BINARY = ("math.atan2", "math.hypot", "math.copysign", "math.fmod", "math.pow", "math.log",
              "np.arctan2", "np.hypot", "np.power", "np.copysign", "np.fmod")
_ST_UNARY = ("math.sqrt", "math.exp", "math.log", "math.sin", "math.cos", "math.tan",
             "math.fabs", "math.atan", "math.tanh", "math.log10", "math.cbrt", "np.square",
             "np.sign", "np.deg2rad")
_ST_BINARY = ("math.pow", "math.atan2", "math.hypot")
_CMP = ("<", "<=", ">", ">=", "==", "!=")


@dataclass(frozen=True)
class Ctx:
    """What a tree may use: the specializer, leaves by kind (names and element reads)."""

    spec: str
    leaves: tuple[tuple[str, str], ...]   # (source, kind)
    avoid: frozenset[str] = frozenset()   # operators and functions not to generate

    def of(self, kind: str) -> list[str]:
        return [s for s, k in self.leaves if k == kind]

    def with_leaf(self, src: str, kind: str) -> Ctx:
        return Ctx(self.spec, (*self.leaves, (src, kind)), self.avoid)


def _leaf(draw, ctx: Ctx, kind: str) -> E:
    names = ctx.of(kind)
    if kind == "b":
        if names and draw(st.booleans()):
            return E("leaf", draw(st.sampled_from(names)), kind="b")
        return E("leaf", draw(st.sampled_from(["True", "False"])), kind="b")
    if names and draw(st.integers(0, 3)):
        return E("leaf", draw(st.sampled_from(names)), kind=kind)
    if kind == "i":
        big = draw(st.integers(0, 9)) == 0 and "wideint" not in ctx.avoid
        pool = _INT_CONSTS + (_BIG_INT_CONSTS if big else ())
        return E("leaf", draw(st.sampled_from(pool)), kind="i")
    pool = _FLOAT_CONSTS + (_EW_FLOAT_NAMES if ctx.spec == EW else ("math.pi", "math.e"))
    return E("leaf", draw(st.sampled_from(pool)), kind="f")


@st.composite
def exprs(draw, ctx: Ctx, kind: str, depth: int) -> E:
    """An expression of ``kind`` at most ``depth`` operators deep."""
    if depth <= 0 or draw(st.integers(0, 4)) == 0:
        return _leaf(draw, ctx, kind)
    e = draw(_node(ctx, kind, depth))
    return _leaf(draw, ctx, kind) if e.text in ctx.avoid else e


@st.composite
def _node(draw, ctx: Ctx, kind: str, depth: int) -> E:
    sub = lambda k: draw(exprs(ctx, k, depth - 1))  # noqa: E731 - a local shorthand
    num = lambda: sub(draw(st.sampled_from("iff" if ctx.spec == ST else "iffb")))  # noqa: E731
    ew = ctx.spec == EW
    if kind == "b":
        choice = draw(st.sampled_from(
            ["cmp", "cmp", "cmp", "chain", "not", "boolop", "ifexp"]
            + (["bool", "isnan"] if ew else [])))
        if choice in ("cmp", "chain"):
            n = 2 if choice == "cmp" else draw(st.integers(3, 4))
            items = tuple(num() for _ in range(n))
            ops = " ".join(draw(st.sampled_from(_CMP)) for _ in range(n - 1))
            return E("cmp", ops, items, "b")
        if choice == "not":
            return E("un", "not", (sub(draw(st.sampled_from("bif"))),), "b")
        if choice == "boolop":
            n = draw(st.integers(2, 3))
            return E("boolop", draw(st.sampled_from(["and", "or"])),
                     tuple(sub("b") for _ in range(n)), "b")
        if choice == "ifexp":
            return E("ifexp", "", (sub("b"), sub("b"), sub("b")), "b")
        if choice == "bool":
            return E("call", "bool", (num(),), "b")
        fn = draw(st.sampled_from(["math.isnan", "math.isinf", "math.isfinite", "np.isnan"]))
        return E("call", fn, (sub("f"),), "b")
    if kind == "i":
        ops = ["+", "-", "*", "//", "%", "**"] + (["&", "|", "^", "<<", ">>"] * 2 if ew else [])
        choice = draw(st.sampled_from(["bin"] * 6 + ["un", "abs", "minmax", "int", "floor",
                                                     "ifexp"]))
        if choice == "bin":
            op = draw(st.sampled_from(ops))
            left = sub("b" if ew and draw(st.integers(0, 9)) == 0 else "i")
            if op == "**":
                exp = draw(st.integers(0, 4 if ew else 3))
                return E("bin", "**", (left, E("leaf", str(exp), kind="i")), "i")
            # Now and then bools on both sides (NumPy's + and * of bools are 'or' and
            # 'and'; of Python bools, ints): a bool argument typed as an int went unseen.
            right = sub("b" if left.kind == "b" and draw(st.booleans()) else "i")
            return E("bin", op, (left, right), "i")
        if choice == "un":
            op = draw(st.sampled_from(["-", "+", "~"] if ew else ["-", "+"]))
            return E("un", op, (sub("b" if ew and draw(st.integers(0, 9)) == 0 else "i"),), "i")
        if choice == "abs":
            fn = draw(st.sampled_from(["abs", "abs", "np.square", "np.sign"] if ew else ["abs"]))
            return E("call", fn, (sub("i"),), "i")
        if choice == "minmax":
            fn = draw(st.sampled_from(["min", "max", "np.maximum", "np.minimum"]
                                      + (["np.clip"] if ew else [])))
            n = 3 if fn == "np.clip" else 2 if fn.startswith("np.") else draw(st.integers(2, 3))
            return E("call", fn, tuple(sub("i") for _ in range(n)), "i")
        if choice == "int":
            return E("call", "int", (sub(draw(st.sampled_from("fib" if ew else "fi"))),), "i")
        if choice == "floor":
            fn = draw(st.sampled_from(["math.floor", "math.ceil", "math.trunc"]))
            return E("call", fn, (sub("f"),), "i")
        if ew and draw(st.booleans()):  # both evaluated, the promoted type: not a ?:
            return E("call", "np.where", (sub("bi"[draw(st.integers(0, 1))]), sub("i"),
                                          sub("i")), "i")
        return E("ifexp", "", (sub("b"), sub("i"), sub("i")), "i")
    # kind == "f"
    choice = draw(st.sampled_from(["bin"] * 5 + ["div", "un", "abs", "minmax", "float", "unary",
                                                 "unary", "binary", "ifexp", "pow"]))
    if choice == "bin":
        op = draw(st.sampled_from(["+", "-", "*", "/", "//", "%"]))
        return E("bin", op, (sub("f"), sub(draw(st.sampled_from("fi")))), "f")
    if choice == "div":
        return E("bin", "/", (sub("i"), sub("i")), "f")
    if choice == "pow":
        if draw(st.booleans()) or "fpow" in ctx.avoid:
            return E("bin", "**", (sub("f"), E("leaf", str(draw(st.integers(0, 3))), kind="i")),
                     "f")
        return E("bin", "**", (sub("f"), sub("f")), "f")
    if choice == "un":
        return E("un", draw(st.sampled_from(["-", "+"])), (sub("f"),), "f")
    if choice == "abs":
        return E("call", "abs", (sub("f"),), "f")
    if choice == "minmax":
        fn = draw(st.sampled_from(["min", "max", "np.maximum", "np.minimum", "np.clip"]))
        n = 3 if fn == "np.clip" else 2 if fn.startswith("np.") else draw(st.integers(2, 3))
        return E("call", fn, tuple(sub(draw(st.sampled_from("ffi")) if k else "f")
                                   for k in range(n)), "f")
    if choice == "float":
        return E("call", "float", (sub(draw(st.sampled_from("ib" if ew else "i"))),), "f")
    if choice == "unary":
        fn = draw(st.sampled_from(_EW_UNARY if ew else _ST_UNARY))
        return E("call", fn, (sub(draw(st.sampled_from("ff" if not ew else "ffi"))),), "f")
    if choice == "binary":
        fn = draw(st.sampled_from(_EW_BINARY if ew else _ST_BINARY))
        if fn.endswith("copysign"):
            # The sign of a NaN that arithmetic makes is not reproduced (IEEE 754 leaves
            # it open; gcc folds copysign(c, x / x) to |c|, where x86 divides 0/0 to a
            # negative NaN: docs/specializers/elementwise.rst), and copysign reads it:
            # its sign comes from a value that was not computed.
            return E("call", fn, (sub("f"), _leaf(draw, ctx, draw(st.sampled_from("fi")))),
                     "f")
        return E("call", fn, (sub("f"), sub(draw(st.sampled_from("fi")))), "f")
    if ew and draw(st.booleans()):
        return E("call", "np.where", (sub(draw(st.sampled_from("bf"))), sub("f"),
                                      sub(draw(st.sampled_from("fi")))), "f")
    return E("ifexp", "", (sub("b"), sub("f"), sub("f")), "f")


@st.composite
def bodies(draw, ctx: Ctx, depth: int, out_kind: str = "f", helper: str = "") -> Body:
    """One kernel over the leaves of ``ctx``.  A stencil writing an integer grid
    (``out_kind`` 'i') gets integer values only: a float out of the integer's range
    converts to an unspecified value, in NumPy as in C.  ``helper``: the body of a
    function of the user's a kernel calls, returning a value of one of these kinds
    (it calls none itself)."""
    lets = []
    # 'boollocal' in avoid: no boolean locals (a stencil's did not compile: F3).
    local_kinds = "if" if "boollocal" in ctx.avoid else "bif"
    for i in range(draw(st.integers(0, 2))):
        kind = draw(st.sampled_from(local_kinds))
        lets.append((f"$t{i}", draw(exprs(ctx, kind, depth))))
        ctx = ctx.with_leaf(f"$t{i}", kind)
    if lets and draw(st.integers(0, 2)) == 0:
        # A local assigned again, from a value of its kind that may read it: its type
        # changes along straight-line code (a Python float, then a float64).
        name, _ = lets[draw(st.integers(0, len(lets) - 1))]
        kind = dict(ctx.leaves)[name]
        lets.append((name, draw(exprs(ctx, kind, depth))))
    helpers, call = (), None
    if not helper and "helper" not in ctx.avoid and draw(st.integers(0, 3)) == 0:
        # A function of the user's: its parameters of the kinds its arguments have
        # (a Python int or float literal among them, weak, as often as not), its value
        # added to the result (an integer grid's stencil: an integer helper).
        kinds = "".join(draw(st.sampled_from("if" if ctx.spec == ST else "bif"))
                        for _ in range(draw(st.integers(1, 2))))
        hctx = Ctx(ctx.spec, tuple((f"p{j}", k) for j, k in enumerate(kinds)), ctx.avoid)
        hbody = draw(bodies(hctx, depth - 1, helper="i" if out_kind == "i" else "if"))
        args = tuple(draw(exprs(ctx, k, depth - 2)) for k in kinds)
        # One in three of an elementwise kernel's is itself an ``@elementwise`` kernel
        # (``$e0``): a kernel built of kernels, whose call's value is a NumPy scalar.
        name = "$e0" if ctx.spec == EW and draw(st.integers(0, 2)) == 0 else "$h0"
        helpers = ((name, kinds, hbody),)
        call = (f"$t{len(lets)}", hbody.result.kind)
        lets.append((call[0], E("call", name, args, kind=call[1])))
        ctx = ctx.with_leaf(*call)
    loop = None
    if ctx.spec == EW and "loop" not in ctx.avoid and draw(st.integers(0, 2)) == 0:
        kind = draw(st.sampled_from("if"))
        init = draw(exprs(ctx, kind, depth - 1))
        inner = ctx.with_leaf("$c", kind).with_leaf("$i", "i")
        test = draw(exprs(inner, "b", depth - 1)) if draw(st.integers(0, 3)) else None
        loop = (draw(st.integers(0, 6)), init, draw(exprs(inner, kind, depth - 1)), test,
                draw(st.sampled_from(["break", "continue"])))
        ctx = ctx.with_leaf("$c", kind)  # (not the counter: unset after range(0))
    branch = None
    if draw(st.integers(0, 2)) == 0:
        kind = draw(st.sampled_from(local_kinds))
        branch = (draw(exprs(ctx, "b", depth - 1)), draw(exprs(ctx, kind, depth - 1)),
                  draw(exprs(ctx, kind, depth - 1)))
        ctx = ctx.with_leaf("$r", kind)
    kinds = helper or ("bifff" if ctx.spec == EW else "iff")
    result = draw(exprs(ctx, draw(st.sampled_from(kinds)), depth))
    if ctx.spec == EW or helper:
        return Body(tuple(lets), branch, _plus(result, call), loop=loop, helpers=helpers)
    if out_kind == "i":
        result = draw(exprs(ctx, "i", depth))
    result = _plus(result, call)
    acc = draw(st.sampled_from(["=", "=", "+="]))
    nbr = None
    if draw(st.integers(0, 2)) == 0:
        nctx = ctx.with_leaf("a[y]", dict(ctx.leaves)["a[x]"])
        nbr = draw(exprs(nctx, draw(st.sampled_from("i" if out_kind == "i" else "if")),
                         depth - 1))
    return Body(tuple(lets), branch, result, acc, nbr, helpers=helpers)


def _plus(result: E, call: tuple[str, str] | None) -> E:
    """``result`` plus the local holding a helper's value (a boolean result: or-ed with
    its truth), so the helper's every value reaches the output."""
    if call is None:
        return result
    leaf = E("leaf", call[0], kind=call[1])
    if result.kind == "b":
        return E("boolop", "or", (E("call", "bool", (leaf,), "b"), result), "b")
    kind = "f" if "f" in (result.kind, call[1]) else "i"
    return E("bin", "+", (result, leaf), kind)


# -- batches ---------------------------------------------------------------------------------------

#: Constructs the generator leaves out by default (``avoid``) while a bug it found is open;
#: each names its regression test in tests/test_fuzz.py.  Remove a token once fixed.
#: Tokens of fixed bugs, for looking past one on an older tree: 'float' (builtin float()
#: in @elementwise), 'boollocal' (a stencil's bool local), 'bigint' (int()/floor beyond
#: int64), 'wideint' (comparisons with ints out of a narrow type's range), 'mixed'
#: (several array dtypes in one kernel: types that depend on the path, asp/frontend/mixed.py).
KNOWN: dict[str, str] = {}
_EXPAND = {"bigint": ("int", "math.floor", "math.ceil", "math.trunc"), "fpow": ("np.power",)}

_EW_DTYPES = ("bool",) + INT_DTYPES + FLOAT_DTYPES * 3
#: NumPy scalar arguments (strong: typed as their dtype), labelled ``np.<dtype>``; no
#: uint64, whose values beyond int64 are refused by design (tests/test_numpy_scalars.py).
_NP_SCALARS = tuple(d for d in INT_DTYPES if d != "uint64") + FLOAT_DTYPES * 2
_ST_DTYPES = INT_DTYPES + FLOAT_DTYPES * 3
_MODES = ("interior", "interior", "nearest", "wrap", "reflect", "mirror", "constant")


@st.composite
def batches(draw, spec: str, size: int, depth: int = 3,
            avoid: frozenset[str] = frozenset()) -> Batch:
    """A batch of ``size`` kernels of specializer ``spec`` and their inputs (no
    operator or function named in ``avoid``: to look past a known bug, see KNOWN)."""
    for token in tuple(avoid):
        avoid = avoid | frozenset(_EXPAND.get(token, ()))
    if spec == RD:
        batch = draw(batches(EW, size, depth, avoid))
        return Batch(RD, batch.params, batch.bodies, batch.inputs,
                     (("op", draw(st.sampled_from(REDUCE_OPS))),
                      ("parallel", draw(st.sampled_from("01")))))
    if spec == EW:
        nparams = draw(st.integers(1, 3))
        params = [(n, draw(st.sampled_from(_EW_DTYPES))) for n in "xyz"[:nparams]]
        if "mixed" in avoid:  # one array dtype (and Python scalars): no value-typed arms
            params = [(n, params[0][1]) for n, _ in params]
        if nparams > 1 and draw(st.integers(0, 2)) == 0:  # a Python or NumPy scalar
            params[-1] = (params[-1][0], draw(st.sampled_from(["int", "float", "np",
                                                               "pybool"])))
            if params[-1][1] == "np":
                params[-1] = (params[-1][0],
                              "np." + draw(st.sampled_from(_NP_SCALARS + ("bool",))))
        n = draw(st.integers(12, 40))
        inputs = []
        for _, dt in params:
            if dt == "int" and "wideint" in avoid:
                inputs.append(draw(st.integers(0, 100)))
            elif dt in ("int", "float"):
                inputs.append(draw(_values("int64" if dt == "int" else "float64",
                                           specials=True).map(int if dt == "int" else float)))
            elif dt == "pybool":
                inputs.append(draw(st.booleans()))
            elif dt.startswith("np."):
                inputs.append(draw(_values(dt[3:], specials=True).map(np.dtype(dt[3:]).type)))
            else:
                inputs.append(np.array(draw(st.lists(_values(dt, specials=True), min_size=n,
                                                     max_size=n)), dtype=dt))
        ctx = Ctx(EW, tuple((name, kind_of(dt)) for name, dt in params), avoid)
        kernels = draw(st.lists(bodies(ctx, depth), min_size=size, max_size=size))
        return Batch(EW, tuple(params), tuple(kernels), tuple(inputs))
    ndim = draw(st.sampled_from([1, 2, 2, 3]))
    shape = {1: (draw(st.integers(5, 24)),), 2: (draw(st.integers(3, 7)), draw(st.integers(3, 7))),
             3: (3, draw(st.integers(3, 4)), draw(st.integers(3, 5)))}[ndim]
    specials = draw(st.integers(0, 3)) == 0
    da, db, do = (draw(st.sampled_from(_ST_DTYPES)) for _ in range(3))
    if "mixed" in avoid:
        db = da
    scalar = draw(st.sampled_from(["int", "float", "np", "pybool"]))
    if scalar == "np":
        scalar = "np." + draw(st.sampled_from(_NP_SCALARS + ("bool",)))
        sval = np.dtype(scalar[3:]).type(draw(_values(scalar[3:], specials=specials)))
    elif scalar == "pybool":
        sval = draw(st.booleans())
    else:
        sval = draw(st.integers(0, 100) if scalar == "int" and "wideint" in avoid else
                    _values("int16" if scalar == "int" else "float64", specials=specials))
    size_ = int(np.prod(shape))
    a = np.array(draw(st.lists(_values(da, specials=specials), min_size=size_, max_size=size_)),
                 dtype=da).reshape(shape)
    b = np.array(draw(st.lists(_values(db, specials=specials), min_size=size_, max_size=size_)),
                 dtype=db).reshape(shape)
    out = np.array(draw(st.lists(_values(do, specials=False), min_size=size_, max_size=size_)),
                   dtype=do).reshape(shape)
    params = (("s", scalar), ("a", da), ("b", db), ("out", do))
    # A coordinate is 0 on the edge: as a divisor it would stop the Python on most grids.
    leaves = (("s", kind_of(scalar)), ("a[x]", kind_of(da)), ("b[x]", kind_of(db)),
              ("(x[0] + 1)", "i"))
    if draw(st.integers(0, 4)) == 0:
        leaves += (("out[x]", kind_of(do)),)
    ctx = Ctx(ST, leaves, avoid)
    kernels = draw(st.lists(bodies(ctx, depth, kind_of(do)), min_size=size, max_size=size))
    mode = draw(st.sampled_from(_MODES))
    return Batch(ST, params, tuple(kernels),
                 (int(sval) if scalar == "int" else float(sval) if scalar == "float" else sval,
                  a, b, out),
                 (("boundary", mode), ("parallel", draw(st.sampled_from("01")))))
