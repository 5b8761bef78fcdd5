"""The shape of the code base (issue 12): no import cycles among asp's and the
specializers' modules, no private name used across package lines, no module
over 450 lines.

Read from the source with ``ast`` (nothing is imported), so a violation is found
even in a module no other test imports.  Modules over the limit, and private
names already crossing package lines, when this was written are listed as known
(their owners are fixing them): the tests fail for any new one.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("asp", "specializers")
MAX_LINES = 450

#: Over MAX_LINES when this test was written (at HEAD or being edited); their owners are
#: shrinking them.  Any other module over the limit fails.
KNOWN_LONG: set[str] = set()  # none left: every module is under the limit

#: Private names imported across package lines when this test was written:
#: (importing module, the name).  Any other one fails.
KNOWN_PRIVATE = {
    ("asp.runtime.abi", "asp._native"),  # the core's C extension, wrapped by asp.runtime.abi
}


def _modules() -> dict[str, Path]:
    """Every module of the packages: dotted name -> file."""
    found = {}
    for top in PACKAGES:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _package(module: str) -> str:
    """The package a module belongs to (a package's ``__init__`` belongs to itself)."""
    if MODULES.get(module, Path()).name == "__init__.py":
        return module
    return module.rpartition(".")[0]


def _internal(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def _resolve(module: str, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from ... import`` (relative imports resolved)."""
    if not node.level:
        return node.module or ""
    base = _package(module).split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _runtime_imports(tree: ast.Module):
    """Import statements that run when the module is imported: at module level and in
    class bodies, not in functions, not under ``if TYPE_CHECKING:``."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        else:
            todo.extend(ast.iter_child_nodes(node))


def _targets(module: str, node) -> list[str]:
    """The internal modules an import statement imports."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name in MODULES]
    base = _resolve(module, node)
    out = []
    for a in node.names:
        sub = f"{base}.{a.name}"
        if sub in MODULES:
            out.append(sub)
        elif base in MODULES:
            out.append(base)
    return out


@functools.cache
def _tree(module: str) -> ast.Module:
    path = MODULES[module]
    return ast.parse(path.read_text(), str(path))


def import_graph() -> dict[str, set[str]]:
    """Module -> the internal modules it imports when it is imported."""
    return {m: {t for node in _runtime_imports(_tree(m)) for t in _targets(m, node)} - {m}
            for m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_uses(module: str, tree: ast.Module | None = None) -> set[str]:
    """Private names of other packages' modules that ``module`` imports or reads as a
    module attribute (``from m import _x``, ``import m`` then ``m._x``), anywhere in it
    (its own source, or ``tree``)."""
    tree = _tree(module) if tree is None else tree
    mine, found = _package(module), set()
    aliases: dict[str, str] = {}  # local name -> the internal module it is bound to

    def check(owner: str, name: str) -> None:
        # ``owner`` is the module (or package) that defines ``name``.
        if _private(name) and _package(owner) != mine and owner != mine:
            found.add(f"{owner}.{name}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if not _internal(a.name):
                    continue
                parts = a.name.split(".")
                for i in range(1, len(parts)):
                    check(".".join(parts[:i]), parts[i])
                if a.asname:
                    aliases[a.asname] = a.name
                else:
                    aliases[parts[0]] = parts[0]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(module, node)
            if not _internal(base):
                continue
            parts = base.split(".")
            for i in range(1, len(parts)):
                check(".".join(parts[:i]), parts[i])
            for a in node.names:
                check(base, a.name)
                if f"{base}.{a.name}" in MODULES:
                    aliases[a.asname or a.name] = f"{base}.{a.name}"
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        chain, value = [node.attr], node.value
        while isinstance(value, ast.Attribute):
            chain.append(value.attr)
            value = value.value
        if not (isinstance(value, ast.Name) and value.id in aliases):
            continue
        owner = aliases[value.id]
        for attr in reversed(chain):
            if f"{owner}.{attr}" in MODULES and not _private(attr):
                owner = f"{owner}.{attr}"
                continue
            check(owner, attr)
            break
    return found


# -- the tests ------------------------------------------------------------------------------
def test_the_scanner_sees_the_packages():
    assert "asp.runtime.dispatch" in MODULES and "specializers.stencil.kernel" in MODULES
    graph = import_graph()
    assert "specializers.stencil.kernel" in graph["specializers.stencil.dask.api"]
    assert "asp.runtime.abi" in graph["asp.runtime.dispatch"]
    # A function-level import is not an edge: the kernel hands dask inputs on lazily.
    assert not any(m.startswith("specializers.stencil.dask")
                   for m in graph["specializers.stencil.kernel"])


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles among module-level imports: " + "; ".join(
        " <-> ".join(c) for c in found)


def test_the_stencil_kernel_does_not_import_its_dask_code():
    graph = import_graph()
    reach, todo = set(), ["specializers.stencil.kernel"]
    while todo:
        for m in graph[todo.pop()] - reach:
            reach.add(m)
            todo.append(m)
    assert not {m for m in reach if m.startswith("specializers.stencil.dask")}


def test_the_core_never_imports_a_specializer():
    """ARCHITECTURE: a specializer imports the core's public API, never the reverse
    (not even inside a function)."""
    bad = []
    for m in MODULES:
        if m.split(".")[0] != "asp":
            continue
        for n in ast.walk(_tree(m)):
            if isinstance(n, ast.Import):
                names = [a.name for a in n.names]
            elif isinstance(n, ast.ImportFrom):
                names = [_resolve(m, n)]
            else:
                continue
            bad += [(m, x) for x in names if x.split(".")[0] == "specializers"]
    assert not bad, bad


def test_private_name_finder():
    assert _private("_x") and not _private("__file__") and not _private("x")
    src = ast.parse(
        "from asp.jit.cache import _a, load_library\n"
        "from asp.runtime.abi import _same_package\n"
        "from . import _relative_same_package\n"
        "import asp.jit.cache as c\n"
        "from asp.jit import toolchain\n"
        "import asp.jit.trust\n"
        "def f():\n"
        "    from specializers.stencil.kernel import _b\n"
        "    return c._c, c.__file__, toolchain._d, asp.jit.trust._e, c.public\n")
    assert private_uses("asp.runtime.dispatch", src) == {
        "asp.jit.cache._a", "specializers.stencil.kernel._b", "asp.jit.cache._c",
        "asp.jit.toolchain._d", "asp.jit.trust._e"}


def test_no_private_names_across_packages():
    found = {(m, name) for m in MODULES for name in private_uses(m)}
    new = found - KNOWN_PRIVATE
    assert not new, "private names used across package lines: " + "; ".join(
        f"{m} uses {n}" for m, n in sorted(new))


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines())


def test_no_new_module_over_the_limit():
    long = {str(p.relative_to(ROOT)): _lines(p) for p in MODULES.values()
            if _lines(p) > MAX_LINES}
    new = {p: n for p, n in long.items() if p not in KNOWN_LONG}
    assert not new, f"modules over {MAX_LINES} lines (split them by concern): {new}"

