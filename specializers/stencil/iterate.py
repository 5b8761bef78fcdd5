"""``StencilKernel.iterate``: a time loop of a stencil kernel, as one call.

``u = K.iterate(u, *args, steps=S)`` gives what ``for _ in range(S): u = K(u, *args)``
gives, bit for bit: every point is computed by the same expression, in the same
order (asp compiles with ``-ffp-contract=off``, so no multiply-add is fused in one and
not the other).  A :class:`StencilGrid` state keeps its geometry (ghost depth and
neighbourhoods) at every step and comes back as a grid, a :class:`GridArray` keeps
its own and comes back as one; an array comes back as an array.

Schemes with several previous levels (the wave equation's leapfrog
``u_next = 2 u - u_prev + c^2 dt^2 Lap(u)``, written ``kernel(self, u, u_prev, c, out)``)
pass their state as a tuple in the kernel's parameter order, newest first; each step
computes ``new = K(*state, *args)`` and the state becomes ``(new, *state[:-1])``.

How it runs:

* kernels that can be blocked in time (see :mod:`specializers.stencil.temporal`), with
  a grid or a tuple state, run as one native call of the tuned blocked variant: several
  steps per pass over memory (a tuple state of ``K`` levels for at least ``K`` steps);
* a dask array runs as :func:`specializers.stencil.dask.iterate` (one halo exchange per
  several steps, each block's steps through this function);
* every other kernel (a boundary mode, a kernel that reads its output, ...) runs step
  by step through the kernel's own compiled code, into two buffers
  reused for every step (no allocation per step); ``asp tune show`` says why it was not
  blocked.
"""
from __future__ import annotations

import numbers
import warnings

import numpy as np

from asp import config
from asp.errors import AspFallbackWarning, SpecializationError, UnrepresentableValue
from asp.runtime import JitKernel, new_output, on_release_memory, refuse_special_array
from asp.runtime.mapargs import native
from asp.tune import db
from specializers.stencil.grid import StencilGrid, like
from specializers.stencil.temporal import IterateSpecializer, why_not_blocked

__all__ = ["iterate", "iteration_jit", "step_by_step"]

_JITS: dict[tuple[int, int], tuple[JitKernel, JitKernel]] = {}  # (id(step jit), levels) ->
# (step jit, iterate jit)
_NOTED: set[tuple[str, str, str]] = set()
_SCRATCH: dict[tuple, list[np.ndarray]] = {}  # (shape, dtype) -> scratch grids not in use
#: The scratch pool keeps grids of this many (shape, dtype) pairs, the least recently used
#: dropped first.  One was too few: a Dask worker's deep rounds iterate its 4096x8192
#: block and then a 96x8192 strip, and the strip's call dropped the block's scratch; the
#: block's two-pass variants then faulted in 268 MB of fresh pages every round (1.2-2.1 s
#: against 0.33 s), and its tuner chose by that.
SCRATCH_SHAPES = 4


def _drop_scratch() -> int:
    """Empty the scratch pool (for :func:`asp.runtime.release_memory`); its bytes."""
    pools = list(_SCRATCH.values())
    _SCRATCH.clear()
    return sum(a.nbytes for pool in pools for a in pool)


on_release_memory(_drop_scratch)


def iterate(kernel, state, *args, steps):
    """``steps`` steps of ``kernel`` from ``state`` (see the module's docstring)."""
    steps = _steps(steps)
    if hasattr(state, "__dask_graph__"):  # a dask array: deep halos, T steps per exchange
        from specializers.stencil.dask import iterate as dask_iterate

        return dask_iterate(kernel, state, steps, *args)
    levels = state if isinstance(state, tuple) else (state,)
    if not levels:
        raise ValueError("state: an empty tuple; expected a grid or a tuple of grids")
    for i, s in enumerate(levels):
        where = f"state[{i}]" if isinstance(state, tuple) else "state"
        refuse_special_array("iterate", where, s)
        if not isinstance(s, StencilGrid | np.ndarray) or np.ndim(_data(s)) == 0:
            raise TypeError(f"{where}: expected a numpy array or a StencilGrid, not "
                            f"{type(s).__name__}")
    for j, a in enumerate(args):
        refuse_special_array("iterate", f"args[{j}]", a)
    first = _data(levels[0])
    for i, s in enumerate(levels[1:], 1):
        if _data(s).shape != first.shape or _data(s).dtype != first.dtype:
            raise ValueError(f"state[{i}] has shape {_data(s).shape} and dtype "
                             f"{_data(s).dtype}; state[0] has {first.shape}, {first.dtype}")
    if steps == 0:
        return state  # (the loop calls nothing: no argument is counted)
    params = kernel._params()[len(levels):-1]  # the state is the first len(levels) inputs
    if len(args) != len(params):
        raise TypeError(f"{type(kernel).__name__}.iterate() takes the state and "
                        f"{len(params)} more argument(s) ({', '.join(params) or 'none'}), "
                        f"got {len(args)}")
    tuple_state = isinstance(state, tuple)
    if not first.dtype.isnative:  # big-endian data (a FITS file's): iterated natively on
        # a copy, and returned in the caller's byte order, as the loop of K(u) returns it
        done = iterate(kernel, tuple(like(s, _data(s).astype(native(first.dtype)))
                                     for s in levels), *args, steps=steps)
        done = tuple(like(s, _data(d).astype(first.dtype)) for s, d in zip(levels, done))
        return done if tuple_state else done[0]
    if not kernel.pure_python and not config.jit_disabled() and steps >= len(levels):
        done = _blocked(kernel, levels, args, steps)
        if done is not None:
            return done if tuple_state else done[0]
    return _step_by_step(kernel, levels, args, steps, tuple_state=tuple_state)


def step_by_step(kernel, state, *args, steps: int):
    """``steps`` steps of ``kernel`` from ``state`` (an array or grid), one compiled step
    after another, never the blocked iteration: for small grids whose own blocked
    variants are not worth compiling (the strips of :mod:`specializers.stencil.dask`'s
    deep rounds); the same bits as :func:`iterate`."""
    return _step_by_step(kernel, (state,), args, _steps(steps), tuple_state=False)


def _steps(steps) -> int:
    """``steps`` as an int, or the TypeError / ValueError that names it."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise TypeError(f"steps must be an int, not {type(steps).__name__}")
    if steps < 0:
        raise ValueError(f"steps={steps}: must be at least 0")
    return int(steps)


def _data(g) -> np.ndarray:
    return g.data if isinstance(g, StencilGrid) else g


def _step_by_step(kernel, levels: tuple, args: tuple, steps: int, *, tuple_state: bool):
    """The loop ``state = (K(*state, *args), *state[:-1])``, each step into a buffer of
    a small pool (zeroed once: a step leaves the points it does not write as they were,
    zero, unless the kernel reads its output: then each buffer is zeroed before use)."""
    data = _data(levels[0])
    probe = (*levels, *args, like(levels[0], np.zeros_like(data)))
    zero_each = not kernel.jit_for(*probe).specializer.writes_every_point(
        tuple(_data(a) if isinstance(a, StencilGrid) else a for a in probe))
    pool: list[np.ndarray] = []
    cur = list(levels)
    ours: set[int] = set()
    for _ in range(steps):
        buf = pool.pop() if pool else np.zeros_like(data)
        if zero_each:
            buf.fill(0)
        target = like(levels[0], buf)
        kernel.kernel(*cur, *args, target)
        oldest = cur[-1]
        cur = [target, *cur[:-1]]
        ours.add(id(buf))
        if id(_data(oldest)) in ours:  # a buffer of ours that no level holds any more
            pool.append(_data(oldest))
    if tuple_state:
        return tuple(cur)
    return cur[0] if isinstance(levels[0], StencilGrid) else _data(cur[0])


def _blocked(kernel, levels: tuple, args: tuple, steps: int) -> tuple | None:
    """The steps as one call of the tuned blocked iteration (the state's levels after
    them, newest first), or None when the kernel cannot be blocked (noted for ``asp tune
    show``) or its iteration could not be specialized (warned once; the caller then
    steps)."""
    K = len(levels)
    data = _data(levels[0])
    out = np.zeros(data.shape, data.dtype)
    call = (*levels, *args, like(levels[0], out))
    step_jit = kernel.jit_for(*call)
    spec = step_jit.specializer
    arrays = tuple(_data(a) if isinstance(a, StencilGrid) else a for a in call)
    try:
        prepared = spec.prepare(arrays)
        k = spec.planned(spec.domain_ir(prepared.args, prepared.signature))
    except (SpecializationError, UnrepresentableValue):
        return None  # the step kernel runs as Python: its own call says why, once
    why = why_not_blocked(k, spec.params, spec.boundary, data.ndim, K)
    if why is not None:
        _note(spec.name, prepared.signature, why)
        return None
    jit = _iteration(step_jit, K)
    # The outputs' pages are reused from freed outputs (a fresh grid's page faults cost
    # as much as the blocked steps here); every variant writes their every interior point.
    ghost = spec.ghost(spec.params.index(k.loop.grid))
    out = _border_zeroed(new_output(data.shape, data.dtype), ghost)
    call = (*call[:-1], like(levels[0], out))
    arrays = (*arrays[:-1], out)
    older = tuple(_border_zeroed(new_output(data.shape, data.dtype), ghost)
                  for _ in range(K - 1))
    tmps = _scratch(data, K, ghost)
    full = (*arrays, *older, *tmps, steps)
    try:
        jit.specialization(*full)
    except SpecializationError as exc:
        if config.strict():
            raise
        if jit.last_error is None:
            jit.last_error = exc
            warnings.warn(f"{exc}; iterating step by step", AspFallbackWarning, stacklevel=4)
        return None
    jit(*full)
    _SCRATCH.get((data.shape, data.dtype.str), []).extend(tmps)
    return tuple(like(levels[0], a) for a in (out, *older))


def _border_zeroed(a: np.ndarray, ghost: int) -> np.ndarray:
    """``a`` with zeros in the ``ghost`` outermost layers of every axis."""
    for axis in range(a.ndim):
        for part in (slice(0, ghost), slice(max(a.shape[axis] - ghost, 0), None)):
            a[(slice(None),) * axis + (part,)] = 0
    return a


def _scratch(data: np.ndarray, count: int, ghost: int) -> list[np.ndarray]:
    """``count`` scratch grids like ``data``, zero on the border of depth ``ghost`` (the
    blocked iteration never writes it, and reads it as the border of a pass's input):
    kept for the next call of the same shape and type (one at a time), which saves
    zeroing and faulting in a whole grid's pages per call (on this VM a fresh 128 MB grid
    cost 8-30 ms more to fill than a used one); :func:`asp.runtime.release_memory`
    empties the pool.  A reused grid's border is zeroed again: the call before may have
    had a shallower ghost (another kernel, or a grid of another geometry, of the same
    shape), and then wrote what this call reads as border (a 3-D kernel of ghost depth 2
    after one of depth 1 read the other's values there: wrong results, found by the
    fuzzer)."""
    key = (data.shape, data.dtype.str)
    pool = _SCRATCH.pop(key, [])
    _SCRATCH[key] = pool  # the most recently used last
    while len(_SCRATCH) > SCRATCH_SHAPES:
        del _SCRATCH[next(iter(_SCRATCH))]
    out = []
    for _ in range(count):
        try:
            out.append(_border_zeroed(pool.pop(), ghost))  # pop: atomic among threads
        except IndexError:
            out.append(np.zeros(data.shape, data.dtype))
    return out


def _iteration(step_jit: JitKernel, levels: int) -> JitKernel:
    """The runtime object of the blocked iteration of ``step_jit``'s kernel over a state
    of ``levels`` levels (one per step kernel, made once)."""
    key = (id(step_jit), levels)
    pair = _JITS.get(key)
    if pair is None or pair[0] is not step_jit:
        pair = _JITS[key] = (step_jit, JitKernel(IterateSpecializer(step_jit.specializer,
                                                                    levels)))
    return pair[1]


def iteration_jit(kernel, state, *args) -> JitKernel | None:
    """The runtime object of ``kernel``'s blocked iteration for arguments like these
    (``state`` a grid or a tuple of levels; for tools and benchmarks: its variants, its
    tuner's choice), or None if none was made (not blocked, not iterated yet)."""
    levels = state if isinstance(state, tuple) else (state,)
    step_jit = kernel.jit_for(*levels, *args, like(levels[0], np.zeros_like(_data(levels[0]))))
    pair = _JITS.get((id(step_jit), len(levels)))
    return None if pair is None else pair[1]


def _note(kernel: str, signature: str, why: str) -> None:
    """Say in the tuning database (``asp tune show``) that this kernel iterates step by
    step, and why, once per process."""
    key = (str(config.cache_dir()), kernel, signature)  # the database lives in the cache
    if key in _NOTED:
        return
    _NOTED.add(key)
    try:
        db.store(f"{kernel} iterate", signature, "steps",
                 {"steps": {"not blocked": why}, "_decision": {"blocked": False, "why": why}},
                 "iterate")
    except Exception:  # noqa: BLE001, S110 - a read-only cache must not break the call
        pass
