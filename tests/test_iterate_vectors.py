"""The blocked iteration's jammed sweeps in explicit vectors (specializers.stencil.vectors):
used where the kernel is plain arithmetic, bit-identical to the step loop at every vector
width, and left scalar (still right) where it is not."""
from __future__ import annotations

import re

import numpy as np
import pytest

from asp.ir import platform as ir
from specializers.stencil import StencilKernel, temporal, vectors
from specializers.stencil import iterate as iterate_module
from tests.test_iterate import _every_blocked_variant, loop

RNG = np.random.default_rng(20261203)


# Kernels of this module's own source: kernels (their specializations and records) are
# kept per kernel function, and test_iterate's, run before in the same worker with
# another sample of the spaces, would bring their variants along.
class Heat(StencilKernel):
    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * lap


class Heat3(StencilKernel):
    def kernel(self, u, out):
        for x in out.interior_points():
            acc = -6.0 * u[x]
            for y in u.neighbors(x, 1):
                acc += u[y]
            out[x] = u[x] + 0.1 * acc


class Clipped(StencilKernel):
    """Not plain arithmetic (a call): its sweeps stay scalar."""

    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * abs(lap)


class Negated(StencilKernel):
    """A local set to a scalar value (broadcast), a unary minus, a division."""

    def kernel(self, u, out):
        for x in out.interior_points():
            s = 0.25
            for y in u.neighbors(x, 1):
                s = s + u[y] / 4.0
            out[x] = -(s - u[x]) * 0.5


class SignedZero(StencilKernel):
    """A local set to a scalar -0.0 (its sign survives only if the broadcast keeps it)."""

    def kernel(self, u, r, out):
        for x in out.interior_points():
            z = -0.0 * r
            lap = -4.0 * u[x]
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = z * u[x] - 0.0 * lap


@pytest.fixture(autouse=True)
def _one_point_per_depth(monkeypatch):
    monkeypatch.setattr(temporal, "SAMPLE", 1)


def _source(k, u, *args, steps=7):
    """The C of ``k``'s blocked iteration for grids like ``u`` (whole space)."""
    iterate_module._JITS.clear()
    k.iterate(u, *args, steps=steps)
    jit = iterate_module.iteration_jit(k, u, *args)
    assert jit is not None
    return jit.specialization(u, *args, np.zeros_like(u), np.zeros_like(u), steps).source


def test_jammed_sweeps_of_plain_arithmetic_are_explicit_vectors(fresh_cache, monkeypatch):
    monkeypatch.setattr(temporal, "SAMPLE", 1000)
    for k, u, args in ((Heat(), RNG.random((200, 300)), (0.1,)),
                       (Heat(), RNG.random((200, 300)).astype(np.float32), (0.1,)),
                       (Heat3(), RNG.random((30, 40, 50)), ()),
                       (Heat3(), RNG.random((30, 40, 50)).astype(np.float32), ())):
        n = vectors.lanes("double" if u.dtype == np.float64 else "float")
        src = _source(k, u, *args)
        jammed = [f for f in re.findall(r"^int (stencil_iter_j(\d+)e?)\(", src, re.M)
                  if int(f[1]) > 1]
        assert jammed, "no jammed sweep in the space"
        # Each jam in both forms: the neighbours after a point shuffled from the next
        # aligned vector, or loaded unaligned from the point on (``east``).  Level 1
        # reads the pass's input grid, which has no padding around its rows: there every
        # neighbour is loaded unaligned from its own point, in both forms.
        bodies = {b.split("(")[0]: b for b in src.split("\nint stencil_iter_")[1:]}
        vt = "asp_v_double" if u.dtype == np.float64 else "asp_v_float"
        for name, jam in jammed:
            body = bodies[name[len("stencil_iter_"):]]
            after = re.findall(r"asp_w\d+_p1 = ([^;]+);", body)
            rings = [a for a in after if "asp_src" not in a]
            grid = [a for a in after if "asp_src" in a]
            assert rings and grid, name
            assert all(a.startswith(f"*(const {vt} *)&asp_src0[") and a.endswith(" + 1]")
                       for a in grid), name
            before = re.findall(r"asp_w\d+_m1 = ([^;]+);", body)
            assert any(a.startswith(f"*(const {vt} *)&asp_src0[") and a.endswith(" + -1]")
                       for a in before), name
            if name.endswith("e"):
                assert all(a.startswith("*(const asp_v_") for a in rings), name
                assert not re.search(r"asp_a\d+_2 =", body), name  # no vector at i + W
            else:
                assert all(a.startswith("ASP_V_") for a in rings), name
                assert f"{name}e" in {f for f, _ in jammed}, name
        # one vector loop per level case (level 1 from the grid, the others from rings),
        # per target (ring, grid)
        last = u.ndim - 1
        loops = re.findall(rf"(#pragma omp simd\s*)?for \(int64_t asp_i{last} = asp_vs; "
                           rf"asp_i{last} < asp_ve; asp_i{last} \+= {n}\)", src)
        assert len(loops) >= 4 * len(jammed) and not any(loops)
        ct = "DOUBLE" if u.dtype == np.float64 else "FLOAT"
        assert f"ASP_V_{ct}_SHUFFLE(" in src and "aligned_alloc(64, " in src


def test_other_bodies_stay_scalar_and_right(fresh_cache, monkeypatch):
    monkeypatch.setattr(temporal, "SAMPLE", 1000)
    u = RNG.random((150, 260))
    src = _source(Clipped(), u, 0.1)
    assert "stencil_iter_j2" in src and "_SHUFFLE(" not in src.split("stencil_iter_")[1]
    assert "asp_vs" not in src
    assert "stencil_iter_j2e" not in src  # no vectors, so no second form of them
    _every_blocked_variant(monkeypatch, Clipped(), (u,), (0.1,), 19)


_MACHINE_WIDTH = vectors.vector_bytes()


@pytest.mark.parametrize("width", [16, 32, 64])
def test_every_vector_width_is_the_loop_bit_for_bit(monkeypatch, width):
    """The processor decides the width (AVX-512: 64 bytes); the code is right at each
    (GCC splits a vector wider than the machine's): at every width, 2-D float64 (the
    fewest lanes) and 3-D float32 (the most, against rows of 41 points); at this
    machine's own width also a body with a broadcast local, a division and a negation.
    (All of them at every width took three minutes of the suite's compiling, for code
    whose width enters only through its lane count; 3-D float64, 2-D float32 and two
    state levels run at the machine's width through every variant in test_iterate.py.)"""
    monkeypatch.setattr(vectors, "vector_bytes", lambda: width)
    u = RNG.random((130, 170))
    f32 = RNG.random((20, 30, 41)).astype(np.float32)
    cases = [(Heat(), (u,), (0.1,), 19), (Heat3(), (f32,), (), 9)]
    if width == _MACHINE_WIDTH:
        cases.append((Negated(), (u,), (), 21))
    for k, levels, args, steps in cases:
        s = _every_blocked_variant(monkeypatch, k, levels, args, steps)
        # Compiled at this width, not loaded from another width's record (the widths
        # run in one process share a cache: the width is part of the record's key).
        assert s.source is not None and f"vector_size({width})" in s.source


def test_signed_zeros_and_specials_are_kept(monkeypatch):
    """A broadcast scalar keeps -0.0 (added to a vector of -0.0; one of +0.0 would make it
    +0.0), and infinities and NaNs go through a vector lane as through a scalar."""
    u = RNG.random((100, 140))
    for k, args in ((SignedZero(), (1.0,)), (Negated(), ())):
        v = u.copy()
        v[5, 7:20] = -0.0
        v[40, 30] = np.inf
        v[60, 80] = np.nan
        s = _every_blocked_variant(monkeypatch, k, (v,), args, 6)
        assert "_SHUFFLE(" in s.source[s.source.index("int stencil_iter_j2("):]
        want = loop(k, v, *args, steps=6)
        jit = iterate_module.iteration_jit(k, v, *args)
        for name in s.entries:  # (assert_array_equal takes -0.0 for 0.0)
            got = jit.run_variant(name, v, *args, np.zeros_like(v), np.zeros_like(v), 6)
            assert np.array_equal(np.signbit(got), np.signbit(want)), name
            np.testing.assert_array_equal(got, want)
        assert np.signbit(want).any() and not np.signbit(want).all()


def test_vector_block_broadcasts_scalars_and_refuses_the_rest():
    v = {"a", "b"}
    block = ir.Block((ir.Declare("double", "a", ir.Const(1.0, "double")),
                      ir.Assign(ir.Var("b"), ir.BinOp("*", ir.Var("p_r"), ir.Var("a"))),
                      ir.Assign(ir.Var("a"), ir.Var("p_r")),
                      ir.Assign(ir.Var("a"), ir.Const(2.0, "double"), "+")))
    out = vectors.vector_block(block, "double", {"p_r": "double"}, v)
    nz = ir.Var("ASP_V_DOUBLE_NZ")
    assert out.body[0] == ir.Declare("asp_v_double", "a",
                                     ir.BinOp("+", nz, ir.Const(1.0, "double")))
    assert out.body[1] == block.body[1]  # vector * scalar: the operator broadcasts
    assert out.body[2] == ir.Assign(ir.Var("a"), ir.BinOp("+", nz, ir.Var("p_r")))
    assert out.body[3] == block.body[3]
    cast = ir.Assign(ir.Var("a"), ir.BinOp("*", ir.Cast("double", ir.BinOp(
        "+", ir.Var("p_n"), ir.Const(1, "int64_t"))), ir.Var("b")))
    assert vectors.vector_block(ir.Block((cast,)), "double", {"p_n": "int64_t"}, v) \
        == ir.Block((cast,))  # a scalar converted to the grid's type, broadcast
    for bad in (ir.Assign(ir.Var("a"), ir.Call("fabs", (ir.Var("b"),))),
                ir.Assign(ir.Var("a"), ir.Const(1, "int64_t")),
                ir.Assign(ir.Var("a"), ir.Var("p_n")),
                ir.Assign(ir.Var("a"), ir.BinOp("<", ir.Var("a"), ir.Var("b"))),
                ir.If(ir.Var("a"), ir.Block(())),
                ir.Assign(ir.ArrayRef("x", ir.Const(0, "int64_t")), ir.Var("a")),
                ir.Assign(ir.Var("a"), ir.Cast("float", ir.Var("p_n"))),
                ir.Assign(ir.Var("a"), ir.Cast("double", ir.Var("b"))),
                ir.Assign(ir.Var("a"), ir.Cast("double", ir.Call("f", ())))):
        with pytest.raises(vectors.NotVector):
            vectors.vector_block(ir.Block((bad,)), "double", {"p_n": "int64_t"}, v)
