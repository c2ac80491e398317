"""The `ingest` flow: pull sources -> chunk -> embed -> load -> snapshot -> version.

Run it through the deployment (`prefect deployment run 'ingest/local'`, see docs/prefect.md)
or call `ingest(...)` directly. Parameters mirror `corpusflow ingest`; the step logic lives in
corpusflow.pipeline, the tasks in flows/tasks.py.
"""

from __future__ import annotations

import sys
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
from prefect.artifacts import create_markdown_artifact  # noqa: E402

from corpusflow.config import ConfigError, load_params  # noqa: E402
from corpusflow.models import Document, Reject  # noqa: E402
from corpusflow.pipeline import Context, IngestResult, PipelineError  # noqa: E402
from flows import tasks  # noqa: E402

ARTIFACT_KEY = "ingest-summary"
REJECT_LINES = 20  # rejects shown in the artifact; all of them are in data/rejects.jsonl


def _run_id() -> str:
    """Stable across retries of one flow run: its scheduled time plus its id."""
    when = runtime.flow_run.scheduled_start_time or datetime.now(UTC)
    fid = str(runtime.flow_run.id or "").replace("-", "")[:8] or "local"
    return f"{when.astimezone(UTC):%Y%m%dT%H%M%SZ}-{fid}"


def _batches(docs: list[Document], n: int) -> list[list[Document]]:
    it = iter(docs)
    return [b for b in iter(lambda: list(islice(it, n)), [])]


@flow(
    name="ingest",
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
    cached_batches = 0
    ctx = Context(params, _embedder=tasks.local_embedder(params.embedding))
    try:
        items = tasks.extract_files(params, transcripts or [], articles or [])
        if youtube:
            items += tasks.fetch_youtube(params, youtube)

        def on_reject(r: Reject) -> None:
            logger.warning(r.line())

        opener = tasks.open_ingestion.with_options(
            retries=len(tasks.milvus_wait_delays(milvus_wait_seconds)),
            retry_delay_seconds=tasks.milvus_wait_delays(milvus_wait_seconds),
        )
        try:
            run = opener(ctx, cleanup, dry_run, run_id, on_reject)
        except tasks.MilvusLocked as exc:
            raise PipelineError(f"gave up after {milvus_wait_seconds:g} s: {exc}") from None
        docs = tasks.screen(run, items)
        batches = _batches(docs, params.ingest.batch_documents)
        cached_rejects: list[str] = []
        with tasks.model_runner(task_runner, dask_address, params.embedding) as embed_fn:
            for index, batch in enumerate(batches):
                delta, cached = tasks.run_batch(run, batch, index, embed_fn)
                if cached:
                    cached_rejects += delta.rejects
                    cached_batches += 1
        result = tasks.finish(run)
        rejects = [r.line() for r in run.screener.rejects.items] + cached_rejects
        snap = None if dry_run else tasks.snapshot(ctx, run_id)
        versions = (
            {"dvc": "skipped (dry run)", "comet": "skipped (dry run)"}
            if snap is None
            else tasks.version(ctx, snap, result)
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
        "rejects": rejects,
    }
    create_markdown_artifact(
        key=ARTIFACT_KEY,
        markdown=summary_markdown(result, summary),
        description=f"corpusflow ingest {run_id}",
    )
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


def summary_markdown(r: IngestResult, summary: dict[str, Any]) -> str:
    """The run at a glance, for the Prefect UI's Artifacts tab."""
    verb = "would be " if r.dry_run else ""
    lines = [
        f"# corpusflow ingest {'(dry run) ' if r.dry_run else ''}`{r.run_id}`",
        "",
        f"Collection **{r.collection}** → `{r.physical_collection}` · model `{r.model}` · "
        f"cleanup `{r.cleanup}` · {summary['batches']} batch(es) "
        f"({summary['cached_batches']} from this flow run's cache) on `{summary['task_runner']}`",
        "",
        "| stage | count |",
        "|---|---:|",
        f"| documents | {r.documents} ({r.unchanged_documents} unchanged) |",
        f"| chunks | {r.chunks} |",
        f"| embedded | {r.embedded} ({r.cache_hits} cache hits) |",
        f"| upserted | {r.upserted} |",
        f"| {verb}added | {r.added} |",
        f"| {verb}updated | {r.updated} |",
        f"| skipped | {r.skipped} |",
        f"| {verb}deleted | {r.deleted} |",
        f"| migrated | {r.migrated} |",
        f"| rejected | {r.rejected} |",
        f"| duplicates | {r.duplicates} |",
        "",
    ]
    if r.by_type:
        lines += ["| source type | inputs | documents | unchanged | duplicates | rejected |"]
        lines += ["|---|---:|---:|---:|---:|---:|"]
        for kind, b in sorted(r.by_type.items()):
            lines.append(
                f"| {kind} | {b.get('inputs', 0)} | {b.get('documents', 0)} | "
                f"{b.get('unchanged', 0)} | {b.get('duplicates', 0)} | {b.get('rejected', 0)} |"
            )
        lines.append("")
    rejects = summary["rejects"]
    lines.append(f"## Rejects ({len(rejects)})")
    if rejects:
        shown = rejects[:REJECT_LINES]
        more = f"\n… {len(rejects) - len(shown)} more" if len(rejects) > len(shown) else ""
        lines += ["", "```", *(line.replace("```", "'''") for line in shown), "```" + more]
        lines.append(f"\nAll rejects: `{r.rejects_file}`")
    else:
        lines.append("\nnone")
    snap = summary["snapshot"]
    lines += ["", "## Snapshot", ""]
    if snap:
        lines += [
            f"- path: `{snap['path']}`",
            f"- records: {snap['records']}",
            f"- sha256: `{snap['sha256']}`",
        ]
    else:
        lines.append("none (dry run)")
    lines += ["", "## Versions", ""]
    lines += [f"- {name.upper() if name == 'dvc' else name.capitalize()}: {value}"
              for name, value in sorted(summary["versions"].items())]  # fmt: skip
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    ingest()
