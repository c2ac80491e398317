"""Faults: kill -9 while upserting and deleting, Milvus unreachable at start or lost mid-run,
disk full while writing a snapshot. Real processes throughout: the `corpusflow` CLI, Milvus
Lite (embedded, and its gRPC server as a subprocess), the MiniLM model, kernel limits.

Every wait polls a condition (a file appearing, a process exiting), never a clock. After each
fault the next run must converge to exactly the state one clean run builds: the same chunk
ids, the same content and chunker hashes, no duplicate, nothing reported done that was not.
"""

from __future__ import annotations

import json
import os
import random
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import CLI
from corpusflow.chunking import Chunker
from corpusflow.config import Env, load_params
from corpusflow.models import Document
from corpusflow.pipeline import Context, extract
from milvus_servers import LiteServer, free_port, stop_process

WORDS = (
    "amber basalt cedar delta ember fjord granite harbor iris jasper kelp lumen meadow "
    "nectar orchid pebble quartz raven saffron tundra umber violet willow yarrow zephyr"
).split()
N_DOCS = 20
TIMEOUT = 120.0  # seconds before a wait gives up (a hang is a failure, not a slow pass)


def paragraph(seed: int) -> str:
    rnd = random.Random(seed)
    return " ".join(rnd.choice(WORDS) for _ in range(80)).capitalize() + "."


def write_corpus(root: Path, version: int) -> None:
    """v1: two paragraphs per talk. v2: the first paragraph only, and a new title from a
    sidecar, so every talk has one chunk to update (upsert) and one to delete."""
    corpus = root / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for i in range(N_DOCS):
        paras = [paragraph(i * 10), paragraph(i * 10 + 1)]
        text = paras[0] if version == 2 else "\n\n".join(paras)
        (corpus / f"talk{i:02d}.txt").write_text(text, encoding="utf-8")
        meta = corpus / f"talk{i:02d}.meta.json"
        if version == 2:
            meta.write_text(json.dumps({"title": f"Talk {i} (edited)"}), encoding="utf-8")
        else:
            meta.unlink(missing_ok=True)
    params = {
        "sources": {"transcripts": ["corpus"]},
        "chunking": {"chunk_size": 128, "chunk_overlap": 0},
        "ingest": {"batch_documents": 1},
        "milvus": {"batch_size": 50},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")


def run_cli(cwd: Path, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CLI, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=TIMEOUT, **kw
    )


def ingest_ok(cwd: Path, env: dict | None = None) -> dict:
    out = run_cli(cwd, "ingest", "--json", env=env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Poll `condition` until true, pacing on the process itself; fail if it exits first."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        try:
            proc.wait(timeout=0.01)
        except subprocess.TimeoutExpired:
            pass
        else:
            pytest.fail(f"the run ended (exit {proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")


def wal_files(db_dir: Path, kind: str) -> list[Path]:
    """Milvus Lite's write-ahead log files (`kind` = data for upserts, delta for deletes)."""
    return [p for p in db_dir.glob(f"collections/*/wal/wal_{kind}_*.arrow") if p.stat().st_size]


def expected_state(cwd: Path, embedder, monkeypatch) -> set[tuple]:
    """What one clean run of the corpus in `cwd` stores, from the sources and the chunker."""
    monkeypatch.chdir(cwd)
    params = load_params()
    ctx = Context(params)
    ctx._embedder = embedder
    spec = ctx.chunker_spec()
    chunker = Chunker(spec, embedder.count_tokens)
    state = set()
    for doc in extract(params, params.sources.transcripts):
        assert isinstance(doc, Document)
        chunks = chunker.split(doc)
        for c in chunks:
            state.add(
                (c.id, doc.source_id, c.chunk_index, len(chunks), doc.content_hash, doc.title)
            )
            state.add(("chunker", spec.digest))
    return state


def stored_state(cwd: Path, monkeypatch, uri: str | None = None) -> tuple[set[tuple], int]:
    monkeypatch.chdir(cwd)
    ctx = Context(load_params(), env=Env(milvus_uri=uri))
    try:
        target = ctx.store.alias_target()
        fields = ["id", "source_id", "chunk_index", "n_chunks", "doc_hash", "title", "chunker"]
        rows = list(ctx.store.iter_rows(target, fields))
    finally:
        ctx.close()
    state = {tuple(r[f] for f in fields[:-1]) for r in rows}
    state |= {("chunker", r["chunker"]) for r in rows}
    return state, len(rows)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """Corpus v1 ingested once through the CLI: its Milvus Lite database and an embedding
    cache holding every chunk text of v1 and v2 (v2's texts are a subset)."""
    root = tmp_path_factory.mktemp("template")
    write_corpus(root, 1)
    result = ingest_ok(root)
    assert result["documents"] == N_DOCS and result["chunks"] == 2 * N_DOCS
    return root


def copy_template(template: Path, dest: Path, milvus: bool = True) -> None:
    shutil.copytree(template / "corpus", dest / "corpus")
    shutil.copy2(template / "params.yaml", dest / "params.yaml")
    (dest / "data").mkdir()
    shutil.copy2(template / "data" / "embedding-cache.sqlite", dest / "data")
    if milvus:
        shutil.copytree(template / "data" / "milvus.db", dest / "data" / "milvus.db")


# ------------------------------------------------------------------------------------------
# kill -9 while the run upserts and deletes
# ------------------------------------------------------------------------------------------
def test_kill_9_during_upserts_and_deletes_then_rerun_converges(
    template, tmp_path, embedder, monkeypatch
):
    """Every v2 chunk text is cached, so the run is all upserts (new titles) and deletes
    (dropped paragraphs). All talks go in one batch, upserted one row per call, and only
    then are the stale chunks deleted: the kill, right after Milvus Lite logs the first
    upsert, leaves talks half-written (a new first chunk beside an old second chunk)."""
    copy_template(template, tmp_path)
    write_corpus(tmp_path, 2)
    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    params["ingest"]["batch_documents"], params["milvus"]["batch_size"] = N_DOCS, 1
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    db = tmp_path / "data" / "milvus.db"
    assert not wal_files(db, "data")
    proc = subprocess.Popen(
        [CLI, "ingest", "--json"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for(lambda: wal_files(db, "data"), proc, "the first upsert")
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
        out, _ = proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert out == b""  # nothing was reported as done

    partial, _ = stored_state(tmp_path, monkeypatch)
    want = expected_state(tmp_path, embedder, monkeypatch)
    assert partial != want  # the kill did land mid-way: some talks are still v1

    resumed = ingest_ok(tmp_path)
    assert resumed["embedded"] == 0  # every text was cached: the rerun only writes
    state, rows = stored_state(tmp_path, monkeypatch)
    assert state == want and rows == N_DOCS  # same ids and content, nothing stale, no dupes
    again = ingest_ok(tmp_path)
    assert (again["upserted"], again["deleted"], again["unchanged_documents"]) == (0, 0, N_DOCS)


# ------------------------------------------------------------------------------------------
# Milvus unreachable
# ------------------------------------------------------------------------------------------
def assert_one_line_error(out: subprocess.CompletedProcess, *fragments: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr)
    assert out.stdout == ""  # nothing reported as done
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in out.stderr


def test_milvus_unreachable_at_start_is_one_clear_line(template, tmp_path):
    copy_template(template, tmp_path, milvus=False)
    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = dict(os.environ, MILVUS_URI=uri)
    for args in (["ingest", "--json"], ["snapshot", "--json"], ["stats", "--json"]):
        assert_one_line_error(run_cli(tmp_path, *args, env=env), uri)
    assert not (tmp_path / "data" / "rejects.jsonl").exists()
    assert not (tmp_path / "data" / "snapshots").exists()


def test_milvus_lite_database_locked_by_another_process_is_one_clear_line(template, tmp_path):
    """Milvus Lite opens a database in one process at a time: a second one must say so in
    one line (not print milvus-lite's traceback) and change nothing."""
    copy_template(template, tmp_path)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\nfrom pymilvus import MilvusClient\n"
            "client = MilvusClient('data/milvus.db')\nprint('open', flush=True)\nsys.stdin.read()",
        ],
        cwd=tmp_path,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "open"
        for args in (["ingest", "--json"], ["stats", "--json"]):
            assert_one_line_error(run_cli(tmp_path, *args), "data/milvus.db", "lock")
    finally:
        holder.stdin.close()
        holder.wait(timeout=TIMEOUT)
        holder.stdout.close()
    assert not (tmp_path / "data" / "rejects.jsonl").exists()


def test_milvus_server_lost_mid_run_then_restarted_converges(
    template, tmp_path, embedder, monkeypatch
):
    """A milvus-lite gRPC server is SIGKILLed once the run has written its first batch; the
    run must fail with one clear line and report nothing, and once the server is back (same
    data directory) the rerun must complete the collection exactly."""
    copy_template(template, tmp_path, milvus=False)  # a warm cache: the run only writes
    server = LiteServer(tmp_path / "milvus-server", port=free_port())
    server.start()
    env = dict(os.environ, MILVUS_URI=server.uri)
    try:
        proc = subprocess.Popen(
            [CLI, "ingest", "--json"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            wait_for(lambda: wal_files(server.data_dir, "data"), proc, "the first upsert")
            stop_process(server.proc, signal.SIGKILL)
            server.proc = None
            out, err = proc.communicate(timeout=TIMEOUT)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert_one_line_error(
            subprocess.CompletedProcess(proc.args, proc.returncode, out, err), "Milvus"
        )

        server.start()  # the same data directory and port
        result = ingest_ok(tmp_path, env=env)
        assert result["embedded"] == 0 and result["rejected"] == 0
        state, rows = stored_state(tmp_path, monkeypatch, uri=server.uri)
        assert state == expected_state(tmp_path, embedder, monkeypatch)
        assert rows == 2 * N_DOCS
        again = ingest_ok(tmp_path, env=env)
        assert (again["upserted"], again["unchanged_documents"]) == (0, N_DOCS)
    finally:
        server.stop()


# ------------------------------------------------------------------------------------------
# disk full while writing a snapshot
# ------------------------------------------------------------------------------------------
def test_snapshot_write_failure_leaves_the_previous_snapshot_intact(template, tmp_path):
    """A real kernel limit: the child process may not write files past half the snapshot's
    size (RLIMIT_FSIZE, SIGXFSZ ignored so the write fails with EFBIG instead of killing)."""
    copy_template(template, tmp_path)
    first = json.loads(run_cli(tmp_path, "snapshot", "--json").stdout)
    snap = Path(tmp_path, first["path"])
    manifest = snap.with_name("snapshot.manifest.json")
    old_snap, old_manifest = snap.read_bytes(), manifest.read_bytes()
    limit = len(old_snap) // 2

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    out = run_cli(tmp_path, "snapshot", "--json", preexec_fn=small_files)
    assert snap.read_bytes() == old_snap and manifest.read_bytes() == old_manifest
    assert sorted(p.name for p in snap.parent.iterdir()) == sorted([snap.name, manifest.name])
    assert_one_line_error(out, "cannot write snapshot", "File too large")

    again = json.loads(run_cli(tmp_path, "snapshot", "--json").stdout)  # no limit: works
    assert again["sha256"] == first["sha256"] and snap.read_bytes() == old_snap
