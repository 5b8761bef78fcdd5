"""The elementwise front end is the core's scalar-function translator
(:mod:`asp.frontend.scalar`): an elementwise kernel is a scalar function mapped over
arrays, and the translation of its body is shared with every specializer of that kind."""
from asp.frontend.scalar import FLOAT, INT, PREAMBLE, ScalarFunction, T, c_name, translate

__all__ = ["FLOAT", "INT", "PREAMBLE", "ScalarFunction", "T", "c_name", "translate"]
