"""Verification of a tuner's winner while it runs (a mixin of
:class:`asp.tune.tuner.Tuning`): one real call in N is timed, N keeping the cost near
:data:`VERIFY_SHARE` of the calls' time; the decision is reopened when the winner runs
clearly slower than recorded and than its runner-up was, when a noisy decision's calls
run undisturbed, or when the runner-up, run instead of the winner now and then
(*challenges*), runs clearly faster.  The constants live here; :mod:`asp.tune.tuner`
re-exports them (tests set ``verify.MAX_REOPEN``)."""
from __future__ import annotations

import math
import statistics

__all__ = ["CHALLENGE_FIRST", "CHALLENGE_WINDOW", "MAX_REOPEN", "REOPEN_RIVAL",
           "REOPEN_SLOWER", "SLOW_PATH", "VERIFY_SHARE", "VERIFY_WINDOW", "Verification"]

#: Verification of a winner: about what one call through the slow path costs (at least:
#: the runtime measures each kernel's own, see :meth:`Verification.note_overhead`; a stencil's
#: argument checks alone took 170 us), the share
#: of the calls' time verification may take, how many sampled calls are compared, how
#: much slower than recorded they must run (and than the runner-up's record) to reopen
#: the decision, and how often one process reopens it at most.
SLOW_PATH = 30e-6
VERIFY_SHARE = 0.01
VERIFY_WINDOW = 5
REOPEN_SLOWER = 1.5
REOPEN_RIVAL = 1.2
MAX_REOPEN = 2
#: Challenges: a winner's own sampled calls cannot show that the runner-up became faster
#: (a decision made while another process kept the caches busy chose a streaming variant,
#: which runs at the same speed either way; once the load was gone ``static`` ran 1.6x
#: faster and the decision stood).  So a sampled call from the :data:`CHALLENGE_FIRST`-th
#: on, once :data:`VERIFY_WINDOW` were timed, runs the runner-up instead, so do the next
#: :data:`CHALLENGE_WINDOW` - 1, and then one each time twice as many sampled calls later
#: (the cost fades), warmed by an untimed run of
#: its own where the call may be repeated (and short); when the last
#: :data:`CHALLENGE_WINDOW` undisturbed challenges have a median :data:`REOPEN_RIVAL`
#: times faster than the winner's sampled calls, the decision is reopened.
CHALLENGE_FIRST = 4
CHALLENGE_WINDOW = 3

#: The key, among a remembered winner's timings, of how the decision was made.
_DECISION = "_decision"


class Verification:
    """The verification half of :class:`~asp.tune.tuner.Tuning`, whose ``__init__`` sets
    the state these methods read (``winner``, ``mode``, ``variants``, ``recorded``,
    ``checks``, ``overheads``, ``challenges``, ``noisy``, ``quiet``, ``reopened``)."""

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
        return int(min(max(math.ceil(cost / (VERIFY_SHARE * e)), 16), 1 << 20))

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

    def challenger(self) -> str | None:
        """For a sampled call of the winner: the runner-up (the fastest recorded other
        live variant) if this call is one to run it instead (see :data:`CHALLENGE_FIRST`),
        else None."""
        if self.winner is None or self.mode != "online" or self.reopened >= MAX_REOPEN:
            return None
        self._sampled += 1
        if self._sampled < self._challenge_at or len(self.checks) < VERIFY_WINDOW:
            return None
        live = self.candidates()
        rivals = {v: t["best"] for v, t in self.recorded.items()
                  if v != self.winner and v in live and isinstance(t, dict) and "best" in t}
        if not rivals:
            return None
        return min(rivals, key=rivals.get)

    def challenged(self, seconds: float, preempted: bool = False) -> bool:
        """One timed call of the runner-up :meth:`challenger` named.  Reopen the decision
        (and return True) when the last :data:`CHALLENGE_WINDOW` undisturbed ones ran
        :data:`REOPEN_RIVAL` times faster than the winner's sampled calls."""
        # The first CHALLENGE_WINDOW at consecutive sampled calls (a verdict within
        # about a second of calls: the tune benchmark's quiet half second saw 10-12
        # sampled calls, and challenges at doubling gaps had not reopened a decision
        # there), then at doubling gaps.
        self._challenges_run += 1
        self._challenge_at = self._sampled + 1 if self._challenges_run < CHALLENGE_WINDOW \
            else 2 * self._sampled
        if self.winner is None or preempted:
            return False
        self.challenges.append(seconds)
        del self.challenges[:-CHALLENGE_WINDOW]
        if len(self.challenges) < CHALLENGE_WINDOW or not self.checks \
                or self.reopened >= MAX_REOPEN:
            return False
        if statistics.median(self.challenges) * REOPEN_RIVAL < statistics.median(self.checks):
            self.reopen()
            return True
        return False

    def reopen(self) -> None:
        """Forget the decision: the next calls tune again (warm-up included)."""
        self.winner = None
        self.challenges = []
        self._sampled, self._challenge_at, self._challenges_run = 0, CHALLENGE_FIRST, 0
        self.provisional = False
        self.trials = {v: [] for v in self.variants}
        self.block = None
        self.dropped = {}
        self.checks = []
        self.noise = self.preempted = self.quiet = 0
        self.noisy = False
        self.reopened += 1
