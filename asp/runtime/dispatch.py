"""The runtime: from a Python call to a tuned, guarded native call, or to Python.

A specializer implements :class:`Specializer` for one user kernel: how to
validate and normalize arguments (:meth:`~Specializer.prepare`), how to plan
the code for a signature (:meth:`~Specializer.plan`: front end, passes,
lowering), and how to run the plain Python.  :class:`JitKernel` does the rest
for every specializer alike:

* the hot path: the last winning :class:`asp._native.Entry` is tried first;
  its guards run in C and a miss costs one comparison;
* the slow path: validation with clear errors, one :class:`Specialization`
  per signature (compiled once per process, from the disk cache after that);
* tuning among variants (:mod:`asp.tune`), with each variant first checked
  against the Python on small random inputs when the specializer offers them
  (:mod:`asp.runtime.check`);
* module-level names the code baked in (:mod:`asp.frontend.names`): the hot
  entry serves calls only while each is bound as it was, and a rebinding
  specializes again (under another record key), so ``module.K = 3.0`` is seen
  by the next call as it is in Python;
* fallback: any :class:`~asp.errors.SpecializationError`, and any other
  exception escaping a stage of the specializer (planning, printing, checking),
  makes this signature run as Python, with one
  :class:`~asp.errors.AspFallbackWarning` per kernel; ``ASP_STRICT=1`` raises
  instead, ``ASP_DISABLE_JIT=1`` never compiles.
"""
from __future__ import annotations

import dataclasses
import hashlib
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from asp import config
from asp.codegen.entry import entry_point, render_module
from asp.errors import (
    AspFallbackWarning,
    CompileError,
    LoadError,
    SpecializationError,
    UnrepresentableValue,
)
from asp.frontend.names import UNBOUND, GlobalReads
from asp.ir import platform as ir
from asp.jit.cache import build
from asp.passes.pipeline import dump
from asp.runtime.abi import MISS, ArgSpec, make_entry
from asp.runtime.check import check_variants
from asp.runtime.record import generator_fingerprint, load_record, record_key, save_record
from asp.tune.tuner import Tuning

__all__ = ["JitKernel", "Plan", "Prepared", "Specialization", "Specializer", "Variant"]


@dataclass(frozen=True)
class Variant:
    """One code variant: a name the tuner reports and its lowered kernel function."""

    name: str
    function: ir.Function

    def __post_init__(self):
        if not (self.name.isascii() and self.name.isidentifier()):
            raise ValueError(f"variant name {self.name!r}: must be a C identifier (letters, "
                             "digits, underscores): it names the variant's entry point")


@dataclass
class Prepared:
    """A call's arguments made ready for native code, and the signature they have.

    ``args`` are what the entry receives (contiguous arrays, Python scalars);
    ``finish`` turns the entry's result into the user's (e.g. copies into a
    non-contiguous output); ``same`` says ``args`` are the user's own objects,
    so the hot path may serve the next call directly.  ``bucket`` groups
    calls of one signature that should be tuned apart (e.g. problem sizes a
    factor of four apart): the code is shared, the choice of variant is not;
    ``size_range`` is the bucket's range of element counts ``[lo, hi)`` of
    argument ``size_arg`` (default: the first array), so the hot path serves only
    calls of the same bucket; a bucketed call without a range never takes the hot
    path (it would serve every size with one bucket's winner).
    """

    args: tuple
    signature: str
    finish: Callable[[object], object] | None = None
    same: bool = True
    bucket: str = ""
    size_range: tuple[int, int] | None = None
    size_arg: int = -1


@dataclass(frozen=True)
class Plan:
    """Everything needed to build one signature's variants."""

    signature: str
    specs: tuple[ArgSpec, ...]
    variants: tuple[Variant, ...]
    ret: int = -1
    errors: tuple[tuple[type[Exception], str], ...] = ()
    preamble: str = ""
    includes: tuple[str, ...] = ("stdint.h", "math.h")
    # Small random arguments for checking each variant against the Python, or None.
    check_args: Callable[[], tuple] | None = None
    # Small arguments cut from a real call's, for when the Python raises on check_args.
    check_args_from: Callable[[tuple], tuple] | None = None
    rtol: float = 1e-9
    atol: float = 1e-12


class Specializer(ABC):
    """What a specializer provides for one user kernel."""

    #: A stable, human-readable name (kind, qualified name, file:line).
    name: str = "kernel"
    #: Digest of everything the generated code depends on besides the signature.
    digest: str = ""

    @abstractmethod
    def prepare(self, args: tuple) -> Prepared:
        """Validate ``args`` (TypeError/ValueError naming the argument) and normalize them."""

    @abstractmethod
    def plan(self, prepared: Prepared) -> Plan:
        """Front end, passes and lowering for the signature of ``prepared``."""

    @abstractmethod
    def run_python(self, args: tuple):
        """The reference: the user's Python, as written."""

    def location(self) -> str | None:
        return None

    def global_reads(self) -> GlobalReads | None:
        """The module-level and closure names the generated code depends on, as bound now
        (:func:`asp.frontend.names.global_reads` of the user's function), or None."""
        return None

    def forget(self) -> None:  # noqa: B027 - a hook; most specializers cache nothing
        """Drop whatever was derived from names that have since been rebound (cached
        front-end results): the next :meth:`plan` must see the new bindings."""

    def code_digest(self) -> str:
        """Digest of everything besides the signature that the generated code depends on.

        Keys the on-disk specialization record, so it must change whenever the
        code would (the kernel's source, constants it bakes in, options).
        """
        return self.digest


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
            return self.entries[t.winner](*args)
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


def _user_stacklevel(specializer: Specializer) -> int:
    """The ``stacklevel`` that points a warning at the first frame outside asp and the
    specializer's package, i.e. at the user's call, however deep its wrappers go."""
    import os
    import sys

    module = sys.modules.get(type(specializer).__module__)
    inside = (os.path.dirname(os.path.dirname(__file__)),
              os.path.dirname(getattr(module, "__file__", None) or __file__))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(inside):
        frame, level = frame.f_back, level + 1
    return level


def _stage(stage: str, kernel: str, fn, *args):
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


class JitKernel:
    """The call-site object of one user kernel: hot path, specializations, fallback."""

    def __init__(self, specializer: Specializer):
        self.specializer = specializer
        self._hot: Callable | None = None
        self._specs: dict[str, Specialization] = {}
        self._failed: dict[str, SpecializationError] = {}
        self._warned = False
        self._warned_unrep = False
        self._reads: GlobalReads | None = None
        self.last_error: SpecializationError | None = None

    # -- calling ----------------------------------------------------------------------------
    def __call__(self, *args):
        hot = self._hot
        if hot is not None:
            try:
                result = hot(*args)
            except TypeError:  # a wrong argument count: the slow path names the problem
                return self._slow(args)
            except UnrepresentableValue as exc:
                return self.run_as_python(args, exc)
            if result is not MISS:
                return result
        return self._slow(args)

    def run_as_python(self, args: tuple, why: Exception):
        """This call, as Python: the compiled code met a value only Python represents
        (warned once per kernel, as a fallback is: the call is slower)."""
        if not self._warned_unrep:
            self._warned_unrep = True
            warnings.warn(f"{self.specializer.name}: {why}; this call ran as plain Python",
                          AspFallbackWarning, stacklevel=_user_stacklevel(self.specializer))
        return self.specializer.run_python(args)

    def _slow(self, args: tuple):
        spec = self.specializer
        if config.jit_disabled():
            return spec.run_python(args)
        reads = self._reads
        if reads is not None and not reads.holds():
            self._rebound(reads)
        prepared = spec.prepare(args)
        try:
            s = self._specialization(prepared)
        except SpecializationError as exc:
            return self._fallback(args, exc)
        try:
            result = s.run(prepared.args, prepared.bucket)
        except UnrepresentableValue as exc:
            return self.run_as_python(args, exc)
        if result is MISS:
            exc = LoadError("the compiled entry rejected arguments the specializer accepted",
                            kernel=spec.name)
            self._failed[prepared.signature] = exc
            self._specs.pop(prepared.signature, None)
            return self._fallback(args, exc)
        tuning = s.tuning_for(prepared.bucket)
        # The hot entry returns the native result as it is: only a call that needs no
        # finishing (copy-back, conversion) may be served by it.
        if tuning.done and prepared.same and prepared.finish is None:
            entry = s.entries[tuning.winner]
            if self._reads is not None and self._reads.guards:
                entry = entry.assuming(tuple((ns, name, MISS if v is UNBOUND else v)
                                             for ns, name, v in self._reads.guards))
            if prepared.size_range:
                self._hot = entry.restricted(*prepared.size_range, prepared.size_arg)
            elif not prepared.bucket:
                self._hot = entry
        return prepared.finish(result) if prepared.finish else result

    def _rebound(self, reads: GlobalReads) -> None:
        """Some name the code baked in was rebound: specialize again if what it is bound
        to now differs (by value: the same number rebound costs nothing)."""
        now = self.specializer.global_reads()
        self._reads = now
        self._hot = None  # its guards name the old objects
        if now is None or now.describe() != reads.describe():
            self._specs.clear()
            self._failed.clear()
            self._warned = False
            self.specializer.forget()

    def _fallback(self, args: tuple, exc: SpecializationError):
        exc.with_context(kernel=self.specializer.name, location=self.specializer.location())
        self.last_error = exc
        if config.strict():
            raise exc
        if not self._warned:
            self._warned = True
            warnings.warn(f"{exc}; running it as plain Python", AspFallbackWarning,
                          stacklevel=_user_stacklevel(self.specializer))
        return self.specializer.run_python(args)

    # -- building ---------------------------------------------------------------------------
    def specialization(self, *args) -> Specialization:
        """The compiled variants for the signature of ``args`` (built if needed).

        Raises the :class:`SpecializationError` instead of falling back.
        """
        return self._specialization(self.specializer.prepare(args))

    def _specialization(self, prepared: Prepared) -> Specialization:
        sig = prepared.signature
        s = self._specs.get(sig)
        if s is not None:
            return s
        if sig in self._failed:
            raise self._failed[sig]
        if self._reads is None:
            self._reads = self.specializer.global_reads()
        try:
            s = self._build(prepared)
        except SpecializationError as exc:
            self._failed[sig] = exc.with_context(kernel=self.specializer.name)
            raise
        self._specs[sig] = s
        return s

    def _build(self, prepared: Prepared) -> Specialization:
        spec = self.specializer
        t0 = time.perf_counter()
        digest = spec.code_digest()
        if digest and self._reads is not None and self._reads.guards:
            # Code specialized for other bindings of the names it read has another key.
            digest = hashlib.sha256(f"{digest}\n{self._reads.describe()}".encode()).hexdigest()
        kernel_id = f"{spec.name}@{digest[:12]}" if digest else spec.name
        code = generator_fingerprint(type(spec).__module__)
        key = record_key(kernel_id, digest, prepared.signature, code) if digest else None
        s = self._load(key, kernel_id, prepared.signature, code) if key else None
        if s is None:
            plan = _stage("planning (front end, passes, lowering)", kernel_id,
                          spec.plan, prepared)
            _check_limits(plan, kernel_id)
            found, source, broken = _compile_variants(plan, kernel_id)
            entries = {name: e for name, (e, _, _) in found.items()}
            tuning = Tuning(kernel_id, plan.signature, list(entries), code=code)
            for name, why in broken.items():  # shown by `asp tune show`, never picked
                tuning.exclude(name, why)
            s = Specialization(kernel=kernel_id, signature=plan.signature, specs=plan.specs,
                               entries=entries, tuning=tuning, plan=plan, source=source,
                               code=code)
            if plan.check_args is not None:
                _stage("checking against the Python", kernel_id,
                       check_variants, s, spec, prepared.args)
            if key:
                save_record(key, variants={n: (lib, sym) for n, (_, lib, sym) in found.items()},
                            specs=plan.specs, ret=plan.ret, errors=plan.errors,
                            excluded=dict(s.check_failures))
        s.build_seconds = time.perf_counter() - t0
        return s

    @staticmethod
    def _load(key: str, kernel_id: str, signature: str, code: str) -> Specialization | None:
        rec = load_record(key)
        if rec is None:
            return None
        variants, specs, ret, errors, excluded, libs = rec
        entries = {name: make_entry(libs[lib].address(sym), specs, ret=ret, errors=errors,
                                    keepalive=libs[lib])
                   for name, (lib, sym) in variants.items()}
        tuning = Tuning(kernel_id, signature, list(entries), code=code)
        for name, why in excluded.items():
            if name in entries:
                tuning.exclude(name, why)
        return Specialization(kernel=kernel_id, signature=signature, specs=specs,
                              entries=entries, tuning=tuning, check_failures=dict(excluded),
                              code=code)

    # -- introspection ----------------------------------------------------------------------
    def run_variant(self, name: str, *args):
        """Run one named variant (for tests: every variant against the Python)."""
        prepared = self.specializer.prepare(args)
        s = self._specialization(prepared)
        result = s.entries[name](*prepared.args)
        if result is MISS:
            raise LoadError(f"variant {name} rejected the arguments", kernel=s.kernel)
        return prepared.finish(result) if prepared.finish else result

    def chosen_variant(self, *args) -> str | None:
        """The variant calls with ``args`` run now: the tuner's winner, ``'python'``
        after a fallback, or None while the tuner is still trying variants."""
        prepared = self.specializer.prepare(args)
        if prepared.signature in self._failed or config.jit_disabled():
            return "python"
        s = self._specs.get(prepared.signature)
        return None if s is None else s.tuning_for(prepared.bucket).winner

    def clear(self) -> None:
        """Forget the in-process specializations (the disk cache stays)."""
        self._hot = None
        self._specs.clear()
        self._failed.clear()
        self._warned = False


def _check_limits(plan: Plan, kernel_id: str) -> None:
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


def _compile_variants(plan: Plan, kernel_id: str) -> tuple[dict[str, tuple], str, dict]:
    """Compile all variants in one translation unit; if that fails, one by one.

    Returns ``{variant: (entry, library key, symbol)}``, the source, and
    ``{variant: why}`` for those that did not compile on their own.
    """
    def source_for(variants: Sequence[Variant]) -> tuple[str, list]:
        eps = [entry_point(f"asp_entry_{v.name}", v.function.name, plan.specs) for v in variants]
        module = ir.Module(functions=tuple(v.function for v in variants),
                           includes=plan.includes, preamble=plan.preamble)
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
