"""What of a kernel object its ``kernel()`` reads: the part of an instance that keys the
specializations its class shares.

Compiled kernels are shared by every instance of a class with the same options, so
that a new instance costs nothing (no planning, no tuning started again).  But an
instance attribute the kernel reads can change its result: in the compiled code
(``self.op(a, b)`` resolves ``op`` through the instance: ``min`` and ``max`` compile to
different C) and in the Python a fallback runs (``self.coef * u[x]``).  So instances
share a specialization only when the attributes the kernel reads are equal, and a
kernel whose reads cannot be bounded (it passes ``self`` on, calls one of its methods
or properties, writes an attribute, or its source is unknown) gets specializations
of its own per instance, run as Python on that very instance.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import numbers
import types

import numpy as np

from asp.errors import SpecializationError
from asp.frontend import get_source

__all__ = ["PER_INSTANCE", "describe", "read_key", "reads_of"]

#: ``read_key``'s answer when the instance must keep specializations of its own.
PER_INSTANCE = None
_ABSENT = ("<absent>",)  # an attribute that is not there: equal only to itself
# Per (class, kernel function): the attribute names the kernel reads, or None.
_READS: dict[tuple, tuple[str, ...] | None] = {}


def reads_of(cls: type, fn) -> tuple[str, ...] | None:
    """The names ``self.<name>`` that ``fn`` (``cls``'s ``kernel``) reads, sorted, or None
    when the kernel may read (or change) anything of the instance."""
    key = (cls, fn, getattr(fn, "__code__", None))  # (code replaced in place: read again)
    try:
        return _READS[key]
    except KeyError:
        pass
    names = _direct_reads(fn)
    if names is not None and _runs_code_on_the_instance(cls, names):
        names = None
    _READS[key] = names
    return names


def _direct_reads(fn) -> tuple[str, ...] | None:
    try:
        func = get_source(fn).func
    except SpecializationError:  # no source: the kernel runs as Python, reading anything
        return None
    if not func.args.args:
        return None
    me = func.args.args[0].arg
    names, bases, uses = set(), 0, 0
    for node in ast.walk(func):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == me:
            if not isinstance(node.ctx, ast.Load):
                return None  # the kernel changes its object: only that object will do
            names.add(node.attr)
            bases += 1
        elif isinstance(node, ast.Name) and node.id in (me, "super"):
            uses += 1
    if uses > bases:  # the object passed on, rebound, or super(): anything may be read
        return None
    return tuple(sorted(names))


def _runs_code_on_the_instance(cls: type, names) -> bool:
    """Whether reading one of ``names`` runs code that sees the instance (a method called
    with ``self``, a property, a custom ``__getattr__``): it may read anything."""
    for hook in ("__getattr__", "__getattribute__"):
        if getattr(cls, hook, None) not in (None, getattr(object, hook, None)):
            return True
    for name in names:
        try:
            attr = inspect.getattr_static(cls, name)
        except AttributeError:
            continue  # set on the instance (or missing): its value is keyed
        if isinstance(attr, staticmethod | classmethod):
            continue
        if hasattr(type(attr), "__get__"):  # a method, a property, another descriptor
            return True
    return False


def read_key(obj, names: tuple[str, ...] | None):
    """The values of the attributes ``names`` of ``obj`` as a hashable key (with their
    types: ``1`` and ``1.0`` differ in Python), or :data:`PER_INSTANCE` when the kernel
    reads anything or a value is unhashable (an array, a list)."""
    if names is None:
        return PER_INSTANCE
    values = []
    for name in names:
        try:
            v = getattr(obj, name)
        except AttributeError:
            v = _ABSENT
        values.append((name, type(v), _comparable(v)))
    key = tuple(values)
    try:
        hash(key)
    except TypeError:
        return PER_INSTANCE
    return key


def _comparable(v):
    """``v`` as a key compares it: a float or complex by its ``repr``, since ``0.0 == -0.0``
    (code compiled with one gives ``inf`` for ``1 / c`` where the other gives ``-inf``)
    and a NaN equals nothing, not even another NaN (a new key every call)."""
    if isinstance(v, float | complex | np.floating | np.complexfloating):
        return repr(v)
    return v


def describe(key) -> str | None:
    """A description of ``key`` that is the same in every process (it joins the on-disk
    record key), or None when some value has none (such code is not recorded)."""
    parts = []
    for name, t, v in key:
        text = _stable(v)
        if text is None:
            return None
        parts.append(f"{name}={t.__qualname__}:{text}")
    return hashlib.sha256("|".join(parts).encode()).hexdigest() if parts else ""


def _stable(v) -> str | None:
    if v is _ABSENT:
        return "<absent>"
    if v is None or isinstance(v, str | bytes | bool | numbers.Number):
        return f"{type(v).__qualname__}:{v!r}"
    if isinstance(v, tuple):
        inner = [_stable(x) for x in v]
        return None if None in inner else "(" + ",".join(inner) + ")"
    if isinstance(v, types.FunctionType | types.BuiltinFunctionType | type):
        return f"{getattr(v, '__module__', '?')}.{v.__qualname__}"
    return None
