"""The `ingest` flow: pull sources -> chunk -> embed -> load -> snapshot -> version.

Run it through the deployment (`prefect deployment run 'ingest/local'`, see docs/prefect.md)
or call `ingest(...)` directly. Parameters mirror `corpusflow ingest`. The flow only composes
the public run API (`Ingestion`: extract -> screen -> plan/embed/load per batch -> finish) as
the tasks of flows/tasks.py; its counts are the run's IngestResult as a whole.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Literal

# The deployment loads this file by path; `flows.tasks` (and the Dask workers that unpickle
# the tasks of `flows.cluster`) need the repository root importable.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from prefect import flow, get_run_logger, runtime  # noqa: E402

from corpusflow import scaleout  # noqa: E402
from corpusflow.config import DEFAULT_PARAMS_FILE, ConfigError, Params, chosen_sources, load_params  # noqa: E402
from corpusflow.models import Document  # noqa: E402
from corpusflow.pipeline import Context, Ingestion, IngestResult, PipelineError  # noqa: E402
from corpusflow.store import MilvusLockedError  # noqa: E402
from flows import artifacts, cluster, tasks  # noqa: E402

ARTIFACT_KEY = artifacts.SUMMARY_KEY
NAMED_SOURCES = 3  # sources spelled out in a run's name; the rest are "+N"


def _run_id() -> str:
    """Stable across retries of one flow run: its scheduled time plus its id."""
    when = runtime.flow_run.scheduled_start_time or datetime.now(UTC)
    fid = str(runtime.flow_run.id or "").replace("-", "")[:8] or "local"
    return f"{when.astimezone(UTC):%Y%m%dT%H%M%SZ}-{fid}"


def describe_sources(parameters: dict[str, Any]) -> str:
    """`a.vtt, b.srt +2` for the named sources, `params.yaml` when none are named."""
    named = [
        Path(str(s)).name or str(s)
        for key in ("transcripts", "articles", "youtube")
        for s in parameters.get(key) or []
    ]
    if not named:
        return Path(str(parameters.get("params_file") or DEFAULT_PARAMS_FILE)).name
    more = f" +{len(named) - NAMED_SOURCES}" if len(named) > NAMED_SOURCES else ""
    return ", ".join(named[:NAMED_SOURCES]) + more


def run_name() -> str:
    """The flow run's name in the UI: the corpusflow run id (also in Milvus' `run_id`, the
    rejects file and the snapshot manifest) and what it ingests."""
    dry = " (dry run)" if runtime.flow_run.parameters.get("dry_run") else ""
    return f"{_run_id()} · {describe_sources(runtime.flow_run.parameters)}{dry}"


def _batches(docs: list[Document], n: int) -> list[list[Document]]:
    it = iter(docs)
    return [b for b in iter(lambda: list(islice(it, n)), [])]


@flow(
    name="ingest",
    flow_run_name=run_name,
    description="Pull transcripts and articles, chunk, embed, upsert into Milvus, snapshot.",
    retries=1,
    retry_delay_seconds=15,
    validate_parameters=True,
)
def ingest(
    transcripts: list[str] | None = None,
    articles: list[str] | None = None,
    youtube: list[str] | None = None,
    cleanup: Literal["incremental", "full"] | None = None,
    params_file: str | None = None,
    dry_run: bool = False,
    snapshot: bool = True,
    task_runner: Literal["thread", "dask"] = "thread",
    dask_address: str | None = None,
    milvus_wait_seconds: float = 120.0,
) -> dict[str, Any]:
    """Bring the collection in line with the sources; unchanged inputs cost nothing.

    Args:
        transcripts: transcript files or directories (default: sources in params.yaml).
        articles: CSV files of articles.
        youtube: YouTube URLs or ids.
        cleanup: "incremental" (default from params) or "full" (drop sources absent here).
        params_file: params file (default: ./params.yaml if present, relative to the repo).
        dry_run: count what would change; change nothing, write no snapshot.
        snapshot: write and version a snapshot after loading (the `watch` flow's runs don't).
        task_runner: "thread": all in the flow process; "dask": files parsed, and batches
            chunked, embedded and written to the Milvus server, on a Dask cluster (needs a
            server URI; docs/scaling.md).
        dask_address: scheduler, e.g. tcp://127.0.0.1:8786 (none: a LocalCluster of 2).
        milvus_wait_seconds: how long to wait for a Milvus Lite database that another
            process (a CLI run) holds before failing.
    """
    params = _params(params_file)
    transcripts, articles, youtube = _chosen(params, transcripts, articles, youtube)
    run_id = _run_id()
    progress = artifacts.RunProgress(run_id)
    rejects = tasks.Rejects(get_run_logger())
    ctx = Context(params, _embedder=tasks.local_embedder(params.embedding))
    try:
        if task_runner == "dask":
            scaleout.server_uri(ctx)  # the workers write: a Milvus Lite file will not do
        run = _open(ctx, cleanup, dry_run, run_id, rejects, progress, milvus_wait_seconds)
        with cluster.dask_cluster(task_runner, dask_address) as workers:
            fetched = tasks.fetch_youtube(run, youtube) if youtube else []
            documents = tasks.read_sources(run, transcripts, articles, fetched, workers)
            batches = _batches(documents, params.ingest.batch_documents)
            progress.start(len(documents))
            cached = tasks.load_batches(run, batches, rejects, progress, workers)
        result = tasks.finish(run, rejects)
        progress.finish()
        snap, versions = _snapshot(ctx, result, dry_run or not snapshot)
    finally:
        ctx.close()
    summary = {
        "result": result.to_dict(), "batches": len(batches), "cached_batches": cached,
        "task_runner": task_runner, "versions": versions, "seconds": progress.seconds(),
        "snapshot": snap and {"path": snap.path, "records": snap.records, "sha256": snap.sha256},
        "rejects": [r.line() for r in rejects.items],
    }  # fmt: skip
    artifacts.publish(result, summary, rejects.items)
    get_run_logger().info(artifacts.counts_line(result))
    return summary


def _chosen(params: Params, *named: list[str] | None) -> tuple[list[str], ...]:
    """The named inputs, else params.yaml's sources (config.chosen_sources: the CLI's rule)."""
    try:
        return tuple(chosen_sources(params.sources, *named)[:3])
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None


def _params(params_file: str | None) -> Params:
    try:
        return load_params(params_file)
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None


def _open(ctx: Context, cleanup: str | None, dry_run: bool, run_id: str, on_reject: tasks.Rejects,
          progress: artifacts.RunProgress, wait_seconds: float) -> Ingestion:  # fmt: skip
    """The open-milvus task, retried with backoff for up to `wait_seconds` of a held lock."""
    delays = tasks.milvus_wait_delays(wait_seconds)
    opener = tasks.open_ingestion.with_options(retries=len(delays), retry_delay_seconds=delays)
    try:
        return opener(ctx, cleanup, dry_run, run_id, on_reject, progress)
    except MilvusLockedError as exc:
        raise PipelineError(f"gave up after {wait_seconds:g} s: {exc}") from None


def _snapshot(ctx: Context, result: IngestResult, skip: bool) -> tuple[Any, dict[str, Any]]:
    """Snapshot and versions, or why there are none (a dry run, `snapshot=false`)."""
    if skip:
        why = "skipped (dry run)" if result.dry_run else "skipped (snapshot=false)"
        return None, {"dvc": why, "comet": why}
    snap = tasks.snapshot(ctx, result.run_id)
    return snap, tasks.version(ctx, snap, result)


if __name__ == "__main__":
    ingest()
