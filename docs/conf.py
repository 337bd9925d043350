"""Sphinx configuration for the lur_jax documentation (MyST Markdown, executed notebooks)."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))


project = "lur_jax"
author = "the lur_jax authors"
copyright = "2026, the lur_jax authors"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx-mathjax-offline",  # MathJax 3 copied into _static: formulas render offline
    "sphinx.ext.viewcode",
]

# No network at build time: no intersphinx inventories are fetched.
exclude_patterns = ["_build", "_generated", "jupyter_execute", "**.ipynb_checkpoints"]
templates_path = ["_templates"]
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb"}
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# The tutorial runs on the CPU at build time; a cell that raises fails the build.
nb_execution_mode = "force"
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_show_tb = True
nb_render_markdown_format = "gfm"  # the tables the notebook prints

html_theme = "sphinx_book_theme"
html_title = "lur_jax"
html_theme_options = {"show_toc_level": 2}
html_static_path = ["_static"]
html_css_files = ["wrap.css"]  # code cells wrap

