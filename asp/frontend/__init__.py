"""The front end: a Python function's syntax tree with its true file and line numbers."""
from asp.frontend.source import KernelSource, attach_source, get_source, reject

__all__ = ["KernelSource", "attach_source", "get_source", "reject"]
