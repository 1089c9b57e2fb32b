"""Packaging facts that a refactor could silently break: the license, doc links, CI floors."""

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


def _declared_floors() -> dict[str, str]:
    block = re.search(r"^dependencies = \[(.*?)\]$", PYPROJECT, re.MULTILINE | re.DOTALL)
    assert block, "pyproject.toml: no one-line-per-list `dependencies = [...]` found"
    entries = re.findall(r'"([^"]+)"', block.group(1))
    matches = [re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9][0-9.]*)", e) for e in entries]
    assert entries and all(matches), f"each dependency needs one plain `>=` floor; got {entries}"
    return dict(m.groups() for m in matches)


def test_the_ci_floor_job_pins_exactly_the_declared_floors():
    script = (ROOT / ".ci" / "run").read_text()
    lines = re.findall(r'^floors="([^"]*)"$', script, re.MULTILINE)
    assert len(lines) == 1, f".ci/run must set floors=... once; got {lines}"
    pins = dict(pin.split("==") for pin in lines[0].split())
    assert pins == _declared_floors()
    # the job installs and tests those pins
    assert '-c "$floor_dir/constraints.txt" ".[test]"' in script
    assert '"$floor_dir/venv/bin/python" -m pytest -q -p no:cacheprovider' in script
