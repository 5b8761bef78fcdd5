"""asp: Selective Embedded Just-In-Time Specialization for Python.

Application writers use a specializer (``specializers.stencil``,
``specializers.elementwise``, ``specializers.gmm``,
``specializers.matrix_powers``); specializer writers build on the layers of
this package:

``asp.frontend``  a kernel's Python source as a located ``ast``
``asp.ir``        IR base classes (Node, Visitor, Transformer) and the platform IR
``asp.passes``    loop passes and the pipeline runner (``ASP_DUMP_IR=1``)
``asp.codegen``   platform IR to C through cgen; entry-point boilerplate through Mako
``asp.jit``       the toolchain (codepy) and the disk cache
``asp.tune``      choosing among variants, remembered in sqlite
``asp.runtime``   guarded native entries, specializations, fallback
"""
from asp.errors import (
    AspFallbackWarning,
    CompileError,
    FrontendError,
    LoadError,
    LoweringError,
    PassError,
    SpecializationError,
)

__version__ = "0.1.0"

__all__ = [
    "AspFallbackWarning", "CompileError", "FrontendError", "LoadError", "LoweringError",
    "PassError", "SpecializationError", "__version__",
]
