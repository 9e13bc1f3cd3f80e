"""The dependency rule of docs/architecture.md, checked on the source: arrows point inward only."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

HUB = Path(__file__).resolve().parents[2] / "hub"
STDLIB = sys.stdlib_module_names

# What each layer may import besides the standard library and itself.
ALLOWED: dict[str, set[str]] = {
    "domain": set(),
    "validation": {"hub.domain", "lxml", "xmlschema"},
    "service": {"hub.domain", "hub.validation", "hub.service"},
}


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    own = f"hub.{layer}"
    wrong = []
    for path in sorted((HUB / layer).rglob("*.py")):
        for name in _imports(path):
            top = name.split(".")[0]
            if top in STDLIB or top == "__future__" or name.startswith(own):
                continue
            if not any(name == a or name.startswith(a + ".") for a in ALLOWED[layer]):
                wrong.append(f"{path.relative_to(HUB.parent)} imports {name}")
    assert not wrong, "\n".join(wrong)
