"""Stencil kernels on ``dask.array`` inputs: one specialized call per block, halos by Dask.

::

    import dask.array as da
    from specializers.stencil.dask import apply, iterate

    u = da.from_array(grid, chunks=(1024, 1024))
    v = apply(Heat(boundary="wrap"), u, 0.1)      # a dask.array, nothing computed yet
    v = iterate(Heat(boundary="wrap"), u, 100, 0.1, persist_every=10)

Each block is grown by the kernel's halo with :func:`dask.array.map_overlap`,
run through the kernel's ordinary NumPy path (so a worker specializes, or loads
the compiled object from its cache), and trimmed back.  How the halo at the edge
of the whole domain is filled follows the kernel's ``boundary`` mode:

============  ====================================================================
``interior``  no halo outside the domain (``boundary='none'``): the border of
              width ``ghost_depth`` is left as zeros, as ``kernel(...)`` leaves it
``wrap``      Dask's ``'periodic'``
``nearest``   Dask's ``'nearest'``
``reflect``   Dask's ``'reflect'`` (``d c b a | a b c d``, as scipy's ``reflect``)
``constant``  the value ``cval``
``mirror``    Dask has no such kind: the array is padded with NumPy's ``'reflect'``
              (``d c b | a b c d``) by :func:`dask.array.pad`, then trimmed
============  ====================================================================

Only dask arrays are split into blocks; numbers and NumPy arrays (lookup tables)
go whole to every block.  Dask is optional: importing this module without it
raises an :class:`ImportError` that says how to install it.
"""
from __future__ import annotations

import sys
import types

import numpy as np

try:
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("specializers.stencil.dask needs Dask: pip install 'asp-sejits[dask]'"
                      ) from exc

from asp.errors import SpecializationError
from asp.frontend import attach_source
from specializers.stencil.domain import radius
from specializers.stencil.grid import StencilGrid
from specializers.stencil.kernel import StencilKernel

__all__ = ["apply", "halo", "is_dask_collection", "iterate", "ship_by_value"]

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
        state = {k: v for k, v in vars(self.kernel).items() if k not in _DERIVED}
        return _rebuild, (type(self.kernel), state)


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
    the farthest neighbour read (0 for a point-wise kernel)."""
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


# -- the public calls ----------------------------------------------------------------------
def apply(kernel: StencilKernel, *inputs, depth: int | tuple[int, ...] | None = None,
          rechunk: bool = True, ghost_depth: int | None = None,
          neighbor_definition: list | None = None):
    """``kernel(*inputs)`` on dask arrays: a lazy ``dask.array`` of the output.

    Dask arrays among ``inputs`` must share one shape and are split into blocks;
    other arguments (numbers, NumPy lookup tables) go whole to every block.
    Blocks reach the kernel as NumPy arrays (ghost depth 1, the default
    neighbourhoods) unless ``ghost_depth`` or ``neighbor_definition`` is given:
    then as :class:`StencilGrid` objects with that geometry.
    ``depth`` overrides the halo (at least the kernel's reach).  A chunk smaller
    than the halo is merged with its neighbours when ``rechunk`` is true, else a
    ``ValueError`` is raised.  The result equals ``kernel(*computed inputs)`` bit
    for bit when both run the same variant.
    """
    if not isinstance(kernel, StencilKernel):
        raise TypeError(f"kernel must be a StencilKernel instance, not {type(kernel).__name__}")
    name = f"{type(kernel).__name__}()"
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
        from specializers.stencil.grid import default_neighbors

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
    fields = [_check_chunks(a, depth, rechunk, name) for a in fields]
    # Every block gets the same chunk grid (map_overlap would unify them anyway).
    fields = [a.rechunk(fields[0].chunks) for a in fields]
    layout = tuple(is_dask_collection(a) for a in inputs)
    consts = tuple(a for a in inputs if not is_dask_collection(a))
    dtype = fields[0].dtype
    fn = _Bound(_Shipped(kernel), layout, consts, geometry)
    if mode == "mirror" and any(depth):
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
    elif mode == "mirror":
        boundary = "none"  # depth 0: no halo at all
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
