"""Python source for generated kernels: one module per batch (or per group of a batch).

Kernels need their source on disk (``inspect.getsource``), so every batch is a
module file.  Many kernels share one compilation: the module holds one kernel
with a branch per generated kernel, chosen by an integer selector argument
``k``; each branch's locals carry its own prefix, so no two branches share a
variable (their types would be joined).
"""
from __future__ import annotations

from tests.fuzz.gen import EW, RD, Batch, Body
from tests.fuzz.iterate import IT, iterate_source

__all__ = ["elementwise_module", "singles_module", "stencil_module", "stencil_solo_module"]

_HEADER = ("import math\n\nimport numpy as np\n\n"
           "from specializers.elementwise import elementwise  # (helpers may be kernels)\n")


def _indent(lines: list[str], n: int) -> list[str]:
    return [" " * n + ln for ln in lines]


def singles_module(batch: Batch, which: list[int]) -> str:
    """Plain functions ``s_<i>(params)``, one per kernel, for typing each on its own."""
    names = ", ".join(n for n, _ in batch.params)
    out = [_HEADER]
    for i in which:
        out += batch.bodies[i].helper_lines(f"v{i}_")
        out.append(f"def s_{i}({names}):")
        out += _indent(batch.bodies[i].lines(f"v{i}_", stencil=False), 4)
        out.append("\n")
    return "\n".join(out)


def elementwise_module(batch: Batch, which: list[int]) -> tuple[str, dict[int, int]]:
    """``@elementwise def fuzz(k, params)`` (``@reduction(op)`` for a reduction batch):
    branch ``k == i`` runs kernel ``i``; the last kernel is the fall-through.  Returns
    the text and {line number: kernel}."""
    assert batch.specializer in (EW, RD)
    names = ", ".join(n for n, _ in batch.params)
    lines = [_HEADER + _decorator(batch)[0]]
    owner = _helpers(batch, which, lines)
    lines += ["", _decorator(batch)[1], f"def fuzz(k, {names}):"]
    for pos, i in enumerate(which):
        body = batch.bodies[i].lines(f"v{i}_", stencil=False)
        if pos < len(which) - 1:
            lines.append(f"    if k == {i}:")
            block = _indent(body, 8)
        else:
            block = _indent(body, 4)
        for ln in block:
            lines.append(ln)
            owner[_line_no(lines)] = i
    return "\n".join(lines) + "\n", owner


def stencil_module(batch: Batch, which: list[int]) -> tuple[str, dict[int, int]]:
    """``class Fuzz(StencilKernel)`` whose point loop branches on ``k`` to kernel ``k``."""
    names = ", ".join(n for n, _ in batch.params)
    lines = [_HEADER + "from specializers.stencil import StencilKernel\n"]
    owner = _helpers(batch, which, lines)
    lines += ["", "class Fuzz(StencilKernel):", f"    def kernel(self, k, {names}):",
              "        for x in out.interior_points():"]
    for pos, i in enumerate(which):
        lines.append(f"            {'if' if pos == 0 else 'elif'} k == {i}:")
        owner[_line_no(lines)] = i
        for ln in _indent(batch.bodies[i].lines(f"v{i}_", stencil=True), 16):
            lines.append(ln)
            owner[_line_no(lines)] = i
    return "\n".join(lines) + "\n", owner


def stencil_solo_module(batch: Batch, i: int) -> str:
    """Kernel ``i`` of a stencil batch alone, without the selector's branch: a body with
    no ``if`` gets every variant then (streaming stores, jammed rows), where the batch's
    branches keep it to ``static``."""
    names = ", ".join(n for n, _ in batch.params)
    lines = [_HEADER + "from specializers.stencil import StencilKernel\n",
             *batch.bodies[i].helper_lines(f"v{i}_"), "",
             "class Fuzz(StencilKernel):", f"    def kernel(self, k, {names}):",
             "        for x in out.interior_points():",
             *_indent(batch.bodies[i].lines(f"v{i}_", stencil=True), 12)]
    return "\n".join(lines) + "\n"


def _helpers(batch: Batch, which: list[int], lines: list[str]) -> dict[int, int]:
    """The kernels' helpers appended to ``lines`` (module level); {line number: kernel}
    for their lines, as for the kernels' own."""
    owner: dict[int, int] = {}
    for i in which:
        for ln in batch.bodies[i].helper_lines(f"v{i}_"):
            lines.append(ln)
            owner[_line_no(lines)] = i
    return owner


def _decorator(batch: Batch) -> tuple[str, str]:
    """(the import, the decorator line) of an elementwise or reduction batch."""
    if batch.specializer == RD:
        return ("from specializers.reduction import reduction\n",
                f"@reduction({batch.option('op')!r})")
    return "from specializers.elementwise import elementwise\n", "@elementwise"


def _line_no(lines: list[str]) -> int:
    """The 1-based line number of the last entry of ``lines`` once joined."""
    return sum(chunk.count("\n") + 1 for chunk in lines)


def kernel_source(batch: Batch, i: int) -> str:
    """Kernel ``i`` on its own, as a user would write it (for reports)."""
    if batch.specializer == IT:
        return iterate_source(batch, i, "K")
    names = ", ".join(n for n, _ in batch.params)
    body: Body = batch.bodies[i]
    if batch.specializer in (EW, RD):
        return "\n".join([*body.helper_lines(""), _decorator(batch)[1], f"def f({names}):",
                          *_indent(body.lines("", stencil=False), 4)])
    mode = batch.option("boundary", "interior")
    return "\n".join([*body.helper_lines(""), f"class K(StencilKernel):  # boundary={mode!r}",
                      f"    def kernel(self, {names}):",
                      "        for x in out.interior_points():",
                      *_indent(body.lines("", stencil=True), 12)])
