"""The generator's fingerprint is remembered on disk, and an edit is never missed.

A new process used to hash every source file of asp and of the specializer before its
first result (17-21 ms of a 31 ms warm first call); it now stats them against a memo in
the cache.  These tests make the memo's inputs change in every way that must change the
digest (an edit that keeps the size and the modification time, a new template, a new
module the generator imports) and check a remembered digest is served without reading
a source, and that files modified just now are never trusted to be remembered.
"""
from __future__ import annotations

import json
import os
import sys

import pytest

import asp.runtime.fingerprint as fingerprint
from tests.conftest import package_on_path


@pytest.fixture
def package(tmp_path, monkeypatch):
    """A specializer package ``fppkg`` (``spec`` imports ``lower``; a template), imported,
    with a cache of its own."""
    pkg = tmp_path / "fppkg"
    (pkg / "templates").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "spec.py").write_text("from fppkg.lower import f\n")
    (pkg / "lower.py").write_text("def f():\n    return 1\n")
    (pkg / "api.py").write_text("A = 1\n")
    (pkg / "templates" / "k.c.mako").write_text("int k(void) { return 0; }\n")
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    monkeypatch.setenv("ASP_CACHE_DIR", str(cache))
    with package_on_path(tmp_path, "fppkg"):
        import fppkg.spec  # noqa: F401

        fingerprint.source_fingerprint.cache_clear()
        yield pkg, cache


def digest() -> str:
    """The fingerprint as a new process computes it (no in-process cache)."""
    fingerprint.source_fingerprint.cache_clear()
    return fingerprint.source_fingerprint("fppkg.spec")


def computed() -> str:
    """The fingerprint computed from the files, bypassing the memo."""
    import asp
    from asp import config

    spec = sys.modules["fppkg.spec"]
    return fingerprint._compute("fppkg.spec", fingerprint.Path(asp.__file__).parent.resolve(),
                                fingerprint.Path(spec.__file__).resolve(),
                                fingerprint.Path(os.path.realpath(config.cache_dir())))[0]


def memos(cache) -> list:
    return sorted((cache / "fingerprints").glob("*.json"))


def test_a_remembered_digest_is_served_without_reading_a_source(package, monkeypatch):
    pkg, cache = package
    monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)
    first = digest()
    assert first == computed()
    assert len(memos(cache)) == 1

    def no_reading(*args):
        raise AssertionError("the sources were read again")

    monkeypatch.setattr(fingerprint, "_compute", no_reading)
    assert digest() == first


def test_an_edit_that_keeps_the_size_and_the_modification_time_changes_it(package,
                                                                          monkeypatch):
    """A tool that restores modification times (or a clock too coarse to move) still
    changes the file's status-change time, which no tool can set back."""
    pkg, cache = package
    monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)
    before = digest()
    path = pkg / "lower.py"
    st = os.stat(path)
    path.write_text("def f():\n    return 2\n")  # the same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(path).st_size == st.st_size
    assert os.stat(path).st_mtime_ns == st.st_mtime_ns
    after = digest()
    assert after != before
    assert after == computed()


@pytest.mark.parametrize("change", ["new template", "new import", "file replaced"])
def test_new_files_and_new_imports_change_it(package, monkeypatch, change):
    pkg, cache = package
    monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)
    before = digest()
    if change == "new template":  # found by listing the folder
        (pkg / "templates" / "more.c.mako").write_text("int m(void);\n")
    elif change == "new import":  # a module the generator now imports, new on disk
        (pkg / "deep.py").write_text("D = 1\n")
        (pkg / "lower.py").write_text("from fppkg import deep\n\n\ndef f():\n    return 1\n")
    else:  # the same bytes under a new inode (a reinstall)
        text = (pkg / "lower.py").read_text()
        (pkg / "lower.py").unlink()
        (pkg / "lower.py").write_text(text.replace("1", "3"))
    after = digest()
    assert after != before
    assert after == computed()
    if change == "new import":  # and the new module is watched from then on
        (pkg / "deep.py").write_text("D = 2\n")
        assert digest() not in (before, after)


def test_a_module_the_generator_does_not_import_keeps_it(package, monkeypatch):
    pkg, cache = package
    monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)
    before = digest()
    (pkg / "api.py").write_text("A = 2  # edited\n")
    assert digest() == before


def test_files_modified_just_now_are_not_remembered(package):
    """Under the shipped margin, a digest of files written a moment ago is computed but
    not remembered: a file system's coarse clock may not show the next edit."""
    pkg, cache = package
    assert fingerprint.RACY_SECONDS >= 2
    assert digest() == computed()
    assert memos(cache) == []


@pytest.mark.parametrize("damage", ["garbage", "no digest", "short digest", "not a list"])
def test_a_damaged_memo_is_recomputed(package, monkeypatch, damage):
    pkg, cache = package
    monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)
    right = digest()
    (memo,) = memos(cache)
    data = json.loads(memo.read_text())
    if damage == "garbage":
        memo.write_bytes(b"\x00{not json")
    elif damage == "no digest":
        del data["digest"]
        memo.write_text(json.dumps(data))
    elif damage == "short digest":
        data["digest"] = "0" * 12
        memo.write_text(json.dumps(data))
    else:
        data["read"] = 7
        memo.write_text(json.dumps(data))
    assert digest() == right
    assert json.loads(memo.read_text())["digest"] == right  # and written again


def test_the_asp_core_is_part_of_it(package, monkeypatch):
    """The memo watches asp's own files too: every one of them is in its record."""
    import asp

    pkg, cache = package
    monkeypatch.setattr(fingerprint, "RACY_SECONDS", 0.0)
    digest()
    (memo,) = memos(cache)
    read = {path for path, _ in json.loads(memo.read_text())["read"]}
    root = fingerprint.Path(asp.__file__).parent.resolve()
    assert str(root / "runtime" / "fingerprint.py") in read
    assert str(pkg.resolve() / "lower.py") in read
    assert str(pkg.resolve() / "api.py") not in read
