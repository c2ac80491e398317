"""Retrieval evaluation of one snapshot version: a real downstream consumer for lineage.

It evaluates the snapshot's own content, not the live collection, so its numbers belong to
exactly one version: the snapshot is fetched through `use_snapshot` (Comet `get_artifact`
when online — Comet records this run as a consumer — else the ledger and local bytes), its
chunk texts are embedded with the pipeline's embedder (through the embedding cache, so a
snapshot of an ingested collection costs no model calls), each query from `evaluation.queries`
ranks the sources by their best chunk, and hit rate@k and MRR@k of the expected source are
logged to the run's own experiment and to the lineage ledger.

Flow-friendly: one function, plain arguments, a result with `to_dict()`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpusflow.config import EvaluationQuery
from corpusflow.context import Context, new_run_id
from corpusflow.embedding.cached import EmbedCounts
from corpusflow.models import PipelineError

if TYPE_CHECKING:
    from corpusflow.versioning.settings import CometSettings

LOG = logging.getLogger(__name__)


@dataclass
class QueryOutcome:
    query: str
    expected_source: str
    rank: int | None  # 1-based rank of the expected source among sources, None if absent
    top_sources: list[str]


@dataclass
class EvaluationResult:
    run_id: str
    k: int
    queries: int
    hit_rate: float
    mrr: float
    snapshot: dict[str, Any]
    model: str
    mode: str  # online | offline | disabled (where the experiment went)
    experiment_key: str | None
    comet_recorded: bool  # Comet itself recorded this run as the snapshot's consumer
    pending_id: str | None  # consumption waiting for `comet sync`
    archive: str | None
    seconds: float
    per_query: list[QueryOutcome] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, float]:
        return {
            f"hit_rate@{self.k}": self.hit_rate,
            f"mrr@{self.k}": self.mrr,
            "queries": self.queries,
        }

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "metrics": self.metrics}


def rank_sources(
    query_vectors: list[list[float]],
    record_vectors: list[list[float]],
    record_sources: list[str],
    depth: int,
) -> list[list[str]]:
    """For each query, the distinct sources ordered by their best chunk's cosine score
    (ties broken by source id, so results are deterministic); at most `depth` of them."""
    import numpy as np

    if not record_vectors:
        return [[] for _ in query_vectors]
    q = np.asarray(query_vectors, dtype=np.float32)
    r = np.asarray(record_vectors, dtype=np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True).clip(min=1e-12)
    r /= np.linalg.norm(r, axis=1, keepdims=True).clip(min=1e-12)
    scores = q @ r.T
    sources = sorted(set(record_sources))
    index = {s: i for i, s in enumerate(sources)}
    member = np.asarray([index[s] for s in record_sources])
    out = []
    for row in scores:
        best = np.full(len(sources), -np.inf, dtype=np.float32)
        np.maximum.at(best, member, row)
        order = sorted(range(len(sources)), key=lambda i: (-round(float(best[i]), 6), sources[i]))
        out.append([sources[i] for i in order[:depth]])
    return out


def score(outcomes: list[QueryOutcome], k: int) -> tuple[float, float]:
    """(hit rate@k, MRR@k) of the expected sources."""
    if not outcomes:
        return 0.0, 0.0
    hits = [o.rank is not None and o.rank <= k for o in outcomes]
    rr = [1.0 / o.rank if o.rank is not None and o.rank <= k else 0.0 for o in outcomes]
    return round(sum(hits) / len(outcomes), 6), round(sum(rr) / len(outcomes), 6)


def evaluate(
    ctx: Context,
    snapshot: str | None = None,
    *,
    k: int | None = None,
    queries: list[EvaluationQuery] | None = None,
    run_id: str | None = None,
) -> EvaluationResult:
    """Evaluate retrieval on snapshot `snapshot` (latest, v2, a sha prefix, or a Comet
    version/alias; default `evaluation.snapshot`) and record this run as its consumer."""
    from corpusflow.versioning.comet import end_experiment, start_experiment
    from corpusflow.versioning.settings import CometSettings

    started = time.monotonic()
    conf = ctx.params.evaluation
    ref = snapshot or conf.snapshot
    queries = list(conf.queries if queries is None else queries)
    if not queries:
        raise PipelineError("no evaluation queries: add `evaluation: queries:` to params.yaml")
    settings = CometSettings.from_params(ctx.params)
    exp, mode = (None, "disabled")
    if settings.mode != "disabled":
        exp, mode = start_experiment(settings, f"evaluate {ref}", ["corpusflow", "evaluation"])
    archive = None
    try:
        result = _evaluate(
            ctx, settings, ref, k or conf.k, queries, run_id or new_run_id(), exp, mode
        )
    finally:
        if exp is not None:
            archive = end_experiment(exp, mode, settings)
    result.archive = archive
    result.seconds = round(time.monotonic() - started, 3)
    return result


def _evaluate(
    ctx: Context,
    settings: CometSettings,
    ref: str,
    k: int,
    queries: list[EvaluationQuery],
    run_id: str,
    exp: Any,
    mode: str,
) -> EvaluationResult:
    """The evaluation inside its experiment: the snapshot, the queries, the scores, and
    the consumption (in the experiment, the pending queue when Comet has not recorded it,
    and the ledger)."""
    from corpusflow.versioning.queue import queue_consumption
    from corpusflow.versioning.views import LineageError

    try:
        used = _use(settings, ref, exp, mode, ctx)
    except LineageError as exc:
        raise PipelineError(str(exc)) from None
    outcomes, model = _run_queries(ctx, used.path, queries, k)
    hit_rate, mrr = score(outcomes, k)
    pending_id = None
    if exp is not None and used.source != "comet":  # let `comet sync` record it later
        pending_id = queue_consumption(
            settings, exp.id, used.sha256, ref, offline=mode == "offline"
        )
    result = EvaluationResult(
        run_id=run_id,
        k=k,
        queries=len(outcomes),
        hit_rate=hit_rate,
        mrr=mrr,
        snapshot=used.to_dict(),
        model=model,
        mode=mode,
        experiment_key=exp.id if exp is not None else None,
        comet_recorded=used.source == "comet",
        pending_id=pending_id,
        archive=None,
        seconds=0.0,
        per_query=outcomes,
    )
    if exp is not None:
        _log_to_experiment(exp, result, used, ref)
    _record_consumed(settings, result, used, ref)
    return result


def _record_consumed(
    settings: CometSettings, result: EvaluationResult, used: Any, ref: str
) -> None:
    """This run as the snapshot's consumer, in the lineage ledger."""
    settings.ledger.record_consumed(
        used.sha256,
        used.version,
        ref,
        {
            "kind": "evaluation",
            "run_id": result.run_id,
            "experiment_key": result.experiment_key,
            "mode": result.mode,
        },
        {
            "artifact": used.artifact,
            "version": used.comet_version,
            "recorded": result.comet_recorded,
            "pending_id": result.pending_id,
        },
        result.metrics,
    )


def _use(settings: CometSettings, ref: str, exp: Any, mode: str, ctx: Context) -> Any:
    """The snapshot through Comet when online (falling back to local bytes), else locally."""
    from corpusflow.versioning.lineage import use_snapshot

    local = {
        "ledger": settings.ledger,
        "candidates": [ctx.params.snapshot.out],
        "content_dirs": [settings.pending_dir],
    }
    if mode == "online":
        try:
            return use_snapshot(
                settings.artifact,
                ref,
                experiment=exp,
                workspace=settings.workspace,
                dest=settings.downloads_dir / f"{settings.artifact}-{exp.id[:8]}",
                ledger=settings.ledger,
            )
        except Exception as exc:  # not in Comet yet (pending), or Comet failed mid-run
            LOG.warning("Comet has no %s:%s (%s): using local bytes", settings.artifact, ref, exc)
    return use_snapshot(settings.artifact, ref, **local)


def _run_queries(
    ctx: Context, path: str | Path, queries: list[EvaluationQuery], k: int
) -> tuple[list[QueryOutcome], str]:
    from corpusflow.snapshot import iter_records

    records = [r for r in iter_records(path) if r.get("text")]
    vectors = ctx.embed_texts([r["text"] for r in records], EmbedCounts())
    query_vectors = ctx.embedder.embed([q.query for q in queries])
    depth = max(k, 10)
    ranked = rank_sources(query_vectors, vectors, [r["source_id"] for r in records], depth)
    outcomes = []
    for q, sources in zip(queries, ranked, strict=True):
        rank = sources.index(q.expected_source) + 1 if q.expected_source in sources else None
        outcomes.append(QueryOutcome(q.query, q.expected_source, rank, sources[:k]))
    return outcomes, ctx.embedder.model_id


def _log_to_experiment(exp: Any, result: EvaluationResult, used: Any, ref: str) -> None:
    exp.log_parameters(
        {
            "snapshot_reference": ref,
            "snapshot_sha256": used.sha256,
            "snapshot_version": used.version,
            "snapshot_comet_version": used.comet_version,
            "artifact": used.artifact,
            "k": result.k,
            "model": result.model,
            "queries": result.queries,
        }
    )
    exp.log_metrics(result.metrics)
    exp.log_others({"run_id": result.run_id, "snapshot_source": used.source})
    exp.log_table(
        "evaluation_queries.csv",
        tabular_data=[
            [o.query, o.expected_source, o.rank or "", " ".join(o.top_sources)]
            for o in result.per_query
        ],
        headers=["query", "expected_source", "rank", "top_sources"],
    )
