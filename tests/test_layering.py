"""Layering: no module imports a module above it (issue 20). versioning/ takes settings
(config types), never the pipeline: no import of corpusflow.pipeline, not even for types;
sources/ are below the pipeline too (they are DVC stage dependencies of their own)."""

from __future__ import annotations

import ast

import pytest

from conftest import REPO

PACKAGE = REPO / "src" / "corpusflow"
ABOVE = ("corpusflow.pipeline", "corpusflow.cli", "corpusflow.stages", "flows")


def imported(path) -> set[str]:
    """Every module an import statement in `path` names, TYPE_CHECKING blocks included."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


LIBRARY = sorted(
    p
    for folder in ("versioning", "sources")
    for p in (PACKAGE / folder).glob("*.py")
    if not p.name.endswith("_cli.py")  # command modules belong to the CLI layer
)


@pytest.mark.parametrize("path", LIBRARY, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_library_modules_never_import_the_layers_above(path):
    upward = sorted(n for n in imported(path) if n.startswith(ABOVE))
    assert not upward, f"{path.relative_to(REPO)} imports {upward}"


def test_the_check_sees_a_type_only_import(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from corpusflow.pipeline import IngestResult\n"
    )
    assert "corpusflow.pipeline" in imported(probe)
