"""The tuning database: one sqlite file in the cache directory.

A row remembers, for a (kernel, signature, machine), which variant won and the
timings that made it win.  Later processes read the row and never re-time.  A
database that is not sqlite (damaged, truncated) is moved aside and recreated.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import platform
import sqlite3
import time
from pathlib import Path

from asp import config

__all__ = ["forget", "lookup", "machine_id", "remembered", "store"]

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
    model, threads = _cpu_model(), config.num_threads()
    text = f"{platform.machine()}|{model}|threads={threads}"
    return f"{model} x{threads} [{hashlib.sha256(text.encode()).hexdigest()[:8]}]"


def _path() -> Path:
    return config.cache_dir() / "tuning.sqlite"


def _connect() -> sqlite3.Connection:
    path = _path()
    for attempt in range(2):
        try:
            con = sqlite3.connect(str(path), timeout=30)
            con.execute(_SCHEMA)
            return con
        except sqlite3.DatabaseError:
            if attempt:
                raise
            os.replace(path, path.with_name(f"tuning.sqlite.damaged.{int(time.time())}"))
    raise AssertionError("unreachable")


def lookup(kernel: str, signature: str) -> tuple[str, dict] | None:
    """The remembered winner and its timings for this machine, or None."""
    try:
        with _connect() as con:
            row = con.execute(
                "SELECT variant, timings FROM winners WHERE kernel=? AND signature=? AND machine=?",
                (kernel, signature, machine_id())).fetchone()
    except sqlite3.Error:
        return None
    if row is None:
        return None
    try:
        return row[0], json.loads(row[1])
    except ValueError:
        return None


def store(kernel: str, signature: str, variant: str, timings: dict, mode: str) -> None:
    """Remember a winner (replacing an older one for the same key)."""
    with _connect() as con:
        con.execute(
            "INSERT OR REPLACE INTO winners VALUES (?, ?, ?, ?, ?, ?, ?)",
            (kernel, signature, machine_id(), variant, json.dumps(timings), mode, time.time()))


def remembered(kernel: str | None = None) -> list[dict]:
    """Every remembered winner, optionally only those whose kernel name contains ``kernel``."""
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
    with _connect() as con:
        if kernel:
            cur = con.execute("DELETE FROM winners WHERE instr(kernel, ?) > 0", (kernel,))
        else:
            cur = con.execute("DELETE FROM winners")
        return cur.rowcount
