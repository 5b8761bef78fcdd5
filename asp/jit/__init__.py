"""Compile C through codepy into a content-addressed, process-safe disk cache."""
from asp.jit.cache import Library, build, cache_entries, clear_cache, load_library
from asp.jit.toolchain import Compiler, compiler

__all__ = [
    "Compiler",
    "Library",
    "build",
    "cache_entries",
    "clear_cache",
    "compiler",
    "load_library",
]
