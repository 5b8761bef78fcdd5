"""Partitioning: which points of which neighbour block a block needs, and how they are
assembled: into strips (the split method's shell, one step) or into the block grown by a
deep halo (several steps per exchange).

Pure geometry on chunk edges (no Dask, no kernel): the client, which builds the
graph, and every worker, which runs it, make the same plan from the same numbers.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

__all__ = ["BlockPlan", "DeepPlan", "Piece", "Strip", "block_plan", "deep_plan", "grown_volume",
           "padmap"]

# NumPy's np.pad names for the kernel's boundary modes (scipy.ndimage's meanings).
_NP_PAD = {"wrap": "wrap", "nearest": "edge", "reflect": "symmetric", "mirror": "reflect"}


@functools.lru_cache(maxsize=256)
def padmap(n: int, g: int, mode: str) -> np.ndarray:
    """For each of the ``n + 2g`` points of an axis padded by ``g``, the point of the
    domain it reads, or -1 where it takes a constant (``'constant'``; ``'interior'``,
    whose values there never reach a result)."""
    idx = np.arange(n)
    if mode in _NP_PAD:
        out = np.pad(idx, g, mode=_NP_PAD[mode])
    else:
        out = np.pad(idx, g, constant_values=-1)
    out.setflags(write=False)
    return out


def _runs(points: np.ndarray, edges: np.ndarray) -> tuple[list, bool]:
    """Cut one axis of a strip into runs that read consecutive points (step +1 or -1,
    as reflections do) of one chunk: ``[(chunk, dest slice, src slice in the chunk)]``,
    and whether some points take the constant (``points`` -1)."""
    n = len(points)
    chunk = np.where(points < 0, -1, np.searchsorted(edges, points, "right") - 1)
    d = np.diff(points)
    cut = np.zeros(n, bool)
    cut[0] = True
    cut[1:] |= (chunk[1:] != chunk[:-1]) | (np.abs(d) != 1)
    cut[2:] |= (d[1:] != d[:-1]) & (np.abs(d[:-1]) == 1)  # a reflection turns
    starts = np.flatnonzero(cut)
    runs, constant = [], False
    for lo, hi in zip(starts.tolist(), np.append(starts[1:], n).tolist()):
        c = int(chunk[lo])
        if c < 0:
            constant = True
            continue
        step = 1 if hi - lo == 1 else int(points[lo + 1] - points[lo])
        first = int(points[lo] - edges[c])
        stop = first + step * (hi - lo)
        runs.append((c, slice(int(lo), int(hi)), slice(first, None if stop < 0 else stop, step)))
    return runs, constant


@dataclass(frozen=True)
class Piece:
    """A rectangle of a strip copied from one source."""

    source: int          # -1: the block itself, else an index into the block's halos
    dest: tuple          # slices: where in the strip
    src: tuple           # slices: where in the source (the block, or the halo slice)


@dataclass(frozen=True)
class Strip:
    """One face's strip: assembled from pieces, run through the kernel, and the middle
    of the result pasted into the block's output."""

    shape: tuple[int, ...]
    pieces: tuple[Piece, ...]
    filled: bool         # some points take the constant (prefill the strip with it)
    take: tuple          # the strip's computed points that belong to the block ...
    put: tuple           # ... and where they go in the block's output


@dataclass(frozen=True)
class BlockPlan:
    """Everything one block's shell needs: what its neighbours send, and what to do."""

    halos: tuple         # ((neighbour block index, slices of it), ...): what travels
    strips: tuple[Strip, ...]
    band: tuple          # output slices to zero ('interior': the domain's own border)


@functools.lru_cache(maxsize=4096)
def block_plan(bounds: tuple, g: int, mode: str, ghost: int, index: tuple) -> BlockPlan:
    """How block ``index`` of a grid chunked at ``bounds`` (per axis, the chunk edges
    from 0 to the axis length) gets the shell of width ``g`` that an ``'interior'``
    call on the block alone leaves out.

    Each face has a strip: ``3g`` points across the face (``g`` of halo, ``2g`` of
    the block, whose middle ``g`` the strip computes correctly) and the block's
    extent plus ``2g`` along the other axes, so the corners come with it.  Its
    points are gathered from the block and from its neighbours (the domain edge
    wraps, reflects, ... by :func:`padmap`), cut into rectangular pieces, one per
    source block.  Deterministic, so the client (which builds the graph) and the
    worker (which runs it) make the same plan.
    """
    ndim = len(bounds)
    start = [bounds[a][index[a]] for a in range(ndim)]
    length = [bounds[a][index[a] + 1] - start[a] for a in range(ndim)]
    # Per axis: for each point of the padded block, the domain point it reads.
    reads = [padmap(bounds[a][-1], g, mode)[start[a]:start[a] + length[a] + 2 * g]
             for a in range(ndim)]
    edges = [np.asarray(b) for b in bounds]
    raw = []  # (strip number, source block, dest per axis, src per axis: domain-local)
    strips = []
    for axis in range(ndim):
        for side in (0, 1):
            q0 = 0 if side == 0 else length[axis] - g
            region = [(q0, q0 + 3 * g) if a == axis else (0, length[a] + 2 * g)
                      for a in range(ndim)]
            per_axis, filled = [], False  # per axis: [(source chunk, dest, src)]
            for a, (lo, hi) in enumerate(region):
                runs, constant = _runs(reads[a][lo:hi], edges[a])
                per_axis.append(runs)
                filled = filled or constant
            for combo in _product(per_axis):
                raw.append((len(strips), tuple(c for c, _, _ in combo),
                            tuple(d for _, d, _ in combo), tuple(r for _, _, r in combo)))
            take = tuple(slice(g, 2 * g) if a == axis else slice(g, g + length[a])
                         for a in range(ndim))
            put = tuple((slice(0, g) if side == 0 else slice(length[a] - g, length[a]))
                        if a == axis else slice(0, length[a]) for a in range(ndim))
            strips.append((tuple(hi - lo for lo, hi in region), filled, take, put))
    halos, pieces = _sources(raw, index, len(strips))
    band = []
    if mode == "interior":
        for a in range(ndim):
            n = bounds[a][-1]
            lo, hi = min(max(ghost - start[a], 0), length[a]), max(n - ghost - start[a], 0)
            for piece in ((0, lo), (min(hi, length[a]), length[a])):
                if piece[1] > piece[0]:
                    band.append(tuple(slice(*piece) if b == a else slice(None)
                                      for b in range(ndim)))
    return BlockPlan(halos=halos,
                      strips=tuple(Strip(shape, tuple(pieces[k]), filled, take, put)
                                   for k, (shape, filled, take, put) in enumerate(strips)),
                      band=tuple(band))


@dataclass(frozen=True)
class DeepPlan:
    """How one block is grown by a deep halo: the grown block's shape, the pieces it is
    assembled from, the neighbours' slices that travel, and where the block sits in it."""

    shape: tuple[int, ...]
    pieces: tuple[Piece, ...]
    halos: tuple         # ((neighbour block index, slices of it), ...): what travels
    core: tuple          # slices of the grown block that are the block itself


@functools.lru_cache(maxsize=4096)
def deep_plan(bounds: tuple, h: int, mode: str, index: tuple) -> DeepPlan:
    """Block ``index`` of a grid chunked at ``bounds`` grown by ``h`` points on every side:
    periodically (``'wrap'``), or, in ``'interior'`` mode, only on the sides inside the
    grid (clipped at its edges, so the grown block's border is the grid's own border).

    ``h`` may exceed a chunk: the points come from every block they lie in, not only
    the adjacent ones, so no chunking is too fine.  Deterministic, like
    :func:`block_plan`: the client and the workers make the same plan.
    """
    if mode not in ("wrap", "interior"):
        raise ValueError(f"mode={mode!r}: deep halos are exact in 'wrap' and 'interior' "
                         "mode only")
    ndim = len(bounds)
    per_axis, shape, core = [], [], []
    for a in range(ndim):
        n, start, stop = bounds[a][-1], bounds[a][index[a]], bounds[a][index[a] + 1]
        if mode == "wrap":
            lo, hi = start - h, stop + h
            reads = np.arange(lo, hi) % n
        else:
            lo, hi = max(start - h, 0), min(stop + h, n)
            reads = np.arange(lo, hi)
        runs, _ = _runs(reads, np.asarray(bounds[a]))
        per_axis.append(runs)
        shape.append(hi - lo)
        core.append(slice(start - lo, stop - lo))
    raw = [(0, tuple(c for c, _, _ in combo), tuple(d for _, d, _ in combo),
            tuple(r for _, _, r in combo)) for combo in _product(per_axis)]
    halos, pieces = _sources(raw, index, 1)
    return DeepPlan(shape=tuple(shape), pieces=tuple(pieces[0]), halos=halos,
                    core=tuple(core))


def grown_volume(bounds: tuple, h: int, mode: str) -> float:
    """The points of all blocks grown by ``h`` (as :func:`deep_plan` grows them) over
    the grid's points: 1 plus the fraction computed twice."""
    ratio = 1.0
    for edges in bounds:
        n = edges[-1]
        if mode == "wrap":
            grown = n + 2 * h * (len(edges) - 1)
        else:
            grown = sum(min(hi + h, n) - max(lo - h, 0) for lo, hi in zip(edges, edges[1:]))
        ratio *= grown / n
    return ratio


def _sources(raw: list, index: tuple, groups: int) -> tuple[tuple, list]:
    """The slices of the neighbours that travel, and the pieces that read them.

    ``raw`` holds ``(group, source block, dest, src)`` with ``src`` in the source
    block's own coordinates.  Per neighbour, boxes around its pieces travel, merged
    where that costs no more than sending them apart (a block that is both the
    previous and the next neighbour, under ``'wrap'``, sends two thin slices); a
    piece of the block itself reads the block (source -1).  Returns ``(halos, pieces
    per group)``, halos sorted by neighbour as ``(neighbour index, slices)``.
    """
    boxes: dict[tuple, list] = {}
    for _, src_block, _, src in raw:
        if src_block != index:
            boxes.setdefault(src_block, []).append([_span(r) for r in src])
    halos, where = [], {}
    for j in sorted(boxes):
        merged = _merge_boxes(boxes[j])
        where[j] = [(len(halos) + k, box) for k, box in enumerate(merged)]
        halos += [(j, tuple(slice(lo, hi) for lo, hi in box)) for box in merged]
    pieces: list[list[Piece]] = [[] for _ in range(groups)]
    for k, src_block, dest, src in raw:
        if src_block == index:
            source = -1
        else:
            spans = [_span(r) for r in src]
            source, box = next((n, b) for n, b in where[src_block]
                               if all(lo <= s0 and s1 <= hi
                                      for (lo, hi), (s0, s1) in zip(b, spans)))
            src = tuple(_shift(r, -lo) for (lo, _), r in zip(box, src))
        pieces[k].append(Piece(source, dest, src))
    return tuple(halos), pieces


def _span(r: slice) -> tuple[int, int]:
    """The points ``[lo, hi)`` a step +1/-1 slice covers."""
    if r.step > 0:
        return r.start, r.stop
    return (-1 if r.stop is None else r.stop) + 1, r.start + 1


def _shift(r: slice, by: int) -> slice:
    stop = None if r.stop is None else r.stop + by
    if r.step < 0 and stop is not None and stop < 0:
        stop = None
    return slice(r.start + by, stop, r.step)


def _merge_boxes(boxes: list) -> list:
    """Boxes (per axis ``(lo, hi)``) merged pairwise while the union holds no more
    points than the two apart."""
    def volume(b):
        return math.prod(hi - lo for lo, hi in b)

    boxes = [list(b) for b in dict.fromkeys(tuple(b) for b in boxes)]  # distinct, in order
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for k in range(i + 1, len(boxes)):
                union = [(min(a[0], b[0]), max(a[1], b[1])) for a, b in zip(boxes[i], boxes[k])]
                if volume(union) <= volume(boxes[i]) + volume(boxes[k]):
                    boxes[i] = union
                    del boxes[k]
                    merged = True
                    break
            if merged:
                break
    return [tuple(b) for b in boxes]


def _product(per_axis: list) -> list:
    out = [()]
    for groups in per_axis:
        out = [combo + (grp,) for combo in out for grp in groups]
    return out
