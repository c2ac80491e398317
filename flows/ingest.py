"""The `ingest` flow: pull sources -> chunk -> embed -> load -> snapshot -> version.

Run it through the deployment (`prefect deployment run 'ingest/local'`, see docs/prefect.md)
or call `ingest(...)` directly. Parameters mirror `corpusflow ingest`; the step logic lives in
corpusflow.pipeline, the tasks in flows/tasks.py.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import Any, Literal

# The deployment loads this file by path; `flows.tasks` (and the Dask workers that unpickle
# `flows.tasks.embed_on_worker`) need the repository root importable.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from prefect import flow, get_run_logger, runtime  # noqa: E402

from corpusflow.config import ConfigError, load_params  # noqa: E402
from corpusflow.models import Document, Reject  # noqa: E402
from corpusflow.pipeline import Context, PipelineError  # noqa: E402
from flows import artifacts, tasks  # noqa: E402

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
        return Path(str(parameters.get("params_file") or "params.yaml")).name
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
        task_runner: "thread" runs the model in the flow process; "dask" runs the model calls
            on a Dask cluster (`dask_address`, or a LocalCluster of 2 processes).
        dask_address: scheduler address, e.g. tcp://127.0.0.1:8786.
        milvus_wait_seconds: how long to wait for a Milvus Lite database that another
            process (a CLI run) holds before failing.
    """
    logger = get_run_logger()
    try:
        params = load_params(params_file)
    except ConfigError as exc:
        raise PipelineError(str(exc)) from None
    if not (transcripts or articles or youtube):
        src = params.sources
        transcripts, articles, youtube = src.transcripts, src.articles, src.youtube
    if not (transcripts or articles or youtube):
        raise PipelineError(
            "nothing to ingest: give transcripts, articles or youtube (or sources in params.yaml)"
        )
    run_id = _run_id()
    started = time.monotonic()
    progress = artifacts.RunProgress(run_id)
    rejected: list[Reject] = []

    def on_reject(r: Reject) -> None:
        rejected.append(r)
        logger.warning(r.line())

    cached_batches = 0
    ctx = Context(params, _embedder=tasks.local_embedder(params.embedding))
    try:
        items = tasks.extract_files(params, transcripts or [], articles or [])
        if youtube:
            items += tasks.fetch_youtube(params, youtube)
        opener = tasks.open_ingestion.with_options(
            retries=len(tasks.milvus_wait_delays(milvus_wait_seconds)),
            retry_delay_seconds=tasks.milvus_wait_delays(milvus_wait_seconds),
        )
        try:
            run = opener(ctx, cleanup, dry_run, run_id, on_reject, progress)
        except tasks.MilvusLocked as exc:
            raise PipelineError(f"gave up after {milvus_wait_seconds:g} s: {exc}") from None
        docs = tasks.screen(run, items)
        batches = _batches(docs, params.ingest.batch_documents)
        progress.start(len(docs))
        with tasks.model_runner(task_runner, dask_address, params.embedding) as embed_fn:
            for index, batch in enumerate(batches):
                delta, cached = tasks.run_batch(run, batch, index, embed_fn, progress)
                if cached:  # a retried flow run: this batch's rejects were not seen this time
                    rejected += [Reject(**fields) for fields in delta.rejects]
                    cached_batches += 1
        result = tasks.finish(run)
        progress.finish()
        snap = None if dry_run or not snapshot else tasks.snapshot(ctx, run_id)
        skipped = "skipped (dry run)" if dry_run else "skipped (snapshot=false)"
        versions = (
            {"dvc": skipped, "comet": skipped} if snap is None else tasks.version(ctx, snap, result)
        )
    finally:
        ctx.close()

    summary = {
        "result": result.to_dict(),
        "batches": len(batches),
        "cached_batches": cached_batches,
        "task_runner": task_runner,
        "snapshot": None
        if snap is None
        else {"path": snap.path, "records": snap.records, "sha256": snap.sha256},
        "versions": versions,
        "rejects": [r.line() for r in rejected],
        "seconds": {
            "embed": round(progress.embed_seconds, 3),
            "total": round(time.monotonic() - started, 3),
        },
    }
    artifacts.publish(result, summary, rejected)
    logger.info(
        "%d documents, %d chunks: added %d, updated %d, skipped %d, deleted %d, rejected %d",
        result.documents,
        result.chunks,
        result.added,
        result.updated,
        result.skipped,
        result.deleted,
        result.rejected,
    )
    return summary


if __name__ == "__main__":
    ingest()
