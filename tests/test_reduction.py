"""@reduction: every compiled variant equals NumPy's np.sum/prod/max/min of the terms.

The oracle is NumPy applied to the terms computed by NumPy (vectorized, independent of
asp's own Python reference); every variant runs (``run_variant``), and the suite's
``ASP_PARALLEL_THRESHOLD=0`` with two threads puts each on its parallel branch.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from asp.errors import AspFallbackWarning
from asp.tune import calls_to_decide
from specializers.reduction import reduction
from specializers.reduction.specializer import BLOCK, PREFETCH_BYTES, SCHEDULES

SCALE = 0.5


@reduction("+")
def energy(u, v):
    return u * u + SCALE * v * v


@reduction("*")
def product(x):
    return x


@reduction("max")
def biggest(x):
    return x


@reduction("min")
def smallest(x):
    return -x


@reduction("+")
def count_positive(x):
    return x > 0


@reduction("+")
def clipped(x, lo):
    if x < lo:
        return lo
    return x


def _variants(fn, *args):
    s = fn.jit.specialization(*args, None)
    assert not s.check_failures, s.check_failures
    return {name: fn.jit.run_variant(name, *args, None) for name in s.variant_names}


def _same(got, expected, rtol):
    assert np.asarray(got).dtype == np.asarray(expected).dtype
    if np.asarray(expected).dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=rtol, atol=0)
    else:
        assert got == expected


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-12), (np.float32, 1e-5)])
@pytest.mark.parametrize("shape", [(1,), (1000,), (37, 29), (5, 6, 7)])
def test_energy_every_variant(dtype, rtol, shape, rng):
    u = rng.random(shape).astype(dtype)
    v = rng.random(shape).astype(dtype)
    expected = np.sum(u * u + SCALE * v * v)
    for name, got in _variants(energy, u, v).items():
        assert isinstance(got, np.generic), name
        _same(got, expected, rtol)
    _same(energy(u, v), expected, rtol)


@pytest.mark.parametrize("dtype", [np.int8, np.int32, np.int64, np.uint16, np.uint64, bool])
def test_integer_sums_are_exact_with_numpys_dtype(dtype, rng):
    x = rng.integers(0, 2 if dtype is bool else 100, 5000).astype(dtype)
    for got in _variants(count_positive, x).values():
        _same(got, np.sum(x > 0), 0)
    info = np.iinfo(np.int64)
    big = np.array([info.max, info.max, 3], np.int64)  # wraps, as np.sum does
    for got in _variants(product, big).values():
        with np.errstate(all="ignore"):
            _same(got, np.prod(big), 0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int16, np.uint8])
def test_max_and_min(dtype, rng):
    x = (rng.random(3001) * 200 - (0 if np.dtype(dtype).kind == "u" else 100)).astype(dtype)
    for got in _variants(biggest, x).values():
        _same(got, np.max(x), 0)
    for got in _variants(smallest, x).values():
        with np.errstate(all="ignore"):
            _same(got, np.min(-x), 0)


@pytest.mark.parametrize("where", [0, 1500, 2999])
def test_max_and_min_propagate_nan(where, rng):
    x = rng.random(3000)
    x[where] = np.nan
    for got in (*_variants(biggest, x).values(), *_variants(smallest, x).values()):
        assert math.isnan(got)


def _parallel_loops(fn) -> list:
    """(loop, the condition it runs in parallel under) for each parallel loop of ``fn``."""
    from asp.ir import platform as ir

    found = []

    def walk(node, guard):
        if isinstance(node, ir.If):
            walk(node.then, node.cond)
            if node.orelse is not None:
                walk(node.orelse, guard)
            return
        if isinstance(node, ir.For) and node.parallel is not None:
            found.append((node, guard))
        for child in node.children():
            walk(child, guard)

    walk(fn.body, None)
    return found


@pytest.mark.parametrize("fn, make", [
    (energy, lambda rng: (rng.random(5001), rng.random(5001))),
    (energy, lambda rng: (rng.random((61, 83)).astype(np.float32),
                          rng.random((61, 83)).astype(np.float32))),
    (product, lambda rng: (1 + rng.random(3001) * 1e-3,)),
    (biggest, lambda rng: ((rng.random(4099) * 1000).astype(np.int16),)),
    (smallest, lambda rng: (rng.random(4099),)),
    (count_positive, lambda rng: (rng.integers(-5, 5, 7777).astype(np.int8),)),
    (clipped, lambda rng: (rng.random(3333), 0.25)),
])
def test_parallel_branches_on_a_team_against_the_python(fn, make, rng):
    """Each variant but ``serial`` shares its loop among threads, with the reduction
    clause, on the branch these inputs take (the suite's ASP_PARALLEL_THRESHOLD=0), on a
    team of two or more; every variant equals the Python reference (the function called
    on each element, reduced by NumPy)."""
    from conftest import MIN_THREADS, openmp_max_threads

    threads = openmp_max_threads()
    if threads is not None:
        assert threads >= MIN_THREADS
    args = make(rng)
    spec = fn.jit.specializer
    plan = spec.plan(spec.prepare((*args, None)))
    assert [v.name for v in plan.variants] == ["static", "guided", "prefetch", "serial"]
    for v in plan.variants:
        loops = _parallel_loops(v.function)
        if v.name == "serial":
            assert not loops
            continue
        (loop, guard), = loops
        assert loop.parallel.schedule == SCHEDULES[v.name][0]
        assert "asp_acc" in {name for _, name in loop.reductions}
        assert guard is not None and guard.op == ">" and guard.right.value == 0
    want = spec.run_python((*args, None))
    rtol = 1e-5 if np.asarray(want).dtype == np.float32 else 1e-12
    for name, got in _variants(fn, *args).items():
        if np.asarray(want).dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=rtol, atol=0, err_msg=name)
        else:
            assert got == want, name
        assert np.asarray(got).dtype == np.asarray(want).dtype, name


@pytest.mark.parametrize("n", [1, 127, 128, 129, 255, 256, 257, 511, 1000, 4099])
@pytest.mark.parametrize("dtype", [np.float64, np.int8])
def test_prefetch_blocks_at_every_edge(n, dtype, rng):
    """The prefetch variant's blocks and prefetch bounds at sizes around the block and
    the prefetch distance, for wide and narrow elements, equal NumPy (sum, max with a
    NaN-free start, the product of a wrapping integer)."""
    assert BLOCK == 256 and PREFETCH_BYTES // np.dtype(dtype).itemsize in (128, 1024)
    x = (rng.random(n) * 100 - 50).astype(dtype)
    _same(count_positive.jit.run_variant("prefetch", x, None), np.sum(x > 0), 0)
    with np.errstate(all="ignore"):
        _same(biggest.jit.run_variant("prefetch", x, None), np.max(x), 0)
        _same(smallest.jit.run_variant("prefetch", x, None), np.min(-x), 0)
    if dtype == np.float64:
        y = rng.random(n)
        _same(energy.jit.run_variant("prefetch", x, y, None),
              np.sum(x * x + SCALE * y * y), 1e-12)


def test_empty_arrays_follow_numpy():
    assert energy(np.zeros(0), np.zeros(0)) == 0.0
    assert product(np.zeros(0, np.int32)) == 1
    with pytest.raises(ValueError, match="zero-size"):
        biggest(np.zeros(0))


def test_scalar_arguments_are_weak(rng):
    x = rng.random(500).astype(np.float32)
    got = clipped(x, 0.5)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, np.sum(np.maximum(x, np.float32(0.5))), rtol=1e-5)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hnp.arrays(np.float64, st.integers(1, 300),
                  elements=st.floats(-1e6, 1e6, allow_nan=False)))
def test_property_sum_agrees_with_numpy(x):
    terms = x * x + SCALE * x * x
    tol = 1e-12 * np.sum(np.abs(terms)) + 1e-300
    for got in _variants(energy, x, x).values():
        assert abs(got - np.sum(terms)) <= tol


def test_bad_input_names_the_argument():
    with pytest.raises(ValueError, match="'v' has shape"):
        energy(np.zeros(3), np.zeros(4))
    with pytest.raises(TypeError, match="'u' has dtype complex128"):
        energy(np.zeros(3, complex), np.zeros(3))
    with pytest.raises(TypeError, match=r"energy\(\) missing argument\(s\): 'v'"):
        energy(np.zeros(3))
    with pytest.raises(ValueError, match="op='mean'"):
        reduction("mean")


def test_hot_path_and_a_rebound_constant(rng):
    global SCALE
    u, v = rng.random(100), rng.random(100)
    try:
        for _ in range(calls_to_decide(4)):
            np.testing.assert_allclose(energy(u, v), np.sum(u * u + 0.5 * v * v), rtol=1e-12)
        assert energy.jit._hot is not None
        SCALE = 2.0
        np.testing.assert_allclose(energy(u, v), np.sum(u * u + 2.0 * v * v), rtol=1e-12)
    finally:
        SCALE = 0.5


def test_unsupported_function_falls_back_once(rng):
    @reduction("+")
    def listy(x):
        return [x][0]

    x = rng.random(10)
    with pytest.warns(AspFallbackWarning, match="not supported in a reduction") as rec:
        a = listy(x)
        b = listy(x)
    assert len([w for w in rec if issubclass(w.category, AspFallbackWarning)]) == 1
    assert a == b == np.sum(x)


def test_non_contiguous_inputs(rng):
    u = rng.random((40, 40))[:, ::3]
    with warnings.catch_warnings():
        warnings.simplefilter("error", AspFallbackWarning)
        np.testing.assert_allclose(energy(u, u), np.sum(u * u + 0.5 * u * u), rtol=1e-12)


def test_a_term_only_python_can_represent_runs_as_python():
    @reduction("+")
    def floors(x):
        return math.floor(x) * 0.5

    x = np.array([1e300, 2.5, -1.5])
    with pytest.warns(AspFallbackWarning, match="beyond 64 bits"):
        got = floors(x)
    assert got == np.sum([math.floor(v) * 0.5 for v in x])  # exact big ints, as Python
    assert floors(np.array([2.5, 3.5])) == 2.5


def test_an_integer_term_beyond_64_bits_sums_as_python():
    """The term is typed int64; one element's is a Python int beyond 64 bits: the call
    runs as Python and returns Python's exact sum (it raised OverflowError converting the
    terms to int64; found by the fuzzer's reductions)."""
    @reduction("+")
    def floors3(x):
        return math.floor(x) * 3

    x = np.array([1e30, 2.5, -1.5])
    with pytest.warns(AspFallbackWarning, match="beyond 64 bits"):
        got = floors3(x)
    assert got == sum(math.floor(v) * 3 for v in x) > 2**64  # exact, as Python's
    assert floors3(np.array([2.5, 3.5])) == 15


def test_an_empty_array_on_the_hot_path_still_raises(rng):
    """The hot path skips prepare(): the kernel itself must refuse max of nothing (it read
    the first element past the end: 4.7e-310)."""
    x = rng.random(1)  # the size bucket [0, 2) holds the empty array too
    for _ in range(calls_to_decide(4)):
        assert biggest(x) == x.max()
    assert biggest.jit._hot is not None
    for _ in range(3):
        with pytest.raises(ValueError, match="zero-size"):
            biggest(np.zeros(0))


def test_a_warm_process_returns_a_scalar_too(tmp_path):
    """The warm-start record kept every guard but the scalar result: a second process
    got a 1-element array."""
    import subprocess
    import sys
    import textwrap

    (tmp_path / "red_mod.py").write_text(textwrap.dedent("""
        from specializers.reduction import reduction

        @reduction("+")
        def total(x):
            return 2 * x
    """))
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        import red_mod
        r = red_mod.total(np.arange(10.0))
        print(type(r).__name__, r)
    """))
    outs = []
    for _ in range(2):
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=300)
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout.split())
    assert outs[0] == outs[1] == ["float64", "90.0"]


def test_sizes_are_tuned_apart(rng):
    small, big = rng.random(100), rng.random(200_000)
    p1 = energy.jit.specializer.prepare((small, small, None))
    p2 = energy.jit.specializer.prepare((big, big, None))
    assert p1.signature == p2.signature and p1.bucket != p2.bucket
