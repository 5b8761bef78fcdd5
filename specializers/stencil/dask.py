"""Stencil kernels on ``dask.array`` inputs: one specialized call per block, halos by asp.

::

    import dask.array as da
    from specializers.stencil.dask import apply, iterate

    u = da.from_array(grid, chunks=(1024, 1024))
    v = apply(Heat(boundary="wrap"), u, 0.1)      # a dask.array, nothing computed yet
    v = iterate(Heat(boundary="wrap"), u, 100, 0.1, persist_every=10)

Two ways to compute a block, both equal to ``kernel(*computed inputs)`` bit for
bit when both run the same variant:

``method='split'`` (the default)
    Two tasks per block.  The first runs the kernel on the block itself in
    ``'interior'`` mode with a ghost depth of the halo ``g``: that fills all but
    a shell of width ``g``, and needs nothing from the neighbours, so it starts
    at once.  The second computes the shell from thin *strips* (``3g`` points
    across, the block's width plus ``2g`` along), one per face, assembled from
    the block's own edge and slices of its neighbours, and pastes them in.  Only
    the slices (``g`` deep) travel between workers, one small task per neighbour
    cuts them, and the block is never copied: a step costs one read of the input
    and one write of the output, as the direct call does.  The first task reads
    only its own block, so the scheduler runs it where the block is (unless
    work stealing moves it).
``method='overlap'``
    :func:`dask.array.map_overlap`: every block is concatenated with its halos
    (a copy of the block), run through the kernel's own boundary mode, and
    trimmed.  Simpler, and about twice the memory traffic.

How the halo at the edge of the whole domain is filled follows the kernel's
``boundary`` mode, with scipy.ndimage's meanings (the kernel's own):

============  ====================================================================
``interior``  no halo outside the domain: the border of width ``ghost_depth`` is
              left as zeros, as ``kernel(...)`` leaves it
``wrap``      periodic
``nearest``   the edge value repeated
``reflect``   ``d c b a | a b c d``
``mirror``    ``d c b | a b c d``
``constant``  the value ``cval``
============  ====================================================================

Only dask arrays are split into blocks; numbers and NumPy arrays (lookup tables)
go whole to every block.  Dask is optional: importing this module without it
raises an :class:`ImportError` that says how to install it.
"""
from __future__ import annotations

import functools
import itertools
import math
import sys
import types
from dataclasses import dataclass

import numpy as np

try:
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("specializers.stencil.dask needs Dask: pip install 'asp-sejits[dask]'"
                      ) from exc

from asp.errors import SpecializationError
from asp.frontend import attach_source
from asp.runtime import as_native
from asp.scaleout import gather
from specializers.stencil.domain import radius
from specializers.stencil.grid import StencilGrid, default_neighbors
from specializers.stencil.kernel import StencilKernel

__all__ = ["METHODS", "apply", "gather", "halo", "is_dask_collection", "iterate",
           "ship_by_value"]

# Dask's names for the modes it pads itself; 'mirror' and 'constant' are handled apart.
_DASK_KINDS = {"wrap": "periodic", "nearest": "nearest", "reflect": "reflect"}
# The instance attributes StencilKernel.__init__ derives (rebuilt on the worker).
_DERIVED = ("kernel", "pure_kernel", "_fast")


def is_dask_collection(x) -> bool:
    """True for a Dask collection; cheap, and imports nothing (the hook's test)."""
    return hasattr(x, "__dask_graph__")


def ship_by_value(kernel_or_class) -> None:
    """Make a kernel class travel to workers by value.

    Classes defined in ``__main__``, a notebook or a test module cannot be
    imported on a worker; this registers their module with cloudpickle so the
    class is sent whole, and attaches the ``kernel`` source so a worker on another
    machine (without the file) can still specialize it.
    """
    import cloudpickle

    cls = kernel_or_class if isinstance(kernel_or_class, type) else type(kernel_or_class)
    module = sys.modules.get(cls.__module__)
    if module is not None and module.__name__ != "__main__":
        cloudpickle.register_pickle_by_value(module)
    _attach(cls)


def _attach(cls) -> None:
    fn = cls.__dict__.get("kernel") or getattr(cls, "kernel", None)
    if fn is not None and not hasattr(fn, "__asp_source__"):
        try:
            attach_source(fn)
        except (OSError, TypeError):  # no file (e.g. defined in a REPL): get_source decides
            pass


# -- shipping a kernel ---------------------------------------------------------------------
class _Shipped:
    """A kernel object as workers receive it: its class and options, not its compiled
    entries (ctypes handles cannot be pickled, and a worker has its own cache)."""

    __slots__ = ("kernel",)

    def __init__(self, kernel: StencilKernel):
        self.kernel = kernel

    def __reduce__(self):
        return _rebuild, (type(self.kernel), _state(self.kernel))

    @classmethod
    def with_options(cls, kernel: StencilKernel, **options) -> _Shipped:
        """A new kernel of ``kernel``'s class and options, some replaced (e.g. its
        boundary mode), with its own compiled state."""
        return _rebuild(type(kernel), {**_state(kernel), **options})


def _state(kernel: StencilKernel) -> dict:
    return {k: v for k, v in vars(kernel).items() if k not in _DERIVED}


# Per worker process: the first ``kernel`` function seen for each class.  A class sent
# by value is matched to the one already unpickled, but cloudpickle sets its attributes
# again, so ``kernel`` would be a new function per task, and a new function is a new
# specialization (re-planned, re-loaded): put the first one back when the code is equal.
_FIRST_FN: dict[type, types.FunctionType] = {}


def _rebuild(cls, state: dict) -> _Shipped:
    fn = cls.__dict__.get("kernel")
    if fn is not None:
        first = _FIRST_FN.setdefault(cls, fn)
        if first is not fn and first.__code__ == fn.__code__:
            cls.kernel = first
    # What StencilKernel.__init__ does, without calling a subclass's own __init__
    # (whose arguments we do not know): options from ``state``, calls through asp.
    obj = cls.__new__(cls)
    vars(obj).update(state)
    obj._fast = None
    obj.pure_kernel = types.MethodType(cls.kernel, obj)
    obj.kernel = obj._specialized
    return _Shipped(obj)


def _run_block(shipped: _Shipped, layout: tuple, consts: tuple, geometry, *blocks):
    """One block: the kernel's ordinary call (allocated, zero-filled output)."""
    it_b, it_c = iter(blocks), iter(consts)
    args = [_grid(next(it_b), geometry) if is_block else next(it_c) for is_block in layout]
    return shipped.kernel(*args)


def _grid(block: np.ndarray, geometry):
    """A block as the kernel sees it: the array itself, or a grid of the given geometry."""
    if geometry is None:
        return block
    grid = StencilGrid.from_array(block)
    grid.ghost_depth = geometry[0]
    grid.neighbor_definition = [[tuple(o) for o in lst] for lst in geometry[1]]
    return grid


# -- the halo ------------------------------------------------------------------------------
def halo(kernel: StencilKernel, *inputs, geometry=None) -> tuple[int, ...]:
    """Per axis, the halo a block needs: the ghost depth in ``'interior'`` mode, else
    the farthest neighbour read (0 for a point-wise kernel).

    Remembered per kernel class, options and argument types: a time-stepping loop
    asks once per step, and planning the kernel costs about a millisecond, which a
    step on a cluster pays before any worker starts."""
    key = _halo_key(kernel, inputs, geometry)
    if key is None:
        return _halo(kernel, inputs, geometry)
    found = _HALOS.get(key)
    if found is None:
        found = _HALOS[key] = _halo(kernel, inputs, geometry)
        if len(_HALOS) > 256:
            del _HALOS[next(iter(_HALOS))]
    return found


_HALOS: dict = {}


def _halo_key(kernel: StencilKernel, inputs: tuple, geometry):
    """What the halo depends on, hashable; None when an option or argument is not."""
    fn = getattr(type(kernel), "kernel", None)
    parts = [type(kernel), getattr(fn, "__code__", fn), geometry]
    for a in inputs:
        if is_dask_collection(a):
            parts.append(("dask", np.dtype(a.dtype).str, a.ndim))
        elif isinstance(a, np.ndarray):
            parts.append(("array", a.dtype.str, a.shape))
        else:
            parts.append(("value", type(a)))
    try:
        key = (tuple(parts), tuple(sorted(_state(kernel).items())))
        hash(key)
    except TypeError:
        return None
    return key


def _halo(kernel: StencilKernel, inputs: tuple, geometry) -> tuple[int, ...]:
    first = next(a for a in inputs if is_dask_collection(a))
    if kernel.boundary == "interior":
        # Reads beyond the ghost depth are rejected when the kernel specializes.
        return (1 if geometry is None else geometry[0],) * first.ndim
    # Tiny stand-ins of the same dtypes and ndims find the specialization's domain IR.
    args = tuple(_grid(np.zeros((3,) * a.ndim, a.dtype), geometry) if is_dask_collection(a)
                 else a for a in inputs)
    args += (_grid(np.zeros((3,) * first.ndim, first.dtype), geometry),)
    spec = kernel.jit_for(*args).specializer
    try:
        prepared = spec.prepare(args)
        k = spec.planned(spec.domain_ir(prepared.args, prepared.signature))
    except SpecializationError as exc:
        raise ValueError(f"{type(kernel).__name__}: cannot tell how far the kernel reads "
                         f"({exc}); pass depth= to apply()") from None
    lo, hi = radius(k, first.ndim)
    return tuple(max(a, b) for a, b in zip(lo, hi))


def _check_chunks(x, depth: tuple[int, ...], rechunk: bool, name: str):
    """``x`` with every chunk at least ``depth`` long (rechunked), or a ValueError."""
    for axis, (d, chunks) in enumerate(zip(depth, x.chunks)):
        if d and x.shape[axis] < d:
            raise ValueError(f"{name}: axis {axis} has {x.shape[axis]} points, fewer than the "
                             f"halo depth {d} the kernel needs")
    small = [axis for axis, (d, c) in enumerate(zip(depth, x.chunks)) if d and min(c) < d]
    if not small:
        return x
    if not rechunk:
        axis = small[0]
        raise ValueError(f"{name}: a chunk of {min(x.chunks[axis])} points along axis {axis} "
                         f"is smaller than the halo depth {depth[axis]}; use larger chunks or "
                         "rechunk=True")
    from dask.array.overlap import ensure_minimum_chunksize

    return x.rechunk(tuple(ensure_minimum_chunksize(d, c) if d else c
                           for d, c in zip(depth, x.chunks)))


# -- the split method: the block as it is, and thin strips for its shell -------------------
# NumPy's np.pad names for the kernel's boundary modes (scipy.ndimage's meanings).
_NP_PAD = {"wrap": "wrap", "nearest": "edge", "reflect": "symmetric", "mirror": "reflect"}


@functools.lru_cache(maxsize=256)
def _padmap(n: int, g: int, mode: str) -> np.ndarray:
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
class _Piece:
    source: int          # -1: the block itself, else an index into the block's halos
    dest: tuple          # slices: where in the strip
    src: tuple           # slices: where in the source (the block, or the halo slice)


@dataclass(frozen=True)
class _Strip:
    shape: tuple[int, ...]
    pieces: tuple[_Piece, ...]
    filled: bool         # some points take the constant (prefill the strip with it)
    take: tuple          # the strip's computed points that belong to the block ...
    put: tuple           # ... and where they go in the block's output


@dataclass(frozen=True)
class _BlockPlan:
    halos: tuple         # ((neighbour block index, slices of it), ...): what travels
    strips: tuple[_Strip, ...]
    band: tuple          # output slices to zero ('interior': the domain's own border)


@functools.lru_cache(maxsize=4096)
def _block_plan(bounds: tuple, g: int, mode: str, ghost: int, index: tuple) -> _BlockPlan:
    """How block ``index`` of a grid chunked at ``bounds`` (per axis, the chunk edges
    from 0 to the axis length) gets the shell of width ``g`` that an ``'interior'``
    call on the block alone leaves out.

    Each face has a strip: ``3g`` points across the face (``g`` of halo, ``2g`` of
    the block, whose middle ``g`` the strip computes correctly) and the block's
    extent plus ``2g`` along the other axes, so the corners come with it.  Its
    points are gathered from the block and from its neighbours (the domain edge
    wraps, reflects, ... by :func:`_padmap`), cut into rectangular pieces, one per
    source block.  Deterministic, so the client (which builds the graph) and the
    worker (which runs it) make the same plan.
    """
    ndim = len(bounds)
    start = [bounds[a][index[a]] for a in range(ndim)]
    length = [bounds[a][index[a] + 1] - start[a] for a in range(ndim)]
    # Per axis: for each point of the padded block, the domain point it reads.
    reads = [_padmap(bounds[a][-1], g, mode)[start[a]:start[a] + length[a] + 2 * g]
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
    # The slices of the neighbours that travel: per neighbour, boxes around its pieces,
    # merged where that costs no more than sending them apart (a block that is both
    # the previous and the next neighbour, under 'wrap', sends two thin slices).
    boxes: dict[tuple, list] = {}
    for _, src_block, _, src in raw:
        if src_block != index:
            boxes.setdefault(src_block, []).append([_span(r) for r in src])
    halos, where = [], {}
    for j in sorted(boxes):
        merged = _merge_boxes(boxes[j])
        where[j] = [(len(halos) + k, box) for k, box in enumerate(merged)]
        halos += [(j, tuple(slice(lo, hi) for lo, hi in box)) for box in merged]
    pieces: list[list[_Piece]] = [[] for _ in strips]
    for k, src_block, dest, src in raw:
        if src_block == index:
            source = -1
        else:
            spans = [_span(r) for r in src]
            source, box = next((n, b) for n, b in where[src_block]
                               if all(lo <= s0 and s1 <= hi
                                      for (lo, hi), (s0, s1) in zip(b, spans)))
            src = tuple(_shift(r, -lo) for (lo, _), r in zip(box, src))
        pieces[k].append(_Piece(source, dest, src))
    band = []
    if mode == "interior":
        for a in range(ndim):
            n = bounds[a][-1]
            lo, hi = min(max(ghost - start[a], 0), length[a]), max(n - ghost - start[a], 0)
            for piece in ((0, lo), (min(hi, length[a]), length[a])):
                if piece[1] > piece[0]:
                    band.append(tuple(slice(*piece) if b == a else slice(None)
                                      for b in range(ndim)))
    return _BlockPlan(halos=tuple(halos),
                      strips=tuple(_Strip(shape, tuple(pieces[k]), filled, take, put)
                                   for k, (shape, filled, take, put) in enumerate(strips)),
                      band=tuple(band))


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


class _Take:
    """The halo slices one block needs from one neighbour, copied (only they travel,
    not the block), in one task: each task costs the scheduler a round of messages."""

    __slots__ = ("boxes",)

    def __init__(self, boxes: tuple):
        self.boxes = boxes

    def __call__(self, block: np.ndarray) -> tuple:
        return tuple(np.array(block[box], order="C") for box in self.boxes)

    def __reduce__(self):
        return _Take, (self.boxes,)


@dataclass(frozen=True)
class _Split:
    """What every block of one ``apply`` shares."""

    fn: _Bound           # the kernel in 'interior' mode with ghost depth g
    bounds: tuple
    g: int
    mode: str
    ghost: int           # 'interior': the width of the domain border left at zero
    fills: tuple         # per field, the value of points outside the domain


class _Interior:
    """A block's first task: the kernel on the block alone (``'interior'`` mode), all
    but the shell.  It reads nothing but the block, so it starts at once, and only
    where the block is."""

    __slots__ = ("split",)

    def __init__(self, split: _Split):
        self.split = split

    def __reduce__(self):
        return _Interior, (self.split,)

    def __call__(self, own: list) -> np.ndarray:
        return self.split.fn(*[as_native(b) for b in own])


class _Shell:
    """A block's second task: the shell of width ``g``, computed from strips assembled
    from the block's own edge and the halo slices, pasted into the first task's
    output (and, in ``'interior'`` mode, the domain's border zeroed).  That array is
    this graph's own intermediate with no other reader, so it is filled in place;
    pasting is idempotent, so a retried task gives the same bits."""

    __slots__ = ("index", "split")

    def __init__(self, split: _Split, index: tuple):
        self.split, self.index = split, index

    def __reduce__(self):
        return _Shell, (self.split, self.index)

    def __call__(self, out: np.ndarray, own: list, halos: list, _cut=()) -> np.ndarray:
        sp = self.split
        plan = _block_plan(sp.bounds, sp.g, sp.mode, sp.ghost, self.index)
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


def _split_graph(kernel: StencilKernel, fields: list, layout: tuple, consts: tuple,
                 g: int, neighbors, ghost: int, name: str):
    """The dask array of ``kernel`` on ``fields`` by the split method."""
    from dask.base import tokenize
    from dask.highlevelgraph import HighLevelGraph

    ndim = fields[0].ndim
    dtype = fields[0].dtype
    inner = _Shipped.with_options(kernel, boundary="interior")
    fn = _Bound(inner, layout, consts, (g, neighbors))
    bounds = tuple(tuple(int(v) for v in np.cumsum((0,) + tuple(c))) for c in fields[0].chunks)
    mode = kernel.boundary
    fills = tuple(f.dtype.type(kernel.cval if mode == "constant" else 0) for f in fields)
    split = _Split(fn, bounds, g, mode, ghost, fills)
    try:
        token = tokenize(type(kernel).__module__, type(kernel).__qualname__,
                         sorted(_state(kernel).items()), [f.name for f in fields], consts,
                         layout, g, neighbors, ghost)
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
        plan = _block_plan(bounds, g, mode, ghost, index)
        # plan.halos is sorted by neighbour: one task per neighbour and field.
        groups = [(j, tuple(box for _, box in grp))
                  for j, grp in itertools.groupby(plan.halos, key=lambda h: h[0])]
        incoming[index] = [[] for _ in fields]
        for i, f in enumerate(fields):
            for j, boxes in groups:
                key = (halo_names[i],) + index + j
                dsk[key] = (_Take(boxes), (f.name,) + j)
                incoming[index][i].append(key)
                outgoing[j].append(key)
    for index in blocks:
        own = [(f.name,) + index for f in fields]
        dsk[(inner_name,) + index] = (_Interior(split), own)
        # The shell also names the slices its block cut for the neighbours (it does not
        # read them): they are then released after the shell, not while it waits.  The
        # scheduler batches what it sends a worker at most every 5 ms, so a release sent
        # just before the shell is handed out would hold the shell back that long.
        dsk[(out_name,) + index] = (_Shell(split, index), (inner_name,) + index, own,
                                    incoming[index], outgoing[index])
    graph = HighLevelGraph.from_collections(out_name, dsk, dependencies=fields)
    return da.Array(graph, out_name, fields[0].chunks, dtype=dtype,
                    meta=np.empty((0,) * ndim, dtype))


# -- the public calls ----------------------------------------------------------------------
METHODS = ("split", "overlap")


def apply(kernel: StencilKernel, *inputs, depth: int | tuple[int, ...] | None = None,
          rechunk: bool = True, ghost_depth: int | None = None,
          neighbor_definition: list | None = None, method: str = "split"):
    """``kernel(*inputs)`` on dask arrays: a lazy ``dask.array`` of the output.

    Dask arrays among ``inputs`` must share one shape and are split into blocks;
    other arguments (numbers, NumPy lookup tables) go whole to every block.
    Blocks reach the kernel as NumPy arrays (ghost depth 1, the default
    neighbourhoods) unless ``ghost_depth`` or ``neighbor_definition`` is given:
    then as :class:`StencilGrid` objects with that geometry.
    ``depth`` overrides the halo (at least the kernel's reach).  A chunk smaller
    than the halo is merged with its neighbours when ``rechunk`` is true, else a
    ``ValueError`` is raised.  ``method`` is ``'split'`` (the block is not
    copied; the default) or ``'overlap'`` (:func:`dask.array.map_overlap`).  The
    result equals ``kernel(*computed inputs)`` bit for bit when both run the same
    variant.
    """
    if not isinstance(kernel, StencilKernel):
        raise TypeError(f"kernel must be a StencilKernel instance, not {type(kernel).__name__}")
    name = f"{type(kernel).__name__}()"
    if method not in METHODS:
        raise ValueError(f"{name}: method={method!r}; expected one of "
                         + ", ".join(repr(m) for m in METHODS))
    fields = [a for a in inputs if is_dask_collection(a)]
    if not fields:
        raise TypeError(f"{name}: no dask array among the inputs; call the kernel directly")
    if not all(isinstance(a, da.Array) for a in fields):
        raise TypeError(f"{name}: only dask arrays are supported among Dask collections")
    shape = fields[0].shape
    for a in fields[1:]:
        if a.shape != shape:
            raise ValueError(f"{name}: dask inputs have shapes {shape} and {a.shape}; the grids "
                             "a kernel walks must share one shape")
    if any(np.isnan(s) for s in shape):
        raise ValueError(f"{name}: the inputs have unknown chunk sizes; call "
                         "compute_chunk_sizes() first")
    ndim = len(shape)
    geometry = None
    if ghost_depth is not None or neighbor_definition is not None:
        nd = default_neighbors(ndim) if neighbor_definition is None else neighbor_definition
        geometry = (1 if ghost_depth is None else int(ghost_depth),
                    tuple(tuple(tuple(int(v) for v in off) for off in lst) for lst in nd))
    need = halo(kernel, *inputs, geometry=geometry)
    if depth is None:
        depth = need
    else:
        depth = (depth,) * ndim if isinstance(depth, int) else tuple(depth)
        if len(depth) != ndim or any(d < 0 for d in depth):
            raise ValueError(f"{name}: depth={depth!r}: expected {ndim} non-negative ints")
        if need is not None and any(d < n for d, n in zip(depth, need)):
            raise ValueError(f"{name}: depth={depth} is less than the kernel's halo {need}")
    _attach(type(kernel))
    mode = kernel.boundary
    if method == "split":
        depth = (max(depth),) * ndim  # the strips are as deep on every axis
    for axis, d in enumerate(depth):
        if mode == "mirror" and d and shape[axis] <= d:
            raise ValueError(f"{name}: axis {axis} has {shape[axis]} points, fewer than the "
                             f"halo depth {d} plus the one boundary='mirror' needs")
    fields = [_check_chunks(a, depth, rechunk, name) for a in fields]
    # Every block gets the same chunk grid (map_overlap would unify them anyway).
    fields = [a.rechunk(fields[0].chunks) for a in fields]
    layout = tuple(is_dask_collection(a) for a in inputs)
    consts = tuple(a for a in inputs if not is_dask_collection(a))
    if not any(depth):  # a point-wise kernel: each block on its own
        fn = _Bound(_Shipped(kernel), layout, consts, geometry)
        return da.map_blocks(fn, *fields, dtype=fields[0].dtype,
                             meta=np.empty((0,) * ndim, fields[0].dtype))
    if method == "split":
        ghost = geometry[0] if geometry is not None else 1
        neighbors = geometry[1] if geometry is not None else \
            tuple(tuple(tuple(o) for o in lst) for lst in default_neighbors(ndim))
        return _split_graph(kernel, fields, layout, consts, depth[0], neighbors, ghost,
                            type(kernel).__name__.lower())
    return _overlap(kernel, fields, layout, consts, geometry, depth)


def _overlap(kernel: StencilKernel, fields: list, layout: tuple, consts: tuple, geometry,
             depth: tuple):
    """The dask array of ``kernel`` on ``fields`` by :func:`dask.array.map_overlap`."""
    name = f"{type(kernel).__name__}()"
    mode = kernel.boundary
    shape, ndim, dtype = fields[0].shape, fields[0].ndim, fields[0].dtype
    fn = _Bound(_Shipped(kernel), layout, consts, geometry)
    if mode == "mirror":
        pad = tuple((d, d) for d in depth)
        padded = [da.pad(a, pad, mode="reflect") for a in fields]
        padded = [_check_chunks(a, depth, True, name) for a in padded]
        out = da.map_overlap(fn, *padded, depth=depth, boundary="none", dtype=dtype,
                             meta=np.empty((0,) * ndim, dtype), allow_rechunk=False)
        return out[tuple(slice(d, s + d) for d, s in zip(depth, shape))]
    if mode == "interior":
        boundary = "none"
    elif mode == "constant":
        boundary = dtype.type(kernel.cval)
    else:
        boundary = _DASK_KINDS[mode]
    return da.map_overlap(fn, *fields, depth=depth, boundary=boundary, dtype=dtype,
                          meta=np.empty((0,) * ndim, dtype), allow_rechunk=False)


class _Bound:
    """The block function: a picklable object, so the graph carries the kernel's class
    and options (not its compiled state, which each worker makes or loads itself)."""

    __slots__ = ("consts", "geometry", "layout", "shipped")

    def __init__(self, shipped: _Shipped, layout: tuple, consts: tuple, geometry):
        self.shipped, self.layout, self.consts = shipped, layout, consts
        self.geometry = geometry

    def __call__(self, *blocks):
        return _run_block(self.shipped, self.layout, self.consts, self.geometry, *blocks)

    def __reduce__(self):
        return _Bound, (self.shipped, self.layout, self.consts, self.geometry)


def iterate(kernel: StencilKernel, u, steps: int, *args, persist_every: int = 10, **options):
    """``steps`` time steps ``u = kernel(u, *args)`` on a dask array.

    The graph grows by one overlap-and-map layer per step; ``persist`` every
    ``persist_every`` steps computes the state so far into (worker) memory and
    starts a fresh, short graph, which keeps scheduling cost flat.  ``options``
    go to :func:`apply`.
    """
    if not is_dask_collection(u):
        raise TypeError(f"u must be a dask array, not {type(u).__name__}")
    if persist_every < 1:
        raise ValueError(f"persist_every={persist_every}: expected an integer >= 1")
    for t in range(1, steps + 1):
        u = apply(kernel, u, *args, **options)
        if t % persist_every == 0 and t < steps:
            u = u.persist()
    return u
