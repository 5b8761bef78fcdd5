"""Sphinx configuration for asp's documentation (``make docs``; warnings are errors)."""
from __future__ import annotations

import os
import sys

from sphinx.util import logging

logger = logging.getLogger(__name__)

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

project = "asp"
author = "the asp authors"
copyright = "2026, the asp authors"

try:
    from asp import __version__ as release
except Exception:  # the docs still build (without the API pages' content) if asp is broken
    release = "0.1.0"
version = release

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx.ext.intersphinx",
]

# No network where the docs are built: intersphinx is loaded but has no mappings.
intersphinx_mapping: dict = {}

# Pages written by each specializer's authors land in docs/specializers/ (a :glob: toctree).
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path: list[str] = []
html_static_path: list[str] = []

html_theme = "alabaster"
html_title = f"asp {release}"
html_theme_options = {"description": "Selective Embedded JIT Specialization for Python",
                      "fixed_sidebar": True}

autodoc_member_order = "bysource"
autodoc_default_options = {"show-inheritance": True}
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False

# Generated kernels and compiler output are shown as literal C and console text.
highlight_language = "python3"
pygments_style = "sphinx"
