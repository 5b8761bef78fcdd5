"""Running a list of passes, and showing every intermediate IR.

``ASP_DUMP_IR=1`` (or ``dump=True``) prints each stage to stderr: platform IR
as the C it will become, any other IR as an indented tree.  :func:`dump`
also collects the stages for programmatic use (``asp.passes.dump.stages``).
"""
from __future__ import annotations

import dataclasses
import functools
import sys
from collections.abc import Callable, Sequence

from asp import config
from asp.ir import platform as ir
from asp.ir.node import Node

__all__ = ["dump", "format_ir", "run_pipeline"]


def format_ir(node) -> str:
    """Readable text of any IR: C for platform functions/modules, a tree otherwise."""
    from asp.codegen.cprinter import function_to_cgen, module_to_c

    if isinstance(node, ir.Module):
        return module_to_c(node)
    if isinstance(node, ir.Function):
        return str(function_to_cgen(node))
    if isinstance(node, tuple | list):
        return "\n".join(format_ir(n) for n in node)
    return _tree(node, 0)


def _tree(node, depth: int) -> str:
    pad = "  " * depth
    if not isinstance(node, Node):
        return pad + repr(node)
    attrs = []
    kids = []
    for f in dataclasses.fields(node):
        value = getattr(node, f.name)
        if not f.repr:  # (the user's helpers: the module dump shows them as functions)
            continue
        if f.name in node.child_fields:
            kids.append((f.name, value))
        else:
            attrs.append(f"{f.name}={value!r}")
    lines = [f"{pad}{type(node).__name__}({', '.join(attrs)})"]
    for name, value in kids:
        if isinstance(value, tuple):
            if value:
                lines.append(f"{pad}  .{name}:")
                lines += [_tree(v, depth + 2) for v in value]
        elif value is not None:
            lines.append(f"{pad}  .{name}:")
            lines.append(_tree(value, depth + 2))
    return "\n".join(lines)


class _Dump:
    """Collects (title, text) of every stage when dumping is on."""

    def __init__(self):
        self.stages: list[tuple[str, str]] = []
        self.enabled = False

    def __call__(self, title: str, node) -> None:
        if not (self.enabled or config.dump_ir()):
            return
        text = format_ir(node)
        self.stages.append((title, text))
        if config.dump_ir():
            print(f"=== asp: {title} ===\n{text}\n", file=sys.stderr)


dump = _Dump()


def run_pipeline(node, passes: Sequence[Callable], *, title: str):
    """Apply ``passes`` in order, dumping the IR before and after each."""
    dump(f"{title}: input", node)
    for p in passes:
        node = p(node)
        dump(f"{title}: after {_pass_name(p)}", node)
    return node


def _pass_name(p) -> str:
    """``parallelize_outer(schedule='static', chunk=1)`` for a partial, else the name."""
    if isinstance(p, functools.partial):
        from asp.codegen.cprinter import expr_to_c

        def shown(v) -> str:  # a function argument by its name
            return (v.name if isinstance(v, ir.Function) else expr_to_c(v)
                    if isinstance(v, Node) else repr(v))

        args = [repr(a) for a in p.args] + [f"{k}={shown(v)}" for k, v in p.keywords.items()]
        return f"{_pass_name(p.func)}({', '.join(args)})"
    return getattr(p, "__name__", repr(p))
