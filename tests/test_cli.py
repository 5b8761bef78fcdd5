"""The ``asp`` command: info, cache list/info/clear, tune show/forget."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from asp.cli import main
from asp.jit import build, cache_entries
from asp.tune import remembered, store

ROOT = Path(__file__).resolve().parents[1]


def _asp(capsys, *argv) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def _kernel_source(tag: str) -> str:
    return textwrap.dedent(f"""\
        /* {tag} */
        int asp_cli_test(int x) {{ return x + 1; }}
        """)


def test_info(capsys, fresh_cache):
    code, out = _asp(capsys, "info")
    assert code == 0
    for label in ("asp ", "compiler:", "flags:", "openmp:", "threads:", "cpu:", "cache dir:",
                  "tuning:", "native path:"):
        assert label in out, label
    assert str(fresh_cache) in out
    assert "-fopenmp" in out and "openmp:       yes" in out
    assert "native path:  built" in out


def test_info_without_a_compiler(capsys, fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_CC", "/nonexistent")
    code, out = _asp(capsys, "info")
    assert code == 0
    assert "compiler:     unavailable" in out and "run as Python" in out


def test_cache_list_info_clear(capsys, fresh_cache):
    code, out = _asp(capsys, "cache", "list")
    assert code == 0 and "is empty" in out
    a = build(_kernel_source("one"), kernel="cli-kernel-one")
    build(_kernel_source("two"), kernel="cli-kernel-two")
    code, out = _asp(capsys, "cache", "list")
    assert code == 0
    assert "cli-kernel-one" in out and "cli-kernel-two" in out
    assert a.key[:12] in out
    assert "KiB" in out or " B" in out
    code, out = _asp(capsys, "cache", "info")
    assert code == 0
    assert "entries:    2" in out and "for 2 kernel(s)" in out
    assert "damaged" not in out
    # Damage by replacing the file: this process has the object mapped, and writing
    # into a mapped object in place would crash it (SIGBUS), cache or no cache.
    damaged = fresh_cache / "lib" / "damaged.tmp"
    damaged.write_bytes(b"x")
    os.replace(damaged, fresh_cache / "lib" / f"{a.key}.so")
    code, out = _asp(capsys, "cache", "list")
    assert "[damaged]" in out
    code, out = _asp(capsys, "cache", "info")
    assert "damaged:    1" in out
    code, out = _asp(capsys, "cache", "clear")
    assert code == 0 and "removed 2 compiled kernel(s)" in out
    assert cache_entries() == []
    code, out = _asp(capsys, "cache", "list")
    assert "is empty" in out


def test_tune_show_and_forget(capsys, fresh_cache):
    code, out = _asp(capsys, "tune", "show")
    assert code == 0 and "no remembered winners" in out
    store("elementwise:poly", "(<f81)->auto", "stride",
          {"chunk": {"best": 0.002, "runs": 3}, "stride": {"best": 0.001, "runs": 3},
           "dynamic": {"excluded": "3 of 37 values differ"}}, "online")
    store("stencil:heat", "(<f82)", "tiled", {"tiled": {"best": 0.5, "runs": 5}}, "exhaustive")
    code, out = _asp(capsys, "tune", "show")
    assert code == 0
    assert "elementwise:poly" in out and "stencil:heat" in out
    assert "winner:    stride (online; remembered from an older asp)" in out
    assert "signature: (<f81)->auto" in out
    assert "excluded: 3 of 37 values differ" in out
    lines = out.splitlines()
    # Timings are listed fastest first.
    assert lines.index(next(x for x in lines if x.strip().startswith("stride"))) < \
        lines.index(next(x for x in lines if x.strip().startswith("chunk")))
    assert "1.0000 ms" in out
    code, out = _asp(capsys, "tune", "show", "stencil")
    assert "stencil:heat" in out and "elementwise:poly" not in out
    code, out = _asp(capsys, "tune", "show", "nothing-like-this")
    assert "no remembered winners for kernels matching 'nothing-like-this'" in out
    code, out = _asp(capsys, "tune", "forget", "stencil")
    assert code == 0 and "forgot 1" in out
    assert [r["kernel"] for r in remembered()] == ["elementwise:poly"]
    code, out = _asp(capsys, "tune", "forget")
    assert "forgot 1" in out and remembered() == []


def test_bad_usage(capsys):
    with pytest.raises(SystemExit) as info:
        main(["cache", "explode"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([])


def test_malformed_environment_is_reported(capsys, monkeypatch, fresh_cache):
    monkeypatch.setenv("ASP_TUNE", "sometimes")
    code, out = _asp(capsys, "info")
    assert code == 2
    assert "asp: ASP_TUNE='sometimes'" in out


@pytest.mark.parametrize("argv", [["-m", "asp.cli", "info"], ["-m", "asp", "cache", "info"]])
def test_runs_as_a_program(fresh_cache, argv):
    env = {**os.environ, "ASP_CACHE_DIR": str(fresh_cache)}
    out = subprocess.run([sys.executable, *argv], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert str(fresh_cache) in out.stdout


def test_console_script(fresh_cache):
    script = Path(sys.executable).with_name("asp")
    if not script.exists():
        pytest.skip("the asp console script is not installed next to this Python")
    env = {**os.environ, "ASP_CACHE_DIR": str(fresh_cache)}
    out = subprocess.run([str(script), "info"], env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("asp ")


def test_tune_show_says_how_sure_and_retime_reopens(capsys, fresh_cache):
    store("k:sure", "s", "a", {"a": {"best": 1e-3, "runs": 3}, "b": {"best": 2e-3, "runs": 3},
                               "_decision": {"provisional": False, "median": 1e-3}}, "online")
    store("k:unsure", "s", "b", {"a": {"best": 1e-3, "runs": 6}, "b": {"best": 1e-3, "runs": 6},
                                 "_decision": {"provisional": True, "median": 1e-3}}, "online")
    code, out = _asp(capsys, "tune", "show")
    assert code == 0
    assert "winner:    a (online; separated" in out
    assert "winner:    b (online; provisional" in out
    assert "_decision" not in out
    code, out = _asp(capsys, "tune", "retime", "k:sure")
    assert code == 0 and "1 remembered winner(s) will be timed again" in out
    code, out = _asp(capsys, "tune", "show", "k:sure")
    assert "to be timed again" in out
