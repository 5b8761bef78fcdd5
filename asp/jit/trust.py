"""The cache directory must be safely ours before asp loads code from it.

asp ``dlopen``\\ s shared objects from its cache directory, so whoever can write
there can make this process run their code.  Like ssh with a lax key file, a
cache directory (``ASP_CACHE_DIR`` or the default) that is group- or
world-writable, owned by another user, inside a world-writable directory
without the sticky bit, or whose subdirectories are symbolic links or fail the
same checks, is refused with a :class:`~asp.errors.CompileError`
that says which directory, what is wrong and how to fix it; kernels then run as
Python.

Inside a trusted directory asp still never follows a symbolic link where it
writes: files are created with ``O_EXCL`` under unpredictable names (which a
planted link cannot satisfy) and renamed into place (``rename`` replaces a link,
it never writes through one); files are read with ``O_NOFOLLOW``.
"""
from __future__ import annotations

import errno
import os
import shutil
import stat
import tempfile
from pathlib import Path

from asp import config
from asp.errors import CompileError

__all__ = [
    "SUBDIRS",
    "cache_root",
    "cache_subdir",
    "directory_problem",
    "environment_error",
    "open_lock",
    "read_nofollow",
    "remove_path",
    "write_atomic",
]

#: The cache's folders (``asp cache clear`` removes them): compiled objects, their entries,
#: sources and locks, specialization records, remembered generator fingerprints.
SUBDIRS = ("lib", "entries", "build", "locks", "specs", "fingerprints")

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_write = os.write  # (tests make it fail as a full disk would)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def directory_problem(path: Path, *, follow: bool = False) -> str | None:
    """Why ``path`` is not a directory only this user (or root) can change, and the fix; or None."""
    try:
        st = os.stat(path) if follow else os.lstat(path)
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"
    return _stat_problem(path, st)


def _stat_problem(path: Path, st: os.stat_result) -> str | None:
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link, and asp never follows links in its cache; remove it"
    if not stat.S_ISDIR(st.st_mode):
        return "is not a directory; remove it"
    me = os.geteuid()
    if st.st_uid not in (me, 0):  # root can run code as anyone anyway
        return (f"is owned by uid {st.st_uid}, not by you (uid {me}), so that user could make "
                f"this process run their code; use a directory of your own (set "
                f"ASP_CACHE_DIR) or run `chown {me} {path}`")
    lax = [who for who, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH))
           if st.st_mode & bit]
    if lax:
        return (f"is writable by {' and '.join(lax)} (mode {stat.S_IMODE(st.st_mode):04o}), so "
                f"another user could make this process run their code; fix it with "
                f"`chmod 700 {path}`")
    return None


def _refuse(path: Path, problem: str) -> CompileError:
    return CompileError(f"asp will not use the cache directory {path}: it {problem}")


def environment_error(exc: OSError, doing: str) -> CompileError:
    """An OS failure (full disk, read-only or missing directory...) as a clear CompileError."""
    why = exc.strerror or str(exc)
    where = f" ({exc.filename})" if exc.filename else ""
    hint = {
        errno.ENOSPC: "; free some space or set ASP_CACHE_DIR to another disk",
        errno.EDQUOT: "; free some space or set ASP_CACHE_DIR to another disk",
        errno.EFBIG: "; the file size limit (ulimit -f) is too small for a compiled kernel",
        errno.EROFS: "; set ASP_CACHE_DIR to a writable directory",
        errno.EACCES: "; set ASP_CACHE_DIR to a writable directory of your own",
        errno.EPERM: "; set ASP_CACHE_DIR to a writable directory of your own",
    }.get(exc.errno, "")
    return CompileError(f"cannot {doing}: {why}{where}{hint}")


def cache_root() -> Path:
    """The cache directory, created (mode 0700) if missing, resolved and checked.

    Raises :class:`~asp.errors.CompileError` if it cannot be created or is not
    safely this user's.  The path is resolved once, so a link swapped after the
    check cannot redirect later writes.
    """
    try:
        configured = config.cache_dir()  # which creates it if it can
        if not configured.exists():
            configured.mkdir(mode=0o700, parents=True)  # raises the reason it cannot
        root = Path(os.path.realpath(configured))
    except OSError as exc:
        raise environment_error(exc, "create the cache directory") from None
    problem = directory_problem(root, follow=True)
    if problem is not None:
        raise _refuse(root, problem)
    parent = _unsafe_ancestor(root)
    if parent is not None:
        raise _refuse(root, f"lies in {parent}, which anyone can write without the sticky "
                            "bit, so another user could replace it and make this process run "
                            f"their code; use a directory elsewhere (set ASP_CACHE_DIR) or run "
                            f"`chmod o-w {parent}`")
    return root


def _unsafe_ancestor(path: Path) -> Path | None:
    """An ancestor of ``path`` in which others could rename ``path`` away, or None.

    Like ``/tmp`` without its sticky bit.  (Group-writable ancestors are accepted:
    with per-user groups a home directory often is.)
    """
    for parent in path.parents:
        try:
            mode = os.stat(parent).st_mode
        except OSError:
            continue
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            return parent
    return None


def cache_subdir(name: str, root: Path | None = None) -> Path:
    """``root/name`` (the checked cache root by default), created 0700 and checked."""
    root = cache_root() if root is None else root
    path = root / name
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        try:
            os.mkdir(path, 0o700)
            st = os.lstat(path)
        except FileExistsError:
            st = os.lstat(path)
        except OSError as exc:
            raise environment_error(exc, f"create {path}") from None
    problem = _stat_problem(path, st)
    if problem is not None:
        raise _refuse(path, problem)
    return path


def read_nofollow(path: Path) -> bytes:
    """The bytes of a regular file at ``path``; OSError if it is a link or anything else."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a fresh temporary file and a rename.

    The temporary is created with ``O_EXCL`` under a random name in the same
    directory, so neither a planted link nor a failed write leaves anything at
    ``path`` but the old or the complete new file.  There is no ``fsync``: every
    reader of the cache checks what it reads (an object against the sha256 in its
    entry, entries, records and the compilers file by parsing them), so a file that a
    power loss left empty or torn is rebuilt, never used; and an ``fsync`` waits for
    every dirty page of the file system to reach the disk (ext4's ordered journal): one
    100-byte write took 0.5 s after a program had written 2.4 GB, in a cold first call
    that otherwise takes 0.15 s.  Errors of the disk (no space, the file size limit)
    surface at ``write``.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[_write(fd, view):]
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def open_lock(path: Path) -> int:
    """A descriptor of the lock file ``path`` for ``flock``, never through a link."""
    flags = os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC
    try:
        return os.open(path, flags, 0o600)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
    # A link where the lock belongs: drop the link itself (never its target) and retry.
    if path.is_symlink():
        path.unlink(missing_ok=True)
    return os.open(path, flags, 0o600)


def remove_path(path: Path) -> None:
    """Remove a file, a link (not its target) or a directory tree; missing is fine."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        shutil.rmtree(path)
    else:
        os.unlink(path)
