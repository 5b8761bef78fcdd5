"""The front end: a kernel's tree with true file and line numbers, and clear refusals."""
from __future__ import annotations

import ast
import functools
import textwrap

import pytest

from asp.errors import FrontendError, SpecializationError
from asp.frontend import get_source, reject

HERE = __file__


def _line_of(marker: str) -> int:
    """The 1-based line of this file that holds ``marker`` (written once, in a comment)."""
    with open(HERE) as f:
        lines = [i for i, text in enumerate(f, 1) if text.rstrip().endswith(f"# {marker}")]
    assert len(lines) == 1, marker
    return lines[0]


def plain(x):  # L-plain
    y = x + 1  # L-plain-body
    return y


def _decorator(fn):
    @functools.wraps(fn)
    def wrapper(*args):
        return fn(*args)
    return wrapper


@_decorator
@functools.cache
def decorated(x):  # L-decorated
    return x * 2  # L-decorated-body


class Holder:
    def method(self, x):  # L-method
        return x - 1  # L-method-body

    @staticmethod
    def static(x):  # L-static
        return x

    class Inner:
        def deep(self, x):  # L-deep
            if x:
                return x  # L-deep-body
            return 0


def make_nested(k):
    def nested(x):  # L-nested
        return x + k  # L-nested-body
    return nested


if True:
    def indented(x):  # L-indented
        return (x  # L-indented-body
                + 1)


def test_plain_function_has_true_line_numbers():
    src = get_source(plain)
    assert isinstance(src.func, ast.FunctionDef)
    assert src.func.name == "plain"
    assert src.filename == HERE
    assert src.func.lineno == _line_of("L-plain")
    assert src.func.body[0].lineno == _line_of("L-plain-body")
    assert src.location(src.func.body[0]) == f"{HERE}:{_line_of('L-plain-body')}"
    assert src.qualname == "plain"


def test_decorated_function_unwraps_and_keeps_def_line():
    src = get_source(decorated)
    assert src.func.name == "decorated"
    assert src.func.lineno == _line_of("L-decorated")
    assert src.func.body[0].lineno == _line_of("L-decorated-body")
    # The decorators are part of the source text, and lie above the def.
    assert src.firstlineno < src.func.lineno
    assert "@_decorator" in src.text


def test_methods_bound_unbound_static_and_nested_classes():
    h = Holder()
    for fn in (Holder.method, h.method):
        src = get_source(fn)
        assert src.func.name == "method"
        assert src.func.lineno == _line_of("L-method")
        assert src.func.body[0].lineno == _line_of("L-method-body")
        assert src.qualname == "Holder.method"
    assert get_source(Holder.static).func.lineno == _line_of("L-static")
    deep = get_source(Holder.Inner().deep)
    assert deep.func.lineno == _line_of("L-deep")
    assert deep.func.body[0].body[0].lineno == _line_of("L-deep-body")
    assert deep.qualname == "Holder.Inner.deep"


def test_nested_and_indented_defs():
    src = get_source(make_nested(3))
    assert src.func.name == "nested"
    assert src.func.lineno == _line_of("L-nested")
    assert src.func.body[0].lineno == _line_of("L-nested-body")
    assert not src.text.startswith(" ")  # dedented so it parses
    ind = get_source(indented)
    assert ind.func.lineno == _line_of("L-indented")
    assert ind.func.body[0].lineno == _line_of("L-indented-body")


def test_every_node_line_is_within_the_function():
    src = get_source(Holder.Inner.deep)
    lines = {n.lineno for n in ast.walk(src.func) if hasattr(n, "lineno")}
    assert min(lines) == _line_of("L-deep")
    assert max(lines) <= _line_of("L-deep") + 3


def test_digest_is_stable_and_depends_on_the_text():
    assert get_source(plain).digest == get_source(plain).digest
    assert get_source(plain).digest != get_source(indented).digest
    assert len(get_source(plain).digest) == 64


def test_error_names_file_line_and_kernel():
    src = get_source(plain)
    node = src.func.body[0]
    err = src.error(node, "no such thing")
    assert isinstance(err, FrontendError) and isinstance(err, SpecializationError)
    assert err.location == f"{HERE}:{_line_of('L-plain-body')}"
    assert err.kernel == "plain"
    text = str(err)
    assert text.startswith(f"{HERE}:{_line_of('L-plain-body')}: no such thing")
    assert "[front end" in text
    with pytest.raises(FrontendError, match="no such thing"):
        reject(src, node, "no such thing")


def test_lambda_is_refused_clearly():
    square = lambda x: x * x  # noqa: E731  # L-lambda
    with pytest.raises(FrontendError) as info:
        get_source(square)
    err = info.value
    assert "lambda" in str(err) and "def" in str(err)
    assert err.location == f"{HERE}:{_line_of('L-lambda')}"
    assert err.stage == "front end"


def test_exec_defined_code_is_refused_clearly():
    ns: dict = {}
    exec(textwrap.dedent("""
        def from_exec(x):
            return x + 1
    """), ns)
    with pytest.raises(FrontendError) as info:
        get_source(ns["from_exec"])
    msg = str(info.value)
    assert "source" in msg and "not available" in msg
    assert "<string>" in msg
    assert info.value.kernel == "from_exec"


def test_compiled_code_with_a_fake_filename_is_refused():
    code = compile("def ghost(x):\n    return x\n", "/nonexistent/ghost.py", "exec")
    ns: dict = {}
    exec(code, ns)
    with pytest.raises(FrontendError, match="not available"):
        get_source(ns["ghost"])


@pytest.mark.parametrize("obj", [len, 42, "text", functools.partial(plain, 1)])
def test_non_functions_are_refused(obj):
    with pytest.raises(FrontendError, match="not a Python function"):
        get_source(obj)


def _busy_parses(parse, threads: int = 4, rounds: int = 40) -> list[str]:
    """``parse`` of a long module from several threads at once, with garbage whose
    finalizers run Python code (a collection inside one thread's parse then lets
    another thread run) and threads switched as often as can be: the errors seen."""
    import gc
    import sys
    import threading
    from pathlib import Path

    import asp.runtime.dispatch

    text = Path(asp.runtime.dispatch.__file__).read_text()
    errors: list[str] = []

    class Cycle:
        def __del__(self):
            sum(range(10))

    def work():
        for _ in range(rounds):
            try:
                parse(text)
            except SystemError as exc:
                errors.append(str(exc))
            for _ in range(30):
                a, b = Cycle(), Cycle()
                a.other, b.other = b, a

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    finally:
        sys.setswitchinterval(interval)
        gc.collect()
    return errors


def test_kernels_parse_from_several_threads_at_once():
    """CPython 3.11's ast.parse shares a depth counter between threads: parses that
    interleave (a Dask worker's task thread and asp's builder thread) failed with
    'AST constructor recursion depth mismatch' (a killed-worker test did).  asp's parses
    take a lock, so they never interleave."""
    import sys

    from asp.frontend.source import parse_module

    if sys.version_info[:2] == (3, 11):  # the Python asp is built and tested with
        assert _busy_parses(ast.parse), "the race no longer shows: the lock may go"
    assert _busy_parses(parse_module) == []


def test_a_parse_that_collides_with_another_library_is_retried(monkeypatch):
    """A parse outside asp's lock can still move the counter under asp's: that error is
    retried (a few times); any other SystemError is not."""
    from asp.frontend import source

    real, calls = ast.parse, []

    def flaky(text, filename="<unknown>", fail=("mismatch",) * 2):
        calls.append(text)
        if len(calls) <= len(fail):
            raise SystemError(f"AST constructor recursion depth {fail[len(calls) - 1]} "
                              "(before=3, after=5)")
        return real(text, filename=filename)

    monkeypatch.setattr(source.ast, "parse", flaky)
    assert isinstance(source.parse_module("x = 1"), ast.Module) and len(calls) == 3
    calls.clear()
    monkeypatch.setattr(source.ast, "parse", functools.partial(
        flaky, fail=("mismatch",) * source.PARSE_ATTEMPTS))
    with pytest.raises(SystemError, match="mismatch"):
        source.parse_module("x = 1")
    assert len(calls) == source.PARSE_ATTEMPTS
    calls.clear()
    monkeypatch.setattr(source.ast, "parse", functools.partial(flaky, fail=("other",)))
    with pytest.raises(SystemError, match="other"):
        source.parse_module("x = 1")
    assert len(calls) == 1


_TRICKY = '''
import functools


def deco(*a, **k):
    return lambda f: f


@deco(
    1,
2)
def after_a_decorator_over_lines(x):
    return x


def a_string_at_column_zero(x):
    s = """first
second line at column zero
def not_a_def():
"""
    return s + \\
x


def brackets(x):
    y = (x +
1)
    return y


def one_line(x): return x  # and a comment
# a comment at column zero
def after_one_line(x):

    # a blank line and a comment before the body goes on

    return x


class Holder:
    @staticmethod
    def method(x):
        def inner(y):
            return y
        return inner(x)

    @functools.cache
    def cached(self):
        return 1
    x = 1
'''


def _functions(module):
    import inspect
    import types

    out = []
    for obj in vars(module).values():
        for cand in (obj, *vars(obj).values()) if isinstance(obj, type) else (obj,):
            cand = getattr(cand, "__func__", cand)
            cand = inspect.unwrap(cand) if callable(cand) else cand
            if isinstance(cand, types.FunctionType) and cand.__module__ == module.__name__ \
                    and cand.__name__ != "<lambda>":
                out.append(cand)
    return out


def test_source_text_agrees_with_inspect_everywhere(tmp_path, monkeypatch):
    """``source_text`` (no tokenizer) gives what ``inspect.getsourcelines`` gives, for the
    layouts that end a block early to a line scan (strings, brackets and continuations at
    column zero, one-line defs, comments and blank lines, decorators over several lines)
    and for every function and method of asp and the specializers."""
    import importlib
    import inspect
    import pkgutil

    import asp
    import specializers
    from asp.frontend import source_text

    (tmp_path / "tricky_layouts.py").write_text(_TRICKY)
    monkeypatch.syspath_prepend(str(tmp_path))
    tricky = importlib.import_module("tricky_layouts")
    modules = [tricky]
    for pkg in (asp, specializers):
        for info in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if info.name.endswith("__main__"):  # runs the command line
                continue
            try:
                modules.append(importlib.import_module(info.name))
            except ImportError:  # an optional dependency (dask) may be missing
                continue
    fns = [f for m in modules for f in _functions(m)]
    names = {f.__name__ for f in _functions(tricky)}
    assert {"after_a_decorator_over_lines", "a_string_at_column_zero", "brackets",
            "one_line", "after_one_line", "method", "cached"} <= names
    compared = 0
    for fn in fns:
        try:
            lines, first = inspect.getsourcelines(fn)
        except OSError:  # generated code (a dataclass's __init__): no source either way
            with pytest.raises(OSError):
                source_text(fn)
            continue
        assert source_text(fn) == ("".join(lines), first), fn.__qualname__
        compared += 1
    assert compared > 300, compared


def test_source_text_is_not_fooled_by_an_edited_file(tmp_path, monkeypatch):
    """A file edited after import: ``get_source`` reads what is on disk now (as inspect
    does, through linecache's check), and a line that is no ``def`` any more is not
    taken for one (the inspect fallback decides)."""
    import importlib

    from asp.frontend import source_text

    path = tmp_path / "edited_kernel.py"
    path.write_text("def k(x):\n    return x + 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    mod = importlib.import_module("edited_kernel")
    assert source_text(mod.k) == ("def k(x):\n    return x + 1\n", 1)
    with pytest.raises(TypeError, match="fn: expected a Python function, not int"):
        source_text(3)
    path.write_text("def k(x):\n    return x + 2\n")
    import os
    os.utime(path, (1, 1))  # another mtime for linecache's check
    assert source_text(mod.k)[0] == "def k(x):\n    return x + 2\n"
    assert get_source(mod.k).text == "def k(x):\n    return x + 2\n"
