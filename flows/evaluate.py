"""The `evaluate` flow: a downstream consumer of a snapshot version (hit rate and MRR).

It resolves a snapshot by ledger version, sha256 prefix, Comet version or alias, records
itself as that snapshot's consumer (Comet `get_artifact` online, the ledger and a pending
queue offline) and logs its scores to its own experiment: snapshot vN -> evaluation runs.
The step itself is corpusflow.evaluation.evaluate, the same one `corpusflow evaluate` runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

from prefect import flow, task  # noqa: E402
from prefect.artifacts import create_markdown_artifact  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402

from corpusflow import evaluation  # noqa: E402
from corpusflow.config import load_params  # noqa: E402
from corpusflow.pipeline import Context  # noqa: E402
from flows import tasks  # noqa: E402

ARTIFACT_KEY = "evaluate-summary"


@task(name="evaluate-snapshot", cache_policy=NO_CACHE, persist_result=False)
def evaluate_snapshot(ctx: Context, snapshot: str | None, k: int | None) -> dict[str, Any]:
    """corpusflow.evaluation.evaluate: scores plus the consumer record."""
    return evaluation.evaluate(ctx, snapshot, k=k).to_dict()


def summary_markdown(r: dict[str, Any]) -> str:
    snap = r["snapshot"]
    lines = [
        f"# Retrieval evaluation of snapshot {snap.get('version', '?')}",
        "",
        "| metric | value |",
        "|---|---|",
        f"| hit rate@{r['k']} | {r['hit_rate']:.3f} |",
        f"| MRR@{r['k']} | {r['mrr']:.3f} |",
        f"| queries | {r['queries']} |",
        "",
        f"Snapshot sha256 `{snap.get('sha256', '')}`; model `{r['model']}`; "
        f"Comet: {r['mode']}"
        + (f", experiment `{r['experiment_key']}`" if r["experiment_key"] else ""),
    ]
    return "\n".join(lines) + "\n"


@flow(name="evaluate", description="Retrieval evaluation of a snapshot version.")
def evaluate(
    snapshot: str | None = None, k: int | None = None, params_file: str | None = None
) -> dict[str, Any]:
    """Evaluate `snapshot` (default: `evaluation.snapshot` in params, usually `latest`)."""
    params = load_params(params_file)
    ctx = Context(params, _embedder=tasks.local_embedder(params.embedding))
    try:
        result = evaluate_snapshot(ctx, snapshot, k)
    finally:
        ctx.close()
    create_markdown_artifact(key=ARTIFACT_KEY, markdown=summary_markdown(result))
    return result
