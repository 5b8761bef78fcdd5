"""The Python *is* the specification: names mean what Python would look up, module
constants are read when the call runs, and no variant is trusted unchecked.

Each test here failed before the fix it guards:
* a module constant baked into the code kept its first value after ``module.K = 3.0``
  (in the same process through the hot path and the per-signature cache, and in later
  processes through the warm-start records);
* a user's own ``distance`` (module-level or a method) was compiled as the built-in;
  a builtin shadowed after the first call kept its built-in meaning;
* check inputs of different shapes made the Python raise, and the variants were then
  trusted unchecked (or a correct kernel fell back as "every variant disagrees");
* the hot path skipped a specialization's ``finish``;
* an exception escaping a specializer's printing reached the user's program.
"""
from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest

from asp.errors import AspFallbackWarning, CheckError
from asp.ir import platform as ir
from asp.runtime import ArgSpec, JitKernel, Plan, Prepared, Specializer, Variant
from asp.tune import calls_to_decide
from specializers.elementwise import elementwise
from specializers.reduction import reduction
from specializers.stencil import StencilGrid, StencilKernel
from tests.conftest import package_on_path

K = 2.0
C = 0.25


@elementwise
def scale(x):
    return K * x


class Smooth(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            for y in a.neighbors(x, 1):
                out[x] += C * a[y]


def _load(tmp_path, name: str, text: str):
    """Import a module written to disk (kernels need their source in a file)."""
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(text))
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _smooth_reference(a, c):
    out = np.zeros_like(a)
    out[1:-1, 1:-1] = c * (a[:-2, 1:-1] + a[2:, 1:-1] + a[1:-1, :-2] + a[1:-1, 2:])
    return out


# -- module constants ---------------------------------------------------------------------------

def test_elementwise_sees_a_rebound_module_constant():
    global K
    x = np.arange(6.0)
    try:
        # long enough for the tuner to finish and the hot path to serve
        for _ in range(calls_to_decide(len(scale.jit.specialization(x, None).variant_names))):
            np.testing.assert_array_equal(scale(x), 2.0 * x)
        assert scale.jit._hot is not None
        K = 3.0
        np.testing.assert_array_equal(scale(x), 3.0 * x)
        for _ in range(30):
            np.testing.assert_array_equal(scale(x), 3.0 * x)
        K = 2  # an int now: the result type follows NumPy's rules for the new value
        np.testing.assert_array_equal(scale(np.arange(6)), 2 * np.arange(6))
        assert scale(np.arange(6)).dtype == np.int64
    finally:
        K = 2.0


def test_stencil_sees_a_rebound_module_constant(rng):
    global C
    a = rng.random((20, 20))
    k = Smooth()
    try:
        for _ in range(30):
            np.testing.assert_allclose(k(a), _smooth_reference(a, 0.25), rtol=1e-12)
        C = 0.5
        np.testing.assert_allclose(k(a), _smooth_reference(a, 0.5), rtol=1e-12)
        out = np.zeros_like(a)
        k.kernel(a, out)  # the preallocated-output path shares the hot entry
        np.testing.assert_allclose(out, _smooth_reference(a, 0.5), rtol=1e-12)
    finally:
        C = 0.25


def test_a_new_process_does_not_reuse_code_for_an_old_constant(tmp_path):
    """The warm-start record of one value must not serve another (same cache, new process)."""
    kernel = tmp_path / "heat_const.py"
    script = tmp_path / "run.py"
    kernel.write_text(textwrap.dedent("""
        import sys
        import numpy as np
        from specializers.stencil import StencilKernel

        ALPHA = float(sys.argv[1])

        class Heat(StencilKernel):
            def kernel(self, a, out):
                for x in out.interior_points():
                    out[x] = a[x]
                    for y in a.neighbors(x, 1):
                        out[x] += ALPHA * (a[y] - a[x])
    """))
    script.write_text(textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        import heat_const
        a = np.arange(64.0).reshape(8, 8) ** 2
        out = heat_const.Heat()(a)
        print(repr(float(out[3, 4])))
    """))

    def run(alpha: str) -> float:
        done = subprocess.run([sys.executable, str(script), alpha], capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return float(done.stdout.strip().splitlines()[-1])

    a = np.arange(64.0).reshape(8, 8) ** 2

    def expected(alpha):
        c = a[3, 4]
        return c + alpha * (a[2, 4] + a[4, 4] + a[3, 3] + a[3, 5] - 4 * c)

    assert run("0.1") == pytest.approx(expected(0.1), rel=1e-12)
    assert run("0.2") == pytest.approx(expected(0.2), rel=1e-12)


# -- names resolve as in Python -----------------------------------------------------------------

def test_a_module_level_distance_is_the_users_not_the_builtin(tmp_path, rng):
    mod = _load(tmp_path, "manhattan_kernels", """
        from specializers.stencil import StencilKernel

        def distance(x, y):
            return abs(x[0] - y[0]) + abs(x[1] - y[1])

        class Weighted(StencilKernel):
            def kernel(self, a, out):
                for x in out.interior_points():
                    for y in a.neighbors(x, 1):
                        out[x] += a[y] * distance(x, y)
    """)
    a = rng.random((8, 8))
    nd = [[(0, 0)], [(1, 1), (-1, 2), (0, 1)]]
    g = StencilGrid([8, 8])
    g.data = a
    g.neighbor_definition = nd
    g.ghost_depth = 2
    out = StencilGrid([8, 8])
    out.ghost_depth = 2
    # The user's distance compiles as a helper of theirs, which takes numbers, not points.
    with pytest.warns(AspFallbackWarning, match="point 'x' cannot be used as a number"):
        mod.Weighted().kernel(g, out)
    expected = np.zeros_like(a)
    for i in range(2, 6):
        for j in range(2, 6):
            expected[i, j] = a[i + 1, j + 1] * 2 + a[i - 1, j + 2] * 3 + a[i, j + 1] * 1
    np.testing.assert_allclose(out.data, expected, rtol=1e-12)


def test_a_distance_method_on_the_users_class_is_the_users(rng):
    class Manhattan(StencilKernel):
        def distance(self, x, y):
            return float(abs(x[0] - y[0]) + abs(x[1] - y[1]))

        def kernel(self, a, out):
            for x in out.interior_points():
                for y in a.neighbors(x, 1):
                    out[x] += a[y] * self.distance(x, y)

    class Builtin(StencilKernel):
        def kernel(self, a, out):
            for x in out.interior_points():
                for y in a.neighbors(x, 1):
                    out[x] += a[y] * self.distance(x, y)

    nd = [[(0, 0)], [(1, 1), (0, -1)]]
    g = StencilGrid([7, 7])
    g.data = rng.random((7, 7))
    g.neighbor_definition = nd
    out_m, out_b = StencilGrid([7, 7]), StencilGrid([7, 7])
    with pytest.warns(AspFallbackWarning, match="self.distance"):
        Manhattan().kernel(g, out_m)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AspFallbackWarning)  # the built-in compiles
        Builtin().kernel(g, out_b)
    a = g.data
    inner = (slice(1, 6), slice(1, 6))
    np.testing.assert_allclose(out_m.data[inner], 2 * a[2:, 2:] + a[1:6, 0:5], rtol=1e-12)
    np.testing.assert_allclose(out_b.data[inner], np.sqrt(2) * a[2:, 2:] + a[1:6, 0:5],
                               rtol=1e-12)


def test_a_builtin_shadowed_later_is_seen(tmp_path):
    mod = _load(tmp_path, "shadow_later", """
        from specializers.elementwise import elementwise

        @elementwise
        def mag(x):
            return abs(x) + 1
    """)
    x = np.array([-3.0, 2.0, -0.5])
    for _ in range(30):
        np.testing.assert_array_equal(mod.mag(x), np.abs(x) + 1)
    mod.abs = lambda v: 10 * v  # Python now calls this one
    with pytest.warns(AspFallbackWarning, match="abs"):
        np.testing.assert_array_equal(mod.mag(x), 10 * x + 1)
    del mod.abs
    np.testing.assert_array_equal(mod.mag(x), np.abs(x) + 1)


def test_a_user_function_named_like_a_math_function_is_the_users(tmp_path):
    mod = _load(tmp_path, "own_sqrt", """
        from specializers.elementwise import elementwise

        def sqrt(v):
            return v * 100

        @elementwise
        def f(x):
            return sqrt(x)
    """)
    x = np.array([4.0, 9.0])
    for _ in range(3):  # compiled as the user's helper (a fallback warning is an error)
        np.testing.assert_array_equal(mod.f(x), x * 100)
    assert mod.f.jit.specialization(x, None).variant_names


# -- checks are never skipped -------------------------------------------------------------------

class Grad(StencilKernel):
    def kernel(self, a, out):
        for x in out.interior_points():
            for y in a.neighbors(x, 1):
                out[x] += a[y] - a[x]


def test_grids_of_different_ghost_depths_are_checked_not_trusted(rng, monkeypatch,
                                                                  fresh_cache):
    monkeypatch.setenv("ASP_STRICT", "1")  # a fallback would raise
    a = StencilGrid([12, 12])
    a.data = rng.random((12, 12))
    out = StencilGrid([12, 12])
    out.ghost_depth = 2
    k = Grad()
    # The check must really run, on grids of one shape (it used to skip on an IndexError).
    seen = []
    jit = k.jit_for(a, out)
    jit.clear()
    spec = jit.specializer
    original = spec.run_python

    def spy(args):
        seen.append({np.shape(getattr(g, "data", g)) for g in args})
        return original(args)

    monkeypatch.setattr(spec, "run_python", spy)
    k.kernel(a, out)
    assert seen and len(seen[0]) == 1
    s = k.specialization(a, out)
    assert s.check_failures == {}
    ref = StencilGrid([12, 12])
    ref.ghost_depth = 2
    Grad(pure_python=True).kernel(a, ref)
    np.testing.assert_allclose(out.data, ref.data, rtol=1e-12)


def test_a_variant_whose_check_cannot_run_is_not_trusted(rng, monkeypatch, fresh_cache):
    """If the Python raises on every check input, the kernel falls back (and its Python
    then decides): it is not run compiled and unchecked."""
    class Fragile(StencilKernel):
        def kernel(self, a, out):
            for x in out.interior_points():
                out[x] = a[x] * 2

    k = Fragile()
    spec = k.call_jit(np.zeros((40, 40))).specializer  # what k(a) runs
    original = spec.run_python

    def refuses_small(args):
        if args[0].shape[0] < 20:
            raise IndexError("the Python fails on small grids")
        return original(args)

    monkeypatch.setattr(spec, "run_python", refuses_small)
    a = rng.random((40, 40))
    with pytest.warns(AspFallbackWarning, match="could not be checked.*IndexError"):
        out = k(a)
    np.testing.assert_array_equal(out[1:-1, 1:-1], 2 * a[1:-1, 1:-1])
    assert isinstance(k.call_jit(a).last_error, CheckError)


def test_check_inputs_cut_from_the_call_when_random_ones_fail(tmp_path):
    mod = _load(tmp_path, "logs", """
        import math
        from specializers.elementwise import elementwise

        @elementwise
        def shifted_log(x):
            return math.log(x - 5.0)
    """)
    x = np.linspace(6.0, 9.0, 50)  # random check inputs (0.5..2) make math.log raise
    with warnings.catch_warnings():
        warnings.simplefilter("error", AspFallbackWarning)
        np.testing.assert_allclose(mod.shifted_log(x), np.log(x - 5.0), rtol=1e-14)
    s = mod.shifted_log.jit.specialization(x, None)
    assert s.check_failures == {}


# -- the core: finish on the hot path, internal errors ------------------------------------------

class _Narrow(Specializer):
    """x * 2 computed in float64, returned to the user as float32 (a ``finish``)."""

    name = "test:narrow"
    digest = "narrow-1"

    def __init__(self, bad_print: bool = False):
        self.bad_print = bad_print
        if bad_print:
            self.digest = "narrow-bad-print"

    def prepare(self, args):
        x, out = args
        return Prepared(args=(x, out), signature="(f8)",
                        finish=lambda r: r.astype(np.float32))

    def plan(self, prepared):
        from asp.codegen import abi_params

        specs = (ArgSpec("array", np.float64, 1, group=0),
                 ArgSpec("array", np.float64, 1, write=True, alloc=True, group=0))
        k = ir.Var("k")
        body = ir.BinOp("*", ir.ArrayRef("x", k), ir.Const(2.0))
        loop = ir.For("k", ir.Const(0, "int64_t"), ir.Var("x_n0"),
                      ir.Block((ir.Assign(ir.ArrayRef("out", k), body),)))
        params = abi_params(["x", "out"], specs)
        ok = ir.Function("narrow_ok", params, ir.Block((loop, ir.Return(ir.Const(0, "int32_t")))),
                         ret="int")
        variants = [Variant("ok", ok)]
        if self.bad_print:  # a specializer bug: not an IR expression
            bad = ir.Function("narrow_bad", params, ir.Block((
                ir.Assign(ir.ArrayRef("out", ir.Const(0, "int64_t")), "oops"),
                ir.Return(ir.Const(0, "int32_t")))), ret="int")
            variants.append(Variant("bad", bad))
        return Plan(signature=prepared.signature, specs=specs, variants=tuple(variants), ret=1,
                    check_args=lambda: (np.arange(5.0), None))

    def run_python(self, args):
        return (np.asarray(args[0]) * 2.0).astype(np.float32)


def test_the_hot_path_never_skips_finish():
    k = JitKernel(_Narrow())
    x = np.arange(8.0)
    for _ in range(40):
        r = k(x, None)
        assert r.dtype == np.float32
        np.testing.assert_array_equal(r, (2 * x).astype(np.float32))


def test_a_variant_that_cannot_be_printed_is_excluded_by_name(fresh_cache):
    k = JitKernel(_Narrow(bad_print=True))
    x = np.arange(8.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", AspFallbackWarning)
        for _ in range(10):
            np.testing.assert_array_equal(k(x, None), (2 * x).astype(np.float32))
    s = k.specialization(x, None)
    assert s.variant_names == ["ok"]
    assert "printing" in s.tuning.excluded["bad"]


# -- limits of the native entry -----------------------------------------------------------------

def test_more_dimensions_than_an_entry_takes_fall_back_clearly():
    x = np.arange(2.0 ** 9).reshape((2,) * 9)
    with pytest.warns(AspFallbackWarning, match="9 dimensions: compiled kernels take arrays "
                                                "of at most 8"):
        np.testing.assert_array_equal(scale(x), 2.0 * x)


def test_more_arguments_than_an_entry_takes_fall_back_clearly(tmp_path):
    names = ", ".join(f"a{i}" for i in range(40))
    mod = _load(tmp_path, "many_args", f"""
        from specializers.elementwise import elementwise

        @elementwise
        def total({names}):
            return {" + ".join(f"a{i}" for i in range(40))}
    """)
    xs = [np.full(3, float(i)) for i in range(40)]
    with pytest.warns(AspFallbackWarning, match="41 arguments.*at most 32"):
        np.testing.assert_array_equal(mod.total(*xs), np.full(3, float(sum(range(40)))))


def test_stencil_grid_interior_is_the_original_asps_attribute():
    g = StencilGrid([10, 7, 5])
    assert g.interior == [8, 5, 3]
    g.ghost_depth = 2
    assert g.interior == [6, 3, 1]


def test_the_docs_custom_specializer_sees_a_rebound_constant():
    """The tutorial's own example used to bake THIRD in forever."""
    import pathlib

    path = pathlib.Path(__file__).parent.parent / "examples" / "custom_specializer.py"
    spec = importlib.util.spec_from_file_location("custom_specializer_example", path)
    ex = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = ex  # its dataclasses look their module up
    spec.loader.exec_module(ex)
    x = np.linspace(0.0, 1.0, 50) ** 2
    for third in (1.0 / 3.0, 0.5, 1.0 / 3.0):
        ex.THIRD = third
        for _ in range(12):
            y = ex.box(x)
            np.testing.assert_allclose(y[1:-1], third * (x[:-2] + x[1:-1] + x[2:]),
                                       rtol=1e-14)


def test_a_cache_inside_a_package_does_not_change_the_generator_fingerprint(tmp_path,
                                                                           monkeypatch):
    """Records are keyed on the generating code; a cache directory kept inside a package
    (full of generated .c files) was hashed too, so every build changed every key."""
    import asp.runtime.fingerprint as fingerprint

    pkg = tmp_path / "mypkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("X = 1\n")
    (pkg / "gen.py").write_text("Y = 2\n")
    with package_on_path(tmp_path, "mypkg"):
        import mypkg.gen  # noqa: F401

        cache = pkg / "asp-cache"
        cache.mkdir(mode=0o700)
        monkeypatch.setenv("ASP_CACHE_DIR", str(cache))
        fingerprint.source_fingerprint.cache_clear()
        before = fingerprint.source_fingerprint("mypkg.gen")
        (cache / "build").mkdir()
        (cache / "build" / "kernel.c").write_text("int f(void) { return 1; }\n")
        fingerprint.source_fingerprint.cache_clear()
        assert fingerprint.source_fingerprint("mypkg.gen") == before
        (pkg / "gen.py").write_text("Y = 3\n")  # the generating code itself: a new key
        fingerprint.source_fingerprint.cache_clear()
        assert fingerprint.source_fingerprint("mypkg.gen") != before


def test_records_are_keyed_on_the_modules_that_generate_code(tmp_path):
    """Editing a module of the specializer's package that its code generation never
    imports (Dask support, the user-facing class) keeps every record; editing one it
    imports, at any depth, or a template, makes new keys."""
    import asp.runtime.fingerprint as fingerprint

    pkg = tmp_path / "genpkg"
    (pkg / "templates").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from genpkg.api import run\n")
    (pkg / "api.py").write_text("def run():\n    from genpkg import spec\n")
    (pkg / "spec.py").write_text("from genpkg.lower import f\n\ndef g():\n"
                                 "    from . import deep\n")
    (pkg / "lower.py").write_text("def f():\n    return 1\n")
    (pkg / "deep.py").write_text("D = 1\n")
    (pkg / "templates" / "k.c.mako").write_text("int k(void) { return 0; }\n")

    def key():
        fingerprint.source_fingerprint.cache_clear()
        return fingerprint.source_fingerprint("genpkg.spec")

    with package_on_path(tmp_path, "genpkg"):
        import genpkg.spec  # noqa: F401

        before = key()
        (pkg / "api.py").write_text("def run():\n    from genpkg import spec  # edited\n")
        (pkg / "extra.py").write_text("E = 1\n")
        assert key() == before  # not imported by the generator
        for path, text in (("lower.py", "def f():\n    return 2\n"), ("deep.py", "D = 2\n"),
                           ("templates/k.c.mako", "int k(void) { return 1; }\n")):
            (pkg / path).write_text(text)
            assert key() != before, path
            before = key()


def test_a_warm_start_loads_a_stencil_whose_errors_are_asps_own(fresh_cache, rng):
    """Stencil entries name asp's UnrepresentableValue among their errors; the record
    loader looked error types up among the builtins only, so no stencil ever warm-started."""
    class Heat2(StencilKernel):
        def kernel(self, a, out):
            for x in out.interior_points():
                out[x] = a[x] * 0.5

    a = rng.random((10, 10))
    k = Heat2()
    jit = k.jit_for(a, np.zeros_like(a))
    assert k.specialization(a, np.zeros_like(a)).source is not None  # built
    jit.clear()
    assert k.specialization(a, np.zeros_like(a)).source is None  # loaded from its record


# -- a condition known when compiling: only the branch Python takes is typed ---------------
class ConstantBranch(StencilKernel):
    boundary = "mirror"

    def kernel(self, b, out):
        for x in out.interior_points():
            if False:
                r = x[0] + 1  # never runs: must not make r an int64
            else:
                r = b[x]
            out[x] = b[x] * ((x[0] + 1) if False else b[x]) + r * 0


@elementwise
def constant_branch(b):
    return b * ((b + 1000000) if False else b)


def test_a_constant_condition_types_only_the_branch_python_takes():
    """Found by the fuzzer: ``b[x] * (x[0] + 1 if False else b[x])`` on int16 wraps in
    int16 in Python; typed as the join of both branches (int64) it did not, and the small
    check inputs could not tell."""
    b = np.array([4, -2, 1769, -20, -5, 300, -32768], dtype=np.int16)
    with np.errstate(over="ignore"):
        want = (b * b).astype(np.uint32)
    out = np.zeros(b.shape, np.uint32)
    ConstantBranch().kernel(b, out)
    np.testing.assert_array_equal(out, want)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(constant_branch(b), b * b)
    assert constant_branch(b).dtype == np.int16


# Conditions Python decides from constants alone: a module constant compared, 'and', 'or'
# and 'not' of constants, a loop over an empty constant range.  Folded when compiling, so
# their dead branch (or loop) is not typed either.
LIMIT = 3
DEBUG = False


@elementwise
def limited(x):
    if LIMIT > 5:
        return 0.5
    return x * 3


@elementwise
def debugged(x):
    if DEBUG and x > 0:
        return 0.5
    return x * 3 if not (DEBUG or LIMIT == 4) else 1.5


@elementwise
def never_looped(x):
    y = x
    while LIMIT > 5:
        y = y + 1.5
    for _ in range(LIMIT - 3):
        y = y + 1.5
    return y * 3


@elementwise
def unreachable(x):
    if x > 0:
        return x * 3
    else:
        for _ in range(2):
            while True:
                y = x * 3
                break
                y = 0.5  # after a break
            return y
        return 0.5  # the loop above returns in its first pass
    return 1.5  # both branches returned


@elementwise
def after_a_constant_return(x):
    while True:
        if True:
            return x * 3
        return 0.5
    return 1.5


@reduction("+")
def tripled(u):
    if LIMIT >= 4 or DEBUG:
        return 0.5
    return u * 3


def test_a_condition_of_constants_types_only_the_branch_python_takes():
    """``if LIMIT > 5: return 0.5`` with ``LIMIT = 3`` never runs, but the comparison was
    compiled as a comparison, not a constant: the result dtype joined its float with the
    int64 of the path taken, and ``x * 3`` came back as float64 (3 * (2**60 + 1) rounded,
    no warning); a reduction's sum likewise, and a variable a loop that never runs assigns
    a float (``while LIMIT > 5``, ``for _ in range(LIMIT - 3)``), or code no path reaches
    (after a return, a break, ``while True`` or a loop that returns in its first pass).
    Now an int64, exact, as Python gives.  (A stencil's variables already kept each
    path's type, and its output has its own.)"""
    x = np.array([2**60 + 1, 5, -7, 2**58 - 3], dtype=np.int64)
    want = [int(v) * 3 for v in x]
    for f in (limited, debugged, never_looped, unreachable, after_a_constant_return):
        got = f(x)
        assert got.dtype == np.int64, f.__name__
        assert [int(v) for v in got] == want, f.__name__
    total = tripled(x)  # the sum of the terms' type: int64, exact
    assert isinstance(total, np.int64) and int(total) == sum(want)


@elementwise
def huge_shift(x):
    if True:
        r = 7 << 20000
    else:
        r = 1
    return x + 0 * r


def test_a_constant_far_beyond_64_bits_falls_back_saying_so():
    """The fuzzer's ``4294967296 << 2147483647`` was folded (a 2**31-bit int: seconds and
    256 MB) and its message then failed to format (more than 4300 digits): a ValueError out
    of the front end.  A shift by 64 or more is refused without computing it, any other
    result beyond 64 bits is described by its size, and the call runs as Python."""
    x = np.arange(3.0)
    with pytest.warns(AspFallbackWarning, match="beyond 64 bits"):
        np.testing.assert_array_equal(huge_shift(x), x)
