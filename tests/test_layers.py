"""Imports only run downwards: each octolux package may import only the layers before it.

The order is the one ``octolux/__init__.py`` documents; a module that imports a
layer above its own (or a sibling of the same rank) fails here, naming the line.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "octolux"

# Rank of each layer; a module may import a layer of lower rank, or its own package.
RANKS = {
    "lxp": 0,
    "config": 1,
    "modbus": 1,
    "net": 2,
    "device": 3,
    "history": 4,
    "mqtt": 4,
    "homeassistant": 5,
    "web": 5,
    "automation": 5,
    "service": 6,
}
# The simulator is a fake dongle and inverter: it shares the wires and their Twisted edge only.
SIMULATOR_MAY_IMPORT = {"lxp", "modbus", "net", "config"}


def _layer_of(module_path: pathlib.Path) -> str:
    return module_path.relative_to(PACKAGE).parts[0]


def _octolux_imports(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, layer) for every import of an octolux layer in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module + "." + alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "octolux" and len(parts) > 1 and parts[1] in RANKS:
                found.append((node.lineno, parts[1]))
    return found


def _modules(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(p for p in directory.rglob("*.py") if "__pycache__" not in p.parts)


def test_every_package_has_a_rank_and_a_docstring():
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert packages == set(RANKS), "give a new package its rank here and in octolux/__init__.py"
    loose = [p.name for p in PACKAGE.glob("*.py") if p.name != "__init__.py"]
    assert loose == [], "every module lives in a layer package"
    for name in RANKS:
        tree = ast.parse((PACKAGE / name / "__init__.py").read_text())
        assert ast.get_docstring(tree), f"octolux/{name}/__init__.py says what the layer owns"


@pytest.mark.parametrize("path", _modules(PACKAGE), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_run_downwards(path):
    if path.parent == PACKAGE:
        return  # octolux/__init__.py: the version only
    layer = _layer_of(path)
    upward = [
        f"{path.relative_to(ROOT)}:{line} imports octolux.{imported} (rank {RANKS[imported]})"
        for line, imported in _octolux_imports(path)
        if imported != layer and RANKS[imported] >= RANKS[layer]
    ]
    assert upward == [], f"octolux.{layer} has rank {RANKS[layer]}"


@pytest.mark.parametrize(
    "path", _modules(ROOT / "simulator"), ids=lambda p: str(p.relative_to(ROOT))
)
def test_simulator_imports_only_the_wire_and_its_edge(path):
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports octolux.{imported}"
        for line, imported in _octolux_imports(path)
        if imported not in SIMULATOR_MAY_IMPORT
    ]
    assert wrong == []


def test_the_check_sees_an_upward_import(tmp_path):
    module = tmp_path / "bad.py"
    module.write_text("from octolux.mqtt.bridge import InverterBridge\nimport octolux.lxp\n")
    assert _octolux_imports(module) == [(1, "mqtt"), (2, "lxp")]
