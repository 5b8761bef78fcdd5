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
import functools
import hashlib
import time
import types
import warnings
from collections.abc import Callable

from asp import config
from asp.errors import (
    AspFallbackWarning,
    CheckError,
    CompileError,
    LoadError,
    SpecializationError,
    UnrepresentableValue,
)
from asp.frontend.names import CODE_ATTRS, UNBOUND, GlobalReads
from asp.runtime.abi import MISS, make_entry
from asp.runtime.check import check_variants
from asp.runtime.plan import Plan, Prepared, Space, Specializer, Variant
from asp.runtime.record import generator_fingerprint, load_record, record_key, save_record
from asp.runtime.specialization import (
    Specialization,
    build_late,
    build_variants,
    check_limits,
    expand_spaces,
    quick_first,
    run_stage,
    tiers,
)
from asp.tune.tuner import Tuning

#: Size buckets whose winners the hot path serves at once.
MAX_HOT_BUCKETS = 4
#: A bucket decided while late variants still compile (none of them suits its calls)
#: sends one call in this many back to the slow path until they are taken in (their
#: check against the Python, the record saved): a few microseconds in 256 calls.
LATE_SAMPLE = 256

__all__ = ["JitKernel", "Plan", "Prepared", "Space", "Specialization", "Specializer", "Variant"]


def _native_guard(ns, name, value) -> tuple:
    """A guard of :class:`GlobalReads` as the native entry checks it (``assuming``): a
    function's attribute by its index in :data:`CODE_ATTRS`, None and unbound as the miss
    sentinel."""
    if isinstance(ns, types.FunctionType):
        return ns, CODE_ATTRS.index(name), MISS if value is None else value
    return ns, name, MISS if value is UNBOUND else value


def _chain(entries: list):
    """The first :data:`MAX_HOT_BUCKETS` hot entries chained in C, first tried first (None
    for none)."""
    chain = None
    for e in reversed(entries[:MAX_HOT_BUCKETS]):
        chain = e if chain is None else e.chained(chain)
    return chain


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


class JitKernel:
    """The call-site object of one user kernel: hot path, specializations, fallback."""

    def __init__(self, specializer: Specializer, *, fallback_group: set | None = None):
        """``fallback_group``: a set shared by the kernels that serve one operation (a
        solver's several kernels); a fallback warns once among them, since a compiler or
        cache that fails one fails them all (``ASP_STRICT=1`` still raises every failure)."""
        self.specializer = specializer
        self._group = fallback_group if fallback_group is not None else set()
        self._hot: Callable | None = None
        self._hot_buckets: dict[str, Callable] = {}  # size bucket -> its restricted entry
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

    @property
    def hot_entry(self) -> Callable | None:
        """The native entry that serves calls now (guards checked in C; it returns
        :data:`~asp.runtime.abi.MISS` when they do not hold), or None.  A specializer's
        own call wrapper may call it first and :meth:`slow_call` on a miss, as
        :meth:`__call__` does."""
        return self._hot

    def slow_call(self, args: tuple):
        """A call through the whole runtime: validation, specialization, tuning, fallback
        (what :meth:`__call__` does when the hot entry misses)."""
        return self._slow(args)

    def run_as_python(self, args: tuple, why: Exception):
        """This call, as Python: the compiled code met a value only Python represents
        (warned once per kernel, as a fallback is: the call is slower)."""
        if config.strict():
            raise why
        if not self._warned_unrep:
            self._warned_unrep = True
            warnings.warn(f"{self.specializer.name}: {why}; this call ran as plain Python",
                          AspFallbackWarning, stacklevel=_user_stacklevel(self.specializer))
        return self.specializer.run_python(args)

    def _slow(self, args: tuple):
        spec = self.specializer
        if config.jit_disabled():
            return spec.run_python(args)
        start = time.perf_counter()
        reads = self._reads
        if reads is not None and not reads.holds():
            self._rebound(reads)
        try:
            # A specializer that analyses each call's data (a matrix's structure) raises a
            # SpecializationError when that analysis fails: the call runs as Python.
            prepared = spec.prepare(args)
            s = self._specialization(prepared)
        except SpecializationError as exc:
            return self._fallback(args, exc)
        except UnrepresentableValue as exc:  # an argument C cannot take (2**70): this call
            return self.run_as_python(args, exc)  # alone runs as Python
        if prepared.unsuited is not None:  # the bucket's tuner never tries those
            s.tuning_for(prepared.bucket, prepared.unsuited)
        if s.pending is not None:  # late variants of a tiered first call: in when ready
            s.absorb(prepared.args, wait=not s.tuning_for(prepared.bucket).candidates())
        complete = prepared.complete
        winners_args = False  # the arguments are made for the winner alone
        if complete is not None and s.tuning_for(prepared.bucket).winner is not None:
            try:
                prepared.args = complete((s.tuning_for(prepared.bucket).winner,))
            except SpecializationError as exc:
                return self._fallback(args, exc)
            complete, winners_args = None, True
        try:
            # While tuning, the arguments are completed for the variant the tuner picks.
            result = s.run(prepared.args, prepared.bucket, complete=complete,
                           sampled=prepared.same and prepared.finish is None,
                           challenge=not winners_args)
        except UnrepresentableValue as exc:
            return self.run_as_python(args, exc)
        except SpecializationError as exc:  # completing the arguments failed
            return self._fallback(args, exc)
        if result is MISS:
            exc = LoadError("the compiled entry rejected arguments the specializer accepted",
                            kernel=spec.name)
            self._failed[prepared.signature] = exc
            self._specs.pop(prepared.signature, None)
            return self._fallback(args, exc)
        tuning = s.tuning_for(prepared.bucket)
        if tuning.last_run is not None:  # a sampled call of the winner: what the rest cost
            tuning.note_overhead(time.perf_counter() - start - tuning.last_run)
            tuning.last_run = None
        # The hot entry returns the native result as it is: only a call that needs no
        # finishing (copy-back, conversion) may be served by it.
        if s.stale:  # winners' decisions were reopened: their buckets' hot entries go,
            # the other buckets' stay (before, one reopened bucket sent every bucket's
            # calls back to the slow path until each came by once more)
            gone, s.stale = s.stale, set()
            self._hot_buckets = {b: e for b, e in self._hot_buckets.items() if b not in gone}
            self._hot = _chain(list(self._hot_buckets.values()))
        if tuning.done and prepared.same and prepared.finish is None:
            entry = s.entries[tuning.winner]
            every = tuning.sample_every() or (LATE_SAMPLE if s.pending is not None else 0)
            if every:  # one call in N comes back: to be timed, or to take in late variants
                entry = entry.sampled(every)
            if self._reads is not None and self._reads.guards:
                entry = entry.assuming(tuple(_native_guard(*g) for g in self._reads.guards))
            if prepared.size_range:
                # One hot entry per size bucket, chained in C (newest first): calls that
                # alternate between buckets (multigrid levels; a Dask block's interior
                # and strips) all stay on the fast path.
                mine = entry.restricted(*prepared.size_range, prepared.size_arg)
                others = [e for b, e in self._hot_buckets.items() if b != prepared.bucket]
                self._hot_buckets = {prepared.bucket: mine,
                                     **{b: e for b, e in self._hot_buckets.items()
                                        if b != prepared.bucket}}
                self._hot = _chain([mine, *others])
            elif not prepared.bucket:
                self._hot = entry
                self._hot_buckets = {}
        return prepared.finish(result) if prepared.finish else result

    def _rebound(self, reads: GlobalReads) -> None:
        """Some name the code baked in was rebound: specialize again if what it is bound
        to now differs (by value: the same number rebound costs nothing)."""
        now = self.specializer.global_reads()
        self._reads = now
        self._hot = None  # its guards name the old objects
        self._hot_buckets = {}
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
        if not self._warned and not self._group:
            self._warned = True
            self._group.add(self.specializer.name)
            warnings.warn(f"{exc}; running it as plain Python", AspFallbackWarning,
                          stacklevel=_user_stacklevel(self.specializer))
        return self.specializer.run_python(args)

    # -- building ---------------------------------------------------------------------------
    def specialization(self, *args) -> Specialization:
        """The compiled variants for the signature of ``args`` (built if needed).

        Raises the :class:`SpecializationError` instead of falling back.  Every variant
        is in (a tiered first call's late variants are waited for).
        """
        s = self._specialization(self.specializer.prepare(args))
        s.absorb(wait=True)
        return s

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
        # Exhaustive tuning plans every point of a space, not the sample an online
        # process's record keeps: it loads only its own kind of record, and saves under
        # both keys (every point is also good for online processes).
        mode = config.tune_mode()
        keys = (record_key(kernel_id, digest, prepared.signature + " [every point]", code),
                key) if key and mode == "exhaustive" else (key,)
        # ASP_TUNE=off runs the first variant, always, and compiles no other (the Dask
        # tests built a dozen blocked variants per block shape and ran none): its record
        # has a key of its own, never loaded by a tuning process as the whole list; an
        # off process loads a tuning process's complete record too.
        first = record_key(kernel_id, digest, prepared.signature + " [first variant]",
                           code) if key and mode == "off" else None
        s = None
        for k in ((first, key) if first else keys[:1]) if key else ():
            s = self._load(k, kernel_id, prepared.signature, code)
            if s is not None:
                break
        if s is None:
            plan = run_stage("planning (front end, passes, lowering)", kernel_id,
                             spec.plan, prepared)
            check_limits(plan, kernel_id)
            if mode == "off" and plan.variants and (len(plan.variants) > 1 or plan.spaces):
                plan = dataclasses.replace(plan, variants=plan.variants[:1], spaces=())
                keys = (first,)
            seed = f"{kernel_id}|{plan.signature}"
            tuning = Tuning(kernel_id, plan.signature, [v.name for v in plan.variants],
                            code=code)
            now, later = tiers(plan, tuning)
            if plan.spaces and (later is None or tuning.remembered not in (None, tuning.winner)):
                # Not tiered, or the remembered winner may be a point: the points now (a
                # tiered first call plans them on the builder thread, see build_late).
                # Exhaustive tuning times every point of a space, not a sample.
                plan, spaces = run_stage(
                    "planning (the sampled points of its spaces)", kernel_id,
                    functools.partial(expand_spaces, whole=tuning.mode == "exhaustive",
                                      keep=tuning.remembered), plan, seed)
                tuning = Tuning(kernel_id, plan.signature, [v.name for v in plan.variants],
                                code=code)
                tuning.spaces = spaces
                now, later = tiers(plan, tuning)
            quick = quick_first(tuning, later)
            try:
                found, source, broken = build_variants(now, kernel_id, quick=quick)
            except CompileError as exc:
                if later is None:
                    raise
                # The first tier does not compile on its own: the others, now.
                found, source, broken, rest, spaces = run_stage(
                    "planning (the sampled points of its spaces)", kernel_id, build_late,
                    later, kernel_id, seed)
                plan = dataclasses.replace(rest, variants=now.variants + rest.variants)
                tuning.add([v.name for v in rest.variants], spaces)
                broken[now.variants[0].name] = f"does not compile: {str(exc)[:200]}"
                later, quick = None, False
            for name, why in broken.items():  # shown by `asp tune show`, never picked
                tuning.exclude(name, why)
            s = Specialization(kernel=kernel_id, signature=plan.signature, specs=plan.specs,
                               entries={n: e for n, (e, _, _) in found.items()}, tuning=tuning,
                               plan=plan, source=source, code=code,
                               repeatable=plan.repeatable,
                               libraries={n: (lib, sym) for n, (_, lib, sym) in found.items()})
            if later is not None:
                s.build_later(later, spec, rebuild=[v.name for v in now.variants] if quick
                              else (), defer=prepared.unsuited)
            if plan.check_args is not None:
                try:
                    run_stage("checking against the Python", kernel_id,
                              check_variants, s, spec, prepared.args)
                except CheckError:
                    if s.pending is None:
                        raise
                    # The first tier disagrees with the Python: wait for the others.
                    s.absorb(prepared.args, wait=True)
                    if not s.tuning.candidates():
                        raise
            if key:
                def save(s: Specialization, keys=keys, plan=plan) -> None:
                    if all(n in s.check_failures for n in s.libraries):
                        return  # nothing a later process could run
                    for k in keys:
                        save_record(k, variants=dict(s.libraries), specs=plan.specs,
                                    ret=plan.ret, errors=plan.errors,
                                    excluded=dict(s.check_failures),
                                    repeatable=plan.repeatable)
                if s.pending is None:
                    save(s)
                else:
                    s.on_complete = save
        s.build_seconds = time.perf_counter() - t0
        return s

    @staticmethod
    def _load(key: str, kernel_id: str, signature: str, code: str) -> Specialization | None:
        rec = load_record(key)
        if rec is None:
            return None
        variants, specs, ret, errors, excluded, libs, repeatable = rec
        if all(name in excluded for name in variants):
            return None  # (written so by an older asp): build and check again
        entries = {name: make_entry(libs[lib].address(sym), specs, ret=ret, errors=errors,
                                    keepalive=libs[lib])
                   for name, (lib, sym) in variants.items()}
        tuning = Tuning(kernel_id, signature, list(entries), code=code)
        for name, why in excluded.items():
            if name in entries:
                tuning.exclude(name, why)
        return Specialization(kernel=kernel_id, signature=signature, specs=specs,
                              entries=entries, tuning=tuning, check_failures=dict(excluded),
                              code=code, repeatable=repeatable)

    # -- introspection ----------------------------------------------------------------------
    def run_variant(self, name: str, *args):
        """Run one named variant (for tests: every variant against the Python)."""
        prepared = self.specializer.prepare(args)
        s = self._specialization(prepared)
        s.absorb(prepared.args, wait=True)
        if prepared.complete is not None:
            prepared.args = prepared.complete((name,))
        result = s.entries[name](*prepared.args)
        if result is MISS:
            raise LoadError(f"variant {name} rejected the arguments", kernel=s.kernel)
        return prepared.finish(result) if prepared.finish else result

    @property
    def specializations(self) -> dict[str, Specialization]:
        """This process's specializations by signature (a copy of the mapping)."""
        return dict(self._specs)

    def chosen_variant(self, *args) -> str | None:
        """The variant calls with ``args`` run now: the tuner's winner, ``'python'``
        after a fallback, or None while the tuner is still trying variants."""
        prepared = self.specializer.prepare(args)
        if prepared.signature in self._failed or config.jit_disabled():
            return "python"
        s = self._specs.get(prepared.signature)
        return None if s is None else s.tuning_for(prepared.bucket, prepared.unsuited).winner

    def clear(self) -> None:
        """Forget the in-process specializations (the disk cache stays)."""
        self._hot = None
        self._hot_buckets = {}
        self._specs.clear()
        self._failed.clear()
        self._warned = False
