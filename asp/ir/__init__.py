"""IR base classes and the platform IR shared by every specializer."""
from asp.ir.node import Node, Transformer, Visitor
from asp.ir.platform import (
    ArrayRef,
    Assign,
    BinOp,
    Block,
    Break,
    Call,
    Cast,
    Const,
    Continue,
    Declare,
    Expr,
    ExprStmt,
    For,
    Function,
    If,
    Module,
    Parallel,
    Param,
    Pragma,
    Return,
    Stmt,
    Ternary,
    UnaryOp,
    Var,
    While,
)
from asp.ir.types import CTYPES, ctype_of, dtype_of

__all__ = [
    "CTYPES", "ArrayRef", "Assign", "BinOp", "Block", "Break", "Call", "Cast", "Const",
    "Continue", "Declare", "Expr", "ExprStmt", "For", "Function", "If", "Module", "Node",
    "Param", "Parallel", "Pragma", "Return", "Stmt", "Ternary", "Transformer", "UnaryOp", "Var",
    "Visitor", "While", "ctype_of", "dtype_of",
]
