"""Constant propagation of locals through straight-line code, and the branches it decides.

A local assigned a constant keeps that value until it is assigned again; reads of it
are replaced by the constant, and an ``if`` whose condition becomes a constant is
replaced by the branch it takes.  What this is for: a value whose type depends on the
path (:mod:`asp.frontend.mixed`) is kept in one C variable per type and a *tag* saying
which holds it, and every statement that reads it tests the tag.  Once a domain pass
has made the code straight (a stencil's neighbour loops unrolled), the tags are known
at every statement, and the tests go:

Before (``lap = 0.0`` then ``lap += u[y]`` on a float32 grid, unrolled)::

    lap__m0 = 0.0; lap__k = 0;
    if (lap__k == 0) { lap__m1 = (float)lap__m0 + u[x-1]; lap__k = 1; } else { ... }
    if (lap__k == 0) { ... } else { lap__m1 = lap__m1 + u[x+1]; lap__k = 1; }
    if (lap__k == 0) { out[x] = ...lap__m0...; } else { out[x] = ...lap__m1...; }

After::

    lap__m1 = (float)0.0 + u[x-1]; lap__m1 = lap__m1 + u[x+1]; out[x] = ...lap__m1...;

Assignments of constants to locals that nothing reads any more are dropped
(:func:`unread_locals` names them, for the kernel's declarations).

Sound for any tree of the platform IR and of a domain IR built on it: a statement the
pass does not know (a loop, a domain's own statement) may run its nested blocks any
number of times, so every local assigned anywhere inside it is unknown in it and after
it; locals not assigned inside it keep their values there.  After an ``if`` both
branches might have run: a local is known only if both leave it the same constant
(bit for bit: ``0.0`` and ``-0.0`` differ).  Only finite constants are propagated.
"""
from __future__ import annotations

import dataclasses
import math

from asp.ir import platform as ir
from asp.ir.node import Node, Transformer

__all__ = ["propagate_constants", "unread_locals"]

Env = dict[str, ir.Const]


def propagate_constants(tree: Node) -> Node:
    """``tree`` with locals' constants propagated and the branches they decide folded
    (see the module docstring)."""
    tree = _block(tree, {}) if isinstance(tree, ir.Block) else _node(tree, {})
    reads = _reads(tree)
    return _DropDead(reads).visit(tree)


def unread_locals(tree: Node, names) -> set[str]:
    """Which of ``names`` ``tree`` neither reads nor assigns."""
    used = _reads(tree) | _assigned(tree)
    return {n for n in names if n not in used}


def _same(a: ir.Const, b: ir.Const | None) -> bool:
    return b is not None and a.ctype == b.ctype and type(a.value) is type(b.value) \
        and repr(a.value) == repr(b.value)


def _propagable(e: ir.Expr) -> bool:
    return isinstance(e, ir.Const) and (not isinstance(e.value, float)
                                        or math.isfinite(e.value))


def _assigned(node: Node) -> set[str]:
    """The locals ``node`` may assign (plain or augmented assignments, declarations, loop
    variables)."""
    out = set()
    for n in node.walk():
        if isinstance(n, ir.Assign) and isinstance(n.target, ir.Var):
            out.add(n.target.name)
        elif isinstance(n, ir.Declare):
            out.add(n.name)
        elif isinstance(n, ir.For):
            out.add(n.var)
    return out


def _reads(node: Node, out: set[str] | None = None) -> set[str]:
    """The locals ``node`` reads: every Var but the target of a plain assignment (an
    augmented one reads its target too)."""
    out = set() if out is None else out
    if isinstance(node, ir.Var):
        out.add(node.name)
    elif isinstance(node, ir.Assign) and node.op == "" and isinstance(node.target, ir.Var):
        _reads(node.value, out)
    else:
        for child in node.children():
            _reads(child, out)
    return out


class _Substitute(Transformer):
    def __init__(self, env: Env):
        self.env = env

    def visit_Var(self, node: ir.Var):
        return self.env.get(node.name, node)


def _expr(e, env: Env):
    return _Substitute(env).visit(e) if env and isinstance(e, ir.Expr) else e


def _truth(cond: ir.Expr) -> bool | None:
    """The value of a condition that is constant (a literal, or ``==``/``!=`` of two
    integer literals), else None."""
    if isinstance(cond, ir.Const) and isinstance(cond.value, int | bool):
        return bool(cond.value)
    if isinstance(cond, ir.BinOp) and cond.op in ("==", "!=") \
            and isinstance(cond.left, ir.Const) and isinstance(cond.right, ir.Const) \
            and all(isinstance(c.value, int) and not isinstance(c.value, bool)
                    for c in (cond.left, cond.right)):
        return (cond.left.value == cond.right.value) == (cond.op == "==")
    return None


def _block(block: ir.Block, env: Env) -> ir.Block:
    out: list[ir.Stmt] = []
    for s in block.body:
        out.extend(_stmt(s, env))
    if len(out) == len(block.body) and all(a is b for a, b in zip(out, block.body)):
        return block
    return dataclasses.replace(block, body=tuple(out))


def _stmt(s: ir.Stmt, env: Env) -> list[ir.Stmt]:
    """``s`` with ``env``'s constants in its expressions (a decided ``if``: the statements
    of its branch), ``env`` updated to what holds after it."""
    if isinstance(s, ir.Block):
        return [_block(s, env)]
    if isinstance(s, ir.Assign):
        value = _expr(s.value, env)
        target = s.target
        if isinstance(target, ir.Var):
            if s.op == "" and _propagable(value):
                env[target.name] = value
            else:
                env.pop(target.name, None)
        else:
            target = _expr(target, env)
        if target is s.target and value is s.value:
            return [s]
        return [dataclasses.replace(s, target=target, value=value)]
    if isinstance(s, ir.If):
        cond = _expr(s.cond, env)
        taken = _truth(cond)
        if taken is True:
            return list(_block(s.then, env).body)
        if taken is False:
            return list(_block(s.orelse, env).body) if s.orelse is not None else []
        other = dict(env)
        then = _block(s.then, env)
        orelse = _block(s.orelse, other) if s.orelse is not None else None
        for name in list(env):
            if not _same(env[name], other.get(name)):
                del env[name]
        if cond is s.cond and then is s.then and orelse is s.orelse:
            return [s]
        return [dataclasses.replace(s, cond=cond, then=then, orelse=orelse)]
    return [_node(s, env)]


def _node(node: Node, env: Env) -> Node:
    """Any other node: what it assigns is unknown in it (it may repeat) and after it."""
    for name in _assigned(node):
        env.pop(name, None)
    changes = {}
    for field in node.child_fields:
        value = getattr(node, field)
        if isinstance(value, tuple):
            new = tuple(_child(v, env) for v in value)
            if any(a is not b for a, b in zip(new, value)):
                changes[field] = new
        elif isinstance(value, Node):
            new = _child(value, env)
            if new is not value:
                changes[field] = new
    return dataclasses.replace(node, **changes) if changes else node


def _child(value, env: Env):
    if isinstance(value, ir.Block):
        return _block(value, dict(env))  # runs any number of times: its own copy
    if isinstance(value, ir.Expr):
        return _expr(value, env)
    if isinstance(value, ir.Stmt):
        out = _stmt(value, dict(env))
        return out[0] if len(out) == 1 else ir.Block(tuple(out))
    if isinstance(value, Node):
        return _node(value, dict(env))
    return value


class _DropDead(Transformer):
    """Drop assignments of constants to locals nothing reads."""

    def __init__(self, reads: set[str]):
        self.reads = reads

    def visit_Assign(self, node: ir.Assign):
        if isinstance(node.target, ir.Var) and node.target.name not in self.reads \
                and node.op == "" and isinstance(node.value, ir.Const):
            return ()
        return node
