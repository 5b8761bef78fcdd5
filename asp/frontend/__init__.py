"""The front end: a Python function's syntax tree with its true file and line numbers, and
the names it reads from outside itself, resolved as Python resolves them.  The translator
of scalar Python every specializer's front end builds on is :mod:`asp.frontend.scalar`
(``ScalarTranslator``, ``translate``)."""
from asp.frontend.names import GlobalReads, global_reads, namespace
from asp.frontend.source import KernelSource, attach_source, get_source, reject, source_text

__all__ = ["GlobalReads", "KernelSource", "attach_source", "get_source", "global_reads",
           "namespace", "reject", "source_text"]
