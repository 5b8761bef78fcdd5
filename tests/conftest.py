"""Shared test setup: the suite runs the code users run, in a private cache.

Set when pytest loads this file (``pytest_configure``), before any test module
is collected, and so before anything can be compiled or libgomp can read its
environment (never on a mere ``import conftest``: Dask workers import it too):

* ``ASP_PARALLEL_THRESHOLD=0``: every generated ``if (work > threshold)`` takes
  its OpenMP branch, so the per-variant checks, which use small inputs, run the
  parallel code and not only the serial fallback below the shipped thresholds;
* ``OMP_NUM_THREADS=2`` when unset or 1: a team of one would hide races;
* ``ASP_TIERED=0``: a first call compiles every variant before its result, so the
  number of calls a tuning decision takes does not depend on how fast the background
  build ran (tests/test_tiered.py tests the tiered first call itself, waiting for it);
* a fresh ``ASP_CACHE_DIR`` (replaced by the session's own directory below), so
  nothing is read from or written to the user's cache even at collection time.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import tempfile

import numpy as np
import pytest

PARALLEL_THRESHOLD = "0"
MIN_THREADS = 2
_suite: dict[str, str] = {}


def pytest_configure(config) -> None:
    os.environ["ASP_PARALLEL_THRESHOLD"] = PARALLEL_THRESHOLD
    os.environ["ASP_TIERED"] = "0"
    if os.environ.get("OMP_NUM_THREADS", "").strip() in ("", "1"):
        os.environ["OMP_NUM_THREADS"] = str(MIN_THREADS)
    _suite["threads"] = os.environ["OMP_NUM_THREADS"]
    for name in ("ASP_STRICT", "ASP_DISABLE_JIT", "ASP_DUMP_IR", "ASP_CC", "ASP_CFLAGS"):
        os.environ.pop(name, None)
    _suite["collection_cache"] = tempfile.mkdtemp(prefix="asp-test-cache-")
    os.environ["ASP_CACHE_DIR"] = _suite["collection_cache"]
    # libgomp reads OMP_NUM_THREADS once, when it is loaded: load it now, so a test that
    # sets OMP_NUM_THREADS=1 in this process (distributed.LocalCluster does) before the
    # first kernel runs cannot leave every later kernel on one thread.
    with contextlib.suppress(OSError):
        ctypes.CDLL("libgomp.so.1", mode=ctypes.RTLD_GLOBAL)


def pytest_unconfigure(config) -> None:
    if "collection_cache" in _suite:
        shutil.rmtree(_suite.pop("collection_cache"), ignore_errors=True)


def openmp_max_threads() -> int | None:
    """``omp_get_max_threads()`` of this process's libgomp (what a parallel region gets),
    or None without libgomp."""
    try:
        return int(ctypes.CDLL("libgomp.so.1").omp_get_max_threads())
    except (OSError, AttributeError):
        return None


@contextlib.contextmanager
def package_on_path(root, name: str):
    """``root`` (a folder holding the package ``name``) on ``sys.path`` while in the
    block; then the package's modules forgotten, the generator fingerprints (which hash
    its files) recomputed, and the package's folder removed."""
    from asp.runtime.fingerprint import source_fingerprint

    sys.path.insert(0, str(root))
    try:
        yield
    finally:
        sys.path.remove(str(root))
        for m in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
            sys.modules.pop(m)
        source_fingerprint.cache_clear()
        shutil.rmtree(root / name)


@contextlib.contextmanager
def environ_restored():
    """Put ``os.environ`` back as it was: ``distributed.LocalCluster`` sets variables such
    as ``OMP_NUM_THREADS=1`` in the *calling* process, which would leak into later tests."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="session", autouse=True)
def _asp_cache(tmp_path_factory):
    """Every test session compiles into its own cache, so tests never see stale objects."""
    path = tmp_path_factory.mktemp("asp-cache")
    os.environ["ASP_CACHE_DIR"] = str(path)
    os.environ.setdefault("ASP_TUNE", "online")
    yield path
    os.environ["ASP_CACHE_DIR"] = _suite["collection_cache"]


@pytest.fixture(autouse=True)
def _suite_parallel_settings():
    """Whatever a test (or a library it starts) does to the thread count or the threshold,
    the next test runs with the suite's own."""
    yield
    os.environ["OMP_NUM_THREADS"] = _suite["threads"]
    os.environ["ASP_PARALLEL_THRESHOLD"] = PARALLEL_THRESHOLD


#: The tuner's own tests, which reopen decisions on purpose.
_REOPENING = ("test_tune", "test_tune_noise")


@pytest.fixture(autouse=True)
def _decisions_stay(request, monkeypatch):
    """Outside the tuner's own tests a decision, once made, stays made: a noisy one (made
    while the other test worker kept the cores busy) is otherwise tuned again once calls
    run undisturbed (by design; test_tune*.py test it), and a test of the hot path, a
    guard or a bucket that made its calls then found no decision and no hot entry, as
    two did in a fresh-clone make test."""
    if request.module.__name__.rsplit(".", 1)[-1] not in _REOPENING:
        from asp.tune import verify

        monkeypatch.setattr(verify, "MAX_REOPEN", 0)


@pytest.fixture(autouse=True)
def _every_variant_tuned(monkeypatch):
    """The tests race every variant at every size, whatever this machine's L3: the
    stencil specializer leaves its streaming variants out of the size buckets that fit
    in L3 (tests/test_stencil_cache_buckets.py sets an L3 of its own), and the tuner's
    tests race stencil variants on small grids."""
    from asp import config
    from asp.codegen import streaming

    l1, l2, _ = config.cache_sizes()
    monkeypatch.setattr(config, "cache_sizes", lambda: (l1, l2, 0))
    streaming.unsuited_in_cache.cache_clear()
    yield
    streaming.unsuited_in_cache.cache_clear()


def until_decided(call, decided, variants: int) -> int:
    """Call ``call()`` until ``decided()`` is true; the number of calls.  The first
    decision comes within ``calls_to_decide(variants)`` calls; the cap also allows for
    ``MAX_REOPEN`` reopened ones in the tuner's own tests (elsewhere ``_decisions_stay``
    sets it to 0).  Stops at the decision instead of making every call of the bound.
    Fails when there is none by then."""
    from asp.tune.tuner import calls_to_decide
    from asp.tune.verify import MAX_REOPEN

    cap = calls_to_decide(variants) * (MAX_REOPEN + 1)
    for n in range(1, cap + 1):
        call()
        if decided():
            return n
    raise AssertionError(f"no decision in {cap} calls")


@pytest.fixture
def rng():
    return np.random.default_rng(20261123)


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch):
    """A cache directory of this test's own (for cache and tuning tests)."""
    monkeypatch.setenv("ASP_CACHE_DIR", str(tmp_path / "cache"))
    from asp.jit import cache

    saved = dict(cache._memory)
    cache._memory.clear()
    yield tmp_path / "cache"
    cache._memory.clear()
    cache._memory.update(saved)
