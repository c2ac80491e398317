"""Scale-out: the model calls of the `ingest` flow on a Dask LocalCluster of 2 worker
processes (prefect-dask), with the same vectors as the default in-process runner."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

from conftest import make_params

pytest_plugins = ["conftest_prefect"]


def write_params(root, sources: dict):
    params = make_params(
        root, sources=sources, ingest={"batch_documents": 64}, comet={"mode": "disabled"}
    )
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")), encoding="utf-8")
    return path


def vectors(make_ctx, root) -> dict[str, np.ndarray]:
    ctx = make_ctx(root)
    try:
        target = ctx.store.alias_target()
        ctx.store.load(target)
        rows = ctx.store.client.query(
            target, filter='id != ""', output_fields=["id", "vector"], limit=16384
        )
        return {row["id"]: np.asarray(row["vector"], dtype=np.float32) for row in rows}
    finally:
        ctx.close()


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


def test_embedding_on_dask_matches_the_default_runner(
    flowkit, prefect_harness, flow_model, local_cluster, tmp_path, monkeypatch, make_ctx
):
    from flows import tasks
    from flows.ingest import ingest

    cluster, client = local_cluster
    monkeypatch.chdir(tmp_path)
    flowkit.copy_sample(tmp_path / "corpus")
    sources = {
        "transcripts": [str(tmp_path / "corpus" / "raw" / "transcripts")],
        "articles": [str(tmp_path / "corpus" / "raw" / "articles" / "articles.csv")],
    }
    on_dask, in_process = tmp_path / "dask", tmp_path / "thread"
    for root in (on_dask, in_process):
        root.mkdir()
        write_params(root, sources)

    dask_run = ingest(
        params_file=str(on_dask / "params.yaml"),
        task_runner="dask",
        dask_address=cluster.scheduler_address,
    )
    thread_run = ingest(params_file=str(in_process / "params.yaml"))

    r = dask_run["result"]
    assert dask_run["task_runner"] == "dask"
    assert r["embedded"] == r["chunks"] == thread_run["result"]["embedded"] > 16

    # the model ran on the workers: each built its embedder once (module-level cache), and
    # the flow process never built one through that path
    built = client.run(lambda: len(__import__("flows.tasks").tasks._WORKER_EMBEDDERS))
    assert len(built) == 2 and set(built.values()) <= {0, 1} and sum(built.values()) >= 1
    worker_pids = set(client.run(os.getpid).values())
    assert os.getpid() not in worker_pids
    assert tasks._WORKER_EMBEDDERS == {}

    got, want = vectors(make_ctx, on_dask), vectors(make_ctx, in_process)
    assert got.keys() == want.keys() and len(got) == r["chunks"]
    worst = max(float(np.max(np.abs(got[i] - want[i]))) for i in got)
    assert worst < 1e-5, f"vectors differ by up to {worst}"
    assert dask_run["snapshot"]["sha256"] == thread_run["snapshot"]["sha256"]
