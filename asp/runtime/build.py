"""What a first call builds when, and the building: the tiers of a plan's variants.

:func:`tiers` splits a plan into the variant built before the first result and the
late ones; :data:`QUICK` marks a first tier built for a quick first result
(:func:`quick_first`); :func:`expand_spaces` adds the sampled points of the plan's
search spaces (on the builder thread for a tiered first call); :func:`units` cuts the
late variants into the few translation units compiled at once (:data:`LATE_UNITS`).
:func:`build_variants` compiles variants into guarded entries, :func:`build_late` the
late tier (on :mod:`asp.runtime.specialization`'s builder thread).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from asp import config
from asp.codegen.entry import entry_point, render_module
from asp.errors import CompileError, SpecializationError
from asp.ir import platform as ir
from asp.jit.cache import build
from asp.passes.pipeline import dump
from asp.runtime.abi import make_entry
from asp.runtime.plan import Plan, Variant, functions_of
from asp.tune.tuner import Tuning

__all__ = ["LATE_UNITS", "QUICK", "build_late", "build_variants", "expand_spaces",
           "quick_first", "tiers", "units"]


def expand_spaces(plan: Plan, seed: str, *, whole: bool = False,
                  keep: str | None = None) -> tuple[Plan, dict]:
    """``plan`` with the sampled points of each of its spaces added as variants (after
    the plain ones, so a plain variant stays the first tier), and for the tuner what
    was tried: ``{space: {"params": {name: values}, "tried": [variant names]}}``.
    ``whole``: every point (exhaustive tuning); ``keep``: a variant name (a remembered
    winner, which exhaustive tuning may have found outside the sample) added too if
    it is a point of a space."""
    if not plan.spaces:
        return plan, {}
    names = {v.name for v in plan.variants}
    made: list[Variant] = []
    tried: dict[str, dict] = {}
    for space in plan.spaces:
        got = []
        for point in space.points(seed, whole):
            v = space.make(**point)
            if v.name not in names:
                names.add(v.name)
                made.append(v)
                got.append(v.name)
        tried[space.name] = {"params": space.describe(), "tried": got}
    if keep is not None and keep not in names:
        found = ((space.name, v) for space in plan.spaces
                 for v in (space.make(**p) for p in space.points(seed, True)))
        for space_name, v in found:
            if v.name == keep:
                made.append(v)
                tried[space_name]["tried"].append(keep)
                break
    return dataclasses.replace(plan, variants=plan.variants + tuple(made)), tried


#: Prefixed to the source of a quick first tier.  The pragma appends to the command
#: line's flags (-fwrapv, -ffp-contract=off and -fno-math-errno stay, ``omp simd`` loops
#: are still vectorized); a 3-D 7-point kernel with boundary="reflect" compiled in 0.15 s
#: instead of 0.6-1.0 s and ran within 1.3x of -O3 at 64^3.  Its threshold branches
#: (:class:`asp.ir.platform.If` of role "threshold") take the parallel code at every
#: size, so gcc drops their serial code unseen: a 3-D stencil's first variant and the
#: serial loop it calls below the threshold compiled in 0.16-0.18 s, 0.10-0.13 without.
QUICK = """/* The first tier, built quick for the first result: rebuilt with the others. */
#define ASP_QUICK_TIER 1
#define ASP_PARALLEL(work) 1
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC optimize("O1", "no-inline")
#endif
"""


def quick_first(tuning: Tuning, later: Plan | None) -> bool:
    """Whether the first tier is built quick (:data:`QUICK`) and rebuilt with the late
    variants: only when it is a guess the tuner will time again (tiered, online, no
    winner remembered) and the compiler flags are asp's own (``ASP_CFLAGS`` is obeyed
    as given)."""
    return (later is not None and tuning.winner is None and tuning.mode == "online"
            and config.cflags_override() is None)


#: The late tier compiles as up to this many translation units at once (never more than
#: the machine has cores): gcc runs in subprocesses, one unit is one compiler.  Each unit
#: repeats the plan's helpers (a 3-D boundary mode's slabs: 0.45 s of -O3), so units are
#: few and balanced by size.  A 3-D 7-point reflect kernel's 8 late variants took 3.2 s
#: in one unit.
LATE_UNITS = 2


def units(variants: Sequence[Variant], n: int) -> list[tuple[Variant, ...]]:
    """``variants`` in at most ``n`` groups of about equal size (IR nodes of their
    functions: gcc's work grows with the code), each in the plan's order; one group if
    they are few.  Variants that share a function (:attr:`Variant.bound`) stay in one
    group: it is compiled once."""
    shared: dict[str, list[Variant]] = {}
    for v in variants:
        shared.setdefault(v.function.name, []).append(v)
    if n <= 1 or len(shared) < 4:
        return [tuple(variants)]
    size = {f: sum(1 for _ in vs[0].function.walk()) for f, vs in shared.items()}
    bins: list[list[Variant]] = [[] for _ in range(n)]
    load = [0] * n
    for f in sorted(shared, key=lambda f: -size[f]):
        i = load.index(min(load))
        bins[i] += shared[f]
        load[i] += size[f]
    order = {v.name: i for i, v in enumerate(variants)}
    return [tuple(sorted(b, key=lambda v: order[v.name])) for b in bins if b]


def tiers(plan: Plan, tuning: Tuning) -> tuple[Plan, Plan | None]:
    """The plan to build before the first result, and the plan to build in the
    background (None: everything now, as in exhaustive tuning, for a single variant, or
    under ``ASP_TIERED=0``).  The first tier is the remembered winner when there is one
    (or ``ASP_TUNE=off``'s choice), else the specializer's first variant."""
    if len(plan.variants) == 1 or tuning.mode == "exhaustive" or not config.tiered():
        return plan, None
    first = tuning.winner or plan.variants[0].name
    now = tuple(v for v in plan.variants if v.name == first) or plan.variants[:1]
    later = tuple(v for v in plan.variants if v not in now)
    return (dataclasses.replace(plan, variants=now, spaces=()),
            dataclasses.replace(plan, variants=later))


def build_late(plan: Plan, kernel_id: str, seed: str, skip: frozenset = frozenset(),
               only: frozenset | None = None) -> tuple[dict, str, dict, Plan, dict]:
    """The late tier, on the builder thread: the sampled points of ``plan``'s spaces
    (planned here, while the first result is already in the user's hands), then every
    variant not in ``skip`` (and in ``only``, if given) built.  Returns
    :func:`build_variants`'s three results, the plan with its points, and what
    :func:`expand_spaces` says was tried."""
    plan, spaces = expand_spaces(plan, seed)
    late = dataclasses.replace(plan, variants=tuple(
        v for v in plan.variants if v.name not in skip and (only is None or v.name in only)))
    groups = units(late.variants, min(LATE_UNITS, os.cpu_count() or 1))
    if len(groups) == 1:
        return (*build_variants(late, kernel_id), plan, spaces)

    def unit(group):
        try:
            return build_variants(dataclasses.replace(late, variants=group), kernel_id)
        except Exception as exc:  # noqa: BLE001 - the other units' variants still join
            return exc

    try:
        with ThreadPoolExecutor(len(groups), thread_name_prefix="asp-build-unit") as pool:
            results = list(pool.map(unit, groups))
    except RuntimeError:  # the interpreter is shutting down: one unit after another
        results = [unit(g) for g in groups]
    found, sources, broken = {}, [], {}
    for group, r in zip(groups, results):
        if isinstance(r, Exception):
            broken.update({v.name: f"{type(r).__name__}: {r}"[:300] for v in group})
        else:
            found.update(r[0])
            sources.append(r[1])
            broken.update(r[2])
    if not found:
        raise next(r for r in results if isinstance(r, Exception))
    return found, "\n".join(sources), broken, plan, spaces


def build_variants(plan: Plan, kernel_id: str, *, quick: bool = False
                   ) -> tuple[dict[str, tuple], str, dict]:
    """Compile all variants in one translation unit; if that fails, one by one.
    ``quick``: prefixed with :data:`QUICK` (a first tier to be rebuilt).

    Returns ``{variant: (entry, library key, symbol)}``, the source, and
    ``{variant: why}`` for those that did not compile on their own.
    """
    def source_for(variants: Sequence[Variant]) -> tuple[str, list]:
        eps = [entry_point(f"asp_entry_{v.name}", v.function.name, plan.specs, v.bound)
               for v in variants]
        module = ir.Module(functions=functions_of(variants),
                           includes=plan.includes, preamble=plan.preamble,
                           helpers=plan.helpers)
        dump(f"{kernel_id} [{plan.signature}]: module", module)
        source = render_module(module, eps, kernel=kernel_id, signature=plan.signature)
        return (QUICK + source if quick else source), eps

    def entries_for(variants, lib, eps):
        return {v.name: (make_entry(lib.address(ep.symbol), plan.specs, ret=plan.ret,
                                    errors=plan.errors, keepalive=lib), lib.key, ep.symbol)
                for v, ep in zip(variants, eps)}

    broken: dict[str, str] = {}
    try:
        source, eps = source_for(plan.variants)
    except Exception:  # noqa: BLE001 - a specializer bug: exclude the variants it hits
        printable = []
        for v in plan.variants:
            try:
                source_for([v])
            except Exception as exc:  # noqa: BLE001
                broken[v.name] = f"internal error: {type(exc).__name__}: {exc} [printing]"
            else:
                printable.append(v)
        if not printable:
            name, why = next(iter(broken.items()))
            raise SpecializationError(f"no variant could be printed (variant {name}: {why})",
                                      kernel=kernel_id, stage="printing") from None
        plan = dataclasses.replace(plan, variants=tuple(printable))
        source, eps = source_for(plan.variants)
    try:
        lib = build(source, kernel=kernel_id)
        return entries_for(plan.variants, lib, eps), source, broken
    except CompileError as whole:
        if len(plan.variants) == 1:
            raise
        entries: dict[str, tuple] = {}
        for v in plan.variants:
            src, eps1 = source_for([v])
            try:
                lib = build(src, kernel=kernel_id)
            except CompileError as exc:
                lines = str(exc).splitlines() or [""]
                first = next((ln for ln in lines if "error" in ln), lines[0])
                broken[v.name] = f"does not compile: {first.strip()[:200]}"
                continue
            entries.update(entries_for([v], lib, eps1))
        if not entries:
            raise whole from None
        return entries, source, broken
