"""Back end: platform IR to C (cgen), and module boilerplate (Mako)."""
from asp.codegen.cprinter import expr_to_c, function_to_cgen, module_to_c
from asp.codegen.entry import EntryPoint, abi_params, entry_point, render_module

__all__ = [
    "EntryPoint", "abi_params", "entry_point", "expr_to_c", "function_to_cgen",
    "module_to_c", "render_module",
]
