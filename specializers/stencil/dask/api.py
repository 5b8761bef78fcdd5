"""The public calls: ``apply`` (one kernel call on dask arrays, lazily) and ``iterate``
(time steps, persisted every few)."""
from __future__ import annotations

import numpy as np

from specializers.stencil.dask.halos import check_chunks, halo
from specializers.stencil.dask.shipping import BlockCall, is_dask_collection
from specializers.stencil.dask.split import split_graph
from specializers.stencil.grid import default_neighbors
from specializers.stencil.kernel import StencilKernel

__all__ = ["METHODS", "apply", "iterate"]

METHODS = ("split", "overlap")
# Dask's names for the modes it pads itself; 'mirror' and 'constant' are handled apart.
_DASK_KINDS = {"wrap": "periodic", "nearest": "nearest", "reflect": "reflect"}


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
    layout = tuple(is_dask_collection(a) for a in inputs)
    consts = tuple(a for a in inputs if not is_dask_collection(a))
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


def iterate(kernel: StencilKernel, u, steps: int, *args, persist_every: int = 10, **options):
    """``steps`` time steps ``u = kernel(u, *args)`` on a dask array.

    The graph grows by one layer of tasks per step; ``persist`` every
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
