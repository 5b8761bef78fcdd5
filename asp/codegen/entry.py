"""Kernel parameters in ABI order, and the entry-point boilerplate (a Mako template).

A kernel function lowered by a specializer takes its parameters in *ABI
order*: for each argument of the call, in order, an array gives a pointer
parameter followed by one ``int64_t`` extent per dimension (``<name>_n0``,
``<name>_n1``, ...), a float scalar a ``double`` and an integer scalar an
``int64_t``.  :func:`abi_params` builds that list; :func:`entry_point` maps the
uniform ABI (``ptrs``, ``dims``, ``f``, ``i``) onto it.

Text that comes from the user (kernel names, qualified names, file paths) goes
into the generated C only through :func:`comment_text`: a kernel in a folder
named ``x*`` (a path holding ``*/``) or with a newline in its path still compiles.
"""
from __future__ import annotations

import functools
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from asp.codegen.cprinter import module_to_c
from asp.ir import platform as ir
from asp.ir.types import ctype_of

if TYPE_CHECKING:  # a runtime import would be circular (asp.runtime imports this module)
    from asp.runtime.abi import ArgSpec

__all__ = ["EntryPoint", "abi_params", "comment_text", "entry_point", "extent_name",
           "render_module"]


def comment_text(text: str) -> str:
    """``text`` made safe inside a C block comment, on one line, in printable ASCII.

    Non-ASCII characters (and lone surrogates from undecodable file names, which
    could not even be encoded) become ``\\uXXXX`` escapes, control characters
    ``\\xNN``; ``*/`` and ``/*`` are split so the comment can neither end early
    nor nest.
    """
    out = text.encode("ascii", "backslashreplace").decode("ascii")
    out = "".join(ch if " " <= ch <= "~" else f"\\x{ord(ch):02x}" for ch in out)
    return out.replace("*/", "*\\/").replace("/*", "/\\*")


def extent_name(array: str, axis: int) -> str:
    return f"{array}_n{axis}"


@dataclass(frozen=True)
class EntryPoint:
    symbol: str
    target: str
    args: tuple[str, ...]


def abi_params(names: Sequence[str], specs: Sequence[ArgSpec], *,
               float_ctype: str = "double") -> tuple[ir.Param, ...]:
    """The kernel's parameters for arguments ``names`` with guards ``specs``."""
    out = []
    for name, spec in zip(names, specs, strict=True):
        if spec.kind == "array":
            out.append(ir.Param(name, ctype_of(spec.dtype), pointer=True,
                                const=not spec.write, restrict=True))
            out += [ir.Param(extent_name(name, k), "int64_t") for k in range(spec.ndim)]
        elif spec.dtype is not None:  # a NumPy scalar, in its own C type (the ABI's double
            out.append(ir.Param(name, ctype_of(spec.dtype)))  # or int64 holds it exactly)
        elif spec.kind == "float":
            out.append(ir.Param(name, float_ctype))
        else:
            out.append(ir.Param(name, "int64_t"))
    return tuple(out)


def entry_point(symbol: str, target: str, specs: Sequence[ArgSpec],
                bound: Sequence[int] = ()) -> EntryPoint:
    """The entry ``symbol`` that unpacks the ABI and calls ``target``, with the
    constants ``bound`` after the call's arguments (a variant's, see
    :attr:`asp.runtime.plan.Variant.bound`)."""
    args, p, d, f, i = [], 0, 0, 0, 0
    for spec in specs:
        if spec.kind == "array":
            ctype = ctype_of(spec.dtype)
            const = "" if spec.write else "const "
            args.append(f"({const}{ctype} *)ptrs[{p}]")
            p += 1
            for _ in range(spec.ndim):
                args.append(f"dims[{d}]")
                d += 1
        elif spec.kind == "float":
            args.append(f"f[{f}]")
            f += 1
        else:
            args.append(f"i[{i}]")
            i += 1
    args += [f"INT64_C({int(b)})" for b in bound]
    return EntryPoint(symbol, target, tuple(args))


def mako_template_class() -> type:
    """Mako's ``Template``, imported on first use.

    Mako's import loads Pygments, when it is installed, to highlight Mako's HTML error
    pages (asp never renders one): 38 of the 55-65 ms a cold first call spent importing
    Mako.  So when Mako is not loaded yet its Pygments plugin is hidden for that import;
    Mako then keeps its plain fallback, and the plugin stays importable afterwards."""
    if "mako" not in sys.modules and "mako.ext.pygmentplugin" not in sys.modules:
        sys.modules["mako.ext.pygmentplugin"] = None  # an ImportError, for Mako only
        try:
            import mako.template  # noqa: F401
        finally:
            if sys.modules.get("mako.ext.pygmentplugin", 0) is None:
                del sys.modules["mako.ext.pygmentplugin"]
    from mako.template import Template

    return Template


@functools.lru_cache(maxsize=1)
def _template():
    Template = mako_template_class()
    return Template(filename=str(Path(__file__).parent / "templates" / "module.c.mako"),
                    strict_undefined=True)


def render_module(module: ir.Module, entries: Sequence[EntryPoint], *, kernel: str,
                  signature: str) -> str:
    """The complete C source: the printed module, then its entry points."""
    return _template().render(kernel=comment_text(kernel), signature=comment_text(signature),
                              variants=[comment_text(e.symbol) for e in entries],
                              body=module_to_c(module), entries=list(entries))
