"""The compiler's remembered version goes through the cache's trust rules too.

Before: ``compilers.json`` was read and written in a refused (world-writable) cache, and
written through a predictable temporary name (``.compilers.<pid>.tmp``) that a planted
link could redirect.
"""
from __future__ import annotations

import json
import os

from asp.jit import toolchain


def test_a_planted_link_at_compilers_json_is_not_written_through(fresh_cache, tmp_path):
    fresh_cache.mkdir(mode=0o700, parents=True)
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    os.symlink(victim, fresh_cache / "compilers.json")
    os.symlink(victim, fresh_cache / f".compilers.{os.getpid()}.tmp")  # the old temp name
    toolchain._remember_version("/usr/bin/cc-test", 1.0, "cc 1.0")
    assert victim.read_text() == "precious"
    assert toolchain._remembered_version("/usr/bin/cc-test", 1.0) == "cc 1.0"
    assert not (fresh_cache / "compilers.json").is_symlink()
    assert [p.name for p in fresh_cache.iterdir() if p.name.endswith(".tmp")] == \
        [f".compilers.{os.getpid()}.tmp"]  # the planted link, left alone


def test_a_refused_cache_holds_no_compiler_versions(fresh_cache):
    fresh_cache.mkdir(parents=True)
    os.chmod(fresh_cache, 0o777)
    try:
        toolchain._remember_version("/usr/bin/cc-test", 2.0, "cc 2.0")
        assert not (fresh_cache / "compilers.json").exists()
        (fresh_cache / "compilers.json").write_text(json.dumps(
            {"/usr/bin/cc-test": {"mtime": 2.0, "version": "planted"}}))
        assert toolchain._remembered_version("/usr/bin/cc-test", 2.0) is None
    finally:
        os.chmod(fresh_cache, 0o700)


def test_native_code_is_keyed_on_the_processors_features(monkeypatch):
    """With ``-march=native`` the build key covers the processor's instruction set: a
    cache shared with another kind of processor never serves it a library built for
    this one (an AVX-512 library on a machine without it dies of SIGILL).  Without a
    native flag the key does not depend on the processor."""
    from asp.jit import cache, toolchain

    native = toolchain.Compiler("/usr/bin/gcc", "gcc 12", ("-O3", "-march=native"))
    generic = toolchain.Compiler("/usr/bin/gcc", "gcc 12", ("-O3", "-march=x86-64-v2"))
    here = native.identity(), generic.identity()
    assert f"cpu {toolchain.cpu_features()}" in here[0]
    monkeypatch.setattr(toolchain, "cpu_features", lambda: "another processor")
    assert native.identity() != here[0] and generic.identity() == here[1]
    monkeypatch.setattr(toolchain, "compiler", lambda: native)
    monkeypatch.setattr(cache, "compiler", lambda: native)
    other = cache.source_key("int f(void) { return 1; }")
    monkeypatch.undo()
    monkeypatch.setattr(cache, "compiler", lambda: native)
    assert cache.source_key("int f(void) { return 1; }") != other
