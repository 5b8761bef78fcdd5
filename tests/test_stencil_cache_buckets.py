"""Streaming-store variants are not tuned for grids that fit in the L3 cache.

A streamed output bypasses the cache, so the next step of a loop reads it back from
memory: on a Zen 2 with 16 MiB of L3, ``u = K(u)`` at 1024^2 ran 289 us a step with
``static`` against 437-701 with the streaming variants, which the online tuner (timing
calls on one input) had crowned in some runs.  The size buckets whose grids fit are
tuned without them; larger buckets keep them (2048^2: ``stream_jam4`` 1.35x faster).
"""
from __future__ import annotations

import numpy as np
import pytest

from asp import config
from asp.codegen import streaming
from asp.runtime import wait_for_builds
from specializers.stencil import StencilKernel

L3 = 4 << 20  # a 4 MiB L3: 256^2 float64 grids fit, 1024^2 do not


class Heat(StencilKernel):
    """Writes each output point once and never reads it: it has streaming variants."""

    def kernel(self, u, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + 0.1 * lap


class Smooth(StencilKernel):
    """Another such kernel (compiled code is shared per class: a tuning of its own)."""

    def kernel(self, u, out):
        for x in out.interior_points():
            s = 0.5 * u[x]
            for y in u.neighbors(x, 1):
                s += 0.125 * u[y]
            out[x] = s


@pytest.fixture
def small_l3(monkeypatch):
    monkeypatch.setattr(config, "cache_sizes", lambda: (32 << 10, 256 << 10, L3))
    streaming.unsuited_in_cache.cache_clear()
    yield
    streaming.unsuited_in_cache.cache_clear()


def _bucket(k, a):
    """The tuning of ``a``'s size bucket, once every late variant has joined it."""
    out = np.zeros_like(a)
    k.kernel(a, out)
    wait_for_builds()
    for _ in range(3):
        k.kernel(a, out)
    jit = k.jit_for(a, out)
    s = jit.specialization(a, out)
    prepared = jit.specializer.prepare((a, out))
    return s.tuning_for(prepared.bucket), jit


def test_streaming_variants_sit_out_the_buckets_that_fit_in_cache(small_l3, rng):
    k = Heat()
    small, large = rng.random((256, 256)), rng.random((1024, 1024))
    t, jit = _bucket(k, small)
    streaming = [v for v in t.variants if v == "stream" or v.startswith("stream_")]
    assert len(streaming) >= 2, t.variants  # 'stream' and the jam space's points
    for v in streaming:
        assert "fit in the L3 cache" in t.excluded.get(v, ""), (v, t.excluded)
    assert "static" not in t.excluded
    # The online tuner decides among the rest; the results are the kernel's.
    for _ in range(200):
        out = np.zeros_like(small)
        k.kernel(small, out)
        if jit.chosen_variant(small, out) is not None:
            break
    assert jit.chosen_variant(small, np.zeros_like(small)) not in streaming
    want = Heat(pure_python=True)(small)
    np.testing.assert_allclose(k(small), want, rtol=1e-12)

    t_large, _ = _bucket(k, large)
    assert not any(v.startswith("stream") for v in t_large.excluded), t_large.excluded
    assert set(streaming) <= set(t_large.candidates()) | set(t_large.pending)


def test_no_l3_reported_leaves_every_variant_in(monkeypatch, rng):
    monkeypatch.setattr(config, "cache_sizes", lambda: (32 << 10, 256 << 10, 0))
    streaming.unsuited_in_cache.cache_clear()
    try:
        t, _ = _bucket(Smooth(), rng.random((256, 256)))
        assert any(v.startswith("stream") for v in t.variants), t.variants
        assert not any(v.startswith("stream") for v in t.excluded), t.excluded
    finally:
        streaming.unsuited_in_cache.cache_clear()


def test_a_hosts_l3_counts_only_as_far_as_this_processs_cpus_share_it(monkeypatch, rng):
    # A VM's sysfs reports its host socket's L3: 300 MiB on a 2-vCPU Intel Xeon VM, where
    # 4096^2 float64 grids (128 MiB) did not stay in cache from one step to the next
    # (stream_jam4 6.7-6.9 ms a step in a loop against 10.9-11.3 for static).  asp counts
    # at most L3_PER_L2 times a core's L2 per CPU it may run on.
    monkeypatch.setattr(config.os, "sched_getaffinity", lambda pid: {0, 1})
    share = config.L3_PER_L2 * (256 << 10) * 2  # 4 MiB
    assert config.l3_share(256 << 10, 300 << 20) == share
    assert config.l3_share(256 << 10, 2 << 20) == 2 << 20  # a smaller L3: all of it
    monkeypatch.setattr(config, "cache_sizes", lambda: (32 << 10, 256 << 10, 300 << 20))
    streaming.unsuited_in_cache.cache_clear()
    try:
        k = Smooth()
        t, _ = _bucket(k, rng.random((1024, 1024)))  # 8 MiB a grid: beyond the share
        assert any(v.startswith("stream") for v in t.variants), t.variants
        assert not any(v.startswith("stream") for v in t.excluded), t.excluded
        t, _ = _bucket(k, rng.random((256, 256)))  # 512 KiB: within it
        streamed = [v for v in t.variants if v.startswith("stream")]
        assert streamed and all("share: 4096 KiB" in t.excluded.get(v, "")
                                for v in streamed), t.excluded
    finally:
        streaming.unsuited_in_cache.cache_clear()
