"""Platform passes (pure functions IR -> IR) and the pipeline runner that dumps each stage."""
from asp.passes.branches import serial_below, unshare
from asp.passes.fold import fold_constants
from asp.passes.loops import (
    Dependences,
    dependences,
    innermost_loops,
    outer_loops,
    parallelize_outer,
    tile_loops,
    unroll_inner,
    vectorize_inner,
)
from asp.passes.pipeline import dump, format_ir, run_pipeline
from asp.passes.prefetch import prefetched_blocks
from asp.passes.propagate import propagate_constants, unread_locals
from asp.passes.simdcalls import SIMD_FORMS, simd_calls, simd_forms_called

__all__ = [
    "Dependences", "SIMD_FORMS", "dependences", "dump", "fold_constants", "format_ir",
    "innermost_loops", "outer_loops", "parallelize_outer", "prefetched_blocks",
    "propagate_constants", "run_pipeline", "serial_below", "simd_calls", "simd_forms_called",
    "tile_loops", "unread_locals", "unroll_inner", "unshare", "vectorize_inner",
]
