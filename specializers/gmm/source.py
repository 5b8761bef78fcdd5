"""Where GMM's C comes from: ``templates/em.c.mako``, one ``<%def>`` rendered at a time.

The template holds no complete translation unit: the preamble (macros, types, the
vectorised ``exp``), one def per helper body and one per kernel body.
:func:`render_part` renders one def; :func:`helper_functions` declares the helpers
as IR functions (so passes and ``ASP_DUMP_IR`` see them) around their rendered
bodies, in the order C needs them.  :func:`template_digest` keys the warm-start
records, so a changed template never reuses code rendered from the old one.
"""
from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

from asp.codegen.template import render, template
from asp.errors import SpecializationError
from asp.ir import platform as ir

__all__ = ["TEMPLATE", "c_params", "helper_functions", "render_part", "template_digest"]

TEMPLATE = Path(__file__).with_name("templates") / "em.c.mako"


def template_digest() -> str:
    """sha256 of the template's text (of :data:`TEMPLATE` as it is bound now)."""
    return _digest(TEMPLATE)


@functools.lru_cache(maxsize=8)
def _digest(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:  # rendering will say so; a record key must not raise
        return f"unreadable: {exc}"


def render_part(part: str, *, kernel: str, **context) -> str:
    """One ``<%def>`` of the template rendered with ``context``; any failure (a broken
    or missing template, an undefined name) is a :class:`SpecializationError` of the
    stage 'rendering', so the call falls back."""
    try:
        tmpl = template(TEMPLATE).get_def(part)
    except Exception as exc:  # noqa: BLE001 - whatever Mako raises compiling the file
        raise SpecializationError(f"rendering the template failed: {type(exc).__name__}: "
                                  f"{exc}", kernel=kernel, stage="rendering") from exc
    return render(tmpl, kernel=kernel, **context)


def c_params(text: str) -> tuple[ir.Param, ...]:
    """``'const double *restrict x, int nt'`` as IR parameters."""
    out = []
    for decl in text.split(","):
        words = decl.replace("*", " * ").split()
        base = [w for w in words[:-1] if w not in ("const", "restrict", "*")]
        out.append(ir.Param(words[-1], " ".join(base), pointer="*" in words,
                            const="const" in words, restrict="restrict" in words))
    return tuple(out)


# (template def, name, return type, parameters, inline): the helpers every kernel may call.
_HELPERS = (
    ("h_slice_doubles", "slice_doubles", "size_t", "size_t n", True),
    ("h_alloc_slices", "alloc_slices", "double *", "int nt, size_t per", False),
    ("h_quad", "quad", "double", "const double *restrict x, const double *restrict mu, "
     "const double *restrict P, double *restrict d, double *restrict y", True),
    ("h_normalize", "normalize", "double", "double *restrict lp", True),
    ("h_accumulate", "accumulate", "void",
     "double *restrict st, double r, const double *restrict d", True),
    ("h_load_event", "load_event", "void",
     "const real_t *restrict X, int64_t e, double *restrict x", True),
    ("h_reduce_partials", "reduce_partials", "void",
     "const double *part, int nt, double *restrict stats, double *ll", False),
    ("h_vload", "vload", "vd", "const double *p", True),
    ("h_hsum", "hsum", "double", "vd a", True),
    ("h_vmax", "vmax", "vd", "vd a, vd b", True),
)
# The same per block size B of events.
_BLOCK_HELPERS = (
    ("h_load_block", "load_block_{B}", "void",
     "const real_t *restrict X, int64_t e0, int nb, double *restrict xt", True),
    # always inlined: a call per (block, component) would keep the sums out of registers
    ("h_quad_block", "quad_block_{B}", "__attribute__((always_inline)) void",
     "const double *restrict xt, double *restrict dt, const double *restrict m, "
     "const double *restrict Pk, double *restrict q", True),
)


def helper_functions(render_body: Callable[..., str],
                     blocks: Sequence[int]) -> tuple[ir.Function, ...]:
    """The helpers, and the block helpers of each of ``blocks``, as static IR functions
    whose bodies ``render_body(def, **extra)`` renders (``extra``: ``B``, the block)."""
    def function(part, name, ret, params, inline, **extra) -> ir.Function:
        body = ir.Block((ir.Verbatim(render_body(part, **extra), name),))
        return ir.Function(name, c_params(params), body, ret=ret, static=True, inline=inline)

    out = [function(*h) for h in _HELPERS]
    for b in blocks:
        out += [function(part, name.format(B=b), ret, params, inline, B=b)
                for part, name, ret, params, inline in _BLOCK_HELPERS]
    return tuple(out)
