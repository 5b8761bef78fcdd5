"""Large outputs allocated by compiled entries are reused, never stale, and bounded."""
from __future__ import annotations

import numpy as np
import pytest

from asp import _native
from specializers.elementwise import elementwise
from tests.conftest import until_decided


@elementwise
def twice_plus_one(x):
    return 2.0 * x + 1.0


def test_freed_large_output_is_reused_with_fresh_values(rng):
    x = rng.random(400_000)  # 3.2 MB: above the reuse threshold
    for _ in range(15):  # let the tuner settle so the hot path allocates
        twice_plus_one(x)
    a = twice_plus_one(x)
    ptr = a.ctypes.data
    del a
    y = rng.random(400_000)
    kept = _native.cached_bytes()
    b = twice_plus_one(y)
    assert _native.cached_bytes() == kept - b.nbytes  # the block came back from the cache
    assert abs(b.ctypes.data - ptr) < 4096  # the same block (placed for y: see below)
    np.testing.assert_array_equal(b, 2.0 * y + 1.0)  # and holds this call's values
    assert b.flags.owndata and b.flags.writeable


def test_small_outputs_do_not_use_the_cache(rng):
    _native.release_cached()
    x = rng.random(1000)
    for _ in range(20):
        twice_plus_one(x)
    assert _native.cached_bytes() == 0


SLOTS = _native.REUSE_SLOTS  # blocks kept at most


def test_cache_is_bounded_and_releasable(rng):
    x = rng.random(300_000)
    outs = [twice_plus_one(x) for _ in range(2 * SLOTS)]
    del outs  # 2.4 MB blocks freed: at most SLOTS are kept
    assert 0 < _native.cached_bytes() <= SLOTS * x.nbytes
    assert _native.release_cached() > 0
    assert _native.cached_bytes() == 0


def test_a_new_size_displaces_the_blocks_kept_longest():
    """Every slot full of one size: a freed block of another size is kept (the oldest
    block goes), so a loop that moves to a new grid size reuses its own outputs."""
    _native.release_cached()
    old = [_native.empty((300_000,), np.float64) for _ in range(SLOTS)]  # 2.4 MB each
    del old
    assert _native.cached_bytes() == SLOTS * 2_400_000
    new = _native.empty((200_000,), np.float64)  # 1.6 MB: not among those kept
    assert _native.cached_bytes() == SLOTS * 2_400_000
    del new
    assert _native.cached_bytes() == (SLOTS - 1) * 2_400_000 + 1_600_000
    again = _native.empty((200_000,), np.float64)  # served from the cache
    assert _native.cached_bytes() == (SLOTS - 1) * 2_400_000
    del again
    assert _native.release_cached() == (SLOTS - 1) * 2_400_000 + 1_600_000


def test_the_block_freed_last_is_reused_first():
    """In a loop ``u = K(u)`` the block freed a step ago is still in cache; an older
    one of the same size (left by an earlier loop) is not."""
    _native.release_cached()
    blocks = [_native.empty((300_000,), np.float64) for _ in range(SLOTS + 1)]
    where = [x.ctypes.data for x in blocks]
    while blocks:  # freed first to last: the last displaces the first from a full cache
        del blocks[0]
    got = [_native.empty((300_000,), np.float64) for _ in range(SLOTS)]
    assert [x.ctypes.data for x in got] == where[:0:-1]  # the last, the one before, ...
    del got
    _native.release_cached()


def test_restricted_entry_serves_only_its_size_bucket(rng):
    from asp.runtime import MISS

    x = rng.random(1000)
    for _ in range(15):
        twice_plus_one(x)
    s = twice_plus_one.jit.specialization(x, None)
    entry = s.entries[s.variant_names[0]].restricted(10, 20)
    assert entry(rng.random(8), None) is MISS
    assert entry(rng.random(20), None) is MISS
    y = rng.random(12)
    np.testing.assert_array_equal(entry(y, None), 2.0 * y + 1.0)


def test_hot_path_does_not_cross_size_buckets(rng):
    small, big = rng.random(8), rng.random(50_000)
    until_decided(lambda: twice_plus_one(big),
                  lambda: twice_plus_one.jit.chosen_variant(big, None) is not None, 4)
    hot = twice_plus_one.jit._hot
    assert hot is not None
    from asp.runtime import MISS

    assert hot(small, None) is MISS  # the big bucket's winner does not serve small arrays
    np.testing.assert_array_equal(twice_plus_one(small), 2.0 * small + 1.0)


def test_byte_swapped_arrays_never_reach_native_code(rng):
    """'>f8' shares float64's type number: the guard must look at the byte order too,
    or a warm entry reads big-endian bytes as little-endian (silently wrong)."""
    from asp.runtime import MISS
    from tests.test_stencil_kernels import Laplacian

    x = rng.random(1000)
    for _ in range(15):
        twice_plus_one(x)
    s = twice_plus_one.jit.specialization(x, None)
    for name in s.variant_names:
        assert s.entries[name](x.astype(">f8"), None) is MISS
    u = rng.random((64, 64))
    want = Laplacian()(u)  # warm: the hot path holds a native entry
    for _ in range(3):  # the slow path computes on a native copy (tests/test_byte_order.py)
        np.testing.assert_array_equal(Laplacian()(u.astype(">f8")), want)


def test_restricted_entry_can_check_another_argument(rng):
    """restricted(lo, hi, arg): the size checked is argument ``arg``'s (a stencil's
    output, when a lookup table comes first)."""
    from asp.runtime import MISS

    x = rng.random(1000)
    twice_plus_one(x)
    s = twice_plus_one.jit.specialization(x, None)
    entry = s.entries[s.variant_names[0]]
    out = np.empty(12)
    y = rng.random(12)
    np.testing.assert_array_equal(entry.restricted(10, 20, 1)(y, out), 2.0 * y + 1.0)
    assert entry.restricted(10, 20, 1)(y, None) is MISS  # no array there: no size
    assert entry.restricted(100, 200, 1)(y, out) is MISS
    with pytest.raises(ValueError, match="arg=5"):
        entry.restricted(10, 20, 5)


def test_a_small_stencil_grid_does_not_choose_for_a_large_one(rng, monkeypatch):
    """Each size bucket is tuned on its own calls: after a 16x16 grid is tuned, calls on
    a 300x300 grid are timed and decided apart, not served by the small grid's winner
    (the Dask split method calls one kernel on whole blocks and on thin strips)."""
    from tests.test_tune_noise import Smooth

    monkeypatch.setenv("ASP_TUNE", "online")
    k = Smooth()
    small, big = rng.random((16, 16)), rng.random((300, 300))
    n = len(k.specialization(small, np.zeros_like(small)).variant_names)
    for a in (small, big):  # k(a) runs k.call_jit(a) (which zeroes a fresh output's border)
        until_decided(lambda a=a: k(a), lambda a=a: k.call_jit(a).chosen_variant(
            a, np.zeros_like(a)) is not None, n)
    np.testing.assert_allclose(k(big), Smooth(pure_python=True)(big), rtol=1e-12)
    s = k.call_jit(big).specialization(big, np.zeros_like(big))
    assert {"n~4^4", "n~4^8"} <= set(s.buckets)
    for bucket in ("n~4^4", "n~4^8"):
        t = s.buckets[bucket]
        assert t.done, bucket
        # Timed apart: each bucket's winner after its own rounds (two at least: racing).
        assert all(len(t.trials[v]) >= 2 for v in t.candidates()), (bucket, t.trials)


def test_a_reopened_bucket_leaves_the_other_buckets_hot(rng):
    """A sampled call that reopens one bucket's decision drops that bucket's hot entry
    only (before, every bucket's: their calls took the slow path until each came by
    once more)."""

    @elementwise
    def third(x):
        return x / 3.0

    small, big = rng.random(100), rng.random(100_000)
    for x in (small, big):
        until_decided(lambda x=x: third(x), lambda x=x: third.jit.chosen_variant(x, None)
                      is not None, 3)
    buckets = {third.specializer.prepare((x, None)).bucket for x in (small, big)}
    assert set(third.jit._hot_buckets) == buckets
    s = third.jit.specialization(big, None)
    gone = third.specializer.prepare((big, None)).bucket
    s.tuning_for(gone).reopen()  # as a sampled call that ran clearly slow does
    s.stale.add(gone)
    np.testing.assert_array_equal(third.jit._slow((big, None)), big / 3.0)
    assert set(third.jit._hot_buckets) == buckets - {gone} and third.jit._hot is not None


def test_calls_alternating_between_size_buckets_stay_on_the_hot_path(rng, monkeypatch):
    """One hot entry per bucket, chained in C: multigrid levels, or a Dask block's
    interior and strips, no longer leave the fast path on every other call."""
    from specializers.elementwise import elementwise

    @elementwise
    def halve(x):
        return x * 0.5

    small, big = rng.random(100), rng.random(100_000)
    for x in (small, big):
        until_decided(lambda x=x: np.testing.assert_array_equal(halve(x), x * 0.5),
                      lambda x=x: halve.jit.chosen_variant(x, None) is not None, 3)
    assert len(halve.jit._hot_buckets) == 2

    def no_slow_path(args):
        raise AssertionError("left the hot path")

    monkeypatch.setattr(halve.jit, "_slow", no_slow_path)
    for _ in range(5):
        for x in (small, big):
            np.testing.assert_array_equal(halve(x), x * 0.5)
    with pytest.raises(AssertionError, match="left the hot path"):
        halve(rng.random(5000))  # a third bucket, not tuned yet


def _half_a_page_from(a: np.ndarray) -> int:
    return ((a.ctypes.data + 2048) % 4096) & ~63


def test_an_output_starts_half_a_page_from_its_input(rng):
    """A streaming kernel whose output starts at its input's offset in a 4 KiB page makes
    its loads wait on its stores (4K aliasing): outputs start half a page off, aligned."""
    buf = rng.random(300_000 + 600)
    for skip in (0, 1, 2, 8, 125, 500):  # inputs at several offsets in their pages
        x = buf[skip:skip + 300_000]
        out = _native.empty(x.shape, x.dtype, x)
        assert out.ctypes.data % 4096 == _half_a_page_from(x), skip
        assert out.ctypes.data % 64 == 0 and out.flags.owndata
        del out
        # The same block, placed for this input, by a compiled entry's allocation too.
        for _ in range(15):
            twice_plus_one(x)
        y = twice_plus_one(x)
        assert y.ctypes.data % 4096 == _half_a_page_from(x), skip
        np.testing.assert_array_equal(y, 2.0 * x + 1.0)
    with pytest.raises(TypeError, match="near"):
        _native.empty((300_000,), np.float64, [0.0])


def test_a_stencil_call_output_starts_half_a_page_from_its_grid(rng):
    from tests.test_stencil_kernels import Weighted

    k = Weighted()
    buf = rng.random(200 * 300 + 300)
    for skip in (0, 3, 200):
        u = buf[skip:skip + 200 * 300].reshape(200, 300)
        for _ in range(3):  # the first call plans, the next ones are remembered
            out = k(u, -4.0, 1.0)
            assert out.ctypes.data % 4096 == _half_a_page_from(u), skip
        want = -4.0 * u[1:-1, 1:-1] + u[:-2, 1:-1] + u[2:, 1:-1] + u[1:-1, :-2] + u[1:-1, 2:]
        np.testing.assert_allclose(out[1:-1, 1:-1], want, rtol=1e-12)


def test_a_reused_output_can_be_resized():
    """NumPy's resize reallocates through the handler: the values survive, the block
    returns to the cache with its size."""
    _native.release_cached()
    a = _native.empty((200_000,), np.float64)
    a[...] = np.arange(200_000)
    a.resize((300_000,), refcheck=False)
    np.testing.assert_array_equal(a[:200_000], np.arange(200_000))
    a.resize((150_000,), refcheck=False)
    np.testing.assert_array_equal(a, np.arange(150_000))
    del a
    assert _native.cached_bytes() == 1_600_000 + 2_400_000 + 1_200_000
    assert _native.release_cached() == 5_200_000
