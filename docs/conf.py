"""Sphinx configuration of the rmtalign documentation site.

Build (warnings are errors, as in ``tests/test_docs.py``)::

    python -m sphinx -W --keep-going -b html docs docs/_build/html

Pages are Markdown (myst-parser); the API reference (``docs/api/*.rst``) is generated from the
numpydoc docstrings by autodoc + numpydoc.
"""
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # the checkout's rmtalign, if it is not installed

import rmtalign  # noqa: E402

project = "rmtalign"
author = "rmtalign authors"
copyright = "2026, rmtalign authors"
version = release = rmtalign.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "numpydoc",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []

# -- Markdown ------------------------------------------------------------------------------------
# Heading anchors, so that links such as ``index.md#model-and-conventions`` (GitHub's slugs)
# resolve on the site as they do on GitHub.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# -- API reference -------------------------------------------------------------------------------
# rmtalign.torch needs the torch extra; without torch, its pages are built from a mocked torch
# (the docstrings are the same), so that the docs extra alone builds the whole site.
try:
    import torch  # noqa: F401
except ImportError:
    autodoc_mock_imports = ["torch"]
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"  # the signatures and the docstrings say it; type hints are sparse
autodoc_class_signature = "mixed"
autodoc_preserve_defaults = True  # signatures show `dtype=np.float64`, not the object's repr
# The public names live in private modules (rmtalign/torch/_measure.py, ...) and are documented
# under the public module that exports them.
add_module_names = False
numpydoc_show_class_members = False   # members are listed by autodoc itself
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False
numpydoc_validation_checks = set()    # docstrings are prose in numpydoc style, not linted here

# -- HTML ----------------------------------------------------------------------------------------
html_theme = "alabaster"
html_title = f"rmtalign {release}"
html_static_path = []
html_theme_options = {"description": "Random-matrix numerics of the backward-feature angle",
                      "fixed_sidebar": True}

# -- Optional pages --------------------------------------------------------------------------------
# Pages being written (issue 10 and its neighbours) that a checkout may not have yet: the landing
# page's toctree lists them, and they are dropped from it while the file is absent. A missing
# page that is not in this set is still an error. Empty this set once they have all landed.
OPTIONAL_PAGES = {"figures", "experiments"}


def _drop_missing_pages(app, docname, source):
    if docname != root_doc:
        return

    def present(name):
        return any(os.path.exists(os.path.join(app.srcdir, name + ext)) for ext in source_suffix)

    def filter_block(block):
        lines = block.group(0).split("\n")
        kept = [ln for ln in lines
                if not (ln.strip() in OPTIONAL_PAGES and not present(ln.strip()))]
        return "\n".join(kept)

    source[0] = re.sub(r"```\{toctree\}.*?```", filter_block, source[0], flags=re.S)


def setup(app):
    app.connect("source-read", _drop_missing_pages)
