"""A content-addressed cache of compiled kernels, on disk and in memory.

Layout under the cache directory (``ASP_CACHE_DIR`` or the user cache dir)::

    lib/<key>.so           the shared object, named by its key
    entries/<key>.json     what it is: kernel, source size, sha256 of the .so, times
    build/<key>/           the C source and the object as gcc wrote it
    locks/<key>.lock       a flock held while the key is built

The key is the sha256 of the C source, the compiler's identity (path, version,
flags) and asp's version, so a different compiler or flag never reuses a stale
object.  Building holds a per-key ``flock`` (released by the kernel if a
process dies), so concurrent processes wait for each other rather than race,
and a build killed half-way is simply redone.  Every
file is written to a temporary name and renamed into place; a truncated object
or an unreadable entry is detected on load (sha256 and ``dlopen``) and rebuilt.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from asp import config
from asp.errors import CompileError, LoadError
from asp.jit.toolchain import compiler

__all__ = ["Library", "build", "cache_entries", "clear_cache", "load_library", "source_key"]

_memory: dict[str, Library] = {}


@dataclass
class Library:
    """A loaded shared object and what it was built for."""

    key: str
    path: Path
    kernel: str
    cdll: ctypes.CDLL

    def address(self, symbol: str) -> int:
        """The address of an exported C function, for :class:`asp.runtime.Entry`."""
        try:
            fn = getattr(self.cdll, symbol)
        except AttributeError:
            raise LoadError(f"symbol {symbol!r} missing from {self.path.name}",
                            kernel=self.kernel) from None
        return ctypes.cast(fn, ctypes.c_void_p).value


def _version() -> str:
    from asp import __version__

    return __version__


def source_key(source: str) -> str:
    """The cache key of a C source under the current compiler and flags."""
    h = hashlib.sha256()
    for part in (source, compiler().identity(), _version()):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _dirs(root: Path) -> dict[str, Path]:
    dirs = {name: root / name for name in ("lib", "entries", "build", "locks")}
    for d in dirs.values():
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return dirs


@contextmanager
def _locked(lock_path: Path):
    with open(lock_path, "a+b") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _read_entry(path: Path) -> dict | None:
    try:
        entry = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not {"key", "sha256", "kernel"} <= entry.keys():
        return None
    return entry


def _try_load(key: str, so: Path, entry: dict | None) -> Library | None:
    """Load a cached object if it is intact, else None (the caller rebuilds)."""
    if entry is None or not so.is_file():
        return None
    try:
        if _sha256_file(so) != entry["sha256"]:
            return None
        cdll = ctypes.CDLL(str(so))
    except OSError:
        return None
    return Library(key=key, path=so, kernel=entry["kernel"], cdll=cdll)


def _discard(dirs: dict[str, Path], key: str) -> None:
    for p in (dirs["lib"] / f"{key}.so", dirs["entries"] / f"{key}.json"):
        p.unlink(missing_ok=True)
    shutil.rmtree(dirs["build"] / key, ignore_errors=True)


def _compile(dirs: dict[str, Path], key: str, source: str, name: str) -> Path:
    """gcc, through codepy's toolchain, on ``source`` in the key's build directory.

    Not ``codepy.jit.compile_from_string``: its own cache, a second one under ours,
    would first run the preprocessor over the source to hash its headers (a tenth
    of a cold build) and spin forever on a lock file left by a killed process.
    """
    from codepy import CompileError as CodepyCompileError

    build_dir = dirs["build"] / key
    build_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    # Under our flock nobody else builds this key: whatever is here is ours to replace.
    c_file, so_file = build_dir / f"{name}.c", build_dir / f"{name}.so"
    c_file.write_text(source)
    so_file.unlink(missing_ok=True)
    try:
        compiler().toolchain().build_extension(str(so_file), [str(c_file)])
    except CodepyCompileError as exc:
        raise CompileError(f"the C compiler rejected the generated code:\n{exc}") from None
    except OSError as exc:
        raise CompileError(f"the C compiler could not be run: {exc}") from None
    return so_file


def build(source: str, *, kernel: str, name: str = "asp_kernel") -> Library:
    """Compile ``source`` (plain C) or fetch it from the cache, and load it.

    ``kernel`` names what the object belongs to (shown by ``asp cache list``).
    Raises :class:`~asp.errors.CompileError` or :class:`~asp.errors.LoadError`.
    """
    key = source_key(source)
    lib = _memory.get(key)
    if lib is not None:
        return lib
    dirs = _dirs(config.cache_dir())
    so, entry_path = dirs["lib"] / f"{key}.so", dirs["entries"] / f"{key}.json"
    lib = _try_load(key, so, _read_entry(entry_path))
    if lib is None:
        with _locked(dirs["locks"] / f"{key}.lock"):
            lib = _try_load(key, so, _read_entry(entry_path))  # built while we waited?
            if lib is None:
                lib = _build_locked(dirs, key, source, kernel, name)
    _memory[key] = lib
    return lib


def _build_locked(dirs: dict[str, Path], key: str, source: str, kernel: str,
                  name: str) -> Library:
    so, entry_path = dirs["lib"] / f"{key}.so", dirs["entries"] / f"{key}.json"
    # Temporary files of this key left by a process killed between write and rename:
    # under the key's lock nobody else can be writing them.
    for leftover in (*dirs["lib"].glob(f".{key}.so.*.tmp"),
                     *dirs["entries"].glob(f".{key}.json.*.tmp")):
        leftover.unlink(missing_ok=True)
    for attempt in range(2):
        built = _compile(dirs, key, source, name)
        data = built.read_bytes()
        _write_atomic(so, data)
        entry = {
            "key": key,
            "kernel": kernel,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "source_chars": len(source),
            "created": time.time(),
            "compiler": compiler().identity(),
        }
        lib = _try_load(key, so, entry)
        if lib is not None:
            _write_atomic(entry_path, json.dumps(entry, indent=1).encode())
            return lib
        # The object gcc wrote cannot be loaded: drop everything for this key, once.
        _discard(dirs, key)
        dirs = _dirs(config.cache_dir())
    raise LoadError(f"the compiled object for {kernel} cannot be loaded", kernel=kernel)


def load_library(key: str) -> Library | None:
    """Load an already built object by key, or None if it is missing or damaged."""
    lib = _memory.get(key)
    if lib is not None:
        return lib
    dirs = _dirs(config.cache_dir())
    lib = _try_load(key, dirs["lib"] / f"{key}.so", _read_entry(dirs["entries"] / f"{key}.json"))
    if lib is not None:
        _memory[key] = lib
    return lib


def cache_entries() -> list[dict]:
    """Every intact entry of the disk cache, newest first (``asp cache list``)."""
    dirs = _dirs(config.cache_dir())
    out = []
    for p in dirs["entries"].glob("*.json"):
        entry = _read_entry(p)
        if entry is None:
            out.append({"key": p.stem, "kernel": "?", "damaged": True, "size": 0, "created": 0})
            continue
        so = dirs["lib"] / f"{p.stem}.so"
        entry["damaged"] = not so.is_file() or so.stat().st_size != entry.get("size")
        out.append(entry)
    return sorted(out, key=lambda e: e.get("created", 0), reverse=True)


def clear_cache() -> int:
    """Remove every compiled object and the tuning database; returns the count removed."""
    root = config.cache_dir()
    n = len(list((root / "entries").glob("*.json"))) if (root / "entries").is_dir() else 0
    for name in ("lib", "entries", "build", "locks", "specs"):
        shutil.rmtree(root / name, ignore_errors=True)
    for p in root.glob("tuning.sqlite*"):
        p.unlink(missing_ok=True)
    _memory.clear()
    return n
