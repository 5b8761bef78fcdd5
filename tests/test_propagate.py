"""Constant propagation of locals (asp/passes/propagate.py), and what it gives stencils.

The pass on hand-built IR: what it folds, and every place it must not (a branch it
cannot decide, a loop that may repeat, an augmented or non-finite assignment, ``0.0``
against ``-0.0``); the compiled C of folded IR against its unfolded self.  Then the
kernel that motivated it: ``lap = 0.0; lap += u[y]`` on a float32 grid (a Python
float, then float32) is one straight store after unrolling, so it is blocked in time
and streams its stores, every variant equal to the Python.
"""
from __future__ import annotations

import numpy as np
import pytest

from asp.ir import platform as ir
from asp.passes.propagate import propagate_constants, unread_locals
from specializers.stencil import StencilKernel
from specializers.stencil.iterate import iteration_jit
from tests.test_stencil_kernels import check_every_variant

V = ir.Var


def I(v):  # noqa: E743
    return ir.Const(v, "int")


def D(v):
    return ir.Const(v, "double")


def A(name, value, op=""):
    return ir.Assign(V(name), value, op)


def store(i, value):
    """A store to an output array (never dead)."""
    return ir.Assign(ir.ArrayRef("o", I(i)), value)


def tag_is(name, v):
    return ir.BinOp("==", V(name), I(v))


def _stmts(tree: ir.Block) -> list:
    return list(tree.body)


def test_a_tag_known_on_every_statement_folds_its_tests():
    tree = ir.Block((
        A("m0", D(0.0)), A("k", I(0)),
        ir.If(tag_is("k", 0), ir.Block((A("m1", ir.BinOp("+", V("m0"), V("a"))), A("k", I(1)))),
              ir.Block((A("m1", ir.BinOp("+", V("m1"), V("a"))), A("k", I(1))))),
        ir.If(tag_is("k", 0), ir.Block((store(0, V("m0")),)), ir.Block((store(0, V("m1")),))),
    ))
    got = propagate_constants(tree)
    assert _stmts(got) == [A("m1", ir.BinOp("+", D(0.0), V("a"))), store(0, V("m1"))]
    assert unread_locals(got, ["m0", "m1", "k"]) == {"m0", "k"}


def test_a_branch_it_cannot_decide_keeps_only_what_both_sides_agree_on():
    tree = ir.Block((
        A("k", I(1)), A("z", D(0.0)),
        ir.If(ir.BinOp(">", V("a"), D(0.0)),
              ir.Block((A("k", I(1)), A("z", D(-0.0)), A("w", I(3)))),
              ir.Block((A("w", I(4)),))),
        store(1, V("k")), store(2, V("z")), store(3, V("w")),
    ))
    got = _stmts(propagate_constants(tree))
    assert got[-3:] == [store(1, I(1)), store(2, V("z")), store(3, V("w"))]
    assert isinstance(got[-4], ir.If)  # undecided: kept whole


def test_a_loop_may_repeat_what_it_assigns_is_unknown_in_it_and_after():
    body = ir.Block((store(0, V("k")), store(1, V("c")), A("k", I(5))))
    tree = ir.Block((A("k", I(0)), A("c", I(7)),
                     ir.For("i", I(0), V("n"), body), store(2, V("k"))))
    got = _stmts(propagate_constants(tree))
    loop = got[-2]
    assert loop.body.body[:2] == (store(0, V("k")), store(1, I(7)))
    assert got[-1] == store(2, V("k"))
    # A while loop's condition is read on every iteration.
    tree = ir.Block((A("k", I(0)), ir.While(tag_is("k", 0), ir.Block((A("k", I(1)),)))))
    assert _stmts(propagate_constants(tree))[-1].cond == tag_is("k", 0)


def test_augmented_and_non_finite_assignments_are_not_constants():
    tree = ir.Block((A("k", I(0)), A("k", I(1), "+"), store(0, V("k")),
                     A("f", D(float("inf"))), store(1, V("f"))))
    got = _stmts(propagate_constants(tree))
    assert got == list(tree.body)  # nothing replaced, nothing dead


def test_an_unchanged_tree_is_returned_as_is():
    tree = ir.Block((store(0, ir.BinOp("+", V("a"), V("b"))),))
    assert propagate_constants(tree) is tree


class Lap0(StencilKernel):
    """The local starts as a Python float and becomes float32 at the first neighbour."""

    def kernel(self, u, r, out):
        for x in out.interior_points():
            lap = 0.0
            for y in u.neighbors(x, 1):
                lap += u[y]
            out[x] = u[x] + r * (lap - 4.0 * u[x])


class Branchy(StencilKernel):
    """A local whose type depends on the data: its tests stay."""

    def kernel(self, u, out):
        for x in out.interior_points():
            t = 0
            if u[x] > 0.5:
                t = u[x] * 2.0
            out[x] = t + 1.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_local_that_changes_type_once_is_blocked_and_streams(dtype, rng):
    k = Lap0()
    u = rng.random((300, 260)).astype(dtype)
    u[5, 7], u[9, 9] = -0.0, 1e30
    r = dtype(0.125)
    names = check_every_variant(k, (u, r, np.zeros_like(u)), rtol=0)
    assert any(v.startswith("stream") for v in names)
    loop = u
    for _ in range(7):
        loop = k(loop, r)
    np.testing.assert_array_equal(k.iterate(u, r, steps=7), loop)
    assert iteration_jit(k, u, r) is not None  # blocked, not step by step


def test_a_local_whose_type_depends_on_the_data_keeps_its_tests(rng):
    u = rng.random((200, 150))
    check_every_variant(Branchy(), (u, np.zeros_like(u)), rtol=0)
