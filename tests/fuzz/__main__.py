"""``python -m tests.fuzz --kernels 10000``: the long differential fuzzing campaign.

Draws batches of generated kernels (elementwise, stencil, reduction and iterated stencil
kernels in turn) from the hypothesis strategies of :mod:`tests.fuzz.gen` and
:mod:`tests.fuzz.iterate`, runs each in a worker
process, and prints a summary (kernels, compilations, cases, fallbacks,
mismatches, errors, crashes).  Failures are shrunk and appended to the
findings file.  Exit status 1 if anything disagreed, errored or crashed.
"""
from __future__ import annotations

import argparse
import sys
import time

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from tests.fuzz.driver import Fuzzer, Stats, describe, shrink
from tests.fuzz.gen import EW, KNOWN, RD, ST, batches
from tests.fuzz.iterate import IT, iterate_batches

#: Kernels of an iterate batch per batch of the others: each compiles on its own.
IT_SHARE = 6


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    p.add_argument("--kernels", type=int, default=10_000, help="generated kernels to run")
    p.add_argument("--batch", type=int, default=24, help="kernels per batch (compilation)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", choices=[EW, ST, RD, IT],
                   help="one specializer only (iterate: stencils' K.iterate)")
    p.add_argument("--shrink", type=int, default=12, help="failures to shrink and write up")
    p.add_argument("--avoid", default=",".join(KNOWN),
                   help="comma-separated constructs not to generate (default: the open "
                        "known bugs, tests.fuzz.gen.KNOWN; '' for everything)")
    p.add_argument("--findings", default="fuzz_findings.md", help="file to append findings to")
    args = p.parse_args(argv)

    avoid = frozenset(t for t in args.avoid.split(",") if t)
    stats = Stats()
    failures: list = []
    n_batches = -(-args.kernels // args.batch)
    t0 = time.time()
    fz = Fuzzer()

    @seed(args.seed)
    @settings(max_examples=n_batches, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def campaign(data):
        spec = args.only or data.draw(st.sampled_from([EW, ST, RD, IT]))
        batch = data.draw(iterate_batches(max(args.batch // IT_SHARE, 1), avoid=avoid)
                          if spec == IT else batches(spec, args.batch, avoid=avoid))
        if stats.kernels >= args.kernels:
            # Done, but drawn as every example is: hypothesis refuses a test whose
            # examples stop drawing where others went on (FlakyStrategyDefinition: a
            # 500-kernel iterate campaign ended so, its summary and findings lost).
            return
        reply = fz.run(batch)
        stats.add(reply)
        for i, o in reply.outcomes.items():
            if o.status in ("mismatch", "error", "crash"):
                failures.append((batch, i, o))
        if fz.count % 10 == 0:
            print(f"[{time.time() - t0:6.0f}s] {stats.summary().splitlines()[0]}",
                  file=sys.stderr, flush=True)

    try:
        while stats.kernels < args.kernels:
            before = stats.kernels
            campaign()
            if stats.kernels == before:
                break
            args.seed += 1
            campaign = seed(args.seed)(campaign)
        print(stats.summary())
        print(f"{time.time() - t0:.0f} s, {len(failures)} failing kernels; not generated: "
              f"{', '.join(sorted(avoid)) or 'nothing'}")
        # Wrong answers first, then crashes, then errors: a batch whose worker failed
        # makes one error per kernel, and --shrink writes up only the first few.
        order = {"mismatch": 0, "crash": 1, "error": 2}
        failures.sort(key=lambda f: order.get(f[2].status, 3))
        with open(args.findings, "a") as f:
            for n, (batch, i, o) in enumerate(failures[: args.shrink]):
                small, got = shrink(fz, batch, i, o)
                f.write(describe(small, got, title=f"fuzz failure {n + 1} (seed {args.seed})"))
                f.write("\n")
                f.flush()
    finally:
        fz.close()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
