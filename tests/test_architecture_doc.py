"""docs/architecture.md stays true: every package and module it names exists."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"


def test_every_path_the_architecture_names_exists():
    named = set(re.findall(r"`((?:octolux|simulator|twisted)/[\w/.]*)`", DOC.read_text()))
    assert len(named) >= 10, "the doc names the layers by path"
    missing = sorted(path for path in named if not (ROOT / path).exists())
    assert missing == []


def test_every_layer_package_is_in_the_architecture():
    text = DOC.read_text()
    packages = sorted(
        p.name for p in (ROOT / "octolux").iterdir() if (p / "__init__.py").exists()
    )
    assert [name for name in packages if f"`octolux/{name}/`" not in text] == []


def test_every_dotted_module_the_data_path_names_exists():
    text = DOC.read_text()
    picture = text.split("## The data path", 1)[1].split("## Where to add", 1)[0]
    for package, module in set(re.findall(r"\b(net|device|mqtt|web)\.(\w+)", picture)):
        assert (ROOT / "octolux" / package / f"{module}.py").exists(), f"{package}.{module}"
