"""A run's counts per step and per batch, taken from the run as a whole (`IngestResult.to_dict()`
and the embedding counts), so that a counter added to the result needs no edit here:

- a failed attempt of a step puts the counts back as they were (`counted_once`), so the
  task's retry does not count the same work twice;
- a batch's counts are the difference of two snapshots (`changes`), small JSON that the
  per-flow-run cache keeps, and `add` adds them to a run (a batch from a retried flow run's
  cache, or one a Dask worker ran); numbers add, dicts add per key, lists append.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from prefect.context import TaskRunContext

from corpusflow.ids import hash_value
from corpusflow.models import Document
from corpusflow.pipeline import Ingestion


def counters(run: Ingestion) -> dict[str, dict[str, Any]]:
    """Everything a step adds to, as plain data: the run's result and its embedding counts."""
    return {"result": run.result.to_dict(), "embed": asdict(run.embed_counts)}


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def difference(before: Any, after: Any) -> Any:
    """What `after` adds to `before`: numbers subtract, dicts recurse, lists give their new
    tail; anything else (names, flags) is no count and gives None."""
    if _number(after):
        return after - (before if _number(before) else 0)
    if isinstance(after, dict):
        old = before if isinstance(before, dict) else {}
        out = {k: difference(old.get(k), v) for k, v in after.items()}
        return {k: v for k, v in out.items() if v is not None}
    if isinstance(after, list):
        return after[len(before) if isinstance(before, list) else 0 :]
    return None


def plus(value: Any, delta: Any) -> Any:
    """`value` with `delta` (a `difference`) added."""
    if isinstance(delta, dict):
        out = dict(value) if isinstance(value, dict) else {}
        for key, more in delta.items():
            out[key] = plus(out.get(key), more)
        return out
    if isinstance(delta, list):
        return [*(value or []), *copy.deepcopy(delta)]
    return (value if _number(value) else 0) + delta


def changes(before: dict[str, Any], run: Ingestion) -> dict[str, Any]:
    """What the run's counts gained since `before` (a `counters` snapshot)."""
    return difference(before, counters(run))


def add(run: Ingestion, delta: dict[str, Any]) -> None:
    """Add a `changes` result to the run's counts, as if its work had run here now."""
    for part, target in (("result", run.result), ("embed", run.embed_counts)):
        for name, more in delta.get(part, {}).items():
            setattr(target, name, plus(getattr(target, name), more))


def _restore(run: Ingestion, before: dict[str, Any]) -> None:
    """Put the counts back in place (the Screener shares `run.result`: never replace it)."""
    for part, target in (("result", run.result), ("embed", run.embed_counts)):
        for name, value in before[part].items():
            setattr(target, name, copy.deepcopy(value))


@contextmanager
def counted_once(run: Ingestion, rejects: Any = None) -> Iterator[None]:
    """A failed attempt of a step leaves the run's counts (and the flow's rejects, an object
    with a list `items`) as they were before it, so that its retry does not count twice."""
    before, seen = counters(run), len(rejects.items) if rejects is not None else 0
    try:
        yield
    except BaseException:
        _restore(run, before)
        if rejects is not None:
            del rejects.items[seen:]
        raise


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
