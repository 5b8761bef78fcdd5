"""What a first call builds when: the tiers of a plan's variants.

:func:`tiers` splits a plan into the variant built before the first result and the
late ones; :data:`QUICK` marks a first tier built for a quick first result
(:func:`quick_first`); :func:`expand_spaces` adds the sampled points of the plan's
search spaces (on the builder thread for a tiered first call); :func:`units` cuts the
late variants into the few translation units compiled at once (:data:`LATE_UNITS`).
The building itself is :mod:`asp.runtime.specialization`'s.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from asp import config
from asp.runtime.plan import Plan, Variant
from asp.tune.tuner import Tuning

__all__ = ["LATE_UNITS", "QUICK", "expand_spaces", "quick_first", "tiers", "units"]


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
#: instead of 0.6-1.0 s and ran within 1.3x of -O3 at 64^3.
QUICK = """/* The first tier, built quick for the first result: rebuilt with the others. */
#define ASP_QUICK_TIER 1
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
