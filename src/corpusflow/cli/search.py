"""`corpusflow search`: semantic search over the collection."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from corpusflow.cli.support import JsonOpt, ParamsOpt, command_context, fail, one_line


def search(
    query: Annotated[str, typer.Argument(help="free text")],
    k: Annotated[
        int, typer.Option("-k", "--top-k", min=1, max=16384, metavar="N", help="hits to return")
    ] = 5,
    filter: Annotated[
        str,
        typer.Option(
            "--filter", metavar="EXPR", help="Milvus filter, e.g. 'source_type == \"article\"'"
        ),
    ] = "",
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
) -> None:
    """Semantic search; transcript hits link to the moment in the video."""
    from corpusflow import pipeline

    with command_context(params) as ctx:
        _check_filter(ctx, filter)
        hits = pipeline.search(ctx, query, k, filter)
    if as_json:
        typer.echo(json.dumps(hits, ensure_ascii=False))
        return
    if not hits:
        typer.echo("no results")
    for i, h in enumerate(hits, 1):
        when = ""
        if h.get("start_seconds") is not None:
            when = f" [{_clock(h['start_seconds'])}-{_clock(h['end_seconds'])}]"
        typer.echo(f"{i}. {h['score']:.3f}  {h['title'] or h['source_id']}{when}")
        if h["url"]:
            typer.echo(f"   {h['url']}")
        snippet = " ".join(h["text"].split())
        typer.echo(f"   {snippet[:200]}{'…' if len(snippet) > 200 else ''}")


def _check_filter(ctx: Any, expr: str) -> None:
    """Let Milvus judge a filter on a one-row query before anything loads the model (15-20 s),
    so a typo fails at once and in words."""
    physical = ctx.store.alias_target() if expr.strip() else None
    if physical is None:  # no filter, or no collection (pipeline.search says so)
        return
    ctx.store.load(physical)
    try:
        ctx.store.client.query(physical, filter=expr, limit=1, output_fields=["id"])
    except RecursionError:
        why = "it is nested too deeply"
    except Exception as exc:
        if not type(exc).__module__.startswith("pymilvus"):
            raise
        why = one_line(str(exc))
        if "recursion" in why:  # the parser gave up on the nesting
            why = "it is nested too deeply"
    else:
        return
    shown = expr if len(expr) <= 60 else expr[:57] + "..."
    fail(f"--filter {shown!r} is not a valid Milvus filter: {why}")


def _clock(seconds: float) -> str:
    s = int(seconds)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )
