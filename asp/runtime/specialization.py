"""One signature's compiled variants, and choosing among them per call.

:class:`Specialization` holds the guarded entries (built by :mod:`asp.runtime.build`)
and the tuning of each size bucket.  :func:`run_stage` turns an
exception escaping a specializer's stage into a fallback naming the stage.

A first call is *tiered* (:func:`tiers`): one variant (the remembered winner, or the
specializer's first, its safest) is built before the first result; the others are
built on a background thread (gcc runs in a subprocess, without the GIL) and join the
tuning when the slow path next finds them ready (:meth:`Specialization.absorb`), after
the same check against the Python.  The sampled points of the plan's search spaces are
planned on that thread too (:func:`build_late`), not before the first result.  When the
first variant is a guess (no winner is remembered), it is built *quick*
(:data:`QUICK`: ``-O1`` without inlining, a fifth of ``-O3``'s compile time for a 3-D
kernel with a boundary mode) and rebuilt fully optimized with the late variants; no call
is served from the hot path before the rebuilt entry replaces it, since no decision is
made while variants are pending.  The builder thread is joined at interpreter exit (a
build in progress finishes: every cache file is written to a temporary name and renamed,
and no compiler outlives the process), and the signatures whose late variants were never
absorbed are absorbed then, so their warm-start records are written.
"""
from __future__ import annotations

import atexit
import dataclasses
import os
import time
import warnings
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from asp.errors import LoadError, SpecializationError
from asp.runtime.abi import MISS, OPENMP, ArgSpec
from asp.runtime.build import (
    QUICK,
    build_late,
    build_variants,
    expand_spaces,
    quick_first,
    tiers,
)
from asp.runtime.check import check_variants
from asp.runtime.plan import Plan
from asp.tune.tuner import MAX_WARM, WARM_SECONDS, Tuning

__all__ = ["QUICK", "Specialization", "build_late", "build_variants", "check_limits",
           "expand_spaces", "quick_first", "run_stage", "tiers", "wait_for_builds"]

# One builder: the late variants of one kernel after another, each kernel's in at most
# LATE_UNITS compilers at once (asp.runtime.build), leaving other cores to the user's
# program.
_BUILDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asp-build")
#: A repeatable call (Plan.repeatable) is timed right after an untimed run of its own only
#: when its block's warm-up calls took less than this each: what the untimed run corrects
#: (threads woken after a gap, an output no longer in cache) is tens of microseconds,
#: while running a long call twice doubles the tuning's cost.  (16 blocked steps on a
#: 4112 x 8192 Dask block took 0.25 s; every timed call of its tuning took 0.5, and the
#: variants' spread kept them apart for longer.)
REPEAT_BELOW = 5e-3
_PENDING: weakref.WeakSet = weakref.WeakSet()


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
    stale: set = field(default_factory=set)  # buckets whose winner was reopened since
    # the hot path was set
    libraries: dict[str, tuple[str, str]] = field(default_factory=dict)  # name -> (lib, symbol)
    pending: Future | None = None  # the late variants' build (a tiered first call)
    on_complete: Callable[[Specialization], None] | None = None  # every variant is in
    _specializer: object = None  # whose Python checks the late variants
    _rebuild: set = field(default_factory=set)  # built quick, rebuilt with the late ones
    _later: tuple = (None, "", frozenset())  # the late plan, its seed, the part deferred
    _job: tuple = ()  # the pending build: the builder's function and its arguments
    _orphaned: bool = False  # the pending build ran on a parent's builder (a fork's child)
    repeatable: bool = False  # the plan's: a tuning call may run its variant twice
    reference: tuple | None = field(default=None, repr=False)  # (check inputs, the
    # Python's arguments after, its result): arrays, kept out of the repr

    def __hash__(self) -> int:  # kept in a WeakSet while variants are pending
        return id(self)

    __eq__ = object.__eq__

    @property
    def variant_names(self) -> list[str]:
        return list(self.entries)

    def tuning_for(self, bucket: str, unsuited=None) -> Tuning:
        """The tuning of one size bucket (``""``: the signature's own); ``unsuited``: the
        call's :attr:`~asp.runtime.Prepared.unsuited`."""
        t = self.buckets.get(bucket) if bucket else self.tuning
        if t is None:
            t = Tuning(self.kernel, f"{self.signature} {bucket}", self.tuning.variants,
                       mode=self.tuning.mode, code=self.code)
            t.pending = set(self.tuning.pending)
            if t.winner in t.pending:
                # Remembered, but not built yet (this process has no record: the one that
                # tuned ended, or the kernel's globals were rebound and bound back, before
                # its late variants were in): it wins when it joins (Tuning.join).
                t.winner, t.recorded = None, {}
            t.spaces = self.tuning.spaces
            for v, why in self.tuning.excluded.items():
                t.exclude(v, why)
            self.buckets[bucket] = t
        t.set_unsuited(unsuited)
        return t

    # -- the late variants of a tiered first call --------------------------------------
    def build_later(self, plan: Plan, specializer, *, rebuild: Sequence[str] = (),
                    defer: Callable[[str], str | None] | None = None) -> None:
        """Build ``plan``'s variants, and the sampled points of its spaces, on the builder
        thread (:func:`build_late`); they join the tuning when :meth:`absorb` finds them
        ready.  ``rebuild``: variants built quick before the first result, built again
        with them (their entries are replaced).  ``defer``: the first call's
        :attr:`~asp.runtime.Prepared.unsuited`; the variants it names a reason for are
        built after the others, which its bucket's decision waits for (a 3-D 7-point
        kernel's streaming variants are 0.7 s of the 1.6 s its late variants take at
        64^3, a size at which it never runs them)."""
        self._rebuild = set(rebuild)
        seed = f"{self.kernel}|{plan.signature}"  # the points built: this seed's sample
        self.tuning.pending = {v.name for v in plan.variants} | {
            n for sp in plan.spaces for n in sp.pending_names(seed)}
        self._specializer = specializer
        deferred = frozenset(n for n in self.tuning.pending if defer is not None and defer(n))
        if deferred and not (self._rebuild or self.tuning.pending - deferred):
            deferred = frozenset()  # nothing to build before them
        self._later = (plan, seed, deferred)
        plan = dataclasses.replace(plan, variants=(
            *(v for v in self.plan.variants if v.name in self._rebuild), *plan.variants)) \
            if self._rebuild and self.plan is not None else plan
        self._submit((build_late, plan, self.kernel, seed,
                      frozenset(n for n in self.entries if n not in self._rebuild) | deferred))

    def _submit(self, args: tuple) -> None:
        self._job = args  # submitted again in a child of fork() (_builder_after_fork)
        try:
            self.pending = _BUILDER.submit(*args)
        except RuntimeError:  # the interpreter is shutting down: build them here
            self.pending = Future()
            try:
                self.pending.set_result(args[0](*args[1:]))
            except Exception as exc:  # noqa: BLE001 - absorb() excludes them
                self.pending.set_exception(exc)
        _PENDING.add(self)

    def absorb(self, call_args: tuple | None = None, *, wait: bool = False) -> None:
        """Take in the late variants if their build is done (or wait for it): check them
        against the Python (on the main thread, like every check), exclude those that
        failed, let the others be tuned.  Never raises: a late variant that cannot be
        had is excluded, and the variants already in keep running."""
        if self._orphaned:  # a child of fork(): its parent's build, started here at need
            self._orphaned = False
            self._submit(self._job)
        f = self.pending
        if f is None or not (wait or f.done()):
            return
        self.pending = None
        _PENDING.discard(self)
        later, seed, deferred = self._later
        names = {n for n in self.tuning.pending if not n.startswith("space:")} - deferred
        added: list[str] = []
        try:
            found, source, broken, plan, spaces = f.result()
            if self.source is not None:  # what a reader of the specialization's C expects
                self.source += "\n" + source
            known = set(self.tuning.variants)
            added = [v.name for v in plan.variants if v.name not in known]
            names.update(set(added) - deferred)
            if self.plan is not None:
                self.plan = dataclasses.replace(self.plan, variants=self.plan.variants + tuple(
                    v for v in plan.variants if v.name in added))
        except Exception as exc:  # noqa: BLE001 - the build failed: the early tier stays
            found, spaces = {}, {}
            broken = {n: f"{type(exc).__name__}: {exc}"[:300] for n in names}
        for t in (self.tuning, *self.buckets.values()):
            t.add(added, spaces)
        for name, (entry, lib, symbol) in found.items():
            self.entries[name] = entry
            self.libraries[name] = (lib, symbol)
        for name in names:
            if name not in found:
                self.tuning.exclude(name, broken.get(name, "was not built"))
        # A rebuilt first tier is checked like the late ones; one whose rebuild failed
        # keeps its quick entry (it was never pending, so it is not excluded above).
        names.update(n for n in self._rebuild if n in found)
        if found and self.plan is not None and self.plan.check_args is not None:
            try:
                check_variants(self, self._specializer, call_args, names=list(found))
            except Exception as exc:  # noqa: BLE001 - e.g. the Python raised this time
                for name in found:
                    if name not in self.check_failures:
                        self.tuning.exclude(name, f"could not be checked: {exc}")
                        self.check_failures[name] = "could not be checked"
        for t in (self.tuning, *self.buckets.values()):
            for name, why in self.tuning.excluded.items():
                if name not in t.excluded:
                    t.exclude(name, why)
            t.join(names | {n for n in t.pending if n not in deferred})
        if deferred:  # the variants the first call's bucket does not run: built now
            self._later = (later, seed, frozenset())
            self._submit((build_late, later, self.kernel, seed, frozenset(), deferred))
        elif self.on_complete is not None:
            self.on_complete(self)

    def run(self, args: tuple, bucket: str = "", *, sampled: bool = True,
            complete: Callable[[tuple[str, ...]], tuple] | None = None,
            challenge: bool = True):
        """Run the call with the bucket's winner, or the variant the tuner picks.

        ``sampled``: the call reached the slow path because the hot entry sent it
        (one call in ``Tuning.sample_every()``) or there is none yet, so a winner's run
        is timed for verification; a caller whose every call takes the slow path (one
        that needs finishing) passes False, and one call in that many is timed.
        ``complete``: makes the arguments of the variant to run (``Prepared.complete``),
        called with the variant the tuner picks (each one, in exhaustive tuning).
        ``challenge``: False when ``args`` were made for the winner alone (a variant's
        plan): no other variant may run them (a matrix-powers rival ran the winner's plan
        arguments and its guard raised ValueError in ``ca_cg``)."""
        if self.pending is not None and OPENMP.ready():
            # The late variants compile on the other cores: the first tier's calls run on
            # one thread meanwhile, so gcc is not kept waiting by a team spinning for
            # work (a 3-D kernel's tuned steady state came 2.2 s after the first call
            # with the cores left to gcc, 4.1 s with the calls' team on both).
            was = OPENMP.get()
            OPENMP.set(1)
            try:
                return self._run(args, bucket, sampled, complete, challenge)
            finally:
                OPENMP.set(was)
        return self._run(args, bucket, sampled, complete, challenge)

    def _run(self, args: tuple, bucket: str, sampled: bool, complete, challenge=True):
        t = self.tuning_for(bucket)
        if complete is not None and t.winner is not None:
            args = complete((t.winner,))
        if t.winner is not None:
            if not (t.due() if not sampled else t.sample_every()):
                return self.entries[t.winner](*args)
            rival = t.challenger() if complete is None and challenge else None
            # Warmed as in a loop of its own calls, as its record was: after the slow
            # path's Python, the 512^2 heat step's ``static`` ran 97-219 us against 58 us
            # recorded, and such sampled calls reopened right decisions on a quiet machine.
            known = min(t.checks) if t.checks else t.expected()
            warm = self.repeatable and known is not None and known < REPEAT_BELOW
            if rival is not None:  # a rival runs this call: is it faster now?
                warmed = self._warm(rival, args) if warm else 0.0
                t.preempted_since()
                t0 = time.perf_counter()
                result = self.entries[rival](*args)
                seconds = time.perf_counter() - t0
                if result is not MISS and t.challenged(*t.undisturbed(seconds),
                                                       warmed=warmed):
                    self.stale.add(bucket)
                return result
            # A real call of the winner: timed, so a decision gone stale is reopened.
            if warm:
                self.entries[t.winner](*args)
            t.preempted_since()
            t0 = time.perf_counter()
            result = self.entries[t.winner](*args)
            t.last_run = time.perf_counter() - t0
            seconds, preempted = t.undisturbed(t.last_run)
            if result is not MISS and t.verify(seconds, preempted):
                self.stale.add(bucket)  # the runtime drops the bucket's hot entry
            return result
        if t.mode == "exhaustive":
            self._exhaustive(args, t, complete)
            return self.entries[t.winner](*(complete((t.winner,)) if complete else args))
        v = t.pick()
        if complete is not None:
            args = complete((v,))
        t.preempted_since()  # from here, not this tuning's last call (other buckets' follow)
        calls, spent = t.warmed
        if self.repeatable and t.timed_next(v) and spent < REPEAT_BELOW * max(calls, 1):
            # Timed right after an untimed run of its own, as in a loop of calls: after
            # the slow path's Python, a variant that keeps its output in cache looked no
            # faster than one that streams it (see Plan.repeatable).
            self.entries[v](*args)
        t0 = time.perf_counter()
        result = self.entries[v](*args)
        t.record(v, *t.undisturbed(time.perf_counter() - t0))
        return result

    def _warm(self, variant: str, args: tuple) -> float:
        """Untimed runs of a challenging ``variant`` (a repeatable call) before its timed
        one, as a race block warms a variant: until they took :data:`WARM_SECONDS`
        together, at least one, at most :data:`MAX_WARM`; returns the time of those after
        the first (what the challenge costs beyond what a sampled call of the winner
        does: one untimed run and the timed one).  One was not enough: after the winner
        ``stream_jam4``, ``static`` ran the 512^2 heat step in 99-116 us at its second
        call and 69 us in its steady state, so its challenges (not 1.2x faster than the
        winner's 93-110 us) left a provisional choice 1.27x slower in place."""
        times: list[float] = []
        while not times or (sum(times) < WARM_SECONDS and len(times) < MAX_WARM):
            t0 = time.perf_counter()
            self.entries[variant](*args)
            times.append(time.perf_counter() - t0)
        return sum(times[1:])

    def _exhaustive(self, args: tuple, tuning: Tuning, complete=None) -> None:
        # Outputs may accumulate (``out += ...``): restore them after every timed run.
        writable = [(a, a.copy()) for a, s in zip(args, self.specs)
                    if s.kind == "array" and s.write and isinstance(a, np.ndarray)]
        own = {v: complete((v,)) for v in tuning.candidates()} if complete else {}

        def run(v):
            try:
                r = self.entries[v](*own.get(v, args))
            finally:
                for a, saved in writable:
                    a[...] = saved
            if r is MISS:
                raise LoadError("guard miss in tuning")

        tuning.run_exhaustive(run)


def wait_for_builds(timeout: float | None = None) -> bool:
    """Block until every background build queued so far (late variants, sampled points
    of search spaces) has finished: True, or False if ``timeout`` seconds passed first.
    For measurements that must not share the cores with compilers (a benchmark timing a
    new process's first call right after work that left variants compiling).  The
    variants join their tuning at their kernel's next call, as always."""
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not timeout >= 0):
        raise ValueError(f"timeout must be None or a number of seconds >= 0, got {timeout!r}")
    try:
        marker = _BUILDER.submit(lambda: None)  # one worker, in order: after them all
    except RuntimeError:  # the interpreter is shutting down: nothing runs any more
        return True
    try:
        marker.result(timeout)
    except TimeoutError:
        return False
    return True


def _builder_after_fork() -> None:
    """In a child of ``fork()``: the builder thread stayed in the parent, with the builds
    it had not finished, whose futures would never complete here (a ``multiprocessing``
    worker's ``K.iterate``, which waits for every variant, hung).  A builder of the child's
    own builds them again, each when the child next takes its kernel's slow path (a child
    that never does compiles nothing; the parent's finished objects are found in the
    cache)."""
    global _BUILDER
    _BUILDER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="asp-build")
    for s in list(_PENDING):
        if s.pending is not None and not s.pending.done() and s._job:
            s._orphaned = True


os.register_at_fork(after_in_child=_builder_after_fork)


@atexit.register
def _absorb_at_exit() -> None:
    """Late variants built but never absorbed (a winner served every call from the hot
    path): check them now so their signature's record is complete for the next process.
    The builder thread has finished by now (threads are joined before ``atexit``)."""
    for s in list(_PENDING):
        if s._orphaned:  # a fork's child that never called it again: not built here
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                while s.pending is not None:  # (a deferred part is built, here, after)
                    s.absorb(wait=True)
            except Exception:  # noqa: BLE001, S110 - never fail an exiting program
                pass


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
