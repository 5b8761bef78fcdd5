"""Random loop kernels on 8-byte values, where the ``vlanes`` variants apply: every variant
against the Python, bit for bit (a property test; the fuzzer's batches seldom qualify,
their kernels mixing dtypes, calls and Python ints)."""
from __future__ import annotations

import importlib.util
import itertools
import sys

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asp.frontend import get_source
from asp.frontend.scalar import translate
from asp.ir.pyscalar import T

_COUNT = itertools.count()
# Integer leaves are int64 values (a Python int alone would compute as Python's unbounded
# ints: checked code, no lockstep variants); float constants meet float64 values.
FLOATS = ("x", "c", "0.5", "-1.25", "3.0")
INTS = ("k", "j", "(k + i)", "(j - 3)")


@st.composite
def _num(draw, depth: int, kinds: str = "fi") -> tuple[str, str]:
    """An expression and its kind ('f' float64, 'i' int64)."""
    kind = draw(st.sampled_from(kinds))
    if depth == 0 or draw(st.integers(0, 2)) == 0:
        return draw(st.sampled_from(FLOATS if kind == "f" else INTS)), kind
    choice = draw(st.sampled_from(["bin", "bin", "neg", "ifexp", "conv"]))
    if choice == "bin":
        a, ka = draw(_num(depth - 1))
        b, kb = draw(_num(depth - 1))
        ops = ["+", "-", "*"] + (["/"] if "f" in (ka, kb) else ["&", "|", "^"])
        op = draw(st.sampled_from(ops))
        out = "f" if op == "/" or "f" in (ka, kb) else "i"
        if op == "/":  # a float64 divisor (Python floats alone raise ZeroDivisionError)
            b = f"({b} + c * 0.0)"
        return f"({a} {op} {b})", out
    if choice == "neg":
        a, ka = draw(_num(depth - 1))
        return f"(-{a})", ka
    if choice == "conv":  # a comparison as a number
        return f"(({draw(_cond(depth - 1))}) * (k * 0 + 1))", "i"
    a, ka = draw(_num(depth - 1, kind))
    b, kb = draw(_num(depth - 1, kind))
    if ka != kb:  # one type on both paths
        a, b = (f"({a} * 1.0)" if ka == "i" else a), (f"({b} * 1.0)" if kb == "i" else b)
    return f"({a} if {draw(_cond(depth - 1))} else {b})", "f" if "f" in (ka, kb) else "i"


@st.composite
def _cond(draw, depth: int) -> str:
    a, _ = draw(_num(max(depth, 0)))
    b, _ = draw(_num(max(depth, 0)))
    c = f"({a} {draw(st.sampled_from(['<', '>', '<=', '>=', '==', '!=']))} {b})"
    if depth > 0 and draw(st.integers(0, 2)) == 0:
        return f"(not {c})" if draw(st.booleans()) else \
            f"({c} {draw(st.sampled_from(['and', 'or']))} {draw(_cond(depth - 1))})"
    return c


@st.composite
def kernels(draw) -> str:
    """``def f(x, k)`` (float64, int64 arrays): a float local ``c`` updated in a loop that
    may break, continue or return early."""
    count = draw(st.integers(1, 7))
    update, kind = draw(_num(2, "f"))
    exit_ = draw(st.sampled_from(["break", "continue", "return c * 2.0", "return x - c"]))
    result, _ = draw(_num(2, "f"))
    step = draw(st.sampled_from(INTS))
    lines = ["def f(x, k):", "    c = x * 1.0", "    j = k * 1",
             f"    for i in range({count}):",
             f"        if {draw(_cond(1))}:", f"            {exit_}",
             f"        c = {update} * 1.0", f"        j = j + {step} * 2 + i",
             f"    return {result} + c + j * 0.5"]
    return "\n".join(lines) + "\n"


def _load(tmp_path, text: str):
    name = f"vlanes_prop_{next(_COUNT)}"
    path = tmp_path / f"{name}.py"
    path.write_text("from specializers.elementwise import elementwise\n\n@elementwise\n" + text)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.f


_X = np.array([0.0, -0.0, 1.0, -1.0, 0.5, np.inf, -np.inf, np.nan, 1e308, -5e-324, 2.5, -3.0])
_K = np.array([0, 1, -1, 2, -(2 ** 63), 2 ** 63 - 1, 3, -3, 7, 5, -2, 4], dtype=np.int64)


@settings(max_examples=25, derandomize=True, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(src=kernels())
def test_random_loop_kernels_every_variant_bit_for_bit(tmp_path_factory, src):
    f = _load(tmp_path_factory.mktemp("k"), src)
    rng = np.random.default_rng(len(src))
    # 12 edge values, then random ones: 301 elements, whole vectors and a scalar tail.
    x = np.concatenate([_X, rng.uniform(-4, 4, 289)])
    k = np.concatenate([_K, rng.integers(-9, 9, 289)])
    s = f.jit.specialization(x, k, None)
    # A kernel with a checked operation (Python floats divided: Python raises at zero)
    # reports through a flag, which no lockstep form carries: none of them then.
    sf = translate(get_source(f.py_func), f.py_func, {"x": T("double"), "k": T("int64_t")})
    if sf.checked:
        assert not any("lanes" in n for n in s.variant_names), src
    else:
        assert {"vlanes4", "vlanes8"} <= set(s.variant_names), src
    with np.errstate(all="ignore"):
        want = np.array([f.py_func(a, b) for a, b in zip(x, k)], dtype=np.float64)
    for name in s.variant_names:
        with np.errstate(all="ignore"):
            got = f.jit.run_variant(name, x, k, None)
        same = (got == want) | (np.isnan(got) & np.isnan(want))
        same &= (np.signbit(got) == np.signbit(want)) | np.isnan(want)  # a NaN's sign: any
        assert same.all(), (name, src, np.flatnonzero(~same)[:5], got[~same][:3],
                            want[~same][:3])
