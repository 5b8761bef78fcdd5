"""The fuzzer's parent side: a worker process, crash recovery, counts, shrinking, reports.

:class:`Fuzzer` sends batches to a worker (:mod:`tests.fuzz.worker`) and survives
it: when the worker dies by a signal, the kernel it was running (from its
progress file) is a *crash*, and the batch runs again without it.  Mismatches,
errors and crashes are shrunk (:func:`shrink`: greedy, on the expression tree,
each candidate run in the worker) and written up in the findings file.
"""
from __future__ import annotations

import dataclasses
import os
import pickle
import signal
import struct
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

import numpy as np

from tests.fuzz.gen import EW, RD, ST, Batch, Body, E
from tests.fuzz.iterate import IT
from tests.fuzz.render import kernel_source
from tests.fuzz.worker import Outcome, Reply

__all__ = ["Fuzzer", "Stats", "shrink"]

ROOT = Path(__file__).resolve().parents[2]
WORKER_TIMEOUT = 300.0   # seconds one batch may take before the worker counts as hung


@dataclasses.dataclass
class Stats:
    kernels: int = 0
    compiles: int = 0
    cases: int = 0
    skipped: int = 0
    status: Counter = dataclasses.field(default_factory=Counter)
    fallbacks: Counter = dataclasses.field(default_factory=Counter)

    def add(self, reply: Reply) -> None:
        self.compiles += reply.compiles
        for o in reply.outcomes.values():
            self.kernels += 1
            self.cases += o.cases
            self.skipped += o.skipped
            self.status[o.status] += 1
            if o.status == "fallback":
                self.fallbacks[_reason(o.detail)] += 1

    def summary(self) -> str:
        s = self.status
        lines = [f"kernels {self.kernels}  compilations {self.compiles}  cases {self.cases} "
                 f"(+{self.skipped} where the Python raised, not compared)",
                 f"ok {s['ok']}  fallbacks {s['fallback']}  mismatches {s['mismatch']}  "
                 f"errors {s['error']}  crashes {s['crash']}"]
        for why, n in self.fallbacks.most_common(8):
            lines.append(f"  fallback x{n}: {why}")
        return "\n".join(lines)


def _reason(detail: str) -> str:
    """A fallback message without the kernel's own names and numbers."""
    import re

    return re.sub(r"'[^']*'", "'...'", re.sub(r"\S+\.py:\d+: ", "", detail))[:90]


class Fuzzer:
    """Runs batches in a worker process, restarting it when a kernel kills it."""

    def __init__(self, directory: str | None = None, *, threads: int = 2):
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="asp-fuzz-")
        self.dir = directory or self._tmp.name
        # ASP_TUNE=online: every variant compiled (the worker runs each one); 'off'
        # compiles only the first, so from 3e02318 to d170018 campaigns checked the first
        # variant of every elementwise, stencil and reduction kernel and no other.
        self.env = dict(os.environ, ASP_CACHE_DIR=os.path.join(self.dir, "cache"),
                        ASP_STRICT="1", ASP_TUNE="online", OMP_NUM_THREADS=str(threads),
                        PYTHONPATH=os.pathsep.join([str(ROOT), self.dir,
                                                    os.environ.get("PYTHONPATH", "")]))
        for name in ("ASP_DISABLE_JIT", "ASP_DUMP_IR"):
            self.env.pop(name, None)
        self.progress = os.path.join(self.dir, "progress")
        Path(self.progress).write_text("start\n")
        self.proc: subprocess.Popen | None = None
        self.count = 0

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            serve = "from tests.fuzz.worker import main; main()"
            self.proc = subprocess.Popen([sys.executable, "-c", serve],
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.DEVNULL, env=self.env, cwd=ROOT)
        return self.proc

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Fuzzer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _request(self, batch: Batch, skip: frozenset[int]) -> Reply | str:
        """The worker's reply, or why it died ('signal SIGFPE while run 3 chunk')."""
        self.count += 1
        proc = self._start()
        data = pickle.dumps({"batch": batch, "directory": self.dir, "tag": f"fz{self.count}",
                             "progress_path": self.progress, "skip": skip})
        try:
            proc.stdin.write(struct.pack("<Q", len(data)) + data)
            proc.stdin.flush()
            head = _read(proc, 8)
            reply = pickle.loads(_read(proc, struct.unpack("<Q", head)[0]))
            return reply
        except (OSError, EOFError, TimeoutError) as exc:
            if isinstance(exc, TimeoutError):
                proc.kill()
            rc = proc.wait()
            what = Path(self.progress).read_text().strip()
            sig = signal.Signals(-rc).name if rc < 0 else f"exit status {rc}"
            return f"{sig} during {what}"

    def run(self, batch: Batch) -> Reply:
        """Every kernel of ``batch``; a kernel that kills the worker is a 'crash'."""
        skip: set[int] = set()
        crashed: dict[int, Outcome] = {}
        while True:
            got = self._request(batch, frozenset(skip))
            if isinstance(got, Reply):
                got.outcomes.update(crashed)
                return got
            parts = got.split()
            idx = next((int(p) for p in parts[3:4] if p.isdigit()), None)
            if idx is None:  # died while building: blame the batch's first unrun kernel
                idx = min(i for i in range(len(batch.bodies)) if i not in skip)
            crashed[idx] = Outcome("crash", got)
            skip.add(idx)
            if len(skip) == len(batch.bodies):
                return Reply(crashed)


def _read(proc: subprocess.Popen, n: int) -> bytes:
    import select

    out = b""
    while len(out) < n:
        ready, _, _ = select.select([proc.stdout], [], [], WORKER_TIMEOUT)
        if not ready:
            raise TimeoutError("the worker hung")
        chunk = os.read(proc.stdout.fileno(), n - len(out))
        if not chunk:
            raise EOFError("the worker died")
        out += chunk
    return out


# -- shrinking ---------------------------------------------------------------------------------

def _smaller(e: E) -> list[E]:
    """Candidates for ``e``: its children of the same kind, then simple leaves."""
    out = [a for a in e.args if a.kind == e.kind]
    if e.op != "leaf":
        out += [E("leaf", v, kind=e.kind) for v in {"i": ("0", "1"), "f": ("1.0",),
                                                      "b": ("True",)}[e.kind]]
    for i, a in enumerate(e.args):
        for s in _smaller(a):
            out.append(dataclasses.replace(e, args=e.args[:i] + (s,) + e.args[i + 1:]))
    return out


def _body_candidates(b: Body) -> list[Body]:
    out: list[Body] = []
    if b.branch is not None:
        out.append(dataclasses.replace(b, branch=None))
    if b.nbr is not None:
        out.append(dataclasses.replace(b, nbr=None))
    if b.acc == "+=":
        out.append(dataclasses.replace(b, acc="="))
    for i in range(len(b.lets)):
        out.append(dataclasses.replace(b, lets=b.lets[:i] + b.lets[i + 1:]))
    out += [dataclasses.replace(b, result=r) for r in _smaller(b.result)]
    if b.nbr is not None:
        out += [dataclasses.replace(b, nbr=r) for r in _smaller(b.nbr)]
    for i, (name, e) in enumerate(b.lets):
        out += [dataclasses.replace(b, lets=b.lets[:i] + ((name, r),) + b.lets[i + 1:])
                for r in _smaller(e)]
    if b.branch is not None:
        for k in range(3):
            out += [dataclasses.replace(b, branch=b.branch[:k] + (r,) + b.branch[k + 1:])
                    for r in _smaller(b.branch[k])]
    for i, (name, kinds, hb) in enumerate(b.helpers):  # a smaller function of the user's
        out += [dataclasses.replace(b, helpers=b.helpers[:i] + ((name, kinds, c),)
                                    + b.helpers[i + 1:]) for c in _body_candidates(hb)]
    return sorted(out, key=Body.size)


def _single(batch: Batch, i: int, outcome: Outcome) -> Batch:
    """Kernel ``i`` alone; elementwise inputs cut to the first failing element."""
    inputs = batch.inputs
    if batch.specializer == EW and outcome.bad:
        j = outcome.bad[0][1]
        inputs = tuple(a[j:j + 1] if isinstance(a, np.ndarray) else a for a in inputs)
    return dataclasses.replace(batch, bodies=(batch.bodies[i],), inputs=inputs)


def shrink(fz: Fuzzer, batch: Batch, i: int, outcome: Outcome, *,
           budget: int = 80) -> tuple[Batch, Outcome]:
    """A smaller kernel with the same kind of failure, by greedy tree reduction."""
    cur = _single(batch, i, outcome)
    got = fz.run(cur).outcomes.get(0, Outcome("ok"))
    if got.status != outcome.status:
        return dataclasses.replace(batch, bodies=(batch.bodies[i],)), outcome
    best = got
    tries = 0
    improved = True
    while improved and tries < budget:
        improved = False
        for cand in _body_candidates(cur.bodies[0]):
            if tries >= budget:
                break
            tries += 1
            trial = dataclasses.replace(cur, bodies=(cand,))
            res = fz.run(trial).outcomes.get(0, Outcome("ok"))
            if res.status == outcome.status:
                cur, best, improved = trial, res, True
                break
    return cur, best


def describe(batch: Batch, outcome: Outcome, *, title: str) -> str:
    """A findings entry: kernel source, dtypes, inputs, expected vs got."""
    lines = [f"## {title}", f"- Specializer: {batch.specializer}; status: {outcome.status}",
             f"- Parameters: {', '.join(f'{n}: {d}' for n, d in batch.params)}"
             + (f"; boundary={batch.option('boundary')!r}" if batch.specializer == ST
                else ""),
             "```python", kernel_source(batch, 0), "```"]
    if outcome.detail:
        lines.append(f"- Detail: {outcome.detail}")
    if batch.specializer == RD:
        lines.append("- Inputs (threads: 2; parallel threshold "
                     f"{'0' if batch.option('parallel') == '1' else 'default'}):")
        lines += [f"  {n} = {np.array2string(np.asarray(a), precision=17, threshold=200)}"
                  .replace("\n", "\n  ") for (n, _), a in zip(batch.params, batch.inputs)]
    elif batch.specializer == IT:
        u, a, s = batch.inputs
        lines.append(f"- {batch.option('steps')} steps of the kernel on u (shape {u.shape}); "
                     f"s={s!r}; (reach, neighbourhood 1): {batch.option('geometry') or 'default'}; "
                     f"threads: 2; parallel threshold "
                     f"{'0' if batch.option('parallel') == '1' else 'default'}; u and a:")
        lines += ["  " + np.array2string(g, precision=17, threshold=60).replace("\n", "\n  ")
                  for g in (u, a)]
    elif batch.specializer != EW:
        s, a, b, out = batch.inputs
        lines.append(f"- Inputs: s={s!r}; a, b, out (initial) of shape {a.shape}:")
        lines += ["  " + np.array2string(g, precision=17, threshold=200).replace("\n", "\n  ")
                  for g in (a, b, out)]
    for label, j, point, exp, got in outcome.bad[:3]:
        where = f"element {point!r}" if point is not None else f"point {j}"
        at = "" if j is None else f" at {where}:"  # a reduction: one result
        lines.append(f"- {label}:{at} expected {exp!r}, got {got!r}")
    return "\n".join(lines) + "\n"
