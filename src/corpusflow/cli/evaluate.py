"""`corpusflow evaluate`: retrieval quality of one snapshot version, recorded as its consumer."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from corpusflow.cli.lineage import short
from corpusflow.cli.support import JsonOpt, ParamsOpt, errors_as_lines, params_or_fail


def evaluate_command(
    version_ref: Annotated[
        str | None,
        typer.Option(
            "--snapshot",
            metavar="SNAPSHOT",
            help="snapshot: latest, v2, sha256 prefix, Comet version or alias",
        ),
    ] = None,
    k: Annotated[int | None, typer.Option("-k", min=1, help="cutoff for hit rate and MRR")] = None,
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
) -> None:
    """Retrieval evaluation of one snapshot version, recorded as its consumer."""
    from corpusflow.evaluation import evaluate
    from corpusflow.pipeline import Context

    p = params_or_fail(params)
    ctx = Context(p)
    try:
        with errors_as_lines():
            result = evaluate(ctx, version_ref, k=k)
    finally:
        ctx.close()
    if as_json:
        typer.echo(json.dumps(result.to_dict(), sort_keys=True, ensure_ascii=False))
        return
    v = result.snapshot  # the version evaluated, and how it was found
    typer.echo(
        f"snapshot {v['version'] or '?'} ({v['artifact']}:{v['comet_version'] or '-'}, "
        f"sha256 {short(v['sha256'])}) via {v['source']}"
    )
    typer.echo(
        f"  hit_rate@{result.k} {result.hit_rate:.3f}  mrr@{result.k} {result.mrr:.3f}  "
        f"over {result.queries} queries; comet {result.mode}"
        + (" (consumer recorded)" if result.comet_recorded else "")
    )
    for o in result.per_query:
        typer.echo(f"  {o.rank or '-':>2}  {o.query}  -> {o.expected_source}")
