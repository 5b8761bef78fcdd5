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
