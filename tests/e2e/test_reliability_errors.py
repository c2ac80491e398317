"""Configuration mistakes are one line and exit 2 at load, never a traceback or a silent fix;
a dry run changes nothing on disk. Through the real `corpusflow` CLI where it matters."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CLI
from test_faults import assert_one_line_error

TIMEOUT = 180


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT)


def setup(root: Path, params: dict) -> None:
    (root / "corpus").mkdir(parents=True, exist_ok=True)
    (root / "corpus" / "talk.txt").write_text("Rivers carve valleys over millions of years.")
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def test_an_unknown_index_type_is_one_line_at_load_and_nothing_is_created(tmp_path):
    setup(tmp_path, {"milvus": {"index": {"type": "NOPE"}}})
    before = files_under(tmp_path)
    out = cli(tmp_path, "ingest", "--transcripts", "corpus")
    assert_one_line_error(out, "milvus.index.type", "'NOPE' is not a Milvus vector index type")
    assert files_under(tmp_path) == before


@pytest.mark.parametrize(
    "chunking, fragment",
    [
        ({"chunk_overlap": 300}, "chunk_overlap (300) must be smaller than the chunk size (254"),
        ({"mode": "characters", "chunk_overlap": 1000}, "chunk size (1000 characters"),
        ({"chunk_size": 64, "chunk_overlap": 64}, "chunk_overlap must be smaller"),
    ],
    ids=["over-the-model-limit", "over-the-character-default", "equal-to-the-size"],
)
def test_an_overlap_not_below_the_chunk_size_is_an_error_not_clamped(tmp_path, chunking, fragment):
    setup(tmp_path, {"chunking": chunking})
    out = cli(tmp_path, "ingest", "--transcripts", "corpus", "--dry-run")
    assert_one_line_error(out, "chunk", fragment)


def test_a_boolean_count_is_one_line_through_the_cli(tmp_path):
    setup(tmp_path, {"ingest": {"batch_documents": True}})
    assert_one_line_error(cli(tmp_path, "ingest", "--dry-run"), "ingest.batch_documents")


def test_a_dry_run_creates_nothing(tmp_path):
    setup(tmp_path, {"sources": {"transcripts": ["corpus"]}})
    before = files_under(tmp_path)
    out = cli(tmp_path, "ingest", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "[dry run] 1 documents, 1 chunks" in out.stdout and "would be added 1" in out.stdout
    assert files_under(tmp_path) == before
