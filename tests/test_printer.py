"""The C printer: small golden strings, and generated C that compiles and computes."""
from __future__ import annotations

import ctypes
import dataclasses
import math

import numpy as np
import pytest

from asp.codegen import entry_point, expr_to_c, function_to_cgen, module_to_c, render_module
from asp.codegen.cprinter import _STMT
from asp.ir import platform as ir
from asp.jit import build

V = ir.Var


def I(v):  # noqa: E743 - an int64 literal
    return ir.Const(v, "int64_t")


def F(v):
    return ir.Const(v, "double")


def stmt(s: ir.Stmt) -> str:
    return "\n".join(str(g) for g in _STMT.visit(s))


# -- expressions ------------------------------------------------------------------------------

@pytest.mark.parametrize("expr, text", [
    (ir.BinOp("+", V("a"), V("b")), "a + b"),
    (ir.BinOp("*", ir.BinOp("+", V("a"), V("b")), V("c")), "(a + b) * c"),
    (ir.BinOp("+", V("a"), ir.BinOp("*", V("b"), V("c"))), "a + b * c"),
    (ir.BinOp("-", V("a"), ir.BinOp("-", V("b"), V("c"))), "a - (b - c)"),
    (ir.BinOp("-", ir.BinOp("-", V("a"), V("b")), V("c")), "a - b - c"),
    (ir.BinOp("/", V("a"), ir.BinOp("*", V("b"), V("c"))), "a / (b * c)"),
    (ir.BinOp("&&", ir.BinOp("<", V("a"), V("b")), ir.BinOp("||", V("c"), V("d"))),
     "a < b && (c || d)"),
    (ir.BinOp("==", ir.BinOp("&", V("a"), V("b")), I(0)), "(a & b) == 0"),
    (ir.BinOp("<<", V("a"), ir.BinOp("+", V("b"), I(1))), "a << b + 1"),
    (ir.BinOp("+", ir.BinOp("<<", V("a"), V("b")), I(1)), "(a << b) + 1"),
    (ir.UnaryOp("-", V("x")), "-x"),
    (ir.UnaryOp("-", ir.BinOp("+", V("x"), V("y"))), "-(x + y)"),
    (ir.UnaryOp("-", ir.UnaryOp("-", V("x"))), "-(-x)"),
    (ir.UnaryOp("-", F(-1.0)), "-(-1.0)"),
    (ir.UnaryOp("!", ir.BinOp("<", V("a"), V("b"))), "!(a < b)"),
    (ir.BinOp("*", V("a"), ir.UnaryOp("-", V("b"))), "a * -b"),
    (ir.Cast("float", ir.BinOp("+", V("a"), V("b"))), "(float)(a + b)"),
    (ir.Cast("int64_t", V("x")), "(int64_t)x"),
    (ir.BinOp("*", ir.Cast("double", V("i")), V("h")), "(double)i * h"),
    (ir.Call("pow", (V("x"), F(2.0))), "pow(x, 2.0)"),
    (ir.Call("f", ()), "f()"),
    (ir.ArrayRef("x", ir.BinOp("+", ir.BinOp("*", V("i"), V("n")), V("j"))), "x[i * n + j]"),
    (ir.Ternary(ir.BinOp("<", V("a"), V("b")), V("a"), V("b")), "a < b ? a : b"),
    (ir.BinOp("+", ir.Ternary(V("c"), V("a"), V("b")), I(1)), "(c ? a : b) + 1"),
    (ir.Ternary(V("c"), V("a"), ir.Ternary(V("d"), V("b"), V("e"))), "c ? a : d ? b : e"),
])
def test_expression_golden(expr, text):
    assert expr_to_c(expr) == text


@pytest.mark.parametrize("const, text", [
    (F(1.0), "1.0"),
    (F(0.1), "0.1"),
    (F(1e300), "1e+300"),
    (F(-2.5), "-2.5"),
    (F(3), "3.0"),
    (ir.Const(0.1, "float"), "0.1f"),
    (ir.Const(1e20, "float"), "1e+20f"),
    (ir.Const(5, "float"), "5.0f"),
    (F(math.nan), "NAN"),
    (F(math.inf), "INFINITY"),
    (F(-math.inf), "(-INFINITY)"),
    (ir.Const(math.inf, "float"), "INFINITY"),
    (I(7), "7"),
    (I(-7), "-7"),
    (I(2**40), "INT64_C(1099511627776)"),
    (I(-(2**40)), "INT64_C(-1099511627776)"),
    (I(2**63 - 1), "INT64_C(9223372036854775807)"),
    (I(-(2**63)), "INT64_MIN"),
    (ir.Const(3, "int32_t"), "3"),
    (ir.Const(True, "bool"), "1"),
    (ir.Const(False, "bool"), "0"),
    (ir.Const(2**64 - 1, "uint64_t"), "UINT64_C(18446744073709551615)"),
])
def test_literal_golden(const, text):
    assert expr_to_c(const) == text


@pytest.mark.parametrize("value", [0.1, 1 / 3, 2.0**-1074, 1.7976931348623157e308, -123.456e-7,
                                   math.pi, 1e16, 12345678901234567.0])
def test_double_literals_round_trip_exactly(value):
    assert float(expr_to_c(F(value))) == value


def test_negative_literal_binds_as_unary():
    assert expr_to_c(ir.BinOp("-", V("a"), F(-1.0))) == "a - -1.0"
    assert expr_to_c(ir.Cast("float", F(-1.0))) == "(float)-1.0"
    assert expr_to_c(ir.UnaryOp("-", I(-3))) == "-(-3)"


def test_expression_printer_rejects_statements():
    with pytest.raises(TypeError, match="not an expression"):
        expr_to_c(ir.Break())


# -- statements -------------------------------------------------------------------------------

def _loop(**kw) -> ir.For:
    body = ir.Block((ir.Assign(ir.ArrayRef("y", V("i")), F(1.0)),))
    return ir.For("i", I(0), V("n"), body, **kw)


LOOP = "for (int64_t i = 0; i < n; ++i)\n{\n  y[i] = 1.0;\n}"


@pytest.mark.parametrize("kw, pragmas", [
    ({}, []),
    ({"parallel": ir.Parallel()}, ["#pragma omp parallel for schedule(static)"]),
    ({"parallel": ir.Parallel("static", 1)}, ["#pragma omp parallel for schedule(static, 1)"]),
    ({"parallel": ir.Parallel("dynamic", 256)},
     ["#pragma omp parallel for schedule(dynamic, 256)"]),
    ({"parallel": ir.Parallel("guided", collapse=2)},
     ["#pragma omp parallel for schedule(guided) collapse(2)"]),
    ({"parallel": ir.Parallel(num_threads=3)},
     ["#pragma omp parallel for schedule(static) num_threads(3)"]),
    ({"parallel": ir.Parallel(when=ir.BinOp(">", V("n"), I(100)))},
     ["#pragma omp parallel for schedule(static) if(n > 100)"]),
    ({"parallel": ir.Parallel("dynamic", 4, 2), "simd": True, "unroll": 4},
     ["#pragma omp parallel for simd schedule(dynamic, 4) collapse(2)",
      "#pragma GCC unroll 4"]),
    ({"simd": True}, ["#pragma omp simd"]),
    ({"unroll": 8}, ["#pragma GCC unroll 8"]),
    ({"simd": True, "unroll": 2}, ["#pragma omp simd", "#pragma GCC unroll 2"]),
])
def test_for_loop_pragmas(kw, pragmas):
    assert stmt(_loop(**kw)) == "\n".join([*pragmas, LOOP])


def test_for_loop_with_a_step():
    loop = ir.For("i", V("a"), V("b"), ir.Block((ir.Break(),)), step=I(3))
    assert stmt(loop) == "for (int64_t i = a; i < b; i += 3)\n{\n  break;\n}"


def test_statement_golden():
    assert stmt(ir.Declare("double", "t")) == "double t;"
    assert stmt(ir.Declare("double", "t", F(1.0))) == "double t = 1.0;"
    assert stmt(ir.Declare("int64_t", "n", V("m"), const=True)) == "int64_t const n = m;"
    assert stmt(ir.Assign(V("x"), F(2.0))) == "x = 2.0;"
    assert stmt(ir.Assign(V("x"), F(2.0), op="*")) == "x *= 2.0;"
    assert stmt(ir.ExprStmt(ir.Call("f", (V("a"),)))) == "f(a);"
    assert stmt(ir.Return()) == "return;"
    assert stmt(ir.Return(ir.BinOp("+", V("a"), I(1)))) == "return a + 1;"
    assert stmt(ir.Break()) == "break;"
    assert stmt(ir.Continue()) == "continue;"
    assert stmt(ir.Pragma("omp barrier")) == "#pragma omp barrier"
    assert stmt(ir.While(ir.BinOp("<", V("i"), V("n")),
                         ir.Block((ir.Assign(V("i"), I(1), op="+"),)))) == \
        "while (i < n)\n{\n  i += 1;\n}"


def test_if_else_golden():
    then, orelse = ir.Block((ir.Break(),)), ir.Block((ir.Continue(),))
    assert stmt(ir.If(V("c"), then, orelse)) == \
        "if (c)\n{\n  break;\n}\nelse\n{\n  continue;\n}"
    # An empty else prints no else at all.
    assert stmt(ir.If(V("c"), then, ir.Block(()))) == "if (c)\n{\n  break;\n}"
    assert stmt(ir.If(V("c"), then)) == "if (c)\n{\n  break;\n}"


def test_nested_block_indentation():
    inner = ir.For("j", I(0), V("m"), ir.Block((ir.Assign(V("s"), V("j"), op="+"),)))
    outer = ir.For("i", I(0), V("n"), ir.Block((inner,)))
    assert stmt(outer) == (
        "for (int64_t i = 0; i < n; ++i)\n{\n"
        "  for (int64_t j = 0; j < m; ++j)\n  {\n    s += j;\n  }\n}")


def test_params_and_function_golden():
    params = (
        ir.Param("x", "double", pointer=True, const=True, restrict=True),
        ir.Param("y", "float", pointer=True, restrict=True),
        ir.Param("z", "int32_t", pointer=True),
        ir.Param("w", "int64_t", pointer=True, const=True),
        ir.Param("n", "int64_t"),
    )
    fn = ir.Function("k", params, ir.Block((ir.Return(I(0)),)), ret="int")
    assert str(function_to_cgen(fn)) == (
        "int k(const double *__restrict__ x, float *__restrict__ y, int32_t *z, "
        "const int64_t *w, int64_t n)\n{\n  return 0;\n}")
    helper = ir.Function("h", (ir.Param("a", "double"),), ir.Block((ir.Return(V("a")),)),
                         ret="double", static=True, inline=True)
    assert str(function_to_cgen(helper)).startswith("static inline double h(double a)\n{")


def test_a_threshold_branch_is_a_macro_a_quick_tier_makes_the_parallel_code(fresh_cache):
    """``if (work > T)`` of a parallel function (``ir.If`` role "threshold") prints as
    ``ASP_PARALLEL(work > T)``: its own test, unless the quick first tier defined it 1
    (then gcc compiles no serial code); a module without one has no macro."""
    from asp.runtime.build import QUICK

    branch = ir.If(ir.BinOp(">", V("n"), I(100)), ir.Block((ir.Return(I(1)),)),
                   ir.Block((ir.Return(I(2)),)), role="threshold")
    fn = ir.Function("f", (ir.Param("n", "int64_t"),), ir.Block((branch,)), ret="int")
    src = module_to_c(ir.Module((fn,), includes=("stdint.h",)))
    assert "if (ASP_PARALLEL(n > 100))" in src
    assert "#ifndef ASP_PARALLEL\n#define ASP_PARALLEL(work) (work)\n#endif" in src
    assert "#define ASP_PARALLEL(work) 1" in QUICK
    for source, small in ((src, 2), (QUICK + src, 1)):
        f = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int64)(
            build(source, kernel="test.threshold").address("f"))
        assert f(101) == 1 and f(5) == small
    plain = dataclasses.replace(branch, role=None)
    src = module_to_c(ir.Module((dataclasses.replace(fn, body=ir.Block((plain,))),),
                                includes=("stdint.h",)))
    assert "if (n > 100)" in src and "ASP_PARALLEL" not in src


def test_module_golden_with_includes_and_preamble():
    fn = ir.Function("f", (ir.Param("a", "double"),), ir.Block((ir.Return(V("a")),)),
                     ret="double")
    mod = ir.Module((fn,), includes=("stdint.h", "math.h", "stdbool.h"),
                    preamble="#define K 3\n")
    assert module_to_c(mod) == (
        "#include <stdint.h>\n#include <math.h>\n#include <stdbool.h>\n\n#define K 3\n\n"
        "double f(double a)\n{\n  return a;\n}\n")
    # A preamble that starts with a newline prints the same.
    assert module_to_c(ir.Module((fn,), includes=("stdint.h", "math.h", "stdbool.h"),
                                 preamble="\n#define K 3\n")) == module_to_c(mod)
    assert module_to_c(ir.Module((fn,))) == (
        "#include <stdint.h>\n#include <math.h>\n\ndouble f(double a)\n{\n  return a;\n}\n")


def test_statement_printer_rejects_expressions():
    with pytest.raises(TypeError, match="not a statement"):
        _STMT.visit(V("x"))


# -- round trip: the printed C compiles and computes ------------------------------------------

def _round_trip_module() -> ir.Module:
    # out[i] = (x[i] < 0 ? -x[i] : x[i]) * c + big + nan-test, through a while and a break.
    x_i = ir.ArrayRef("x", V("i"))
    body = ir.Block((
        ir.Declare("double", "v", ir.Ternary(ir.BinOp("<", x_i, F(0.0)),
                                             ir.UnaryOp("-", x_i), x_i)),
        ir.Declare("int64_t", "k", I(0)),
        ir.While(ir.Const(True, "bool"), ir.Block((
            ir.Assign(V("k"), I(1), op="+"),
            ir.If(ir.BinOp(">=", V("k"), I(3)), ir.Block((ir.Break(),))),
        ))),
        ir.Assign(ir.ArrayRef("out", V("i")),
                  ir.BinOp("+", ir.BinOp("*", V("v"), V("c")),
                           ir.BinOp("+", ir.Cast("double", V("k")),
                                    ir.Cast("double", ir.BinOp("-", I(2**40), I(2**40)))))),
        ir.If(ir.Call("isnan", (x_i,)), ir.Block((ir.Assign(ir.ArrayRef("out", V("i")),
                                                            F(-math.inf)),))),
    ))
    loop = ir.For("i", I(0), V("n"), body, parallel=ir.Parallel("static", 1))
    fn = ir.Function("kern", (ir.Param("x", "double", pointer=True, const=True, restrict=True),
                              ir.Param("out", "double", pointer=True, restrict=True),
                              ir.Param("n", "int64_t"), ir.Param("c", "double")),
                     ir.Block((loop,)), ret="void")
    return ir.Module((fn,), includes=("stdint.h", "stdbool.h", "math.h"))


def test_generated_c_compiles_and_computes():
    src = module_to_c(_round_trip_module())
    lib = build(src, kernel="test_printer.round_trip")
    f = lib.cdll.kern
    f.restype = None
    f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_double]
    x = np.array([-2.0, -0.5, 0.0, 1.5, np.nan, 4.0])
    out = np.zeros_like(x)
    f(x.ctypes.data, out.ctypes.data, x.size, 0.1)
    expected = np.abs(x) * 0.1 + 3.0
    expected[np.isnan(x)] = -np.inf
    np.testing.assert_array_equal(out, expected)


def test_render_module_adds_abi_entries():
    from asp.runtime import ArgSpec, make_entry

    mod = _round_trip_module()
    specs = (ArgSpec("array", np.float64, 1, group=0),
             ArgSpec("array", np.float64, 1, write=True, alloc=True, group=0),
             ArgSpec("float"))
    # The ABI adds one extent per array dimension: x, x_n0, out, out_n0, c.  Wrap the kernel.
    wrapper = ir.Function("wrap", (ir.Param("x", "double", pointer=True, const=True),
                                   ir.Param("x_n0", "int64_t"),
                                   ir.Param("out", "double", pointer=True),
                                   ir.Param("out_n0", "int64_t"), ir.Param("c", "double")),
                          ir.Block((ir.ExprStmt(ir.Call("kern", (V("x"), V("out"), V("x_n0"),
                                                                 V("c")))),
                                    ir.Return(I(0)))), ret="int")
    mod = ir.Module(mod.functions + (wrapper,), includes=mod.includes)
    ep = entry_point("asp_entry_wrap", "wrap", specs)
    assert ep.args == ("(const double *)ptrs[0]", "dims[0]", "(double *)ptrs[1]", "dims[1]",
                       "f[0]")
    src = render_module(mod, [ep], kernel="test_printer.entry", signature="(f8)->f8")
    assert "int asp_entry_wrap(void **ptrs, const int64_t *dims, const double *f, " \
           "const int64_t *i)" in src
    assert "Signature: (f8)->f8" in src
    lib = build(src, kernel="test_printer.entry")
    entry = make_entry(lib.address("asp_entry_wrap"), specs, ret=1, keepalive=lib)
    x = np.array([1.0, -2.0, 3.0])
    np.testing.assert_array_equal(entry(x, None, 2.0), np.abs(x) * 2.0 + 3.0)


def test_a_function_with_its_own_optimization_level_compiles_and_computes(fresh_cache):
    """``Function.optimize``: the function alone at that level under GCC (the stencil's
    border slabs, half the compile time at -O2 for the same speed), except in a quick
    first tier, which defines ASP_QUICK_TIER and builds everything at -O1."""
    from asp.runtime.build import QUICK

    body = ir.Block((ir.Return(ir.BinOp("*", V("x"), I(3))),))
    helper = ir.Function("triple", (ir.Param("x", "int64_t"),), body, ret="int64_t",
                         static=True, optimize="O2")
    call = ir.Block((ir.Return(ir.Call("triple", (V("x"),))),))
    main = ir.Function("asp_triple", (ir.Param("x", "int64_t"),), call, ret="int64_t")
    src = module_to_c(ir.Module(functions=(main,), helpers=(helper,)))
    guard = "#if defined(__GNUC__) && !defined(__clang__) && !defined(ASP_QUICK_TIER)"
    assert guard in src and '__attribute__((optimize("O2")))' in src
    assert src.index('optimize("O2")') < src.index("triple(int64_t x)")
    assert "#define ASP_QUICK_TIER 1" in QUICK
    for source in (src, QUICK + src):
        fn = build(source, kernel="test.optimize").address("asp_triple")
        f = ctypes.CFUNCTYPE(ctypes.c_int64, ctypes.c_int64)(fn)
        assert f(14) == 42 and f(-(2**61)) == -3 * 2**61
    bad = ir.Function("bad", (), ir.Block(()), optimize='O2"))) evil((')
    with pytest.raises(ValueError, match="not a level such as 'O2'"):
        module_to_c(ir.Module(functions=(bad,)))
