"""The compile cache: keys, hits and misses, several processes, damaged entries, errors."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from asp import config
from asp.errors import AspFallbackWarning, CompileError
from asp.jit import build, cache, cache_entries, clear_cache, load_library
from asp.jit.cache import source_key

ROOT = Path(__file__).resolve().parents[1]


def _source(tag: str, value: int = 3) -> str:
    # A unique comment makes each test's kernel new to any cache.
    return textwrap.dedent(f"""\
        /* {tag} */
        #include <stdint.h>
        int64_t triple(int64_t x) {{ return {value} * x; }}
        """)


def _call(lib, x: int) -> int:
    import ctypes

    f = lib.cdll.triple
    f.restype = ctypes.c_int64
    f.argtypes = [ctypes.c_int64]
    return f(x)


@pytest.fixture
def count_compiles(monkeypatch):
    """How many times the C compiler really ran (not served from any cache)."""
    calls = []
    real = cache._compile

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(cache, "_compile", counting)
    return calls


def _run_py(code: str, cache_dir: Path, timeout: float = 120, **env) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "ASP_CACHE_DIR": str(cache_dir), **env}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def test_cache_dir_is_created_private(fresh_cache):
    assert not fresh_cache.exists()
    path = config.cache_dir()
    assert path == fresh_cache
    assert stat.S_IMODE(path.stat().st_mode) == 0o700
    build(_source(uuid.uuid4().hex), kernel="test.mode")
    for sub in ("lib", "entries", "build", "locks"):
        assert stat.S_IMODE((path / sub).stat().st_mode) == 0o700


def test_miss_then_memory_hit_then_disk_hit(fresh_cache, count_compiles):
    src = _source(uuid.uuid4().hex)
    lib = build(src, kernel="test.hit")
    assert _call(lib, 5) == 15
    assert len(count_compiles) == 1
    assert lib.key == source_key(src)
    assert (fresh_cache / "lib" / f"{lib.key}.so").is_file()
    entry = json.loads((fresh_cache / "entries" / f"{lib.key}.json").read_text())
    assert entry["kernel"] == "test.hit" and entry["key"] == lib.key
    assert build(src, kernel="test.hit") is lib  # in-memory hit
    cache._memory.clear()
    again = build(src, kernel="test.hit")  # disk hit
    assert again is not lib and _call(again, 2) == 6
    assert len(count_compiles) == 1
    assert load_library(lib.key).key == lib.key
    assert load_library("0" * 64) is None


def test_different_source_different_key(fresh_cache):
    a, b = _source("k", 3), _source("k", 4)
    assert source_key(a) != source_key(b)
    assert source_key(a) == source_key(a)


def test_flags_change_the_key_and_are_used(fresh_cache, monkeypatch, count_compiles):
    src = _source(uuid.uuid4().hex)
    default_key = source_key(src)
    monkeypatch.setenv("ASP_CFLAGS", "-O1")
    o1_key = source_key(src)
    assert o1_key != default_key
    lib = build(src, kernel="test.flags")
    assert lib.key == o1_key and _call(lib, 3) == 9
    monkeypatch.setenv("ASP_CFLAGS", "-O2")
    assert source_key(src) not in (default_key, o1_key)
    monkeypatch.delenv("ASP_CFLAGS")
    assert source_key(src) == default_key
    assert build(src, kernel="test.flags").key == default_key
    assert len(count_compiles) == 2


def test_key_is_stable_across_processes_and_object_is_reused(fresh_cache):
    src = _source(uuid.uuid4().hex, 7)
    lib = build(src, kernel="test.xproc")
    so = fresh_cache / "lib" / f"{lib.key}.so"
    mtime = so.stat().st_mtime_ns
    out = _run_py(f"""
        from asp.jit import cache
        def refuse(*a, **k):
            raise SystemExit("recompiled")
        cache._compile = refuse
        src = {src!r}
        lib = cache.build(src, kernel="test.xproc")
        import ctypes
        f = lib.cdll.triple
        f.restype = ctypes.c_int64
        f.argtypes = [ctypes.c_int64]
        print(cache.source_key(src), lib.key, f(6))
        """, fresh_cache)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [lib.key, lib.key, "42"]
    assert so.stat().st_mtime_ns == mtime


def test_concurrent_processes_compiling_the_same_kernel_all_succeed(fresh_cache):
    src = _source(uuid.uuid4().hex, 5)
    code = f"""
        import ctypes
        from asp.jit import build
        lib = build({src!r}, kernel="test.concurrent")
        f = lib.cdll.triple
        f.restype = ctypes.c_int64
        f.argtypes = [ctypes.c_int64]
        print(lib.key, f(2))
        """
    env = {**os.environ, "ASP_CACHE_DIR": str(fresh_cache)}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=180) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err
    lines = {out.strip() for out, _ in results}
    assert lines == {f"{source_key(src)} 10"}
    entries = [e for e in cache_entries() if e["kernel"] == "test.concurrent"]
    assert len(entries) == 1 and not entries[0]["damaged"]


def _prebuild(src: str, cache_dir: Path) -> str:
    """Build ``src`` in another process, so this one never maps the object we then damage.

    (Damaging a shared object in place while a process has it mapped is not a cache
    problem: any program would crash on it.)
    """
    out = _run_py(f"""
        from asp.jit import build
        print(build({src!r}, kernel="test.damaged").key)
        """, cache_dir)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_truncated_object_is_detected_and_rebuilt(fresh_cache):
    src = _source(uuid.uuid4().hex, 9)
    key = _prebuild(src, fresh_cache)
    so = fresh_cache / "lib" / f"{key}.so"
    data = so.read_bytes()
    so.write_bytes(data[: len(data) // 3])
    assert [e["damaged"] for e in cache_entries()] == [True]
    assert load_library(key) is None  # damaged objects are never loaded
    again = build(src, kernel="test.damaged")
    assert again.key == key and _call(again, 2) == 18
    assert so.read_bytes() == data
    assert [e["damaged"] for e in cache_entries()] == [False]


def test_object_replaced_by_garbage_is_rebuilt(fresh_cache, count_compiles):
    src = _source(uuid.uuid4().hex, 2)
    key = _prebuild(src, fresh_cache)
    (fresh_cache / "lib" / f"{key}.so").write_bytes(b"this is not an ELF file" * 100)
    # Also damage the build directory's copy, so the rebuild has to notice that too.
    for p in (fresh_cache / "build").rglob("*.so"):
        p.write_bytes(b"junk")
    assert _call(build(src, kernel="test.damaged"), 4) == 8
    assert count_compiles


@pytest.mark.parametrize("garbage", [b"", b"{not json", b"[1, 2, 3]", b'{"key": "x"}',
                                     b"\x00\xff\xfe"])
def test_garbage_index_entry_is_detected_and_rebuilt(fresh_cache, garbage):
    src = _source(f"garbage-{garbage!r}", 11)
    lib = build(src, kernel="test.garbage")
    entry = fresh_cache / "entries" / f"{lib.key}.json"
    entry.write_bytes(garbage)
    cache._memory.clear()
    listed = cache_entries()
    assert listed and listed[0]["damaged"]
    again = build(src, kernel="test.garbage")
    assert _call(again, 3) == 33
    assert json.loads(entry.read_text())["key"] == lib.key


def test_stale_lock_file_in_the_build_directory_does_not_hang(fresh_cache):
    src = _source(uuid.uuid4().hex, 6)
    key = source_key(src)
    lock = fresh_cache / "build" / key / "lock"
    lock.parent.mkdir(parents=True)
    lock.write_text("left by a killed process")
    out = _run_py(f"""
        from asp.jit import build
        print(build({src!r}, kernel="test.lock").key)
        """, fresh_cache, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == key
    assert "could not obtain lock" not in out.stderr


def test_compile_error_carries_compiler_output(fresh_cache):
    bad = "/* asp test */\nint broken(int x) { return x +; }\n"
    with pytest.raises(CompileError) as info:
        build(bad, kernel="test.bad")
    err = info.value
    assert err.stage == "compile"
    text = str(err)
    assert "rejected" in text
    assert "error" in text and "expected expression" in text  # gcc's own words
    # Nothing half-built is left as a cache entry.
    assert not any(e["kernel"] == "test.bad" for e in cache_entries())


def test_missing_compiler_is_a_compile_error(fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_CC", "/nonexistent/cc")
    with pytest.raises(CompileError, match="no C compiler found"):
        build(_source(uuid.uuid4().hex), kernel="test.nocc")


def test_missing_compiler_makes_elementwise_fall_back_once(fresh_cache, monkeypatch):
    from specializers.elementwise import elementwise

    monkeypatch.setenv("ASP_CC", "/nonexistent")

    @elementwise
    def twice_plus_one(x):
        return 2 * x + 1

    x = np.arange(6.0)
    with pytest.warns(AspFallbackWarning, match="no C compiler") as record:
        r1 = twice_plus_one(x)
        r2 = twice_plus_one(x + 1)
    assert len([w for w in record if issubclass(w.category, AspFallbackWarning)]) == 1
    np.testing.assert_array_equal(r1, 2 * x + 1)
    np.testing.assert_array_equal(r2, 2 * (x + 1) + 1)
    assert isinstance(twice_plus_one.jit.last_error, CompileError)


def test_clear_cache_removes_everything(fresh_cache):
    build(_source(uuid.uuid4().hex), kernel="test.clear")
    build(_source(uuid.uuid4().hex), kernel="test.clear")
    assert len(cache_entries()) == 2
    assert clear_cache() == 2
    assert cache_entries() == []
    assert cache._memory == {}
    assert not list((fresh_cache / "lib").glob("*.so"))
