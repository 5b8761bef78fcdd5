"""``StencilKernel``: subclass it, write ``kernel()`` in Python, call it.

::

    class Laplacian(StencilKernel):
        def kernel(self, in_grid, out_grid):
            for x in out_grid.interior_points():
                for y in in_grid.neighbors(x, 1):
                    out_grid[x] += in_grid[y]
                out_grid[x] -= 4 * in_grid[x]

    Laplacian().kernel(g, out)        # fills out (its border untouched)
    out = Laplacian(boundary="wrap")(g)   # allocates and returns the output

The first call with a new kind of argument (dtypes, numbers of dimensions,
ghost depths, neighbourhoods) specializes the kernel; later calls go straight
to the tuned native entry.  Compiled kernels are shared by every instance of a
class with the same options and the same values of the attributes ``kernel()``
reads (:mod:`.state`): creating an instance plans nothing and restarts no tuning.

A kernel object pickles as its class and state (:meth:`StencilKernel.__reduce__`),
never its compiled entries: the receiving process loads or builds its own.
"""
from __future__ import annotations

import types
import weakref

from asp.errors import UnrepresentableValue
from asp.frontend import attach_source, global_reads
from asp.frontend.helpers import is_helper
from asp.runtime import MISS, JitKernel
from asp.runtime.mapargs import bind_keywords
from specializers.stencil.fresh import (
    Remembered,
    arrays,
    call_fresh,
    call_jit,
    kinds,
    run_remembered,
)
from specializers.stencil.grid import GridArray, StencilGrid, distance, own_geometry
from specializers.stencil.lowering import MODES
from specializers.stencil.specializer import StencilSpecializer
from specializers.stencil.state import PER_INSTANCE, describe, read_key, reads_of

__all__ = ["StencilKernel", "attach_kernel_source", "distance"]

# Per class: (class, kernel function, options, geometry, values read) -> its JitKernel.
_JITS: dict[tuple, JitKernel] = {}
# What asp derives on an instance (rebuilt, never copied or pickled); '_own_jits' holds
# the specializations of an instance whose kernel reads what cannot be shared.
_DERIVED = frozenset({"kernel", "pure_kernel", "_fast", "_own_jits", "_fresh"})


_geometry = own_geometry  # None for the defaults, else what the generated code bakes in


class StencilKernel:
    """Base class of stencil kernels: override ``kernel(self, *inputs, output)``.

    Options (constructor arguments or class attributes): ``boundary`` (one of
    ``'interior'``, ``'constant'``, ``'nearest'``, ``'reflect'``, ``'mirror'``,
    ``'wrap'``), ``cval`` (for ``'constant'``), ``pure_python`` (run the
    Python only), ``should_unroll`` (unroll neighbour loops).
    """

    boundary: str = "interior"
    cval: float = 0.0
    #: What the last large ``__call__`` zeroed, and for which arguments (see ``__call__``).
    _fresh: dict[tuple, Remembered] | None = None  # kinds(inputs) -> what that call found
    pure_python: bool = False
    should_unroll: bool = True
    #: The original Asp's ``self.distance(x, y)``; a subclass that defines its own
    #: ``distance`` gets its own (and the kernel runs as Python).
    distance = staticmethod(distance)

    def __init__(self, boundary: str | None = None, cval: float | None = None, *,
                 pure_python: bool | None = None, should_unroll: bool | None = None):
        if boundary is not None:
            self.boundary = boundary
        if cval is not None:
            self.cval = cval
        if pure_python is not None:
            self.pure_python = pure_python
        if should_unroll is not None:
            self.should_unroll = should_unroll
        _check_mode(self.boundary)
        self._wire()

    def __new__(cls, *args, **kwargs):
        # Wired before any __init__: a subclass's __init__ that does not call
        # super().__init__() makes a working kernel (it made one that failed with
        # "'K' object has no attribute 'pure_kernel'").
        obj = super().__new__(cls)
        obj._wire()
        return obj

    def _wire(self) -> None:
        self._fast: tuple | None = None
        # The instance attribute shadows the class's method: calls go through asp.
        self.pure_kernel = types.MethodType(type(self).kernel, self)
        self.kernel = self._specialized

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "boundary" in cls.__dict__:
            _check_mode(cls.boundary)

    # -- state: copies and pickles ----------------------------------------------------------
    def __getstate__(self) -> dict:
        """The kernel's own state: its options and whatever a subclass set on it, without
        what asp derives (the compiled entries, the calls routed through asp)."""
        return {k: v for k, v in vars(self).items() if k not in _DERIVED}

    def __setstate__(self, state: dict) -> None:
        vars(self).update({k: v for k, v in state.items() if k not in _DERIVED})
        _check_mode(self.boundary)
        self._wire()

    def __reduce__(self):
        """Class and state only: compiled entries hold ctypes handles that cannot travel,
        and the receiving process has its own cache to load them from.  The kernel's
        source is attached to its function first, so a class that travels by value
        (cloudpickle) can be specialized where its file does not exist."""
        attach_kernel_source(type(self))
        return _restore, (type(self), self.__getstate__())

    @classmethod
    def from_state(cls, state: dict) -> StencilKernel:
        """A kernel of this class with ``state`` (as :meth:`__getstate__` gives it),
        made without calling ``__init__``, whose arguments a subclass decides."""
        obj = cls.__new__(cls)
        obj.__setstate__(state)
        return obj

    def with_options(self, **changes) -> StencilKernel:
        """A new kernel of this class and state with some options (or attributes)
        replaced, e.g. ``k.with_options(boundary='interior')``."""
        return type(self).from_state({**self.__getstate__(), **changes})

    # -- calling ----------------------------------------------------------------------------
    def _jit(self, geometry: tuple, reads, zero: bool = False) -> JitKernel:
        """The JitKernel for ``geometry`` and ``reads`` (:func:`.state.read_key` of this
        object): the class's, or with :data:`.state.PER_INSTANCE` this object's own.
        ``zero``: the code that also zeroes the border (``__call__``'s, in 'interior')."""
        cls = type(self)
        fn = cls.kernel
        zero = zero and self.boundary == "interior"  # other modes write every point
        # (its code too: replaced in place, it may read other attributes of the object)
        options = (fn, fn.__code__, self.boundary, float(self.cval),
                   bool(self.should_unroll), geometry, zero)
        if reads is PER_INSTANCE:
            jits = vars(self).setdefault("_own_jits", {})
            key = options
        else:
            jits, key = _JITS, (cls, *options, reads)
        jit = jits.get(key)
        if jit is None:
            _check_mode(self.boundary)
            # Shared code runs its Python on a snapshot: equal in what the kernel reads,
            # and unchanged when this instance changes later.
            owner = self if reads is PER_INSTANCE else self.with_options()
            # Code compiled for other values of what the kernel reads has another record
            # on disk; values with no stable description get none.
            spec = StencilSpecializer(owner, fn, boundary=self.boundary, cval=float(self.cval),
                                      unroll=bool(self.should_unroll), geometry=geometry,
                                      zero=zero, keyed=reads is not PER_INSTANCE,
                                      reads=describe(reads) if reads else "")
            jit = jits[key] = JitKernel(spec)
        return jit

    def _params(self) -> list[str]:
        """The kernel method's parameters (after ``self``)."""
        code = self.pure_kernel.__code__
        return list(code.co_varnames[1:code.co_argcount])

    def _bound(self, what: str, params: list[str], args: tuple, kwargs: dict) -> tuple:
        return bind_keywords(f"{type(self).__name__}.{what}", params, args, kwargs)

    def _specialized(self, *args, **kwargs):
        if kwargs:  # arguments by name: in the kernel's order
            args = self._bound("kernel", self._params(), args, kwargs)
        # The hot path: the options and grids are as last time (default geometry, arrays
        # or plain grids), so the last winning native entry may take the call; its guards
        # run in C and a miss costs one comparison.  A GridArray passes them as an array:
        # its geometry is found on the slow path.
        fast = self._fast
        if GridArray.made and any(type(a) is GridArray for a in args):
            fast = None
        if fast is not None and fast[0] is self.boundary and fast[1] is self.cval \
                and fast[2] is self.should_unroll and not self.pure_python \
                and (fast[4] is None or fast[4] == read_key(self, fast[5])):
            hot = fast[3].hot_entry
            if hot is not None:
                try:
                    result = hot(*args)  # a grid object is no array: its guard misses
                except TypeError:  # a wrong number of arguments: say so in the user's terms
                    return self._call(args)
                except UnrepresentableValue as exc:  # a value only Python represents
                    return fast[3].run_as_python(arrays(args), exc)
                if result is not MISS:
                    return result
                # A miss on plain grids is the guards' or the tuner's (one call in N comes
                # back to be timed): it goes to the slow path, not to the hot entry again
                # (which would serve it, and the winner would never be verified); only
                # grid objects retry, as their arrays.  A kernel method whose code was
                # replaced (its guard missed) may read other attributes of the object:
                # the call finds its runtime object again.
                if fast[6] is not type(self).kernel.__code__:
                    return self._call(args)
                conv, grids = [], False
                for a in args:
                    if type(a) is StencilGrid:
                        if own_geometry(a) is not None:
                            break
                        a, grids = a._data, True
                    conv.append(a)
                else:
                    if not grids:
                        return fast[3].slow_call(args)
                    try:
                        result = hot(*conv)
                    except UnrepresentableValue as exc:
                        return fast[3].run_as_python(tuple(conv), exc)
                    if result is not MISS:
                        return result
                    return fast[3].slow_call(tuple(conv))
        return self._call(args)

    def _call(self, args: tuple):
        geometry = tuple(_geometry(a) for a in args)
        if not any(geometry):
            geometry = ()
        names = reads_of(type(self), type(self).kernel)
        reads = read_key(self, names)
        jit = self._jit(geometry, reads)
        if self.pure_python:
            return jit.specializer.run_python(args)
        if not geometry and reads is not PER_INSTANCE:
            # The hot path checks what the kernel reads only if it reads anything.
            self._fast = (self.boundary, self.cval, self.should_unroll, jit,
                          reads if names else None, names, type(self).kernel.__code__)
        arrays = tuple(a._data if isinstance(a, StencilGrid) else a for a in args)
        return jit(*arrays)

    def specialization(self, *args):
        """The compiled variants for ``args`` (for tests and tools)."""
        return self.jit_for(*args).specialization(*arrays(args))

    def jit_for(self, *args, zero: bool = False) -> JitKernel:
        """The :class:`~asp.runtime.JitKernel` that runs calls with ``args`` (``zero``:
        the one ``__call__`` runs in 'interior' mode, which zeroes the border too)."""
        geometry = tuple(_geometry(a) for a in args)
        return self._jit(geometry if any(geometry) else (),
                         read_key(self, reads_of(type(self), type(self).kernel)), zero)

    def run_variant(self, name: str, *args):
        """Run one compiled variant on ``args`` (tests check every variant)."""
        return self.jit_for(*args).run_variant(name, *arrays(args))

    def iterate(self, state, *args, steps: int, **kwargs):
        """``steps`` time steps from ``state``: what ``for _ in range(steps): state =
        self(state, *args)`` gives, bit for bit, several steps per pass over memory
        where the kernel can be blocked in time (see :mod:`specializers.stencil.iterate`;
        a tuple ``state`` holds several previous levels, newest first)."""
        from specializers.stencil.iterate import iterate

        # The state is the kernel's first input, or its first len(state) for a tuple.
        params = self._params()[len(state) if isinstance(state, tuple) else 1:-1]
        if kwargs:  # the kernel's other inputs by name
            args = self._bound("iterate", params, args, kwargs)
        return iterate(self, state, *args, steps=steps)

    def __call__(self, *inputs, **kwargs):
        """Run the kernel on ``inputs`` into a new output, and return it.

        Points the kernel does not write (the border in ``'interior'`` mode) are zero.
        Large outputs reuse freed memory (:func:`asp.runtime.new_output`), which in a
        loop ``u = kernel(u)`` saves the operating system's zeroing of fresh pages; in
        'interior' mode the compiled code zeroes their border itself, each thread where
        it writes (see :mod:`.border`).

        Dask arrays among the inputs give a lazy dask array computed block by block
        (see :mod:`specializers.stencil.dask`).
        """
        if kwargs:  # inputs by name: in the kernel's order (all but its output)
            inputs = self._bound("__call__", self._params()[:-1], inputs, kwargs)
        # The loop ``u = K(u, r)``: the same kinds and shapes of arguments as an earlier
        # call do what that call found (see .fresh), without asking the kernel again (a
        # 512^2 step costs 50 us; finding out cost several times that).  No Dask check
        # either: an argument of a remembered type never held a dask graph.
        if self._fresh and not self.pure_python:
            r = self._fresh.get(kinds(inputs))
            if r is not None and r.options == (self.boundary, self.cval, self.should_unroll,
                                               type(self).kernel.__code__):
                return run_remembered(self, r, inputs)
        return call_fresh(self, inputs)

    def call_jit(self, *inputs) -> JitKernel:
        """The :class:`~asp.runtime.JitKernel` that ``self(*inputs)`` runs (its chosen
        variant, how sure the tuner is): in 'interior' mode, the code that zeroes the
        border too (:mod:`.fresh`)."""
        return call_jit(self, *inputs)

# Per process: the first ``kernel`` function unpickled for each class.  cloudpickle sets a
# class sent by value up again on every unpickling, so ``kernel`` would be a new function
# each time, and a new function is a new specialization (planned and loaded again):
# put the first one back when the code is the same.
_FIRST_FN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def attach_kernel_source(cls: type) -> None:
    """Attach the source of ``cls.kernel`` to the function (once), which then pickles
    with it by value; without a file to read it from, the receiving front end decides."""
    fn = cls.__dict__.get("kernel") or getattr(cls, "kernel", None)
    if fn is not None and not hasattr(fn, "__asp_source__"):
        # The user's functions it calls are compiled with it: their sources go too.
        for f in (fn, *(v for _, _, v in global_reads(fn).guards if is_helper(v))):
            try:
                if not hasattr(f, "__asp_source__"):
                    attach_source(f)
            except (OSError, TypeError):  # defined in a REPL or with exec
                pass


def _restore(cls: type, state: dict) -> StencilKernel:
    """Unpickle a kernel (see :meth:`StencilKernel.__reduce__`)."""
    fn = cls.__dict__.get("kernel")
    if fn is not None:
        first = _FIRST_FN.setdefault(cls, fn)
        if first is not fn and getattr(first, "__code__", None) == getattr(fn, "__code__", 0):
            cls.kernel = first
    return cls.from_state(state)


def _check_mode(mode) -> None:
    if mode not in MODES:
        raise ValueError(f"boundary={mode!r} is not a boundary mode; expected one of "
                         + ", ".join(repr(m) for m in MODES))
