"""How far a block must see into its neighbours, and chunks that are deep enough.

The halo is found from the kernel's own specialization (its domain IR after the
domain passes), on tiny stand-in arrays of the inputs' dtypes and ranks: no
block is read to find it.
"""
from __future__ import annotations

import numpy as np

from asp.errors import SpecializationError
from specializers.stencil.dask.shipping import as_grid, is_dask_collection
from specializers.stencil.domain import radius
from specializers.stencil.kernel import StencilKernel

__all__ = ["HALOS", "check_chunks", "halo"]

#: Remembered halos, oldest first: (class, code, geometry, inputs, state) -> depth per axis.
HALOS: dict = {}
_MAX_HALOS = 256


def halo(kernel: StencilKernel, *inputs, geometry=None) -> tuple[int, ...]:
    """Per axis, the halo a block needs: the ghost depth in ``'interior'`` mode, else
    the farthest neighbour read (0 for a point-wise kernel).

    Remembered per kernel class, options and argument types: a time-stepping loop
    asks once per step, and planning the kernel costs about a millisecond, which a
    step on a cluster pays before any worker starts."""
    key = _halo_key(kernel, inputs, geometry)
    if key is None:
        return _find_halo(kernel, inputs, geometry)
    found = HALOS.get(key)
    if found is None:
        found = HALOS[key] = _find_halo(kernel, inputs, geometry)
        if len(HALOS) > _MAX_HALOS:
            del HALOS[next(iter(HALOS))]
    return found


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
        key = (tuple(parts), tuple(sorted(kernel.__getstate__().items())))
        hash(key)
    except TypeError:
        return None
    return key


def _find_halo(kernel: StencilKernel, inputs: tuple, geometry) -> tuple[int, ...]:
    first = next(a for a in inputs if is_dask_collection(a))
    if kernel.boundary == "interior":
        # Reads beyond the ghost depth are rejected when the kernel specializes.
        return (1 if geometry is None else geometry[0],) * first.ndim
    # Tiny stand-ins of the same dtypes and ndims find the specialization's domain IR.
    args = tuple(as_grid(np.zeros((3,) * a.ndim, a.dtype), geometry) if is_dask_collection(a)
                 else a for a in inputs)
    args += (as_grid(np.zeros((3,) * first.ndim, first.dtype), geometry),)
    spec = kernel.jit_for(*args).specializer
    try:
        prepared = spec.prepare(args)
        k = spec.planned(spec.domain_ir(prepared.args, prepared.signature))
    except SpecializationError as exc:
        raise ValueError(f"{type(kernel).__name__}: cannot tell how far the kernel reads "
                         f"({exc}); pass depth= to apply()") from None
    lo, hi = radius(k, first.ndim)
    return tuple(max(a, b) for a, b in zip(lo, hi))


def check_chunks(x, depth: tuple[int, ...], rechunk: bool, name: str):
    """``x`` with every chunk at least ``depth`` long (rechunked), or a ValueError."""
    for axis, d in enumerate(depth):
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
