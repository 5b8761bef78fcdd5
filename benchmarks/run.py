"""Run the benchmark suite: ``make bench`` (or ``python benchmarks/run.py [names...]``).

Prints a table of every figure against its target, writes
``bench-results/results.json`` and ``bench-results/results.png``.
``--quick`` uses smaller problems (a smoke run, not for the record).
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import subprocess
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.harness import Figure  # noqa: E402


def _machine() -> dict:
    from asp import config
    from asp.tune import machine_id

    return {"machine": machine_id(), "python": platform.python_version(),
            "threads": config.num_threads(), "load": os.getloadavg(),
            "time": time.strftime("%Y-%m-%d %H:%M:%S")}


def _table(figures: list[Figure]) -> str:
    rows = [("group", "figure", "measured", "target", "met")]
    for f in figures:
        cmp = ">=" if f.better == "higher" else "<="
        target = "-" if f.target is None else f"{cmp} {f.target:g} {f.unit}"
        met = {True: "yes", False: "MISS", None: "-"}[f.met]
        rows.append((f.group, f.name, f"{f.value:.4g} {f.unit}", target, met))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _chart(figures: list[Figure], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [f for f in figures if f.target]
    if not shown:
        return
    # Score > 1 means the target is met, whichever way "better" points.
    # A lower-is-better figure at or below zero (no memory above the inputs, overhead
    # within noise) is as far inside its target as the chart shows (10x).
    score = [(f.value / f.target) if f.better == "higher"
             else (f.target / f.value if f.value > 0 else 10.0) for f in shown]
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(shown) + 1.5))
    colors = ["tab:green" if s >= 1 else "tab:red" for s in score]
    ax.barh([f"{f.group}: {f.name}" for f in shown], score, color=colors)
    ax.axvline(1.0, color="black", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("measured / target (>= 1 meets the target)")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _child(name: str, quick: bool) -> int:
    """Run one benchmark module and print its figures as one JSON line."""
    if quick:
        os.environ["ASP_BENCH_QUICK"] = "1"
    try:
        mod = importlib.import_module(f"benchmarks.bench_{name}")
        got = mod.run(quick=quick)
    except Exception:
        traceback.print_exc()
        return 1
    print("ASP-BENCH-FIGURES " + json.dumps([dataclasses.asdict(f) for f in got]), flush=True)
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("names", nargs="*", help="benchmark modules to run (default: all)")
    ap.add_argument("--quick", action="store_true", help="small problems: a smoke run")
    ap.add_argument("--out", default=str(ROOT / "bench-results"))
    ap.add_argument("--child", metavar="NAME", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return _child(args.child, args.quick)
    if args.quick:
        os.environ["ASP_BENCH_QUICK"] = "1"
    mods = sorted(p.stem[len("bench_"):] for p in (ROOT / "benchmarks").glob("bench_*.py"))
    chosen = args.names or mods
    unknown = set(chosen) - set(mods)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}; have {', '.join(mods)}")
    figures: list[Figure] = []
    failed = []
    for name in chosen:
        print(f"--- {name}", flush=True)
        # Each module in a process of its own: thread pools, environment changes (a
        # Dask cluster sets OMP_NUM_THREADS=1 in its parent), caches and peak RSS of one
        # benchmark must not colour the next.
        out = subprocess.run([sys.executable, __file__, "--child", name]
                             + (["--quick"] if args.quick else []),
                             stdout=subprocess.PIPE, text=True, cwd=ROOT)
        lines = out.stdout.splitlines()
        marker = "ASP-BENCH-FIGURES "
        got = [Figure(**d) for line in lines if line.startswith(marker)
               for d in json.loads(line[len(marker):])]
        for line in lines:
            if not line.startswith(marker):
                print(line, flush=True)
        if out.returncode != 0 or not got:
            failed.append(name)
            continue
        for f in got:
            print(f"    {f.name}: {f.value:.4g} {f.unit} {f.detail}", flush=True)
        figures.extend(got)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(
        {"machine": _machine(), "quick": args.quick, "failed": failed,
         "figures": [f.as_dict() for f in figures]}, indent=1))
    _chart(figures, out / "results.png")
    print()
    print(_table(figures))
    print(f"\nwrote {out / 'results.json'} and {out / 'results.png'}")
    if failed:
        print(f"benchmarks that failed to run: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
