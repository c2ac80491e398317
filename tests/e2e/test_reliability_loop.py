"""The fault-injection loop, ingest and snapshot part (issue 14, acceptance 3).

For each named point, a real `corpusflow ingest` (then `corpusflow snapshot`) kills itself
with SIGKILL right before or after that function, and is rerun. After every round the
collection holds exactly what one clean run builds (same ids and contents: 0 records lost,
0 duplicated), the snapshot has the clean run's bytes, and nothing is left behind (no
*.tmp beside the snapshot, no journaled batch in the state table). The versioning and
`comet sync` points are in test_reliability_versioning.py (the same launcher).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import CLI, SAMPLE
from test_reliability_versioning import LAUNCHER

# (where the process dies, the command it is running); functions are patched on their class
KILL_POINTS = [
    ("corpusflow.embedding.cache:EmbeddingCache.put_many:after", "ingest"),  # cached only
    ("corpusflow.state:StateTable.begin:after", "ingest"),  # journaled, nothing written
    ("corpusflow.store:MilvusStore.upsert:after", "ingest"),  # written, journal not settled
    ("corpusflow.state:StateTable.settle:after", "ingest"),  # one batch fully done
    ("corpusflow.state:StateTable.record_input:after", "ingest"),  # one input fingerprinted
    ("corpusflow.store:MilvusStore.point_alias:before", "ingest"),  # all rows, no alias
    ("corpusflow.snapshot:_SortedRuns.add_all:after", "snapshot"),  # sorted, nothing written
    ("corpusflow.snapshot:_manifest_bytes:after", "snapshot"),  # both temps, not renamed
]
FIELDS = ["id", "source_id", "chunk_index", "n_chunks", "text", "doc_hash", "chunker"]


def project(root: Path) -> Path:
    """The sample corpus with params.yaml; versioning off (its loop is elsewhere)."""
    shutil.copytree(SAMPLE, root / "data" / "raw")
    params = {
        "sources": {"transcripts": ["data/raw/transcripts"], "articles": ["data/raw/articles"]},
        "chunking": {"mode": "characters", "chunk_size": 300, "chunk_overlap": 0},
        "ingest": {"batch_documents": 2},
        "comet": {"mode": "disabled"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    (root / "launcher.py").write_text(LAUNCHER, encoding="utf-8")
    return root


def run(root: Path, command: str, kill_at: str | None = None) -> subprocess.CompletedProcess:
    args = [command, "--json"] + (["--no-version"] if command == "snapshot" else [])
    env = dict(os.environ)
    cmd = [CLI, *args]
    if kill_at:
        env["CORPUSFLOW_KILL_AT"] = kill_at
        cmd = [sys.executable, str(root / "launcher.py"), *args]
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=300)


def collection(root: Path) -> list[tuple]:
    """Every stored record (without vectors), read with its own client."""
    from pymilvus import MilvusClient

    client = MilvusClient(str(root / "data" / "milvus.db"))
    try:
        name = client.describe_alias("corpusflow")["collection_name"]
        client.load_collection(name)
        rows = client.query(name, filter="", output_fields=FIELDS, limit=16_000)
    finally:
        client.close()
        from milvus_lite.server_manager import server_manager_instance

        server_manager_instance.release_server(str(root / "data" / "milvus.db"))
    return sorted(tuple(r[f] for f in FIELDS) for r in rows)


def leftovers(root: Path) -> list[str]:
    snaps = root / "data" / "snapshots"
    stray = [str(p.relative_to(root)) for p in snaps.glob("*.tmp")] if snaps.exists() else []
    with sqlite3.connect(root / "data" / "state.sqlite") as db:
        stray += [f"pending {r[0]}" for r in db.execute("SELECT source_id FROM pending")]
    return stray


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> dict:
    root = project(tmp_path_factory.mktemp("clean"))
    assert run(root, "ingest").returncode == 0
    out = run(root, "snapshot")
    assert out.returncode == 0, out.stderr
    snap = json.loads(out.stdout)
    return {"rows": collection(root), "snapshot": Path(root, snap["path"]).read_bytes()}


@pytest.mark.parametrize("point,command", KILL_POINTS, ids=[p for p, _ in KILL_POINTS])
def test_kill_at_a_named_point_then_rerun_converges(tmp_path, clean, point, command):
    root = project(tmp_path)
    if command == "snapshot":
        assert run(root, "ingest").returncode == 0
    killed = run(root, command, kill_at=point)
    assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
    again = run(root, command)
    assert again.returncode == 0, again.stderr
    if command == "ingest":
        again = run(root, "ingest")  # and a run after that has nothing left to do
        assert (json.loads(again.stdout)["upserted"], json.loads(again.stdout)["deleted"]) == (0, 0)
        out = run(root, "snapshot")
        assert out.returncode == 0, out.stderr
    rows = collection(root)
    assert rows == clean["rows"]  # nothing lost, nothing duplicated, same contents
    assert len({r[0] for r in rows}) == len(rows)
    assert (root / "data" / "snapshots" / "snapshot.json").read_bytes() == clean["snapshot"]
    assert leftovers(root) == []
