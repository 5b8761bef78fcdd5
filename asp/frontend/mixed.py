"""Values whose type depends on the path taken, as Python's do.

In Python a variable has the type of the value last assigned to it, and a ternary or
``max`` has the type of the operand it picks: after ``r = y * y`` on one path and
``r = 0`` on another, ``r << 2`` wraps at 16 bits when ``y`` is an ``int16`` array's
element and not when ``r`` is the Python int ``0``; ``max(2.0, a[i]) * b[i]`` rounds to
``float32`` or not depending on which operand won.  No single C type reproduces both,
and the differential fuzzer found each way a joined type goes wrong (a join widened
what Python wraps; a narrowing wrapped what Python keeps).

So a value that can have several types keeps them apart:

* a :class:`Mixed` *variable* has one C variable per type it can hold (its *members*)
  and a tag saying which holds its current value;
* a statement that reads one is translated once per member, each translation with the
  variable's type known (*pinned*), under a run-time ``if`` on the tag;
* a ternary (or ``min``/``max``, a ternary chain) whose operands differ in type splits
  the statement that holds it the same way, on its condition.

The statement translator (:meth:`asp.frontend.translator.ScalarTranslator.split`) does
the splitting: an expression that meets an unpinned choice raises :class:`Split`, and
the statement is translated again under each pin.  gcc's jump threading and loop
unswitching remove most of the tests the tags add.
"""
from __future__ import annotations

import ast
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from asp.ir.pyscalar import T

__all__ = ["MAX_MEMBERS", "MAX_SPLITS", "Mixed", "Split", "as_ternaries", "local_vars",
           "member_name", "tag_name", "with_member"]

#: The most types one variable may take on different paths, and the most choices one
#: statement may split on (2**MAX_SPLITS translations at most): beyond them a kernel is
#: refused (and runs as Python) rather than compiled into an explosion of copies.
MAX_MEMBERS = 4
MAX_SPLITS = 4


@dataclass(frozen=True)
class Mixed:
    """The type of a variable that holds values of several types (``members``, in the
    order they were first assigned)."""

    members: tuple[T, ...]

    def __str__(self) -> str:
        return " or ".join(f"{'Python ' if t.weak else ''}{t.ctype}" for t in self.members)


def with_member(old: T | Mixed | None, t: T) -> T | Mixed:
    """The type of a variable of type ``old`` once it is also assigned a ``t``."""
    if old is None or old == t:
        return t
    if isinstance(old, Mixed):
        return old if t in old.members else Mixed(old.members + (t,))
    return Mixed((old, t))


def member_name(base: str, i: int) -> str:
    """The C variable holding member ``i`` of the mixed variable whose C name is ``base``."""
    return f"{base}__m{i}"


def tag_name(base: str) -> str:
    """The C variable saying which member holds the current value."""
    return f"{base}__k"


def local_vars(env: Mapping[str, T | Mixed], cname: Callable[[str], str]) \
        -> list[tuple[str, str]]:
    """``(C name, C type)`` of every local the variables of ``env`` need (``cname`` gives
    a variable's C name), sorted."""
    out = []
    for name, t in env.items():
        base = cname(name)
        if isinstance(t, Mixed):
            out += [(member_name(base, i), m.ctype) for i, m in enumerate(t.members)]
            out.append((tag_name(base), "int"))
        else:
            out.append((base, t.ctype))
    return sorted(out)


class Split(Exception):
    """Raised by an expression that met an unpinned choice: ``key`` is the variable's name
    (a ``str``) or the ``ast`` node (a ternary) whose pin decides it."""

    def __init__(self, key: str | ast.AST):
        super().__init__(key)
        self.key = key


def as_ternaries(node: ast.AST, kind: str = "") -> ast.AST:
    """What Python computes for ``node``, spelled with ternaries (and pairs of compares),
    each of which picks one operand and so has that operand's type:

    * ``max(a, b, c)`` (``kind`` ``"max"``, or ``"min"``): ``c if c > m else m`` with ``m``
      the ``b if b > a else a`` before it (CPython's ``max`` keeps the first of equals);
    * ``a and b and c``: ``(b and c) if a else a``; ``a or b``: ``a if a else b``;
    * ``a < b <= c``: ``(a < b) and (b <= c)`` (whose pairs may differ in type).

    A translator builds each once per node: a split statement is translated again, and
    its pins are kept by node.
    """
    def at(new: ast.AST) -> ast.AST:
        return ast.copy_location(new, node)

    if isinstance(node, ast.Call):
        op = ast.Lt if kind == "min" else ast.Gt
        best = node.args[0]
        for v in node.args[1:]:
            best = at(ast.IfExp(at(ast.Compare(v, [op()], [best])), v, best))
        return best
    if isinstance(node, ast.Compare):
        return at(ast.BoolOp(ast.And(), [
            at(ast.Compare(a, [op], [b])) for a, op, b in
            zip((node.left, *node.comparators), node.ops, node.comparators)]))
    first, *rest = node.values
    if not rest:
        return first
    others = as_ternaries(at(ast.BoolOp(node.op, rest))) if len(rest) > 1 else rest[0]
    if isinstance(node.op, ast.And):
        return at(ast.IfExp(first, others, first))
    return at(ast.IfExp(first, first, others))
