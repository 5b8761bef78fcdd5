"""Getting a kernel to the workers, and the call it makes on one block.

A kernel travels as its class and state (:meth:`StencilKernel.__reduce__`, which
attaches the kernel's source), never its compiled entries: each worker loads them
from its cache or builds them.  A class that workers cannot import (defined in
``__main__``, a notebook, a test module) must travel by value: :func:`ship_by_value`.
"""
from __future__ import annotations

import sys

import numpy as np

from specializers.stencil.grid import StencilGrid
from specializers.stencil.iterate import step_by_step
from specializers.stencil.kernel import StencilKernel, attach_kernel_source

__all__ = ["BlockCall", "IterateCall", "as_grid", "is_dask_collection", "ship_by_value"]


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
    attach_kernel_source(cls)


def as_grid(block: np.ndarray, geometry):
    """A block as the kernel sees it: the array itself, or a grid of ``geometry``
    (``(ghost_depth, neighbourhoods)``)."""
    if geometry is None:
        return np.asarray(block)  # a GridArray's own geometry is not the halo's
    grid = StencilGrid.from_array(block)
    grid.ghost_depth = geometry[0]
    grid.neighbor_definition = [[tuple(o) for o in lst] for lst in geometry[1]]
    return grid


class BlockCall:
    """The kernel's ordinary call on blocks (an allocated, zero-filled output), as a
    picklable object: the graph carries the kernel's class and state, the arguments
    that go whole to every block (``consts``), and where the blocks go among them
    (``layout``: True for a block)."""

    __slots__ = ("consts", "geometry", "kernel", "layout")

    def __init__(self, kernel: StencilKernel, layout: tuple, consts: tuple, geometry):
        self.kernel, self.layout, self.consts = kernel, layout, consts
        self.geometry = geometry

    def __call__(self, *blocks):
        it_b, it_c = iter(blocks), iter(self.consts)
        args = [as_grid(next(it_b), self.geometry) if is_block else next(it_c)
                for is_block in self.layout]
        return np.asarray(self.kernel(*args))  # blocks of the result are plain arrays

    def __reduce__(self):
        return BlockCall, (self.kernel, self.layout, self.consts, self.geometry)


class IterateCall:
    """``steps`` steps of the kernel on blocks (:meth:`StencilKernel.iterate`, so its
    blocked variant where the kernel can be blocked), as a picklable object; the
    first block is the state, the others are read at every step.  Returns an array."""

    __slots__ = ("consts", "geometry", "kernel", "layout", "steps")

    def __init__(self, kernel: StencilKernel, layout: tuple, consts: tuple, geometry,
                 steps: int):
        self.kernel, self.layout, self.consts = kernel, layout, consts
        self.geometry, self.steps = geometry, steps

    def __call__(self, blocks: list, stepwise: bool = False) -> np.ndarray:
        """``stepwise``: one compiled step after another (small blocks: no blocked
        iteration compiled for their shape)."""
        it_b, it_c = iter(blocks), iter(self.consts)
        args = [as_grid(next(it_b), self.geometry) if is_block else next(it_c)
                for is_block in self.layout]
        if stepwise:
            out = step_by_step(self.kernel, args[0], *args[1:], steps=self.steps)
        else:
            out = self.kernel.iterate(args[0], *args[1:], steps=self.steps)
        return out.data if isinstance(out, StencilGrid) else out

    def __reduce__(self):
        return IterateCall, (self.kernel, self.layout, self.consts, self.geometry, self.steps)
