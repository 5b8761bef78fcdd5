"""``@elementwise``: a scalar Python function mapped over numpy arrays in parallel C.

::

    @elementwise
    def poly(x):
        return 3 * x**3 + 2 * x**2 + x + 1

    y = poly(np.linspace(0, 1, 10_000_000))   # float64 in, float64 out
    poly(x, out=y)                            # into an existing array

Arguments are arrays of one common shape, or Python scalars (broadcast to
every element).  The output's dtype follows NumPy's rules for the scalar
operations (NEP 50), or is ``out``'s.  Non-contiguous arrays are copied;
a non-contiguous or overlapping ``out`` is written through a temporary.
"""
from __future__ import annotations

import functools
import numbers

import numpy as np

from asp.codegen.streaming import PREAMBLE as STREAMING
from asp.codegen.streaming import unsuited_in_cache
from asp.errors import UnrepresentableValue
from asp.frontend import get_source, source_text
from asp.frontend.helpers import passed
from asp.frontend.scalar import PREAMBLE, c_name, hoist_guards, translate
from asp.frontend.shipping import reduce_function_object
from asp.ir import platform as ir
from asp.ir.powers import simd_powers
from asp.passes import run_pipeline, simd_forms_called
from asp.runtime import (
    MISS,
    ArgSpec,
    JitKernel,
    Plan,
    Prepared,
    Specializer,
    Variant,
    refuse_special_array,
)
from asp.runtime.mapargs import (
    FunctionCalls,
    Parameters,
    compilable,
    map_arguments,
    map_python,
    native,
    python_values,
    random_like,
    scalar_types,
    size_bucket,
    write_back,
)
from asp.scaleout import blockwise, has_dask
from specializers.elementwise.lowering import fold_constants, lower_variants, simd_forms
from specializers.elementwise.vlanes import PREAMBLE as VECTOR_PREAMBLE

__all__ = ["ElementwiseFunction", "elementwise"]


#: The entry's error 1: a value only Python can represent (the call runs as Python).
UNREP_ERRORS = ((UnrepresentableValue, UnrepresentableValue.reason),)


class ElementwiseSpecializer(Specializer):
    """The specializer for one ``@elementwise`` function."""

    def __init__(self, fn):
        self.fn = fn
        code = fn.__code__
        self.parameters = Parameters.of(fn)
        self.params = self.parameters.names
        self.name = f"elementwise:{fn.__qualname__} ({code.co_filename}:{code.co_firstlineno})"
        self._src = None
        self._dtypes: dict[str, np.dtype | None] = {}  # signature -> result dtype, or None
        self.digest = ""
        try:
            import hashlib

            self.digest = hashlib.sha256(source_text(fn)[0].encode()).hexdigest()
        except (OSError, TypeError):
            pass

    def location(self) -> str:
        code = self.fn.__code__
        return f"{code.co_filename}:{code.co_firstlineno}"

    def global_reads(self):
        """The module-level names and closure values the function reads: numbers among
        them are baked into the code as constants, so the runtime guards them all."""
        from asp.frontend.names import global_reads

        return global_reads(self.fn)

    def forget(self) -> None:
        # Names it reads were rebound, or the function's code or defaults were replaced
        # in place (``%autoreload``): everything is derived from the function again.
        self.__init__(self.fn)

    # -- validation -------------------------------------------------------------------------
    def prepare(self, args: tuple) -> Prepared:
        *inputs, out = args
        fname = self.fn.__name__
        m = map_arguments(fname, self.params, inputs)
        conv, parts, same, shape = m.args, m.parts, m.same, m.shape
        finish = None
        out_sig = "auto"
        if out is not None:
            if not isinstance(out, np.ndarray):
                raise TypeError(f"{fname}() argument 'out' must be a numpy array, "
                                f"not {type(out).__name__}")
            refuse_special_array(fname, "out", out)
            if out.shape != shape:
                raise ValueError(f"{fname}() argument 'out' has shape {out.shape}; "
                                 f"expected {shape}")
            if not out.flags.writeable:
                raise ValueError(f"{fname}() argument 'out' is read-only")
            if not compilable(native(out.dtype)):
                raise TypeError(f"{fname}() argument 'out' has dtype {out.dtype}; "
                                "expected float32/64, (u)int8-64 or bool")
            # As a ufunc's out=: NumPy's 'same_kind' rule (C's cast of a NaN or a float
            # out of range into an integer gave INT64_MIN where NumPy refuses the call).
            _refuse_cast(fname, self._result_dtype(conv, f"({','.join(parts)})->auto"),
                         out.dtype)
            overlaps = any(isinstance(a, np.ndarray) and np.may_share_memory(a, out)
                           for a in conv)
            if overlaps or not (out.flags.c_contiguous and out.flags.aligned
                                and out.dtype.isnative):
                finish = write_back(out)
                out, same = np.empty(shape, native(out.dtype)), False
            out_sig = f"{out.dtype.str}"
        sig = f"({','.join(parts)})->{out_sig}"
        bucket, size_range = size_bucket(int(np.prod(shape)))
        # The streaming variant's rule takes the bucket's outputs at 8 bytes an element
        # (the widest dtype; without out= the kernel's own is known only at planning).
        return Prepared(args=(*conv, out), signature=sig, finish=finish, same=same,
                        bucket=bucket, size_range=size_range,
                        unsuited=unsuited_in_cache(size_range[1] * 8))

    # -- planning ---------------------------------------------------------------------------
    def plan(self, prepared: Prepared) -> Plan:
        *inputs, out = prepared.args
        src = self._src or get_source(self.fn)
        self._src = src
        types, specs = scalar_types(self.params, inputs)
        sf = translate(src, self.fn, types)
        sf = run_pipeline(sf, [fold_constants, simd_forms, hoist_guards],
                          title=f"{self.fn.__name__}: domain passes")
        called = passed(sf, [fold_constants, simd_forms])  # the user's functions it calls
        out_dtype = out.dtype if out is not None else _dtype(sf.ret.ctype)
        ndim = next(a.ndim for a in inputs if isinstance(a, np.ndarray))
        # Only the out=None signature may allocate: otherwise its entry, once on the hot
        # path, would serve a call without out= with out='s dtype instead of the natural one.
        specs.append(ArgSpec("array", out_dtype, ndim, write=True, alloc=out is None,
                             noalias=True, group=0))
        specs = tuple(specs)
        names = [*(c_name(p) for p in self.params), "asp_out"]
        variants = lower_variants(sf, names, specs, _ctype(out_dtype))
        funcs = tuple(Variant(name, fn) for name, fn in variants)

        def check_args(inputs=tuple(inputs), out=out):
            rng = np.random.default_rng(12345)
            made = []
            for a in inputs:
                if isinstance(a, np.ndarray):
                    made.append(random_like(rng, a, (37,) + (1,) * (a.ndim - 1)))
                else:
                    made.append(a)
            o = None if out is None else np.zeros((37,) + (1,) * (out.ndim - 1), out.dtype)
            return (*made, o)

        def check_args_from(call):
            # The first elements of the caller's own arrays: for functions whose valid
            # inputs random values do not hit (math.log of a negative raises).
            *ins, o = call
            n = next(a.size for a in ins if isinstance(a, np.ndarray))
            m = min(n, 37)
            made = tuple(np.array(a.reshape(-1)[:m]).reshape((m,) + (1,) * (a.ndim - 1))
                         if isinstance(a, np.ndarray) else a for a in ins)
            oo = None if o is None else np.zeros((m,) + (1,) * (o.ndim - 1), o.dtype)
            return (*made, oo)

        functions = (*(h.as_function() for h in called), sf.as_function())
        float32 = any(s.kind == "array" and np.dtype(s.dtype) == np.float32 for s in specs) \
            or ir.rounds_a_call_to("float", *functions)
        return Plan(signature=prepared.signature, specs=specs, variants=funcs,
                    ret=len(specs) - 1, preamble=PREAMBLE + simd_powers(
                        simd_forms_called(sf.body).union(
                            *(simd_forms_called(h.body) for h in called))) + (
                        VECTOR_PREAMBLE if any(
                        name.startswith("vlanes") for name, _ in variants) else "") + (
                        STREAMING if any(name == "stream" for name, _ in variants) else ""),
                    # The user's function, called by every variant: IR, so the dump shows it.
                    helpers=functions,
                    includes=("stdint.h", "stdbool.h", "math.h"), check_args=check_args,
                    check_args_from=check_args_from, errors=UNREP_ERRORS if sf.checked else (),
                    rtol=1e-4 if float32 else 1e-9, atol=1e-6 if float32 else 1e-12)

    # -- reference --------------------------------------------------------------------------
    def run_python(self, args: tuple):
        """The function on each element, as Python runs it on ``a[i]``.

        Elements are NumPy scalars, so arithmetic follows NumPy's types (float32 stays
        float32); ``np.frompyfunc`` would pass Python floats and compute in double.  The
        result has the dtype the compiled kernel would give when the kernel can be
        typed, else the dtype NumPy infers from the values.
        """
        *inputs, out = args
        values, shape = map_python(self.fn, inputs)
        if out is not None:
            values = np.asarray(values).reshape(shape)
            _refuse_cast(self.fn.__name__, values.dtype, out.dtype)
            out[...] = values
            return out
        return python_values(values, self._result_dtype(inputs)).reshape(shape)

    def _result_dtype(self, inputs, key: str | None = None) -> np.dtype | None:
        """The dtype the compiled kernel returns for ``inputs`` (whose signature without
        ``out``, if known, is ``key``), or None if it cannot be typed (the reason it runs
        as Python).  Both answers are kept per signature: a call with ``out=`` that stays
        on the slow path asks at every call."""
        try:
            if key is None:
                key = self.prepare((*inputs, None)).signature
            if key not in self._dtypes:
                try:
                    types, _ = scalar_types(self.params, inputs)
                    src = self._src or get_source(self.fn)
                    self._dtypes[key] = _dtype(translate(src, self.fn, types).ret.ctype)
                except Exception:  # any failure: NumPy infers the dtype from the values
                    self._dtypes[key] = None
            return self._dtypes[key]
        except Exception:
            return None


def _refuse_cast(fname: str, results, out_dtype) -> None:
    """A TypeError naming ``out`` when results of dtype ``results`` (None: not known
    yet) cannot go into it under NumPy's ``'same_kind'`` casting, as a ufunc's would not."""
    if results is None or np.can_cast(results, native(out_dtype), casting="same_kind"):
        return
    raise TypeError(f"{fname}() argument 'out' has dtype {out_dtype}, but the results are "
                    f"{np.dtype(results)}, which NumPy's 'same_kind' casting does not put "
                    f"into it (a ufunc refuses such an out= too); pass an out of dtype "
                    f"{np.dtype(results)}, or convert the result yourself (.astype)")


def _ctype(dtype) -> str:
    from asp.ir.types import ctype_of

    return ctype_of(dtype)


def _dtype(ctype: str):
    from asp.ir.types import dtype_of

    return dtype_of(ctype)


class ElementwiseFunction:
    """A scalar function usable on whole arrays; calls run specialized C."""

    def __init__(self, fn):
        functools.update_wrapper(self, fn)
        self.py_func = fn
        self.specializer = ElementwiseSpecializer(fn)
        self.jit = JitKernel(self.specializer)
        self.__asp_scalar__ = fn  # what another kernel's call of this one compiles
        self._calls = FunctionCalls(fn, self.specializer)

    def __call__(self, *args, out=None, **kwargs):
        args = self._calls.args(args, kwargs)
        # The hot path, inlined: the last winning native entry checks its own guards.
        hot = self.jit.hot_entry
        if hot is not None:
            try:
                result = hot(*args, out)
            except TypeError:  # a wrong argument count: the slow path names the problem
                return self.jit.slow_call((*args, out))
            except UnrepresentableValue as exc:
                return self.jit.run_as_python((*args, out), exc)
            if result is not MISS:
                return result
        if has_dask(args):  # block by block, a lazy dask array (as NumPy's ufuncs give)
            if out is not None:
                raise TypeError(f"{self.py_func.__name__}() argument 'out' cannot be given "
                                "with dask arrays (the result is a new, lazy dask array)")
            return blockwise(self, self.py_func.__name__, self.specializer.params, args)
        if args and all(isinstance(a, numbers.Number | np.generic) for a in args):
            return self._on_numbers(args, out)
        return self.jit.slow_call((*args, out))

    def _on_numbers(self, args: tuple, out):
        """Numbers alone (a kernel that calls this one and runs as Python passes them):
        the value a one-element array gives, a NumPy scalar, as a ufunc gives it.  NumPy's
        scalars become the arrays and Python's numbers stay weak (NEP 50); Python's
        numbers alone all become arrays.  With ``out``: that value in every element."""
        strong = any(isinstance(a, np.generic) for a in args)
        value = self(*(np.asarray(a).reshape(1) if isinstance(a, np.generic) or not strong
                       else a for a in args))[0]
        if out is None:
            return value
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{self.py_func.__name__}() argument 'out' must be a NumPy "
                            f"array, not {type(out).__name__}")
        try:
            np.copyto(out, value, casting="same_kind")
        except TypeError as exc:
            raise TypeError(f"{self.py_func.__name__}() argument 'out': {exc}") from None
        return out

    def __repr__(self) -> str:
        return f"<elementwise {self.py_func.__qualname__}>"

    def __reduce__(self):
        # By name where its module holds it, else by value (asp.frontend.shipping): a
        # pool's workers or a cluster's compile it again (or load it from their cache).
        return reduce_function_object(self, self.py_func, ElementwiseFunction)

    def __get__(self, obj, objtype=None):
        return self if obj is None else functools.partial(self, obj)


def elementwise(fn=None):
    """Decorator: make a scalar function an elementwise kernel over numpy arrays."""
    if fn is None:
        return elementwise
    if not callable(fn):
        raise TypeError("@elementwise decorates a function")
    return ElementwiseFunction(fn)
