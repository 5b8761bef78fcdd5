"""One signature's compiled variants: building them, and choosing among them per call.

:func:`build_variants` compiles a :class:`~asp.runtime.plan.Plan`'s variants into one
shared object (one by one if that fails, so one bad variant cannot break the
others), after checking the native entry's limits; :class:`Specialization` holds the
guarded entries and the tuning of each size bucket.  :func:`run_stage` turns an
exception escaping a specializer's stage into a fallback naming the stage.
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from asp.codegen.entry import entry_point, render_module
from asp.errors import CompileError, LoadError, SpecializationError
from asp.ir import platform as ir
from asp.jit.cache import build
from asp.passes.pipeline import dump
from asp.runtime.abi import MISS, ArgSpec, make_entry
from asp.runtime.plan import Plan, Variant
from asp.tune.tuner import Tuning

__all__ = ["Specialization", "build_variants", "check_limits", "run_stage"]


@dataclass
class Specialization:
    """One signature's compiled variants, their entries and their tuning.

    ``plan`` and ``source`` are None for a specialization loaded from its
    on-disk record (a warm start): nothing was planned or generated.
    """

    kernel: str
    signature: str
    specs: tuple[ArgSpec, ...]
    entries: dict[str, Callable]
    tuning: Tuning
    plan: Plan | None = None
    source: str | None = None
    code: str = ""  # fingerprint of the generator, part of every tuning key
    build_seconds: float = 0.0
    check_failures: dict[str, str] = field(default_factory=dict)
    buckets: dict[str, Tuning] = field(default_factory=dict)
    stale: bool = False  # a winner's decision was reopened since the hot path was set

    @property
    def variant_names(self) -> list[str]:
        return list(self.entries)

    def tuning_for(self, bucket: str) -> Tuning:
        """The tuning of one size bucket (``""``: the signature's own)."""
        if not bucket:
            return self.tuning
        t = self.buckets.get(bucket)
        if t is None:
            t = Tuning(self.kernel, f"{self.signature} {bucket}", list(self.entries),
                       mode=self.tuning.mode, code=self.code)
            for v, why in self.tuning.excluded.items():
                t.exclude(v, why)
            self.buckets[bucket] = t
        return t

    def run(self, args: tuple, bucket: str = ""):
        t = self.tuning_for(bucket)
        if t.winner is not None:
            if not t.sample_every():
                return self.entries[t.winner](*args)
            # A real call of the winner: timed, so a decision gone stale is reopened.
            t0 = time.perf_counter()
            result = self.entries[t.winner](*args)
            if result is not MISS and t.verify(time.perf_counter() - t0):
                self.stale = True  # the runtime drops its hot entries
            return result
        if t.mode == "exhaustive":
            self._exhaustive(args, t)
            return self.entries[t.winner](*args)
        v = t.pick()
        t0 = time.perf_counter()
        result = self.entries[v](*args)
        t.record(v, time.perf_counter() - t0)
        return result

    def _exhaustive(self, args: tuple, tuning: Tuning) -> None:
        # Outputs may accumulate (``out += ...``): restore them after every timed run.
        writable = [(a, a.copy()) for a, s in zip(args, self.specs)
                    if s.kind == "array" and s.write and isinstance(a, np.ndarray)]

        def run(v):
            try:
                r = self.entries[v](*args)
            finally:
                for a, saved in writable:
                    a[...] = saved
            if r is MISS:
                raise LoadError("guard miss in tuning")

        tuning.run_exhaustive(run)


def run_stage(stage: str, kernel: str, fn, *args):
    """``fn(*args)``, with any exception other than a :class:`SpecializationError` (a
    bug in a specializer or in asp) turned into one that names the kernel and the stage,
    so the call falls back instead of failing in the user's program."""
    try:
        return fn(*args)
    except SpecializationError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise SpecializationError(f"internal error: {type(exc).__name__}: {exc}",
                                  kernel=kernel, stage=stage) from exc


def check_limits(plan: Plan, kernel_id: str) -> None:
    """The native entry's limits, said in the user's terms before anything is built."""
    from asp.runtime.abi import MAX_ARGS, MAX_DIMS

    if len(plan.specs) > MAX_ARGS:
        raise SpecializationError(
            f"{len(plan.specs)} arguments (including outputs): compiled kernels take at most "
            f"{MAX_ARGS}", kernel=kernel_id, stage="limits")
    for i, sp in enumerate(plan.specs):
        if sp.kind == "array" and sp.ndim > MAX_DIMS:
            raise SpecializationError(
                f"argument {i} has {sp.ndim} dimensions: compiled kernels take arrays of at "
                f"most {MAX_DIMS}", kernel=kernel_id, stage="limits")


def build_variants(plan: Plan, kernel_id: str) -> tuple[dict[str, tuple], str, dict]:
    """Compile all variants in one translation unit; if that fails, one by one.

    Returns ``{variant: (entry, library key, symbol)}``, the source, and
    ``{variant: why}`` for those that did not compile on their own.
    """
    def source_for(variants: Sequence[Variant]) -> tuple[str, list]:
        eps = [entry_point(f"asp_entry_{v.name}", v.function.name, plan.specs) for v in variants]
        module = ir.Module(functions=tuple(v.function for v in variants),
                           includes=plan.includes, preamble=plan.preamble,
                           helpers=plan.helpers)
        dump(f"{kernel_id} [{plan.signature}]: module", module)
        return render_module(module, eps, kernel=kernel_id, signature=plan.signature), eps

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
