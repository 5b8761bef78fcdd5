"""Counting the preemptions that can disturb a kernel's timed call.

The tuner leaves out, as noise, a timed call during which the operating system preempted
a thread that runs the kernel (:data:`asp.tune.tuner.MAX_PREEMPTED`).  The threads that
run a kernel are the calling thread and its OpenMP team; the process's other Python
threads never do.  Counting every thread of the process (``getrusage(RUSAGE_SELF)``) made
a Dask worker's tuning deaf: its event loop, profiler and heartbeat threads wake every few
milliseconds, are preempted on a busy machine, and 90 of the 121 timed calls of a
96x8192 strip's blocked iteration (9 ms each, one thread) were left out as noise, its
decision never made within 300 s of rounds.

:func:`kernel_preemptions` sums the involuntary context switches of the calling thread
(``getrusage(RUSAGE_THREAD)``) and of every thread of the process that Python does not
know (the OpenMP team, an idle BLAS pool: threads that sleep are never preempted), read
from ``/proc/self/task/<tid>/status`` through descriptors kept open (about 10 us a
thread).  The list of threads is refreshed at most every :data:`RELIST_SECONDS`, and at
once when one of them is gone.  Without ``/proc`` (not Linux), the whole process's count.
"""
from __future__ import annotations

import os
import resource
import threading
import time

__all__ = ["RELIST_SECONDS", "kernel_preemptions"]

#: How often the process's threads are listed again (a team is made at the first
#: parallel call and then lives as long as the process).
RELIST_SECONDS = 0.5

_TASKS = "/proc/self/task"


class _Native:
    """Descriptors of the status files of the threads Python does not know."""

    def __init__(self):
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
                self.fds[tid] = os.open(f"{_TASKS}/{tid}/status", os.O_RDONLY)
            except OSError:
                pass  # gone already
        self.listed = time.monotonic()

    def switches(self) -> int:
        if time.monotonic() - self.listed > RELIST_SECONDS:
            self.relist()
        total = 0
        for tid, fd in list(self.fds.items()):
            try:
                text = os.pread(fd, 4096, 0)
            except OSError:  # the thread ended: list again next time
                os.close(self.fds.pop(tid))
                self.listed = -float("inf")
                continue
            at = text.find(b"nonvoluntary_ctxt_switches:")
            if at >= 0:
                total += int(text[at + 27:text.index(b"\n", at)])
        return total


_NATIVE = _Native()
_LOCK = threading.Lock()
_PROC = os.path.isdir(_TASKS) and hasattr(resource, "RUSAGE_THREAD")


def kernel_preemptions() -> int:
    """Involuntary context switches so far of the threads that run this thread's kernels
    (see the module's docstring); compare two counts taken on the same thread."""
    if not _PROC:
        return resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw
    own = resource.getrusage(resource.RUSAGE_THREAD).ru_nivcsw
    with _LOCK:
        return own + _NATIVE.switches()
