"""The outputs ``StencilKernel.__call__`` allocates, and what it zeroes in them.

A loop ``u = K(u, r)`` allocates an output each step, with
:func:`asp.runtime.new_output`: not zeroed (outputs of 128 KiB and more are freed
blocks of the same size, kept for reuse), so whatever the kernel does not write must be
zeroed:

* a kernel that reads or accumulates into its output: everything, first;
* a kernel that assigns every point it visits, in a boundary mode: nothing;
* the same in ``'interior'`` mode: the border it does not visit, which the
  compiled code of :attr:`Remembered.jit` zeroes itself, in the variant's own team
  (:mod:`.border`), each thread the rows it computes.  Zeroing a 512^2 output's
  border from the calling thread cost 20-35 us a step (a third of the step, in
  cache lines moved between the cores), in the team nothing measurable.

Which case holds depends on the source and the kinds of the arguments only, so the
first call of a kind finds it (preparing the call: milliseconds) and the
kernel object remembers it with what the next calls need (:class:`Remembered`).
"""
from __future__ import annotations

import weakref
from typing import NamedTuple

import numpy as np

from asp.runtime import JitKernel, new_output
from specializers.stencil.grid import GridArray, StencilGrid, carrying, like, own_geometry
from specializers.stencil.state import PER_INSTANCE, read_key, reads_of

__all__ = ["REMEMBERED", "Remembered", "call_fresh", "call_jit", "kinds", "run_remembered"]

#: Kinds of calls a kernel object remembers (a multigrid cycle calls one smoother on
#: grids of several sizes: with one remembered, alternating 16^2 and 20^2 grids planned
#: every call afresh, 26 us a call against 3.5).
REMEMBERED = 16

# Per JitKernel and kinds of arguments: whether the kernel assigns every point it visits.
_WRITES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class Remembered(NamedTuple):
    """What a ``__call__`` found, for later calls with the same :func:`kinds` of
    arguments (its key in the kernel's ``_fresh``)."""

    options: tuple  # (boundary, cval, should_unroll, the kernel's code) it was found for
    shape: tuple
    dtype: np.dtype
    plan: list | None  # what to zero here: index tuples, or None for everything
    grid_at: int | None  # the input whose geometry the output takes (a grid or GridArray)
    jit: JitKernel | None  # the code that zeroes the border itself ('interior'), if any
    reads: object  # read_key of what the kernel reads (None: it reads nothing)
    names: tuple  # the names of what it reads
    plain: bool  # no input is a StencilGrid: the inputs are what the compiled code takes
    first: int  # the position of the first input grid (the output starts half a page off)


def kinds(inputs: tuple) -> tuple:
    """What a remembered zeroing plan and output depend on: the types, dtypes and shapes
    of the arrays and grids (with their geometries), the types of the rest (hashable:
    the key of a kernel's remembered calls)."""
    return tuple([(type(a), a.dtype, a.shape) if type(a) is np.ndarray else _kind(a)
                  for a in inputs])


def _kind(a):
    if isinstance(a, StencilGrid):
        return type(a), own_geometry(a), a.data.dtype, a.data.shape
    if isinstance(a, np.ndarray):
        return type(a), own_geometry(a), a.dtype, a.shape
    return type(a)


def run_remembered(kernel, r: Remembered, inputs: tuple):
    """``kernel(*inputs)`` as ``r`` says (the caller checked ``r`` applies)."""
    first = inputs[r.first]
    out = new_output(r.shape, r.dtype, first if r.plain else _data(first))
    if r.jit is not None and (r.reads is None or r.reads == read_key(kernel, r.names)):
        r.jit(*(inputs if r.plain else arrays(inputs)), out)  # it zeroes the border too
    else:
        _zero(out, r.plan)
        kernel.kernel(*inputs, out if r.grid_at is None else like(inputs[r.grid_at], out))
    return out if r.grid_at is None else carrying(inputs[r.grid_at], out)


def call_fresh(kernel, inputs: tuple):
    """``kernel(*inputs)`` when nothing is remembered for these kinds of arguments."""
    params = kernel._params()[:-1]
    if len(inputs) != len(params):  # counted as the user calls it: without the output
        raise TypeError(f"{type(kernel).__name__}() takes {len(params)} argument(s) "
                        f"({', '.join(params)}; the output is made), got {len(inputs)}")
    if any(hasattr(a, "__dask_graph__") for a in inputs):
        from specializers.stencil.dask import apply  # dask stays an optional extra

        return apply(kernel, *inputs)
    at, first, data = _first_grid(kernel, inputs)
    native = _native_output(kernel, data)
    out = new_output(data.shape, data.dtype, data) if native else np.zeros(data.shape,
                                                                             data.dtype)
    grid = isinstance(first, StencilGrid | GridArray)
    target = like(first, out)
    if not native:
        kernel.kernel(*inputs, target)
        return carrying(first, out)
    learnt, plan, zeroing = _zero_unwritten(kernel, inputs, target, out)
    if zeroing is not None:
        zeroing(*arrays((*inputs, target)))
    else:
        kernel.kernel(*inputs, target)
    if learnt is not None:  # a valid call: the answer was the kernel's, not the call's
        _WRITES.setdefault(learnt[0], {})[learnt[1]] = learnt[2]
    names = reads_of(type(kernel), type(kernel).kernel)
    reads = read_key(kernel, names)
    key = kinds(inputs)
    remembered = kernel._fresh or {}
    if len(remembered) >= REMEMBERED and key not in remembered:
        # The kind remembered first (pop: another thread may have dropped it already).
        remembered.pop(next(iter(remembered), None), None)
    remembered[key] = Remembered(
        (kernel.boundary, kernel.cval, kernel.should_unroll, type(kernel).kernel.__code__),
        data.shape,
        data.dtype, plan, at if grid else None,
        None if reads is PER_INSTANCE else zeroing, reads if names else None, names,
        not any(isinstance(a, StencilGrid) for a in inputs), at)
    kernel._fresh = remembered
    return carrying(first, out)


def call_jit(kernel, *inputs) -> JitKernel:
    """The :class:`~asp.runtime.JitKernel` that ``kernel(*inputs)`` runs (for tools,
    tests and benchmarks: which variant it chose, how sure)."""
    _, first, data = _first_grid(kernel, inputs)
    out = np.zeros(data.shape, data.dtype)  # untouched pages: no memory used
    args = (*inputs, like(first, out))
    zero = _native_output(kernel, data) and kernel.boundary == "interior" \
        and _writes(kernel.jit_for(*args, zero=True), arrays(args))[0] \
        and _border(out.shape, _deepest(args)) is not None
    return kernel.jit_for(*args, zero=zero)


def _data(a):
    """A grid's array; anything else as it is."""
    return a._data if isinstance(a, StencilGrid) else a


def _first_grid(kernel, inputs: tuple):
    """The first input grid (its position, itself, its array): the output takes its shape
    and dtype.  A TypeError names the kernel when there is none."""
    at = next((i for i, a in enumerate(inputs) if isinstance(a, StencilGrid | np.ndarray)),
              None)
    if at is None:
        raise TypeError(f"{type(kernel).__name__}() needs at least one input grid")
    first = inputs[at]
    return at, first, _data(first)


def _native_output(kernel, data: np.ndarray) -> bool:
    """Whether ``kernel(data, ...)``'s output comes from :func:`new_output` (not zeroed)
    and the call remembers what to zero: a compiled kernel, of a dtype it can take (any
    other reaches the kernel's own check, a clear error naming the argument, through
    np.zeros).  Any size: before, grids under 1 MiB planned every call afresh (a 16^2
    heat step cost 6 us as ``u = K(u, r)``, 3.5 now, against 0.9 for ``K.kernel`` into
    a preallocated output)."""
    return not kernel.pure_python and data.dtype.kind in "iuf" and data.dtype.isnative


def _writes(jit: JitKernel, arrays: tuple):
    """Whether ``jit``'s kernel assigns every point it visits, and what to remember if
    it was found now (None if remembered)."""
    kinds = tuple((a.dtype.str, a.ndim) if isinstance(a, np.ndarray) else type(a)
                  for a in arrays)
    writes = _WRITES.get(jit, {}).get(kinds)
    if writes is not None:
        return writes, None
    writes = jit.specializer.writes_every_point(arrays)
    return writes, (jit, kinds, writes)


def _deepest(args: tuple) -> int:
    return max([1, *(a.ghost_depth for a in args if isinstance(a, StencilGrid | GridArray))])


def _zero_unwritten(kernel, inputs: tuple, target, out: np.ndarray):
    """Zero what the kernel will not write in a fresh (reused, not zeroed) output:
    nothing when it assigns every point; the border of the ghost depth in
    ``'interior'`` mode; everything when it reads or accumulates into ``out``.

    Whether it assigns every point depends on the source and the kinds of the
    arguments only (the same code runs if the call falls back), and finding it
    prepares the call, which in ``'interior'`` mode runs the domain passes:
    milliseconds, which a Dask block's first task paid every step.  So it is
    remembered, once a call has shown that the arguments were valid (an invalid
    call answers False): returns what to remember then (or None), what was
    zeroed (index tuples; None for everything), and the JitKernel to call when its
    code zeroes the border instead (then nothing is zeroed here)."""
    args = (*inputs, target)
    zero = kernel.boundary == "interior"
    jit = kernel.jit_for(*args, zero=zero)
    writes, learnt = _writes(jit, arrays(args))
    if not writes:
        plan = None  # everything
    elif zero:
        # The loop may walk any grid's interior: zero the widest border (the kernel
        # overwrites whatever of it it visits).
        plan = _border(out.shape, _deepest(args))
        if plan is not None:
            return learnt, plan, jit
    else:
        plan = []  # nothing: every point is written
    _zero(out, plan)
    return learnt, plan, None


def _border(shape: tuple, g: int) -> list | None:
    """The index tuples of the border ``g`` deep of an array of ``shape``: two per axis,
    or one (``::n-1``) when ``g`` is 1 (zeroing both columns of a 512^2 grid as one
    strided view costs 3 us, as two single columns 10 us); None (everything) when an
    axis is all border."""
    plan = []
    for axis, n in enumerate(shape):
        if n <= 2 * g:
            return None
        index = [slice(None)] * len(shape)
        if g == 1:
            index[axis] = slice(None, None, n - 1)
            plan.append(tuple(index))
        else:
            index[axis] = slice(0, g)
            plan.append(tuple(index))
            index[axis] = slice(n - g, None)
            plan.append(tuple(index))
    return plan


def _zero(out: np.ndarray, plan: list | None) -> None:
    """Zero all of ``out`` (``plan`` None) or the parts ``plan`` indexes (``fill`` on a
    view: a third cheaper than assigning 0 through the index)."""
    if plan is None:
        out.fill(0)
    for index in plan or ():
        out[index].fill(0)


def arrays(args: tuple) -> tuple:
    """``args`` with each grid replaced by its array."""
    return tuple(_data(a) for a in args)
