"""The runtime: guarded entries, specializations, tuning at call time, fallback."""
from asp.runtime.abi import (
    MISS,
    REUSE_MIN,
    ArgSpec,
    as_native,
    make_entry,
    native_available,
    new_output,
    on_release_memory,
    refuse_special_array,
    release_memory,
)
from asp.runtime.dispatch import (
    JitKernel,
    Plan,
    Prepared,
    Space,
    Specialization,
    Specializer,
    Variant,
)
from asp.runtime.record import generator_fingerprint
from asp.runtime.specialization import wait_for_builds

__all__ = [
    "MISS", "REUSE_MIN", "ArgSpec", "JitKernel", "Plan", "Prepared", "Space", "Specialization",
    "Specializer", "Variant", "as_native", "generator_fingerprint", "make_entry",
    "native_available", "new_output", "on_release_memory", "refuse_special_array", "release_memory",
    "wait_for_builds",
]
