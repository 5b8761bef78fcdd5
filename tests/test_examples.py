"""Every example runs, as a user would run it, and says what it did."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p for p in (ROOT / "examples").glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_runs(path, tmp_path):
    env = dict(os.environ, ASP_EXAMPLE_QUICK="1", MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    # A fallback in an example is a bug: make it an error.
    env["PYTHONWARNINGS"] = "error::asp.errors.AspFallbackWarning"
    out = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"{path.name} failed:\n{out.stdout}\n{out.stderr}"
    assert out.stdout.strip(), f"{path.name} printed nothing"


@pytest.mark.parametrize("name", ["poly", "mandelbrot"])
def test_example_runs_without_a_compiler(name, tmp_path):
    """No C compiler: the example still runs, in Python, with one warning per kernel."""
    env = dict(os.environ, ASP_EXAMPLE_QUICK="1", MPLBACKEND="Agg", ASP_CC="/nonexistent/cc",
               ASP_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("PYTHONWARNINGS", None)
    out = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py")], cwd=tmp_path,
                         env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("AspFallbackWarning") == 1, out.stderr
    assert "no C compiler found" in out.stderr
    assert "unavailable" in out.stdout  # the raw C form says why it did not run


def _run_example(name: str, tmp_path: Path, *args: str) -> str:
    """Run ``examples/<name>.py`` as the test above does (quick, in ``tmp_path``, a
    fallback an error) and return what it printed."""
    env = dict(os.environ, ASP_EXAMPLE_QUICK="1", MPLBACKEND="Agg",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env["PYTHONWARNINGS"] = "error::asp.errors.AspFallbackWarning"
    out = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py"), *args],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"{name} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def test_heat2d_times_iterate_against_the_step_loop_and_they_agree(tmp_path):
    out = _run_example("heat2d", tmp_path, "--n", "120", "--steps", "200")
    assert "iterate vs step by step:" in out
    assert "results identical bit for bit" in out
    assert "the tuner chose" in out
    assert out.rstrip().endswith("OK")


def test_wave2d_conserves_energy_and_draws_the_field(tmp_path):
    out = _run_example("wave2d", tmp_path, "--n", "96")
    assert "energy conserved: relative drift" in out
    assert "asp and NumPy slicing agree bit for bit" in out
    png = tmp_path / "wave2d.png"  # the default name, in the current directory
    assert f"wrote {png.name}" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.rstrip().endswith("OK")
