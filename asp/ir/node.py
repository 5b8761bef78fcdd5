"""The IR node base class, and the one Visitor and one Transformer of asp.

Nodes are frozen dataclasses.  Each class declares ``child_fields``: the
fields that hold nodes or tuples of nodes; everything else is an attribute.
Visitors dispatch on the class name (``visit_For``), cached per class and
falling back along the MRO to ``generic_visit``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = ["Node", "Transformer", "Visitor"]


@dataclass(frozen=True)
class Node:
    """Base of every IR node of every level."""

    child_fields: ClassVar[tuple[str, ...]] = ()

    def children(self) -> Iterator[Node]:
        for name in self.child_fields:
            value = getattr(self, name)
            if isinstance(value, tuple):
                yield from (v for v in value if isinstance(v, Node))
            elif isinstance(value, Node):
                yield value

    def replace(self, **changes: Any) -> Node:
        return dataclasses.replace(self, **changes)

    def walk(self) -> Iterator[Node]:
        """This node and every node below it, depth first."""
        yield self
        for child in self.children():
            yield from child.walk()


class Visitor:
    """Walks a tree; override ``visit_<ClassName>``, call ``generic_visit`` to descend."""

    _dispatch: ClassVar[dict]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls._dispatch = {}

    def visit(self, node: Node, *args: Any, **kwargs: Any) -> Any:
        cls = type(node)
        try:
            name = type(self)._dispatch[cls]
        except (KeyError, AttributeError):
            name = self._lookup(cls)
        return getattr(self, name)(node, *args, **kwargs)

    def _lookup(self, cls: type) -> str:
        for klass in cls.__mro__:
            name = f"visit_{klass.__name__}"
            if hasattr(self, name):
                break
        else:
            name = "generic_visit"
        if "_dispatch" in type(self).__dict__:
            type(self)._dispatch[cls] = name
        return name

    def generic_visit(self, node: Node, *args: Any, **kwargs: Any) -> Any:
        for child in node.children():
            self.visit(child, *args, **kwargs)
        return None


class Transformer(Visitor):
    """Rebuilds a tree bottom-up; a ``visit_X`` returns the replacement node.

    Unchanged subtrees are returned as the same objects, so a pass that
    changes nothing returns its input.
    """

    def generic_visit(self, node: Node, *args: Any, **kwargs: Any) -> Node:
        changes = {}
        for name in node.child_fields:
            value = getattr(node, name)
            if isinstance(value, tuple):
                new = tuple(self.visit(v, *args, **kwargs) if isinstance(v, Node) else v
                            for v in value)
                new = tuple(_flatten(new))
                if len(new) != len(value) or any(a is not b for a, b in zip(new, value)):
                    changes[name] = new
            elif isinstance(value, Node):
                new = self.visit(value, *args, **kwargs)
                if new is not value:
                    changes[name] = new
        return dataclasses.replace(node, **changes) if changes else node


def _flatten(items):
    """A visit may return a tuple of nodes to splice into a parent's tuple field."""
    for item in items:
        if isinstance(item, tuple):
            yield from item
        elif item is not None:
            yield item
