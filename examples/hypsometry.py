"""Hypsometry of a real elevation model with ``@reduction``: four reductions, one curve.

A hypsometric curve says how much of a landscape lies above each elevation; its
integral (the *hypsometric integral*, Strahler 1952) measures how far erosion has worn
a landscape down. Both need only reductions over the elevation grid: its highest and
lowest cell, its total, and, for each of many levels, the area and the volume of rock
above that level. Each reduction is a plain Python function of one cell
(``@reduction("+")``, ``"max"``, ``"min"``); asp sums it over the whole grid in
parallel C, without the temporary arrays NumPy builds for ``np.maximum(h - level, 0)``.

The data is the 3-arc-second (about 90 m) digital elevation model of the Jacksboro
fault, Tennessee, that ships with matplotlib (344 x 403 cells, int16 metres). The
script prints the landscape's figures, a few points of the curve, its answers checked
against NumPy, and how long the curve took with asp and with NumPy in the same run.

    python examples/hypsometry.py [--levels 201]

``ASP_EXAMPLE_QUICK=1`` computes fewer levels.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from specializers.reduction import reduction  # noqa: E402


@reduction("max")
def highest(h):
    return h


@reduction("min")
def lowest(h):
    return h


@reduction("+")
def total(h):
    return h  # int16 cells sum exactly in int64, as np.sum does


@reduction("+")
def cells_above(h, level):
    return h > level  # booleans sum as counts


@reduction("+")
def rock_above(h, level):
    # metres of rock above `level` in this cell; the cell area turns it into a volume
    return h - level if h > level else 0.0


def numpy_curve(h: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same curve as a NumPy user writes it: one pass of whole-array operations per level."""
    counts = np.array([np.count_nonzero(h > lv) for lv in levels])
    rock = np.array([np.sum(np.maximum(h - lv, 0.0)) for lv in levels])
    return counts, rock


def asp_curve(h: np.ndarray, levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    counts = np.array([cells_above(h, float(lv)) for lv in levels])
    rock = np.array([rock_above(h, float(lv)) for lv in levels])
    return counts, rock


def load_dem() -> tuple[np.ndarray, float]:
    """The elevation grid (int16 metres) and the area of one cell in square metres."""
    from matplotlib import cbook

    dem = cbook.get_sample_data("jacksboro_fault_dem.npz")
    h = np.ascontiguousarray(dem["elevation"])
    # Cells are dx by dy degrees; a degree of latitude is R*pi/180 metres, one of
    # longitude that times cos(latitude).
    metres = 6_371_000.0 * math.pi / 180.0
    lat = math.radians(0.5 * (float(dem["ymin"]) + float(dem["ymax"])))
    cell = float(dem["dx"]) * metres * math.cos(lat) * float(dem["dy"]) * metres
    return h, cell


def _best(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> int:
    quick = os.environ.get("ASP_EXAMPLE_QUICK", "") not in ("", "0")
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--levels", type=int, default=51 if quick else 201,
                   help="levels of the hypsometric curve")
    args = p.parse_args(argv)

    h, cell = load_dem()
    t0 = time.perf_counter()
    top, bottom = highest(h), lowest(h)
    first = time.perf_counter() - t0
    mean = total(h) / h.size
    area = h.size * cell
    print(f"Jacksboro fault DEM: {h.shape[0]} x {h.shape[1]} cells of {h.dtype}, "
          f"{area / 1e6:.0f} km^2")
    print("  first calls of highest() and lowest() (front end, passes, compile or disk "
          f"cache, checks): {first * 1e3:.0f} ms")
    print(f"  elevation {bottom} m to {top} m, mean {mean:.1f} m")
    assert top == h.max() and bottom == h.min() and total(h) == h.sum(dtype=np.int64)

    levels = np.linspace(float(bottom), float(top), args.levels)
    counts, rock = asp_curve(h, levels)
    ref_counts, ref_rock = numpy_curve(h, levels)
    assert np.array_equal(counts, ref_counts)
    np.testing.assert_allclose(rock, ref_rock, rtol=1e-10, atol=0)

    # The integral of the curve (fraction of area above, over the relief) is the rock
    # above the lowest level over the relief box, (mean - min) / (max - min).
    hi = (mean - float(bottom)) / float(top - bottom)
    frac = counts / h.size
    trapezoid = float(np.sum(0.5 * (frac[1:] + frac[:-1]) * np.diff(levels)))
    assert math.isclose(rock[0] / (h.size * float(top - bottom)), hi, rel_tol=1e-9)
    print(f"  hypsometric integral {hi:.3f} (from the curve by the trapezoid rule: "
          f"{trapezoid / float(top - bottom):.3f})")
    print("  level      area above   rock above")
    for k in np.unique(np.linspace(0, len(levels) - 1, 6).astype(int)):
        print(f"  {levels[k]:5.0f} m   {frac[k]:9.1%}   {rock[k] * cell / 1e9:8.2f} km^3")

    # The first calls of a signature try each variant (serial; static, guided and
    # prefetching OpenMP loops) in turn; time only once the tuner has chosen.
    winners = {}
    for f in (cells_above, rock_above):
        for _ in range(100):
            winners[f.__name__] = f.jit.chosen_variant(h, float(levels[0]), None)
            if winners[f.__name__] is not None:
                break
            f(h, float(levels[0]))
    repeat = 3
    t_asp = _best(lambda: asp_curve(h, levels), repeat)
    t_np = _best(lambda: numpy_curve(h, levels), repeat)
    print(f"curve at {len(levels)} levels ({2 * len(levels)} reductions over "
          f"{h.size:,} cells); variants chosen: {winners}")
    print(f"  asp {t_asp * 1e3:.1f} ms, NumPy {t_np * 1e3:.1f} ms ({t_np / t_asp:.1f}x), "
          "answers equal to NumPy's (NumPy builds temporary arrays at every level)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
