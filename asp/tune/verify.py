"""Verification of a tuner's winner while it runs (a mixin of
:class:`asp.tune.tuner.Tuning`): one real call in N is timed, N keeping the cost near
:data:`VERIFY_SHARE` of the calls' time; the decision is reopened when the winner runs
clearly slower than recorded and than its runner-up was, when a noisy decision's calls
run undisturbed, or when another variant, run instead of the winner now and then
(*challenges*: every rival in turn), runs clearly faster.  The constants live here;
:mod:`asp.tune.tuner` re-exports them (tests set ``verify.MAX_REOPEN``)."""
from __future__ import annotations

import math
import statistics

__all__ = ["CHALLENGE_FIRST", "CHALLENGE_GAP", "CHALLENGE_SHARE", "CHALLENGE_WINDOW", "MAX_REOPEN",
           "REOPEN_RIVAL", "REOPEN_SLOWER", "SLOW_PATH", "VERIFY_EARLY", "VERIFY_EARLY_RATE",
           "VERIFY_SHARE", "VERIFY_WINDOW", "Verification"]

#: Verification of a winner: about what one call through the slow path costs (at least:
#: the runtime measures each kernel's own, see :meth:`Verification.note_overhead`; a stencil's
#: argument checks alone took 170 us), the share
#: of the calls' time verification may take, how many sampled calls are compared, how
#: much slower than recorded they must run (and than the runner-up's record) to reopen
#: the decision, and how often one process reopens it at most.
SLOW_PATH = 30e-6
VERIFY_SHARE = 0.01
#: The first sampled calls after a decision come this many times as often (a decision is
#: most likely wrong right after it was made: the machine that made it may have changed
#: within the second, and a verdict takes five checks and three challenges per rival).
VERIFY_EARLY = 20
VERIFY_EARLY_RATE = 4
VERIFY_WINDOW = 5
REOPEN_SLOWER = 1.5
REOPEN_RIVAL = 1.2
MAX_REOPEN = 2
#: Challenges: a winner's own sampled calls cannot show that another variant became faster
#: (a decision made while another process kept the caches busy chose a streaming variant,
#: which runs at the same speed either way; once the load was gone ``static`` ran 1.6x
#: faster and the decision stood).  So, once :data:`VERIFY_WINDOW` sampled calls were
#: timed, from the :data:`CHALLENGE_FIRST`-th on, sampled calls run each *rival* in turn
#: instead of the winner, :data:`CHALLENGE_WINDOW` calls in a row each: every variant that
#: was timed and can run, the ones dropped from the race included (a race run under load
#: dropped ``static``, and a challenge of the runner-up alone never ran it), the fastest
#: recorded first.  Then one challenge every :data:`CHALLENGE_GAP` sampled calls, the
#: rivals in turn, for as long as the winner runs: a machine can change at any time (a
#: quiet trial of the tune benchmark chose ``stream`` while a neighbour kept the shared
#: cache busy, ``static`` 1.95x faster once it stopped; challenges at doubling gaps, the
#: rule before, were already 26 sampled calls apart and the trial ended first).  A
#: challenge is warmed as a race block is (untimed runs of its own, those beyond the
#: one a sampled call of the winner also has counted in its cost: ``Specialization._warm``)
#: where the call may be repeated (and short).  When the last
#: :data:`CHALLENGE_WINDOW` undisturbed challenges of one rival have a median
#: :data:`REOPEN_RIVAL` times faster than the winner's sampled calls, the decision is
#: reopened.  What challenges cost beyond the winner's time is kept within
#: :data:`CHALLENGE_SHARE` of the calls' time since the decision: a challenge waits for
#: the budget (a rival dropped at 3x the winner's time, on a call of 150 ms, runs about
#: once in six sampled calls).  The budget, not the gap, is what bounds the cost.
CHALLENGE_FIRST = 4
CHALLENGE_WINDOW = 3
CHALLENGE_GAP = 2
CHALLENGE_SHARE = 0.02

#: The key, among a remembered winner's timings, of how the decision was made.
_DECISION = "_decision"


class Verification:
    """The verification half of :class:`~asp.tune.tuner.Tuning`, whose ``__init__`` sets
    the state these methods read (``winner``, ``mode``, ``variants``, ``recorded``,
    ``excluded``, ``pending``, ``overheads``, ``noisy``, ``quiet``, ``reopened``) and
    calls :meth:`watch` (``checks``, ``challenges``), as does every decision."""

    def expected(self) -> float | None:
        """The winner's typical time when it was chosen (None if unknown)."""
        d = self.recorded.get(_DECISION, {})
        if "median" in d:
            return d["median"]
        return self.recorded.get(self.winner, {}).get("best")

    def sample_every(self) -> int:
        """Time one real call in this many (0: none): the slow path it takes (what it was
        measured to cost, :data:`SLOW_PATH` at least), kept to :data:`VERIFY_SHARE` of
        the calls' time: the time they take now (the sampled calls' median), not what
        the winner was recorded at (a decision made on cold pages recorded 3 ms for a
        call of 80 us, and one call in 19 was sampled: 69 % more time)."""
        e = statistics.median(self.checks) if self.checks else self.expected()
        if self.mode != "online" or self.winner is None or not e or len(self.variants) < 2:
            return 0
        cost = max(SLOW_PATH, statistics.median(self.overheads)) if self.overheads \
            else SLOW_PATH
        share = VERIFY_SHARE * (VERIFY_EARLY_RATE if self.early() else 1)
        return int(min(max(math.ceil(cost / (share * e)), 16), 1 << 20))

    def early(self) -> bool:
        """Whether the winner is in its first :data:`VERIFY_EARLY` sampled calls, sampled
        :data:`VERIFY_EARLY_RATE` times as often as in steady state."""
        return self.winner is not None and self._samples < VERIFY_EARLY

    def note_overhead(self, seconds: float) -> None:
        """What one sampled call spent outside the winner (argument checks, the tuner,
        setting the hot entry up again): the rate of sampling follows the median of the
        last few, so a kernel whose slow path is dear is sampled less often."""
        self.overheads.append(max(seconds, 0.0))
        del self.overheads[:-VERIFY_WINDOW]

    def due(self) -> bool:
        """For calls that never take the hot path (every one comes to the slow path):
        whether this one is the one in :meth:`sample_every` to time."""
        n = self.sample_every()
        if not n:
            return False
        self._calls += 1
        return self._calls % n == 0

    def verify(self, seconds: float, preempted: bool = False) -> bool:
        """One timed real call of the winner.  Reopen the decision (and return True) when
        the winner now runs clearly slower than it was recorded to, and slower than the
        runner-up was: the machine changed, or the decision was wrong.  A noisy decision
        is also reopened once the machine is quiet (no thread of this process preempted
        in :data:`VERIFY_WINDOW` sampled calls in a row)."""
        if self.winner is None:
            return False
        self._samples += 1
        if self.noisy and self.reopened < MAX_REOPEN:
            self.quiet = 0 if preempted else self.quiet + 1
            if self.quiet >= VERIFY_WINDOW:
                self.reopen()
                return True
        self.checks.append(seconds)
        del self.checks[:-VERIFY_WINDOW]
        if len(self.checks) < VERIFY_WINDOW or self.reopened >= MAX_REOPEN:
            return False
        now = statistics.median(self.checks)
        expected = self.expected()
        rivals = [t["best"] for v, t in self.recorded.items()
                  if v != self.winner and v in self.candidates() and "best" in t]
        if expected and now > REOPEN_SLOWER * expected and rivals \
                and min(rivals) * REOPEN_RIVAL < now:
            self.reopen()
            return True
        return False

    def rivals(self) -> list[str]:
        """The variants a challenge may run instead of the winner: every other one that
        was timed (dropped from the race or not) and is neither excluded nor compiling,
        the fastest recorded first; but first of all the winner a reopening set aside,
        when a new decision overturned it: a tuning is a few milliseconds of calls, and
        one the machine disturbed (a neighbour's burst, no thread of ours preempted)
        can crown a variant 1.5x slower than the one it replaced (1 loaded trial in
        20-30 of the tune benchmark did, reopened as its load stopped); the old winner
        is the likeliest to show it, and its challenges come first."""
        best = {v: t["best"] for v, t in self.recorded.items()
                if v != self.winner and v in self.variants and v not in self.excluded
                and v not in self.pending and isinstance(t, dict) and "best" in t}
        return sorted(best, key=lambda v: (v != self.previous, best[v]))

    def challenger(self) -> str | None:
        """For a sampled call of the winner: the rival to run instead (see
        :data:`CHALLENGE_FIRST`), or None to run the winner."""
        if self.winner is None or self.mode != "online" or self.reopened >= MAX_REOPEN:
            return None
        self._sampled += 1
        if len(self.checks) < VERIFY_WINDOW:
            return None
        # The calls since the last sampled one, counted at every sampled call (between
        # challenges too): what the budget is a share of.
        self._spent += statistics.median(self.checks) * self.sample_every()
        if self._sampled < self._challenge_at:
            return None
        if self._cost > CHALLENGE_SHARE * self._spent:
            return None  # over budget: the winner runs, the challenge waits
        rivals = self.rivals()
        if not rivals:
            return None
        self._first_round = CHALLENGE_WINDOW * len(rivals)
        self._rival = rivals[self._challenges_run // CHALLENGE_WINDOW
                             if self._challenges_run < self._first_round
                             else self._challenges_run % len(rivals)]
        return self._rival

    def challenged(self, seconds: float, preempted: bool = False,
                   warmed: float = 0.0) -> bool:
        """One timed call of the rival :meth:`challenger` named (after extra untimed runs
        of it that took ``warmed`` seconds: part of the challenge's cost).  Reopen the
        decision (and return True) when the rival's last :data:`CHALLENGE_WINDOW`
        undisturbed ones ran :data:`REOPEN_RIVAL` times faster than the winner's sampled
        calls."""
        # Each rival's window at consecutive sampled calls (a verdict within about a
        # second of calls: the tune benchmark's quiet half second saw 10-16 sampled
        # calls, and challenges at doubling gaps had not reopened a decision there),
        # then one every CHALLENGE_GAP sampled calls.
        rival, self._rival = self._rival, None
        self._challenges_run += 1
        self._samples += 1
        self._challenge_at = self._sampled + (
            1 if self._challenges_run < self._first_round else CHALLENGE_GAP)
        if self.winner is None or rival is None:
            return False
        winner = statistics.median(self.checks) if self.checks else seconds
        self._cost += max(seconds - winner, 0.0) + warmed
        if preempted:
            return False
        mine = self.challenges.setdefault(rival, [])
        mine.append(seconds)
        del mine[:-CHALLENGE_WINDOW]
        if len(mine) < CHALLENGE_WINDOW or not self.checks or self.reopened >= MAX_REOPEN:
            return False
        if statistics.median(mine) * REOPEN_RIVAL < winner:
            self.reopen()
            return True
        return False

    def watch(self) -> None:
        """A new decision (or none): its verification and challenges start afresh."""
        self.checks = []
        self.challenges = {}
        self._rival = None
        self._sampled, self._challenge_at, self._challenges_run = 0, CHALLENGE_FIRST, 0
        self._spent = self._cost = 0.0
        self._first_round = CHALLENGE_WINDOW  # challenges in a row: a window per rival
        self._samples = 0  # sampled calls timed since the decision (checks, challenges)

    def reopen(self) -> None:
        """Forget the decision: the next calls tune again (warm-up included)."""
        self.previous = self.winner
        self.winner = None
        self.watch()
        self.provisional = False
        self.trials = {v: [] for v in self.variants}
        self.block = None
        self.dropped = {}
        self.noise = self.preempted = self.quiet = self.kept = 0
        self.noisy = False
        self.reopened += 1
