"""Reading a kernel's Python source.

``get_source(fn)`` returns the ``ast.FunctionDef`` of a function or method
with line numbers that point into the real file (indentation removed,
decorators kept out of the way), plus a helper to raise a
:class:`~asp.errors.FrontendError` at any node's ``file:line``.
"""
from __future__ import annotations

import ast
import hashlib
import inspect
import linecache
import os
import textwrap
import threading
import types
from dataclasses import dataclass
from typing import NoReturn

from asp.errors import FrontendError, where

__all__ = ["KernelSource", "attach_source", "describe", "get_source", "parse_module", "reject",
           "code_digest", "shipped_source", "source_text"]


@dataclass(frozen=True)
class KernelSource:
    """A kernel's tree and where it came from."""

    func: ast.FunctionDef
    filename: str
    firstlineno: int
    text: str
    qualname: str

    @property
    def digest(self) -> str:
        """sha256 of the source text: part of every key derived from this kernel."""
        return hashlib.sha256(self.text.encode()).hexdigest()

    def location(self, node: ast.AST | None = None) -> str:
        line = getattr(node, "lineno", None) or self.firstlineno
        return where(self.filename, line) or "<unknown>"

    def error(self, node: ast.AST | None, message: str) -> FrontendError:
        return FrontendError(message, location=self.location(node), kernel=self.qualname)


def reject(src: KernelSource, node: ast.AST | None, message: str) -> NoReturn:
    """Raise a FrontendError at ``node``'s line."""
    raise src.error(node, message)


def get_source(fn) -> KernelSource:
    """Parse ``fn`` (a function, method or bound method) into a located tree."""
    if isinstance(fn, types.MethodType):
        fn = fn.__func__
    fn = inspect.unwrap(fn)
    if not isinstance(fn, types.FunctionType):
        raise FrontendError(f"{fn!r} is not a Python function")
    code = fn.__code__
    qualname = fn.__qualname__
    filename = code.co_filename
    shipped = shipped_source(fn)
    if shipped is not None:  # source shipped with a pickled kernel (a Dask worker, say)
        return _parse(shipped[0], filename, shipped[1], qualname)
    if fn.__name__ == "<lambda>":
        raise FrontendError("lambdas cannot be specialized; use a def",
                            location=where(filename, code.co_firstlineno), kernel=qualname)
    try:
        text, firstlineno = source_text(fn)
    except (OSError, TypeError):
        raise FrontendError("the source of this function is not available "
                            "(defined in a REPL or with exec?)",
                            location=where(filename, code.co_firstlineno),
                            kernel=qualname) from None
    return _parse(text, filename, firstlineno, qualname)


def source_text(fn) -> tuple[str, int]:
    """The text of function ``fn``'s definition (decorators included) and its first line
    number, as :func:`inspect.getsourcelines` gives them, without its tokenizer: the
    tokenizer's first use in a process compiles its regular expressions, 8 ms of a warm
    kernel's 20 ms first call.  The definition ends at the first line after its first
    that starts, no deeper indented than that one, a text that parses as a ``def`` (a cut
    inside a string, bracket or continued line does not parse).  OSError if there is no
    such text (then :func:`inspect.getsourcelines` decides)."""
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType):
        raise TypeError(f"fn: expected a Python function, not {type(fn).__name__}")
    filename = code.co_filename
    linecache.checkcache(filename)
    lines = linecache.getlines(filename, fn.__globals__)
    start = code.co_firstlineno - 1
    if 0 <= start < len(lines):
        depth = _indent(lines[start])
        for end in (*(j for j in range(start + 1, len(lines))
                      if lines[j].strip() and not lines[j].lstrip().startswith("#")
                      and _indent(lines[j]) <= depth), len(lines)):
            while end > start + 1 and (not lines[end - 1].strip()
                                       or lines[end - 1].lstrip().startswith("#")):
                end -= 1  # (trailing blank and comment lines are not the block's)
            text = "".join(lines[start:end])
            try:
                body = parse_module(textwrap.dedent(text), filename).body
            except SyntaxError:
                continue
            if len(body) == 1 and isinstance(body[0], ast.FunctionDef) \
                    and body[0].name == code.co_name:
                return text, start + 1
            break
    lines, firstlineno = inspect.getsourcelines(fn)
    return "".join(lines), firstlineno


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" \t"))


def attach_source(fn, text: str | None = None, firstlineno: int | None = None):
    """Record ``fn``'s source on the function itself (``__asp_source__``).

    A kernel pickled to another process or machine may arrive where its file
    does not exist; with the source attached, :func:`get_source` still works.
    Returns ``fn``.
    """
    if text is None:
        text, firstlineno = source_text(fn)
    fn.__asp_source__ = (text, firstlineno or fn.__code__.co_firstlineno,
                         code_digest(fn.__code__))
    return fn


def shipped_source(fn) -> tuple[str, int] | None:
    """The text and first line recorded on ``fn`` by :func:`attach_source`, if it is the
    text of ``fn``'s code now: a function whose ``__code__`` was replaced since has
    another text."""
    shipped = getattr(fn, "__asp_source__", None)
    if shipped is None or (len(shipped) > 2 and shipped[2] != code_digest(fn.__code__)):
        return None
    return shipped[0], shipped[1]


def code_digest(code: types.CodeType) -> str:
    """What a code object does (its bytecode, names and constants, nested code
    included; not its line numbers), stably across processes."""
    h = hashlib.sha256()
    stack = [code]
    while stack:
        co = stack.pop()
        stack += [c for c in co.co_consts if isinstance(c, types.CodeType)]
        h.update(co.co_code)
        h.update(repr((co.co_name, co.co_names, co.co_varnames, co.co_freevars,
                       co.co_argcount, co.co_kwonlyargcount, co.co_flags,
                       [_const(c) for c in co.co_consts if not isinstance(c, types.CodeType)]))
                 .encode())
    return h.hexdigest()[:16]


def _const(c) -> str:
    # (a set's order follows its strings' hashes, which differ from process to process)
    if isinstance(c, frozenset):
        return "frozenset" + repr(sorted(map(_const, c)))
    if isinstance(c, tuple):
        return "(" + ", ".join(map(_const, c)) + ")"
    return repr(c)


#: ``ast.parse`` is not safe across threads in CPython 3.11: the tree's conversion to
#: Python objects counts its depth in one per-interpreter counter, and a thread switch
#: inside it (a garbage collection running a finalizer, say) lets another thread's
#: parse move that counter, so one of them fails with ``SystemError: AST constructor
#: recursion depth mismatch`` (cpython gh-106905).  A Dask worker's task thread and
#: asp's builder thread both parse kernels: a killed-worker test failed this way.
#: asp's own parses take this lock; a collision with another library's parse is
#: retried.
_PARSE_LOCK = threading.RLock()
PARSE_ATTEMPTS = 3


def _after_fork() -> None:
    global _PARSE_LOCK
    _PARSE_LOCK = threading.RLock()  # a parent's thread that held it is not in the child


os.register_at_fork(after_in_child=_after_fork)


def parse_module(text: str, filename: str = "<unknown>") -> ast.Module:
    """``ast.parse(text)``, safe to call from several threads at once (see
    :data:`_PARSE_LOCK`)."""
    for _ in range(PARSE_ATTEMPTS - 1):
        with _PARSE_LOCK:
            try:
                return ast.parse(text, filename=filename)
            except SystemError as exc:
                if "recursion depth mismatch" not in str(exc):
                    raise
    with _PARSE_LOCK:  # the last attempt: its error is the caller's
        return ast.parse(text, filename=filename)


def _parse(raw: str, filename: str, firstlineno: int, qualname: str) -> KernelSource:
    text = textwrap.dedent(raw)
    try:
        module = parse_module(text, filename)
    except SyntaxError as exc:
        raise FrontendError(f"cannot parse the source: {exc.msg}",
                            location=where(filename, firstlineno),
                            kernel=qualname) from None
    func = next((n for n in module.body
                 if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None)
    if func is None or isinstance(func, ast.AsyncFunctionDef):
        raise FrontendError("expected a plain 'def' function",
                            location=where(filename, firstlineno), kernel=qualname)
    ast.increment_lineno(module, firstlineno - 1)
    return KernelSource(func=func, filename=filename, firstlineno=firstlineno, text=text,
                        qualname=qualname)


_DESCRIBE = {"While": "'while' loops", "Lambda": "lambdas", "ListComp": "list comprehensions",
             "List": "lists", "Dict": "dicts", "Subscript": "indexing", "Try": "'try'",
             "With": "'with'", "Global": "'global'", "Nonlocal": "'nonlocal'",
             "FunctionDef": "nested functions", "Tuple": "tuples", "JoinedStr": "f-strings",
             "Yield": "'yield'", "Await": "'await'", "Raise": "'raise'", "Assert": "'assert'",
             "Delete": "'del'", "Import": "'import'", "ImportFrom": "'import'",
             "Return": "'return'", "Break": "'break'", "Continue": "'continue'",
             "Match": "'match'", "TryStar": "'try'", "AsyncWith": "'async with'",
             "AsyncFor": "'async for'", "SetComp": "set comprehensions",
             "DictComp": "dict comprehensions", "GeneratorExp": "generator expressions",
             "Set": "sets", "Starred": "'*' unpacking", "NamedExpr": "':=' assignments"}


def describe(node: ast.AST) -> str:
    """How a message names a construct (``'while' loops``)."""
    return _DESCRIBE.get(type(node).__name__, f"'{type(node).__name__}'")
