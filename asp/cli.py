"""The ``asp`` command: what the machine offers, what the cache holds, what the tuner chose.

::

    asp info                    compiler, flags, OpenMP threads, cache dir, CPU
    asp cache list|info|clear   compiled kernels (size, which kernel), totals, removal
    asp tune show [KERNEL]      remembered winners and their timings
    asp tune forget [KERNEL]    drop remembered winners
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from asp.errors import SpecializationError

__all__ = ["main"]


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _info(args) -> int:
    from asp import __version__, config
    from asp.jit.toolchain import compiler
    from asp.runtime import native_available
    from asp.tune import machine_id

    print(f"asp {__version__}")
    try:
        comp = compiler()
        print(f"compiler:     {comp.path} ({comp.version})")
        print(f"flags:        {' '.join(comp.flags)}")
        print(f"openmp:       {'yes' if comp.openmp else 'no'}")
    except Exception as exc:
        print(f"compiler:     unavailable ({exc}); kernels will run as Python")
    print(f"threads:      {config.num_threads()}")
    print(f"cpu:          {machine_id()}")
    print(f"cache dir:    {config.cache_dir()}")
    print(f"tuning:       {config.tune_mode()}")
    threshold = os.environ.get("ASP_PARALLEL_THRESHOLD", "").strip()
    where = f"more than {threshold} items" if threshold else "each specializer's default"
    print(f"parallel at:  {where} (ASP_PARALLEL_THRESHOLD)")
    native = "built" if native_available() else "MISSING (reinstall with a compiler)"
    print(f"native path:  {native}")
    print(f"strict:       {config.strict()}   jit disabled: {config.jit_disabled()}")
    return 0


def _cache(args) -> int:
    from asp import config
    from asp.jit import cache_entries, clear_cache

    if args.action == "clear":
        n = clear_cache()
        print(f"removed {n} compiled kernel(s) and the tuning database from {config.cache_dir()}")
        return 0
    entries = cache_entries()
    if args.action == "info":
        total = sum(e.get("size", 0) for e in entries)
        kernels = {e.get("kernel") for e in entries}
        damaged = sum(1 for e in entries if e.get("damaged"))
        print(f"cache dir:  {config.cache_dir()}")
        print(f"entries:    {len(entries)} ({_size(total)}) for {len(kernels)} kernel(s)")
        if damaged:
            print(f"damaged:    {damaged} (rebuilt automatically when next used)")
        return 0
    if not entries:
        print(f"the cache at {config.cache_dir()} is empty")
        return 0
    print(f"{'key':14} {'size':>10} {'created':19}  kernel")
    for e in entries:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(e.get("created", 0)))
        flag = "  [damaged]" if e.get("damaged") else ""
        print(f"{e['key'][:12]:14} {_size(e.get('size', 0)):>10} {created:19}  "
              f"{e.get('kernel', '?')}{flag}")
    return 0


def _tune(args) -> int:
    from asp.tune import forget, remembered, retime

    if args.action == "forget":
        n = forget(args.kernel)
        print(f"forgot {n} remembered winner(s)")
        return 0
    if args.action == "retime":
        n = retime(args.kernel)
        print(f"{n} remembered winner(s) will be timed again by the next process that "
              "calls them")
        return 0
    rows = remembered(args.kernel)
    if not rows:
        print("no remembered winners" + (f" for kernels matching {args.kernel!r}"
                                          if args.kernel else ""))
        return 0
    for r in rows:
        decision = r["timings"].get("_decision", {})
        if decision.get("blocked") is False:
            print(f"{r['kernel']}\n  signature: {r['signature']}\n  machine:   {r['machine']}\n"
                  f"  iterates step by step, not blocked in time: {decision.get('why')}")
            continue
        how = ("to be timed again" if decision.get("retime") else
               "provisional: decided on a busy machine (most timed calls were preempted); "
               "tuned again once it is quiet, and by the next process"
               if decision.get("noisy") else
               "provisional: no variant was clearly faster within the budget; the next "
               "process tunes again" if decision.get("provisional") else
               "separated: its median beat every other variant's fastest run"
               if decision else "remembered from an older asp")
        print(f"{r['kernel']}\n  signature: {r['signature']}\n  machine:   {r['machine']}\n"
              f"  winner:    {r['variant']} ({r['mode']}; {how})")
        for name, space in decision.get("spaces", {}).items():
            params = ", ".join(f"{k} in {{{', '.join(map(str, v))}}}"
                               for k, v in space["params"].items())
            print(f"  space {name}: {params}; tried {len(space['tried'])}: "
                  f"{', '.join(space['tried'])}")
        timings = {v: t for v, t in r["timings"].items() if not v.startswith("_")}
        for v, t in sorted(timings.items(), key=lambda kv: kv[1].get("best", 1e99)):
            if "excluded" in t:
                print(f"    {v:24} excluded: {t['excluded']}")
            else:
                print(f"    {v:24} {t['best'] * 1e3:10.4f} ms  ({t['runs']} runs)"
                      + (f"  {t['dropped']}" if "dropped" in t else ""))
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="asp", description="asp: selective embedded JIT "
                                 "specialization for Python")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="compiler, flags, threads, cache dir, CPU").set_defaults(fn=_info)
    c = sub.add_parser("cache", help="the disk cache of compiled kernels")
    c.add_argument("action", choices=("list", "info", "clear"))
    c.set_defaults(fn=_cache)
    t = sub.add_parser("tune", help="remembered tuning winners")
    t.add_argument("action", choices=("show", "forget", "retime"))
    t.add_argument("kernel", nargs="?", default=None, help="only kernels whose name contains this")
    t.set_defaults(fn=_tune)
    args = ap.parse_args(argv)
    try:
        return args.fn(args)
    except ValueError as exc:  # e.g. a malformed ASP_* variable
        print(f"asp: {exc}", file=sys.stderr)
        return 2
    except SpecializationError as exc:  # e.g. a cache directory another user could write
        print(f"asp: {exc.message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
