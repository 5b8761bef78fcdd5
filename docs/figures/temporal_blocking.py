"""Draws ``docs/_static/temporal_blocking.png``: temporal blocking on a 1-D slice.

The figure of the stencil page's section on ``iterate``: one pass of depth ``D``
along axis 0 (the wavefront axis) for a 3-point neighbourhood (reach ``R = 1``).

* Top: the points each step of the pass computes for one tile (a trapezoid: the
  tile at the last step, widened by ``R`` per earlier step, which is the halo that
  step must supply) and the overlapping trapezoid of the next tile, which computes
  the shared halo points again instead of waiting for them.
* Bottom: the order within the tile.  The number in a point is the wavefront
  position at which it is computed; one position computes one point of every step,
  along a diagonal, and the rows each step keeps in its ring (those the next step
  still needs) are outlined.

The layout is computed from the same rule as the generated code
(``specializers.stencil.temporal``): at position ``s``, step ``l`` computes row
``s - (l - 1) R`` within ``[lo - (D - l) R, hi + (D - l) R)``.  Run it after changing
the scheme and commit the PNG:

    .venv/bin/python docs/figures/temporal_blocking.py
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Polygon, Rectangle  # noqa: E402

D, R = 4, 1            # steps per pass, the neighbourhood's reach
TILE = 7               # rows of a tile
A = (9, 9 + TILE)      # the tile drawn, [lo, hi) of its last step
B = (A[1], A[1] + TILE)  # its neighbour
N = 32                 # points of the slice shown
NOW = 13               # the wavefront position highlighted (as a row of step 1)
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "_static",
                   "temporal_blocking.png")


def span(tile: tuple[int, int], level: int) -> tuple[int, int]:
    """The rows step ``level`` (0: the pass's input, read) covers for ``tile``."""
    ext = (D - level) * R
    return tile[0] - ext, tile[1] + ext


def trapezoid(tile: tuple[int, int]) -> list[tuple[float, float]]:
    """The outline of a tile's points from the pass's input to step ``D``: a staircase,
    cell by cell (row ``x`` of the plot spans ``[x, x + 1)``)."""
    left: list[tuple[float, float]] = []
    right: list[tuple[float, float]] = []
    for level in range(D + 1):
        lo, hi = span(tile, level)
        left += [(lo, level - 0.5), (lo, level + 0.5)]
        right += [(hi, level - 0.5), (hi, level + 0.5)]
    return left + right[::-1]


def grid(ax) -> None:
    for level in range(D + 1):
        for x in range(N):
            ax.add_patch(Rectangle((x + 0.05, level - 0.45), 0.9, 0.9, fc="white",
                                   ec="0.85", lw=0.6))
    ax.set_xlim(-0.5, N + 0.5)
    ax.set_ylim(-0.8, D + 1.2)
    ax.set_yticks(range(D + 1), ["input"] + [f"step {level}" for level in range(1, D + 1)])
    ax.set_xticks([])
    for side in ("top", "right", "bottom"):
        ax.spines[side].set_visible(False)


def trapezoids(ax) -> None:
    grid(ax)
    ax.add_patch(Polygon(trapezoid(A), closed=True, fc="tab:blue", alpha=0.28, ec="tab:blue",
                         lw=2))
    ax.add_patch(Polygon(trapezoid(B), closed=True, fc="tab:orange", alpha=0.28,
                         ec="tab:orange", lw=2, ls="--"))
    for tile, colour, name in ((A, "tab:blue", "tile"), (B, "tab:orange", "next tile")):
        ax.annotate("", xy=(tile[0], D + 0.62), xytext=(tile[1], D + 0.62),
                    arrowprops={"arrowstyle": "<->", "color": colour, "lw": 1.5})
        ax.text((tile[0] + tile[1]) / 2, D + 0.75, name, ha="center", va="bottom",
                color=colour, fontsize=10)
    lo, _ = span(B, 0)
    _, hi = span(A, 0)
    ax.text((lo + hi) / 2, -0.72, "overlap: computed by both", ha="center", va="top",
            fontsize=9)
    lo1, _ = span(A, 1)
    ax.annotate("the halo shrinks by R\nper step", xy=(lo1 + 0.3, 1.5),
                xytext=(1.2, 2.6), fontsize=9, arrowprops={"arrowstyle": "->", "lw": 1})
    ax.text(N + 0.3, 0, "read from memory", va="center", fontsize=9)
    ax.text(N + 0.3, D, "written to memory", va="center", fontsize=9)
    ax.text(N + 0.3, (D + 1) / 2, "in cache\n(rings)", va="center", fontsize=9)
    ax.set_title(f"One pass of {D} steps (reach R = {R}): overlapped tiles, each a trapezoid",
                 fontsize=11, loc="left")


def wavefront(ax) -> None:
    grid(ax)
    cmap = plt.get_cmap("viridis")
    first = span(A, 1)[0]                       # step 1's first row: position 1
    last = span(A, 1)[1] - 1 + (D - 1) * R      # the last position of the tile
    ring = 2 * R + 1
    for level in range(D + 1):
        lo, hi = span(A, level)
        for x in range(lo, hi):
            if level == 0:
                ax.add_patch(Rectangle((x + 0.05, -0.45), 0.9, 0.9, fc="0.8", ec="0.6"))
                continue
            s = x + (level - 1) * R             # the position computing (x, level)
            order = s - first + 1
            now = s == NOW
            ax.add_patch(Rectangle((x + 0.05, level - 0.45), 0.9, 0.9,
                                   fc=cmap((s - first) / (last - first)),
                                   ec="red" if now else "none", lw=2.2 if now else 0))
            ax.text(x + 0.5, level, str(order), ha="center", va="center", fontsize=7,
                    color="white" if (s - first) / (last - first) < 0.6 else "black")
    # The rows each intermediate step holds in its ring at position NOW: the newest
    # 2R + 1, which the next step reads.
    for level in range(1, D):
        newest = NOW - (level - 1) * R
        lo = max(newest - ring + 1, span(A, level)[0])
        ax.add_patch(Rectangle((lo, level - 0.5), newest + 1 - lo, 1.0, fc="none",
                               ec="black", lw=1.2, ls=":"))
    ax.annotate("one wavefront position:\none row of every step", xy=(NOW - D + 1.5, D),
                xytext=(NOW + 5.5, D + 0.55), fontsize=9, color="red",
                arrowprops={"arrowstyle": "->", "color": "red", "lw": 1})
    ax.annotate(f"ring: the {ring} = 2R + 1 newest rows of a\nstep, which the next step reads",
                xy=(NOW - 1.5, 1.5), xytext=(NOW + 6.5, 1.3), fontsize=9,
                arrowprops={"arrowstyle": "->", "lw": 1})
    ax.set_title("Within the tile: the order of computation (wavefront position), "
                 "sweeping along axis 0", fontsize=11, loc="left")
    ax.set_xlabel("axis 0 (rows of a 2-D grid, planes of a 3-D one)")


def main() -> None:
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.4), constrained_layout=True)
    trapezoids(top)
    wavefront(bottom)
    fig.savefig(OUT, dpi=110)
    print(f"wrote {os.path.normpath(OUT)}")


if __name__ == "__main__":
    main()
