"""The raw-C form: a C snippet over rows, serial and threaded, with every input checked."""
from __future__ import annotations

import numpy as np
import pytest

from asp.errors import AspFallbackWarning, CompileError
from specializers.elementwise import (
    call_c_function,
    call_c_function_parallel,
    make_c_function,
    wait_for_parallel_finish,
)

POLY = "return 3*x*x*x + 2*x*x + x + 1;"
DTYPES = {"int": np.intc, "long": np.int_, "float": np.float32, "double": np.float64}


@pytest.fixture(scope="module")
def fns():
    """One compiled function per C type (compiled once for the module)."""
    return {ct: make_c_function(POLY, [(ct, "x")], ct) for ct in DTYPES}


@pytest.fixture(scope="module")
def axpy():
    return make_c_function("return a * x + y;", [("double", "a"), ("double", "x"),
                                                 ("double", "y")], "double")


def _x(ct, shape=(12,)):
    n = int(np.prod(shape))
    return (np.arange(n) - n // 2).reshape(shape).astype(DTYPES[ct])


def _poly(x):
    return 3 * x * x * x + 2 * x * x + x + 1


@pytest.mark.parametrize("ct", list(DTYPES))
def test_call_c_function_all_rows(fns, ct):
    x = _x(ct)
    y = np.zeros_like(x)
    assert call_c_function(fns[ct], (x, y), 0, len(x)) is None
    np.testing.assert_array_equal(y, _poly(x))


@pytest.mark.parametrize("ct", list(DTYPES))
def test_call_c_function_partial_rows_2d(fns, ct):
    x = _x(ct, (6, 4))
    y = np.full_like(x, 7)
    call_c_function(fns[ct], (x, y), 2, 5)
    np.testing.assert_array_equal(y[2:5], _poly(x[2:5]))
    assert np.all(y[:2] == 7) and np.all(y[5:] == 7)
    call_c_function(fns[ct], (x, y), 3, 3)  # an empty range does nothing
    assert np.all(y[:2] == 7)


@pytest.mark.parametrize("ct", list(DTYPES))
@pytest.mark.parametrize("mode", [1, 2])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_modes_and_threads(fns, ct, mode, threads):
    x = _x(ct, (11, 3))
    y = np.zeros_like(x)
    h = call_c_function_parallel(fns[ct], (x, y), 0, 11, threads, mode)
    assert wait_for_parallel_finish(h) is None
    np.testing.assert_array_equal(y, _poly(x))


@pytest.mark.parametrize("mode", [1, 2])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_parallel_partial_row_range(fns, mode, threads):
    x = _x("double", (10,))
    y = np.full_like(x, -1.0)
    wait_for_parallel_finish(call_c_function_parallel(fns["double"], (x, y), 3, 8, threads,
                                                      mode))
    np.testing.assert_array_equal(y[3:8], _poly(x[3:8]))
    assert np.all(y[:3] == -1) and np.all(y[8:] == -1)


def test_more_threads_than_rows(fns):
    x = _x("double", (2, 5))
    y = np.zeros_like(x)
    for mode in (1, 2):
        wait_for_parallel_finish(call_c_function_parallel(fns["double"], (x, y), 0, 2, 3,
                                                          mode))
        np.testing.assert_array_equal(y, _poly(x))


def test_several_inputs_and_3d(axpy):
    a = np.full((3, 2, 4), 2.0)
    x = np.arange(24.0).reshape(3, 2, 4)
    y = np.ones((3, 2, 4))
    out = np.zeros((3, 2, 4))
    call_c_function(axpy, (a, x, y, out), 0, 3)
    np.testing.assert_array_equal(out, 2 * x + 1)
    out2 = np.zeros_like(out)
    wait_for_parallel_finish(call_c_function_parallel(axpy, [a, x, y, out2], 0, 3, 2, 1))
    np.testing.assert_array_equal(out2, out)


def test_non_contiguous_inputs_are_copied(axpy):
    base = np.arange(40.0)
    x = base[::2]
    a = np.full(20, 3.0)
    y = base[1::2]
    out = np.zeros(20)
    call_c_function(axpy, (a, x, y, out), 0, 20)
    np.testing.assert_array_equal(out, 3 * x + y)


def test_output_may_be_one_of_the_inputs(fns):
    x = _x("double")
    expected = _poly(x)
    call_c_function(fns["double"], (x, x), 0, len(x))
    np.testing.assert_array_equal(x, expected)


def test_mixed_types_and_conversion():
    f = make_c_function("return (long)(x * k);", [("float", "x"), ("int", "k")], "long")
    x = np.array([0.5, 1.5, 2.5], np.float32)
    k = np.array([2, 3, 4], np.intc)
    out = np.zeros(3, np.int_)
    call_c_function(f, (x, k, out), 0, 3)
    assert out.tolist() == [1, 4, 10]


def test_math_in_c():
    f = make_c_function("double r = sqrt(x);\nreturn r > 2.0 ? r : -r;", [("double", "x")],
                        "double")
    x = np.array([1.0, 4.0, 9.0])
    out = np.zeros(3)
    call_c_function(f, (x, out), 0, 3)
    np.testing.assert_array_equal(out, [-1.0, -2.0, 3.0])


# -- bad input -----------------------------------------------------------------------------------

def test_wrong_dtype(fns):
    x = np.arange(5.0)
    with pytest.raises(TypeError, match=r"arrays\[0\] \(x\) has dtype float64; the C type int"):
        call_c_function(fns["int"], (x, np.zeros(5, np.intc)), 0, 5)
    with pytest.raises(TypeError, match=r"arrays\[1\] \(output\) has dtype float32"):
        call_c_function(fns["double"], (x, np.zeros(5, np.float32)), 0, 5)


def test_wrong_count(fns, axpy):
    x = np.arange(5.0)
    with pytest.raises(ValueError, match="holds 1 arrays; this function needs 2"):
        call_c_function(fns["double"], (x,), 0, 5)
    with pytest.raises(ValueError, match="needs 4"):
        call_c_function(axpy, (x, x, x, x, x), 0, 5)
    with pytest.raises(ValueError, match="needs 2"):
        call_c_function_parallel(fns["double"], (x, x, x), 0, 5, 2, 1)


def test_mismatched_shapes(fns, axpy):
    with pytest.raises(ValueError, match=r"arrays\[1\] \(output\) has shape \(4,\); "
                                         r"expected \(5,\)"):
        call_c_function(fns["double"], (np.zeros(5), np.zeros(4)), 0, 4)
    with pytest.raises(ValueError, match=r"arrays\[1\] \(x\)"):
        call_c_function(axpy, (np.zeros((2, 3)), np.zeros((3, 2)), np.zeros((2, 3)),
                               np.zeros((2, 3))), 0, 2)


@pytest.mark.parametrize("start, end", [(-1, 3), (0, 6), (4, 2), (6, 6)])
def test_bad_rows(fns, start, end):
    x = np.zeros(5)
    with pytest.raises(ValueError, match=r"rows \[.*\) are not within \[0, 5\]"):
        call_c_function(fns["double"], (x, np.zeros(5)), start, end)
    with pytest.raises(ValueError, match="rows"):
        call_c_function_parallel(fns["double"], (x, np.zeros(5)), start, end, 2, 2)


@pytest.mark.parametrize("start, end", [(0.0, 5), (0, "5"), (None, 5), (True, 5)])
def test_non_integer_rows(fns, start, end):
    with pytest.raises(TypeError, match="_row must be an integer"):
        call_c_function(fns["double"], (np.zeros(5), np.zeros(5)), start, end)


def test_numpy_integer_rows_are_fine(fns):
    x = _x("double")
    y = np.zeros_like(x)
    call_c_function(fns["double"], (x, y), np.int64(0), np.int32(len(x)))
    np.testing.assert_array_equal(y, _poly(x))


@pytest.mark.parametrize("mode", [0, 3, "1", None, 1.5])
def test_bad_mode(fns, mode):
    x = np.zeros(4)
    with pytest.raises(ValueError, match="access_mode must be 1 .* or 2"):
        call_c_function_parallel(fns["double"], (x, np.zeros(4)), 0, 4, 2, mode)


@pytest.mark.parametrize("threads", [0, -1, 1.5, "2", None, True])
def test_bad_thread_count(fns, threads):
    x = np.zeros(4)
    with pytest.raises(ValueError, match="num_threads must be a positive integer"):
        call_c_function_parallel(fns["double"], (x, np.zeros(4)), 0, 4, threads, 1)


def test_read_only_output(fns):
    x = np.zeros(4)
    y = np.zeros(4)
    y.flags.writeable = False
    with pytest.raises(ValueError, match="output array is read-only"):
        call_c_function(fns["double"], (x, y), 0, 4)
    with pytest.raises(ValueError, match="read-only"):
        call_c_function_parallel(fns["double"], (x, y), 0, 4, 2, 1)


def test_non_contiguous_or_overlapping_output(fns):
    x = np.zeros(4)
    with pytest.raises(ValueError, match="output array must be C-contiguous"):
        call_c_function(fns["double"], (x, np.zeros(8)[::2]), 0, 4)
    buf = np.zeros(6)
    with pytest.raises(ValueError, match="overlaps an input"):
        call_c_function(fns["double"], (buf[:4], buf[2:]), 0, 4)


@pytest.mark.parametrize("bad", [[1.0, 2.0], None, 3.0, "x"])
def test_non_array(fns, bad):
    with pytest.raises(TypeError, match=r"arrays\[0\] \(x\) must be a numpy array"):
        call_c_function(fns["double"], (bad, np.zeros(2)), 0, 2)


def test_zero_dimensional_arrays(fns):
    with pytest.raises(ValueError, match="at least one dimension"):
        call_c_function(fns["double"], (np.array(1.0), np.array(0.0)), 0, 0)


def test_bad_function_and_arrays_container(fns):
    x = np.zeros(3)
    with pytest.raises(TypeError, match="make_c_function"):
        call_c_function(lambda v: v, (x, x), 0, 3)
    with pytest.raises(TypeError, match="tuple of numpy arrays"):
        call_c_function(fns["double"], x, 0, 3)
    with pytest.raises(TypeError, match="call_c_function_parallel"):
        wait_for_parallel_finish(None)


@pytest.mark.parametrize("code, inputs, out, exc, words", [
    (POLY, [("char*", "x")], "double", TypeError, r"inputs\[0\]: C type 'char\*' is not supported"),
    (POLY, [("double", "x")], "complex", TypeError, "out_ctype 'complex'"),
    (POLY, [], "double", TypeError, "non-empty list"),
    (POLY, "double x", "double", TypeError, "non-empty list"),
    (POLY, [("double",)], "double", TypeError, r"inputs\[0\] must be a \(ctype, name\) pair"),
    (POLY, [("double", "1x")], "double", ValueError, "not a usable C parameter name"),
    (POLY, [("double", "out")], "double", ValueError, "not a usable C parameter name"),
    (POLY, [("double", "x"), ("int", "x")], "double", ValueError, "distinct"),
    ("x + 1;", [("double", "x")], "double", ValueError, "returns"),
    (None, [("double", "x")], "double", ValueError, "must be a string"),
])
def test_make_c_function_rejects_bad_declarations(code, inputs, out, exc, words):
    with pytest.raises(exc, match=words):
        make_c_function(code, inputs, out)


def test_c_syntax_error_is_a_compile_error():
    with pytest.raises(CompileError) as info:
        make_c_function("return x +* ;", [("double", "x")], "double")
    assert "error" in str(info.value)
    assert info.value.stage == "compile"


def test_runtime_thread_errors_are_reraised_by_wait(fns, monkeypatch):
    from specializers.elementwise import rawc

    def boom(*args):
        raise RuntimeError("thread failed")

    monkeypatch.setattr(rawc, "_run", boom)
    x = np.zeros(4)
    h = call_c_function_parallel(fns["double"], (x, np.zeros(4)), 0, 4, 2, 2)
    with pytest.raises(RuntimeError, match="thread failed"):
        wait_for_parallel_finish(h)
    assert h.finished


# -- names checked before gcc runs; build faults fall back to the Python twin ----------------

@pytest.mark.parametrize("name, words", [
    ("int", "C keyword"), ("restrict", "C keyword"), ("_Bool", "C keyword"),
    ("NAN", "macro"), ("INFINITY", "macro"), ("M_PI", "macro"), ("isnan", "macro"),
    ("INT64_MAX", "macro"), ("UINT8_C", "macro"), ("errno", "macro"),
    ("x\n", "not a C identifier"), ("x ", "not a C identifier"), ("é", "not a C identifier"),
    ("__x", "reserved"), ("_Tmp", "reserved"), ("int64_t", "reserved"), ("size_t", "reserved"),
    ("asp_rows", "generated code"),
])
def test_make_c_function_rejects_unusable_names_before_gcc(monkeypatch, name, words):
    from specializers.elementwise import rawc

    def no_gcc(*args, **kwargs):
        raise AssertionError("the C compiler must not run for a bad name")

    monkeypatch.setattr(rawc, "build", no_gcc)
    with pytest.raises(ValueError, match=r"inputs\[1\]: .* is not a usable C parameter name: "
                                         rf"it .*{words}"):
        make_c_function("return a;", [("double", "a"), ("double", name)], "double")


def _fault(kind, monkeypatch):
    """Make the next build fail as ``kind`` would; returns the C code to build."""
    import errno
    import os
    import tempfile
    import uuid

    code = f"/* {uuid.uuid4().hex} */ return 3*x*x*x + 2*x*x + x + 1;"
    if kind == "EFBIG":
        from asp.jit import trust

        def too_large(fd, data):
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        monkeypatch.setattr(trust, "_write", too_large)
    elif kind == "read-only cache":
        def denied(*args, **kwargs):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), kwargs.get("dir"))
        monkeypatch.setattr(tempfile, "mkstemp", denied)
        monkeypatch.setattr(tempfile, "mkdtemp", denied)
    else:
        code = code.replace("+ 1;", "+* ;")  # C that does not compile
    return code


FAULTS = [("EFBIG", "File too large"), ("read-only cache", "Permission denied"),
          ("compile error", "rejected")]


@pytest.mark.parametrize("kind, words", FAULTS)
def test_build_faults_fall_back_to_the_python_twin(fresh_cache, monkeypatch, kind, words):
    code = _fault(kind, monkeypatch)
    with pytest.warns(AspFallbackWarning, match=words) as record:
        f = make_c_function(code, [("double", "x")], "double", python=_poly)
    assert len([w for w in record if issubclass(w.category, AspFallbackWarning)]) == 1
    assert not f.compiled
    x = _x("double", (9, 2))
    y = np.zeros_like(x)
    call_c_function(f, (x, y), 2, 7)
    np.testing.assert_array_equal(y[2:7], _poly(x[2:7]))
    assert not y[:2].any() and not y[7:].any()
    for mode in (1, 2):
        z = np.zeros_like(x)
        wait_for_parallel_finish(call_c_function_parallel(f, (x, z), 0, 9, 2, mode))
        np.testing.assert_array_equal(z, _poly(x))


@pytest.mark.parametrize("kind, words", FAULTS)
def test_build_faults_without_a_twin_or_strict_raise_compile_error(fresh_cache, monkeypatch,
                                                                     kind, words):
    code = _fault(kind, monkeypatch)
    with pytest.raises(CompileError, match=words):
        make_c_function(code, [("double", "x")], "double")
    monkeypatch.setenv("ASP_STRICT", "1")
    with pytest.raises(CompileError, match=words):
        make_c_function(code, [("double", "x")], "double", python=_poly)


def test_python_twin_runs_without_warning_when_jit_is_disabled(monkeypatch):
    import warnings

    monkeypatch.setenv("ASP_DISABLE_JIT", "1")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        f = make_c_function("return (long)(x * k);", [("float", "x"), ("int", "k")], "long",
                            python=lambda x, k: x * k)
    assert not f.compiled
    out = np.zeros(3, np.int_)
    call_c_function(f, (np.array([0.5, 1.5, 2.5], np.float32), np.array([2, 3, 4], np.intc),
                        out), 0, 3)
    assert out.tolist() == [1, 4, 10]  # converted to the output's C type, as C would


def test_compiled_function_reports_compiled(fns):
    assert fns["double"].compiled
    with pytest.raises(TypeError, match="python must be a function"):
        make_c_function(POLY, [("double", "x")], "double", python=3)
