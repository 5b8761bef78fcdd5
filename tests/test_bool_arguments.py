"""Bool arguments are bools: before 2026-12-07 a Python ``True`` or ``np.True_`` passed to
a kernel was typed as the int 1 (the call's signature, guard and C type an int's), so
``add(mask, True)`` with ``add = x + y`` returned int64 ``[1, 2, ...]`` where Python,
element by element, gives NumPy bools (``np.True_ + True`` is ``np.True_``): silently
wrong values and dtype.  Now a Python bool is a weak bool and ``np.bool_`` a strong one,
each with a signature and a C-side guard of its own: an int's compiled code never serves
a bool, nor a bool's an int."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from specializers.elementwise import elementwise
from specializers.reduction import reduction
from specializers.stencil import StencilKernel


@elementwise
def add(x, y):
    return x + y


@elementwise
def flag_or_value(x, flag):
    return flag if x > 2 else x


@reduction("+")
def count_plus(x, flag):
    return x + flag


def _per_element(fn, x, *rest):
    """What the kernel's Python gives, element by element (the reference)."""
    return np.array([fn.py_func(v, *rest) for v in x])


@pytest.mark.parametrize("flag", [True, False, np.True_, np.False_, 1, 0])
def test_a_bool_argument_meets_a_bool_array_as_numpy_does(flag):
    mask = np.arange(-3000, 3000) % 3 == 0  # past the parallel threshold (conftest: 0)
    want = _per_element(add, mask, flag)
    s = add.jit.specialization(mask, flag, None)
    assert not s.check_failures, s.check_failures
    for got in [add(mask, flag), *(add.jit.run_variant(v, mask, flag, None)
                                  for v in s.variant_names)]:
        assert got.dtype == want.dtype, (flag, got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)


def test_bool_and_int_arguments_never_share_compiled_code():
    """Called with 1, then True, then 1 again in one process (the hot path serves the
    first signature's code from its C-side guard): each gets its own type."""
    mask = np.arange(40) % 2 == 0
    for flag, dtype in ((1, np.int64), (True, np.bool_), (np.True_, np.bool_), (1, np.int64),
                        (True, np.bool_)):
        for _ in range(3):
            got = add(mask, flag)
            assert got.dtype == dtype, (flag, got.dtype)
            np.testing.assert_array_equal(got, mask + flag)
    i8 = np.arange(-20, 20, dtype=np.int8)
    for flag in (True, np.True_, 1):  # an int8 with a bool or a Python int: int8
        assert add(i8, flag).dtype == np.int8
        np.testing.assert_array_equal(add(i8, flag), i8 + flag)


def test_a_returned_bool_argument_is_a_bool():
    x = np.arange(6, dtype=np.int16)
    for flag in (True, np.False_):
        want = _per_element(flag_or_value, x, flag)
        got = flag_or_value(x, flag)
        assert got.dtype == want.dtype == np.int16  # a bool beside an int16: int16
        np.testing.assert_array_equal(got, want)


def test_a_reduction_of_bools_plus_a_bool_counts_as_numpy_does():
    mask = np.arange(-5000, 5000) % 7 == 0
    for flag in (True, np.True_, False, 1):
        want = np.sum(_per_element(count_plus, mask, flag))
        got = count_plus(mask, flag)
        assert got == want and got.dtype == want.dtype, (flag, got, want)


class Doubled(StencilKernel):
    def kernel(self, u, flag, out):
        for x in out.interior_points():
            out[x] = u[x] + (flag + flag)


def test_a_stencil_adds_bools_as_bools():
    """``flag + flag`` of two NumPy bools is ``True`` (1 stored), of Python ints 2."""
    u = np.arange(30.0).reshape(5, 6)
    for flag, add_ in ((True, 2.0), (np.True_, 1.0), (1, 2.0)):
        want = np.zeros_like(u)
        want[1:-1, 1:-1] = u[1:-1, 1:-1] + add_
        np.testing.assert_array_equal(Doubled()(u, flag), want)


def test_a_new_process_warm_started_from_a_record_keeps_the_bool(tmp_path):
    """The warm-start record of a bool call (its guards: a Python bool, a NumPy bool)
    serves bools in the next process, and an int call there gets its own code."""
    (tmp_path / "boolk.py").write_text(textwrap.dedent("""
        from specializers.elementwise import elementwise

        @elementwise
        def add(x, y):
            return x + y
    """))
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        import boolk
        mask = np.arange(50) % 3 == 0
        for flag in (True, np.True_, 1, True):
            got = boolk.add(mask, flag)
            print(got.dtype, int(got.sum()))
    """))
    env = dict(os.environ, ASP_CACHE_DIR=str(tmp_path / "cache"))
    outs = []
    for _ in range(2):  # the second process starts from the first one's records
        done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                              timeout=300, env=env)
        assert done.returncode == 0, done.stderr
        outs.append(done.stdout.split())
    ones = int((np.arange(50) % 3 == 0).sum())
    want = ["bool", "50", "bool", "50", "int64", str(50 + ones), "bool", "50"]
    assert outs == [want, want]
