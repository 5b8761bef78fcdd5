"""Stencil kernels: subclass :class:`StencilKernel`, write ``kernel()`` over
:class:`StencilGrid` objects in Python, and get tuned OpenMP C.

Front end (:mod:`.frontend`) -> stencil domain IR (:mod:`.domain`) -> domain
passes (:mod:`.passes`) -> lowering to the platform IR (:mod:`.lowering`) ->
variants (:mod:`.variants`), driven by :mod:`.specializer` on the core's runtime.
"""
from specializers.stencil.grid import GridArray, StencilGrid
from specializers.stencil.kernel import StencilKernel, distance
from specializers.stencil.lowering import MODES

__all__ = ["MODES", "GridArray", "StencilGrid", "StencilKernel", "distance"]
