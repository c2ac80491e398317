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


# The whole package, bottom to top: a module may import its own layer and those below it.
LAYERS = [
    ("corpusflow", "corpusflow.ids", "corpusflow.models", "corpusflow.config",
     "corpusflow.redact", "corpusflow.files", "corpusflow.milvus_uri"),
    ("corpusflow.sources", "corpusflow.chunking", "corpusflow.splitter", "corpusflow.embedding",
     "corpusflow.store", "corpusflow.state", "corpusflow.memo", "corpusflow.inputs",
     "corpusflow.snapshot", "corpusflow.versioning", "corpusflow.lineage"),
    ("corpusflow.context", "corpusflow.screening", "corpusflow.ingestion", "corpusflow.runner",
     "corpusflow.scaleout", "corpusflow.evaluation"),
    ("corpusflow.pipeline",),
    # the shells: the CLI, the DVC stages and the Prefect flows
    ("corpusflow.cli", "corpusflow.__main__", "corpusflow.stages", "flows"),
]  # fmt: skip


def layer(module: str) -> int:
    """The layer of `module` (its longest listed prefix wins)."""
    best, found = -1, -1
    for number, names in enumerate(LAYERS):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), number
    return found


def module_name(path) -> str:
    rel = path.relative_to(REPO / "src") if "src" in path.parts else path.relative_to(REPO)
    parts = list(rel.with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


EVERY = sorted([*PACKAGE.rglob("*.py"), *(REPO / "flows").glob("*.py")])


@pytest.mark.parametrize("path", EVERY, ids=lambda p: str(p.relative_to(REPO)))
def test_no_module_imports_a_layer_above_its_own(path):
    own = layer(module_name(path))
    assert own >= 0, f"{path.relative_to(REPO)} is in no layer: add it to LAYERS"
    upward = sorted(
        n for n in imported(path) if n.startswith(("corpusflow", "flows")) and layer(n) > own
    )
    assert not upward, f"{path.relative_to(REPO)} (layer {own}) imports {upward}"
