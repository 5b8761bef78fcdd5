"""Picking the fastest variant of a kernel for one signature.

Modes (``ASP_TUNE``):

* ``off``: always the first variant (the specializer lists its safest first).
* ``online`` (default, the paper's way): real calls run the variants in turn, the one
  with the fewest timings next, each for a *block* of consecutive calls: a warm-up
  (:data:`WARM_SECONDS`, :data:`SETTLING`: the state the variant before left, fresh
  pages), then a few timed calls of which the fastest counts (:data:`TIMED_CALLS`).
  Long or sparse calls of a variant timed before skip the warm-up (:data:`LONG_CALL`,
  :data:`SPARSE`); a call that may run twice (``Plan.repeatable``) runs untimed right
  before its timed run.  Noise is timed again: a call far slower than the fastest so far
  (:data:`SUSPECT`), or one that waited for a core (:data:`PREEMPTED_SHARE`; a shorter
  wait is taken off its time); a decision made with much of it is provisional
  (:data:`NOISY_SHARE`).  From ``rounds`` timings each on, the variant with the smallest
  median wins as soon as it is *separated*: every other variant's fastest timing is
  slower than its median; racing drops the far slower ones on the way (:data:`RACE_FROM`,
  :data:`RACE_SLOWER`, :data:`RACE_CLOSE`).  Variants still inseparable at
  ``max_rounds`` are as good as each other: the smallest median wins, *provisional*
  (``asp tune show`` says so), and the next process tunes again.  Verification of the
  winner: :mod:`asp.tune.verify`.
* ``exhaustive``: before the first real call, every variant is run with warm-up and
  interleaved repetitions on the real arguments (the caller restores outputs between
  runs); the fastest minimum wins.

A winner is stored in the tuning database and reused by later processes without
re-timing.  A failing variant is excluded; with none left, a CheckError (falls back).
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

from asp import config
from asp.errors import CheckError
from asp.tune import db
from asp.tune.preempt import kernel_waits, longest_wait
from asp.tune.verify import _DECISION, Verification

__all__ = ["MAX_ROUNDS", "ROUNDS", "TIMED_CALLS", "Tuning", "calls_to_decide", "time_call"]

#: Timed rounds before a decision can be made, and the budget after which the best so
#: far wins provisionally.
ROUNDS = 3
MAX_ROUNDS = 6
#: A block's warm-up: calls until they took this long together, at least one and at most
#: :data:`MAX_WARM` (then one timed call).  One is not enough for grids that live in the
#: last-level cache: after a streaming variant, ``static`` on the 512^2 heat step took
#: 115-129, 80, 64, 56, 48 us on its first calls and 42 us from the eighth on.
WARM_SECONDS = 1e-3
MAX_WARM = 8
#: Then it goes on while its calls still get faster: the fastest of its last
#: :data:`SETTLE_WINDOW` calls under :data:`SETTLING` times the fastest before them, for
#: at most :data:`MAX_SETTLE` calls and :data:`SETTLE_SECONDS`.  On an Intel Xeon,
#: ``static``'s race timings after 8 such calls were still 10-40 % above its steady state,
#: and 5 of 20 quiet tunings chose a streaming variant 1.07-1.5x slower.
SETTLE_WINDOW = 4
SETTLING = 0.98
MAX_SETTLE = 32
SETTLE_SECONDS = 4e-3
#: A timed call is suspect (noise: a thread of the team waited for a core) when it is
#: this many times slower than the fastest timing of any variant, and slower by more than
#: the floor and less than what a few scheduler time slices cost (a variant that much
#: slower is slow, and re-timing it would be dear); a block re-times it at most
#: :data:`MAX_RETRY` times.
SUSPECT = 3.0
SUSPECT_FLOOR = 2e-4
SUSPECT_CEILING = 30e-3
MAX_RETRY = 4
#: A timed call counts less the time a thread of the kernel's waited for a core during it
#: (or in its warm-up run just before it: :mod:`asp.tune.preempt`).  One below
#: :data:`SUSPECT_CEILING` that waited more than :data:`PREEMPTED_SHARE` of its time is
#: noise (its caches were another's too), unless it ran no more than
#: :data:`PREEMPTED_SLACK` slower than the variant's fastest timing so far: the block times
#: its next call instead.  Under a busy loop and a bursty one on 2 cores, every call of
#: whole tuning sessions was preempted (3.6-15 ms each); such calls still do the caller's
#: work, so waiting for undisturbed ones costs little: at most :data:`MAX_PREEMPTED` of
#: them per tuning, then they count.
MAX_PREEMPTED = 200
PREEMPTED_SLACK = 0.05
PREEMPTED_SHARE = 0.1
#: A decision is *noisy* when the calls left out as noise were at least this share of the
#: timed ones: the machine was busy, and what wins on a busy machine may not win on a quiet
#: one (under a busy loop and a bursty one, ``static`` ran its undisturbed calls at
#: 75-165 us against 42 us quiet, while a streaming variant kept 50-70 us).  A noisy
#: decision is provisional, and this process tunes again once :data:`VERIFY_WINDOW`
#: sampled calls in a row ran with no thread preempted (the load is gone).
NOISY_SHARE = 0.25
#: A block's timed calls, after its warm-up: calls until they took this long together, at
#: least one and at most :data:`TIMED_CALLS`; the block's timing is the fastest of them.
#: One call's time jitters with the team's start and the caches (noise only slows a
#: run): on a quiet Zen 4 the 512^2 heat step's ``static``, timed one call per block,
#: ran 82-126 us in tunings where it runs 63-78 us in a loop, and a streaming variant
#: 1.5-2x slower in steady state won about one tuning in eight.
TIMED_SECONDS = 2.5e-4
TIMED_CALLS = 3
#: Racing: from this many timed rounds on, a variant whose fastest run is this much
#: slower than the best median is dropped (the points of a search space that lose early
#: cost few calls; the margin is wide enough that noise, which only slows runs, cannot
#: make the best variant's fastest run lose it).
RACE_FROM = 2
RACE_SLOWER = 1.5
#: And from :data:`ROUNDS` timed rounds on, a variant whose fastest run is this much
#: slower than the best median: separated from the best (the decision's own test, with
#: a margin), it could win only if the best's later timings rose past its fastest.  (A
#: 4096 x 8192 blocked iteration, 25 variants, 0.2-0.7 s a call: 8 were left after two
#: rounds, the 4 of depth 16 11-30 % slower, and all 8 raced 6 rounds, 164 calls.)
RACE_CLOSE = 1.1
#: A block of a variant already timed once (a kept timing) times its first call when
#: that call took this long: a warm-up pays for the state the variant before left
#: (caches, a page or two), a few milliseconds at most, a few per cent of such a call,
#: while the warm-up call itself doubles the block (a variant's first block still warms
#: up: its first call faults in its code and buffers).
LONG_CALL = 0.1
#: Nor when this tuning's previous call ended this many times the call's time before it
#: began: the caller works between its calls, and leaves the caches to that work in its
#: steady state too (a Dask worker's 20 ms strip after its block's 0.6 s core).
SPARSE = 10.0


def calls_to_decide(variants: int, *, at_most: bool = True) -> int:
    """How many online calls a decision among ``variants`` takes: at most (the budget
    spent), or at least (separated as soon as possible: among more than two, racing may
    drop all but one after :data:`RACE_FROM` rounds); a block's one to
    :data:`TIMED_CALLS` timed calls (one when a call takes :data:`TIMED_SECONDS` or
    more) follow one to :data:`MAX_SETTLE` untimed ones of the same variant (one when a
    call takes :data:`WARM_SECONDS` or more), and a suspect or preempted timing is
    retried (:data:`MAX_RETRY`, :data:`MAX_PREEMPTED`).  (Calls of :data:`LONG_CALL`
    or more need fewer: a warmed variant's blocks have no warm-up call.)"""
    if at_most:
        return variants * (MAX_SETTLE + TIMED_CALLS + MAX_RETRY) * MAX_ROUNDS + MAX_PREEMPTED
    return variants * 2 * (min(ROUNDS, RACE_FROM) if variants > 2 else ROUNDS)


#: Seconds each kernel thread waited for a core so far (tests replace it).
_preemptions = kernel_waits


def time_call(fn: Callable[[], object]) -> float:
    """Wall-clock seconds of one call."""
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


class Tuning(Verification):
    """The state of the choice among ``variants`` for one (kernel, signature)."""

    def __init__(self, kernel: str, signature: str, variants: Sequence[str], *,
                 mode: str | None = None, rounds: int = ROUNDS, max_rounds: int = MAX_ROUNDS,
                 code: str = ""):
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
        self.max_rounds = max(max_rounds, rounds)
        self.trials: dict[str, list[float]] = {v: [] for v in self.variants}
        self.block: str | None = None  # the variant whose warm-up calls are running
        self._end = -float("inf")  # when the last call recorded ended (perf_counter)
        self.warmed = (0, 0.0)  # the block's warm-up calls so far, and their seconds
        self.warm: list[float] = []  # their times, oldest first
        self.tries: list[float] = []  # the block's suspect timed calls so far
        self.timed: list[float] = []  # the block's kept timed calls so far
        self.kept, self.preempted = 0, 0  # timed calls kept; left out as preempted
        self.noise = 0  # timed calls left out as noise (preempted or suspect)
        self.noisy = False  # the decision was made on a busy machine
        self.quiet = 0  # sampled calls of a noisy winner in a row with no preemption
        self._waits = _preemptions()
        self.excluded: dict[str, str] = {}
        self.unsuited: Callable[[str], str | None] | None = None  # see set_unsuited
        self.winner: str | None = None
        self.provisional = False  # decided by the budget, not by separation
        self.recorded: dict = {}  # the timings the decision was made on (or remembered)
        self.overheads: list[float] = []  # what the slow path added to them, newest last
        self.last_run: float | None = None  # the winner's time in the sampled call now
        self.reopened = 0
        self.previous: str | None = None  # the winner the last reopening set aside
        # Variants still being compiled (a tiered first call): not picked, and no decision
        # is made among the others until they join (or fail to).
        self.pending: set[str] = set()
        self._calls = 0  # winner's calls seen by due()
        # the winner's sampled calls (checks), each rival's timed challenges, the schedule
        self.watch()
        self.dropped: dict[str, str] = {}  # lost the race (not failures: reopen restores)
        self.spaces: dict = {}  # the search spaces sampled into the variants (for show)
        self.remembered: str | None = None  # the stored winner, even one not among variants
        self._remembered: dict = {}  # and the timings it was decided on
        if self.mode == "off" or len(self.variants) == 1:
            self.winner = self.variants[0]
        if self.mode != "off":  # (one variant: a remembered point of a space may be more)
            found = db.lookup(kernel, self.signature)
            # A provisional winner is re-checked: this process tunes again.
            if found is not None and not found[1].get(_DECISION, {}).get("provisional"):
                self.remembered, self._remembered = found
                if self.winner is None and found[0] in self.variants:
                    self.winner = found[0]
                    self.recorded = found[1]

    @property
    def done(self) -> bool:
        return self.winner is not None

    def candidates(self) -> list[str]:
        return [v for v in self.variants
                if v not in self.excluded and v not in self.pending and v not in self.dropped]

    def waiting(self) -> bool:
        """Whether variants still compiling may take part: pending ones not excluded (a
        late variant that does not suit this tuning's calls holds no decision back)."""
        return any(v not in self.excluded for v in self.pending)

    def add(self, variants: Sequence[str], spaces: dict | None = None) -> None:
        """More variants to choose among (the sampled points of a search space, planned
        after the first result); they take part once they :meth:`join`."""
        self.variants = self.variants + [v for v in variants if v not in self.variants]
        for v in self.variants:
            self.trials.setdefault(v, [])
            self._exclude_unsuited(v)
        if spaces:
            self.spaces = {**self.spaces, **spaces}

    def join(self, variants) -> None:
        """``variants`` finished compiling (or failed to, and were excluded): they take
        part from the next call on."""
        self.pending.difference_update(variants)
        if self.winner is None and self.remembered in variants \
                and self.remembered in self.candidates():
            self.winner, self.recorded = self.remembered, self._remembered  # built only now
            return
        if self.winner is None and variants:
            # Timings taken so far ran while the late variants compiled on another core:
            # not comparable with the ones to come (the first variant looked slower than it
            # is, and a late streaming variant won 4 of 10 quiet trials at 1.4-1.6x). They
            # were the first variant's warm-up; every variant is timed afresh.
            self.trials = {v: [] for v in self.variants}
            self.block = None
            self.dropped = {}
            live = self.candidates()
            if len(live) == 1 and not self.waiting():
                self.winner = live[0]
            else:
                self._maybe_decide()

    def pick(self) -> str:
        """The variant to run for the next call."""
        if self.winner is not None:
            return self.winner
        live = self.candidates()
        if not live:
            raise CheckError.none_left(self.kernel, self.excluded)
        if self.block in live:
            return self.block  # the block goes on: warm-up, or its timed call
        return min(live, key=lambda v: len(self.trials[v]))

    def fastest(self) -> float | None:
        """The fastest timing of any variant still in the running."""
        return min((min(self.trials[v]) for v in self.candidates() if self.trials[v]),
                   default=None)

    def suspect(self, seconds: float, fastest: float | None) -> bool:
        """Whether a timing is noise against the fastest one (see :data:`SUSPECT`)."""
        return fastest is not None and seconds > SUSPECT * fastest \
            and SUSPECT_FLOOR < seconds - fastest < SUSPECT_CEILING

    def clean(self, variant: str, ref: float | None = None) -> list[float]:
        """The variant's timings less the suspect ones against ``ref`` (the fastest of
        any variant, by default); all of them if every one is: then it is that slow, or
        the machine never let it run undisturbed."""
        ref = self.fastest() if ref is None else ref
        kept = [t for t in self.trials[variant] if not self.suspect(t, ref)]
        return kept or self.trials[variant]

    def preempted_since(self) -> bool:
        """Whether a kernel thread waited for a core since the tuner's last reading."""
        return self.undisturbed(0.0)[1]

    def undisturbed(self, seconds: float) -> tuple[float, bool]:
        """A timed call's ``seconds`` less the longest wait of a thread of it for a core
        since the last reading, or, when that was over :data:`PREEMPTED_SHARE` of them
        (noise), the ``seconds`` as timed; and which of the two."""
        was, self._waits = self._waits, _preemptions()
        lost = longest_wait(was, self._waits)
        return (seconds, True) if lost > PREEMPTED_SHARE * seconds \
            else (seconds - max(lost, 0.0), False)

    def timed_next(self, variant: str) -> bool:
        """Whether :meth:`record` keeps the next timing of ``variant`` (not warm-up)."""
        if self.winner is not None or self.block != variant:
            return False
        return not self._warming()

    def _warming(self) -> bool:
        """Whether the block's next call is warm-up (:data:`WARM_SECONDS`, :data:`SETTLING`)."""
        (calls, spent), w = self.warmed, self.warm
        return (spent < WARM_SECONDS and calls < MAX_WARM) or (
            SETTLE_WINDOW < len(w) < MAX_SETTLE and spent < SETTLE_SECONDS
            and min(w[-SETTLE_WINDOW:]) < SETTLING * min(w[:-SETTLE_WINDOW]))

    def record(self, variant: str, seconds: float, preempted: bool = False) -> None:
        """Add one timing: the first calls of a block are its warm-up, not kept (until
        they took :data:`WARM_SECONDS`, at most :data:`MAX_WARM` of them, and stopped
        getting faster: :data:`SETTLING`), the next are
        timed (:data:`TIMED_SECONDS`, at most :data:`TIMED_CALLS`; the fastest counts),
        except noise: ``preempted`` (see :data:`MAX_PREEMPTED`) or suspect
        (:data:`SUSPECT`), then the next one is.  Decide when the fastest is separated from
        the rest, or when the budget is spent."""
        if self.winner is not None:
            return
        now = time.perf_counter()
        gap, self._end = now - seconds - self._end, now
        if self.block != variant:  # no warm-up for a long or a sparse call:
            timed = bool(self.trials[variant]) and (seconds >= LONG_CALL
                                                    or gap > SPARSE * seconds)
            self.block, self.warmed = variant, (MAX_WARM if timed else 1, seconds)
            self.tries, self.timed, self.warm = [], [], [] if timed else [seconds]
            if not timed:
                return
        if self._warming():
            calls, spent = self.warmed
            self.warmed = (calls + 1, spent + seconds)
            self.warm.append(seconds)
            return
        if preempted and seconds < SUSPECT_CEILING and self.preempted < MAX_PREEMPTED \
                and not self._lost_nothing(variant, seconds):
            self.preempted += 1
            self.noise += 1
            self.tries.append(seconds)
            return
        if self.suspect(seconds, self.fastest()) and len(self.tries) < MAX_RETRY:
            self.noise += 1
            self.tries.append(seconds)  # noise: the block times its next call instead
            return
        self.timed.append(seconds)
        self.kept += 1
        if sum(self.timed) < TIMED_SECONDS and len(self.timed) < TIMED_CALLS:
            return  # the block times its next call too
        self.block = None
        self.trials[variant].append(min([*self.timed, *self.tries]))
        self.tries, self.timed = [], []
        self._maybe_decide()

    def _lost_nothing(self, variant: str, seconds: float) -> bool:
        """Whether a preempted timing is within :data:`PREEMPTED_SLACK` of the variant's
        fastest one so far (its block's timed calls included): then it is evidence."""
        before = [*self.trials[variant], *self.timed]
        return bool(before) and seconds <= (1 + PREEMPTED_SLACK) * min(before)

    def _maybe_decide(self) -> None:
        live = self.candidates()
        if not live or self.waiting():
            return
        n = min(len(self.trials[v]) for v in live)
        if n == 0 or any(len(self.trials[v]) > n for v in live):
            return  # decide only at the end of a round: every variant timed alike
        ref = self.fastest()
        clean = {v: self.clean(v, ref) for v in live}
        med = {v: statistics.median(clean[v]) for v in live}
        best = min(live, key=med.get)
        if n >= RACE_FROM and len(live) > 2:
            margin = RACE_CLOSE if n >= self.rounds else RACE_SLOWER
            for v in live:
                fastest = min(clean[v])
                if v != best and fastest > margin * med[best]:
                    self.dropped[v] = (f"dropped after {n} rounds: its fastest run "
                                       f"{fastest * 1e3:.4g} ms, {best}'s median "
                                       f"{med[best] * 1e3:.4g} ms")
            live = self.candidates()
        if n < self.rounds and len(live) > 1:
            return
        separated = all(min(clean[v]) > med[best] for v in live if v != best)
        if separated or n >= self.max_rounds:
            self.noisy = self.noise >= NOISY_SHARE * self.kept
            self.provisional = not separated or self.noisy
            self._decide(live, best)

    def set_unsuited(self, unsuited: Callable[[str], str | None] | None) -> None:
        """Exclude the variants ``unsuited`` names a reason for, now and as they are added
        (:attr:`asp.runtime.Prepared.unsuited`); the first predicate given stays."""
        if self.unsuited is None and unsuited is not None:
            self.unsuited = unsuited
            # The pending ones too: a bucket whose late variants all stream while its
            # grids fit in cache (512^2 heat) has its first variant decided at once,
            # not after 2-3 s of compiling variants it would never run.
            for v in [*self.variants, *sorted(self.pending - set(self.variants))]:
                self._exclude_unsuited(v)

    def _exclude_unsuited(self, variant: str) -> None:
        why = self.unsuited(variant) if self.unsuited is not None else None
        if why and variant not in self.excluded:
            self.exclude(variant, why)

    def exclude(self, variant: str, reason: str) -> None:
        """Never pick ``variant`` (it failed to build, to run, or to agree with Python)."""
        self.excluded[variant] = reason
        if self.winner == variant:
            self.winner = None
            self.dropped = {}  # the race was won by a variant that cannot run: run it again
        live = self.candidates()
        if len(live) == 1 and not self.waiting():
            self.winner = live[0]
        else:
            self._maybe_decide()

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
            raise CheckError.none_left(self.kernel, self.excluded)
        start = time.perf_counter()
        for rep in range(max_reps):
            for v in live:
                run(v)  # re-warm the caches the variant before left in its own state
                self.trials[v].append(time_call(lambda v=v: run(v)))
            if rep + 1 >= min_reps and time.perf_counter() - start > budget:
                break
        best = {v: min(self.trials[v]) for v in live}
        self._decide(live, min(live, key=best.get))
        return self.winner

    def _decide(self, live: list[str], winner: str) -> None:
        self.winner = winner
        self.watch()  # (a winner excluded and decided again: its checks were another's)
        timings = {v: {"best": min(self.trials[v]), "runs": len(self.trials[v])}
                   for v in live}
        timings.update({v: {"best": min(self.trials[v]), "runs": len(self.trials[v]),
                            "dropped": why} for v, why in self.dropped.items()})
        timings.update({v: {"excluded": why} for v, why in self.excluded.items()})
        timings[_DECISION] = {"provisional": self.provisional, "noisy": self.noisy,
                              "median": statistics.median(self.clean(winner))}
        if self.spaces:
            timings[_DECISION]["spaces"] = self.spaces
        self.recorded = timings
        try:
            db.store(self.kernel, self.signature, self.winner, timings, self.mode)
        except Exception:  # a read-only cache must not break the call
            pass
