"""Picking the fastest variant of a kernel for one signature.

Modes (``ASP_TUNE``):

* ``off``: always the first variant (the specializer lists its safest first).
* ``online`` (default, the paper's way): each real call runs the variant with
  the fewest timings so far, round-robin, until each has ``rounds`` timings;
  then the one with the smallest best time wins for good.  Interleaving the
  rounds and taking each variant's minimum keeps a one-off stall (a page fault
  storm, another process) from crowning a slow variant.
* ``exhaustive``: before the first real call, every variant is run with
  warm-up and interleaved repetitions on the real arguments (the caller
  restores outputs between runs), and the fastest minimum wins.

A winner is stored in the tuning database and reused by later processes
without re-timing.  A variant that fails (raises) is excluded, not fatal.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from asp import config
from asp.tune import db

__all__ = ["Tuning", "time_call"]


def time_call(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Tuning:
    """The state of the choice among ``variants`` for one (kernel, signature)."""

    def __init__(self, kernel: str, signature: str, variants: Sequence[str], *,
                 mode: str | None = None, rounds: int = 3, code: str = ""):
        """``code`` fingerprints the generator of the variants (e.g.
        :func:`asp.runtime.generator_fingerprint`): a winner timed on other code is
        never reused, even for the same kernel name and signature."""
        if not variants:
            raise ValueError("Tuning needs at least one variant")
        self.kernel = kernel
        self.signature = f"{signature} [code {code[:12]}]" if code else signature
        self.variants = list(variants)
        self.mode = mode or config.tune_mode()
        self.rounds = rounds
        self.trials: dict[str, list[float]] = {v: [] for v in self.variants}
        self.excluded: dict[str, str] = {}
        self.winner: str | None = None
        if self.mode == "off" or len(self.variants) == 1:
            self.winner = self.variants[0]
        else:
            found = db.lookup(kernel, self.signature)
            if found is not None and found[0] in self.variants:
                self.winner = found[0]

    @property
    def done(self) -> bool:
        return self.winner is not None

    def candidates(self) -> list[str]:
        return [v for v in self.variants if v not in self.excluded]

    def pick(self) -> str:
        """The variant to run for the next call."""
        if self.winner is not None:
            return self.winner
        live = self.candidates()
        if not live:
            raise RuntimeError(f"every variant of {self.kernel} failed")
        return min(live, key=lambda v: len(self.trials[v]))

    def record(self, variant: str, seconds: float) -> None:
        """Add one timing; decide once every live variant has ``rounds`` of them."""
        if self.winner is not None:
            return
        self.trials[variant].append(seconds)
        live = self.candidates()
        if live and all(len(self.trials[v]) >= self.rounds for v in live):
            self._decide(live)

    def exclude(self, variant: str, reason: str) -> None:
        """Never pick ``variant`` (it failed to build, to run, or to agree with Python)."""
        self.excluded[variant] = reason
        if self.winner == variant:
            self.winner = None
        live = self.candidates()
        if len(live) == 1:
            self.winner = live[0]
        elif live and all(len(self.trials[v]) >= self.rounds for v in live):
            self._decide(live)

    def run_exhaustive(self, run: Callable[[str], object], *, min_reps: int = 5,
                       max_reps: int = 30, budget: float = 0.5) -> str:
        """Time every live variant with ``run(variant)``, interleaved; return the winner."""
        live = self.candidates()
        for v in list(live):  # warm-up, and weed out variants that fail
            try:
                run(v)
            except Exception as exc:  # a broken variant is excluded, not fatal
                self.exclude(v, f"{type(exc).__name__}: {exc}")
        live = self.candidates()
        if not live:
            raise RuntimeError(f"every variant of {self.kernel} failed")
        start = time.perf_counter()
        for rep in range(max_reps):
            for v in live:
                self.trials[v].append(time_call(lambda v=v: run(v)))
            if rep + 1 >= min_reps and time.perf_counter() - start > budget:
                break
        self._decide(live)
        return self.winner

    def _decide(self, live: list[str]) -> None:
        best = {v: min(self.trials[v]) for v in live}
        self.winner = min(live, key=best.get)
        timings = {v: {"best": best[v], "runs": len(self.trials[v])} for v in live}
        timings.update({v: {"excluded": why} for v, why in self.excluded.items()})
        try:
            db.store(self.kernel, self.signature, self.winner, timings, self.mode)
        except Exception:  # a read-only cache must not break the call
            pass
