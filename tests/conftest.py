"""Shared test setup: a private cache directory per test session, strict fallback off."""
from __future__ import annotations

import contextlib
import os

import numpy as np
import pytest


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
    old = os.environ.get("ASP_CACHE_DIR")
    os.environ["ASP_CACHE_DIR"] = str(path)
    for name in ("ASP_STRICT", "ASP_DISABLE_JIT", "ASP_DUMP_IR", "ASP_CC", "ASP_CFLAGS"):
        os.environ.pop(name, None)
    os.environ.setdefault("ASP_TUNE", "online")
    yield path
    if old is None:
        os.environ.pop("ASP_CACHE_DIR", None)
    else:
        os.environ["ASP_CACHE_DIR"] = old


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
