"""The public calls: ``apply`` (one kernel call on dask arrays, lazily) and ``iterate``
(time steps: several per halo exchange where the mode allows, persisted every few)."""
from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from specializers.stencil.dask.deep import (
    DEEP_MODES,
    deep_graph,
    exchange_depth,
    steps_per_exchange,
)
from specializers.stencil.dask.halos import check_chunks, halo
from specializers.stencil.dask.shipping import BlockCall, IterateCall, is_dask_collection
from specializers.stencil.dask.split import split_graph
from specializers.stencil.grid import default_neighbors
from specializers.stencil.kernel import StencilKernel

__all__ = ["METHODS", "apply", "iterate"]

METHODS = ("split", "overlap")
# Dask's names for the modes it pads itself; 'mirror' and 'constant' are handled apart.
_DASK_KINDS = {"wrap": "periodic", "nearest": "nearest", "reflect": "reflect"}
# apply()'s options, which iterate() passes on.
_OPTIONS = ("depth", "rechunk", "ghost_depth", "neighbor_definition", "method")


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
    import dask.array as da

    p = _prepare(kernel, inputs, depth, ghost_depth, neighbor_definition, method)
    name, fields, geometry, shape = p.name, p.fields, p.geometry, p.shape
    depth, ndim = p.depth, len(shape)
    mode = kernel.boundary
    if method == "split":
        depth = (max(depth),) * ndim  # the strips are as deep on every axis
    for axis, d in enumerate(depth):
        if mode == "mirror" and d and shape[axis] <= d:
            raise ValueError(f"{name}: axis {axis} has {shape[axis]} points, fewer than the "
                             f"halo depth {d} plus the one boundary='mirror' needs")
    fields = [check_chunks(a, depth, rechunk, name) for a in fields]
    # Every block gets the same chunk grid (map_overlap would unify them anyway).
    fields = [a.rechunk(fields[0].chunks) for a in fields]
    layout, consts = p.layout, p.consts
    if not any(depth):  # a point-wise kernel: each block on its own
        fn = BlockCall(kernel, layout, consts, geometry)
        return da.map_blocks(fn, *fields, dtype=fields[0].dtype,
                             meta=np.empty((0,) * ndim, fields[0].dtype))
    if method == "split":
        ghost = geometry[0] if geometry is not None else 1
        neighbors = geometry[1] if geometry is not None else \
            tuple(tuple(tuple(o) for o in lst) for lst in default_neighbors(ndim))
        return split_graph(kernel, fields, layout, consts, depth[0], neighbors, ghost,
                           type(kernel).__name__.lower())
    return _overlap(kernel, fields, layout, consts, geometry, depth)


@dataclass(frozen=True)
class _Call:
    """A call's inputs checked and sorted: what :func:`apply` and :func:`iterate` share."""

    name: str            # the kernel as errors name it
    fields: list         # the dask arrays among the inputs
    layout: tuple        # per input, True for a dask array
    consts: tuple        # the other inputs, whole to every block
    geometry: tuple | None   # (ghost depth, neighbourhoods) of the blocks, or None
    depth: tuple         # per axis, the halo one step needs
    shape: tuple


def _prepare(kernel: StencilKernel, inputs: tuple, depth, ghost_depth, neighbor_definition,
             method: str) -> _Call:
    import dask.array as da

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
    return _Call(name, fields, tuple(is_dask_collection(a) for a in inputs),
                 tuple(a for a in inputs if not is_dask_collection(a)), geometry, tuple(depth),
                 shape)


def _overlap(kernel: StencilKernel, fields: list, layout: tuple, consts: tuple, geometry,
             depth: tuple):
    """The dask array of ``kernel`` on ``fields`` by :func:`dask.array.map_overlap`: every
    block concatenated with its halos (a copy), run in the kernel's own mode, trimmed."""
    import dask.array as da

    name = f"{type(kernel).__name__}()"
    mode = kernel.boundary
    shape, ndim, dtype = fields[0].shape, fields[0].ndim, fields[0].dtype
    fn = BlockCall(kernel, layout, consts, geometry)
    if mode == "mirror":
        pad = tuple((d, d) for d in depth)
        padded = [da.pad(a, pad, mode="reflect") for a in fields]
        padded = [check_chunks(a, depth, True, name) for a in padded]
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


def iterate(kernel: StencilKernel, u, steps: int, *args, persist_every: int = 10,
            steps_per_exchange: int | None = None, **options):
    """``steps`` time steps ``u = kernel(u, *args)`` on a dask array, bit for bit the
    loop of single-array calls (compiled alike; see the package's docstring).

    In ``'interior'`` and ``'wrap'`` mode the halo is exchanged once per *round* of
    ``T`` steps, ``T`` times as deep (:mod:`.deep`): per round, one task per block runs
    the ``T`` steps on the block grown by that halo, with the kernel's temporally
    blocked iteration where it can be blocked.  ``T`` is ``steps_per_exchange``, or
    by default the largest ``T <= 32`` whose halos add at most 10 % to the points
    computed; the last round may be shorter.  Other modes, a point-wise kernel and
    ``T = 1`` exchange a halo every step, through :func:`apply` (whose ``method`` and
    ``rechunk`` options apply only then: grown blocks take their halos from as many
    blocks as they reach).

    The graph grows by a layer of tasks per round (per step when ``T = 1``); once at
    least ``persist_every`` steps have been added since the last ``persist``, at the
    end of a round, the state is computed into (worker) memory and a fresh, short
    graph starts, which keeps scheduling cost flat.  ``options`` are :func:`apply`'s.
    """
    if not is_dask_collection(u):
        raise TypeError(f"u must be a dask array, not {type(u).__name__}")
    steps = _count("steps", steps, 0)
    persist_every = _count("persist_every", persist_every, 1)
    if steps_per_exchange is not None:
        steps_per_exchange = _count("steps_per_exchange", steps_per_exchange, 1)
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise TypeError(f"iterate() got unexpected option(s) {', '.join(unknown)}; "
                        f"expected apply()'s: {', '.join(_OPTIONS)}")
    if steps == 0:
        return u
    rounds = _rounds(kernel, u, args, steps, steps_per_exchange, options)
    if rounds is None:
        for t in range(1, steps + 1):
            u = apply(kernel, u, *args, **options)
            if t % persist_every == 0 and t < steps:
                u = u.persist()
        return u
    call, fields, h, mode, t_max = rounds
    name = type(kernel).__name__.lower()
    done = since = 0
    while done < steps:
        t = min(t_max, steps - done)
        step = IterateCall(call.kernel, call.layout, call.consts, call.geometry, t)
        u = deep_graph(step, [u, *fields[1:]], h, mode, name)
        done, since = done + t, since + t
        if since >= persist_every and done < steps:
            u, since = u.persist(), 0
    return u


def _count(what: str, value, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < least:
        raise ValueError(f"{what}={value}: expected an integer >= {least}")
    return int(value)


def _rounds(kernel: StencilKernel, u, args: tuple, steps: int, wanted: int | None,
            options: dict):
    """How :func:`iterate` runs in rounds: ``(call, fields, h, mode, T)`` (the call's
    kernel, layout, constants and geometry for the grown blocks, the dask fields on
    one chunk grid, the halo, the mode the blocks are grown in, the steps per round),
    or None for a halo exchange every step."""
    p = _prepare(kernel, (u, *args), options.get("depth"), options.get("ghost_depth"),
                 options.get("neighbor_definition"), options.get("method", "split"))
    mode = kernel.boundary
    if mode not in DEEP_MODES:
        if wanted is not None and wanted > 1:
            raise ValueError(f"{p.name}: steps_per_exchange={wanted}: boundary={mode!r} "
                             "exchanges its halo every step (only "
                             + " and ".join(repr(m) for m in DEEP_MODES)
                             + " exchange deep halos); leave steps_per_exchange unset or 1")
        return None
    reach = max(p.depth)
    if reach == 0:  # a point-wise kernel: nothing to exchange, one task per block a step
        return None
    ndim = len(p.shape)
    if mode == "interior":
        # The grid's own border of the ghost depth is zeroed at every step, as directly.
        run, geometry = kernel, p.geometry
        ghost = 1 if geometry is None else geometry[0]
    else:
        # 'wrap': the grown block is padded all round and iterated in 'interior' mode
        # with a ghost depth of the reach, as the split method's interior task is.
        run, ghost = kernel.with_options(boundary="interior"), reach
        neighbors = p.geometry[1] if p.geometry is not None else \
            tuple(tuple(tuple(o) for o in lst) for lst in default_neighbors(ndim))
        geometry = None if p.geometry is None and reach == 1 else (reach, neighbors)
    # Every field on the state's chunk grid (the blocks are grown alike).
    fields = [p.fields[0], *(a.rechunk(p.fields[0].chunks) for a in p.fields[1:])]
    bounds = tuple(tuple(int(v) for v in np.cumsum((0,) + tuple(c)))
                   for c in fields[0].chunks)
    t_max = min(wanted, steps) if wanted is not None else \
        steps_per_exchange(bounds, reach, ghost, mode, steps)
    if t_max == 1:
        return None
    call = IterateCall(run, p.layout, p.consts, geometry, t_max)
    return call, fields, exchange_depth(t_max, reach, ghost), mode, t_max
