"""The tuning database: one sqlite file in the cache directory.

A row remembers, for a (kernel, signature, machine), which variant won and the
timings that made it win.  Later processes read the row and never re-time.  A
database that is not sqlite (damaged, truncated) is moved aside and recreated.

A database another process holds locked is waited on for :data:`BUSY_TIMEOUT`
seconds and then left alone: a lookup finds nothing and a winner is not stored
this time, but a locked database is never taken for a damaged one.  Nothing is
read or written in a cache directory that is not safely this user's, nor
through a symbolic link (:mod:`asp.jit.trust`).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import platform
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from asp import config
from asp.errors import SpecializationError
from asp.jit.trust import cache_root

__all__ = ["BUSY_TIMEOUT", "forget", "lookup", "machine_id", "remembered", "retime", "store"]

# Seconds to wait for another process's lock: long enough for any writer (one row),
# short enough that a call never stalls for long on a database held by a stuck process.
BUSY_TIMEOUT = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS winners (
    kernel TEXT NOT NULL,
    signature TEXT NOT NULL,
    machine TEXT NOT NULL,
    variant TEXT NOT NULL,
    timings TEXT NOT NULL,
    mode TEXT NOT NULL,
    updated REAL NOT NULL,
    PRIMARY KEY (kernel, signature, machine)
)
"""


@functools.lru_cache(maxsize=1)
def _cpu_model() -> str:
    model = platform.machine()  # platform.processor() would start a subprocess
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return model


def machine_id() -> str:
    """A short, stable name for this machine's processor and the thread count in force.

    The thread count is read at each call (``OMP_NUM_THREADS`` may change within
    a process); only the processor model is cached.
    """
    from asp.jit.toolchain import cpu_features

    # (the features too: this VM's model name reads "AMD EPYC" on Zen 3 and on Zen 4)
    model, threads = _cpu_model(), config.num_threads()
    text = f"{platform.machine()}|{model}|{cpu_features()}|threads={threads}"
    return f"{model} x{threads} [{hashlib.sha256(text.encode()).hexdigest()[:8]}]"


def _path() -> Path:
    """The database file; CompileError if the cache is untrusted, OSError if it is a link."""
    root = cache_root()
    for name in ("tuning.sqlite", "tuning.sqlite-journal", "tuning.sqlite-wal"):
        if (root / name).is_symlink():  # sqlite would write through it
            raise OSError(f"{root / name} is a symbolic link; asp does not follow links in "
                          "its cache: remove it")
    return root / "tuning.sqlite"


def _damaged(exc: sqlite3.DatabaseError) -> bool:
    """A file that is not a database (or a corrupt one), not one that is merely busy."""
    # "database is locked" is an OperationalError, a subclass of DatabaseError
    code = getattr(exc, "sqlite_errorcode", None)  # Python >= 3.11
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    return type(exc) is sqlite3.DatabaseError


@contextlib.contextmanager
def _connect() -> Iterator[sqlite3.Connection]:
    """A connection in a transaction (committed on success), always closed."""
    path = _path()
    for attempt in range(2):
        con = sqlite3.connect(str(path), timeout=BUSY_TIMEOUT)
        try:
            con.execute(_SCHEMA)
            break
        except sqlite3.DatabaseError as exc:
            con.close()
            if attempt or not _damaged(exc):
                raise
            os.replace(path, path.with_name(f"tuning.sqlite.damaged.{int(time.time())}"))
    try:
        with con:
            yield con
    finally:
        con.close()


def lookup(kernel: str, signature: str) -> tuple[str, dict] | None:
    """The remembered winner and its timings for this machine, or None."""
    try:
        if not _path().exists():  # nothing remembered: creating it costs a cold call 30 ms
            return None
        with _connect() as con:
            row = con.execute(
                "SELECT variant, timings FROM winners WHERE kernel=? AND signature=? AND machine=?",
                (kernel, signature, machine_id())).fetchone()
    except (sqlite3.Error, OSError, SpecializationError):  # busy, unreadable or untrusted
        return None
    if row is None:
        return None
    try:
        return row[0], json.loads(row[1])
    except ValueError:
        return None


def store(kernel: str, signature: str, variant: str, timings: dict, mode: str) -> bool:
    """Remember a winner (replacing an older one for the same key); True if stored.

    A database still locked by another process after :data:`BUSY_TIMEOUT`
    seconds, a read-only or untrusted cache: the winner is not stored this time
    (False), and the next process simply tunes again.
    """
    try:
        with _connect() as con:
            con.execute(
                "INSERT OR REPLACE INTO winners VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kernel, signature, machine_id(), variant, json.dumps(timings), mode,
                 time.time()))
    except (sqlite3.OperationalError, OSError, SpecializationError):
        return False
    return True


def remembered(kernel: str | None = None) -> list[dict]:
    """Every remembered winner, optionally only those whose kernel name contains ``kernel``."""
    if not _path().exists():  # nothing remembered: reading creates no database
        return []
    with _connect() as con:
        rows = con.execute(
            "SELECT kernel, signature, machine, variant, timings, mode, updated FROM winners "
            "ORDER BY kernel, signature").fetchall()
    out = []
    for k, sig, mach, var, timings, mode, updated in rows:
        if kernel and kernel not in k:
            continue
        out.append({"kernel": k, "signature": sig, "machine": mach, "variant": var,
                    "timings": json.loads(timings), "mode": mode, "updated": updated})
    return out


def forget(kernel: str | None = None) -> int:
    """Drop remembered winners (all, or those of kernels whose name contains ``kernel``)."""
    if not _path().exists():
        return 0
    with _connect() as con:
        if kernel:
            cur = con.execute("DELETE FROM winners WHERE instr(kernel, ?) > 0", (kernel,))
        else:
            cur = con.execute("DELETE FROM winners")
        return cur.rowcount


def retime(kernel: str | None = None) -> int:
    """Mark remembered winners (all, or those of kernels whose name contains ``kernel``)
    for re-timing: the next process that calls such a kernel tunes it again, and its
    decision replaces the row.  Returns how many were marked."""
    n = 0
    if not _path().exists():
        return n
    with _connect() as con:
        rows = con.execute("SELECT kernel, signature, machine, timings FROM winners").fetchall()
        for k, sig, mach, timings in rows:
            if kernel and kernel not in k:
                continue
            try:
                t = json.loads(timings)
            except ValueError:
                t = {}
            t.setdefault("_decision", {})["provisional"] = True
            t["_decision"]["retime"] = True
            con.execute("UPDATE winners SET timings=? WHERE kernel=? AND signature=? "
                        "AND machine=?", (json.dumps(t), k, sig, mach))
            n += 1
    return n
