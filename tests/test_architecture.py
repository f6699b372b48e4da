"""The layers stay apart: dsp and firmware_sim and ingest never import one another."""

import ast

import pytest

from conftest import ROOT

LAYERS = ("dreamsync", "firmware_sim", "ingest", "dsp")
FORBIDDEN = {
    "dsp": {"ingest", "firmware_sim", "dreamsync"},
    "firmware_sim": {"ingest", "dsp", "dreamsync"},
    "ingest": {"dsp", "firmware_sim", "dreamsync"},
    "dreamsync": set(),
}


def imported_top_levels(source: str) -> set:
    """Top-level package of every absolute import in ``source``, wherever it stands (lazy ones too)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def crossings(package: str) -> list:
    out = []
    for path in sorted((ROOT / package).rglob("*.py")):
        bad = imported_top_levels(path.read_text()) & FORBIDDEN[package]
        out += [f"{path.relative_to(ROOT)} imports {name}" for name in sorted(bad)]
    return out


@pytest.mark.parametrize("package", LAYERS)
def test_no_import_crosses_a_layer_boundary(package):
    assert crossings(package) == []


def test_the_checker_sees_lazy_and_dotted_imports():
    source = "def f():\n    import ingest.sim\n    from firmware_sim.headband import X\nfrom . import y\n"
    assert imported_top_levels(source) == {"ingest", "firmware_sim"}


@pytest.mark.parametrize("package", LAYERS)
def test_each_package_says_what_it_owns_and_may_import(package):
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text()))
    assert doc and "May import" in doc
    for other in FORBIDDEN[package]:
        assert other in doc, f"{package}/__init__.py does not say whether it may import {other}"


def test_top_level_layout_is_the_one_asked_for():
    for name in ("pyproject.toml", "README.md", "firmware_sim", "ingest", "dsp", "tests", "recordings",
                 "dreamsync", "benchmarks"):
        assert (ROOT / name).exists(), name
