"""The names a kernel reads from outside itself, resolved as Python resolves them.

A kernel's Python is its specification, so a name means what Python would
look up when the line runs: the function's closure cells first, then its
module's globals, then the builtins.  A front end that compiles a module-level
number as a constant, or a module-level ``math`` as the C library, has made
an *assumption* about a binding that the user may change at any time
(``module.K = 3.0``).  :func:`global_reads` records every such binding a
function's code can load; :class:`GlobalReads` says whether they all still
hold (one identity test each: cheap enough for every call) and describes them
stably, so code specialized for other values is cached under another key.

The function itself, and each function of the user's it calls (compiled with it), is
an assumption too: its ``__code__``, ``__defaults__`` and ``__kwdefaults__`` can be
replaced in place, which is how IPython's ``%autoreload`` brings an edited module's
functions, and its classes' methods, up to date.  Those three are guarded the same way
(the namespace is the function), and described by what they hold, so that a reload that
left a function as it was costs nothing.

::

    reads = global_reads(fn)
    ns = namespace(fn)             # closure > globals > builtins, for the front end
    ...
    if not reads.holds():          # someone rebound a name: specialize again
        ...
"""
from __future__ import annotations

import builtins
import dis
import hashlib
import marshal
import types
from collections import ChainMap
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["CODE_ATTRS", "UNBOUND", "GlobalReads", "global_reads", "namespace"]

#: What a function object holds that its code's meaning depends on and that can be
#: assigned in place (``__closure__`` and ``__globals__`` are read-only).
CODE_ATTRS = ("__code__", "__defaults__", "__kwdefaults__")


class _Unbound:
    """The value recorded for a global name the module did not define (Python then looks
    in the builtins, or raises NameError)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNBOUND"


UNBOUND = _Unbound()

_LOADS_GLOBAL = {"LOAD_GLOBAL", "LOAD_NAME"}
_LOADS_CELL = {"LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_CLOSURE"}


def _code_objects(code: types.CodeType):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # comprehensions, lambdas, nested defs
            yield from _code_objects(const)


def _describe(value) -> str:
    """A description of a bound value that is stable across processes (part of cache
    keys): numbers by type and value, modules and functions by name."""
    if value is UNBOUND:
        return "<unbound>"
    if isinstance(value, bool | int | float | complex | np.number | np.bool_):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, types.ModuleType):
        return f"module:{value.__name__}"
    name = getattr(value, "__qualname__", None)
    own = _helper(value)
    if own is not None:  # compiled with the kernel: its text and defaults are its meaning
        return f"function:{own.__module__}.{name}#{_source_digest(own)}{own.__defaults__!r}"
    if callable(value) and name is not None:
        return f"callable:{getattr(value, '__module__', '?')}.{name}"
    return f"object:{type(value).__module__}.{type(value).__qualname__}"


@dataclass(frozen=True)
class GlobalReads:
    """The bindings a function's code can load from outside itself, as they are now.

    ``guards`` holds ``(namespace, name, value)``: ``namespace`` is the module's
    globals dict (``value`` is :data:`UNBOUND` if the module lacks the name), a
    closure cell (``name`` is the free variable's name), or a function (``name`` one
    of :data:`CODE_ATTRS`).
    """

    guards: tuple[tuple[object, str, object], ...]

    def holds(self) -> bool:
        """Whether every name is still bound to the very object it was."""
        for ns, name, value in self.guards:
            if isinstance(ns, dict):
                if ns.get(name, UNBOUND) is not value:
                    return False
            elif isinstance(ns, types.FunctionType):
                if getattr(ns, name) is not value:
                    return False
            else:
                try:
                    now = ns.cell_contents
                except ValueError:  # an empty cell
                    now = UNBOUND
                if now is not value:
                    return False
        return True

    def describe(self) -> str:
        """One line per name: what it is bound to, stably (for cache and record keys)."""
        return "\n".join(f"{ns.__qualname__}.{name}={_describe_attr(value)}"
                         if isinstance(ns, types.FunctionType)
                         else f"{name}={_describe(value)}" for ns, name, value in self.guards)


def global_reads(fn) -> GlobalReads:
    """The module-level and closure names ``fn``'s code (and code nested in it) loads, and
    those of the user's functions it calls (:mod:`asp.frontend.helpers`), which are
    compiled with it: theirs are assumptions of the kernel's code too."""
    guards: dict[tuple[int, str], tuple] = {}
    _reads(getattr(fn, "__func__", fn), guards, set())
    found = sorted(guards.values(), key=lambda g: (not isinstance(g[0], dict), g[1]))
    return GlobalReads(tuple(found))


def _reads(fn, guards: dict, done: set) -> None:
    """Add ``fn``'s code and defaults and its reads to ``guards`` (by namespace and
    name), then its helpers'."""
    done.add(fn)
    for attr in CODE_ATTRS:
        guards[id(fn), attr] = (fn, attr, getattr(fn, attr))
    code = fn.__code__
    globals_ = fn.__globals__
    cells = dict(zip(code.co_freevars, fn.__closure__ or ()))
    for co in _code_objects(code):
        for ins in dis.get_instructions(co):
            name = ins.argval
            if not isinstance(name, str):
                continue
            if ins.opname in _LOADS_GLOBAL and (id(globals_), name) not in guards:
                guards[id(globals_), name] = (globals_, name, globals_.get(name, UNBOUND))
            elif ins.opname in _LOADS_CELL and name in cells \
                    and (id(cells[name]), name) not in guards:
                try:
                    value = cells[name].cell_contents
                except ValueError:
                    value = UNBOUND
                guards[id(cells[name]), name] = (cells[name], name, value)
    for _, _, value in list(guards.values()):
        own = _helper(value)
        if own is not None and own not in done:
            _reads(own, guards, done)


def _describe_attr(value) -> str:
    """A function's code by what it does (its bytecode, names and constants, not its
    line numbers), its defaults by value: stable across processes."""
    if isinstance(value, types.CodeType):
        from asp.frontend.source import code_digest

        return code_digest(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_describe(v)}" for k, v in value.items()) + "}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_describe(v) for v in value) + ")"
    return repr(value)


def _helper(value):
    """The function of the user's a call of ``value`` compiles, or None."""
    from asp.frontend.helpers import helper_function  # (it imports the calls table)

    return helper_function(value)


def _source_digest(fn) -> str:
    """A digest of what ``fn`` says: its source (the text shipped with it, else its
    file's), else its code object."""
    from asp.frontend.source import shipped_source, source_text

    shipped = shipped_source(fn)
    try:
        text = shipped[0] if shipped is not None else source_text(fn)[0]
    except (OSError, TypeError):  # no source: the kernel cannot compile the call anyway
        text = repr(marshal.dumps(fn.__code__))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def namespace(fn) -> Mapping[str, object]:
    """What a free name in ``fn`` means: its closure, then its module, then the builtins."""
    fn = getattr(fn, "__func__", fn)
    closure = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            closure[name] = cell.cell_contents
        except ValueError:
            pass
    return ChainMap(closure, fn.__globals__, vars(builtins))
