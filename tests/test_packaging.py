"""The project's metadata names every module and package of the app, so a built wheel carries
them (the app runs from its folder: templates/ and static/ are not packaged)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_top_level_module_and_package_is_listed_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    modules = {path.stem for path in ROOT.glob("*.py")}
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert set(setuptools["py-modules"]) == modules
    assert set(setuptools["packages"]) == packages
