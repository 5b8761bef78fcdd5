"""The user's own functions called from elementwise, reduction and stencil kernels compile
with them (asp.frontend.helpers): every variant agrees with the Python (a stencil's
`iterate` bit for bit), and a helper's text, defaults and the names it reads are
assumptions the cache keys and guards follow."""
from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

from asp.errors import AspFallbackWarning
from specializers.elementwise import elementwise
from specializers.reduction import reduction
from specializers.stencil import StencilKernel

ROOT = Path(__file__).resolve().parent.parent
SCALE = 2.0


def bump(x):
    return math.exp(-x * x) * SCALE


def affine(a, b=3):
    return a * b + 1


def piecewise(x):
    if x > 0:
        return affine(x) + bump(x)
    return affine(x, 2)


def countdown(n):
    return 0 if n <= 0 else countdown(n - 1)


def diffuse(c, lap):
    return c + SCALE * 0.125 * lap


def clipped(a, lo=-0.5):
    return a if a > lo else lo


class HelperHeat(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = diffuse(u[x], lap)


class HelperHeat3(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            lap = -6.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += clipped(u[y])
            out[x] = diffuse(u[x], lap)


@elementwise
def blend(x, y):
    return bump(x) * y + piecewise(x)


@elementwise
def twice_typed(i):
    return affine(i) + affine(i * 1.5)  # an int64 helper and a float64 one


@reduction("+")
def weighted(u, v):
    return bump(u) * v


def every_variant(fn, *args):
    s = fn.jit.specialization(*args, None)
    assert not s.check_failures, s.check_failures
    assert len(s.variant_names) > 1
    return {name: fn.jit.run_variant(name, *args, None) for name in s.variant_names}


def onto_the_hot_path(fn, *args):
    """Call ``fn(*args)`` until its tuner decided and the calls take the native entry
    (``args`` with the defaults ``fn`` binds); the last call's result.  Three times the
    calls a decision may take: one host running two test suites at once needed more."""
    from asp.tune import calls_to_decide

    bound = fn.specializer.parameters.bind(fn.py_func.__name__, args, {})
    n = len(fn.jit.specialization(*bound, None).variant_names)
    for _ in range(3 * calls_to_decide(n)):
        result = fn(*args)
        if fn.jit.hot_entry is not None:
            return result
    raise AssertionError("no hot path")


def test_helpers_compile_and_every_variant_is_the_python(rng):
    x = rng.standard_normal(3001) * 2
    y = rng.random(3001)
    want = np.array([blend.py_func(a, b) for a, b in zip(x, y)])
    np.testing.assert_allclose(blend(x, y), want, rtol=1e-14)
    for name, got in every_variant(blend, x, y).items():
        np.testing.assert_allclose(got, want, rtol=1e-14, err_msg=name)
    i = np.arange(-50, 50)
    want = np.array([twice_typed.py_func(np.int64(k)) for k in i])
    for name, got in every_variant(twice_typed, i).items():
        assert got.dtype == want.dtype == np.float64
        np.testing.assert_array_equal(got, want, err_msg=name)
    total = float(np.sum(np.exp(-x * x) * SCALE * y))
    assert weighted(x, y) == pytest.approx(total, rel=1e-12)
    for name, got in every_variant(weighted, x, y).items():
        assert float(got) == pytest.approx(total, rel=1e-12), name


def test_a_helper_is_translated_once_per_argument_types():
    from asp.frontend import get_source
    from asp.frontend.scalar import INT, T, translate

    fn = twice_typed.py_func
    sf = translate(get_source(fn), fn, {"i": T("int64_t")})
    assert [h.name.split("_", 2)[-1] for h in sf.helpers] == ["affine", "affine"]
    # affine(i): an int64 and the default's Python int; affine(i * 1.5): a float64.
    assert {h.param_types for h in sf.helpers} == {(T("int64_t"), INT), (T("double"), INT)}
    sf = translate(get_source(blend.py_func), blend.py_func,
                   {"x": T("double"), "y": T("double")})
    names = [h.name.split("_", 2)[-1] for h in sf.helpers]
    # Each before its callers: piecewise calls affine and bump.
    assert names.index("piecewise") > max(names.index("affine"), names.index("bump"))


def test_rebinding_a_constant_a_helper_reads_specializes_again(monkeypatch):
    x = np.linspace(-1, 1, 257)
    y = np.ones_like(x)
    before = onto_the_hot_path(blend, x, y)
    monkeypatch.setattr(sys.modules[__name__], "SCALE", 5.0)
    want = np.array([blend.py_func(a, b) for a, b in zip(x, y)])
    assert not np.allclose(before, want)
    np.testing.assert_allclose(blend(x, y), want, rtol=1e-14)


def test_rebinding_a_helper_specializes_again(monkeypatch):
    def flat(x):
        return 0.25

    x = np.linspace(-1, 1, 129)
    y = np.full_like(x, 2.0)
    onto_the_hot_path(blend, x, y)
    monkeypatch.setattr(sys.modules[__name__], "bump", flat)
    want = np.array([blend.py_func(a, b) for a, b in zip(x, y)])
    np.testing.assert_allclose(blend(x, y), want, rtol=1e-14)


@pytest.mark.parametrize("body, words", [
    ("return countdown(x)", "calls itself"),
    ("return affine(x, b=2.0)", "keyword arguments"),
    ("return math_helpers.bump(x)", "import it by name"),
    ("return affine()", "without argument 'a'"),
])
def test_calls_it_cannot_compile_run_as_python_and_say_why(tmp_path, monkeypatch, body, words):
    mod = tmp_path / "calls_mod.py"
    mod.write_text(textwrap.dedent(f"""
        import sys
        import tests.test_helpers as math_helpers
        from tests.test_helpers import affine, countdown
        from specializers.elementwise import elementwise

        @elementwise
        def k(x):
            {body}
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("calls_mod", None)
    import calls_mod

    x = np.arange(4.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", AspFallbackWarning)
        try:
            calls_mod.k(x)
        except TypeError:  # the Python itself raises (affine() without its argument)
            pass
    messages = [str(w.message) for w in caught if issubclass(w.category, AspFallbackWarning)]
    assert len(messages) == 1 and words in messages[0], messages


def test_a_helper_edited_between_processes_is_compiled_again(tmp_path):
    """The cache and the warm-start records are keyed on the helper's text: a helper
    edited while its kernel's text stayed the same must not load the old code."""
    mod = tmp_path / "edited.py"
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import warnings
        warnings.simplefilter("error")
        import numpy as np
        import edited
        x = np.arange(6.0)
        for _ in range(30):
            r = edited.k(x)
        print(r.tolist())
    """))
    env = {**os.environ, "ASP_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path)])}
    seen = []
    for factor in ("2.0", "3.0", "2.0"):
        mod.write_text(textwrap.dedent(f"""
            from specializers.elementwise import elementwise

            def helper(x, c=1.0):
                return x * {factor} + c

            @elementwise
            def k(x):
                return helper(x)
        """))
        out = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        seen.append(out.stdout.strip())
    x = np.arange(6.0)
    assert seen == [str((x * 2 + 1).tolist()), str((x * 3 + 1).tolist()),
                    str((x * 2 + 1).tolist())]


@pytest.mark.parametrize("mode", ["interior", "wrap", "reflect", "constant"])
def test_a_stencil_calling_helpers_is_the_python_in_every_variant(mode, rng):
    from tests.test_stencil_kernels import check_every_variant

    u = rng.standard_normal((67, 93))
    check_every_variant(HelperHeat(boundary=mode, cval=0.5), (u, np.zeros_like(u)), 1e-13)
    u3 = rng.standard_normal((9, 10, 11))
    check_every_variant(HelperHeat3(boundary=mode), (u3, np.zeros_like(u3)), 1e-13)


def test_iterate_of_a_stencil_calling_helpers_is_the_loop_bit_for_bit(monkeypatch, rng):
    from tests.test_iterate import _every_blocked_variant

    u = rng.random((300, 333))
    s = _every_blocked_variant(monkeypatch, HelperHeat(), (u,), (), 37,
                               caches=(4 << 10, 64 << 10, 0))
    assert len(s.entries) >= 3
    u3 = rng.standard_normal((40, 45, 50))
    _every_blocked_variant(monkeypatch, HelperHeat3(), (u3,), (), 13,
                           caches=(8 << 10, 128 << 10, 0))


def test_only_the_users_own_python_functions_are_helpers():
    import json
    import textwrap as tw

    from asp.frontend.helpers import is_helper

    assert is_helper(bump) and is_helper(affine)
    # Python's library, installed packages (NumPy's Python functions work on arrays),
    # builtins and the math functions the core compiles itself are not.
    assert not any(is_helper(f) for f in (json.dumps, tw.dedent, np.clip, len, math.sqrt,
                                          abs, np.sqrt))


def test_a_stencil_sent_by_value_carries_its_helpers_sources(monkeypatch):
    """A class sent whole to a worker without its file: the helpers it calls (and theirs)
    travel with their source, from which the worker compiles them."""
    from specializers.stencil.dask import ship_by_value

    for f in (diffuse, clipped):
        monkeypatch.delattr(f, "__asp_source__", raising=False)
    monkeypatch.delattr(HelperHeat3.kernel, "__asp_source__", raising=False)
    ship_by_value(HelperHeat3)
    for f in (HelperHeat3.kernel, diffuse, clipped):
        text = f.__asp_source__[0]
        assert text.lstrip().startswith(f"def {f.__name__}(")


def grow(x):  # an int8 on one path, a Python int on the other
    if x > 0:
        return x
    return 300


def floor_at(v):  # a float64 on one path, a Python float on the other
    if v > 0.1:
        return v
    return 0.1


def nonzero(x):
    if x > 0:
        return x
    return 0.0


@elementwise
def grown(x):
    return grow(x) + 100  # int8 + 100 wraps in Python; 300 + 100 does not


@elementwise
def floored(x, y):
    return floor_at(x) * y  # 0.1 * a float32 is a float32 in Python; x * y a float64


@elementwise
def inverse(x):
    return 1.0 / nonzero(x)  # no float32 here: a float64 and a Python float compute alike


def test_a_helper_whose_paths_return_different_types_is_not_joined():
    """Python returns each path's own object, and the caller computes on its type: a
    helper's returns joined into one C type gave 200 where Python's int8 wraps to -56, and
    float64 products where Python's were float32."""
    x = np.array([5, -3, 100, -128], np.int8)
    # Run as Python, the helper's int8 arithmetic overflows as it does in Python, with
    # NumPy's warning.
    with pytest.warns(AspFallbackWarning, match="different types on different paths "
                                                r"\(a Python int, int8\)"), \
            pytest.warns(RuntimeWarning, match="overflow encountered"):
        got = grown(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's int8 overflow warning
        want = [grown.py_func(v) for v in x]
    assert got.tolist() == [int(v) for v in want] and got[2] == -56
    x = np.array([0.5, -3.0, 2.0, -1.0])
    y = np.array([0.3, 0.7, 1.1, 0.9], np.float32)
    with pytest.warns(AspFallbackWarning, match="different types on different paths"):
        got = floored(x, y)
    np.testing.assert_array_equal(got, [float(floored.py_func(a, b)) for a, b in zip(x, y)])


def test_a_float64_or_a_python_float_compiles_where_no_float32_tells_them_apart(rng):
    x = rng.random(1000) + 0.01  # (where a path gives 0.0, Python raises: below)
    for name, got in every_variant(inverse, x).items():
        np.testing.assert_array_equal(got, [inverse.py_func(v) for v in x], err_msg=name)
    # ... and a Python float's zero divisor still raises, as Python's does.
    with pytest.warns(AspFallbackWarning), pytest.raises(ZeroDivisionError):
        inverse(np.array([0.5, -3.0]))


def test_a_numpy_scalar_default_is_not_taken_for_a_python_number(tmp_path, monkeypatch):
    mod = tmp_path / "np_default.py"
    mod.write_text(textwrap.dedent("""
        import numpy as np
        from specializers.elementwise import elementwise

        def scaled(v, c=np.float64(0.1)):
            return v * c

        @elementwise
        def k(y):
            return scaled(y)
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop("np_default", None)
    import np_default

    y = np.array([0.3, 0.7], np.float32)
    with pytest.warns(AspFallbackWarning, match="not a Python number"):
        got = np_default.k(y)
    assert got.dtype == np.float64  # float32 * a float64 scalar: float64, as in Python
    np.testing.assert_array_equal(got, [np_default.k.py_func(v) for v in y])
