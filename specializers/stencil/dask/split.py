"""The split method: per block, the kernel on the block as it is, and thin strips for the
shell it leaves; halo exchange as small slices cut by the neighbours.

A block costs two tasks plus one per neighbour (that cuts the slices it sends).
Only the slices travel between workers, and the block is never copied: a step
costs one read of the input and one write of the output, as the direct call does.

Faults: every task is a pure function of its inputs except the shell, which
pastes into the interior task's output in place.  That array is this graph's own
intermediate with no other reader, and pasting is idempotent, so a task retried
after a worker died gives the same bits.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from asp.runtime import as_native
from specializers.stencil.dask.partition import block_plan
from specializers.stencil.dask.shipping import BlockCall
from specializers.stencil.kernel import StencilKernel

__all__ = ["Interior", "Shell", "Split", "Take", "split_graph"]


class Take:
    """The halo slices one block needs from one neighbour, copied (only they travel,
    not the block), in one task: each task costs the scheduler a round of messages."""

    __slots__ = ("boxes",)

    def __init__(self, boxes: tuple):
        self.boxes = boxes

    def __call__(self, block: np.ndarray) -> tuple:
        return tuple(np.array(block[box], order="C") for box in self.boxes)

    def __reduce__(self):
        return Take, (self.boxes,)


@dataclass(frozen=True)
class Split:
    """What every block of one ``apply`` shares."""

    fn: BlockCall        # the kernel in 'interior' mode with ghost depth g
    bounds: tuple
    g: int
    mode: str
    ghost: int           # 'interior': the width of the domain border left at zero
    fills: tuple         # per field, the value of points outside the domain


class Interior:
    """A block's first task: the kernel on the block alone (``'interior'`` mode), all
    but the shell.  It reads nothing but the block, so it starts at once, and only
    where the block is (unless work stealing moves it)."""

    __slots__ = ("split",)

    def __init__(self, split: Split):
        self.split = split

    def __reduce__(self):
        return Interior, (self.split,)

    def __call__(self, own: list) -> np.ndarray:
        return self.split.fn(*[as_native(b) for b in own])


class Shell:
    """A block's second task: the shell of width ``g``, computed from strips assembled
    from the block's own edge and the halo slices, pasted into the first task's
    output (and, in ``'interior'`` mode, the domain's border zeroed)."""

    __slots__ = ("index", "split")

    def __init__(self, split: Split, index: tuple):
        self.split, self.index = split, index

    def __reduce__(self):
        return Shell, (self.split, self.index)

    def __call__(self, out: np.ndarray, own: list, halos: list, _cut=()) -> np.ndarray:
        sp = self.split
        plan = block_plan(sp.bounds, sp.g, sp.mode, sp.ghost, self.index)
        # Per field, the slices in the plan's order (each neighbour sent a tuple).
        flat = [[a for group in per_field for a in group] for per_field in halos]
        for strip in plan.strips:
            fields = []
            for f, block in enumerate(own):
                if strip.filled:
                    a = np.full(strip.shape, sp.fills[f], dtype=block.dtype)
                else:
                    a = np.empty(strip.shape, dtype=block.dtype)
                for p in strip.pieces:
                    a[p.dest] = (block if p.source < 0 else flat[f][p.source])[p.src]
                fields.append(a)
            out[strip.put] = sp.fn(*fields)[strip.take]
        for band in plan.band:
            out[band] = 0
        return out


def split_graph(kernel: StencilKernel, fields: list, layout: tuple, consts: tuple,
                g: int, neighbors, ghost: int, name: str):
    """The dask array of ``kernel`` on ``fields`` by the split method."""
    import dask.array as da
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    ndim = fields[0].ndim
    dtype = fields[0].dtype
    fn = BlockCall(kernel.with_options(boundary="interior"), layout, consts, (g, neighbors))
    bounds = tuple(tuple(int(v) for v in np.cumsum((0,) + tuple(c))) for c in fields[0].chunks)
    mode = kernel.boundary
    fills = tuple(f.dtype.type(kernel.cval if mode == "constant" else 0) for f in fields)
    split = Split(fn, bounds, g, mode, ghost, fills)
    try:
        token = tokenize(type(kernel).__module__, type(kernel).__qualname__,
                         sorted(kernel.__getstate__().items()), [f.name for f in fields],
                         consts, layout, g, neighbors, ghost)
    except Exception:  # an option Dask cannot hash: a fresh name each time
        import uuid

        token = uuid.uuid4().hex
    out_name = f"{name}-{token}"
    halo_names = [f"{out_name}-halo{i}" for i in range(len(fields))]
    inner_name = f"{out_name}-interior"
    dsk = {}
    blocks = list(np.ndindex(*(len(c) for c in fields[0].chunks)))
    incoming, outgoing = {}, {index: [] for index in blocks}
    for index in blocks:
        plan = block_plan(bounds, g, mode, ghost, index)
        # plan.halos is sorted by neighbour: one task per neighbour and field.
        groups = [(j, tuple(box for _, box in grp))
                  for j, grp in itertools.groupby(plan.halos, key=lambda h: h[0])]
        incoming[index] = [[] for _ in fields]
        for i, f in enumerate(fields):
            for j, boxes in groups:
                key = (halo_names[i],) + index + j
                dsk[key] = (Take(boxes), (f.name,) + j)
                incoming[index][i].append(key)
                outgoing[j].append(key)
    for index in blocks:
        own = [(f.name,) + index for f in fields]
        dsk[(inner_name,) + index] = (Interior(split), own)
        # The shell also names the slices its block cut for the neighbours (it does not
        # read them): they are then released after the shell, not while it waits.  The
        # scheduler batches what it sends a worker at most every 5 ms, so a release sent
        # just before the shell is handed out would hold the shell back that long.
        dsk[(out_name,) + index] = (Shell(split, index), (inner_name,) + index, own,
                                    incoming[index], outgoing[index])
    graph = HighLevelGraph.from_collections(out_name, dsk, dependencies=fields)
    return da.Array(graph, out_name, fields[0].chunks, dtype=dtype,
                    meta=np.empty((0,) * ndim, dtype))
