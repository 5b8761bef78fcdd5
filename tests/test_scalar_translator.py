"""The core's public front end: the scalar translator a domain front end extends, the
fresh-name registry, loop roles in the IR, and the Python semantics the translator
keeps where the elementwise and stencil front ends used to differ."""
from __future__ import annotations

import ast
import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from asp.errors import AspFallbackWarning, FrontendError
from asp.frontend import get_source
from asp.frontend.mixed import Mixed
from asp.frontend.names import namespace
from asp.frontend.scalar import ScalarTranslator, c_name, translate
from asp.frontend.translator import settle
from asp.ir import platform as ir
from asp.ir.names import Namer, param, user
from asp.ir.node import Transformer
from asp.ir.pyscalar import FLOAT, INT, T, cast
from specializers.elementwise import elementwise
from specializers.elementwise.lanes import lanes_function

# -- names ---------------------------------------------------------------------------------


def test_namer_gives_fresh_deterministic_names_apart_from_taken_ones():
    names = Namer(taken={"asp_t2"})
    assert [names.fresh(), names.fresh(), names.fresh("m")] == ["asp_t1", "asp_t3", "asp_m4"]
    assert Namer(taken={"asp_t2"}).fresh() == "asp_t1"  # the same translation, the same names
    assert user("x") == "v_x" and param("g") == "p_g"
    assert c_name is user  # the old name of the same function


# -- a domain front end on the translator ---------------------------------------------------

def clamp01(v):
    return min(max(v, 0.0), 1.0)


def not_a_kernel_function(v):
    return v


class Indexing(ScalarTranslator):
    """A toy domain: reads of a float32 array ``a`` at an integer index, and clamp01()."""

    callables = "clamp01() and the core's functions"
    s_While = None

    def e_Subscript(self, node):
        if not (isinstance(node.value, ast.Name) and node.value.id == "a"):
            raise self.err(node, "only 'a' can be indexed")
        e, t = self.expr(node.slice)
        return ir.ArrayRef("a", cast(e, t, "int64_t")), T("float")

    def domain_call(self, node, fn):
        if fn is clamp01:
            (e, t), = (self.expr(a) for a in node.args)
            return ir.Call("clamp01", (cast(e, t, "double"),)), FLOAT
        return super().domain_call(node, fn)


def toy(i, s):
    v = a[i] * 2 + s  # noqa: F821 - 'a' is the toy domain's array
    if v > 1 and i % 2:
        v = clamp01(v) ** 2
    return v


def toy_while(i, s):
    while i:
        i -= 1
    return s


def toy_call(i, s):
    return not_a_kernel_function(s)


def _toy(fn):
    src = get_source(fn)
    def make(env):
        return Indexing(src, namespace(fn), {"i": T("int64_t"), "s": FLOAT}, env,
                        kind="a toy kernel")

    return settle(make, src.func.body)


def test_a_domain_front_end_overrides_its_domain_and_inherits_the_rest():
    tr, body = _toy(toy)
    # NumPy's typing is inherited: float32 * a weak int + a weak float stays float32; the
    # local is then also assigned clamp01()'s Python float, and holds either type, as in
    # Python (mixed.py): a float32 on one path, a Python float on the other.
    assert tr.env == {"v": Mixed((T("float"), FLOAT))}
    nodes = list(body.walk())
    assert any(isinstance(n, ir.ArrayRef) and n.array == "a" for n in nodes)
    assert any(isinstance(n, ir.Call) and n.func == "clamp01" for n in nodes)
    assert any(isinstance(n, ir.Call) and n.func == "asp_mod_i64" for n in nodes)  # Python's %
    # 'i % 2' is an int: accepted by 'and' in a test, where only its truth counts.
    # (The test reads the mixed v: it is computed under a run-time test of v's type.)
    assert any(isinstance(n, ir.BinOp) and n.op == "&&" for n in nodes)


def test_a_domain_front_end_refuses_what_it_turns_off_and_calls_it_does_not_know():
    with pytest.raises(FrontendError, match="'while' loops is not supported in a toy kernel"):
        _toy(toy_while)
    with pytest.raises(FrontendError, match=r"call to function 'not_a_kernel_function' "
                                            r"\(defined at .*\) is not supported: a toy "
                                            r"kernel can call only clamp01\(\)"):
        _toy(toy_call)


# -- loop roles -------------------------------------------------------------------------------

def summed(x, n):
    s = 0.0
    for i in range(n):
        s += x * i
    return s


class _Unmark(Transformer):
    def visit_For(self, node: ir.For):
        return dataclasses.replace(self.generic_visit(node), role="")


def _lanes(sf):
    kinds = [SimpleNamespace(kind=k) for k in ("array", "scalar", "array")]
    return lanes_function(sf, ["v_x", "v_n", "asp_out"], kinds, "double", lanes=8,
                          schedule=("static", 1), when=ir.Const(1, "int64_t"),
                          size=ir.Var("n"), params=())


def test_range_loops_are_marked_in_the_ir_and_lanes_recognises_them_by_it():
    sf = translate(get_source(summed), summed, {"x": T("double"), "n": INT})
    loops = [n for n in sf.body.walk() if isinstance(n, ir.For)]
    assert [lp.role for lp in loops] == ["range"]
    assert _lanes(sf) is not None  # uniform bounds: elements run in lockstep
    # The same loop, no longer said to be a range loop: lanes does not guess from names.
    assert _lanes(_Unmark().visit(sf)) is None


# -- semantics kept where the two front ends differed ----------------------------------------

@elementwise
def signed_root(x):
    return math.copysign(2.0, x ** 0.5) + x ** 0.5


def test_a_half_power_is_pows_at_minus_infinity_and_minus_zero():
    # sqrt(-inf) is NaN and sqrt(-0.0) is -0.0; Python's ** gives inf and 0.0 (and GCC
    # turns a vectorized pow(x, 0.5) into a square root, so the C says it outright).
    x = np.array([-np.inf, -0.0, 0.0, 4.0, 2.25, np.nan, np.inf] * 6)
    want = np.array([math.copysign(2.0, v ** 0.5) + v ** 0.5 for v in x])
    assert want[0] == np.inf and want[1] == 2.0
    s = signed_root.jit.specialization(x, None)
    assert not s.check_failures
    for name in s.variant_names:
        np.testing.assert_array_equal(signed_root.jit.run_variant(name, x, None), want,
                                      err_msg=name)


K_SHADOWED = 5


@elementwise
def shadowed(x):
    y = x + K_SHADOWED  # noqa: F823 - the point: Python raises UnboundLocalError here
    K_SHADOWED = 2
    return y + K_SHADOWED


def test_a_local_is_local_in_the_whole_function_as_in_python():
    # The module's K_SHADOWED was compiled in as a constant, and the call returned a value.
    with pytest.warns(AspFallbackWarning, match="local 'K_SHADOWED' is used before it is "
                                                "assigned"), \
            pytest.raises(UnboundLocalError):
        shadowed(np.arange(3.0))


def _either(x, y):
    if x and not y:
        return 1.0
    return 2.0 if x or y else 3.0


either = elementwise(_either)


@elementwise
def or_value(x, y):
    return x or y


def test_and_or_of_numbers_compile_as_tests_not_as_values(monkeypatch):
    x = np.array([0.0, 1.5, 0.0, -2.0, np.nan] * 9)
    y = np.array([0.0, 0.0, 3.0, 4.0, 0.0] * 9)
    monkeypatch.setenv("ASP_STRICT", "1")
    want = np.array([_either(a, b) for a, b in zip(x, y)])
    s = either.jit.specialization(x, y, None)
    for name in s.variant_names:
        np.testing.assert_array_equal(either.jit.run_variant(name, x, y, None), want)
    # As a value, 'x or y' is x or y itself, of its own type: not compiled.
    with pytest.raises(FrontendError, match="'and'/'or' are supported on booleans"):
        or_value(x, y)
