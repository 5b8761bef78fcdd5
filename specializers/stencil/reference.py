"""The Python reference of a stencil kernel under a boundary mode.

For ``'interior'`` the user's kernel runs as written.  For the other modes the
body must run at every output point, with out-of-grid reads resolved as
scipy.ndimage does: the kernel is run on grid views whose
``interior_points()`` yield every point and whose reads remap each axis.
"""
from __future__ import annotations

import itertools

import numpy as np

from specializers.stencil.grid import StencilGrid

__all__ = ["BoundaryGrid", "remap"]


def remap(i: int, n: int, mode: str) -> int | None:
    """The in-grid index that out-of-grid index ``i`` reads under ``mode`` (None: cval)."""
    if 0 <= i < n:
        return i
    if mode == "constant":
        return None
    if mode == "nearest":
        return 0 if i < 0 else n - 1
    if mode == "wrap":
        return i % n
    if mode == "reflect":
        i %= 2 * n
        return i if i < n else 2 * n - 1 - i
    if mode == "mirror":
        if n == 1:
            return 0
        i %= 2 * n - 2
        return i if i < n else 2 * n - 2 - i
    raise ValueError(mode)


class BoundaryGrid(StencilGrid):
    """A grid view whose every point is 'interior' and whose reads follow a boundary mode."""

    def __init__(self, base: StencilGrid, mode: str, cval: float):
        super().__init__(base.shape, base.dtype, data=base.data)
        self.ghost_depth = base.ghost_depth
        self.neighbor_definition = base.neighbor_definition
        self.mode, self.cval = mode, cval

    def interior_points(self):
        return (tuple(p) for p in itertools.product(*(range(n) for n in self.shape)))

    def __getitem__(self, x):
        if isinstance(x, tuple) and len(x) == self.dim:
            fixed = []
            for i, n in zip(x, self.shape):
                j = remap(int(i), n, self.mode)
                if j is None:
                    return self.data.dtype.type(self.cval)
                fixed.append(j)
            return self.data[tuple(fixed)]
        if self.dim == 1 and isinstance(x, int | np.integer):
            j = remap(int(x), self.shape[0], self.mode)
            return self.data.dtype.type(self.cval) if j is None else self.data[j]
        return self.data[x]
