"""The user's own functions a kernel calls, compiled with it.

Scientists factor code into functions: ``return weight(x) * y`` where ``weight`` is a
plain ``def`` of the user's.  A call of such a function (one :func:`is_helper` accepts:
written in Python, not a ``math``, NumPy or builtin function the core knows) is
translated like the kernel itself, once per distinct tuple of argument types, into a
C function the kernel's code calls (``static inline``: gcc inlines it where that pays),
before its callers.  Python's meaning is kept: arguments bind by position, numeric
defaults fill the rest, the function's names resolve in its own module and closure, and
its result has the type Python gives it (a Python float returned stays weak).  Refused,
so that the kernel runs as Python and says why: keyword arguments, a call through a
module attribute (``mod.weight(x)``: import it by name), recursion, and anything a kernel
itself may not contain.

A helper is part of the kernel's specification, so :func:`asp.frontend.names.global_reads`
follows it: its source text and numeric defaults are in the kernel's cache and record
keys, and its module-level names are guarded as the kernel's own are (rebinding
``weight``, or a constant it reads, specializes again).

::

    helpers = Helpers()           # one per kernel translation (translate() makes it)
    tr.helpers = helpers          # a ScalarTranslator then compiles calls of helpers
    ...
    helpers.functions()           # the ScalarFunctions, callees first
"""
from __future__ import annotations

import ast
import functools
import inspect
import os
import re
import sysconfig
import types

from asp.errors import SpecializationError
from asp.frontend.calls import callable_kind
from asp.ir import platform as ir
from asp.ir.types import dtype_of

__all__ = ["Helpers", "helper_function", "is_helper", "passed"]


def is_helper(fn) -> bool:
    """Whether ``fn`` is a function of the user's that a kernel's call compiles: a plain
    Python function the core does not already know (``math.sqrt`` is a libm call), not
    one of Python's library or of an installed package (NumPy's Python functions are
    written for arrays, not numbers: a call of one is refused by name, as before)."""
    return isinstance(fn, types.FunctionType) and callable_kind(fn)[0] is None \
        and not fn.__code__.co_filename.startswith(_library_dirs())


def helper_function(value):
    """The Python function a kernel's call of ``value`` compiles with the kernel: ``value``
    itself if it is a helper (:func:`is_helper`), the scalar function of a kernel that
    applies one element by element (its ``__asp_scalar__``: an ``@elementwise`` function
    called from another kernel), else None."""
    if is_helper(value):
        return value
    scalar = getattr(value, "__asp_scalar__", None)
    return scalar if is_helper(scalar) else None


@functools.cache
def _library_dirs() -> tuple[str, ...]:
    """Python's library and the installed packages' directories (as given and resolved)."""
    paths = sysconfig.get_paths()
    dirs = {os.path.join(f(paths[k]), "") for k in ("stdlib", "platstdlib", "purelib", "platlib")
            for f in (str, os.path.realpath)}
    return tuple(sorted(dirs))


class Helpers:
    """The helpers one kernel translation met, each translated once per argument types;
    :meth:`functions` lists them in an order C compiles (a callee before its callers)."""

    def __init__(self):
        self._done: dict[tuple, object] = {}  # (function, argument types) -> ScalarFunction
        self._busy: list[tuple] = []          # translations under way (recursion)
        self._order: list = []
        self._names = 0  # C names handed out (a helper's callees are named inside it)

    def functions(self) -> tuple:
        """The translated helpers (:class:`~asp.frontend.scalar.ScalarFunction`), each
        after the helpers it calls."""
        return tuple(self._order)

    def used_by(self, body) -> tuple:
        """The helpers ``body`` (a translated IR tree) calls, directly or through others,
        callees first: a translation that settled over several rounds may have met
        argument types it no longer has."""
        keep = {n.func for n in body.walk() if isinstance(n, ir.Call)}
        for f in reversed(self._order):  # callers come after their callees
            if f.name in keep:
                keep.update(n.func for n in f.body.walk() if isinstance(n, ir.Call))
        return tuple(f for f in self._order if f.name in keep)

    def call(self, tr, node: ast.Call, fn):
        """The IR of ``node``, a call of helper ``fn``, in translator ``tr``: ``(expr,
        type)``."""
        name = ast.unparse(node.func)
        if not isinstance(node.func, ast.Name):
            raise tr.err(node, f"call to function '{name}' through an attribute is not "
                               f"supported in {tr.kind}; import it by name (from "
                               f"{fn.__module__} import {fn.__name__})")
        code = fn.__code__
        if code.co_flags & (inspect.CO_VARARGS | inspect.CO_VARKEYWORDS) \
                or code.co_kwonlyargcount:
            raise tr.err(node, f"function '{name}' takes *args, **kwargs or keyword-only "
                               f"parameters: not supported in {tr.kind}")
        params = code.co_varnames[:code.co_argcount]
        given = list(node.args)
        if any(isinstance(a, ast.Starred) for a in given) or len(given) > len(params):
            raise tr.err(node, f"function '{name}' takes {len(params)} positional "
                               f"arguments; the call passes {len(given)}")
        defaults = fn.__defaults__ or ()
        missing = len(params) - len(given)
        if missing > len(defaults):
            raise tr.err(node, f"function '{name}' is called without argument "
                               f"'{params[len(given)]}'")
        for value in defaults[len(defaults) - missing:]:
            if type(value) not in (bool, int, float):  # (a NumPy scalar is not weak)
                raise tr.err(node, f"function '{name}' has a default that is not a Python "
                                   f"number ({value!r}): pass the argument")
            given.append(ast.copy_location(ast.Constant(value), node))
        args = [tr.expr(a) for a in given]
        sf = self._translate(tr, node, fn, dict(zip(params, (t for _, t in args))))
        kinds = set(sf.returns)
        # Python returns each path's own object: the caller computes on its type.  One C
        # type for them all is right only where they cannot differ in what follows: a
        # float64 and a Python float in a kernel without float32 values.
        if (len(kinds) > 1 or any(t.either for t in kinds)) and not (
                tr.one_double and all(t.ctype == "double" for t in kinds)):
            raise tr.err(node, f"function '{name}' returns values of different types on "
                               f"different paths ({', '.join(sorted(map(_named, kinds)))}), "
                               f"which the code using its result would follow apart (an "
                               f"int8 wraps where a Python int does not; a float32 meets a "
                               f"Python float and a float64 apart): return one type")
        return sf.call(tuple(e for e, _ in args)), sf.ret

    def _translate(self, tr, node, fn, param_types: dict):
        from asp.frontend.scalar import translate  # (it imports the translator)
        from asp.frontend.source import get_source

        key = (fn, tuple(param_types.items()))
        if key in self._done:
            return self._done[key]
        if any(k[0] is fn for k in self._busy):
            raise tr.err(node, f"function '{fn.__name__}' calls itself (recursion is not "
                               f"supported in {tr.kind})")
        self._busy.append(key)
        self._names += 1
        try:
            try:
                src = get_source(fn)
            except SpecializationError as exc:  # a lambda, no source: say where it is called
                raise tr.err(node, f"call to function '{ast.unparse(node.func)}': "
                                   f"{exc.message}") from None
            ident = re.sub(r"\W", "_", fn.__name__)
            sf = translate(src, fn, param_types,
                           name=f"asp_fn{self._names}_{ident}",
                           kind=f"function '{fn.__name__}' (called by {tr.kind})",
                           helpers=self)
        finally:
            self._busy.pop()
        self._done[key] = sf
        self._order.append(sf)
        return sf


def _named(t) -> str:
    if t.either:
        return "a float64 or a Python float"
    if t.weak:
        return {"int64_t": "a Python int", "double": "a Python float"}.get(t.ctype, "a bool")
    return str(dtype_of(t.ctype))


def passed(sf, passes) -> tuple:
    """The helpers ``sf`` calls (callees first), each through the domain ``passes`` its
    kernel went through (constant folding: C does not fold what rounds)."""
    from asp.passes import run_pipeline

    return tuple(run_pipeline(h, list(passes), title=f"{h.name}: domain passes")
                 for h in sf.helpers)
