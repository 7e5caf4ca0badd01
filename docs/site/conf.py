"""Sphinx configuration of the foolbox-alma API reference site (``tox -e docs``)."""

import importlib.util
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, ROOT)  # the package from this checkout, installed or not

from foolbox_alma._version import __version__  # noqa: E402

project = "foolbox-alma"
author = "foolbox-alma developers"
copyright = "foolbox-alma developers"
version = release = __version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "myst_parser",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build"]

# The docstrings import no framework at module level, but building must not need one at all.
autodoc_mock_imports = ["torch", "torchvision", "tensorflow", "keras", "jax", "jaxlib", "ray"]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

myst_heading_anchors = 3

html_theme = "furo" if importlib.util.find_spec("furo") else "alabaster"
html_title = f"foolbox-alma {__version__}"
