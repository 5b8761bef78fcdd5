"""``@reduction(op)``: a scalar Python function, reduced over whole arrays in parallel C.

Written only against asp's public core: the core's scalar front end types the
function, the core's passes parallelize and vectorize the loop (and prove the
accumulation a reduction), the runtime builds, checks, tunes, guards and falls back.
This module is the domain: what a reduction's loop is, and its NumPy semantics.
"""
from __future__ import annotations

import functools
import math

import numpy as np

from asp import config
from asp.codegen import abi_params
from asp.codegen.entry import extent_name
from asp.errors import UnrepresentableValue
from asp.frontend import get_source, global_reads
from asp.frontend.helpers import passed
from asp.frontend.scalar import PREAMBLE, c_name, hoist_guards, translate
from asp.frontend.shipping import reduce_function_object
from asp.ir import platform as ir
from asp.ir.types import ctype_of, dtype_of
from asp.passes import (
    fold_constants,
    parallelize_outer,
    prefetched_blocks,
    run_pipeline,
    serial_below,
    vectorize_inner,
)
from asp.runtime import ArgSpec, JitKernel, Plan, Prepared, Specializer, Variant
from asp.runtime.mapargs import (
    FunctionCalls,
    Parameters,
    map_arguments,
    map_python,
    python_values,
    random_like,
    scalar_types,
    size_bucket,
)
from asp.scaleout import blockwise, has_dask

__all__ = ["OPS", "Reduction", "reduction"]

#: op -> (NumPy's reduction, its identity or None, the C update of ``acc`` by ``v``).
OPS = {
    "+": (np.sum, 0, lambda acc, v: ir.Assign(acc, v, "+")),
    "*": (np.prod, 1, lambda acc, v: ir.Assign(acc, v, "*")),
    "max": (np.max, None,
            lambda acc, v: ir.Assign(acc, ir.Ternary(ir.BinOp(">", v, acc), v, acc))),
    "min": (np.min, None,
            lambda acc, v: ir.Assign(acc, ir.Ternary(ir.BinOp("<", v, acc), v, acc))),
}
#: Variants: OpenMP schedules of the one loop, and one thread with SIMD lanes.  The
#: on-demand schedule is guided (blocks shrinking from n / threads down to 4096 elements),
#: not dynamic: 10M float64 terms in blocks of 4096 cost 2442 claims of a shared counter
#: and as many restarts of the hardware prefetcher, 10% of a call that runs at the memory
#: bandwidth; guided claims a few dozen blocks and still evens out a thread that lost
#: its core to another process, or terms whose cost varies.
SCHEDULES = {"static": ("static", None), "guided": ("guided", 4096),
             "prefetch": ("static", None), "serial": None}
SERIAL_ELEMENTS = 32768  # below this a call runs on one thread
#: The ``prefetch`` variant: the loop in blocks of BLOCK elements, each first asking for
#: the cache lines PREFETCH_BYTES ahead of it (the core's prefetched_blocks says why).
BLOCK = 256
PREFETCH_BYTES = 1024


class ReductionSpecializer(Specializer):
    def __init__(self, fn, op: str):
        self.fn, self.op = fn, op
        code = fn.__code__
        self.parameters = Parameters.of(fn)
        self.params = self.parameters.names
        self.name = f"reduction[{op}]:{fn.__qualname__} ({code.co_filename}:{code.co_firstlineno})"
        try:
            self.digest = get_source(fn).digest + op
        except Exception:  # noqa: BLE001 - no source: no record; plan() falls back
            self.digest = ""

    def location(self) -> str:
        return f"{self.fn.__code__.co_filename}:{self.fn.__code__.co_firstlineno}"

    def global_reads(self):
        return global_reads(self.fn)

    def forget(self) -> None:
        # Names it reads were rebound, or the function's code or defaults were replaced
        # in place (``%autoreload``): everything is derived from the function again.
        self.__init__(self.fn, self.op)

    def prepare(self, args: tuple) -> Prepared:
        *inputs, _ = args  # the entry's result slot: the caller passes None
        m = map_arguments(self.fn.__name__, self.params, inputs)
        if OPS[self.op][1] is None and math.prod(m.shape) == 0:
            raise ValueError(f"{self.fn.__name__}(): zero-size arrays have no {self.op} "
                             "(it has no identity)")
        bucket, size_range = size_bucket(math.prod(m.shape))
        first = next(i for i, a in enumerate(m.args) if isinstance(a, np.ndarray))
        return Prepared(args=(*m.args, None), signature=f"({','.join(m.parts)})",
                        same=m.same, bucket=bucket, size_range=size_range, size_arg=first)

    def plan(self, prepared: Prepared) -> Plan:
        inputs = prepared.args[:-1]
        types, specs = scalar_types(self.params, inputs)
        sf = translate(get_source(self.fn), self.fn, types, name="asp_term", kind="a reduction")
        sf = run_pipeline(sf, [functools.partial(_fold), hoist_guards],
                          title=f"{self.fn.__name__}: domain")
        term = dtype_of(sf.ret.ctype)
        result = self.result_dtype(term)
        # float32 sums accumulate in double (NumPy sums pairwise; a float accumulator over
        # millions of terms would lose digits), and are rounded once at the end.
        acc_t = "double" if result == np.float32 and self.op in "+*" else ctype_of(result)
        names = [c_name(p) for p in self.params] + ["asp_out"]
        specs.append(ArgSpec("array", result, 1, write=True, alloc=True, shape=(1,),
                             scalar=True))
        variants = tuple(Variant(v, self.lower(sf, names, tuple(specs), acc_t, v))
                         for v in SCHEDULES)

        def check_args():
            rng = np.random.default_rng(2026)
            return (*(random_like(rng, a, (41,) + (1,) * (a.ndim - 1))
                      if isinstance(a, np.ndarray) else a for a in inputs), None)

        functions = (*(h.as_function() for h in passed(sf, [_fold])), sf.as_function())
        # Loose where float32 rounds: the result, or a float32 function's (np.expm1 of an
        # int16), which may differ from NumPy's in the last place.
        tight = (result.kind != "f" or result == np.float64) \
            and not ir.rounds_a_call_to("float", *functions)
        return Plan(signature=prepared.signature, specs=tuple(specs), variants=variants,
                    ret=len(specs) - 1, preamble=PREAMBLE,
                    # The user's term, called by every variant: IR, so the dump shows it.
                    helpers=functions,
                    includes=("stdint.h", "stdbool.h", "math.h"), check_args=check_args,
                    errors=((UnrepresentableValue, UnrepresentableValue.reason),
                            (ValueError, f"zero-size arrays have no {self.op} (it has no "
                             "identity)")),
                    rtol=1e-10 if tight else 1e-5, atol=0.0)

    def result_dtype(self, term: np.dtype) -> np.dtype:
        """NumPy's: what ``np.sum``/``np.prod``/``np.max``/``np.min`` of ``term`` gives."""
        return OPS[self.op][0](np.zeros(1, term)).dtype

    def lower(self, sf, names, specs, acc_t: str, variant: str) -> ir.Function:
        first = next(n for n, s in zip(names, specs) if s.kind == "array")
        ndim = specs[names.index(first)].ndim
        size: ir.Expr = ir.Var(extent_name(first, 0))
        for k in range(1, ndim):
            size = ir.BinOp("*", size, ir.Var(extent_name(first, k)))
        def args_at(i: ir.Expr) -> tuple:  # the term's arguments for element i
            return tuple(ir.ArrayRef(n, i) if s.kind == "array" else ir.Var(n)
                         for n, s in zip(names[:-1], specs[:-1]))

        args = args_at(ir.Var("k"))
        call = sf.call(args)
        acc, v = ir.Var("asp_acc"), ir.Var("asp_v")
        nan = ir.Var("asp_nan")  # max/min of floats: NumPy propagates NaN
        body = [ir.Declare(acc_t, "asp_v", ir.Cast(acc_t, call)), OPS[self.op][2](acc, v)]
        floating = acc_t in ("double", "float") and self.op in ("max", "min")
        if floating:
            body.append(ir.Assign(nan, ir.BinOp("!=", v, v), "|"))
        identity = OPS[self.op][1]
        # max and min have no identity: they start from the first term (prepare refused
        # empty arrays).
        first_term = ir.Cast(acc_t, sf.call(args_at(ir.Const(0, "int64_t"))))
        decls = [ir.Declare("int64_t", "n", size, const=True),
                 ir.Declare(acc_t, "asp_acc", first_term if identity is None
                            else ir.Const(identity, acc_t)),
                 ir.Declare("int", "asp_nan", ir.Const(0, "int"))]
        if variant == "prefetch":
            streams = [(n, s.dtype.itemsize) for n, s in zip(names[:-1], specs[:-1])
                       if s.kind == "array"]
            loop = prefetched_blocks("k", ir.Var("n"), body, acc, acc_t,
                                     first_term if identity is None
                                     else ir.Const(identity, acc_t), OPS[self.op][2],
                                     streams, block=BLOCK, ahead_bytes=PREFETCH_BYTES)
        else:
            loop = ir.For("k", ir.Const(0, "int64_t"), ir.Var("n"), ir.Block(tuple(body)))
        store = ir.Assign(ir.ArrayRef("asp_out", ir.Const(0, "int64_t")),
                          ir.Ternary(nan, ir.Var("NAN"), acc) if floating else acc)
        stmts = (*decls, loop, store)
        if sf.checked:  # error 1: a float -> int conversion only Python can do
            stmts = sf.flagged(stmts, 1, args)
        if identity is None:  # error 2: max/min of nothing (the hot path skips prepare)
            stmts = (ir.If(ir.BinOp("==", size, ir.Const(0, "int64_t")),
                           ir.Block((ir.Return(ir.Const(2, "int32_t")),))), *stmts)
        fn = ir.Function(f"reduce_{variant}", abi_params(names, specs),
                         ir.Block((*stmts, ir.Return(ir.Const(0, "int32_t")))), ret="int")
        if SCHEDULES[variant] is None:
            return run_pipeline(fn, [vectorize_inner], title=f"{self.name} {variant}")
        schedule, chunk = SCHEDULES[variant]
        when = ir.BinOp(">", ir.Var("n"),
                        ir.Const(config.parallel_threshold(SERIAL_ELEMENTS), "int64_t"))
        return run_pipeline(fn, [functools.partial(parallelize_outer, schedule=schedule,
                                                   chunk=chunk),
                                 vectorize_inner, functools.partial(serial_below, when=when)],
                            title=f"{self.name} {variant}")

    def run_python(self, args: tuple):
        """``np.sum`` (``prod``, ``max``, ``min``) of the function on every element."""
        terms = self.terms(args)
        if terms.size == 0 and OPS[self.op][1] is None:
            raise ValueError(f"{self.fn.__name__}(): zero-size arrays have no {self.op}")
        return OPS[self.op][0](terms)

    def terms(self, args: tuple) -> np.ndarray:
        """The function on every element, as the flat array NumPy reduces: in the type
        the compiled kernel gives the terms when it can be typed and they fit it (a Python
        int beyond 64 bits, which the compiled code refuses, keeps Python's value)."""
        inputs = args[:len(self.params)]
        values, _ = map_python(self.fn, inputs)
        try:
            types, _ = scalar_types(self.params, map_arguments("", self.params, inputs).args)
            term = dtype_of(translate(get_source(self.fn), self.fn, types,
                                      kind="a reduction").ret.ctype)
        except Exception:  # noqa: BLE001 - untypable: NumPy infers from the values
            term = None
        try:
            return python_values(values, term).reshape(-1)
        except OverflowError:  # Python's numbers, reduced as Python reduces them (a NumPy
            # scalar would take the big int into its own type and raise again)
            return np.array([v.item() if isinstance(v, np.generic) else v for v in values],
                            dtype=object)


def _fold(sf):
    import dataclasses

    return dataclasses.replace(sf, body=fold_constants(sf.body))


class Reduction:
    """A scalar function of array elements, reduced with ``op`` over whole arrays."""

    def __init__(self, fn, op: str):
        functools.update_wrapper(self, fn)
        self.py_func = fn
        self.jit = JitKernel(sp := ReductionSpecializer(fn, op))
        self._calls = FunctionCalls(fn, sp)

    def __call__(self, *args, **kwargs):
        args = self._calls.args(args, kwargs)
        try:
            return self.jit(*args, None)  # the entry allocates the result slot
        except TypeError:
            if not has_dask(args):
                raise
        # Dask arrays: each block reduced, then the blocks' results (lazy, as np.sum is)
        sp = self.jit.specializer
        return blockwise(self, self.py_func.__name__, sp.params, args, OPS[sp.op][0])

    def __repr__(self) -> str:
        return f"<reduction[{self.jit.specializer.op}] {self.py_func.__qualname__}>"

    def __reduce__(self):  # by name or by value, as a function travels
        return reduce_function_object(self, self.py_func, Reduction, self.jit.specializer.op)


def reduction(op: str = "+"):
    """Decorator: ``@reduction("+")`` (or ``"*"``, ``"max"``, ``"min"``) over numpy arrays."""
    if op not in OPS:
        raise ValueError(f"reduction(op={op!r}): expected one of {', '.join(map(repr, OPS))}")
    return lambda fn: Reduction(fn, op)
