"""The template style: kernels written as Mako templates, built and run by the core.

The paper names two ways to write a specializer: tree transformation (Python AST,
domain IR, platform IR, passes, printer) and templates (C text with holes, as the
original GMM specializer was written).  Both go through the same runtime: a
template-style specializer's :meth:`~asp.runtime.Specializer.plan` renders each
variant's body with :func:`render` and wraps it with :func:`template_function` into
an IR function whose parameters are the kernel ABI's (:func:`abi_params`: each
array as a named pointer and its extents, then scalars), so the core prints the
entry point, builds, caches, guards the arguments in C, checks every variant
against the Python, tunes and falls back exactly as for a generated kernel.

The rendered text is an :class:`~asp.ir.platform.Verbatim` statement: passes do
not look inside it, ``ASP_DUMP_IR=1`` prints it where it sits in the module.
Helpers the variants share go in ``Plan.helpers`` the same way; type definitions
and macros in ``Plan.preamble``.
"""
from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

from asp.codegen.entry import abi_params, mako_template_class
from asp.errors import SpecializationError
from asp.ir import platform as ir

Template = mako_template_class()

__all__ = ["render", "template", "template_function"]


@functools.lru_cache(maxsize=64)
def template(source: str | Path) -> Template:
    """A compiled Mako template from a file (a :class:`~pathlib.Path`) or from text.

    Undefined names raise when rendering (``strict_undefined``): a misspelt
    parameter is an error naming it, not an empty hole in the C."""
    if isinstance(source, Path):
        return Template(filename=str(source), strict_undefined=True)
    return Template(source, strict_undefined=True)


def render(source: str | Path | Template, *, kernel: str = "", **context) -> str:
    """The text of a template rendered with ``context``.

    Any failure (a template bug, a missing parameter) raises a
    :class:`~asp.errors.SpecializationError` naming the kernel and the stage, so the
    call falls back instead of failing in the user's program."""
    try:
        tmpl = source if isinstance(source, Template) else template(source)
        return tmpl.render(**context)
    except Exception as exc:  # noqa: BLE001 - whatever Mako raises
        raise SpecializationError(f"rendering the template failed: {type(exc).__name__}: "
                                  f"{exc}", kernel=kernel, stage="rendering") from exc


def template_function(name: str, names: Sequence[str], specs, body: str, *,
                      ret: str = "int", static: bool = False,
                      bound: Sequence[str] = ()) -> ir.Function:
    """An IR function ``name`` over arguments ``names`` (guards ``specs``, in ABI order:
    each array a ``restrict`` pointer, ``const`` unless written, then one ``int64_t``
    extent ``<name>_n<k>`` per dimension; floats ``double``; ints ``int64_t``) whose
    body is the C text ``body``.  A kernel returns 0, or the 1-based index of the
    error it met in ``Plan.errors``.  ``bound``: ``int64_t`` parameters after those, the
    constants of the variants that share the function (:attr:`asp.runtime.Variant.bound`)."""
    params = (*abi_params(names, specs), *(ir.Param(b, "int64_t") for b in bound))
    return ir.Function(name, params, ir.Block((ir.Verbatim(body, name),)),
                       ret=ret, static=static)
