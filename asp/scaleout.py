"""Helpers the specializers share for running on Dask (an optional dependency).

Nothing here imports Dask at module level: the core stays importable without it.
"""
from __future__ import annotations

import numpy as np

from asp.runtime import as_native

__all__ = ["gather"]


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
