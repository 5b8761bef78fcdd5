"""Stencil kernels on ``dask.array`` inputs: one specialized call per block, halos by asp.

::

    import dask.array as da
    from specializers.stencil.dask import apply, iterate

    u = da.from_array(grid, chunks=(1024, 1024))
    v = apply(Heat(boundary="wrap"), u, 0.1)      # a dask.array, nothing computed yet
    v = iterate(Heat(boundary="wrap"), u, 100, 0.1, persist_every=10)   # T steps per exchange

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

``iterate`` in ``'interior'`` and ``'wrap'`` mode exchanges halos ``T`` times as
deep once per ``T`` steps and runs the ``T`` steps per block in one task, through
:meth:`StencilKernel.iterate` (temporally blocked where the kernel can be): see
:mod:`.deep` for why that is exact and how ``T`` is chosen.  Other modes exchange a
halo every step.

Only dask arrays are split into blocks; numbers and NumPy arrays (lookup tables)
go whole to every block.  Dask is optional: importing this package without it
raises an :class:`ImportError` that says how to install it.

The package, by concern: :mod:`.api` (``apply``, ``iterate``), :mod:`.split` (the
split method's tasks and graph), :mod:`.deep` (deep halos: several steps per
exchange), :mod:`.partition` (which slices travel, how strips and grown blocks are
assembled), :mod:`.halos` (how far a block must see), :mod:`.shipping` (the kernel
on the workers, the per-block calls).
"""
from __future__ import annotations

try:
    import dask.array  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("specializers.stencil.dask needs Dask: pip install 'asp-sejits[dask]'"
                      ) from exc

from asp.scaleout import gather
from specializers.stencil.dask.api import METHODS, apply, iterate
from specializers.stencil.dask.halos import halo
from specializers.stencil.dask.shipping import is_dask_collection, ship_by_value

__all__ = ["METHODS", "apply", "gather", "halo", "is_dask_collection", "iterate",
           "ship_by_value"]
