"""Scale-out end to end: the `ingest` flow with `task_runner="dask"` on a Dask LocalCluster of
2 worker processes (127.0.0.1) and a real Milvus server (`milvus-lite server`): files parsed,
batches chunked, embedded and written on the workers; the flow keeps and settles the state.
It must build exactly what a local run builds, skip unchanged files, and converge after a
failure midway."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

from conftest import make_params
from milvus_servers import LiteServer

pytest_plugins = ["conftest_prefect"]

COUNTS = ("documents", "unchanged_documents", "chunks", "upserted", "added", "updated",
          "skipped", "deleted", "rejected", "duplicates", "embedded", "by_type")  # fmt: skip


def corpus_sources(corpus) -> dict:
    return {
        "transcripts": [str(corpus / "raw" / "transcripts")],
        "articles": [str(corpus / "raw" / "articles" / "articles.csv")],
    }


def write_params(root, sources: dict, uri: str | None = None):
    milvus = {"uri": uri} if uri else {}
    params = make_params(root, sources=sources, milvus=milvus, comet={"mode": "disabled"})
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")), encoding="utf-8")
    return path


def collection(make_ctx, root, uri: str | None = None) -> dict[str, np.ndarray]:
    """id -> vector of every row, through a Context opened (and closed) now."""
    ctx = make_ctx(root, **({"milvus": {"uri": uri}} if uri else {}))
    try:
        target = ctx.store.alias_target()
        rows = ctx.store.iter_rows(target, ["id", "vector"])
        return {row["id"]: np.asarray(row["vector"], dtype=np.float32) for row in rows}
    finally:
        ctx.close()


def counts(summary: dict) -> dict:
    return {k: summary["result"][k] for k in COUNTS}


def same_collection(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    worst = max(float(np.max(np.abs(got[i] - want[i]))) for i in got)
    assert worst < 1e-6, f"vectors differ by up to {worst}"


@pytest.fixture
def local_cluster():
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(2, timeout=120)
        yield cluster, client


@pytest.fixture
def milvus_server(tmp_path):
    server = LiteServer(tmp_path / "milvus-server")
    server.start()
    try:
        yield server.uri
    finally:
        server.stop()


@pytest.fixture
def flow_process_does_no_row_work(monkeypatch):
    """Spies in the flow process: it must parse, chunk and upsert nothing on the Dask path."""
    from corpusflow.chunking import Chunker
    from corpusflow.sources import articles, transcripts
    from corpusflow.store import MilvusStore

    here: list[str] = []
    for owner, name in ((transcripts, "_read_transcript"), (articles, "_read_csv"),
                        (Chunker, "split"), (MilvusStore, "upsert")):  # fmt: skip
        real = getattr(owner, name)

        def spy(*args, real=real, name=name, **kwargs):
            here.append(name)
            return real(*args, **kwargs)

        monkeypatch.setattr(owner, name, spy)
    return here


def projects(flowkit, tmp_path, monkeypatch, milvus_server):
    """The sample corpus under tmp_path (the working directory) and two projects over it:
    one writing to the Milvus server (its params file returned), one local (no params yet)."""
    monkeypatch.chdir(tmp_path)
    flowkit.copy_sample(tmp_path / "corpus")
    sources = corpus_sources(tmp_path / "corpus")
    on_dask, local = tmp_path / "dask", tmp_path / "local"
    for root in (on_dask, local):
        root.mkdir()
    return sources, on_dask, local, write_params(on_dask, sources, milvus_server)


def test_dask_run_builds_what_a_local_run_builds_and_skips_unchanged_files(
    flowkit, prefect_harness, flow_model, local_cluster, milvus_server, tmp_path, monkeypatch,
    make_ctx, flow_process_does_no_row_work,
):  # fmt: skip
    from flows.ingest import ingest

    from corpusflow import scaleout

    cluster, client = local_cluster
    sources, on_dask, local, dask_params = projects(flowkit, tmp_path, monkeypatch, milvus_server)
    local_params = write_params(local, sources)
    flow = ingest.with_options(retries=0)

    def run_both() -> tuple[dict, dict]:
        flow_process_does_no_row_work.clear()
        dask_run = flow(params_file=str(dask_params), task_runner="dask",
                        dask_address=cluster.scheduler_address)  # fmt: skip
        assert flow_process_does_no_row_work == []  # the workers parsed, chunked and wrote
        return dask_run, flow(params_file=str(local_params))

    dask_run, local_run = run_both()
    assert dask_run["task_runner"] == "dask" and dask_run["batches"] == 3
    assert counts(dask_run) == counts(local_run)
    assert dask_run["result"]["added"] == dask_run["result"]["chunks"] > 11
    same_collection(collection(make_ctx, on_dask, milvus_server), collection(make_ctx, local))
    assert dask_run["snapshot"]["sha256"] == local_run["snapshot"]["sha256"]
    # the model ran on the workers (built once there), never through that path in the flow
    built = client.run(lambda: len(__import__("corpusflow.scaleout").scaleout._EMBEDDERS))
    assert sum(built.values()) >= 1 and os.getpid() not in set(client.run(os.getpid).values())
    assert scaleout._EMBEDDERS == {}

    # unchanged: a no-op (nothing parsed, planned or written), the same snapshot
    flow_process_does_no_row_work.clear()
    again = flow(params_file=str(dask_params), task_runner="dask",
                 dask_address=cluster.scheduler_address)  # fmt: skip
    r = again["result"]
    assert again["batches"] == 0 and flow_process_does_no_row_work == []
    assert r["unchanged_documents"] == r["documents"] == 11
    assert (r["added"], r["updated"], r["deleted"], r["upserted"], r["embedded"]) == (0,) * 5
    assert again["snapshot"]["sha256"] == dask_run["snapshot"]["sha256"]

    # an edited file: only it is re-read on a worker; its stale chunks go, as locally
    edited = tmp_path / "corpus" / "raw" / "transcripts" / "marathon-training.txt"
    edited.write_text("Run slowly most days.\n\nRest one day a week.\n", encoding="utf-8")
    dask_edit, local_edit = run_both()
    assert counts(dask_edit) == counts(local_edit)
    assert dask_edit["batches"] == 1 and dask_edit["result"]["unchanged_documents"] == 10
    assert dask_edit["result"]["deleted"] > 0
    same_collection(collection(make_ctx, on_dask, milvus_server), collection(make_ctx, local))
    assert dask_edit["snapshot"]["sha256"] == local_edit["snapshot"]["sha256"]


def test_a_failure_midway_on_the_workers_leaves_a_state_the_next_run_completes(
    flowkit, prefect_harness, flow_model, local_cluster, milvus_server, tmp_path, monkeypatch,
    make_ctx,
):  # fmt: skip
    """A batch whose rows are written but whose worker fails before reporting back (as a
    killed one would) stays journaled: the next run re-reads it from Milvus and completes."""
    from flows.ingest import ingest

    cluster, client = local_cluster
    sources, on_dask, local, dask_params = projects(flowkit, tmp_path, monkeypatch, milvus_server)
    flow = ingest.with_options(retries=0)

    def fail_after_writing_batch_1() -> None:
        from corpusflow import scaleout

        real = scaleout.WorkerRun.load

        def load(self, plan, vectors):
            real(self, plan, vectors)
            if any(doc.source_id.endswith(":castle-003") for doc, _, _ in plan.writes):
                raise ValueError("injected: the worker dies after writing")

        scaleout.WorkerRun.load = load

    client.run(fail_after_writing_batch_1)
    with pytest.raises(ValueError, match="injected"):
        flow(params_file=str(dask_params), task_runner="dask",
             dask_address=cluster.scheduler_address)  # fmt: skip
    client.restart()  # fresh workers, without the fault
    client.wait_for_workers(2, timeout=120)

    resumed = flow(params_file=str(dask_params), task_runner="dask",
                   dask_address=cluster.scheduler_address)  # fmt: skip
    local_run = flow(params_file=str(write_params(local, sources)))
    assert resumed["result"]["documents"] == local_run["result"]["documents"] == 11
    assert resumed["result"]["unchanged_documents"] > 0  # batches settled before the fault
    same_collection(collection(make_ctx, on_dask, milvus_server), collection(make_ctx, local))
    assert resumed["snapshot"]["sha256"] == local_run["snapshot"]["sha256"]
    again = flow(params_file=str(dask_params), task_runner="dask",
                 dask_address=cluster.scheduler_address)  # fmt: skip
    assert again["batches"] == 0 and again["result"]["unchanged_documents"] == 11


def test_dask_with_a_milvus_lite_file_says_it_needs_a_server(
    flowkit, prefect_harness, flow_model, tmp_path, monkeypatch
):
    from flows.ingest import ingest

    from corpusflow.pipeline import PipelineError

    monkeypatch.chdir(tmp_path)
    flowkit.copy_sample(tmp_path, transcripts=["marathon-training"], articles=False)
    pfile = write_params(tmp_path, {"transcripts": [str(tmp_path / "raw" / "transcripts")]})
    with pytest.raises(PipelineError, match=r"^task_runner=dask needs a Milvus server .*Lite"):
        ingest.with_options(retries=0)(params_file=str(pfile), task_runner="dask")
    assert not (tmp_path / "milvus.db").exists()  # refused before anything was opened
