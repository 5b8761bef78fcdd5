"""What every benchmark module shares: figures with targets, and side-by-side timing.

A benchmark module ``benchmarks/bench_<name>.py`` defines ``run(quick: bool) ->
list[Figure]``.  Competitors are timed *interleaved* in one run (A, B, C, A, B,
C, ...) and compared by their best times, so a noisy shared machine moves
them together and the ratios hold.
"""
from __future__ import annotations

import gc
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

__all__ = ["CallProbe", "Figure", "interleaved", "rss_mb", "time_once", "until_tuned"]


@dataclass
class Figure:
    """One measured figure beside its target.

    ``better`` says which way is good: ``'higher'`` (speed-ups, bandwidth) or
    ``'lower'`` (seconds, overhead ratios).  ``target`` may be None for a
    figure that is reported but has no target.
    """

    group: str
    name: str
    value: float
    target: float | None
    unit: str = "x"
    better: str = "higher"
    detail: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def met(self) -> bool | None:
        if self.target is None:
            return None
        return self.value >= self.target if self.better == "higher" else self.value <= self.target

    def as_dict(self) -> dict:
        d = asdict(self)
        d["met"] = self.met
        return d


def until_tuned(call: Callable[[], object], chosen: Callable[[], object], *,
                limit: float = 120.0) -> int:
    """Call ``call`` once, then until ``chosen()`` is not None (the online tuner decided;
    the late variants of a tiered first call compile in the background meanwhile), for
    at most ``limit`` seconds; returns the number of calls.  What is timed afterwards is
    the steady state users get, not the tuning.  The first call is unconditional:
    callers check its result, and a decision loaded from the tuning database (another
    signature of the same kernel already specialized in this process) would otherwise
    leave their outputs unwritten."""
    t0 = time.perf_counter()
    call()
    calls = 1
    while chosen() is None and time.perf_counter() - t0 < limit:
        call()
        calls += 1
    return calls


def time_once(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def interleaved(fns: dict[str, Callable[[], object]], *, repeat: int = 7,
                warmup: int = 1, number: int = 1,
                after: dict[str, Callable[[], object]] | None = None,
                settle: float = 0.0) -> dict[str, float]:
    """Best seconds per call of each function, timed in alternation.

    The garbage collector is off while a function is timed; ``after[name]``, if
    given, runs untimed after each call of ``name`` (e.g. to release what it made:
    Dask futures sit in reference cycles that only the collector frees).
    ``settle`` seconds pass (asleep, untimed) after every call: a thread pool keeps
    spinning for a while after its work is done (OpenBLAS's for ~0.1-0.2 s), and on
    a machine with few cores that spinning takes them from the next function timed
    (scikit-learn's EM step, then asp's: asp measured 38 ms instead of 19).
    """
    after = after or {}
    for name, fn in fns.items():
        for _ in range(warmup):
            fn()
            if name in after:
                after[name]()
    best = {k: float("inf") for k in fns}
    gc_was = gc.isenabled()
    try:
        for _ in range(repeat):
            for k, fn in fns.items():
                gc.disable()
                t0 = time.perf_counter()
                for _ in range(number):
                    fn()
                best[k] = min(best[k], (time.perf_counter() - t0) / number)
                if gc_was:
                    gc.enable()
                if k in after:
                    after[k]()
                if settle:
                    time.sleep(settle)
    finally:
        if gc_was:
            gc.enable()
    return best


def rss_mb() -> float:
    """This process's peak resident set size so far, in MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def quick_mode() -> bool:
    return os.environ.get("ASP_BENCH_QUICK", "") not in ("", "0")


def quiet_cores(timeout: float = 120.0) -> float:
    """Wait until this process's background compilers are done (late variants and
    sampled points queued by the measurements before), and return the seconds waited.
    A new process's cold first call timed while they still run shares the cores with
    them: in one whole ``make bench`` a 2-D first call took 0.35 s against 0.14-0.17 s
    alone, timed right after the iterate blocking space's late variants were queued."""
    from asp.runtime import wait_for_builds

    t0 = time.perf_counter()
    wait_for_builds(timeout)
    return time.perf_counter() - t0


def cpu_ticks() -> tuple[int, int]:
    """(steal, all) clock ticks of every CPU since boot (``/proc/stat``; (0, 0) where it
    cannot be read): the share of a span's ticks the hypervisor gave to other guests."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


def steal_share(before: tuple[int, int], after: tuple[int, int]) -> float:
    """The share of the CPU time between two :func:`cpu_ticks` readings that was stolen
    (0.0 when nothing was counted)."""
    total = after[1] - before[1]
    return (after[0] - before[0]) / total if total > 0 else 0.0


class CallProbe:
    """Where the wall time of one call went, for a figure's detail: ``with CallProbe() as
    p: f()``, then ``p.spent()``.  A slow cold first call is either work (this thread's
    CPU, the compilers' CPU), waiting for a core (the thread's run-queue delay, from
    ``/proc/thread-self/schedstat``), or neither (disk, page faults, locks): the
    remainder.  Linux only; elsewhere the fields it cannot read are 0."""

    def __enter__(self) -> CallProbe:
        self.before = _sample()
        return self

    def __exit__(self, *exc) -> None:
        self.after = _sample()

    def spent(self) -> dict:
        d = {k: self.after[k] - self.before[k] for k in self.before}
        # the compilers run while this thread waits for them, so their CPU is part of wall
        d["other"] = d["wall"] - d["cpu"] - d["queued"] - d["gcc"]
        d["threads"] = d.pop("process") - d["cpu"]  # this process's other threads
        return d

    @staticmethod
    def describe(d: dict) -> str:
        return (f"this thread {d['cpu']:.2f} s CPU + {d['queued']:.2f} s queued for a core, "
                f"compilers {d['gcc']:.2f} s CPU, unaccounted {d['other']:.2f} s (the "
                f"process's other threads used {d['threads']:.2f} s CPU meanwhile); "
                f"{d['majflt']:.0f} major faults, {d['read'] / 1e6:.1f} MB read from disk")


def _sample() -> dict:
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(
        resource.RUSAGE_CHILDREN)
    s = {"wall": time.perf_counter(), "cpu": 0.0, "queued": 0.0,
         "process": me.ru_utime + me.ru_stime,
         "gcc": kids.ru_utime + kids.ru_stime, "majflt": me.ru_majflt + kids.ru_majflt,
         "read": (me.ru_inblock + kids.ru_inblock) * 512.0}
    try:
        with open("/proc/thread-self/schedstat") as f:
            ran, queued = f.read().split()[:2]
        s["cpu"], s["queued"] = int(ran) / 1e9, int(queued) / 1e9
    except (OSError, ValueError):
        s["cpu"] = time.thread_time()
    return s
