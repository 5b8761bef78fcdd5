"""Kernels made from functions, sent to other processes (a ``multiprocessing`` pool, a
``ProcessPoolExecutor``, Dask workers).

A decorator such as ``@elementwise`` replaces a module's function with its own object, so
``pickle`` can no longer find the function by name (``it's not the same object as
mod.poly``), and the object holds compiled entries that cannot travel.  The object is
sent as :func:`reduce_function_object` says instead:

* **by name** where its module holds this very object under its qualified name and the
  module is not ``__main__``: the receiver imports the module, as it would for a plain
  function (and compiles, or loads from its cache);
* **by value** otherwise (a script's or a notebook's ``__main__``, a function made in a
  function): its code (``marshal``, the same Python at both ends), the module-level
  names it reads as they are now, its defaults, closure and source, from which the
  receiver makes the function again and specializes it (the source: it may have no
  such file).  What a kernel can read (numbers, modules, NumPy and math functions)
  pickles; the functions of the user's it calls travel by name where pickle finds them
  so, else by value as it does; anything else fails to pickle, naming it.
"""
from __future__ import annotations

import builtins
import hashlib
import importlib
import marshal
import pickle
import sys
import types
from collections.abc import Callable

from asp.frontend.helpers import is_helper
from asp.frontend.names import UNBOUND, global_reads
from asp.frontend.source import attach_source

__all__ = ["function_by_value", "reduce_function_object"]


def reduce_function_object(obj, fn: types.FunctionType, rebuild: Callable, *args):
    """What ``obj.__reduce__`` returns for ``obj``, which wraps the function ``fn`` and is
    made again by ``rebuild(fn, *args)``: see the module's docstring."""
    if _by_name(obj):
        return obj.__qualname__  # pickle stores a reference: (module, qualname)
    return _rebuild, (rebuild, function_by_value(fn), args)


def function_by_value(fn: types.FunctionType, _sending: frozenset = frozenset()) -> tuple:
    """``fn`` as picklable parts (:func:`_function` makes it again).  The functions of the
    user's it calls that pickle cannot find by name (a script's, a notebook's) go by
    value too, so that the receiver compiles them with it."""
    try:
        attach_source(fn)  # (kept on the function: a second send finds it there)
    except (OSError, TypeError):
        pass  # no source here either: the receiver runs it as Python, as this process does
    reads = global_reads(fn)
    names, modules = {}, {}  # (modules do not pickle: they are imported again)
    for ns, name, value in reads.guards:
        # (the reads of the helpers it calls are in their own modules, which they travel
        # with: only this function's own module-level names make its namespace)
        if ns is fn.__globals__ and value is not UNBOUND:
            if isinstance(value, types.ModuleType):
                modules[name] = value.__name__
            elif is_helper(value) and value not in _sending and not _by_name(value):
                names[name] = _ByValue(function_by_value(value, _sending | {fn}))
            else:
                names[name] = value
    # (an empty cell as (False,): the UNBOUND marker is not itself once unpickled)
    cells = tuple((True, c.cell_contents) if _filled(c) else (False,)
                  for c in fn.__closure__ or ())
    return (marshal.dumps(fn.__code__), fn.__module__, names, modules, fn.__name__,
            fn.__qualname__, fn.__defaults__, fn.__kwdefaults__, cells, dict(vars(fn)))


class _ByValue(tuple):
    """A helper function's parts, sent by value in a kernel's namespace."""

    __slots__ = ()

    def __reduce__(self):
        return _ByValue, (tuple(self),)


def _by_name(obj) -> bool:
    """Whether pickle finds ``obj`` again by its module and qualified name (not
    ``__main__``, and the module holds this very object there)."""
    module = sys.modules.get(getattr(obj, "__module__", None) or "")
    if module is None or module.__name__ == "__main__":
        return False
    found = module
    for part in obj.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is obj


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _function(code: bytes, module: str, names: dict, modules: dict, name: str, qualname: str,
              defaults, kwdefaults, cells: tuple, attrs: dict) -> types.FunctionType:
    namespace = {"__name__": module, "__builtins__": builtins,
                 **{k: _function(*v) if isinstance(v, _ByValue) else v
                    for k, v in names.items()},
                 **{k: importlib.import_module(m) for k, m in modules.items()}}
    closure = tuple(types.CellType(c[1]) if c[0] else types.CellType() for c in cells)
    fn = types.FunctionType(marshal.loads(code), namespace, name, defaults, closure or None)
    fn.__qualname__, fn.__kwdefaults__ = qualname, kwdefaults
    fn.__dict__.update(attrs)
    return fn


#: The objects made by value in this process, by what they were made from: a pool's
#: ``map(kernel, chunks)`` sends the kernel with every chunk, and each new object would
#: plan again (or load its record) before its first call.
_MADE: dict[str, object] = {}
_MADE_MAX = 64


def _rebuild(rebuild: Callable, parts: tuple, args: tuple):
    # Keyed by the bytes it travelled as (pickled again: 0.0 and -0.0 differ, a NaN is
    # itself, and a large array is whole, where its repr is a summary that two different
    # arrays can share).
    try:
        key = hashlib.sha256(pickle.dumps((rebuild, args, parts), protocol=4)).hexdigest()
    except Exception:  # noqa: BLE001 - cannot be pickled here: made anew, not kept
        return rebuild(_function(*parts), *args)
    made = _MADE.get(key)
    if made is None:
        made = rebuild(_function(*parts), *args)
        if len(_MADE) >= _MADE_MAX:
            _MADE.pop(next(iter(_MADE)), None)
        _MADE[key] = made
    return made
