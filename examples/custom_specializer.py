"""A complete small specializer built on asp's core: three-point smoothing rules.

An application writer describes how one point of a 1-D signal is recomputed
from itself and its two neighbours, as an ordinary Python function::

    @three_point
    def smooth(left, mid, right):
        return 0.25 * left + 0.5 * mid + 0.25 * right

    y = smooth(x)            # y[i] = smooth(x[i-1], x[i], x[i+1]); y[0], y[-1] = x[0], x[-1]

The specializer below is everything a specializer writer writes; the core
does parsing, printing, compiling, caching, tuning, guards and fallback:

1. front end   ``translate``: the rule's ``ast`` (from ``asp.frontend``) to a
               small domain IR, rejecting anything else at its ``file:line``;
2. domain pass ``fold_constants``: arithmetic on literals folded;
3. lowering    ``lower``: the domain IR to a platform-IR loop over the array;
4. platform passes (``asp.passes``), one list per variant: serial, static and
               dynamic OpenMP schedules, which the tuner chooses between;
5. back end    ``asp.runtime.JitKernel``: codegen, compile, cache, guarded call.

Run it: ``python examples/custom_specializer.py`` (``ASP_EXAMPLE_QUICK=1``
for a small, fast run).  See docs/writing_a_specializer.rst.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import os
import time
import warnings
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from asp.codegen import abi_params
from asp.errors import AspFallbackWarning
from asp.frontend import KernelSource, get_source, global_reads, namespace, reject
from asp.ir import platform as ir
from asp.ir.node import Node, Transformer
from asp.ir.types import ctype_of
from asp.passes import parallelize_outer, run_pipeline, serial_below, vectorize_inner
from asp.runtime import ArgSpec, JitKernel, Plan, Prepared, Specializer, Variant

# -- 1. the domain IR -------------------------------------------------------------------------
# Arithmetic reuses the platform IR's expression nodes; the one domain idea is a
# *tap*: the value of the input at an offset from the point being computed.


@dataclass(frozen=True)
class Tap(ir.Expr):
    """``x[i + offset]`` for offset -1 (left), 0 (mid) or +1 (right)."""

    offset: int


@dataclass(frozen=True)
class ThreePointRule(Node):
    """A whole rule: the expression computing one output point, in C type ``ctype``."""

    name: str
    ctype: str
    expr: ir.Expr
    child_fields: ClassVar = ("expr",)


# -- 2. the front end ---------------------------------------------------------------------------
_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


def translate(src: KernelSource, fn, ctype: str) -> ThreePointRule:
    """The rule's source to domain IR; anything unsupported raises a FrontendError."""
    params = [a.arg for a in src.func.args.args]
    taps = dict(zip(params, (-1, 0, 1), strict=True))
    body = [s for s in src.func.body
            if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]  # docstring
    if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
        reject(src, body[0] if body else src.func,
               "a three-point rule must be a single 'return <expression>'")

    names = namespace(fn)  # what a free name means: closure, module, builtins

    def expr(node: ast.expr) -> ir.Expr:
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return ir.BinOp(_OPS[type(node.op)], expr(node.left), expr(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = expr(node.operand)
            return ir.UnaryOp("-", inner) if isinstance(node.op, ast.USub) else inner
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return ir.Const(float(node.value), ctype)
        if isinstance(node, ast.Name) and node.id in taps:
            return Tap(taps[node.id])
        if isinstance(node, ast.Name) and type(names.get(node.id)) in (int, float):
            return ir.Const(float(names[node.id]), ctype)  # a module constant, baked in
        reject(src, node, f"'{ast.unparse(node)}' is not supported in a three-point rule "
                          "(use + - * /, numbers and the three arguments)")

    return ThreePointRule(fn.__name__, ctype, expr(body[0].value))


# -- 3. a domain pass ----------------------------------------------------------------------------
def fold_constants(rule: ThreePointRule) -> ThreePointRule:
    """Fold arithmetic on literals.  Before: ``(1.0 / 3.0) * left``  After: ``0.333... * left``."""
    ops = {"+": float.__add__, "-": float.__sub__, "*": float.__mul__, "/": float.__truediv__}

    class Fold(Transformer):
        def visit_BinOp(self, node: ir.BinOp):
            node = self.generic_visit(node)
            a, b = node.left, node.right
            if isinstance(a, ir.Const) and isinstance(b, ir.Const) and not (
                    node.op == "/" and b.value == 0.0):
                return ir.Const(ops[node.op](float(a.value), float(b.value)), a.ctype)
            return node

    return dataclasses.replace(rule, expr=Fold().visit(rule.expr))


# -- 4. lowering to the platform IR ---------------------------------------------------------------
def lower(rule: ThreePointRule, specs: tuple[ArgSpec, ...]) -> ir.Function:
    """The kernel: copy the two end points, then one loop over the interior.

    Parameters come in ABI order (``x, x_n0, out, out_n0``) from
    :func:`asp.codegen.abi_params`; the entry point the core generates maps
    the uniform call ABI onto them.
    """
    i, n = ir.Var("i"), ir.Var("n")

    class TapsToRefs(Transformer):
        def visit_Tap(self, node: Tap):
            index = i if node.offset == 0 else ir.BinOp("+", i, ir.Const(node.offset, "int64_t"))
            return ir.ArrayRef("x", index)

    last = ir.BinOp("-", n, ir.Const(1, "int64_t"))
    zero = ir.Const(0, "int64_t")
    ends = ir.If(ir.BinOp(">", n, zero), ir.Block((
        ir.Assign(ir.ArrayRef("out", zero), ir.ArrayRef("x", zero)),
        ir.Assign(ir.ArrayRef("out", last), ir.ArrayRef("x", last)),
    )))
    loop = ir.For("i", ir.Const(1, "int64_t"), last,
                  ir.Block((ir.Assign(ir.ArrayRef("out", i), TapsToRefs().visit(rule.expr)),)))
    body = ir.Block((ir.Declare("int64_t", "n", ir.Var("x_n0"), const=True), ends, loop,
                     ir.Return(ir.Const(0, "int32_t"))))
    return ir.Function(f"smooth_{rule.name}", abi_params(["x", "out"], specs), body, ret="int")


# -- 5. variants: one list of platform passes each ----------------------------------------------
# Threads only pay off with enough points; below that every variant runs serially.
_ENOUGH = ir.BinOp(">", ir.Var("n"), ir.Const(32768, "int64_t"))
VARIANTS = {
    "serial": [vectorize_inner],
    "static": [functools.partial(parallelize_outer, schedule="static"), vectorize_inner,
               functools.partial(serial_below, when=_ENOUGH)],
    "dynamic": [functools.partial(parallelize_outer, schedule="dynamic", chunk=4096),
                vectorize_inner, functools.partial(serial_below, when=_ENOUGH)],
}


# -- the Specializer: validation, planning, and the Python reference ------------------------------
class ThreePointSpecializer(Specializer):
    def __init__(self, fn):
        code = fn.__code__
        if code.co_argcount != 3:
            raise TypeError(f"@three_point: {fn.__name__} must take exactly three arguments "
                            "(left, mid, right)")
        self.fn = fn
        self.name = f"three_point:{fn.__qualname__} ({code.co_filename}:{code.co_firstlineno})"
        self._src: KernelSource | None = None
        try:  # the digest keys the on-disk record a warm process starts from
            self.digest = get_source(fn).digest
        except Exception:  # no source: no record; plan() will fail and fall back
            self.digest = ""

    def location(self) -> str:
        return f"{self.fn.__code__.co_filename}:{self.fn.__code__.co_firstlineno}"

    def global_reads(self):
        """The module constants the rule reads are baked in: the runtime guards them, and
        specializes again when one is rebound (``THIRD = 0.3`` takes effect at once)."""
        return global_reads(self.fn)

    def prepare(self, args: tuple) -> Prepared:
        """Check the arguments, naming the bad one; the signature is the dtype."""
        x, out = args
        name = self.fn.__name__
        if not isinstance(x, np.ndarray):
            raise TypeError(f"{name}() argument 'x' must be a numpy array, not {type(x).__name__}")
        if x.ndim != 1 or x.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name}() argument 'x' must be a 1-D float32 or float64 array, "
                            f"got {x.ndim}-D {x.dtype}")
        same = x.flags.c_contiguous and x.flags.aligned
        if not same:
            x = np.ascontiguousarray(x)
        finish = None
        if out is not None:
            if not isinstance(out, np.ndarray) or out.shape != x.shape or out.dtype != x.dtype:
                raise ValueError(f"{name}() argument 'out' must be a {x.dtype} array of "
                                 f"shape {x.shape}")
            if not out.flags.writeable:
                raise ValueError(f"{name}() argument 'out' is read-only")
            if np.may_share_memory(out, x) or not out.flags.c_contiguous:
                user_out, out, same = out, np.empty_like(x), False

                def finish(result, user_out=user_out):
                    user_out[...] = result
                    return user_out
        return Prepared(args=(x, out), signature=f"({x.dtype.str})", finish=finish, same=same)

    def plan(self, prepared: Prepared) -> Plan:
        """Front end, domain pass, lowering and platform passes for one dtype."""
        x, _ = prepared.args
        self._src = self._src or get_source(self.fn)
        ctype = ctype_of(x.dtype)
        rule = translate(self._src, self.fn, ctype)
        rule = run_pipeline(rule, [fold_constants], title=f"{self.fn.__name__}: domain passes")
        specs = (ArgSpec("array", x.dtype, 1, group=0),
                 ArgSpec("array", x.dtype, 1, write=True, alloc=True, noalias=True, group=0))
        kernel = lower(rule, specs)
        variants = tuple(
            Variant(v, run_pipeline(dataclasses.replace(kernel, name=f"{kernel.name}_{v}"),
                                    passes, title=f"{self.fn.__name__} {v}"))
            for v, passes in VARIANTS.items())

        def check_args():  # every variant is compared with run_python on these
            return (np.random.default_rng(7).uniform(-1, 1, 37).astype(x.dtype), None)

        f32 = x.dtype == np.float32
        return Plan(signature=prepared.signature, specs=specs, variants=variants, ret=1,
                    check_args=check_args, rtol=1e-5 if f32 else 1e-12,
                    atol=1e-6 if f32 else 1e-14)

    def run_python(self, args: tuple):
        """The reference: the rule as written, one point at a time."""
        x, out = args
        if out is None:
            out = np.empty_like(x)
        if len(x):
            out[0], out[-1] = x[0], x[-1]
        for k in range(1, len(x) - 1):
            out[k] = self.fn(x[k - 1], x[k], x[k + 1])
        return out


class ThreePoint:
    """What ``@three_point`` returns: call it on a 1-D array."""

    def __init__(self, fn):
        functools.update_wrapper(self, fn)
        self.jit = JitKernel(ThreePointSpecializer(fn))

    def __call__(self, x, out=None):
        return self.jit(x, out)


def three_point(fn) -> ThreePoint:
    """Decorator: a three-point smoothing rule over 1-D numpy arrays."""
    return ThreePoint(fn)


# -- the application ---------------------------------------------------------------------------
@three_point
def smooth(left, mid, right):
    return 0.25 * left + 0.5 * mid + 0.25 * right


THIRD = 1.0 / 3.0


@three_point
def box(left, mid, right):
    return THIRD * (left + mid + right)


@three_point
def clipped(left, mid, right):
    return min(left, mid, right)  # a call: not in the rule language, so it runs as Python


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    quick = os.environ.get("ASP_EXAMPLE_QUICK") == "1"
    n = 200_000 if quick else 10_000_000
    rng = np.random.default_rng(0)
    t = np.linspace(0, 8 * np.pi, n)
    x = np.sin(t) + 0.3 * rng.standard_normal(n)

    t0 = time.perf_counter()
    y = smooth(x)
    first = time.perf_counter() - t0
    expected = np.concatenate(([x[0]], 0.25 * x[:-2] + 0.5 * x[1:-1] + 0.25 * x[2:], [x[-1]]))
    assert np.allclose(y, expected, rtol=1e-12, atol=1e-14)
    print(f"smooth(x) over {n:,} float64 points: first call {first * 1e3:.1f} ms "
          "(front end, passes, compile or disk cache, load)")
    print(f"  noise std before {np.std(x - np.sin(t)):.3f}, after {np.std(y - np.sin(t)):.3f}")

    out = np.empty_like(x)
    for _ in range(12):  # online tuning: each call times the next untried variant
        smooth(x, out)
    print(f"  variants {list(VARIANTS)}; the tuner chose {smooth.jit.chosen_variant(x, out)!r}")

    repeat = 5 if quick else 10
    t_asp = _best(lambda: smooth(x, out), repeat)
    t_np = _best(lambda: 0.25 * x[:-2] + 0.5 * x[1:-1] + 0.25 * x[2:], repeat)
    assert np.allclose(out, expected, rtol=1e-12, atol=1e-14)
    print(f"  asp {t_asp * 1e3:.2f} ms, NumPy slicing {t_np * 1e3:.2f} ms "
          f"({t_np / t_asp:.1f}x)")

    x32 = x[:1000].astype(np.float32)
    b = box(x32)
    err = np.max(np.abs(b[1:-1] - (x32[:-2] + x32[1:-1] + x32[2:]) / 3))
    print(f"box(x) on float32: dtype {b.dtype} (a second signature, compiled for float); "
          f"max difference from NumPy {err:.1e}")

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AspFallbackWarning)
        c = clipped(x[:1000])
    msg = next(str(w.message) for w in caught if issubclass(w.category, AspFallbackWarning))
    print(f"clipped(x) is not a supported rule, so it ran as Python:\n  {msg}")
    assert np.array_equal(c[1:-1], np.minimum(np.minimum(x[:998], x[1:999]), x[2:1000]))


if __name__ == "__main__":
    main()
