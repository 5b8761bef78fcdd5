"""The stencil specializer: argument checks, planning of variants, the Python reference.

One :class:`StencilSpecializer` serves one kernel class with one set of options (boundary
mode, ``cval``, unrolling) and one *geometry* (the ghost depth and neighbourhoods of the
grids passed): all of these are baked into the code.  Dtypes and numbers of dimensions
make its signatures; shapes are not baked in, so a new grid size reuses the compiled code.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import numbers

import numpy as np

from asp.codegen.streaming import unsuited_in_cache
from asp.errors import SpecializationError, UnrepresentableValue
from asp.frontend import get_source
from asp.frontend.names import global_reads, namespace
from asp.ir import platform as ir
from asp.ir.types import ctype_of
from asp.passes import run_pipeline
from asp.runtime import (
    ArgSpec,
    Plan,
    Prepared,
    Space,
    Specializer,
    Variant,
    as_native,
    mapargs,
    refuse_special_array,
)
from asp.runtime.mapargs import compilable, native, numpy_scalar, scalar_arg, write_back
from specializers.stencil.border import lower_border
from specializers.stencil.domain import StencilIR, radius
from specializers.stencil.frontend import ArgInfo, translate
from specializers.stencil.grid import StencilGrid, default_neighbors
from specializers.stencil.lowering import converts, lower, needs_load, neighbor_loops
from specializers.stencil.passes import fold_constants, propagate_locals, unroll_neighbors
from specializers.stencil.reference import BoundaryGrid
from specializers.stencil.variants import (
    PREAMBLE,
    apply_variant,
    helpers_for,
    own_functions,
    serial_variant,
    variant_spaces,
    variant_specs,
)

__all__ = ["Geometry", "StencilSpecializer"]

#: Per argument: None (an array, or a grid with the defaults) or (ghost_depth, neighbourhoods).
Geometry = tuple


#: The entry's error codes (bits): 1 a lookup table index out of range; 2 a value only
#: Python represents (an int beyond the type, int() of NaN or an infinity): the call runs
#: as Python, which computes with unbounded ints or raises its own error (a kernel that
#: reads its output works on a copy, see prepare, so nothing is counted twice).
_TABLE = (IndexError, "lookup table index out of range")
_ERRORS = (_TABLE, (UnrepresentableValue, UnrepresentableValue.reason), _TABLE)


class StencilSpecializer(Specializer):
    """Specializes ``kernel_fn`` (a ``kernel(self, ...)`` function) for one kernel object."""

    def __init__(self, owner, kernel_fn, *, boundary: str, cval: float, unroll: bool,
                 geometry: Geometry, zero: bool = False, keyed: bool = False,
                 reads: str | None = ""):
        # keyed: this code serves only objects equal in what the kernel reads of them;
        # reads: those values described stably ("": none read; None: no description)
        self.owner, self.fn, self.keyed, self.reads = owner, kernel_fn, keyed, reads
        self.boundary, self.cval, self.unroll, self.geometry = boundary, cval, unroll, geometry
        # In 'interior' mode: the code also zeroes the border the kernel does not visit
        # (a fresh output of StencilKernel.__call__; see .border).
        self.zero = zero and boundary == "interior"
        self.fname = f"{type(owner).__name__}.kernel"
        self._derive()

    def _derive(self) -> None:
        """What is read from the kernel function: again when its code was replaced in
        place (``%autoreload`` updates a class's methods so)."""
        code = self.fn.__code__
        self.params = list(code.co_varnames[1: code.co_argcount])
        self.name = f"stencil:{self.fn.__qualname__} ({code.co_filename}:{code.co_firstlineno})"
        if self.zero:  # K(u)'s code: tuned apart, shown apart
            self.name = self.name.replace(" (", " [zeroing the border] (", 1)
        self._src = None
        self._ir: dict[str, StencilIR | SpecializationError] = {}
        self._roles: dict[str, str] = {}
        # Per signature: the reach of the planned kernel, and whether it reads its output
        # and has checked conversions (every slow call asks: running the domain passes
        # again cost 300 of a sampled call's 640 us, which set how often the tuner can
        # sample a winner and hear its challengers).
        self._facts: dict[str, tuple] = {}
        try:  # get_source honours source shipped with a pickled kernel (a Dask worker)
            text = get_source(self.fn).text
        except SpecializationError:
            text = ""
        # Module constants the kernel reads are baked in too: the runtime adds their
        # values to this digest and guards them (see global_reads).
        options = f"{self.boundary}|{self.cval!r}|{self.unroll}|{self.geometry!r}" \
            + ("|zero" if self.zero else "")
        self.digest = hashlib.sha256((text + options).encode()).hexdigest() if text else ""
        if self.reads and self.digest:  # what it reads of the object, by value
            self.digest = hashlib.sha256(f"{self.digest}|self:{self.reads}".encode()).hexdigest()
        elif self.reads is None:
            self.digest = ""

    def location(self) -> str:
        return f"{self.fn.__code__.co_filename}:{self.fn.__code__.co_firstlineno}"

    def global_reads(self):
        """The module-level names the kernel reads (numbers are baked in as constants,
        ``math`` and ``distance`` resolved once): the runtime guards each binding."""
        return global_reads(self.fn)

    def forget(self) -> None:
        self._derive()

    # -- geometry ---------------------------------------------------------------------------
    def ghost(self, i: int) -> int:
        g = self.geometry[i] if i < len(self.geometry) else None
        return 1 if g is None else g[0]

    def neighbors(self, i: int, ndim: int):
        g = self.geometry[i] if i < len(self.geometry) else None
        if g is None:
            return tuple(tuple(map(tuple, lst)) for lst in default_neighbors(ndim))
        return g[1]

    # -- the domain IR ----------------------------------------------------------------------
    def domain_ir(self, args: tuple, signature: str) -> StencilIR:
        got = self._ir.get(signature)
        if got is None:
            try:
                if self._src is None:
                    self._src = get_source(self.fn)
                infos = {}
                for i, (name, a) in enumerate(zip(self.params, args)):
                    if isinstance(a, np.ndarray):
                        infos[name] = ArgInfo("grid", ctype_of(a.dtype), a.ndim,
                                              self.neighbors(i, a.ndim))
                    else:
                        infos[name] = ArgInfo.of_scalar(a)
                got = translate(self._src, namespace(self.fn), infos, owner=self.owner,
                                keyed=self.keyed)
                self._roles = {g.name: g.role for g in got.grids}
            except SpecializationError as exc:
                got = exc
            self._ir[signature] = got
        if isinstance(got, SpecializationError):
            raise got
        return got

    def writes_every_point(self, args: tuple) -> bool:
        """Whether the kernel assigns every point it visits before anything reads it, so
        a fresh output needs no zeroing first (only the border it never visits, in
        ``'interior'`` mode).  False when the kernel cannot be specialized: then the
        Python runs, and it gets zeros."""
        try:
            prepared = self.prepare(args)
            return not needs_load(self.domain_ir(prepared.args, prepared.signature))
        except (SpecializationError, TypeError, ValueError, UnrepresentableValue):
            return False

    # -- validation -------------------------------------------------------------------------
    def prepare(self, args: tuple) -> Prepared:
        fname = self.fname
        if len(args) != len(self.params):
            raise TypeError(f"{fname}() takes {len(self.params)} argument(s) "
                            f"({', '.join(self.params)}), got {len(args)}")
        conv, parts, same = [], [], True
        swapped = {}  # position -> the caller's array, not in this machine's byte order
        for name, a in zip(self.params, args):
            refuse_special_array(fname, name, a)
            if isinstance(a, StencilGrid):
                a, same = a.data, False
            if isinstance(a, np.ndarray) and a.ndim > 0:
                if a.dtype == np.bool_:
                    raise TypeError(f"{fname}() argument {name!r} has dtype bool; "
                                    "expected a numeric dtype")
                if not compilable(native(a.dtype)):  # complex, float16, longdouble, ...
                    raise TypeError(f"{fname}() argument {name!r} has dtype {a.dtype}; "
                                    "expected float32/64 or (u)int8-64")
                if not a.dtype.isnative:  # big-endian data (a FITS file's): a native copy,
                    swapped[len(conv)] = a  # and an output written back
                    a, same = as_native(a, native(a.dtype)), False
                if a.ndim > 3:
                    raise ValueError(f"{fname}() argument {name!r} has {a.ndim} dimensions; "
                                     "stencil grids have 1 to 3")
                conv.append(a)
                parts.append(f"{a.dtype.str}:{a.ndim}")
            elif isinstance(a, np.number):  # strong, as NumPy types it (see numpy_scalar)
                conv.append(numpy_scalar(fname, name, a))  # as it is: the guards check it
                parts.append(f"{a.dtype.str}s")
            elif isinstance(a, bool | np.bool_):  # a bool: weak (Python's) or strong
                conv.append(a)
                parts.append("b" if isinstance(a, bool) else f"{a.dtype.str}s")
            elif isinstance(a, numbers.Integral):
                conv.append(mapargs.as_int64(fname, name, a))
                same = same and type(a) is int
                parts.append("i")
            elif isinstance(a, numbers.Real):
                conv.append(float(a))
                same = same and type(a) is float
                parts.append("f")
            elif a is None:
                raise TypeError(f"{fname}() argument {name!r} is None; expected a StencilGrid, "
                                "a numpy array or a number")
            else:
                raise TypeError(f"{fname}() argument {name!r} must be a StencilGrid, a numpy "
                                f"array or a number, not {type(a).__name__}")
        sig = "(" + ",".join(parts) + ")"
        try:
            k = self.domain_ir(tuple(conv), sig)
        except SpecializationError:  # plan() raises it again and the call falls back
            return Prepared(args=tuple(conv), signature=sig, same=False)
        finish = None
        pos = {n: i for i, n in enumerate(self.params)}
        fields = [g for g in k.grids if g.role == "field"]
        loop_i = pos[k.loop.grid]
        shape = conv[loop_i].shape
        for g in fields:
            a = conv[pos[g.name]]
            if a.shape != shape:
                raise ValueError(f"{fname}() argument {g.name!r} has shape {a.shape} but "
                                 f"{k.loop.grid!r} has shape {shape}; the grids a kernel "
                                 "indexes by points must have one shape")
        for g in k.grids:
            if g.role == "table" and conv[pos[g.name]].size == 0:
                raise ValueError(f"{fname}() lookup table {g.name!r} is empty")
        oi = pos[k.out]
        out = swapped.get(oi, conv[oi])
        if not out.flags.writeable:
            raise ValueError(f"{fname}() output argument {k.out!r} is read-only")
        for g in k.grids:
            if g.name != k.out and np.may_share_memory(swapped.get(pos[g.name],
                                                                   conv[pos[g.name]]), out):
                raise ValueError(f"{fname}() output argument {k.out!r} overlaps input "
                                 f"{g.name!r}; a stencil's output must be a separate array")
        facts = self._facts.get(sig)
        if facts is None:
            reach = radius(self.planned(k), out.ndim) if self.boundary == "interior" \
                else (None, None)
            facts = self._facts[sig] = (*reach, needs_load(k), converts(k))
        if self.boundary == "interior":
            ghost = self.ghost(loop_i)
            lo, hi = facts[0], facts[1]
            for a in range(out.ndim):
                if max(lo[a], hi[a]) > ghost:
                    raise ValueError(
                        f"{fname}(): a neighbour offset reaches {max(lo[a], hi[a])} points "
                        f"along axis {a}, beyond the ghost depth {ghost} of {k.loop.grid!r}; "
                        "it would read outside the grid (raise ghost_depth, or use a "
                        "boundary mode such as boundary='nearest')")
        for i, a in enumerate(conv):
            if isinstance(a, np.ndarray) and not (a.flags.c_contiguous and a.flags.aligned):
                conv[i], same = as_native(a), False
                if i == oi:
                    finish = write_back(a)
        if oi in swapped:
            finish = write_back(swapped[oi])
        if finish is None and facts[2] and facts[3]:
            # A kernel that reads its output and may meet a value only Python represents
            # works on a copy: if it does, the call runs again as Python on the caller's
            # untouched output (no point counted twice); else the copy is written back.
            finish = write_back(conv[oi])
            conv[oi], same = conv[oi].copy(), False
        # Tune apart sizes a factor of four apart: what wins in cache may lose in memory.
        # The hot path serves one bucket only (the output's size decides), so a small grid
        # tuned first does not hand its winner to a large one.
        b = int(np.prod(shape)).bit_length() // 2  # sizes whose bit length is 2b or 2b + 1
        hi = 1 << (2 * b + 1)
        return Prepared(args=tuple(conv), signature=sig, finish=finish, same=same,
                        bucket=f"n~4^{b}", size_range=(1 << (2 * b - 1) if b else 0, hi),
                        size_arg=oi, unsuited=unsuited_in_cache(hi * conv[oi].dtype.itemsize))

    def planned(self, k: StencilIR) -> StencilIR:
        """The domain passes, as a pipeline."""
        passes = [unroll_neighbors] if self.unroll else []
        passes += [propagate_locals, fold_constants]
        return run_pipeline(k, passes, title=f"{self.fname}: domain passes")

    # -- planning ---------------------------------------------------------------------------
    def plan(self, prepared: Prepared) -> Plan:
        args = prepared.args
        k = self.planned(self.domain_ir(args, prepared.signature))
        pos = {n: i for i, n in enumerate(self.params)}
        specs = []
        for g_name, a in zip(self.params, args):
            if isinstance(a, np.ndarray):
                out = g_name == k.out
                specs.append(ArgSpec("array", a.dtype, a.ndim, write=out, noalias=out,
                                     group=0 if k.grid(g_name).role == "field" else -1))
            else:
                specs.append(scalar_arg(a)[1])
        specs = tuple(specs)
        loops = neighbor_loops(k)
        dim = args[pos[k.loop.grid]].ndim
        stream_ok = not needs_load(k) and k.grid(k.out).ctype in ("double", "float")
        size = functools.reduce(lambda e, a: ir.BinOp("*", e, ir.Var(f"p_{k.loop.grid}_n{a}")),
                                range(1, dim), ir.Var(f"p_{k.loop.grid}_n0"))
        ghost, helpers, border = self.ghost(pos[k.loop.grid]), (), None
        if self.boundary != "interior" or self.zero:
            # The slabs: one work-sharing helper every variant's team calls (the lowering
            # shares its loops; no pass changes them, the dump shows them).
            border = "stencil_zero" if self.zero else "stencil_border"
            bfn = lower_border(k, self.params, specs, mode=self.boundary, cval=self.cval,
                               loops=loops, name=border, zero=ghost if self.zero else None)
            # At -O2: 0.4 s of gcc, not 1.07 s of a 3-D reflect unit's 1.3 s at -O3, as fast
            # (64^3 static 218 vs 219 us, 256^3 17.7 vs 17.5 ms; at -O1 9-27 % slower).
            helpers = (dataclasses.replace(run_pipeline(bfn, [], title=f"{self.fname} border"),
                                           optimize="O2"),)
        def lowered(name: str, opts: dict, unjammed: str | None = None) -> ir.Function:
            return lower(k, self.params, specs, mode=self.boundary, cval=self.cval,
                         ghost=ghost, loops=loops, border=border, name=name, unjammed=unjammed,
                         streaming=opts.get("streaming", False), jam=opts.get("jam", 1))

        serial = serial_variant(lowered("stencil_serial", {}), f"{self.fname} serial", dim)

        def make(vname: str, opts: dict) -> Variant:  # jammed: calls ``stream`` for rows
            calls = (stream().function,) if opts.get("jam", 1) > 1 else ()  # it can't jam
            fn = lowered(f"stencil_{vname}", opts, calls[0].name if calls else None)
            return Variant(vname, apply_variant(fn, opts, size, f"{self.fname} {vname}", dim,
                                                serial=serial), calls=calls)

        stream = functools.cache(lambda: make("stream", {"streaming": True}))  # one object
        shared: dict = {}

        def make_point(vname: str, opts: dict) -> Variant:
            """A point of a space; the tiled ones share one function, their tile sizes
            its parameters ``asp_tile<axis>`` (one compile for the whole tile space)."""
            sizes = opts.get("tile")
            if not sizes:
                return make(vname, opts)
            key = (tuple(bool(t) for t in sizes),
                   tuple(sorted((o, v) for o, v in opts.items() if o != "tile")))
            if key not in shared:
                fn = make("tiled", {**opts, "tile": tuple(
                    ir.Var(f"asp_tile{a}") if t else None for a, t in enumerate(sizes))}).function
                shared[key] = dataclasses.replace(fn, params=fn.params + tuple(
                    ir.Param(f"asp_tile{a}", "int64_t") for a, t in enumerate(sizes) if t))
            return Variant(vname, shared[key], bound=tuple(t for t in sizes if t))

        variants = [stream() if vname == "stream" else make(vname, opts)
                    for vname, opts in variant_specs(dim, stream_ok)]
        # Tile and jam factors are searched: the runtime compiles a sample of each space.
        spaces = tuple(Space(name, params, lambda point=point, **p: make_point(*point(**p)),
                             sample=sample, label=lambda point=point, **p: point(**p)[0])
                       for name, params, sample, point in variant_spaces(dim, stream_ok))
        # The remapping and indexing helpers they call, then the user's functions the
        # kernel calls, then the slabs (which call both).
        helpers = (*helpers_for([*helpers, serial, *(v.function for v in variants)]),
                   *own_functions(k), *helpers, serial)
        float32 = any(s.kind == "array" and np.dtype(s.dtype) == np.float32 for s in specs) \
            or ir.rounds_a_call_to("float", *helpers, *(v.function for v in variants))
        lo, hi = radius(k, dim)
        return Plan(signature=prepared.signature, specs=specs, variants=tuple(variants),
                    spaces=spaces, repeatable=not needs_load(k),  # out is noalias
                    ret=pos[k.out], errors=_ERRORS,
                    preamble=PREAMBLE, helpers=helpers,
                    includes=("stdint.h", "stdbool.h", "math.h"),
                    check_args=functools.partial(self.check_args, k, _light(args),
                                                 max(lo + hi + (0,))),
                    check_args_from=functools.partial(self.check_args_from, k,
                                                      max(lo + hi + (0,))),
                    rtol=1e-4 if float32 else 1e-9, atol=1e-5 if float32 else 1e-11)

    def _check_extent(self, k: StencilIR, args: tuple, reach: int) -> int:
        """One extent for every field grid of the check inputs (the grids a kernel indexes
        by points must share a shape): a few points past the reach of the neighbourhood
        and the deepest ghost border, capped so the Python stays quick."""
        ghost = max([self.ghost(i) for i, (name, a) in enumerate(zip(self.params, args))
                     if isinstance(a, np.ndarray) and k.grid(name).role != "table"] or [1])
        ndim = max(a.ndim for a in args if isinstance(a, np.ndarray))
        n = min(max(2 * max(reach, ghost) + 3, 5), {1: 64, 2: 16, 3: 9}[ndim])
        return max(n, 2 * max(reach, ghost) + 1)

    def check_args(self, k: StencilIR, args: tuple, reach: int) -> tuple:
        """Small random arguments of the same kinds: fields of one shape a few points past
        the neighbourhood's reach, tables as given (their contents decide valid indices)."""
        rng = np.random.default_rng(7)
        n = self._check_extent(k, args, reach)
        made = []
        for name, a in zip(self.params, args):
            if not isinstance(a, np.ndarray):
                made.append(a)
            elif k.grid(name).role == "table":
                made.append(a.copy())
            elif a.dtype.kind == "f":
                made.append(rng.uniform(0.05, 1.0, (n,) * a.ndim).astype(a.dtype))
            else:
                made.append(rng.integers(0, 5, (n,) * a.ndim).astype(a.dtype))
        return tuple(made)

    def check_args_from(self, k: StencilIR, reach: int, call: tuple) -> tuple:
        """Small arguments cut from a real call's (the corner of each field grid; tables
        whole): for kernels whose valid inputs random values do not hit."""
        n = self._check_extent(k, call, reach)
        made = []
        for name, a in zip(self.params, call):
            if not isinstance(a, np.ndarray) or k.grid(name).role == "table":
                made.append(a.copy() if isinstance(a, np.ndarray) else a)
            else:
                made.append(np.array(a[(slice(0, n),) * a.ndim]))
        if any(isinstance(a, np.ndarray) and k.grid(name).role != "table"
               and min(a.shape) < 2 * reach + 1 for name, a in zip(self.params, made)):
            raise ValueError("the call's grids are smaller than the neighbourhood")
        return tuple(made)

    # -- reference --------------------------------------------------------------------------
    def run_python(self, args: tuple):
        grids = []
        out_i = max(i for i, a in enumerate(args) if isinstance(a, np.ndarray | StencilGrid))
        for i, a in enumerate(args):
            if isinstance(a, StencilGrid):
                a = a.data
            if isinstance(a, np.ndarray):
                g = StencilGrid.from_array(a)
                g.ghost_depth = self.ghost(i)
                g.neighbor_definition = [list(lst) for lst in self.neighbors(i, a.ndim)]
                # Fields read through the boundary mode; lookup tables as they are.
                role = self._roles.get(self.params[i] if i < len(self.params) else "")
                field = role == "field" or (role is None and a.ndim == np.ndim(args[out_i]))
                if self.boundary != "interior" and field:
                    g = BoundaryGrid(g, self.boundary if i != out_i else "nearest", self.cval)
                grids.append(g)
            else:
                grids.append(a)
        out = args[out_i].data if isinstance(args[out_i], StencilGrid) else args[out_i]
        if self.zero:  # the border of the deepest ghost (the kernel writes what it visits)
            g = max(self.ghost(i) for i, a in enumerate(args)
                    if isinstance(a, np.ndarray | StencilGrid))
            for axis, n in enumerate(out.shape):
                out[(slice(None),) * axis + (slice(0, g),)] = 0
                out[(slice(None),) * axis + (slice(max(n - g, 0), None),)] = 0
        self.fn(self.owner, *grids)
        return out


def _light(args: tuple) -> tuple:
    """``args`` with big arrays replaced by empty ones of the same dtype and ndim (a plan
    must not keep the caller's grids alive); small arrays (tables) are copied."""
    return tuple(a.copy() if isinstance(a, np.ndarray) and a.size <= 65536 else
                 np.empty((0,) * a.ndim, a.dtype) if isinstance(a, np.ndarray) else a
                 for a in args)
