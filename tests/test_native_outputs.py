"""Large outputs allocated by compiled entries are reused, never stale, and bounded."""
from __future__ import annotations

import numpy as np

from asp import _native
from specializers.elementwise import elementwise


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
    b = twice_plus_one(y)
    assert b.ctypes.data == ptr  # the block came back from the cache
    np.testing.assert_array_equal(b, 2.0 * y + 1.0)  # and holds this call's values
    assert b.flags.owndata and b.flags.writeable


def test_small_outputs_do_not_use_the_cache(rng):
    _native.release_cached()
    x = rng.random(1000)
    for _ in range(20):
        twice_plus_one(x)
    assert _native.cached_bytes() == 0


def test_cache_is_bounded_and_releasable(rng):
    x = rng.random(300_000)
    outs = [twice_plus_one(x) for _ in range(8)]
    del outs  # eight 2.4 MB blocks freed: at most four are kept
    assert 0 < _native.cached_bytes() <= 4 * x.nbytes
    assert _native.release_cached() > 0
    assert _native.cached_bytes() == 0


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
    for _ in range(15):
        twice_plus_one(big)
    hot = twice_plus_one.jit._hot
    assert hot is not None
    from asp.runtime import MISS

    assert hot(small, None) is MISS  # the big bucket's winner does not serve small arrays
    np.testing.assert_array_equal(twice_plus_one(small), 2.0 * small + 1.0)


def test_byte_swapped_arrays_never_reach_native_code(rng):
    """'>f8' shares float64's type number: the guard must look at the byte order too,
    or a warm entry reads big-endian bytes as little-endian (silently wrong)."""
    import pytest

    from asp.runtime import MISS
    from tests.test_stencil_kernels import Laplacian

    x = rng.random(1000)
    for _ in range(15):
        twice_plus_one(x)
    s = twice_plus_one.jit.specialization(x, None)
    for name in s.variant_names:
        assert s.entries[name](x.astype(">f8"), None) is MISS
    u = rng.random((64, 64))
    Laplacian()(u)  # warm: the hot path holds a native entry
    with pytest.raises(TypeError, match="argument 'in_grid' has dtype >f8"):
        Laplacian()(u.astype(">f8"))
