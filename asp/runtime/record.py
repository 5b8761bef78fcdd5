"""Specialization records: what a warm process needs to skip the whole pipeline.

After a signature is built, its record is written to ``specs/<key>.json`` in
the cache: for each variant the library key and entry symbol, the argument
guards, the error table, and which variants failed their correctness check.
The key hashes the kernel's code digest, the signature, the compiler identity,
asp's version and a fingerprint of the code generator's own source, so a
changed kernel, compiler, flag or specializer never reuses one.  A
new process with a warm cache then goes from call to result with no parsing,
no code generation and no template engine: it reads one small JSON file and
loads one shared object.  A record that is unreadable or whose library is gone
is ignored (the caller rebuilds and rewrites it).
"""
from __future__ import annotations

import builtins
import functools
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import numpy as np

from asp import config
from asp.errors import SpecializationError
from asp.jit.cache import load_library
from asp.jit.toolchain import compiler
from asp.jit.trust import cache_subdir, write_atomic
from asp.runtime.abi import ArgSpec

__all__ = ["generator_fingerprint", "load_record", "record_key", "save_record"]


def generator_fingerprint(module: str) -> str:
    """sha256 of the code that generates C: the asp core and the package of ``module``,
    and the settings that change the generated source (:func:`asp.config.codegen_settings`).

    A record made by other code-generating sources must never be reused, even
    under the same version number (an editable install, a patched specializer).
    """
    settings = config.codegen_settings()
    source = _source_fingerprint(module)
    return hashlib.sha256(f"{source}|{settings}".encode()).hexdigest() if settings else source


@functools.cache
def _source_fingerprint(module: str) -> str:
    """The generating code: the source, C and template files of asp, and of ``module``'s
    package what generates code: the Python modules ``module`` imports from its package
    (directly or through each other, at any depth of the code), and every template and C
    file.  A module of the package the specializer never imports (its Dask support, the
    user-facing kernel class) is not its generator: editing it must not re-plan and
    re-tune every kernel.  Directories that hold no source are skipped: ``__pycache__``,
    hidden ones, and the cache directory if it lives inside a package (its thousands of
    generated .c files used to be hashed, and changed every key at every build)."""
    import asp

    try:
        cache = Path(os.path.realpath(config.cache_dir()))
    except (OSError, ValueError):
        cache = None
    asp_root = Path(asp.__file__).parent.resolve()
    files = {p: asp_root for p in _source_files(asp_root, cache, (".py", ".mako", ".c", ".h"))}
    mod = sys.modules.get(module)
    if mod is not None and getattr(mod, "__file__", None):
        root = Path(mod.__file__).parent.resolve()
        if root != asp_root:
            files.update({p: root for p in _source_files(root, cache, (".mako", ".c", ".h"))})
            files.update({p: root for p in _imported(Path(mod.__file__).resolve(), module, root)})
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(str(p.relative_to(files[p])).encode())
        try:
            h.update(p.read_bytes())
        except OSError:
            pass
    return h.hexdigest()


def _source_files(root: Path, cache: Path | None, suffixes: tuple[str, ...]) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"
                       and (cache is None or (here / d).resolve() != cache)]
        out += [here / f for f in filenames if os.path.splitext(f)[1] in suffixes]
    return out


#: Import statements, read as text (parsing every module cost tens of milliseconds on the
#: first call of each process): ``from BASE import NAMES`` (parenthesized or not) or
#: ``import NAMES``, at any indentation (imports inside functions count).
_IMPORT = re.compile(r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[^\n]*)"
                     r"|import[ \t]+([^\n]+))", re.M)


def _names(text: str) -> list[str]:
    """The imported names of an import statement's list (``a as b, c``, parenthesized,
    with comments)."""
    text = re.sub(r"#[^\n]*", "", text).strip().strip("()")
    return [n.split()[0] for n in text.replace("\n", " ").split(",") if n.strip()]


def _imported(start: Path, name: str, root: Path) -> set[Path]:
    """``start`` and the modules under ``root`` it imports, transitively (every import
    statement, in functions too; a package's ``__init__`` only when a name is imported
    from it that is no submodule)."""
    # The package's dotted name, from the module's: its parent packages are the folders
    # above it (a module's name maps to a path: no import machinery, which costs tens of
    # milliseconds on the first call of every new process).
    depth = len(start.relative_to(root).parts) - 1
    package = ".".join(name.split(".")[: len(name.split(".")) - 1 - depth]) \
        if start.name != "__init__.py" else name

    known: dict[str, Path | None] = {}

    def resolve(mod: str) -> Path | None:
        # (paths under the resolved root, not resolved each: a module's imports name the
        # same few modules many times, and each realpath is a system call per folder)
        if mod in known:
            return known[mod]
        found = None
        if mod == package or mod.startswith(package + "."):
            rel = mod[len(package):].lstrip(".").split(".") if mod != package else []
            base = os.path.join(root, *rel)
            for candidate in ((base + ".py") if rel else None,
                              os.path.join(base, "__init__.py")):
                if candidate is not None and os.path.isfile(candidate):
                    found = Path(candidate)
                    break
        known[mod] = found
        return found

    seen: set[Path] = set()
    todo = [(start, name)]
    while todo:
        path, mod = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        here = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for m in _IMPORT.finditer(text):
            found: list[tuple[Path | None, str]] = []
            if m.group(1) is not None:  # from BASE import NAMES
                base = m.group(1)
                dots = len(base) - len(base.lstrip("."))
                if dots:
                    parts = here.split(".")
                    parent = ".".join(parts[: len(parts) - dots + 1])
                    base = f"{parent}.{base[dots:]}" if base[dots:] else parent
                for alias in _names(m.group(2)):  # a submodule, else a name BASE defines
                    sub = f"{base}.{alias}"
                    there = resolve(sub)
                    found.append((there, sub) if there is not None else (resolve(base), base))
            else:  # import A.B, C
                found = [(resolve(n), n) for n in _names(m.group(3))]
            # The packages a dotted name passes through are not followed: a package's
            # __init__ re-exports its user-facing API, which generates no code.
            todo += [(p, n) for p, n in found if p is not None and p not in seen]
    return seen


def record_key(kernel: str, digest: str, signature: str, generator: str = "") -> str:
    from asp import __version__

    h = hashlib.sha256()
    for part in (kernel, digest, signature, compiler().identity(), __version__, generator):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _path(key: str) -> Path:
    # CompileError if the cache is not safely this user's: the caller falls back
    return cache_subdir("specs") / f"{key}.json"


def _spec_to_json(s: ArgSpec) -> dict:
    return {"kind": s.kind, "dtype": None if s.dtype is None else np.dtype(s.dtype).str,
            "ndim": s.ndim, "write": s.write, "alloc": s.alloc, "noalias": s.noalias,
            "group": s.group, "shape": None if s.shape is None else list(s.shape),
            "scalar": s.scalar, "scratch": s.scratch}


def _spec_from_json(d: dict) -> ArgSpec:
    return ArgSpec(kind=d["kind"], dtype=None if d["dtype"] is None else np.dtype(d["dtype"]),
                   ndim=d["ndim"], write=d["write"], alloc=d["alloc"], noalias=d["noalias"],
                   group=d["group"], shape=None if d["shape"] is None else tuple(d["shape"]),
                   scalar=d["scalar"], scratch=d.get("scratch", False))


def save_record(key: str, *, variants: dict[str, tuple[str, str]], specs, ret: int,
                errors, excluded: dict[str, str], repeatable: bool = False) -> None:
    """Write the record; ``variants`` maps name -> (library key, entry symbol);
    ``repeatable``: the plan's (:attr:`asp.runtime.Plan.repeatable`)."""
    errs = [[e.__name__, msg] for e, msg in errors]
    try:
        for name, _ in errs:  # only builtin and asp.errors types can be named in a record
            _exception_type(name)
    except ValueError:
        return
    data = {"variants": variants, "specs": [_spec_to_json(s) for s in specs], "ret": ret,
            "errors": errs, "excluded": excluded, "repeatable": bool(repeatable)}
    try:
        write_atomic(_path(key), json.dumps(data).encode())
    except (OSError, SpecializationError):
        pass  # a read-only cache only costs the next process a rebuild


def _exception_type(name: str) -> type[Exception]:
    """A kernel error's exception type by name: a builtin one, or one of asp.errors
    (``UnrepresentableValue``: a record of a stencil or a reduction names it)."""
    import asp.errors

    found = getattr(builtins, name, None) or getattr(asp.errors, name, None)
    if not (isinstance(found, type) and issubclass(found, Exception)):
        raise ValueError(f"unknown kernel error type {name!r}")
    return found


def load_record(key: str):
    """``(variants, specs, ret, errors, excluded, libraries, repeatable)`` or None."""
    try:
        data = json.loads(_path(key).read_text())
        specs = tuple(_spec_from_json(d) for d in data["specs"])
        errors = tuple((_exception_type(name), msg) for name, msg in data["errors"])
        variants = {name: (lib, sym) for name, (lib, sym) in data["variants"].items()}
        ret, excluded = int(data["ret"]), dict(data["excluded"])
        repeatable = data.get("repeatable") is True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    libs = {}
    for lib_key, _ in variants.values():
        if lib_key not in libs:
            lib = load_library(lib_key)
            if lib is None:
                return None
            libs[lib_key] = lib
    return variants, specs, ret, errors, excluded, libs, repeatable
