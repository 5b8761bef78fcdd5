"""How long the operating system kept a kernel's threads from running while it was timed.

The tuner takes a timed call as evidence of its variant's speed less the time the
kernel's threads waited for a core, and leaves it out as noise when that wait was a large
share of it (:data:`asp.tune.tuner.PREEMPTED_SHARE`).  The threads that run a kernel are
the calling thread and its OpenMP team; the process's other Python threads never do.
Counting every thread of the process (``getrusage(RUSAGE_SELF)``) made a Dask worker's
tuning deaf: its event loop, profiler and heartbeat threads wake every few milliseconds,
are preempted on a busy machine, and 90 of the 121 timed calls of a 96x8192 strip's
blocked iteration were left out as noise.  Counting only the kernel's threads' preemptions
was not enough either: while the other worker computes, a strip's call (13-28 ms, one a
round) waited 0.2-4 ms for a core in 46 of 63 calls, and no strip was decided after 100
rounds when any preemption made a call noise.

:func:`kernel_waits` reads, per thread, the time that the calling thread and every thread
of the process that Python does not know (the OpenMP team, an idle BLAS pool: threads
that sleep never wait for a core) spent runnable but not running: the second field of
``/proc/self/task/<tid>/schedstat``, read through descriptors kept open (a few
microseconds a thread).  The list of threads is refreshed at most every
:data:`RELIST_SECONDS`, and at once when one of them is gone.  Where the kernel keeps no
such account (no ``schedstat``: not Linux, or a kernel built without it), each
involuntary context switch (:func:`kernel_preemptions`) counts as :data:`SLICE` seconds,
a scheduler's time slice: any preemption then makes a call shorter than a few tens of
milliseconds noise, as it did before waits were measured.
"""
from __future__ import annotations

import contextlib
import os
import resource
import threading
import time

__all__ = ["RELIST_SECONDS", "SLICE", "kernel_preemptions", "kernel_waits", "longest_wait"]

#: How often the process's threads are listed again (a team is made at the first
#: parallel call and then lives as long as the process).
RELIST_SECONDS = 0.5
#: Where waits are not accounted: the seconds one involuntary context switch counts as.
SLICE = 4e-3

_TASKS = "/proc/self/task"


class _Native:
    """Descriptors of one ``/proc`` file of each thread Python does not know."""

    def __init__(self, name: str):
        self.name = name
        self.fds: dict[int, int] = {}
        self.listed = -float("inf")

    def relist(self) -> None:
        python = {t.native_id for t in threading.enumerate()}
        try:
            tids = {int(t) for t in os.listdir(_TASKS)} - python
        except OSError:
            tids = set()
        for tid in set(self.fds) - tids:
            os.close(self.fds.pop(tid))
        for tid in tids - set(self.fds):
            try:
                self.fds[tid] = os.open(f"{_TASKS}/{tid}/{self.name}", os.O_RDONLY)
            except OSError:
                pass  # gone already
        self.listed = time.monotonic()

    def read(self, value) -> dict[int, int]:
        """``value(text)`` of each thread's file, by thread id."""
        if time.monotonic() - self.listed > RELIST_SECONDS:
            self.relist()
        values = {}
        for tid, fd in list(self.fds.items()):
            try:
                text = os.pread(fd, 4096, 0)
            except OSError:  # the thread ended: list again next time
                os.close(self.fds.pop(tid))
                self.listed = -float("inf")
                continue
            values[tid] = value(text)
        return values


def _switches(text: bytes) -> int:
    at = text.find(b"nonvoluntary_ctxt_switches:")
    return int(text[at + 27:text.index(b"\n", at)]) if at >= 0 else 0


def _waited(text: bytes) -> int:
    fields = text.split()
    return int(fields[1]) if len(fields) > 1 else 0


_STATUS = _Native("status")
_SCHEDSTAT = _Native("schedstat")
_OWN: dict[int, int] = {}  # a calling thread's native id -> its schedstat descriptor
_LOCK = threading.Lock()


def _after_fork() -> None:
    """In a child of ``fork()``: the descriptors read the parent's threads, and a thread
    of the parent's that held the lock is not here to release it."""
    global _LOCK
    _LOCK = threading.Lock()
    for fds in (_STATUS.fds, _SCHEDSTAT.fds, _OWN):
        for fd in fds.values():
            with contextlib.suppress(OSError):
                os.close(fd)
        fds.clear()
    _STATUS.listed = _SCHEDSTAT.listed = -float("inf")


os.register_at_fork(after_in_child=_after_fork)
_PROC = os.path.isdir(_TASKS) and hasattr(resource, "RUSAGE_THREAD")
_WAITS = _PROC and os.path.exists(f"{_TASKS}/{os.getpid()}/schedstat")


def kernel_preemptions() -> int:
    """Involuntary context switches so far of the threads that run this thread's kernels
    (see the module's docstring); compare two counts taken on the same thread."""
    if not _PROC:
        return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    own = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
    with _LOCK:
        return own + sum(_STATUS.read(_switches).values())


def _own_wait() -> int:
    tid = threading.get_native_id()
    for _ in range(2):
        fd = _OWN.get(tid)
        if fd is None:
            if len(_OWN) > 64:  # threads come and go (a pool's): forget the old ones
                for old in _OWN.values():
                    os.close(old)
                _OWN.clear()
            fd = _OWN[tid] = os.open(f"{_TASKS}/{tid}/schedstat", os.O_RDONLY)
        try:
            return _waited(os.pread(fd, 4096, 0))
        except OSError:  # a descriptor of an ended thread whose id this one reuses
            os.close(_OWN.pop(tid))
    raise OSError(f"no schedstat for thread {tid}")


def kernel_waits() -> dict[int, float]:
    """Seconds so far that each thread that runs this thread's kernels spent waiting for
    a core, by thread id (see the module's docstring); compare two readings taken on the
    same thread."""
    if not _WAITS:
        return {0: SLICE * kernel_preemptions()}
    with _LOCK:
        waits = _SCHEDSTAT.read(_waited)
        try:
            waits[threading.get_native_id()] = _own_wait()
        except OSError:  # no account for this thread: as a preemption
            waits[0] = SLICE * kernel_preemptions()
    return {tid: ns * 1e-9 for tid, ns in waits.items()}


def longest_wait(was, now) -> float:
    """The longest wait of one thread between two readings of :func:`kernel_waits` (a
    thread new since ``was`` waited all its time in between); for plain numbers (one
    reading for all the threads), their difference."""
    if not isinstance(now, dict):
        return now - was
    return max((w - was.get(tid, 0.0) for tid, w in now.items()), default=0.0)
