"""A run's counts per batch, for the tasks in flows/tasks.py: what a step added, so that a
retried step does not count twice and a batch taken from a retried flow run's cache still
counts; and the cache key that scopes those batches to their flow run.

These reach into the pipeline's Ingestion (its result, embed counts, rejects and protected
ids): this module is the one place in flows/ that does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from prefect.context import TaskRunContext

from corpusflow.ids import hash_value
from corpusflow.models import Document
from corpusflow.pipeline import Ingestion

# IngestResult fields a batch adds to; the rest describe the run, not a batch.
BATCH_COUNTERS = (
    "documents",
    "unchanged_documents",
    "chunks",
    "upserted",
    "added",
    "updated",
    "skipped",
    "deleted",
    "rejected",
)


@dataclass
class Counters:
    """A copy of everything a step adds to: the run's counts, rejects and protected ids."""

    counts: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects: int = 0
    protected: frozenset[str] = frozenset()

    @classmethod
    def of(cls, run: Ingestion) -> Counters:
        counts = {name: getattr(run.result, name) for name in (*BATCH_COUNTERS, "migrated")}
        counts["embedded"] = run.embed_counts.embedded
        counts["cache_hits"] = run.embed_counts.cache_hits
        return cls(
            counts=counts,
            by_type={k: dict(v) for k, v in run.result.by_type.items()},
            rejects=len(run.screener.rejects.items),
            protected=frozenset(run.screener.protected),
        )

    def restore(self, run: Ingestion) -> None:
        """Put the counts back in place (the Screener shares `run.result`: never replace it)."""
        for name in (*BATCH_COUNTERS, "migrated"):
            setattr(run.result, name, self.counts[name])
        run.embed_counts.embedded = self.counts["embedded"]
        run.embed_counts.cache_hits = self.counts["cache_hits"]
        run.result.by_type = {k: dict(v) for k, v in self.by_type.items()}
        del run.screener.rejects.items[self.rejects :]
        run.screener.protected.intersection_update(self.protected)


@contextmanager
def counted_once(run: Ingestion) -> Iterator[None]:
    """A failed attempt of a step leaves the run's counts as they were before it, so that
    the task's retry does not count the same work twice."""
    before = Counters.of(run)
    try:
        yield
    except BaseException:
        before.restore(run)
        raise


@dataclass
class BatchCounts:
    """What one batch added to the run: small, JSON, the only thing Prefect persists."""

    counts: dict[str, int] = field(default_factory=dict)
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects: list[dict[str, str]] = field(default_factory=list)  # Reject fields
    protected: list[str] = field(default_factory=list)

    @classmethod
    def between(cls, before: Counters, run: Ingestion) -> BatchCounts:
        after = Counters.of(run)
        by_type: dict[str, dict[str, int]] = {}
        for kind, bucket in after.by_type.items():
            old = before.by_type.get(kind, {})
            diff = {k: n - old.get(k, 0) for k, n in bucket.items() if n != old.get(k, 0)}
            if diff:
                by_type[kind] = diff
        return cls(
            counts={k: n - before.counts[k] for k, n in after.counts.items()},
            by_type=by_type,
            rejects=[asdict(r) for r in run.screener.rejects.items[before.rejects :]],
            protected=sorted(after.protected - before.protected),
        )

    def apply(self, run: Ingestion) -> None:
        """Add a cached batch's counts to the run, as if it had run now."""
        r = run.result
        for name in BATCH_COUNTERS:
            setattr(r, name, getattr(r, name) + self.counts.get(name, 0))
        run.embed_counts.embedded += self.counts.get("embedded", 0)
        run.embed_counts.cache_hits += self.counts.get("cache_hits", 0)
        for source_type, bucket in self.by_type.items():
            for key, n in bucket.items():
                r.count(source_type, key, n)
        run.screener.protected.update(self.protected)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BatchCounts:
        return cls(**data)


def batch_cache_key(context: TaskRunContext, parameters: dict[str, Any]) -> str | None:
    """Batch content + chunker + model + collection, scoped to the flow run: a *retried* flow
    run skips the batches it already finished; a new run never sees another run's entries."""
    run: Ingestion = parameters["run"]
    batch: Sequence[Document] = parameters["batch"]
    flow_run_id = context.task_run.flow_run_id
    if flow_run_id is None:
        return None
    digest = hash_value(
        {
            "documents": [[d.source_id, d.content_hash] for d in batch],
            "chunker": run.spec.digest,
            "model": run.ctx.cache_model_key,
            "collection": run.target,
            "cleanup": run.result.cleanup,
            "dry_run": run.dry_run,
        }
    )
    return f"corpusflow-batch-{flow_run_id}-{digest[:32]}"
