"""`corpusflow stats`: what the collection holds, by source type."""

from __future__ import annotations

import json

import typer

from corpusflow.cli.support import JsonOpt, ParamsOpt, command_context


def stats(as_json: JsonOpt = False, params: ParamsOpt = None) -> None:
    """Documents and chunks in the collection, by source type."""
    from corpusflow import pipeline

    with command_context(params) as ctx:
        info = pipeline.stats(ctx)
    if as_json:
        typer.echo(json.dumps(info, sort_keys=True))
    elif not info["exists"]:
        typer.echo(f"{info['collection']}: empty (run `corpusflow ingest`)")
    else:
        by_type = info["by_source_type"]
        docs = sum(v["documents"] for v in by_type.values())
        typer.echo(
            f"{info['collection']} -> {info['physical_collection']}: {docs} documents, "
            f"{info['records']} chunks; model {', '.join(info['models'])}"
        )
        width = max(len(t) for t in by_type)
        for kind, v in by_type.items():
            typer.echo(f"  {kind:<{width}}  {v['documents']} documents, {v['chunks']} chunks")
