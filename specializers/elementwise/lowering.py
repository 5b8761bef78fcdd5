"""Lowering of the elementwise domain IR to platform IR, one function per variant.

A variant is the map loop ``out[k] = f(x[k], y[k], ...)`` over the flat
arrays with a work-sharing schedule:

* ``chunk``:   ``schedule(static)``: each thread one contiguous block (streams well);
* ``stride``:  ``schedule(static, 1)``: threads interleave elements (balances
  kernels whose cost varies smoothly across the array, e.g. Mandelbrot rows);
* ``dynamic``: ``schedule(dynamic, 256)``: blocks handed out on demand;
* ``lanes8``, ``lanes32``: for kernels with loops, 8 or 32 elements run in
  lockstep so the loop vectorizes (see :mod:`specializers.elementwise.lanes`),
  blocks striped over threads;
* ``vlanes4``, ``vlanes8``: the same with every lane value in vector registers, for
  kernels on 8-byte values (see :mod:`specializers.elementwise.vlanes`);
* ``stream``: for kernels without loops, ``chunk`` with each line of a float output
  written by one non-temporal store (see :mod:`specializers.elementwise.streaming`).
"""
from __future__ import annotations

import dataclasses
import functools

from asp import config
from asp.codegen.entry import abi_params, extent_name
from asp.frontend.scalar import ScalarFunction
from asp.ir import platform as ir
from asp.passes import parallelize_outer, run_pipeline, serial_below, simd_calls, vectorize_inner
from asp.passes.fold import fold_constants as fold_expressions
from asp.runtime.abi import ArgSpec
from specializers.elementwise.lanes import lanes_function
from specializers.elementwise.streaming import stream_function
from specializers.elementwise.vlanes import WIDTH, vlanes_function

__all__ = ["SCHEDULES", "SERIAL_ELEMENTS", "SERIAL_ELEMENTS_LOOPS", "fold_constants",
           "lower_variants", "serial_elements", "simd_forms"]

SCHEDULES: dict[str, tuple[str, int | None]] = {
    "chunk": ("static", None),
    "stride": ("static", 1),
    "dynamic": ("dynamic", 256),
}

#: Going parallel costs a few microseconds: below this many elements a call runs on one
#: thread; kernels with loops (much more work per element) pay for a team much sooner.
SERIAL_ELEMENTS = 16384
#: Vectors of lanes of the ``vlanes`` variants (see :mod:`specializers.elementwise.vlanes`).
VECTORS = (1, 2)
SERIAL_ELEMENTS_LOOPS = 256


def serial_elements(heavy: bool) -> int:
    """The element count a call must exceed to run on an OpenMP team:
    ``ASP_PARALLEL_THRESHOLD`` if set (0 in the test suite), else the default for kernels
    with (``heavy``) or without loops.  Read at planning time: the value is baked into the C."""
    return config.parallel_threshold(SERIAL_ELEMENTS_LOOPS if heavy else SERIAL_ELEMENTS)


def fold_constants(sf: ScalarFunction) -> ScalarFunction:
    """Fold arithmetic on literals (a domain pass: the core's folding on the body).

    Before: ``x * (2.0 * 3.0)``  After: ``x * 6.0``.
    """
    return dataclasses.replace(sf, body=fold_expressions(sf.body))


def simd_forms(sf: ScalarFunction) -> ScalarFunction:
    """A kernel without loops (whose map loops are vectorized) calls the vector forms of
    the helpers that have one where its body calls them unconditionally (a domain pass:
    :func:`asp.passes.simd_calls`); poly's ``3 * x**3 + ...`` on 10M float64, 2 threads
    on an Intel Xeon: 4.4-5.6 ms against 8.7-9.3 in a C loop.

    Before: ``return 3.0 * asp_pow3(x) + ...``  After: ``return 3.0 * asp_pow3_simd(x) + ...``
    """
    if _has_loops(sf):
        return sf
    body = simd_calls(sf.body)
    return sf if body is sf.body else dataclasses.replace(sf, body=body)


def _has_loops(sf: ScalarFunction) -> bool:
    return any(isinstance(n, ir.For | ir.While) for n in sf.body.walk())


def lower_variants(sf: ScalarFunction, names: list[str], specs: tuple[ArgSpec, ...],
                   out_ctype: str) -> list[tuple[str, ir.Function]]:
    """One kernel function per schedule, for arguments ``names`` (the output last)."""
    arrays = [n for n, s in zip(names, specs) if s.kind == "array"]
    first = arrays[0]
    ndim = specs[names.index(first)].ndim
    size: ir.Expr = ir.Const(1, "int64_t")
    for k in range(ndim):
        dim = ir.Var(extent_name(first, k))
        size = dim if k == 0 else ir.BinOp("*", size, dim)
    k = ir.Var("k")
    call_args = []
    for name, spec, ptype in zip(names[:-1], specs[:-1], sf.param_types):
        e = ir.ArrayRef(name, k) if spec.kind == "array" else ir.Var(name)
        call_args.append(e)
    call = sf.call(tuple(call_args))
    loop = ir.For("k", ir.Const(0, "int64_t"), ir.Var("n"),
                  ir.Block((ir.Assign(ir.ArrayRef(names[-1], k), ir.Cast(out_ctype, call)),)))
    stmts = (ir.Declare("int64_t", "n", size, const=True), loop)
    if sf.checked:  # error 1: a float -> int conversion Python would do otherwise
        stmts = sf.flagged(stmts, 1, tuple(call_args))
    body = ir.Block((*stmts, ir.Return(ir.Const(0, "int32_t"))))
    params = abi_params(names, specs)
    heavy = _has_loops(sf)
    when = ir.BinOp(">", ir.Var("n"), ir.Const(serial_elements(heavy), "int64_t"))
    out = []
    for variant, (schedule, chunk) in SCHEDULES.items():
        fn = ir.Function(f"kernel_{variant}", params, body, ret="int")
        passes = [functools.partial(parallelize_outer, schedule=schedule, chunk=chunk)]
        if not heavy:
            passes.append(vectorize_inner)
        passes.append(functools.partial(serial_below, when=when))
        out.append((variant, run_pipeline(fn, passes, title=f"elementwise {variant}")))
    fn = None if heavy else stream_function(sf, names, specs, out_ctype, when=when,
                                            size=size, params=params)
    if fn is not None:
        out.append(("stream", run_pipeline(fn, [], title="elementwise stream")))
    for width in (8, 32) if heavy else ():
        fn = lanes_function(sf, names, specs, out_ctype, lanes=width, schedule=("static", 1),
                            when=when, size=size, params=params)
        if fn is not None:
            out.append((f"lanes{width}", run_pipeline(fn, [], title=f"elementwise lanes{width}")))
    for vectors in VECTORS if heavy else ():
        fn = vlanes_function(sf, names, specs, out_ctype, vectors=vectors,
                             schedule=("static", 1), when=when, size=size, params=params)
        if fn is not None:
            name = f"vlanes{vectors * WIDTH}"
            out.append((name, run_pipeline(fn, [], title=f"elementwise {name}")))
    return out
