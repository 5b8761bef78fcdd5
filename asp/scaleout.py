"""Helpers the specializers share for running on Dask (an optional dependency).

Nothing here imports Dask at module level: the core stays importable without it.
"""
from __future__ import annotations

import numpy as np

from asp.runtime import as_native
from asp.runtime.mapargs import same_shape

__all__ = ["blockwise", "gather", "has_dask"]


def has_dask(args) -> bool:
    """Whether any of ``args`` is a dask collection (imports nothing)."""
    return any(hasattr(a, "__dask_graph__") for a in args)


def blockwise(fn, fname: str, params, args: tuple, reduce=None):
    """``fn`` (a kernel of arrays of one shape and numbers) on arguments some of which are
    dask arrays: block by block, a lazy dask array, as NumPy's ufuncs give on dask arrays.

    ``reduce`` (e.g. ``np.sum``): ``fn`` returns a scalar of its blocks, and the result is
    the lazy 0-d dask array of ``reduce`` over the blocks' scalars (a sum adds its blocks'
    sums: floating-point totals round in another order than one pass over the array).
    NumPy arrays among the arguments are split like the dask arrays; numbers apply to
    every block."""
    import dask.array as da

    shape = shape_of = None
    conv = []
    for name, a in zip(params, args):
        if hasattr(a, "__dask_graph__") or (isinstance(a, np.ndarray) and a.ndim > 0):
            if not isinstance(a, np.ndarray) and not isinstance(a, da.Array):
                raise TypeError(f"{fname}() argument {name!r} is a {type(a).__name__}; "
                                "expected a dask array, a NumPy array or a number")
            shape, shape_of = same_shape(fname, name, a.shape, shape, shape_of)
            a = da.asarray(a)
        conv.append(a)
    # The result's type: the kernel on one element of each (compiled or not, as any call).
    sample = fn(*[np.ones((1,) * a.ndim, a.dtype) if isinstance(a, da.Array) else a
                  for a in conv])
    dtype = np.asarray(sample).dtype
    # The arrays' blocks made common (a NumPy array comes as one block).
    _, conv = da.core.unify_chunks(*[x for a in conv for x in (
        (a, tuple(range(a.ndim))) if isinstance(a, da.Array) else (a, None))])
    if reduce is None:
        return da.map_blocks(fn, *conv, dtype=dtype)
    # One scalar per block, none for an empty block (max and min have no identity).
    grid = next(a.chunks for a in conv if isinstance(a, da.Array))
    ndim = len(grid)

    def one(*blocks):
        if any(isinstance(b, np.ndarray) and b.size == 0 for b in blocks):
            return np.empty((0,) * ndim, dtype)
        return np.asarray(fn(*blocks), dtype).reshape((1,) * ndim)

    scalars = da.map_blocks(one, *conv, dtype=dtype,
                            chunks=tuple(tuple(1 if c else 0 for c in axis) for axis in grid))
    return reduce(scalars)


def gather(x) -> np.ndarray:
    """A dask array as one NumPy array, assembled on the client from its blocks.

    ``x.compute()`` concatenates the blocks on one worker first; that worker keeps
    copies of the others' blocks, and when Dask's memory manager later drops one of
    the two copies it may drop the original, so one worker ends up holding (and
    computing) two blocks from then on.  For an ``x`` persisted on a distributed
    cluster this fetches each block from where it is and leaves the cluster as it
    was; otherwise it is ``x.compute()``.  The result is aligned and C-contiguous,
    so asp's kernels take it without a copy.
    """
    import dask.array as da

    if not isinstance(x, da.Array):
        raise TypeError(f"x must be a dask array, not {type(x).__name__}")
    try:
        from distributed import futures_of
    except ImportError:  # no distributed: nothing is spread over workers
        return as_native(x.compute())
    futures = {f.key: f for f in futures_of(x)}
    keys = x.__dask_keys__()
    flat = list(_flatten(keys))
    if not flat or any(k not in futures for k in flat):  # not (all) persisted
        return as_native(x.compute())
    blocks = futures[flat[0]].client.gather(_nest(keys, futures))
    return as_native(np.block(blocks)) if x.ndim else np.asarray(blocks)


def _flatten(keys):
    if isinstance(keys, list):
        for k in keys:
            yield from _flatten(k)
    else:
        yield keys


def _nest(keys, futures: dict):
    return [_nest(k, futures) for k in keys] if isinstance(keys, list) else futures[keys]
