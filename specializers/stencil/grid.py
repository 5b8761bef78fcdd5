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

__all__ = ["GridArray", "StencilGrid", "carrying", "default_neighbors", "distance", "like",
           "own_geometry"]


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


_DEFAULTS = {d: default_neighbors(d) for d in (1, 2, 3)}  # for comparisons only


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
        """A grid that shares ``array``'s memory (and a :class:`GridArray`'s geometry)."""
        grid = cls(array.shape, array.dtype, data=np.asarray(array))
        if isinstance(array, GridArray):
            grid.ghost_depth = array.ghost_depth
            if array.neighbor_definition is not None:
                grid.neighbor_definition = array.neighbor_definition
        return grid

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


class GridArray(np.ndarray):
    """What ``K(g)`` returns for a grid ``g`` with a geometry of its own (a ghost depth or
    neighbourhoods other than the defaults): a NumPy array, usable as one everywhere,
    that remembers ``g``'s ``ghost_depth`` and ``neighbor_definition``, so that the next
    call walks it as ``K`` walked ``g`` and the loop ``g = K(g)`` gives what
    ``K.iterate(g, steps=n)`` gives.  Arrays NumPy derives from it with the same number
    of dimensions keep the geometry; ``np.asarray`` gives a plain array (the defaults).
    """

    ghost_depth: int = 1
    #: None: the defaults of its number of dimensions (:func:`default_neighbors`).
    neighbor_definition: list | None = None
    #: Whether any GridArray was made in this process (until one is, the stencil's hot
    #: call path need not look for one among its arguments).
    made: bool = False

    def __array_finalize__(self, obj) -> None:
        GridArray.made = True
        if obj is not None and getattr(obj, "ndim", None) == self.ndim:
            self.ghost_depth = getattr(obj, "ghost_depth", 1)
            self.neighbor_definition = getattr(obj, "neighbor_definition", None)

    def __array_wrap__(self, array, context=None, return_scalar=False):
        # Reductions give NumPy scalars, as they do for plain arrays.
        if return_scalar:
            return array[()]
        return super().__array_wrap__(array, context, return_scalar)

    def __reduce__(self):
        rebuild, args, state = super().__reduce__()
        return rebuild, args, (state, self.ghost_depth, self.neighbor_definition)

    def __setstate__(self, state) -> None:
        base, self.ghost_depth, self.neighbor_definition = state
        super().__setstate__(base)


def own_geometry(arg) -> tuple | None:
    """``arg``'s geometry (ghost depth, neighbourhoods as tuples) if it is a grid or a
    :class:`GridArray` whose geometry is not the defaults, else None."""
    if not isinstance(arg, StencilGrid | GridArray):
        return None
    nd, dim = arg.neighbor_definition, arg.dim if isinstance(arg, StencilGrid) else arg.ndim
    if nd is None:
        if arg.ghost_depth == 1:
            return None
        nd = default_neighbors(dim)
    elif arg.ghost_depth == 1 and nd == _DEFAULTS.get(dim):
        return None
    return (int(arg.ghost_depth), tuple(tuple(tuple(int(v) for v in off) for off in lst)
                                        for lst in nd))


def carrying(template, array: np.ndarray) -> np.ndarray:
    """``array`` as what ``K(template)`` returns: a :class:`GridArray` with
    ``template``'s geometry when it has one of its own, else ``array`` itself."""
    if own_geometry(template) is None:
        return array
    nd = template.neighbor_definition
    if type(array) is GridArray and array.ghost_depth == template.ghost_depth \
            and array.neighbor_definition == nd:
        return array
    out = array.view(GridArray)
    out.ghost_depth = template.ghost_depth
    out.neighbor_definition = None if nd is None else [list(lst) for lst in nd]
    return out


def like(template, array: np.ndarray):
    """``array`` as ``template``'s kind: a grid of ``template``'s ghost depth and
    neighbourhoods if that is a grid, else :func:`carrying` (a GridArray of its geometry,
    or ``array`` itself)."""
    if not isinstance(template, StencilGrid):
        return carrying(template, array)
    grid = StencilGrid.from_array(array)
    grid.ghost_depth = template.ghost_depth
    grid.neighbor_definition = template.neighbor_definition
    return grid
