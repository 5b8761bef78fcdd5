"""``x ** 3`` and ``x ** 4`` in vectors (asp.ir.powers, asp.passes.simd_calls).

A kernel without loops calls the vector form of the helpers where its body calls them
unconditionally: vector versions written with fma, which must give the bits of the
scalar form (Dekker's products, x scaled into the range where they are exact) on every
lane, and take the scalar form on the lanes outside that range.  The oracle is the
scalar form written in NumPy (each operation rounds as C's does): the result is asp's
own rounding (glibc's pow differs in about 1 case in 1200), so NumPy's power is not
the oracle for the last bit here; tests/test_float_semantics.py holds the edge values
against NumPy.
"""
from __future__ import annotations

import numpy as np
import pytest

from asp.ir import platform as ir
from asp.passes import simd_calls
from specializers.elementwise import elementwise
from tests.test_float_semantics import cube, fourth


def _split_err(a, b, p):
    ca = 134217729.0 * a
    ah = ca - (ca - a)
    al = a - ah
    cb = 134217729.0 * b
    bh = cb - (cb - b)
    bl = b - bh
    return ((ah * bh - p) + ah * bl + al * bh) + al * bl


def scalar_form(x: np.ndarray, n: int) -> np.ndarray:
    """``asp_pow3`` / ``asp_pow4`` of float64 ``x``, operation by operation."""
    lim, back = (2.0 ** 300, 2.0 ** 900) if n == 3 else (2.0 ** 200, 2.0 ** 800)
    ax = np.abs(x)
    scale = np.where(ax > lim, 1 / lim, np.where(ax < 1 / lim, lim, 1.0))
    out = np.where(ax > lim, back, np.where(ax < 1 / lim, 1 / back, 1.0))
    with np.errstate(all="ignore"):
        y = x * scale
        p = y * y
        e = _split_err(y, y, p)
        if n == 3:
            c = p * y
            r = c + (_split_err(p, y, c) + e * y)
        else:
            c = p * p
            r = c + ((2.0 * p) * e + _split_err(p, p, c))
        return np.where(np.isfinite(c) & (c != 0.0), r, c) * out


@elementwise
def poly(x):
    return 3 * x**3 + 2 * x**2 + x + 1


@elementwise
def either(x):
    return x ** 3 if x > 0.5 else x ** 4


EDGES = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.0 ** -1022, 2.0 ** 300,
         -(2.0 ** 300), np.nextafter(2.0 ** 300, np.inf), 2.0 ** -300,
         np.nextafter(2.0 ** -300, 0.0), 2.0 ** 200, np.nextafter(2.0 ** 200, np.inf),
         2.0 ** -200, np.nextafter(2.0 ** -200, 0.0), 1e154, 1.9e125, -1e200, 1e-310,
         8.319432152802452]


def _inputs(rng, n: int = 60_000) -> np.ndarray:
    """Magnitudes across the whole double range, both signs, the edges of the vector
    form's range and of the doubles sprinkled in singly and in runs (whole vectors)."""
    x = rng.random(n) * 10.0 ** rng.uniform(-330, 308, n) * rng.choice([-1.0, 1.0], n)
    x[rng.integers(0, n, 2000)] = rng.choice(EDGES, 2000)
    for start in rng.integers(0, n - 64, 20):
        x[start:start + 16] = rng.choice(EDGES)
    return x


def _every_variant(fn, x):
    s = fn.jit.specialization(x, None)
    assert not s.check_failures, s.check_failures
    return {name: fn.jit.run_variant(name, x, None) for name in s.variant_names}, s


def _same_bits(got: np.ndarray, want: np.ndarray) -> bool:
    return bool(np.array_equal(got, want, equal_nan=True)
                and np.array_equal(np.signbit(got), np.signbit(want)))


@pytest.mark.parametrize("fn,n", [(cube, 3), (fourth, 4)])
def test_powers_in_vectors_are_the_scalar_forms_bits(fn, n, rng):
    x = _inputs(rng)
    want = scalar_form(x, n)
    variants, s = _every_variant(fn, x)
    assert f"asp_pow{n}_simd(" in s.source  # the vector form is the one called
    assert f"asp_pow{7 - n}_simd(" not in s.source  # and only its C is compiled
    for name, got in variants.items():
        bad = ~((got == want) | (np.isnan(got) & np.isnan(want))) | (
            np.signbit(got) != np.signbit(want))
        assert not bad.any(), (name, x[bad][:5], got[bad][:5], want[bad][:5])


def test_float32_cube_rounds_the_double_scalar_form(rng):
    x = (rng.random(50_000) * 10.0 ** rng.uniform(-12, 12, 50_000)).astype(np.float32)
    x[rng.integers(0, x.size, 500)] = rng.choice(np.float32([0, -0.0, np.inf, np.nan]), 500)
    with np.errstate(all="ignore"):
        want = scalar_form(x.astype(np.float64), 3).astype(np.float32)
    variants, _ = _every_variant(cube, x)
    for name, got in variants.items():
        assert got.dtype == np.float32
        assert _same_bits(got, want), name


def test_a_polynomial_with_a_cube_is_the_scalar_forms(rng):
    x = _inputs(rng) * 1e-150  # its terms finite where the cube is
    with np.errstate(all="ignore"):
        c, s2 = scalar_form(x, 3), x * x
        want = ((3 * c + 2 * s2) + x) + 1
    variants, _ = _every_variant(poly, x)
    for name, got in variants.items():
        assert _same_bits(got, want), name


def test_a_power_under_a_condition_keeps_the_inline_form(rng):
    """A call under a condition stays on the inline form, which gcc if-converts into
    the vectorized loop (a call of the vector form there would leave the loop scalar);
    both forms give the same bits."""
    x = _inputs(rng)
    with np.errstate(all="ignore"):
        want = np.where(x > 0.5, scalar_form(x, 3), scalar_form(x, 4))
    variants, s = _every_variant(either, x)
    assert "asp_pow3_simd(x" not in s.source and "asp_pow4_simd(x" not in s.source
    for name, got in variants.items():
        assert _same_bits(got, want), name


def _call(name: str, arg: ir.Expr) -> ir.Call:
    return ir.Call(name, (arg,))


def test_simd_calls_renames_only_what_runs_unconditionally():
    x, t = ir.Var("x"), ir.Var("t")
    body = ir.Block((
        ir.Declare("double", "t", _call("asp_pow3", x)),
        ir.Assign(t, ir.Ternary(ir.BinOp(">", _call("asp_pow4", x), t),
                                _call("asp_pow3", t), t)),
        ir.Assign(t, ir.BinOp("&&", ir.BinOp("<", _call("asp_pow3", x), t),
                              ir.BinOp("<", _call("asp_pow4", t), x))),
        ir.If(ir.BinOp(">", t, x), ir.Block((ir.Return(_call("asp_pow3", t)),))),
        ir.Return(_call("asp_pow4", t)),
    ))
    out = simd_calls(body).body
    names = [[n.func for n in s.walk() if isinstance(n, ir.Call)] for s in out]
    assert names == [
        ["asp_pow3_simd"],                 # a statement of its own: renamed
        ["asp_pow4_simd", "asp_pow3"],     # the condition of ?: always runs, a branch not
        ["asp_pow3_simd", "asp_pow4"],     # the right operand of && may not run
        ["asp_pow3"],                      # control flow: it and all after it stay
        ["asp_pow4"],
    ]
    plain = ir.Block((ir.Return(ir.BinOp("+", x, x)),))
    assert simd_calls(plain) is plain
