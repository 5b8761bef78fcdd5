"""Deep halos: several time steps per halo exchange (ghost-zone expansion in time).

One step of a stencil of reach ``d`` needs a halo ``d`` deep; ``T`` steps need one
``h = g + (T - 1) d`` deep, exchanged once, where ``g`` is the width of the border an
``'interior'`` step leaves at zero (the ghost depth).  Each block is grown by that halo (its
neighbours send the slices; nothing is padded at the grid's own edges in
``'interior'`` mode, so the grown block's border there is the grid's border), the
kernel iterates ``T`` steps on the grown block (:meth:`StencilKernel.iterate`: its
temporally blocked variant where the kernel can be blocked, its own step loop
otherwise), and the block is cut back out.

Why that is exact: an ``'interior'`` step leaves the grown block's border of ghost
depth ``g`` at zero where the grid has real values, and every step spreads that error
``d`` points further in; after ``T`` steps it reaches ``g + (T - 1) d`` points in, and
the block begins ``h`` points in.  Every point of the block is then computed by the
same expression from the same values as in the direct loop, bit for bit.  Under
``'wrap'`` the grown block is padded periodically all round and iterated in
``'interior'`` mode with a ghost depth ``d``: a padded point evolves exactly as the
point it repeats (the same neighbours, the same expression) until the error from the
border reaches it, so the same bound holds.  The other modes recompute the padding
from the current state at every step, which points grown once cannot do: they step
one exchange per step.

The number of steps per exchange ``T`` (:func:`steps_per_exchange`): the largest
``T <=`` :data:`MAX_STEPS_PER_EXCHANGE` whose grown blocks hold at most 10 % more points
than the grid (the points computed twice, once in a block and once in a neighbour's
halo, cost compute and memory; the exchange it saves costs the scheduler a round of
tasks).

Large blocks are not grown (:func:`strips_pay`, :meth:`DeepRound.by_strips`): the
steps run on the block alone, whose points within ``h`` of a side with a neighbour
come out wrong (that side's border spreads inwards as above), and on a *strip* per
such side, the grown block's points within ``2h`` of it, whose inner half is exact
by the same argument and replaces them.  The strips add a few per cent of the points
and nothing as large as the block is copied (growing a row slab of 8192^2 copied
256 MB, 30 ms of a 270 ms round of 16 steps).  Such a round is two tasks per block: the
block's own steps (:class:`DeepCore`), which need no neighbour and start at once, and
the strips, which wait for the slices (they travel meanwhile) and are pasted into the
first task's result.  A strip runs its steps temporally blocked too from
:data:`STRIP_BLOCKED_FROM` steps per round on.

Faults: every task is a function of its inputs only (the slices are copies, the
result is a new array or a view of a new one; the strips task writes into its
:class:`DeepCore` input only points it computes from the blocks and slices), so a task
retried after a worker died gives the same bits.  The grown block is assembled into a
new array, except when the block is the core of the last round's grown result (a row
slab returned as a view): then only the rows around it are filled, in place, rows no
task's value includes (:func:`_grown_before`).
"""
from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass

import numpy as np

from asp.runtime import new_output
from specializers.stencil.dask.partition import deep_plan, grown_volume
from specializers.stencil.dask.shipping import IterateCall
from specializers.stencil.dask.split import Take

__all__ = ["DEEP_MODES", "MAX_STEPS_PER_EXCHANGE", "REDUNDANT", "STRIP_BLOCKED_FROM",
           "STRIP_WORK", "VIEW_SLACK", "Deep", "DeepCore", "DeepRound", "deep_graph",
           "exchange_depth", "steps_per_exchange", "strip_shapes", "strips_pay"]

#: Boundary modes whose halos can be exchanged once for several steps.
DEEP_MODES = ("interior", "wrap")
#: At most this many steps per exchange: beyond it, the exchange's cost per step is
#: already a small part of the step, while the halo (and the work in it) keeps growing.
#: (8192^2 heat in two row slabs, 2 workers x 1 thread, 32 steps, against the direct
#: iterate in the same runs: one round of 32 steps 1.19x and 1.11x, two of 16 1.29x and
#: 1.13x: each round costs Dask's task latency and a strip per side.)
MAX_STEPS_PER_EXCHANGE = 32
#: At most this fraction of the grid's points is computed twice (in halos).
REDUNDANT = 0.10
#: A round returns its block as a view of the grown result (no copy) when the block is
#: contiguous in it and the grown result is at most this many times its size.
VIEW_SLACK = 1.25
#: A round runs on the block and thin strips around it instead of on the grown block
#: when the strips add at most this fraction of the block's points.
STRIP_WORK = 0.10
#: A strip's steps run temporally blocked (:meth:`StencilKernel.iterate`) from this many
#: steps per round on, else one compiled step after another.  (8192^2 heat in two row
#: slabs, 32 steps per round: a strip of 96 rows, one thread, 14-21 ms step by step,
#: 9 ms blocked.)
STRIP_BLOCKED_FROM = 8


def exchange_depth(steps: int, reach: int, ghost: int) -> int:
    """The halo ``steps`` steps need: the ghost depth the grown block's own border loses
    at the first step, plus ``reach`` per later step."""
    return ghost + (steps - 1) * reach


def steps_per_exchange(bounds: tuple, reach: int, ghost: int, mode: str, steps: int) -> int:
    """The rule for ``T``: the largest ``T`` up to ``steps`` and to
    :data:`MAX_STEPS_PER_EXCHANGE` for which blocks of a grid chunked at ``bounds``,
    grown by :func:`exchange_depth`, hold at most ``1 + REDUNDANT`` times the grid's
    points; 1 (one exchange per step) if none does."""
    best = 1
    for t in range(2, min(MAX_STEPS_PER_EXCHANGE, steps) + 1):
        if grown_volume(bounds, exchange_depth(t, reach, ghost), mode) > 1 + REDUNDANT:
            break
        best = t
    return best


@dataclass(frozen=True)
class Deep:
    """What every block of one round shares."""

    call: IterateCall    # the steps of the round, on the grown blocks
    bounds: tuple        # per axis, the chunk edges
    h: int               # the halo exchanged
    mode: str            # 'interior' or 'wrap': how the grid's edge is grown


class DeepRound:
    """A block's task in a round: grow the block (and every other field's block) by the
    halo from its own points and the neighbours' slices, run the round's steps on it,
    and return the block's part, C-contiguous: a view of the grown result when the block
    is one contiguous run of it (row slabs), else a new array."""

    __slots__ = ("deep", "index")

    def __init__(self, deep: Deep, index: tuple):
        self.deep, self.index = deep, index

    def __reduce__(self):
        return DeepRound, (self.deep, self.index)

    def __call__(self, own: list, halos: list, _cut=(), core: np.ndarray | None = None
                 ) -> np.ndarray:
        """``core``: the block's own steps (:class:`DeepCore`'s result, when the round
        runs on the block and strips): the strips are pasted into it."""
        dp = self.deep
        plan = deep_plan(dp.bounds, dp.h, dp.mode, self.index)
        # Per field, the slices in the plan's order (each neighbour sent a tuple).
        flat = [[a for group in per_field for a in group] for per_field in halos]
        if core is not None or strips_pay(plan, dp.h):
            return self.by_strips(plan, own, flat,
                                  DeepCore(dp)(own) if core is None else core)
        grown = []
        for f, block in enumerate(own):
            a = _grown_before(block, plan)
            if a is None:
                # Every point is a piece (the grown block never reaches outside the grid),
                # so uninitialised memory will do: new_output reuses the pages of the
                # last round's grown block instead of the system zeroing fresh ones.
                a = new_output(plan.shape, block.dtype)
            for p in plan.pieces:
                src = (block if p.source < 0 else flat[f][p.source])[p.src]
                dest = a[p.dest]
                if not _same_memory(dest, src):  # the block itself, in place: no copy
                    dest[...] = src
            grown.append(a)
        result = dp.call(grown)
        core = result[plan.core]
        if core.flags.c_contiguous and result.nbytes <= VIEW_SLACK * core.nbytes:
            # A row slab's block is one run of the grown result's memory: returned as a
            # view, which saves copying the block (on 8192^2 in two slabs, 18 ms of a
            # 16-step round of ~300).  It keeps the halo rows alive with it, a few per
            # cent more than the bytes Dask counts.  The next round fills its halo rows
            # in place (_grown_before).
            _GROWN[id(core.base)] = core.base
            return core
        # Otherwise a copy: a view would keep much more than the block alive, and Dask
        # would count only the block's bytes of it.
        out = new_output(core.shape, result.dtype)
        out[...] = core
        return out

    def by_strips(self, plan, own: list, flat: list, result: np.ndarray) -> np.ndarray:
        """The round without growing the block: ``result`` is the steps on the block
        alone (:class:`DeepCore`), whose points within ``h`` of a side that has a
        neighbour are wrong (that side's zero border spread inwards); per such side, the
        steps on a *strip*: the grown block's points within ``2h`` of that side (the
        halo, ``h`` of the block), across the grown block's whole extent along the other
        axes, whose points ``h`` from its inner edge are exact; those replace the
        block's wrong ones, in ``result``, which is returned.  Nothing as large as the
        block is copied (on 8192^2 in two row slabs, a round of 16 steps copied 256 MB a
        block into its grown array: 30 ms of a 270 ms round).  Run again (a retried
        task), it writes the same bits into the same points: the strips are computed from
        the blocks and slices, never from ``result``."""
        dp, h = self.deep, self.deep.h
        core = [(c.start, c.stop) for c in plan.core]
        for a, lo, hi, p0, p1 in _strip_boxes(plan, h):
            c0 = core[a][0]
            box = tuple(slice(lo, hi) if b == a else slice(0, n)
                        for b, n in enumerate(plan.shape))
            # blocked in time too when the round is long enough to pay for
            # tuning a blocked iteration of the strip's own shape
            strip = dp.call([_assemble(plan, box, block, flat[f])
                             for f, block in enumerate(own)],
                            stepwise=dp.call.steps < STRIP_BLOCKED_FROM)
            # the points [p0, p1) along a (grown coordinates), the core's along
            # the others: into the result, whose origin is the core's
            dest = tuple(slice(p0 - c0, p1 - c0) if b == a else slice(0, e - s)
                         for b, (s, e) in enumerate(core))
            src = tuple(slice(p0 - lo, p1 - lo) if b == a else slice(s, e)
                        for b, (s, e) in enumerate(core))
            result[dest] = strip[src]
        return result


class DeepCore:
    """The first task of a round on the block and strips (:meth:`DeepRound.by_strips`):
    the round's steps on the block alone, a writeable array.  It reads only the block
    (and, to run after them, the slices the block cut for its neighbours), so it starts
    while the slices travel: the exchange hides behind the steps instead of delaying
    them (on 8192^2 in two row slabs, 20-60 ms of a ~450 ms round of 32 steps)."""

    __slots__ = ("deep",)

    def __init__(self, deep: Deep):
        self.deep = deep

    def __reduce__(self):
        return DeepCore, (self.deep,)

    def __call__(self, own: list, _cut=()) -> np.ndarray:
        result = self.deep.call(list(own))
        return result if result.flags.writeable else result.copy()


def _strip_boxes(plan, h: int) -> list:
    """Per side of the block that has a neighbour: ``(axis, lo, hi, p0, p1)``, the
    strip's extent ``[lo, hi)`` along ``axis`` in grown coordinates and the points
    ``[p0, p1)`` of it that replace the block's."""
    boxes = []
    for a, c in enumerate(plan.core):
        c0, c1 = c.start, c.stop
        if c0 > 0:  # a neighbour before the block along axis a
            boxes.append((a, 0, min(c0 + 2 * h, plan.shape[a]), c0, min(c0 + h, c1)))
        if c1 < plan.shape[a]:  # and after it
            boxes.append((a, max(c1 - 2 * h, 0), plan.shape[a], max(c1 - h, c0), c1))
    return boxes


def strip_shapes(plan, h: int) -> list[tuple[int, ...]]:
    """The shapes of the strips :meth:`DeepRound.by_strips` iterates for ``plan``'s
    block (a tuner decides per shape: what a warm-up waits for)."""
    return [tuple(hi - lo if b == a else n for b, n in enumerate(plan.shape))
            for a, lo, hi, _, _ in _strip_boxes(plan, h)]


def strips_pay(plan, h: int) -> bool:
    """Whether a round runs on the block and strips (:meth:`DeepRound.by_strips`) rather
    than on the grown block: when the strips add at most :data:`STRIP_WORK` of the
    block's points (large blocks; the block is then never copied)."""
    size = float(np.prod([c.stop - c.start for c in plan.core]))
    extra = sum(float(np.prod(shape)) for shape in strip_shapes(plan, h))
    return extra <= STRIP_WORK * size


def _assemble(plan, box: tuple, block: np.ndarray, halos: list) -> np.ndarray:
    """The points of the grown block inside ``box`` (slices of it), from the block and
    the neighbours' slices, as a new C-contiguous array."""
    out = np.empty(tuple(b.stop - b.start for b in box), block.dtype)
    for p in plan.pieces:
        dest, src = [], []
        for d, s_, b in zip(p.dest, p.src, box):
            lo, hi = max(d.start, b.start), min(d.stop, b.stop)
            if lo >= hi:
                break
            assert s_.step in (None, 1), "deep plans read runs of consecutive points"
            dest.append(slice(lo - b.start, hi - b.start))
            src.append(slice(s_.start + lo - d.start, s_.start + hi - d.start))
        else:
            out[tuple(dest)] = (block if p.source < 0 else halos[p.source])[tuple(src)]
    return out


#: The grown results this process's rounds returned views of, by id (weakly: an entry
#: goes with its array).
_GROWN: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _grown_before(block: np.ndarray, plan) -> np.ndarray | None:
    """The grown array whose core ``block`` is, when it has this round's shape: the last
    round's result, returned as a view (row slabs), or None.  Its halo rows are then
    filled in place, and the block is not copied into a new array (256 MB per block and
    round on 8192^2 in two slabs; the deep-halo figure did not move beyond its noise
    without that copy, 1.14-1.19x against 1.19-1.23x, but the memory is not taken).

    Only the rows around the core are written, and no task's value includes them: the
    block (the last round's value) is the core, and the slices the neighbours took of it
    are copies, made before this task ran (it depends on them).  The rows written are
    those the neighbours sent, so a task run again writes the same bits."""
    base = block.base
    # only a round's own result (C-contiguous, writeable, its memory's owner), never a
    # caller's array
    if base is None or _GROWN.get(id(base)) is not base or base.shape != plan.shape:
        return None
    return base if _same_memory(base[plan.core], block) else None


def _same_memory(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two arrays are the same elements: the same start, shape and strides."""
    return (a.shape == b.shape and a.strides == b.strides and a.dtype == b.dtype
            and a.__array_interface__["data"][0] == b.__array_interface__["data"][0])


def deep_graph(call: IterateCall, fields: list, h: int, mode: str, name: str):
    """The dask array of ``call`` (``T`` steps) on ``fields`` grown by ``h``: per block,
    one task per neighbour and field that cuts the slices it sends, and one that runs
    the steps."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    ndim, dtype = fields[0].ndim, fields[0].dtype
    bounds = tuple(tuple(int(v) for v in np.cumsum((0,) + tuple(c))) for c in fields[0].chunks)
    deep = Deep(call, bounds, h, mode)
    kernel = call.kernel
    try:
        token = tokenize(type(kernel).__module__, type(kernel).__qualname__,
                         sorted(kernel.__getstate__().items()), [f.name for f in fields],
                         call.consts, call.layout, call.geometry, call.steps, h, mode)
    except Exception:  # an option Dask cannot hash: a fresh name each time
        import uuid

        token = uuid.uuid4().hex
    out_name = f"{name}-deep-{token}"
    take_names = [f"{out_name}-halo{i}" for i in range(len(fields))]
    dsk = {}
    blocks = list(np.ndindex(*(len(c) for c in fields[0].chunks)))
    incoming, outgoing = {}, {index: [] for index in blocks}
    for index in blocks:
        plan = deep_plan(bounds, h, mode, index)
        # plan.halos is sorted by neighbour: one task per neighbour and field.
        groups = [(j, tuple(box for _, box in grp))
                  for j, grp in itertools.groupby(plan.halos, key=lambda s: s[0])]
        incoming[index] = [[] for _ in fields]
        for i, f in enumerate(fields):
            for j, boxes in groups:
                key = (take_names[i],) + index + j
                dsk[key] = (Take(boxes), (f.name,) + j)
                incoming[index][i].append(key)
                outgoing[j].append(key)
    for index in blocks:
        own = [(f.name,) + index for f in fields]
        if strips_pay(deep_plan(bounds, h, mode, index), h):
            # Two tasks: the block's own steps, which need nothing from the neighbours
            # (after cutting the block's slices for them, so those travel meanwhile),
            # then the strips, pasted into its result.
            core = (f"{out_name}-core",) + index
            dsk[core] = (DeepCore(deep), own, outgoing[index])
            dsk[(out_name,) + index] = (DeepRound(deep, index), own, incoming[index], (),
                                        core)
            continue
        # As the split method's shell: the task also names the slices its block cut for
        # the neighbours, so they are released after it, not while it waits.
        dsk[(out_name,) + index] = (DeepRound(deep, index), own, incoming[index],
                                    outgoing[index])
    graph = HighLevelGraph.from_collections(out_name, dsk, dependencies=fields)
    return da.Array(graph, out_name, fields[0].chunks, dtype=dtype,
                    meta=np.empty((0,) * ndim, dtype))
