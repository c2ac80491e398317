"""kill -9 in the middle of `ingest`: the next run converges to what one clean run builds."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CLI
from corpusflow.config import load_params
from corpusflow.pipeline import Context

WORDS = "amber basalt cedar delta ember fjord granite harbor iris jasper kelp lumen".split()


def write_corpus(root: Path, n_docs: int = 16) -> None:
    rnd = random.Random(7)
    (root / "corpus").mkdir(parents=True)
    for i in range(n_docs):
        paras = [" ".join(rnd.choice(WORDS) for _ in range(70)) + "." for _ in range(4)]
        (root / "corpus" / f"talk{i:02d}.txt").write_text("\n\n".join(paras), encoding="utf-8")
    params = {
        "sources": {"transcripts": ["corpus"]},
        "chunking": {"chunk_size": 48, "chunk_overlap": 0},
        "ingest": {"batch_documents": 2},
        "milvus": {"batch_size": 50},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


def run_ingest(cwd: Path) -> dict:
    out = subprocess.run([CLI, "ingest", "--json"], cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def cached(cwd: Path) -> int:
    db = cwd / "data" / "embedding-cache.sqlite"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return con.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
    except sqlite3.OperationalError:  # table not created yet
        return 0


def collection_state(cwd: Path) -> list[tuple]:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        ctx = Context(load_params())
        target = ctx.store.alias_target()
        fields = ["id", "source_id", "chunk_index", "n_chunks", "text_hash", "doc_hash", "chunker"]
        rows = [tuple(r[f] for f in fields) for r in ctx.store.iter_rows(target, fields)]
        ctx.close()
    finally:
        os.chdir(old)
    return sorted(rows)


@pytest.fixture(scope="module")
def clean_state(tmp_path_factory) -> list[tuple]:
    root = tmp_path_factory.mktemp("clean")
    write_corpus(root)
    result = run_ingest(root)
    assert result["rejected"] == 0 and result["added"] > 40
    return collection_state(root)


@pytest.mark.parametrize("kill_after", [5, 30], ids=["early", "late"])
def test_kill_9_mid_ingest_then_rerun_converges(tmp_path, clean_state, kill_after):
    write_corpus(tmp_path)
    proc = subprocess.Popen(
        [CLI, "ingest", "--json"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        while cached(tmp_path) < kill_after:  # wait on the condition, not on a clock
            try:
                proc.wait(timeout=0.02)
                pytest.fail(f"ingest finished before {kill_after} embeddings were cached")
            except subprocess.TimeoutExpired:
                pass
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL

    resumed = run_ingest(tmp_path)
    assert resumed["embedded"] <= len(clean_state) - kill_after  # cached work is not redone
    state = collection_state(tmp_path)
    assert state == clean_state  # same ids, same content, no duplicate, nothing lost
    assert len({row[0] for row in state}) == len(state)
    again = run_ingest(tmp_path)
    assert (again["embedded"], again["upserted"], again["deleted"]) == (0, 0, 0)
