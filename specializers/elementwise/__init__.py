"""Elementwise kernels: ``@elementwise`` on a scalar Python function, and a raw-C form.

``@elementwise`` turns a scalar function into a parallel, dtype-specialized map
over numpy arrays.  ``make_c_function`` / ``call_c_function`` /
``call_c_function_parallel`` / ``wait_for_parallel_finish`` run a C snippet
over the rows of numpy arrays, on striped or chunked threads, with every type
and size checked.
"""
from specializers.elementwise.rawc import (
    CFunction,
    call_c_function,
    call_c_function_parallel,
    make_c_function,
    wait_for_parallel_finish,
)
from specializers.elementwise.specializer import ElementwiseFunction, elementwise

__all__ = [
    "CFunction", "ElementwiseFunction", "call_c_function", "call_c_function_parallel",
    "elementwise", "make_c_function", "wait_for_parallel_finish",
]
