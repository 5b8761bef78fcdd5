"""``@elementwise`` and ``@reduction`` kernels on dask arrays, as NumPy's ufuncs and
``np.sum`` take them: a lazy dask array computed block by block (``TypeError: argument
'x' must be a numpy array or a number, not Array`` before).  A reduction reduces each
block and then the blocks' results; chunks that differ between the arguments are made
common first; NumPy arrays among the arguments are split like the dask ones."""
from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pytest

from specializers.elementwise import elementwise
from specializers.reduction import reduction


@elementwise
def damped(x, y, a=0.5):
    return x * x - a * y if x > y else y / (1.0 + x * x)


@reduction("+")
def energy(u, v):
    return u * u + 0.5 * v * v


@reduction("max")
def peak(u, shift):
    return u + shift


@reduction("*")
def wrapped(k):
    return k * 3 + 1


@pytest.fixture(autouse=True)
def threads():
    with dask.config.set(scheduler="threads", num_workers=2):
        yield


def test_elementwise_on_dask_arrays_is_the_call_on_the_whole_arrays(rng):
    x, y = rng.standard_normal((2, 300, 170))
    xd = da.from_array(x, chunks=(70, 90))
    got = damped(xd, y, a=0.25)  # a NumPy array beside a dask one: split like it
    assert isinstance(got, da.Array) and got.dtype == np.float64
    np.testing.assert_array_equal(got.compute(), damped(x, y, 0.25))
    f32 = damped(xd.astype(np.float32), np.float32(2.0))
    assert f32.dtype == np.float32 == damped(x.astype(np.float32), np.float32(2.0)).dtype
    with pytest.raises(TypeError, match="argument 'out' cannot be given with dask arrays"):
        damped(xd, y, out=np.zeros_like(x))
    with pytest.raises(ValueError, match="argument 'y' has shape"):
        damped(xd, y[:10])


def test_reductions_on_dask_arrays_reduce_the_blocks_then_their_results(rng):
    u, v = rng.random((2, 310, 200))
    ud, vd = da.from_array(u, chunks=(70, 90)), da.from_array(v, chunks=(100, 45))
    total = energy(ud, vd)  # chunks that differ: made common
    assert isinstance(total, da.Array) and total.shape == ()
    assert total.compute() == pytest.approx(np.sum(u * u + 0.5 * v * v), rel=1e-12)
    assert peak(ud, -1.0).compute() == np.max(u - 1.0)
    k = rng.integers(-50, 50, 4001).astype(np.int64)
    kd = da.from_array(k, chunks=600)
    assert wrapped(kd).compute() == wrapped(k)  # wrapping products: exact in any order
    assert energy(ud[:0], vd[:0]).compute() == 0.0
    with pytest.raises(ValueError, match="zero-size"):
        peak(ud[:0], 0.0).compute()
    parts = da.concatenate([ud[:100], ud[100:100], ud[100:]])  # an empty chunk between
    assert peak(parts, 0.0).compute() == np.max(u)
