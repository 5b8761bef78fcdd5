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
and a build killed half-way is simply redone.  gcc works in a fresh private
directory; every file is written to a fresh temporary name and renamed into
place, and no symbolic link in the cache is ever written through
(:mod:`asp.jit.trust`); a truncated object or an unreadable entry is detected on
load (sha256 and ``dlopen``) and rebuilt.

Nothing is loaded from a cache directory that another user could write
(:func:`asp.jit.trust.cache_root`), and every failure of the environment (full
disk, file size limit, read-only or missing directory) is a
:class:`~asp.errors.CompileError`, so kernels fall back to Python.
"""
from __future__ import annotations

import ctypes
import fcntl
import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from asp.errors import CompileError, LoadError
from asp.jit.toolchain import compiler
from asp.jit.trust import (
    cache_root,
    cache_subdir,
    environment_error,
    open_lock,
    read_nofollow,
    remove_path,
    write_atomic,
)

__all__ = ["Library", "build", "cache_entries", "clear_cache", "load_library", "source_key"]

_memory: dict[str, Library] = {}

# gcc's own words when it could not write its output: the environment, not the code
_GCC_ENVIRONMENT = ("No space left on device", "File too large", "Read-only file system",
                    "Permission denied", "Disk quota exceeded")


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


def _dirs(root: Path | None = None) -> dict[str, Path]:
    """The checked cache subdirectories (CompileError if the cache is unusable)."""
    root = cache_root() if root is None else root
    return {name: cache_subdir(name, root) for name in ("lib", "entries", "build", "locks")}


@contextmanager
def _locked(lock_path: Path):
    fd = open_lock(lock_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _read_entry(path: Path) -> dict | None:
    try:
        entry = json.loads(read_nofollow(path))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or not {"key", "sha256", "kernel"} <= entry.keys():
        return None
    return entry


def _try_load(key: str, so: Path, entry: dict | None) -> Library | None:
    """Load a cached object if it is intact, else None (the caller rebuilds)."""
    if entry is None:
        return None
    try:
        data = read_nofollow(so)  # a link or anything but a regular file is not ours
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            return None
        cdll = ctypes.CDLL(str(so))
    except OSError:
        return None
    return Library(key=key, path=so, kernel=entry["kernel"], cdll=cdll)


def _discard(dirs: dict[str, Path], key: str) -> None:
    for p in (dirs["lib"] / f"{key}.so", dirs["entries"] / f"{key}.json"):
        remove_path(p)


def _compile(dirs: dict[str, Path], key: str, source: str, name: str) -> bytes:
    """gcc, through codepy's toolchain, on ``source``; returns the object's bytes.

    gcc works in a fresh private directory (``mkdtemp``), so nothing planted in
    the cache can redirect its output; a successful build is then kept as
    ``build/<key>/`` for inspection.  Not ``codepy.jit.compile_from_string``: its
    own cache, a second one under ours, would first run the preprocessor over the
    source to hash its headers (a tenth of a cold build) and spin forever on a
    lock file left by a killed process.
    """
    from codepy import CompileError as CodepyCompileError

    work = Path(tempfile.mkdtemp(prefix=f".{key}.", dir=dirs["build"]))
    try:
        c_file, so_file = work / f"{name}.c", work / f"{name}.so"
        write_atomic(c_file, source.encode())
        try:
            compiler().toolchain().build_extension(str(so_file), [str(c_file)])
        except CodepyCompileError as exc:
            text = str(exc)
            if any(s in text for s in _GCC_ENVIRONMENT):
                raise CompileError("the C compiler could not write its output in the cache "
                                   f"directory {dirs['build'].parent}:\n{text}") from None
            raise CompileError(f"the C compiler rejected the generated code:\n{text}") from None
        except OSError as exc:
            raise CompileError(f"the C compiler could not be run: {exc}") from None
        data = read_nofollow(so_file)
        final = dirs["build"] / key
        # Under the key's flock nobody else builds this key: whatever is there is ours
        # to replace (a link is removed, never followed).
        remove_path(final)
        os.rename(work, final)
        return data
    except BaseException:
        with suppress(OSError):  # never hide why the build failed
            remove_path(work)
        raise


def build(source: str, *, kernel: str, name: str = "asp_kernel") -> Library:
    """Compile ``source`` (plain C) or fetch it from the cache, and load it.

    ``kernel`` names what the object belongs to (shown by ``asp cache list``).
    Raises :class:`~asp.errors.CompileError` (also for an unusable cache
    directory, a full disk or any other failure of the environment) or
    :class:`~asp.errors.LoadError`.
    """
    try:
        return _build(source, kernel, name)
    except OSError as exc:
        raise environment_error(exc, f"build {kernel} in the cache").with_context(
            kernel=kernel) from None


def _build(source: str, kernel: str, name: str) -> Library:
    key = source_key(source)
    lib = _memory.get(key)
    if lib is not None:
        return lib
    dirs = _dirs()
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
                     *dirs["entries"].glob(f".{key}.json.*.tmp"),
                     *dirs["build"].glob(f".{key}.*")):
        remove_path(leftover)
    for attempt in range(2):
        data = _compile(dirs, key, source, name)
        entry = {
            "key": key,
            "kernel": kernel,
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "source_chars": len(source),
            "created": time.time(),
            "compiler": compiler().identity(),
        }
        try:
            write_atomic(so, data)
            lib = _try_load(key, so, entry)
            if lib is not None:
                write_atomic(entry_path, json.dumps(entry, indent=1).encode())
                return lib
        except BaseException:
            with suppress(OSError):  # an object without its entry would only be rebuilt
                _discard(dirs, key)
            raise
        # The object gcc wrote cannot be loaded: drop everything for this key, once.
        _discard(dirs, key)
        dirs = _dirs()
    raise LoadError(f"the compiled object for {kernel} cannot be loaded", kernel=kernel)


def load_library(key: str) -> Library | None:
    """Load an already built object by key, or None if it is missing or damaged.

    Raises :class:`~asp.errors.CompileError` if the cache directory is not
    safely this user's (nothing is loaded from it).
    """
    lib = _memory.get(key)
    if lib is not None:
        return lib
    dirs = _dirs()
    lib = _try_load(key, dirs["lib"] / f"{key}.so", _read_entry(dirs["entries"] / f"{key}.json"))
    if lib is not None:
        _memory[key] = lib
    return lib


def cache_entries() -> list[dict]:
    """Every intact entry of the disk cache, newest first (``asp cache list``)."""
    dirs = _dirs()
    out = []
    for p in dirs["entries"].glob("*.json"):
        entry = _read_entry(p)
        if entry is None:
            out.append({"key": p.stem, "kernel": "?", "damaged": True, "size": 0, "created": 0})
            continue
        so = dirs["lib"] / f"{p.stem}.so"
        entry["damaged"] = so.is_symlink() or not so.is_file() \
            or so.stat().st_size != entry.get("size")
        out.append(entry)
    return sorted(out, key=lambda e: e.get("created", 0), reverse=True)


def clear_cache() -> int:
    """Remove every compiled object and the tuning database; returns the count removed.

    Refuses (CompileError) a cache directory that is not safely this user's.
    """
    root = cache_root()
    entries = root / "entries"
    n = len(list(entries.glob("*.json"))) if entries.is_dir() and not entries.is_symlink() \
        else 0
    for name in ("lib", "entries", "build", "locks", "specs"):
        try:
            remove_path(root / name)  # a link is removed, never what it points to
        except OSError:
            pass
    for p in root.glob("tuning.sqlite*"):
        p.unlink(missing_ok=True)
    _memory.clear()
    return n
