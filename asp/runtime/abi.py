"""The kernel ABI and the guarded entry objects built on it.

Every entry point asp generates has one C signature::

    int entry(void **ptrs, const int64_t *dims, const double *f, const int64_t *i);

``ptrs`` holds the data pointers of the array arguments in order, ``dims`` their
extents one after another, ``f`` the float scalars and ``i`` the integer
scalars.  A non-zero return is an error code (1-based index into ``errors``).
:func:`make_entry` wraps such a function in an ``asp._native.Entry`` that checks
the guards of :class:`ArgSpec` in C on every call.
"""
from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

import numpy as np

from asp.errors import LoadError

__all__ = ["MAX_ARGS", "MAX_DIMS", "MISS", "OPENMP", "REUSE_MIN", "ArgSpec", "OpenMPTeam",
           "as_native", "make_entry", "native_available", "new_output", "on_release_memory",
           "refuse_special_array", "release_memory"]

try:
    from asp import _native
except ImportError:  # built without a compiler: every kernel runs as Python
    _native = None

#: What one native entry takes: arguments (outputs included), and dimensions per array.
MAX_ARGS = _native.MAX_ARGS if _native is not None else 32
MAX_DIMS = _native.MAX_DIMS if _native is not None else 8
#: Outputs of this many bytes or more come from the reusing allocator (:func:`new_output`).
REUSE_MIN = _native.REUSE_MIN if _native is not None else 1 << 17


class _Miss:
    """Returned by an entry whose guards do not hold for the given arguments."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


MISS = _Miss()


def native_available() -> bool:
    return _native is not None


def as_native(a, dtype=None) -> np.ndarray:
    """``a`` as native code may take it: C-contiguous and aligned (of ``dtype`` if given).

    ``a`` itself when it already is; otherwise a copy.  ``np.ascontiguousarray``
    is not enough: it keeps a contiguous but unaligned array as it is, and such
    arrays are common (Dask and pickle protocol 5 deserialize into message
    buffers at any offset).  Guards reject them, so they must be copied first.

    A copy of :data:`REUSE_MIN` bytes or more comes from the reusing allocator
    (:func:`new_output`), as outputs do: a kernel called again and again on such an
    input (a Dask block that arrived at an odd offset, a slice) copies into warm pages
    instead of the system zeroing fresh ones (a 4097 x 8192 float64 block at a 4-byte
    offset, one thread: 64 ms a call through ``np.require``, 46 now, 18.6 aligned).
    """
    if (type(a) is np.ndarray and (dtype is None or a.dtype == dtype)
            and not (a.flags.c_contiguous and a.flags.aligned)):
        out = new_output(a.shape, a.dtype)
        np.copyto(out, a)
        return out
    return np.require(a, dtype=dtype, requirements="CA")


def refuse_special_array(fname: str, name: str, a) -> None:
    """Raise ``TypeError`` naming argument ``name`` of ``fname()`` if ``a`` is an array
    whose meaning a compiled kernel cannot keep, so that it is never computed silently on
    its raw numbers (the entries' guards miss such arrays, so the call comes here):

    * a NumPy masked array: a kernel computes on every element of its data, as if
      nothing were masked (an ``@reduction`` summed the masked values that ``np.sum``
      leaves out), and returns a plain array;
    * an ``ndarray`` subclass with arithmetic of its own (``__array_ufunc__`` or
      ``__array_function__`` other than ndarray's), as unit-carrying arrays have
      (astropy's ``Quantity``, unyt): NumPy converts ``u + v`` with ``u`` in metres and
      ``v`` in kilometres, or refuses it; the kernel would add the raw numbers.

    Subclasses that keep NumPy's arithmetic (``np.memmap``, ``np.matrix``, the stencil's
    ``GridArray``) are plain arrays to a kernel.  (``numpy.ma`` is looked up in
    ``sys.modules``: there is no masked array before it is imported, and importing it
    would cost every program that never uses one.)"""
    if not isinstance(a, np.ndarray) or type(a) is np.ndarray:
        return
    ma = sys.modules.get("numpy.ma")
    if ma is not None and isinstance(a, ma.MaskedArray):
        raise TypeError(f"{fname}() argument {name!r} is a masked array: compiled kernels "
                        "compute on every element and would ignore its mask; pass "
                        f"{name}.filled(value) (masked elements as value) or plain arrays")
    t = type(a)
    if (t.__array_ufunc__ is not np.ndarray.__array_ufunc__
            or t.__array_function__ is not np.ndarray.__array_function__):
        raise TypeError(f"{fname}() argument {name!r} has type {t.__module__}."
                        f"{t.__qualname__}, an array with arithmetic of its own "
                        "(__array_ufunc__ or __array_function__, as arrays with units have): "
                        "compiled kernels "
                        "compute on its raw numbers and would not follow it; pass "
                        f"np.asarray({name}) for its numbers as they are, after converting "
                        "the arguments to common units")


@dataclass(frozen=True)
class ArgSpec:
    """What one argument of a compiled entry must be.

    ``kind`` is ``'array'``, ``'float'``, ``'int'`` or ``'bool'``.  A ``'float'`` or
    ``'int'`` with a ``dtype`` must be a NumPy scalar of that dtype (typed by NumPy's rules
    as the dtype, *strong*; ``np.bool_`` is an ``'int'`` of dtype bool); without one, a
    Python ``float`` (exactly: ``np.float64`` is a float subclass, and strong) or ``int``
    (*weak*), never a ``bool``; ``'bool'`` is a Python bool (weak: ``True + np.True_`` is
    a NumPy bool where ``1 + np.True_`` is an int64), passed as 0 or 1.  Arrays must have ``dtype``
    and ``ndim``, be C-contiguous and aligned, be writeable if ``write``, match
    ``shape`` where it is not -1, and have the same shape as every other array in
    the same ``group`` (-1: no group).  ``alloc`` lets the caller pass ``None``
    for an output allocated like its group; ``noalias`` rejects an output that
    overlaps any other array argument; ``scalar`` makes the entry return this
    output's first element as a NumPy scalar (a reduction's result) when it is
    the returned argument.  ``scratch`` marks a writable array the kernel uses as
    working space: its contents after a call mean nothing, so the check against the
    Python does not compare them (the guards are the same as for any output).
    """

    kind: str
    dtype: np.dtype | None = None
    ndim: int = 0
    write: bool = False
    alloc: bool = False
    noalias: bool = False
    group: int = -1
    shape: tuple[int, ...] | None = None
    scalar: bool = False
    scratch: bool = False

    def native(self) -> tuple:
        kind = {"array": 0, "float": 1, "int": 2, "bool": 2}[self.kind]
        if self.kind != "array":  # a NumPy scalar of ``dtype`` (strong), or a Python number
            return (kind, -1 if self.dtype is None else np.dtype(self.dtype).num, 0,
                    16 if self.kind == "bool" else 0, -1, ())  # 16: F_PYBOOL
        flags = ((1 if self.write else 0) | (2 if self.alloc else 0)
                 | (4 if self.noalias else 0) | (8 if self.scalar else 0))
        shape = self.shape if self.shape is not None else (-1,) * self.ndim
        return (kind, np.dtype(self.dtype).num, self.ndim, flags, self.group, tuple(shape))


def make_entry(address: int, specs: tuple[ArgSpec, ...], *, ret: int = -1,
               errors: tuple[tuple[type[Exception], str], ...] = (), keepalive=None):
    """A callable ``entry(*args)`` for a kernel at ``address``; returns MISS on a guard miss."""
    if _native is None:
        raise LoadError("asp's native call path (asp._native) was not built; "
                        "reinstall asp with a C compiler present")
    return _native.Entry(address, [s.native() for s in specs], ret, MISS, tuple(errors),
                         keepalive)


def new_output(shape: tuple, dtype, near: np.ndarray | None = None) -> np.ndarray:
    """An uninitialised C-contiguous array for a kernel's output.

    Arrays of :data:`REUSE_MIN` bytes (128 KiB) or more come from the reusing memory
    handler (see :func:`release_memory`): a loop ``u = kernel(u)`` then writes into warm pages
    instead of the operating system zeroing fresh ones, which costs as much as a
    memory-bound kernel itself.  Their data start 64-byte aligned and, given ``near``
    (the input the kernel reads alongside), half a 4 KiB page from ``near``'s offset in
    its page: a kernel streaming its output at the input's offset would make its loads
    wait on its stores (4K aliasing).  The caller must write every element (or zero it).
    """
    if _native is None:
        return np.empty(shape, dtype)
    return _native.empty(shape, dtype, near)  # any sequence of integers, any dtype-like


#: Functions that drop a pool of buffers a specializer keeps between calls and return the
#: bytes it held (see :func:`on_release_memory`).
_POOLS: list = []


def on_release_memory(drop) -> None:
    """Have :func:`release_memory` also call ``drop()``, which empties a pool of buffers
    kept between calls (scratch grids, say) and returns the bytes it held."""
    if not callable(drop):
        raise TypeError(f"drop must be a callable returning the bytes freed, not "
                        f"{type(drop).__name__}")
    if drop not in _POOLS:
        _POOLS.append(drop)


def release_memory() -> int:
    """Free the large buffers asp keeps for reuse; returns bytes freed.

    Entries allocate outputs of :data:`REUSE_MIN` bytes or more through a NumPy memory handler
    that keeps up to eight freed blocks (at most 1 GiB) for the next output of
    the same size, so ``y = kernel(x)`` in a loop does not pay for the
    operating system zeroing fresh pages every call.  A block freed when the
    cache is full displaces the blocks kept longest.  Specializers' own pools
    (``iterate``'s scratch grids) are emptied too (:func:`on_release_memory`);
    their buffers are freed once nothing else holds them.
    """
    freed = _native.release_cached() if _native is not None else 0
    return freed + sum(int(drop()) for drop in list(_POOLS))


class OpenMPTeam:
    """The calling thread's OpenMP team size (``omp_get_max_threads`` and
    ``omp_set_num_threads`` of GCC's runtime), found once the kernels have loaded that
    runtime (never loaded here: a serial build has none); both None until then."""

    def __init__(self):
        self.get = self.set = self.pause = None

    def ready(self) -> bool:
        if self.set is None:
            try:
                lib = ctypes.CDLL("libgomp.so.1", mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
                self.get, self.set = lib.omp_get_max_threads, lib.omp_set_num_threads
                self.set.argtypes = [ctypes.c_int]
            except (OSError, AttributeError):
                return False
            # OpenMP 5.0 (GCC 10 on); without it a forked child's first team hangs.
            self.pause = getattr(lib, "omp_pause_resource_all", None)
            if self.pause is not None:
                self.pause.argtypes = [ctypes.c_int]
        return True

    def before_fork(self) -> None:
        """Release the forking thread's team before ``os.fork()``.  GCC's runtime keeps a
        thread's team (its pool of threads, parked at a barrier) for the thread's next
        parallel region; a child of ``fork()`` inherits that thread's record of the pool
        but not its threads, so its first parallel region waits for them forever (a
        ``multiprocessing`` pool's workers hung at their first kernel).  Released
        (``omp_pause_resource_all(omp_pause_hard)``), the parent makes a new team at its
        next region (tens of microseconds) and the child makes its own."""
        if self.ready() and self.pause is not None:
            self.pause(2)  # omp_pause_hard


#: The process's OpenMP runtime, once loaded (see :class:`OpenMPTeam`).
OPENMP = OpenMPTeam()
os.register_at_fork(before=OPENMP.before_fork)
