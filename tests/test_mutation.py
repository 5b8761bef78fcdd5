"""Mutation check: the suite catches a broken transformation (``make mutation``).

Each test breaks one platform pass the way a plausible bug would (a monkeypatched
wrapper around the real pass, active only inside the test), builds fresh kernels
with it, and asserts that the suite's own checks flag every mutated variant:

=====================  ==========================================  ===========================
mutant                 what breaks                                 caught by
=====================  ==========================================  ===========================
tile remainder         ``tile_loops`` drops each axis's last,      the core's per-variant check
                       partial tile (a bound off by a tile)        against Python
                                                                   (``_check_variants``) and the
                                                                   stencil tests' helper
parallel branch        ``serial_below``'s parallel copy skips its  the same, *because* the suite
                       first iteration; the serial copy is right   runs the parallel branch
                                                                   (``ASP_PARALLEL_THRESHOLD=0``)
dropped collapse       ``parallelize_outer`` ignores ``collapse``  the per-variant shape check of
                                                                   tests/test_parallel_branches
dropped reduction      ``parallelize_outer`` loses the             the translation validation of
                       ``reduction(+:s)`` clause                   every parallel loop (the same
                                                                   helper)
=====================  ==========================================  ===========================

Why the last two are not left to the comparison with Python: every loop index of
asp's IR is declared in its own ``for``, so it is private whatever the collapse;
dropping ``collapse`` changes speed, never a result.  A missing reduction clause is
a data race whose sum is wrong only when the threads' updates overlap in time;
a test must not depend on that, so the helper re-runs the dependence analysis of
:mod:`asp.passes.loops` on each finished variant instead.

Every mutant first gets a control: the same check on the same kernel without the
mutant passes.  Each test builds in a cache of its own (``fresh_cache``): the
warm-start records are keyed by the generator's *files*, which a monkeypatch does
not change, so a shared cache would hand back the unmutated code.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np
from test_elementwise import _every_variant
from test_parallel_branches import (
    Correlate,
    assert_parallel_branch_runs,
    parallel_guards,
    run_every_stencil_variant,
    scipy_oracle,
)
from test_stencil_kernels import check_every_variant

import asp.passes
from asp import config
from asp.codegen.entry import abi_params, extent_name
from asp.errors import SpecializationError
from asp.ir import platform as ir
from asp.ir.node import Transformer
from asp.runtime import ArgSpec, JitKernel, Plan, Prepared, Specializer, Variant
from specializers.elementwise import elementwise
from specializers.elementwise import lowering as ew_lowering
from specializers.stencil import variants as st_variants

# -- the mutants ----------------------------------------------------------------------------


def skip_tile_remainder(monkeypatch) -> None:
    """Tile loops stop one tile early: ``t < stop`` becomes ``t < stop - (size - 1)``, so
    an axis whose extent is not a multiple of the tile loses its last, partial tile."""
    real = st_variants.tile_loops

    class Early(Transformer):
        def visit_For(self, node: ir.For):
            node = self.generic_visit(node)
            if node.var.endswith("_t"):  # (the step: a tile size, or its parameter)
                stop = ir.BinOp("-", node.stop, ir.BinOp("-", node.step, ir.Const(1, "int64_t")))
                return dataclasses.replace(node, stop=stop)
            return node

    def mutant(fn, **kw):
        out = real(fn, **kw)
        return dataclasses.replace(out, body=Early().visit(out.body))

    monkeypatch.setattr(st_variants, "tile_loops", mutant)


def break_parallel_branch(monkeypatch) -> None:
    """``serial_below`` emits a parallel copy that starts one iteration late (and so does
    the elementwise ``stream`` variant's team, which has an ``if()`` of its own); the
    serial copy, or the serial function a stencil's variants share, which every call
    below the shipped thresholds runs, stays right."""
    real = asp.passes.serial_below

    def late(loop: ir.For) -> ir.For:
        return dataclasses.replace(loop, start=ir.BinOp("+", loop.start,
                                                        ir.Const(1, "int64_t")))

    class EveryLate(Transformer):  # each parallel or shared loop
        def visit_For(self, node: ir.For):
            return late(node) if node.parallel else self.generic_visit(node)

    class Late(Transformer):
        def visit_If(self, node: ir.If):
            body = node.then.body
            if len(body) == 1 and isinstance(body[0], ir.For) and body[0].parallel:
                return dataclasses.replace(node, then=ir.Block((late(body[0]),)))
            other = node.orelse.body if node.orelse is not None else ()
            if len(other) == 1 and isinstance(other[0], ir.Return) \
                    and isinstance(other[0].value, ir.Call):  # a call of a shared serial loop
                return dataclasses.replace(node, then=EveryLate().visit(node.then))
            return self.generic_visit(node)

    class LateTeam(Transformer):  # a region with an ``if()`` of its own: its shared loops
        def visit_Region(self, node: ir.Region):
            if node.when is None:
                return self.generic_visit(node)
            return dataclasses.replace(node, body=ir.Block(tuple(
                late(x) if isinstance(x, ir.For) and x.parallel else x for x in node.body.body)))

    def mutant(fn, **kw):
        out = real(fn, **kw)
        return dataclasses.replace(out, body=Late().visit(out.body))

    real_stream = ew_lowering.stream_function

    def stream_mutant(*args, **kw):  # the elementwise ``stream`` variant's team
        out = real_stream(*args, **kw)
        return out and dataclasses.replace(out, body=LateTeam().visit(out.body))

    monkeypatch.setattr(st_variants, "serial_below", mutant)
    monkeypatch.setattr(ew_lowering, "serial_below", mutant)
    monkeypatch.setattr(ew_lowering, "stream_function", stream_mutant)


def drop_collapse(monkeypatch) -> None:
    """``parallelize_outer`` shares only the outermost loop whatever ``collapse`` says."""
    real = st_variants.parallelize_outer
    monkeypatch.setattr(st_variants, "parallelize_outer",
                        lambda fn, **kw: real(fn, **{**kw, "collapse": 1}))


def drop_reduction(monkeypatch) -> None:
    """``parallelize_outer`` forgets the reduction clauses it found."""
    real = asp.passes.parallelize_outer

    class Forget(Transformer):
        def visit_For(self, node: ir.For):
            node = self.generic_visit(node)
            if node.parallel is not None:
                return dataclasses.replace(node, reductions=())
            return node

    def mutant(fn, **kw):
        out = real(fn, **kw)
        return dataclasses.replace(out, body=Forget().visit(out.body))

    monkeypatch.setattr(asp.passes, "parallelize_outer", mutant)


# -- the checks -----------------------------------------------------------------------------

def core_check_failures(specialization, *args) -> dict[str, str]:
    """What the core's per-variant check against Python excluded, building afresh:
    ``{variant: why}``, or ``{"*": why}`` when it excluded every variant (the kernel then
    falls back to Python)."""
    try:
        return dict(specialization(*args).check_failures)
    except SpecializationError as exc:
        assert "every compiled variant disagrees with the Python reference" in str(exc)
        return {"*": str(exc)}


def stencil_case(rng):
    """A fresh 3-D kernel class (its own compilations) and arguments whose tiled axis
    (38 interior points) is no multiple of the tiles (8, 32)."""
    class Mutated(Correlate):
        pass

    u = rng.uniform(-1, 1, (5, 40, 16))
    return Mutated(boundary="interior"), (u, 1.5, 0.25, np.zeros_like(u))


def another_cache(monkeypatch, fresh_cache) -> None:
    """A new cache after the control: its records would serve the mutant's kernels."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(fresh_cache.parent / "mutant-cache"))


def caught_by_helper(helper, *args, **kw) -> str:
    """Why a test helper fails on these arguments ('' if it passes): an assertion, or the
    check's refusal to build a kernel none of whose variants agrees with Python."""
    try:
        helper(*args, **kw)
    except (AssertionError, SpecializationError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return ""


def test_skipped_tile_remainder_is_caught(monkeypatch, fresh_cache, rng):
    k, args = stencil_case(rng)
    assert core_check_failures(k.specialization, *args) == {}  # the control
    assert not caught_by_helper(check_every_variant, k, args, 1e-12)

    another_cache(monkeypatch, fresh_cache)
    skip_tile_remainder(monkeypatch)
    k, args = stencil_case(rng)
    failed = set(core_check_failures(k.specialization, *args))
    tiles = {v for v in k.specialization(*args).entries if v.startswith("tile")}
    assert tiles and failed == tiles  # every tiled variant the space sampled, none other
    why = caught_by_helper(check_every_variant, k, args, 1e-12)
    assert "tile" in why, why


def quadratic(x):
    return 3 * x * x - x + 1


def test_broken_parallel_branch_is_caught(monkeypatch, fresh_cache, rng):
    """The regression test of ``ASP_PARALLEL_THRESHOLD``: the checks' inputs are far
    below the shipped thresholds, so before the suite set it to 0 only the serial copy
    was ever compared with Python, and this mutant passed every check."""
    assert config.parallel_threshold(st_variants.SERIAL_POINTS) == 0
    x = np.linspace(-2, 2, 50)
    k, args = stencil_case(rng)
    assert core_check_failures(k.specialization, *args) == {}  # the controls
    assert not caught_by_helper(check_every_variant, k, args, 1e-12)
    assert core_check_failures(elementwise(quadratic).jit.specialization, x, None) == {}
    assert not caught_by_helper(_every_variant, elementwise(quadratic), x)

    another_cache(monkeypatch, fresh_cache)
    break_parallel_branch(monkeypatch)
    k, args = stencil_case(rng)
    assert set(core_check_failures(k.specialization, *args)) == {"*"}
    why = caught_by_helper(check_every_variant, k, args, 1e-12)
    assert "disagrees with the Python reference" in why, why
    assert set(core_check_failures(elementwise(quadratic).jit.specialization, x, None)) == {"*"}
    why = caught_by_helper(_every_variant, elementwise(quadratic), x)
    assert "disagrees with the Python reference" in why, why


def test_dropped_collapse_is_caught(monkeypatch, fresh_cache, rng):
    def check(k, args):
        u = args[0]
        return caught_by_helper(run_every_stencil_variant, k, u, 1, args[1:3],
                                scipy_oracle(u, "interior", 1, *args[1:3]), 1e-12)

    assert not check(*stencil_case(rng))  # the control
    another_cache(monkeypatch, fresh_cache)
    drop_collapse(monkeypatch)
    why = check(*stencil_case(rng))
    assert "collapse" in why, why


# -- a reduction: a small specializer on the core, as a specializer writer would write it --

class SumOfSquares(Specializer):
    """``out[0] = sum(x[k] ** 2)``: one parallel loop with a ``+`` reduction."""

    name = "test:sum_of_squares"

    def prepare(self, args: tuple) -> Prepared:
        x, out = args
        return Prepared(args=(np.ascontiguousarray(x, np.float64), out), signature="(f8)",
                        same=False)

    def plan(self, prepared: Prepared) -> Plan:
        specs = (ArgSpec("array", np.float64, 1),
                 ArgSpec("array", np.float64, 1, write=True, noalias=True))
        k, s = ir.Var("k"), ir.Var("s")
        square = ir.BinOp("*", ir.ArrayRef("x", k), ir.ArrayRef("x", k))
        body = ir.Block((
            ir.Declare("double", "s", ir.Const(0.0, "double")),
            ir.For("k", ir.Const(0, "int64_t"), ir.Var(extent_name("x", 0)),
                   ir.Block((ir.Assign(s, square, op="+"),))),
            ir.Assign(ir.ArrayRef("out", ir.Const(0, "int64_t")), s),
            ir.Return(ir.Const(0, "int32_t"))))
        fn = ir.Function("sum_of_squares", abi_params(["x", "out"], specs), body, ret="int")
        when = ir.BinOp(">", ir.Var(extent_name("x", 0)),
                        ir.Const(config.parallel_threshold(4096), "int64_t"))
        variants = []
        for schedule in ("static", "dynamic"):
            passes = [functools.partial(asp.passes.parallelize_outer, schedule=schedule),
                      functools.partial(asp.passes.serial_below, when=when)]
            variants.append(Variant(schedule, asp.passes.run_pipeline(
                dataclasses.replace(fn, name=f"sum_of_squares_{schedule}"), passes,
                title=f"sum of squares {schedule}")))
        return Plan(signature=prepared.signature, specs=specs, variants=tuple(variants),
                    ret=1, check_args=lambda: (np.linspace(-1, 1, 101), np.zeros(1)))

    def run_python(self, args: tuple):
        x, out = args
        total = 0.0
        for v in x:
            total += v * v
        out[0] = total
        return out


X = np.linspace(-1, 1, 1001)


def reduction_variants() -> tuple[Variant, ...]:
    """The planned variants (not run: a mutant's race must not decide the test)."""
    spec = SumOfSquares()
    return spec.plan(spec.prepare((X, np.zeros(1)))).variants


def test_dropped_reduction_clause_is_caught(monkeypatch, fresh_cache):
    # The control: compiled, every variant agrees with Python and with NumPy, and passes.
    jit = JitKernel(SumOfSquares())
    assert jit.specialization(X, np.zeros(1)).check_failures == {}
    for name in ("static", "dynamic"):
        np.testing.assert_allclose(jit.run_variant(name, X, np.zeros(1)), [np.sum(X * X)],
                                   rtol=1e-12)
    variants = reduction_variants()
    assert all(lp.reductions == (("+", "s"),) for v in variants
               for lp, _ in parallel_guards(v.function))
    assert not caught_by_helper(assert_parallel_branch_runs, variants, X.size)

    another_cache(monkeypatch, fresh_cache)
    drop_reduction(monkeypatch)
    why = caught_by_helper(assert_parallel_branch_runs, reduction_variants(), X.size)
    assert "lacks reduction clauses" in why, why
