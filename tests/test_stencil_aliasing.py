"""Streamed rows and 4K aliasing: the lag rule, and every streaming variant right whichever
page offset its output starts at (the ring of lines runs when the offsets alias)."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest

from asp.jit import build
from specializers.stencil.aliasing import LAG, LOOKAHEAD
from specializers.stencil.variants import PREAMBLE
from tests.test_stencil_kernels import Weighted, python_result

_RULE = "#include <stdint.h>\n#include <math.h>\n" + PREAMBLE + r"""
int64_t lag_for(uintptr_t out, uintptr_t in, int64_t below, int64_t above) {
    return asp_pick_lag(asp_alias_bits(out, in, below, above));
}
"""


@pytest.fixture(scope="module")
def lag_for():
    fn = build(_RULE, kernel="tests:alias_rule").cdll.lag_for
    fn.argtypes = [ctypes.c_size_t, ctypes.c_size_t, ctypes.c_int64, ctypes.c_int64]
    fn.restype = ctypes.c_int64
    return lambda out, inp, below=8, above=8: fn(out, inp, below, above)


def test_the_lag_moves_the_stores_out_of_the_band_the_loads_reach(lag_for):
    base = 1 << 20
    # The output at the input's page offset, or a little past it (two NumPy arrays of
    # one size; a row's neighbours): the loads of the points ahead would wait on the
    # pending stores.
    for d in (0, 8, 64, 128, 256, 3 * 4096):
        assert lag_for(base + d, base) == LAG, d
    # Clear of the band: stored at once.
    for d in (LOOKAHEAD + 8, 1024, 2048, 4096 - 64, 4096 - 8, 4096 + 2048):
        assert lag_for(base + d, base) == 0, d
    # Clear at once, though the lag would have moved the stores into the band: no lag.
    assert lag_for(base + 64 * LAG + 64, base) == 0
    # A row read only at the point, not before it: its own page offset is clear.
    assert lag_for(base, base, 0, 0) == 0
    assert lag_for(base + 8, base, 0, 0) == LAG
    # A wider reach before the point widens the band below the store.
    assert lag_for(base + 4096 - 100, base, 8, 8) == 0
    assert lag_for(base + 4096 - 100, base, 128, 8) == LAG


def at_offset(shape, dtype, offset: int) -> np.ndarray:
    """A zeroed C-contiguous array whose data starts ``offset`` bytes into a 4 KiB page."""
    size = int(np.prod(shape)) * np.dtype(dtype).itemsize
    buf = np.zeros(size + 8192, np.uint8)
    start = (offset - buf.ctypes.data) % 4096
    a = buf[start:start + size].view(dtype).reshape(shape)
    assert a.ctypes.data % 4096 == offset % 4096
    return a


# Rows whole numbers of lines (the jammed path) and not; rows of fewer lines than the
# lag (every line waits in the ring to the row's end); 3-D planes.
SHAPES = [(40, 512), (37, 200), (21, 48), (9, 4, 64), (6, 7, 136)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("offset", [0, 64, 192, 2048, 64 * LAG + 64, 8])
def test_every_streaming_variant_at_every_page_offset(shape, dtype, offset, rng):
    src = at_offset(shape, dtype, 0)
    src[...] = rng.random(shape)
    for kernel in (Weighted(), Weighted(boundary="wrap")):
        args = (src, -2.0 * len(shape), 1.0)
        want = python_result(type(kernel), (*args, np.zeros(shape, dtype)),
                             boundary=kernel.boundary)
        names = kernel.specialization(*args, np.zeros(shape, dtype)).variant_names
        streaming = [n for n in names if n.startswith("stream")]
        assert streaming, names
        for name in streaming:
            out = at_offset(shape, dtype, offset)
            got = kernel.run_variant(name, *args, out)
            np.testing.assert_allclose(got, want, rtol=1e-5 if dtype == np.float32 else 1e-12,
                                       atol=1e-6, err_msg=f"{name} at page offset {offset}")
