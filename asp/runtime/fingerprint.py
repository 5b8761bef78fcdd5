"""The fingerprint of the code that generates C, and its memo on disk.

A specialization record (:mod:`asp.runtime.record`) is keyed on a sha256 of the code
that generated it: asp's own source, C and template files, and of the specializer's
package its templates, C files and the modules its code generation imports.  Hashing
them (about 80 files: listing the folders, reading and hashing the files, following the
imports) cost a new process 17-21 ms before its first result, two thirds of a warm
first call.

So the digest is remembered in the cache (``fingerprints/<key>.json``) with what it was
computed from: every file read and every folder listed, each with its size,
modification and status-change times (ns), inode and device.  A later process stats
those (about 0.3 ms) and reuses the digest only if every one is unchanged; an edit, a
new or removed file (its folder's times change), a file replaced by another or a
reinstall (a new inode, a new status-change time, which no tool can set back) computes
it again.  Files modified within :data:`RACY_SECONDS` of the computation are not
trusted to show a later edit in their times (a coarse file-system clock): the digest
is then not remembered.  A memo that is missing, unreadable or malformed is recomputed,
never trusted.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

from asp import config
from asp.errors import SpecializationError
from asp.jit.trust import cache_subdir, read_nofollow, write_atomic

__all__ = ["RACY_SECONDS", "source_fingerprint"]

#: A file modified this recently, when the digest is computed, keeps it from being
#: remembered (two seconds is the coarsest clock of a common file system, FAT's).
RACY_SECONDS = 3.0
_MEMO_FORMAT = 1


@functools.cache
def source_fingerprint(module: str) -> str:
    """The sha256 of the generating code for ``module``'s specializer: the source, C and
    template files of asp, and of ``module``'s package what generates code: the Python
    modules ``module`` imports from its package (directly or through each other, at any
    depth of the code), and every template and C file.  A module of the package the
    specializer never imports (its Dask support, the user-facing kernel class) is not its
    generator: editing it must not re-plan and re-tune every kernel.  Directories that
    hold no source are skipped: ``__pycache__``, hidden ones, and the cache directory if
    it lives inside a package (its thousands of generated .c files used to be hashed, and
    changed every key at every build).  Remembered on disk (see the module's doc)."""
    import asp

    try:
        cache = Path(os.path.realpath(config.cache_dir()))
    except (OSError, ValueError):
        cache = None
    asp_root = Path(asp.__file__).parent.resolve()
    mod = sys.modules.get(module)
    start = Path(mod.__file__).resolve() if mod is not None and getattr(
        mod, "__file__", None) else None
    memo = _memo(module, asp_root, start, cache)
    if memo is not None and (digest := _recall(memo)) is not None:
        return digest
    digest, read, listed = _compute(module, asp_root, start, cache)
    if memo is not None:
        _remember(memo, digest, read, listed)
    return digest


def _compute(module: str, asp_root: Path, start: Path | None, cache: Path | None):
    """The digest, the files it read (each stat'ed before it was read) and the folders
    listed: ``(digest, {path: stat}, {folder: stat})``."""
    listed: dict[Path, tuple] = {}
    files = {p: asp_root for p in _source_files(asp_root, cache, (".py", ".mako", ".c", ".h"),
                                                listed)}
    if start is not None:
        root = start.parent
        if root != asp_root:
            files.update({p: root for p in _source_files(root, cache, (".mako", ".c", ".h"),
                                                         listed)})
            files.update({p: root for p in _imported(start, module, root)})
    read: dict[Path, tuple] = {}
    h = hashlib.sha256()
    for p in sorted(files):
        h.update(str(p.relative_to(files[p])).encode())
        try:
            read[p] = _stat(p)
            h.update(p.read_bytes())
        except OSError:
            read[p] = None
    return h.hexdigest(), read, listed


def _stat(path: Path | str) -> tuple:
    """What a change to a file or folder changes: its size, modification and
    status-change times, inode and device."""
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _memo(module: str, asp_root: Path, start: Path | None, cache: Path | None) -> Path | None:
    """Where the digest for these roots is remembered, or None (no usable cache)."""
    key = hashlib.sha256(json.dumps([_MEMO_FORMAT, module, str(asp_root), str(start),
                                     str(cache)]).encode()).hexdigest()
    try:
        return cache_subdir("fingerprints") / f"{key}.json"
    except (OSError, SpecializationError):
        return None


def _recall(memo: Path) -> str | None:
    """The remembered digest, if every file and folder it was computed from is unchanged."""
    try:
        data = json.loads(read_nofollow(memo))
        for path, seen in (*data["read"], *data["listed"]):
            try:
                now = list(_stat(Path(path)))
            except OSError:
                now = None
            if now != seen:
                return None
        digest = data["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return digest if isinstance(digest, str) and len(digest) == 64 else None


def _remember(memo: Path, digest: str, read: dict, listed: dict) -> None:
    recent = time.time_ns() - int(RACY_SECONDS * 1e9)
    stats = [s for s in (*read.values(), *listed.values()) if s is not None]
    if any(s[1] >= recent or s[2] >= recent for s in stats):
        return  # a file or folder just changed: its times may not show the next edit
    data = {"digest": digest,
            "read": [[str(p), None if s is None else list(s)] for p, s in read.items()],
            "listed": [[str(p), list(s)] for p, s in listed.items()]}
    try:
        write_atomic(memo, json.dumps(data).encode())
    except OSError:
        pass  # a read-only cache: the next process computes it again


def _source_files(root: Path, cache: Path | None, suffixes: tuple[str, ...],
                  listed: dict[Path, tuple]) -> list[Path]:
    """The files under ``root`` with these suffixes; each folder listed goes in ``listed``
    with its stat (taken before it is listed)."""
    out = []
    for dirpath, dirnames, filenames in _walk(root, listed):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__pycache__"
                       and (cache is None or (here / d).resolve() != cache)]
        out += [here / f for f in filenames if os.path.splitext(f)[1] in suffixes]
    return out


def _walk(root: Path, listed: dict[Path, tuple]):
    """``os.walk(root)`` (links to folders listed, not followed), each folder stat'ed
    before it is listed."""
    todo = [str(root)]
    while todo:
        here = todo.pop()
        try:
            listed[Path(here)] = _stat(here)
            entries = list(os.scandir(here))
        except OSError:
            continue
        dirnames = sorted(e.name for e in entries if e.is_dir())
        filenames = sorted(e.name for e in entries if not e.is_dir())
        links = {e.name for e in entries if e.is_symlink()}
        yield here, dirnames, filenames
        todo += [os.path.join(here, d) for d in reversed(dirnames) if d not in links]


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


