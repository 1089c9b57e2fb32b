"""Packaging facts that a refactor could silently break: the license and the doc links."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]
PYPROJECT = (ROOT / "pyproject.toml").read_text()


def test_the_license_file_is_declared_and_says_mit():
    assert 'license = "MIT"\n' in PYPROJECT
    assert 'license-files = ["LICENSE"]\n' in PYPROJECT
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License") and "Copyright (c) 2026 the raggedarray authors" in text


def test_rendered_docstrings_use_links_not_sphinx_roles():
    # the modules whose docstrings the API reference renders (docs/api.md)
    rendered = ["ragged", "image", "join", "reduce", "_compute", "interop", "_display", "nn",
                "data", "_sampler", "io", "testing", "map"]  # fmt: skip
    for name in rendered:
        source = (ROOT / "raggedarray" / f"{name}.py").read_text()
        roles = re.findall(r":(?:meth|class|func|mod|attr|exc|obj|data):`", source)
        assert not roles, f"{name}.py: {roles}; write [`name`][raggedarray.name] instead"
