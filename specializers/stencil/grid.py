"""``StencilGrid``: an n-dimensional grid of values with a ghost border and neighbourhoods.

A grid wraps a numpy array (``.data``, assignable) and describes how a
stencil kernel walks it: ``interior_points()`` are the points at least
``ghost_depth`` away from every edge, ``border_points()`` the others, and
``neighbors(x, id)`` the points at the offsets of neighbourhood ``id`` in
``neighbor_definition`` (id 0: the centre; id 1: the +-1 neighbours along
each axis).  Points are tuples of ints.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["StencilGrid", "default_neighbors", "distance"]


def distance(x, y) -> float:
    """Euclidean distance between two points (usable in kernels as ``distance(x, y)``,
    and as ``self.distance(x, y)`` as in the original Asp)."""
    return float(sum((a - b) ** 2 for a, b in zip(x, y)) ** 0.5)


def default_neighbors(dim: int) -> list[list[tuple[int, ...]]]:
    """Neighbourhood 0 (the centre) and 1 (-1 then +1 along each axis in turn)."""
    centre = [(0,) * dim]
    axes = []
    for a in range(dim):
        for step in (-1, 1):
            off = [0] * dim
            off[a] = step
            axes.append(tuple(off))
    return [centre, axes]


class StencilGrid:
    """A grid of ``shape`` (1-3 dimensions) holding zeros of ``dtype`` until ``.data`` is set."""

    def __init__(self, shape: Sequence[int], dtype=np.float64, data: np.ndarray | None = None):
        shape = tuple(int(s) for s in shape)
        if not 1 <= len(shape) <= 3:
            raise ValueError(f"StencilGrid shape {shape}: grids have 1 to 3 dimensions")
        if any(s < 0 for s in shape):
            raise ValueError(f"StencilGrid shape {shape} has a negative extent")
        self._data = np.zeros(shape, dtype) if data is None else data
        self.ghost_depth = 1
        self.neighbor_definition = default_neighbors(len(shape))

    @classmethod
    def from_array(cls, array: np.ndarray) -> StencilGrid:
        """A grid that shares ``array``'s memory."""
        return cls(array.shape, array.dtype, data=array)

    # -- the data ---------------------------------------------------------------------------
    @property
    def data(self) -> np.ndarray:
        return self._data

    @data.setter
    def data(self, value) -> None:
        value = np.asarray(value)
        if value.ndim == 0 or value.ndim > 3:
            raise ValueError(f"StencilGrid.data must have 1 to 3 dimensions, not {value.ndim}")
        self._data = value

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def dim(self) -> int:
        return self._data.ndim

    @property
    def interior(self) -> list[int]:
        """The interior's shape: each extent less the ghost border at both ends (the
        original Asp's attribute)."""
        return [max(n - 2 * self.ghost_depth, 0) for n in self.shape]

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    def __getitem__(self, x):
        return self._data[x]

    def __setitem__(self, x, value) -> None:
        self._data[x] = value

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return (f"StencilGrid(shape={self.shape}, dtype={self.dtype}, "
                f"ghost_depth={self.ghost_depth})")

    # -- iteration --------------------------------------------------------------------------
    def interior_points(self) -> Iterator[tuple[int, ...]]:
        g = self.ghost_depth
        ranges = [range(g, n - g) for n in self.shape]
        return (tuple(p) for p in itertools.product(*ranges))

    def border_points(self) -> Iterator[tuple[int, ...]]:
        g = self.ghost_depth
        for p in itertools.product(*(range(n) for n in self.shape)):
            if any(i < g or i >= n - g for i, n in zip(p, self.shape)):
                yield p

    def neighbors(self, center, dist: int) -> Iterator[tuple[int, ...]]:
        center = (center,) if isinstance(center, int | np.integer) else tuple(center)
        for off in self.neighbor_definition[dist]:
            yield tuple(c + o for c, o in zip(center, off))
