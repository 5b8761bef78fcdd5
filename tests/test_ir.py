"""IR base classes: frozen nodes, traversal, the Visitor's dispatch and the Transformer."""
from __future__ import annotations

import dataclasses

import pytest

from asp.ir import platform as ir
from asp.ir.node import Node, Transformer, Visitor


def _sample() -> ir.Function:
    body = ir.Block((
        ir.Declare("double", "t", ir.Const(0.0)),
        ir.For("i", ir.Const(0, "int64_t"), ir.Var("n"), ir.Block((
            ir.Assign(ir.Var("t"), ir.BinOp("*", ir.ArrayRef("x", ir.Var("i")), ir.Const(2.0)),
                      op="+"),
        ))),
        ir.Return(ir.Var("t")),
    ))
    return ir.Function("f", (ir.Param("x", "double", pointer=True, const=True),
                             ir.Param("n", "int64_t")), body, ret="double")


def test_nodes_are_frozen_and_hashable():
    v = ir.Var("x")
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.name = "y"
    assert ir.BinOp("+", ir.Var("a"), ir.Const(1)) == ir.BinOp("+", ir.Var("a"), ir.Const(1))
    assert hash(ir.Var("a")) == hash(ir.Var("a"))
    assert {ir.Const(1, "int64_t"), ir.Const(1, "int64_t")} == {ir.Const(1, "int64_t")}


def test_replace_returns_new_node_and_keeps_original():
    v = ir.Var("x")
    w = v.replace(name="y")
    assert (v.name, w.name) == ("x", "y")
    assert type(w) is ir.Var


def test_children_only_yields_child_fields_in_order():
    b = ir.BinOp("+", ir.Var("a"), ir.Const(1))
    assert list(b.children()) == [ir.Var("a"), ir.Const(1)]
    call = ir.Call("pow", (ir.Var("a"), ir.Var("b")))
    assert list(call.children()) == [ir.Var("a"), ir.Var("b")]
    assert list(ir.Var("a").children()) == []
    # A None child (Declare without init, If without else) is skipped.
    assert list(ir.Declare("int", "k").children()) == []
    cond = ir.Var("c")
    then = ir.Block(())
    assert list(ir.If(cond, then).children()) == [cond, then]


def test_walk_is_depth_first_preorder():
    e = ir.BinOp("*", ir.BinOp("+", ir.Var("a"), ir.Var("b")), ir.Var("c"))
    names = [type(n).__name__ + (f":{n.name}" if isinstance(n, ir.Var) else "")
             for n in e.walk()]
    assert names == ["BinOp", "BinOp", "Var:a", "Var:b", "Var:c"]


def test_walk_reaches_every_node_of_a_function():
    fn = _sample()
    kinds = {type(n).__name__ for n in fn.walk()}
    assert {"Function", "Param", "Block", "Declare", "For", "Assign", "ArrayRef", "BinOp",
            "Const", "Var", "Return"} <= kinds
    assert sum(isinstance(n, ir.Var) and n.name == "i" for n in fn.walk()) == 1


class _Names(Visitor):
    def __init__(self):
        self.seen = []

    def visit_Var(self, node):
        self.seen.append(node.name)


def test_visitor_dispatches_by_class_name_and_descends_generically():
    v = _Names()
    v.visit(_sample())
    assert v.seen == ["n", "t", "i", "t"]  # Declare names are attributes, not Vars


def test_visitor_falls_back_along_the_mro():
    class Exprs(Visitor):
        def __init__(self):
            self.exprs = 0

        def visit_Expr(self, node):
            self.exprs += 1
            self.generic_visit(node)

    v = Exprs()
    v.visit(ir.BinOp("+", ir.Var("a"), ir.Call("sin", (ir.Const(1.0),))))
    assert v.exprs == 4  # BinOp, Var, Call, Const all are Expr


def test_visitor_more_specific_method_wins_and_dispatch_is_cached_per_class():
    class Special(ir.Var):
        pass

    class V(Visitor):
        def visit_Var(self, node):
            return "var"

        def visit_Expr(self, node):
            return "expr"

    class W(Visitor):
        def visit_Expr(self, node):
            return "w-expr"

    v, w = V(), W()
    assert v.visit(Special("s")) == "var"
    assert v.visit(ir.Const(1)) == "expr"
    assert V._dispatch[Special] == "visit_Var"
    assert V._dispatch[ir.Const] == "visit_Expr"
    # Each subclass has its own cache: W's lookup does not leak into V's or vice versa.
    assert w.visit(Special("s")) == "w-expr"
    assert W._dispatch[Special] == "visit_Expr"
    assert V._dispatch[Special] == "visit_Var"
    assert Visitor not in (V, W) and V._dispatch is not W._dispatch


def test_visitor_passes_extra_arguments():
    class Depth(Visitor):
        def __init__(self):
            self.out = []

        def visit_Var(self, node, depth):
            self.out.append((node.name, depth))

        def visit_BinOp(self, node, depth):
            self.generic_visit(node, depth + 1)

    d = Depth()
    d.visit(ir.BinOp("+", ir.Var("a"), ir.BinOp("*", ir.Var("b"), ir.Var("c"))), 0)
    assert d.out == [("a", 1), ("b", 2), ("c", 2)]


def test_transformer_without_changes_returns_the_same_object():
    fn = _sample()
    assert Transformer().visit(fn) is fn

    class Noop(Transformer):
        def visit_Var(self, node):
            return node

    assert Noop().visit(fn) is fn


def test_transformer_rebuilds_only_the_changed_path_and_never_mutates():
    fn = _sample()
    before = repr(fn)

    class Rename(Transformer):
        def visit_Var(self, node):
            return ir.Var("m") if node.name == "n" else node

    new = Rename().visit(fn)
    assert new is not fn
    assert repr(fn) == before  # the input is untouched
    loop_old, loop_new = fn.body.body[1], new.body.body[1]
    assert loop_new.stop == ir.Var("m")
    assert loop_old.stop == ir.Var("n")
    # Unchanged siblings and subtrees are shared, not copied.
    assert new.body.body[0] is fn.body.body[0]
    assert new.body.body[2] is fn.body.body[2]
    assert loop_new.body is loop_old.body
    assert new.params is fn.params


def test_transformer_splices_tuples_and_drops_none():
    block = ir.Block((ir.Break(), ir.Pragma("keep"), ir.Continue()))

    class Splice(Transformer):
        def visit_Break(self, node):
            return (ir.Pragma("a"), ir.Pragma("b"))

        def visit_Continue(self, node):
            return None

    out = Splice().visit(block)
    assert out.body == (ir.Pragma("a"), ir.Pragma("b"), ir.Pragma("keep"))
    assert block.body == (ir.Break(), ir.Pragma("keep"), ir.Continue())


def test_transformer_replaces_single_child_fields():
    stmt = ir.Return(ir.Var("x"))

    class ToConst(Transformer):
        def visit_Var(self, node):
            return ir.Const(0, "int64_t")

    assert ToConst().visit(stmt) == ir.Return(ir.Const(0, "int64_t"))


def test_custom_node_types_work_with_visitor_and_transformer():
    @dataclasses.dataclass(frozen=True)
    class Pair(Node):
        a: Node
        b: Node
        label: str = ""
        child_fields = ("a", "b")

    p = Pair(ir.Var("x"), ir.Var("y"), label="keep")
    assert list(p.children()) == [ir.Var("x"), ir.Var("y")]

    class Swap(Transformer):
        def visit_Var(self, node):
            return ir.Var(node.name.upper())

    q = Swap().visit(p)
    assert q == Pair(ir.Var("X"), ir.Var("Y"), label="keep")
