"""The `ingest` Prefect flow under prefect_test_harness (one per session), against real
Milvus Lite and the real MiniLM: collection, snapshot, artifact, retries, caching, lock wait."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

pytest_plugins = ["conftest_prefect"]


def write_params(root: Path, **sections) -> Path:
    from conftest_prefect import write_params  # imported once pytest has loaded the plugin

    return write_params(root, **sections)

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


def sample_sources(root: Path) -> dict:
    return {
        "transcripts": [str(root / "raw" / "transcripts")],
        "articles": [str(root / "raw" / "articles" / "articles.csv")],
    }


def task_runs(client, flow_run_id, name: str):
    """Task runs of a flow run by name: exact ("ingest-batch-0"), or a task's name prefix
    ("open-milvus" matches the generated "open-milvus-1a2")."""
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        TaskRunFilter,
        TaskRunFilterName,
    )

    return client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
        task_run_filter=TaskRunFilter(name=TaskRunFilterName(any_=[name])),
    ) or [
        tr
        for tr in client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_=name)),
        )
        if tr.name.rsplit("-", 1)[0] == name
    ]


def stored_ids(make_ctx, root: Path | None = None) -> set[str]:
    """Ids in the collection, through a Context opened (and closed) now: a flow run's
    `close()` stops the in-process Milvus Lite server, so connections are not kept across."""
    ctx = make_ctx(root)
    try:
        target = ctx.store.alias_target()
        return {row["id"] for row in ctx.store.iter_rows(target, ["id"])}
    finally:
        ctx.close()


def test_ingest_flow_loads_snapshots_versions_and_reports(
    flowkit, prefect_client, tmp_path, monkeypatch, make_ctx, embedder
):
    from flows import artifacts
    from flows.ingest import ingest

    from corpusflow import pipeline
    from corpusflow.snapshot import read_snapshot

    monkeypatch.chdir(tmp_path)
    flowkit.copy_sample(tmp_path)
    comet = {
        "mode": "offline",
        "offline_dir": str(tmp_path / "comet"),
        "ledger": str(tmp_path / "ledger.jsonl"),
    }
    pfile = write_params(tmp_path, sources=sample_sources(tmp_path), comet=comet)
    shown: list[float] = []  # the progress artifact's values, as the flow sends them
    real_update = artifacts.update_progress_artifact

    def spy(artifact_id, progress, *args, **kwargs):
        shown.append(progress)
        return real_update(artifact_id, progress, *args, **kwargs)

    monkeypatch.setattr(artifacts, "update_progress_artifact", spy)

    state = ingest(params_file=str(pfile), return_state=True)
    assert state.is_completed(), state.message
    summary = state.result()
    r = summary["result"]
    assert r["documents"] == 11 and r["rejected"] == 0 and r["duplicates"] == 0
    assert r["chunks"] == r["added"] == r["upserted"] == r["embedded"] > 11
    assert r["by_type"]["transcript"]["documents"] == 5
    assert r["by_type"]["article"]["documents"] == 6

    flow_run_id = state.state_details.flow_run_id
    name = prefect_client.read_flow_run(flow_run_id).name
    assert name == f"{r['run_id']} · params.yaml"  # the corpusflow run id, then the sources
    table = flowkit.artifact_data(prefect_client, flow_run_id, "ingest-counts", "table")
    assert table == [
        {"source type": t, "inputs": n, "documents": n, "unchanged": 0, "duplicates": 0,
         "rejected": 0}
        for t, n in (("article", 6), ("transcript", 5), ("total", 11))
    ]  # fmt: skip
    # 3 batches of 4 documents: the bar moved while the run embedded, then reached 100
    assert shown == sorted(shown) and 0 < shown[0] < 100 and shown[-1] == 100.0
    assert len(set(shown)) >= 3
    assert flowkit.artifact_data(prefect_client, flow_run_id, "ingest-progress", "progress") == 100

    ids = stored_ids(make_ctx)
    assert len(ids) == r["chunks"]

    snap = summary["snapshot"]
    data = Path(snap["path"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == snap["sha256"]
    assert {rec["id"] for rec in read_snapshot(snap["path"])["records"]} == ids

    md = flowkit.artifact_markdown(prefect_client, flow_run_id)
    assert f"| chunks | {r['chunks']} |" in md
    assert f"| added | {r['chunks']} |" in md
    assert "| rejected | 0 |" in md
    assert snap["path"] in md and snap["sha256"] in md
    assert "Comet: mode=offline" in md and f"sha256={snap['sha256']}" in md
    assert "DVC: md5=" + hashlib.md5(data).hexdigest() in md
    assert len(task_runs(prefect_client, flow_run_id, "ingest-batch-0")) == 1

    # the CLI's path (pipeline.ingest + pipeline.snapshot) builds the same bytes
    cli = make_ctx(tmp_path / "cli", ingest={"cache": str(tmp_path / "cache.sqlite")})
    items = pipeline.extract(cli.params, **sample_sources(tmp_path))
    cli_result = pipeline.ingest(cli, items)
    assert cli_result.embedded == 0  # every vector came from the flow's cache
    assert pipeline.snapshot(cli).sha256 == snap["sha256"]

    # a rerun changes nothing and embeds nothing
    again = ingest(params_file=str(pfile), return_state=True)
    r2 = again.result()["result"]
    assert (r2["added"], r2["updated"], r2["deleted"], r2["embedded"]) == (0, 0, 0, 0)
    assert r2["skipped"] == r["chunks"] and r2["unchanged_documents"] == 11
    md2 = flowkit.artifact_markdown(prefect_client, again.state_details.flow_run_id)
    assert f"| skipped | {r['chunks']} |" in md2 and "| added | 0 |" in md2

    # a dry run with `full` cleanup over the transcripts only: reports, changes nothing
    dry = ingest(
        transcripts=[str(tmp_path / "raw" / "transcripts")],
        cleanup="full",
        dry_run=True,
        params_file=str(pfile),
        return_state=True,
    )
    rd = dry.result()
    article_chunks = sum(
        1 for rec in read_snapshot(snap["path"])["records"] if rec["source_type"] == "article"
    )
    assert rd["result"]["deleted"] == article_chunks > 0
    assert rd["snapshot"] is None
    assert stored_ids(make_ctx) == ids
    md3 = flowkit.artifact_markdown(prefect_client, dry.state_details.flow_run_id)
    assert "(dry run)" in md3 and f"| would be deleted | {article_chunks} |" in md3


def test_retried_flow_run_skips_finished_batches(
    flowkit, prefect_client, tmp_path, monkeypatch, make_ctx
):
    """One CSV over two batches: the second fails, so the file's fingerprint is not recorded
    and the retried flow run reads it again; its first batch comes from the task cache.
    (Files whose documents were all stored are not even read again: fingerprints.)"""
    from flows.ingest import ingest

    from corpusflow.store import MilvusStore

    monkeypatch.chdir(tmp_path)
    flowkit.copy_sample(tmp_path, transcripts=[])
    articles = {"articles": sample_sources(tmp_path)["articles"]}
    pfile = write_params(tmp_path, sources=articles)  # 6 articles, 4 documents a batch

    upserts: list[int] = []
    real_upsert = MilvusStore.upsert

    def upsert_failing_once(self, name, rows, batch_size=500):
        upserts.append(len(rows))
        if len(upserts) == 2:
            raise ValueError("injected: the second batch fails once")  # not retried by the task
        return real_upsert(self, name, rows, batch_size)

    monkeypatch.setattr(MilvusStore, "upsert", upsert_failing_once)
    state = ingest.with_options(retries=1, retry_delay_seconds=0)(
        params_file=str(pfile), return_state=True
    )
    assert state.is_completed(), state.message
    flow_run = prefect_client.read_flow_run(state.state_details.flow_run_id)
    assert flow_run.run_count == 2  # it failed once and was retried

    summary = state.result()
    r = summary["result"]
    assert summary["cached_batches"] == 1 and summary["batches"] == 2
    assert len(upserts) == 3  # batch 0, batch 1 (fails), batch 1 again: not batch 0
    assert upserts[1] == upserts[2]
    # batch 0 came from the task cache: still counted as added, not as skipped
    assert r["documents"] == 6 and r["unchanged_documents"] == 0
    assert r["added"] == r["upserted"] == r["chunks"] and r["skipped"] == 0
    assert r["embedded"] + r["cache_hits"] == r["chunks"]
    assert r["cache_hits"] == upserts[1]  # batch 1's vectors were cached by its failed attempt
    assert len(stored_ids(make_ctx)) == r["chunks"]

    first = task_runs(prefect_client, flow_run.id, "ingest-batch-0")
    assert sorted(tr.state.name for tr in first) == ["Cached", "Completed"]
    second = task_runs(prefect_client, flow_run.id, "ingest-batch-1")
    assert sorted(tr.state.name for tr in second) == ["Completed", "Failed"]


def test_a_second_flow_run_skips_unchanged_files_unread(
    flowkit, prefect_client, tmp_path, monkeypatch
):
    """The flow reads sources as the CLI does: a file whose fingerprint is unchanged is
    counted unchanged from the stored state and never parsed; a touched one is read again."""
    import os

    from flows.ingest import ingest

    from corpusflow.sources import articles, transcripts

    monkeypatch.chdir(tmp_path)
    flowkit.copy_sample(tmp_path)
    pfile = write_params(tmp_path, sources=sample_sources(tmp_path))
    first = ingest(params_file=str(pfile), snapshot=False)["result"]
    assert first["documents"] == 11 and first["unchanged_documents"] == 0

    parsed: list[str] = []
    read_transcript, read_csv = transcripts._read_transcript, articles._read_csv

    def spy_transcript(path, *args):
        parsed.append(Path(path).name)
        return read_transcript(path, *args)

    def spy_csv(path, *args):
        parsed.append(Path(path).name)
        return read_csv(path, *args)

    monkeypatch.setattr(transcripts, "_read_transcript", spy_transcript)
    monkeypatch.setattr(articles, "_read_csv", spy_csv)
    again = ingest(params_file=str(pfile), snapshot=False)
    r = again["result"]
    assert parsed == []  # not one file was read
    assert r["documents"] == r["unchanged_documents"] == 11 and again["batches"] == 0
    assert r["skipped"] == r["chunks"] == first["chunks"]
    assert (r["added"], r["updated"], r["deleted"], r["embedded"]) == (0, 0, 0, 0)
    assert r["by_type"]["transcript"]["unchanged"] == 5
    assert r["by_type"]["article"]["unchanged"] == 6

    touched = tmp_path / "raw" / "transcripts" / "marathon-training.txt"
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))
    third = ingest(params_file=str(pfile), snapshot=False)
    assert parsed == ["marathon-training.txt"]  # only the touched file
    assert third["result"]["unchanged_documents"] == 11 and third["batches"] == 1


HOLD_LOCK = """
import sys
from pymilvus import MilvusClient
client = MilvusClient(uri=sys.argv[1])
print("locked", flush=True)
sys.stdin.readline()
"""


def test_flow_waits_for_a_milvus_lite_lock(
    flowkit, prefect_client, tmp_path, monkeypatch, make_ctx
):
    from flows.ingest import ingest

    from corpusflow import store
    from corpusflow.pipeline import PipelineError

    monkeypatch.chdir(tmp_path)
    flowkit.copy_sample(tmp_path, transcripts=["marathon-training"], articles=False)
    pfile = write_params(tmp_path, sources={"transcripts": [str(tmp_path / "raw" / "transcripts")]})
    uri = str(tmp_path / "milvus.db")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, uri],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        flow = ingest.with_options(retries=0)

        # bounded: gives up with a message that names the process holding the lock
        with pytest.raises(PipelineError, match=rf"in use by another process \(pid {holder.pid}"):
            flow(params_file=str(pfile), milvus_wait_seconds=2)

        # waits: the open step retries until the holder lets go, then the run completes.
        # The flow runs in this thread; a helper releases the lock once the flow has seen it.
        detected = threading.Event()
        real_lock_holder = store.lock_holder

        def spy(path):
            who = real_lock_holder(path)
            if who:
                detected.set()
            return who

        def release_when_detected():
            if detected.wait(60):
                holder.stdin.write("\n")
                holder.stdin.flush()

        monkeypatch.setattr(store, "lock_holder", spy)
        releaser = threading.Thread(target=release_when_detected, daemon=True)
        releaser.start()
        state = flow(params_file=str(pfile), milvus_wait_seconds=60, return_state=True)
        releaser.join(timeout=5)
        assert detected.is_set()
        assert holder.wait(timeout=30) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert state.is_completed(), state.message
    assert state.result()["result"]["documents"] == 1
    opened = flowkit.poll(
        lambda: task_runs(prefect_client, state.state_details.flow_run_id, "open-milvus"),
        30,
        "the open-milvus task run in the API",
    )
    assert len(opened) == 1 and opened[0].run_count >= 2 and opened[0].state.name == "Completed"
    assert len(stored_ids(make_ctx)) == state.result()["result"]["chunks"]


class FakeYouTube:
    """Stands in for youtube_transcript_api.YouTubeTranscriptApi: fails `failures` times
    with a network error, then returns a transcript."""

    failures = 1
    calls = 0

    def fetch(self, video_id, languages):
        import requests

        FakeYouTube.calls += 1
        if FakeYouTube.calls <= FakeYouTube.failures:
            raise requests.ConnectionError("connection reset by peer")
        texts = [
            "Worker bees forage for nectar all summer.",
            "In winter they cluster to keep warm.",
        ]
        return [SimpleNamespace(start=2.0 * i, duration=2.0, text=t) for i, t in enumerate(texts)]


def test_youtube_fetch_retries_network_errors_and_parameters_are_validated(
    flowkit, prefect_client, tmp_path, monkeypatch
):
    from flows import tasks
    from flows.ingest import ingest
    from prefect.exceptions import ParameterTypeError

    monkeypatch.chdir(tmp_path)
    pfile = write_params(tmp_path)
    monkeypatch.setattr("corpusflow.sources.youtube.YouTubeTranscriptApi", FakeYouTube)
    monkeypatch.setattr(
        tasks, "fetch_youtube", tasks.fetch_youtube.with_options(retry_delay_seconds=0)
    )
    FakeYouTube.calls, FakeYouTube.failures = 0, 1
    r = ingest(youtube=["dQw4w9WgXcQ"], params_file=str(pfile), dry_run=True)["result"]
    assert FakeYouTube.calls == 2  # one network failure, one retry
    assert r["documents"] == 1 and r["rejected"] == 0 and r["added"] > 0

    FakeYouTube.calls, FakeYouTube.failures = 0, 99  # never comes back: a reject, not a crash
    state = ingest(youtube=["dQw4w9WgXcQ"], params_file=str(pfile), dry_run=True, return_state=True)
    out = state.result()
    assert FakeYouTube.calls == 1 + tasks.fetch_youtube.retries
    assert out["result"]["rejected"] == 1 and "network error" in out["rejects"][0]
    rows = flowkit.artifact_data(
        prefect_client, state.state_details.flow_run_id, "ingest-rejects", "table"
    )
    assert rows["source type"] == ["transcript"] and "network error" in rows["reason"][0]
    assert len(rows["input"]) == 1 and rows["input"][0] in out["rejects"][0]

    with pytest.raises(ParameterTypeError):
        ingest(cleanup="sometimes", params_file=str(pfile))
    with pytest.raises(ParameterTypeError):
        ingest(task_runner="gpu", params_file=str(pfile))


def test_evaluate_flow_consumes_a_snapshot_version(flowkit, prefect_client, tmp_path, monkeypatch):
    """The downstream flow: scores a snapshot version and is recorded as its consumer."""
    import json

    from flows.evaluate import evaluate
    from flows.ingest import ingest

    monkeypatch.chdir(tmp_path)
    flowkit.copy_sample(tmp_path)
    ledger = tmp_path / "ledger.jsonl"
    comet = {"mode": "offline", "offline_dir": str(tmp_path / "comet"), "ledger": str(ledger)}
    queries = [
        {
            "query": "how do I keep a wild yeast starter alive",
            "expected_source": "youtube:Sd0ugh8read",
        },
        {
            "query": "how did lords in the middle ages protect their fortresses from attackers",
            "expected_source": "csv:raw/articles/articles.csv:castle-003",  # relative to the root
        },
    ]
    pfile = write_params(
        tmp_path,
        sources=sample_sources(tmp_path),
        comet=comet,
        evaluation={"queries": queries, "k": 3},
    )
    produced = ingest(params_file=str(pfile), return_state=True).result()
    state = evaluate(snapshot="latest", params_file=str(pfile), return_state=True)
    assert state.is_completed(), state.message
    r = state.result()
    assert r["queries"] == 2 and r["hit_rate"] == 1.0 and r["mrr"] == 1.0
    assert r["snapshot"]["sha256"] == produced["snapshot"]["sha256"]
    assert r["snapshot"]["version"] == "v1" and r["mode"] == "offline"
    events = [json.loads(line) for line in ledger.read_text().splitlines()]
    consumed = [e for e in events if e.get("event") == "consumed"]
    assert len(consumed) == 1 and consumed[0]["sha256"] == produced["snapshot"]["sha256"]
    md = flowkit.artifact_markdown(
        prefect_client, state.state_details.flow_run_id, key="evaluate-summary"
    )
    assert "| hit rate@3 | 1.000 |" in md and "snapshot v1" in md
