"""The runtime: fallback at every stage, strict and disabled modes, checks, guards."""
from __future__ import annotations

import sys
import warnings

import numpy as np
import pytest

import asp.runtime.abi as abi
from asp.errors import (
    AspFallbackWarning,
    CompileError,
    FrontendError,
    LoadError,
    PassError,
    SpecializationError,
)
from asp.ir import platform as ir
from asp.ir.node import Transformer
from asp.jit import cache
from asp.runtime import MISS, ArgSpec, JitKernel, Plan, Prepared, Specializer, Variant
from asp.tune import calls_to_decide
from specializers.elementwise import elementwise
from specializers.elementwise import specializer as ew_specializer

HERE = __file__


def poly(x):
    return 3 * x**3 + 2 * x**2 + x + 1


def uses_a_list(x):
    values = [x, 2 * x]  # L-unsupported
    return values[1]


def _line_of(marker: str) -> int:
    with open(HERE) as f:
        return next(i for i, t in enumerate(f, 1) if t.rstrip().endswith(f"# {marker}"))


X = np.linspace(-1.0, 1.0, 50)
POLY = 3 * X**3 + 2 * X**2 + X + 1


def _fallbacks(record) -> list:
    return [w for w in record if issubclass(w.category, AspFallbackWarning)]


# -- fallback at each stage ---------------------------------------------------------------------
# Tests that break a stage by monkeypatching use ``fresh_cache``: a warm cache holds a record of
# the specialization, and a warm start never runs the stages at all.

def test_front_end_failure_falls_back_once_with_location():
    f = elementwise(uses_a_list)
    with pytest.warns(AspFallbackWarning) as record:
        r1 = f(X)
        r2 = f(X.astype(np.float32))
        r3 = f(np.arange(4))
    assert len(_fallbacks(record)) == 1
    np.testing.assert_allclose(r1, 2 * X)
    np.testing.assert_allclose(r2, 2 * X.astype(np.float32), rtol=1e-6)
    np.testing.assert_array_equal(r3, 2 * np.arange(4))
    msg = str(_fallbacks(record)[0].message)
    assert f"{HERE}:{_line_of('L-unsupported')}" in msg
    assert "lists" in msg and "front end" in msg and "plain Python" in msg
    assert isinstance(f.jit.last_error, FrontendError)
    # The warning points at the caller, not at asp's internals.
    assert _fallbacks(record)[0].filename == HERE


def test_pass_failure_falls_back(monkeypatch, fresh_cache):
    def broken(*args, **kwargs):
        raise PassError("the pass broke")

    monkeypatch.setattr(ew_specializer, "lower_variants", broken)
    f = elementwise(poly)
    with pytest.warns(AspFallbackWarning, match="the pass broke") as record:
        r = f(X)
        f(X)
    assert len(_fallbacks(record)) == 1
    np.testing.assert_allclose(r, POLY)
    err = f.jit.last_error
    assert isinstance(err, PassError) and err.stage == "passes"
    assert err.location.startswith(HERE + ":")


def test_internal_error_in_a_stage_falls_back(monkeypatch, fresh_cache):
    def broken(sf):
        raise RuntimeError("a bug in a pass")

    monkeypatch.setattr(ew_specializer, "fold_constants", broken)
    f = elementwise(poly)
    with pytest.warns(AspFallbackWarning, match="internal error: RuntimeError: a bug in a pass"):
        np.testing.assert_allclose(f(X), POLY)
    assert isinstance(f.jit.last_error, SpecializationError)


def test_compile_failure_falls_back(monkeypatch, fresh_cache):
    monkeypatch.setenv("ASP_CC", "/nonexistent")
    f = elementwise(poly)
    with pytest.warns(AspFallbackWarning, match=r"compile") as record:
        np.testing.assert_allclose(f(X), POLY)
        np.testing.assert_allclose(f(X[:10]), POLY[:10])
    assert len(_fallbacks(record)) == 1
    assert isinstance(f.jit.last_error, CompileError)


def test_load_failure_without_native_path_falls_back(monkeypatch, fresh_cache):
    monkeypatch.setattr(abi, "_native", None)
    assert not abi.native_available()
    f = elementwise(poly)
    with pytest.warns(AspFallbackWarning, match="native call path") as record:
        np.testing.assert_allclose(f(X), POLY)
        np.testing.assert_allclose(f(X * 2), 3 * (2 * X)**3 + 2 * (2 * X)**2 + 2 * X + 1)
    assert len(_fallbacks(record)) == 1
    assert isinstance(f.jit.last_error, LoadError) and f.jit.last_error.stage == "load"


def test_load_failure_in_make_entry_falls_back(monkeypatch, fresh_cache):
    import asp.runtime.build as building
    import asp.runtime.dispatch as dispatch

    def broken(*args, **kwargs):
        raise LoadError("cannot load that")

    monkeypatch.setattr(building, "make_entry", broken)  # a cold build
    monkeypatch.setattr(dispatch, "make_entry", broken)  # a warm start
    f = elementwise(poly)
    with pytest.warns(AspFallbackWarning, match="cannot load that"):
        np.testing.assert_allclose(f(X), POLY)


def test_fallback_is_once_per_kernel_not_per_process():
    f, g = elementwise(uses_a_list), elementwise(uses_a_list)
    with pytest.warns(AspFallbackWarning) as record:
        f(X)
        g(X)
        f(X)
        g(X)
    assert len(_fallbacks(record)) == 2


# -- strict and disabled ------------------------------------------------------------------------

def test_strict_raises_the_stage_error_with_location(monkeypatch):
    monkeypatch.setenv("ASP_STRICT", "1")
    f = elementwise(uses_a_list)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FrontendError) as info:
            f(X)
    err = info.value
    assert err.location == f"{HERE}:{_line_of('L-unsupported')}"
    assert "[front end" in str(err) and err.kernel == "uses_a_list"
    # Strict again on the next call: the failure is remembered, still raised.
    with pytest.raises(FrontendError):
        f(X)


def test_strict_compile_error(monkeypatch, fresh_cache):
    monkeypatch.setenv("ASP_STRICT", "1")
    monkeypatch.setenv("ASP_CC", "/nonexistent")
    f = elementwise(poly)
    with pytest.raises(CompileError) as info:
        f(X)
    assert "[compile" in str(info.value)
    assert f"{HERE}:" in str(info.value)


def test_strict_pass_error(monkeypatch, fresh_cache):
    monkeypatch.setenv("ASP_STRICT", "yes")

    def broken(*args, **kwargs):
        raise PassError("no")

    monkeypatch.setattr(ew_specializer, "lower_variants", broken)
    with pytest.raises(PassError, match=r"\[passes"):
        elementwise(poly)(X)


def test_disable_jit_runs_python_without_compiling(monkeypatch, fresh_cache):
    monkeypatch.setenv("ASP_DISABLE_JIT", "1")

    def no_build(*a, **k):
        raise AssertionError("compiled although ASP_DISABLE_JIT=1")

    monkeypatch.setattr(cache, "_compile", no_build)
    monkeypatch.setattr(ew_specializer.ElementwiseSpecializer, "plan", no_build)
    f = elementwise(poly)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_allclose(f(X), POLY)
        out = np.empty_like(X)
        assert f(X, out=out) is out
        np.testing.assert_allclose(out, POLY)
        # Even an unsupported kernel is just Python, without a warning.
        np.testing.assert_allclose(elementwise(uses_a_list)(X), 2 * X)
    assert f.jit._specs == {}


def test_config_values(monkeypatch):
    from asp import config

    for value, expected in (("1", True), ("true", True), ("ON", True), ("0", False),
                            ("", False), ("no", False)):
        monkeypatch.setenv("ASP_STRICT", value)
        assert config.strict() is expected
    monkeypatch.setenv("OMP_NUM_THREADS", "3,2")
    assert config.num_threads() == 3
    monkeypatch.setenv("OMP_NUM_THREADS", "many")
    with pytest.raises(ValueError, match="OMP_NUM_THREADS"):
        config.num_threads()
    monkeypatch.setenv("ASP_CFLAGS", "-O1 -g")
    assert config.cflags_override() == ["-O1", "-g"]


def test_malformed_flag_is_an_error(monkeypatch):
    monkeypatch.setenv("ASP_DISABLE_JIT", "maybe")
    with pytest.raises(ValueError, match="ASP_DISABLE_JIT"):
        elementwise(poly)(X)


# -- correctness checks of variants -------------------------------------------------------------

def _corrupt(variant_names):
    """A lower_variants that makes the named variants compute f(x) + 1."""
    real = ew_specializer.lower_variants

    class PlusOne(Transformer):
        def visit_Call(self, node):
            if node.func == "asp_elem":
                return ir.BinOp("+", node, ir.Const(1, "int64_t"))
            return self.generic_visit(node)

    def lower(*args, **kwargs):
        out = []
        for name, fn in real(*args, **kwargs):
            out.append((name, PlusOne().visit(fn) if name in variant_names else fn))
        return out

    return lower


def test_variant_disagreeing_with_python_is_excluded(monkeypatch, fresh_cache):
    monkeypatch.setattr(ew_specializer, "lower_variants", _corrupt({"stride"}))
    f = elementwise(poly)
    s = f.jit.specialization(X, None)
    assert set(s.variant_names) == {"chunk", "stride", "dynamic", "stream"}
    assert set(s.check_failures) == {"stride"}
    assert "differ from the Python reference" in s.check_failures["stride"]
    assert "stride" in s.tuning.excluded
    for _ in range(calls_to_decide(3)):  # through tuning and beyond: never the wrong one
        np.testing.assert_allclose(f(X), POLY)
    assert f.jit._hot is not None
    bucket = s.tuning_for(f.specializer.prepare((X, None)).bucket)
    assert bucket.winner != "stride" and "stride" in bucket.excluded
    # The variant was compiled; it is just never chosen.
    np.testing.assert_allclose(f.jit.run_variant("stride", X, None), POLY + 1)


def test_every_variant_wrong_falls_back(monkeypatch, fresh_cache):
    monkeypatch.setattr(ew_specializer, "lower_variants",
                        _corrupt({"chunk", "stride", "dynamic", "stream"}))
    f = elementwise(poly)
    with pytest.warns(AspFallbackWarning, match="every compiled variant disagrees"):
        np.testing.assert_allclose(f(X), POLY)


# -- guards ------------------------------------------------------------------------------------

def test_guard_miss_specializes_again_for_a_new_dtype():
    f = elementwise(poly)
    for _ in range(calls_to_decide(3)):
        np.testing.assert_allclose(f(X), POLY)
    hot = f.jit._hot
    assert hot is not None
    assert len(f.jit._specs) == 1
    x32 = X.astype(np.float32)
    r32 = f(x32)
    assert r32.dtype == np.float32
    np.testing.assert_allclose(r32, poly(x32), rtol=1e-5)
    xi = np.arange(-5, 5)
    ri = f(xi)
    assert ri.dtype == np.int64
    np.testing.assert_array_equal(ri, poly(xi))
    assert len(f.jit._specs) == 3
    # A new size of a known signature needs no new specialization.
    np.testing.assert_allclose(f(X[:7]), POLY[:7])
    assert len(f.jit._specs) == 3
    # The native entry itself reports a miss instead of raising.
    assert hot(x32, None) is MISS
    assert hot(X, None) is not MISS


def test_2d_after_1d_is_a_new_signature():
    f = elementwise(poly)
    np.testing.assert_allclose(f(X), POLY)
    m = X.reshape(5, 10)
    np.testing.assert_allclose(f(m), POLY.reshape(5, 10))
    assert len(f.jit._specs) == 2


def test_clear_forgets_specializations():
    f = elementwise(poly)
    f(X)
    f.jit.clear()
    assert f.jit._specs == {} and f.jit._hot is None
    np.testing.assert_allclose(f(X), POLY)


# -- the core with a hand-written specializer ---------------------------------------------------

class _Scale(Specializer):
    """out = x * factor, lowered by hand: exercises JitKernel without the elementwise front end."""

    name = "test:scale"

    def __init__(self, factor: float, *, fail: Exception | None = None, accept_any=False,
                 broken: bool = False):
        self.factor = factor
        # The digest keys the on-disk specialization record: it must cover the factor.
        self.digest = f"scale-{factor}-{broken}"
        self.fail = fail
        self.accept_any = accept_any
        self.broken = broken  # add a variant gcc rejects (it reads an undeclared name)

    def prepare(self, args):
        (x,) = args
        if not self.accept_any and not (isinstance(x, np.ndarray) and x.dtype == np.float64
                                        and x.ndim == 1):
            raise TypeError("scale() argument 'x' must be a 1-D float64 array")
        # The entry takes (x, out) but the user passes (x,): not the same arguments.
        return Prepared(args=(x, None), signature="(f8)", same=False)

    def plan(self, prepared):
        if self.fail is not None:
            raise self.fail
        specs = (ArgSpec("array", np.float64, 1, group=0),
                 ArgSpec("array", np.float64, 1, write=True, alloc=True, group=0))
        k = ir.Var("k")
        loop = ir.For("k", ir.Const(0, "int64_t"), ir.Var("x_n0"), ir.Block((
            ir.Assign(ir.ArrayRef("out", k),
                      ir.BinOp("*", ir.ArrayRef("x", k), ir.Const(self.factor))),)))
        from asp.codegen import abi_params

        params = abi_params(["x", "out"], specs)
        variants = tuple(
            Variant(name, ir.Function(f"scale_{name}", params,
                                      ir.Block((loop, ir.Return(ir.Const(0, "int32_t")))),
                                      ret="int"))
            for name in ("one", "two"))
        if self.broken:
            bad = ir.Block((ir.Assign(ir.ArrayRef("out", ir.Const(0, "int64_t")),
                                      ir.Var("no_such_name")),
                            ir.Return(ir.Const(0, "int32_t"))))
            variants += (Variant("bad", ir.Function("scale_bad", params, bad, ret="int")),)
        return Plan(signature=prepared.signature, specs=specs, variants=variants, ret=1,
                    check_args=lambda: (np.arange(5.0), None))

    def run_python(self, args):
        return np.asarray(args[0], dtype=float) * self.factor


def test_hand_written_specializer_compiles_and_tunes():
    k = JitKernel(_Scale(2.5))
    x = np.arange(10.0)
    for _ in range(calls_to_decide(2)):
        np.testing.assert_array_equal(k(x), x * 2.5)
    s = k.specialization(x)
    assert s.variant_names == ["one", "two"]
    assert s.check_failures == {}
    assert s.tuning_for("").done
    assert k._hot is None  # the entry's arguments differ from the user's: no hot path
    for name in s.variant_names:
        np.testing.assert_array_equal(k.run_variant(name, x), x * 2.5)


def test_a_variant_that_does_not_compile_is_left_out_and_reported():
    k = JitKernel(_Scale(1.5, broken=True))
    x = np.arange(10.0)
    for _ in range(calls_to_decide(2)):
        np.testing.assert_array_equal(k(x), x * 1.5)
    s = k.specialization(x)
    assert s.variant_names == ["one", "two"]
    t = s.tuning_for("")
    assert t.done and t.winner in ("one", "two")
    assert "does not compile" in t.excluded["bad"] and "no_such_name" in t.excluded["bad"]


def test_variant_names_must_be_c_identifiers():
    fn = ir.Function("f", (), ir.Block((ir.Return(ir.Const(0, "int32_t")),)), ret="int")
    for bad in ("stream-tile32", "2d", "", "tile 8", "naïve"):
        with pytest.raises(ValueError, match="must be a C identifier"):
            Variant(bad, fn)
    assert Variant("stream_tile32", fn).name == "stream_tile32"


def test_bad_input_is_raised_not_fallen_back():
    k = JitKernel(_Scale(2.0))
    with pytest.raises(TypeError, match="'x'"):
        k(np.arange(3))
    assert k.last_error is None


def test_hot_path_guard_miss_then_compiled_entry_rejects_arguments():
    # The specializer accepts an int array the entry's guards refuse: a LoadError fallback.
    k = JitKernel(_Scale(2.0, accept_any=True))
    with pytest.warns(AspFallbackWarning, match="rejected arguments"):
        np.testing.assert_array_equal(k(np.arange(3)), np.arange(3) * 2.0)
    assert isinstance(k.last_error, LoadError)


@pytest.mark.parametrize("exc, stage", [(FrontendError("bad syntax"), "front end"),
                                        (PassError("bad pass"), "passes"),
                                        (CompileError("bad cc"), "compile"),
                                        (LoadError("bad load"), "load")])
def test_each_stage_error_falls_back_and_names_its_stage(exc, stage, monkeypatch):
    k = JitKernel(_Scale(3.0, fail=exc))
    with pytest.warns(AspFallbackWarning, match=rf"\[{stage}\b.*test:scale"):
        np.testing.assert_array_equal(k(np.arange(3.0)), np.arange(3.0) * 3)
    assert k.last_error.kernel == "test:scale" and k.last_error.stage == stage
    monkeypatch.setenv("ASP_STRICT", "1")
    k2 = JitKernel(_Scale(3.0, fail=type(exc)(exc.message)))
    with pytest.raises(type(exc), match=stage):
        k2(np.arange(3.0))


# -- warm starts from the on-disk specialization record ----------------------------------------

def test_warm_start_skips_the_pipeline(fresh_cache, monkeypatch):
    f = elementwise(poly)
    np.testing.assert_allclose(f(X), POLY)
    assert list((fresh_cache / "specs").glob("*.json"))

    def no_plan(*a, **k):
        raise AssertionError("planned again although a record exists")

    monkeypatch.setattr(ew_specializer.ElementwiseSpecializer, "plan", no_plan)
    cache._memory.clear()  # as in a new process: only the disk is warm
    g = elementwise(poly)
    for _ in range(12):
        np.testing.assert_allclose(g(X), POLY)
    s = g.jit.specialization(X, None)
    assert s.plan is None and set(s.variant_names) >= {"chunk", "stride", "dynamic"}


def test_damaged_record_is_ignored_and_rewritten(fresh_cache):
    np.testing.assert_allclose(elementwise(poly)(X), POLY)
    (record,) = (fresh_cache / "specs").glob("*.json")
    for garbage in (b"", b"{]", b'{"variants": 3}', b'{"variants": {"chunk": ["nokey", "s"]},'
                    b' "specs": [], "ret": 0, "errors": [], "excluded": {}}'):
        record.write_bytes(garbage)
        cache._memory.clear()
        g = elementwise(poly)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_allclose(g(X), POLY)
        assert g.jit.specialization(X, None).plan is not None  # rebuilt, not loaded
    assert b"variants" in record.read_bytes()


def test_excluded_variants_stay_excluded_on_a_warm_start(fresh_cache, monkeypatch):
    with monkeypatch.context() as m:
        m.setattr(ew_specializer, "lower_variants", _corrupt({"dynamic"}))
        f = elementwise(poly)
        assert set(f.jit.specialization(X, None).check_failures) == {"dynamic"}
    cache._memory.clear()
    g = elementwise(poly)
    s = g.jit.specialization(X, None)
    assert s.plan is None and "dynamic" in s.tuning.excluded
    for _ in range(15):
        np.testing.assert_allclose(g(X), POLY)


K = 3.0


def times_k(x):
    return x * K


def make_adder(n):
    def add_n(x):
        return x + n
    return add_n


def test_baked_globals_and_closures_key_the_code(fresh_cache, monkeypatch):
    np.testing.assert_array_equal(elementwise(times_k)(np.arange(3.0)), [0.0, 3.0, 6.0])
    monkeypatch.setattr(sys.modules[__name__], "K", 5.0)
    cache._memory.clear()
    np.testing.assert_array_equal(elementwise(times_k)(np.arange(3.0)), [0.0, 5.0, 10.0])
    a1, a2 = elementwise(make_adder(1)), elementwise(make_adder(2))
    np.testing.assert_array_equal(a1(np.arange(3)), [1, 2, 3])
    np.testing.assert_array_equal(a2(np.arange(3)), [2, 3, 4])


# -- tuning modes end to end ------------------------------------------------------------------

def test_tune_off_uses_the_first_variant_at_once(fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_TUNE", "off")
    f = elementwise(poly)
    np.testing.assert_allclose(f(X), POLY)
    assert f.jit.chosen_variant(X, None) == "chunk"
    assert f.jit._hot is not None


@pytest.mark.parametrize("tiered", ["0", "1"])
def test_tune_off_compiles_only_the_first_variant_and_records_it_apart(
        fresh_cache, monkeypatch, tiered):
    """The other variants would never run: they are not compiled, before the first
    result or after it; the record of the one variant is for off processes only (a
    tuning process plans them all)."""
    monkeypatch.setenv("ASP_TIERED", tiered)
    monkeypatch.setenv("ASP_TUNE", "off")
    f = elementwise(poly)
    np.testing.assert_allclose(f(X), POLY)
    s = f.jit.specialization(X, None)
    assert s.variant_names == ["chunk"] and s.pending is None
    f.jit.clear()
    np.testing.assert_allclose(f(X), POLY)
    s = f.jit.specialization(X, None)
    assert s.plan is None and s.variant_names == ["chunk"]  # loaded from the off record
    monkeypatch.setenv("ASP_TUNE", "online")
    f.jit.clear()
    np.testing.assert_allclose(f(X), POLY)
    s = f.jit.specialization(X, None)
    assert s.plan is not None  # planned again, not loaded from a one-variant record
    assert set(s.variant_names) == {"chunk", "stride", "dynamic", "stream"}


def test_tune_exhaustive_decides_on_the_first_call(fresh_cache, monkeypatch):
    monkeypatch.setenv("ASP_TUNE", "exhaustive")
    f = elementwise(poly)
    out = np.full_like(X, 7.0)
    assert f(X, out=out) is out
    np.testing.assert_allclose(out, POLY)
    # With out= the signature is "->f8", without it "->auto": each is tuned on its first call.
    assert f.jit.chosen_variant(X, out) in {"chunk", "stride", "dynamic", "stream"}
    assert f.jit.chosen_variant(X, None) is None
    assert f.jit._hot is not None
    np.testing.assert_allclose(f(X), POLY)
    assert f.jit.chosen_variant(X, None) in {"chunk", "stride", "dynamic", "stream"}


def test_hot_path_of_an_out_signature_does_not_serve_calls_without_out(fresh_cache):
    f = elementwise(poly)
    out32 = np.empty(X.shape, np.float32)
    for _ in range(calls_to_decide(3)):
        assert f(X, out=out32) is out32
    assert f.jit._hot is not None
    r = f(X)
    assert r.dtype == np.float64  # not out's float32
    np.testing.assert_allclose(r, POLY)
    for _ in range(12):
        f(X)
    assert f(X, out=out32) is out32
    assert f(X).dtype == np.float64


def test_tune_online_chooses_after_trying_each(fresh_cache):
    f = elementwise(poly)
    s = f.jit.specialization(X, None)
    n = len(s.variant_names)
    for _ in range(calls_to_decide(n, at_most=False) - 1):  # a warm-up and 3 rounds at least
        np.testing.assert_allclose(f(X), POLY)
        assert f.jit._hot is None
    for _ in range(calls_to_decide(n) - calls_to_decide(n, at_most=False) + 1):
        np.testing.assert_allclose(f(X), POLY)
    assert f.jit.chosen_variant(X, None) in s.variant_names
    assert f.jit._hot is not None


def test_calls_from_several_threads(fresh_cache):
    from concurrent.futures import ThreadPoolExecutor

    f = elementwise(poly)
    xs = [np.linspace(-1, 1, 100 + k) for k in range(24)]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(f, xs))
    for x, r in zip(xs, results):
        np.testing.assert_allclose(r, poly(x))
