"""Cache trust and build faults: asp never loads code from a cache another user could
write, never writes through a planted link, and turns every failure of the environment
(full disk, file size limit, read-only or missing directory) into a fallback to Python.

Tests run as root, where ``chmod`` does not stop writes: a read-only cache or a full
disk is simulated by making the system call fail (monkeypatched), or for real with a
file size limit (``RLIMIT_FSIZE``) in a child process.
"""
from __future__ import annotations

import errno
import os
import stat
import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import numpy as np
import pytest

from asp.codegen.entry import comment_text
from asp.errors import AspFallbackWarning, CompileError
from asp.jit import build, cache, load_library, trust
from asp.jit.cache import source_key
from asp.tune import db

ROOT = Path(__file__).resolve().parents[1]

# A kernel module as a user writes it: kernels need their source on disk.
KERNELS = textwrap.dedent("""\
    import numpy as np
    from specializers.elementwise import elementwise
    from specializers.stencil import StencilGrid, StencilKernel

    @elementwise
    def affine(x):
        return 3.0 * x + 1.0

    class Blur(StencilKernel):
        def kernel(self, a, out):
            for p in out.interior_points():
                for q in a.neighbors(p, 1):
                    out[p] += 0.25 * a[q]

    def run():
        x = np.arange(10.0)
        assert np.array_equal(affine(x), 3.0 * x + 1.0), affine(x)
        a = StencilGrid([6, 5])
        a.data = np.arange(30.0).reshape(6, 5)
        out = StencilGrid([6, 5])
        Blur().kernel(a, out)
        d = a.data
        want = 0.25 * (d[:-2, 1:-1] + d[2:, 1:-1] + d[1:-1, :-2] + d[1:-1, 2:])
        assert np.allclose(out.data[1:-1, 1:-1], want), out.data
    """)


def _source(value: int = 3) -> str:
    return f"/* {uuid.uuid4().hex} */\n#include <stdint.h>\n" \
           f"int64_t triple(int64_t x) {{ return {value} * x; }}\n"


def _call(lib, x: int) -> int:
    import ctypes

    f = lib.cdll.triple
    f.restype, f.argtypes = ctypes.c_int64, [ctypes.c_int64]
    return f(x)


def _run_kernels(folder: Path, cache_dir: Path | None, *, setup: str = "", strict: bool = False,
                 env: dict | None = None) -> subprocess.CompletedProcess:
    """Write KERNELS to ``folder/userkernels.py`` and run them in a child process."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "userkernels.py").write_text(KERNELS)
    code = "\n".join(["import sys, warnings", setup, f"sys.path.insert(0, {str(folder)!r})",
                      'warnings.simplefilter("always")', "import userkernels",
                      "userkernels.run()", 'print("OK")'])
    full_env = {k: v for k, v in os.environ.items() if k not in ("ASP_STRICT",)}
    if cache_dir is not None:
        full_env["ASP_CACHE_DIR"] = str(cache_dir)
    if strict:
        full_env["ASP_STRICT"] = "1"
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=300)


def _fallbacks(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if "AspFallbackWarning" in ln]


def _fresh_elementwise():
    from specializers.elementwise import elementwise

    @elementwise
    def twice_plus_one(x):
        return 2.0 * x + 1.0

    return twice_plus_one


def _assert_falls_back_once(words: str) -> None:
    fn = _fresh_elementwise()
    x = np.arange(7.0)
    with pytest.warns(AspFallbackWarning, match=words) as record:
        r1, r2 = fn(x), fn(x + 1)
    assert len([w for w in record if issubclass(w.category, AspFallbackWarning)]) == 1
    np.testing.assert_array_equal(r1, 2 * x + 1)
    np.testing.assert_array_equal(r2, 2 * (x + 1) + 1)
    assert isinstance(fn.jit.last_error, CompileError)


# -- a cache directory that is not safely ours is refused --------------------------------------

def _make_lax(path: Path, how: str) -> str:
    """Make ``path`` unsafe in one way; returns the words the refusal must contain."""
    if how == "world-writable":
        path.chmod(0o777)
        return "writable by group and others"
    if how == "group-writable":
        path.chmod(0o770)
        return "writable by group"
    os.chown(path, 12345, -1)
    return "owned by uid 12345"


@pytest.mark.parametrize("how", ["world-writable", "group-writable", "another user's"])
def test_unsafe_cache_directory_is_refused_and_nothing_is_loaded(fresh_cache, how):
    src = _source()
    key = build(src, kernel="test.trust").key  # a good object, built while the dir was ours
    cache._memory.clear()
    words = _make_lax(fresh_cache, how)
    with pytest.raises(CompileError) as info:
        build(src, kernel="test.trust")
    text = str(info.value)
    assert str(fresh_cache) in text and words in text
    assert f"chmod 700 {fresh_cache}" in text or f"chown {os.geteuid()}" in text
    with pytest.raises(CompileError, match=words):
        load_library(key)
    assert key not in cache._memory
    _assert_falls_back_once(words)


def test_cache_inside_a_world_writable_directory_without_sticky_bit_is_refused(tmp_path,
                                                                              monkeypatch):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)  # anyone could rename our cache away and put theirs in its place
    monkeypatch.setenv("ASP_CACHE_DIR", str(shared / "cache"))
    with pytest.raises(CompileError, match=rf"lies in {shared}, which anyone can write "
                                           rf"without the sticky bit.*chmod o-w {shared}"):
        build(_source(), kernel="test.trust")
    shared.chmod(0o1777)  # like /tmp: others cannot rename what is ours
    assert _call(build(_source(), kernel="test.trust"), 1) == 3


@pytest.mark.parametrize("sub", ["lib", "entries", "build", "locks"])
def test_unsafe_subdirectory_is_refused(fresh_cache, sub):
    build(_source(), kernel="test.trust")
    cache._memory.clear()
    (fresh_cache / sub).chmod(0o777)
    with pytest.raises(CompileError, match=rf"{sub}: it is writable by group and others"):
        build(_source(), kernel="test.trust")


def test_linked_subdirectory_is_refused_and_its_target_untouched(fresh_cache, tmp_path):
    build(_source(), kernel="test.trust")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    for p in (fresh_cache / "lib").iterdir():
        p.unlink()
    (fresh_cache / "lib").rmdir()
    (fresh_cache / "lib").symlink_to(outside)
    cache._memory.clear()
    with pytest.raises(CompileError, match="is a symbolic link"):
        build(_source(), kernel="test.trust")
    assert [p.name for p in outside.iterdir()] == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "precious"


def test_strict_mode_raises_for_an_unsafe_cache(fresh_cache, monkeypatch):
    build(_source(), kernel="test.trust")
    fresh_cache.chmod(0o777)
    monkeypatch.setenv("ASP_STRICT", "1")
    fn = _fresh_elementwise()
    with pytest.raises(CompileError, match="chmod 700"):
        fn(np.arange(3.0))


def test_warm_start_from_an_unsafe_cache_loads_nothing(tmp_path):
    cache_dir = tmp_path / "cache"
    first = _run_kernels(tmp_path / "src", cache_dir)
    assert first.returncode == 0, first.stderr
    assert not _fallbacks(first.stderr) and list((cache_dir / "specs").glob("*.json"))
    cache_dir.chmod(0o777)
    second = _run_kernels(tmp_path / "src", cache_dir, setup=textwrap.dedent("""\
        import atexit
        from asp.jit import cache
        atexit.register(lambda: print("loaded", len(cache._memory)))
        """))
    assert second.returncode == 0, second.stderr
    assert "OK" in second.stdout and "loaded 0" in second.stdout
    warned = _fallbacks(second.stderr)
    assert len(warned) == 2 and all("chmod 700" in w for w in warned)  # once per kernel


def test_cli_reports_an_unsafe_cache_without_a_traceback(fresh_cache, capsys):
    from asp.cli import main

    build(_source(), kernel="test.cli")
    fresh_cache.chmod(0o777)
    for argv in (["cache", "list"], ["cache", "clear"], ["tune", "show"]):
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"asp: asp will not use the cache directory {fresh_cache}")
        assert f"chmod 700 {fresh_cache}" in err
    assert list((fresh_cache / "lib").glob("*.so"))  # clear refused: nothing removed


def test_tuning_database_of_an_unsafe_cache_is_not_used(fresh_cache):
    assert db.store("trust:k", "sig", "a", {}, "online")
    fresh_cache.chmod(0o777)
    assert db.lookup("trust:k", "sig") is None
    assert db.store("trust:k", "sig", "b", {}, "online") is False
    fresh_cache.chmod(0o700)
    assert db.lookup("trust:k", "sig")[0] == "a"


# -- no symbolic link is ever written through ---------------------------------------------------

def test_planted_links_are_never_followed(fresh_cache, tmp_path):
    src = _source(5)
    key = source_key(src)
    build(_source(), kernel="test.links")  # creates the subdirectories
    cache._memory.clear()
    victims = tmp_path / "victims"
    victims.mkdir()
    for name in ("asp_kernel.c", "asp_kernel.so", "lib.so", "entry.json"):
        (victims / name).write_text("precious")
    (fresh_cache / "build" / key).symlink_to(victims)
    (fresh_cache / "lib" / f"{key}.so").symlink_to(victims / "lib.so")
    (fresh_cache / "entries" / f"{key}.json").symlink_to(victims / "entry.json")
    (fresh_cache / "locks" / f"{key}.lock").symlink_to(victims / "new.lock")
    lib = build(src, kernel="test.links")
    assert _call(lib, 3) == 15
    assert sorted(p.name for p in victims.iterdir()) == \
        ["asp_kernel.c", "asp_kernel.so", "entry.json", "lib.so"]
    assert all((victims / n).read_text() == "precious" for n in os.listdir(victims))
    for p in (fresh_cache / "build" / key, fresh_cache / "lib" / f"{key}.so",
              fresh_cache / "entries" / f"{key}.json"):
        assert not p.is_symlink()
    cache._memory.clear()
    assert _call(build(src, kernel="test.links"), 2) == 10  # and the entry is intact


def test_linked_tuning_database_is_not_written_through(fresh_cache, tmp_path):
    fresh_cache.mkdir()
    victim = tmp_path / "victim.sqlite"
    victim.write_bytes(b"precious")
    (fresh_cache / "tuning.sqlite").symlink_to(victim)
    assert db.store("links:k", "sig", "a", {}, "online") is False
    assert db.lookup("links:k", "sig") is None
    assert victim.read_bytes() == b"precious"


# -- failures of the environment are CompileErrors, and kernels fall back ----------------------

@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "No space left on device"),
                                         (errno.EFBIG, "File too large")])
def test_full_disk_is_a_compile_error_and_leaves_no_half_entry(fresh_cache, monkeypatch,
                                                               code, words):
    src = _source(7)

    def full(fd, data):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(trust, "_write", full)
    with pytest.raises(CompileError, match=words):
        build(src, kernel="test.full")
    # Nothing half-written: no object, no entry, no temporary, no build directory.
    assert list((fresh_cache / "lib").iterdir()) == []
    assert list((fresh_cache / "entries").iterdir()) == []
    assert list((fresh_cache / "build").iterdir()) == []
    _assert_falls_back_once(words)
    monkeypatch.undo()
    assert _call(build(src, kernel="test.full"), 2) == 14


def test_read_only_cache_is_a_compile_error_and_kernels_fall_back(fresh_cache, monkeypatch):
    from specializers.stencil import StencilGrid, StencilKernel

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), kwargs.get("dir"))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    monkeypatch.setattr(tempfile, "mkdtemp", read_only)
    with pytest.raises(CompileError, match="Read-only file system.*writable directory"):
        build(_source(), kernel="test.ro")
    _assert_falls_back_once("Read-only file system")

    class Copy(StencilKernel):
        def kernel(self, a, out):
            for p in out.interior_points():
                out[p] = 2.0 * a[p]

    a, out = StencilGrid([5, 4]), StencilGrid([5, 4])
    a.data = np.arange(20.0).reshape(5, 4)
    with pytest.warns(AspFallbackWarning, match="Read-only file system") as record:
        Copy().kernel(a, out)
        Copy().kernel(a, out)
    assert len([w for w in record if issubclass(w.category, AspFallbackWarning)]) >= 1
    np.testing.assert_array_equal(out.data[1:-1, 1:-1], 2.0 * a.data[1:-1, 1:-1])


def test_cache_directory_that_cannot_be_created(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("ASP_CACHE_DIR", str(blocker / "cache"))
    with pytest.raises(CompileError, match="cannot create the cache directory"):
        build(_source(), kernel="test.nodir")
    _assert_falls_back_once("cannot create the cache directory")


def test_lock_directory_removed_under_us_is_an_error_not_a_hang(fresh_cache, monkeypatch):
    real = trust.open_lock

    def vanish(path):
        for p in path.parent.iterdir():
            p.unlink()
        path.parent.rmdir()
        return real(path)

    monkeypatch.setattr(cache, "open_lock", vanish)
    with pytest.raises(CompileError, match="No such file or directory"):
        build(_source(), kernel="test.lock")


def test_unwritable_home_without_cache_dir_falls_back(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("HOME cannot hold directories")
    out = _run_kernels(tmp_path / "src", None, env={"HOME": str(blocker / "home")},
                       setup="import os; os.environ.pop('ASP_CACHE_DIR', None); "
                             "os.environ.pop('XDG_CACHE_HOME', None)")
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout
    warned = _fallbacks(out.stderr)
    assert len(warned) == 2 and all("cannot create the cache directory" in w for w in warned)


def test_file_size_limit_makes_kernels_fall_back(tmp_path):
    cache_dir = tmp_path / "cache"
    out = _run_kernels(tmp_path / "src", cache_dir, setup=textwrap.dedent("""\
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes fail with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (1500, resource.RLIM_INFINITY))
        """))
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout and "Traceback" not in out.stderr
    warned = _fallbacks(out.stderr)
    assert len(warned) == 2 and all("File too large" in w for w in warned)
    assert not any("internal error" in w for w in warned)
    # Nothing half-written is left: no object, entry, temporary or build file.
    for sub in ("lib", "entries", "build"):
        assert list((cache_dir / sub).rglob("*")) == [], sub


# -- names and paths in generated C --------------------------------------------------------------

@pytest.mark.parametrize("text, want", [
    ("stencil:K.kernel (/home/u/x*/k.py:3)", r"stencil:K.kernel (/home/u/x*\/k.py:3)"),
    ("a/*b", r"a/\*b"),
    ("*/*", r"*\/\*"),
    ("line\nbreak\r\t", r"line\x0abreak\x0d\x09"),
    ("caf\u00e9 \udcff", r"caf\xe9 \udcff"),
])
def test_comment_text_is_safe_in_a_c_comment(text, want):
    got = comment_text(text)
    assert got == want
    assert "*/" not in got and "/*" not in got and got.isascii() and got.isprintable()


@pytest.mark.parametrize("folder", ["x*", "new\nline", "q*/*\u00e9"])
def test_kernels_in_folders_with_awkward_names_compile(tmp_path, folder):
    parts = folder.split("/")
    where = tmp_path.joinpath(*parts)
    out = _run_kernels(where, tmp_path / "cache", strict=True)
    assert out.returncode == 0, out.stderr
    assert "OK" in out.stdout
    assert list((tmp_path / "cache" / "lib").glob("*.so"))


def test_new_cache_directories_are_private(fresh_cache):
    lib = build(_source(), kernel="test.mode")
    for p in (fresh_cache, *(fresh_cache / s for s in ("lib", "entries", "build", "locks")),
              fresh_cache / "build" / lib.key):
        st = os.lstat(p)
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o700, p
    assert stat.S_IMODE(os.stat(fresh_cache / "lib" / f"{lib.key}.so").st_mode) & 0o022 == 0


def test_cache_writes_wait_for_no_flush_and_complete_short_writes(fresh_cache, monkeypatch,
                                                                   tmp_path):
    """A build writes its files without fsync (which waits for every dirty page of the
    file system: 0.5 s for a 100-byte file after a program wrote 2.4 GB), and a write
    that the kernel cuts short is carried on until every byte is written."""
    def no_fsync(fd):
        raise AssertionError("the cache called fsync")

    real = trust._write

    def short(fd, data):
        return real(fd, data[:7])  # at most 7 bytes a call

    monkeypatch.setattr(os, "fsync", no_fsync)
    monkeypatch.setattr(trust, "_write", short)
    data = bytes(range(256)) * 41
    trust.write_atomic(tmp_path / "f.bin", data)
    assert (tmp_path / "f.bin").read_bytes() == data
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".f.bin")] == []
    assert _call(build(_source(11), kernel="test.nofsync"), 2) == 22  # built, written, loaded
