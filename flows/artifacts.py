"""What an ingest flow run shows in the Prefect UI: its summary (markdown), its counts per
source type and its rejects (tables), and a progress bar that moves while it embeds.

Keys (lowercase, dashes) give each artifact a history across runs on the UI's Artifacts page.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from corpusflow.models import Reject
from corpusflow.pipeline import IngestResult

SUMMARY_KEY = "ingest-summary"
COUNTS_KEY = "ingest-counts"
REJECTS_KEY = "ingest-rejects"
PROGRESS_KEY = "ingest-progress"
REJECT_LINES = 20  # rejects shown in the summary; the table holds up to REJECT_ROWS
REJECT_ROWS = 500  # all of them are in data/rejects.jsonl
TYPE_COLUMNS = ("inputs", "documents", "unchanged", "duplicates", "rejected")


class RunProgress:
    """The run's progress artifact: the share of its documents that went through plan, embed
    and load, moved while a batch embeds (by the pipeline's `progress` callback). Doubles as
    the stopwatch of embedding time, which the streaming benchmark subtracts."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self.started = time.monotonic()
        self.total = 0  # documents to process, known once the sources are screened
        self.done = 0
        self.embed_seconds = 0.0
        self._batch_docs = self._batch_texts = self._embedded = 0
        self._shown = -1.0
        self.artifact_id: UUID | None = None

    def start(self, total_documents: int) -> None:
        self.total = total_documents
        self.artifact_id = create_progress_artifact(
            progress=0.0,
            key=PROGRESS_KEY,
            description=f"corpusflow ingest {self.run_id}: {total_documents} documents",
        )
        self._shown = 0.0

    def __call__(self, what: str, n: int) -> None:
        """pipeline.Progress: ("documents" | "embedded", how many more)."""
        if what == "embedded":
            self._embedded += n
            self._show()

    @contextmanager
    def embedding(self, documents: int, texts: int) -> Iterator[None]:
        """Around one batch's embedding: `texts` to embed for `documents` documents."""
        self._batch_docs, self._batch_texts, self._embedded = documents, texts, 0
        started = time.monotonic()
        try:
            yield
        finally:
            self.embed_seconds += time.monotonic() - started

    def batch_done(self, documents: int) -> None:
        self.done += documents
        self._batch_docs = self._batch_texts = self._embedded = 0
        self._show()

    def finish(self) -> None:
        self.done = self.total
        self._show(force=True)

    def seconds(self) -> dict[str, float]:
        """Time spent embedding, and in all since the run began."""
        total = time.monotonic() - self.started
        return {"embed": round(self.embed_seconds, 3), "total": round(total, 3)}

    @property
    def percent(self) -> float:
        if self.total <= 0:
            return 100.0
        within = self._batch_docs * min(1.0, self._embedded / self._batch_texts) if (
            self._batch_texts
        ) else 0.0
        return round(min(100.0, 100.0 * (self.done + within) / self.total), 1)

    def _show(self, force: bool = False) -> None:
        value = self.percent
        if self.artifact_id is None or (not force and value - self._shown < 1.0):
            return  # at most one API call per percent
        update_progress_artifact(self.artifact_id, value)
        self._shown = value


def counts_table(r: IngestResult) -> list[dict[str, Any]]:
    """One row per source type and a total: inputs = documents + duplicates + rejected."""
    rows = [
        {"source type": kind, **{c: b.get(c, 0) for c in TYPE_COLUMNS}}
        for kind, b in sorted(r.by_type.items())
    ]
    total = {"source type": "total", **{c: sum(row[c] for row in rows) for c in TYPE_COLUMNS}}
    return [*rows, total]


def rejects_table(rejects: list[Reject]) -> dict[str, list[str]]:
    """Columns input / source type / reason (columns kept even when there are none)."""
    shown = rejects[:REJECT_ROWS]
    return {
        "input": [f"{r.source} ({r.locator})" if r.locator else r.source for r in shown],
        "source type": [r.source_type for r in shown],
        "reason": [r.reason for r in shown],
    }


def publish(r: IngestResult, summary: dict[str, Any], rejects: list[Reject]) -> None:
    """The summary, the counts and the rejects of a run, as artifacts of its flow run."""
    what = f"corpusflow ingest {r.run_id}"
    markdown = summary_markdown(r, summary)
    create_markdown_artifact(key=SUMMARY_KEY, markdown=markdown, description=what)
    create_table_artifact(key=COUNTS_KEY, table=counts_table(r), description=f"{what}: counts")
    more = f" (first {REJECT_ROWS} of {len(rejects)})" if len(rejects) > REJECT_ROWS else ""
    create_table_artifact(
        key=REJECTS_KEY,
        table=rejects_table(rejects),
        description=f"{what}: {len(rejects)} rejects{more}; all in {r.rejects_file}",
    )


def counts_line(r: IngestResult) -> str:
    """The run's summary line in its log."""
    return (
        f"{r.documents} documents, {r.chunks} chunks: added {r.added}, updated {r.updated}, "
        f"skipped {r.skipped}, deleted {r.deleted}, rejected {r.rejected}"
    )


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
        f"Counts per source type: the `{COUNTS_KEY}` table; rejects: `{REJECTS_KEY}`.",
        "",
    ]
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
        lines.append("none (dry run)" if r.dry_run else "not written (`snapshot=false`)")
    lines += ["", "## Versions", ""]
    lines += [f"- {name.upper() if name == 'dvc' else name.capitalize()}: {value}"
              for name, value in sorted(summary["versions"].items())]  # fmt: skip
    return "\n".join(lines) + "\n"
