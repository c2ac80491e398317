"""The `corpusflow` command: a thin Typer shell over corpusflow.pipeline."""

from __future__ import annotations

import atexit
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from corpusflow.cli_support import JsonOpt, ParamsOpt, command_context, fail
from corpusflow.models import Reject

app = typer.Typer(
    help="Transcripts and articles into Milvus, versioned snapshots out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _err(line: str) -> None:
    typer.echo(line, err=True)


def _interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[str, int], None] | None]:
    """A progress bar on a terminal; nothing in CI or when output is piped."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        transient=True,
        console=None,
    ) as bar:
        tasks = {
            "documents": bar.add_task("documents", total=None),
            "embedded": bar.add_task("embedding", total=None),
        }
        yield lambda what, n: bar.advance(tasks[what], n)


@app.command()
def ingest(
    transcripts: Annotated[
        list[str], typer.Option("--transcripts", help="transcript file or directory (repeatable)")
    ] = [],  # noqa: B006 - Typer reads defaults, never mutates them
    articles: Annotated[
        list[str], typer.Option("--articles", help="CSV of articles (repeatable)")
    ] = [],  # noqa: B006
    youtube: Annotated[
        list[str], typer.Option("--youtube", help="YouTube URL or id (repeatable)")
    ] = [],  # noqa: B006
    cleanup: Annotated[
        str | None,
        typer.Option(help="incremental (default) or full: drop sources absent from this run"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="report what would change; change nothing")
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="exit 1 if any input was rejected")
    ] = False,
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
) -> None:
    """Ingest transcripts and CSV articles; unchanged inputs cost nothing."""
    from corpusflow import pipeline

    if cleanup not in (None, "incremental", "full"):
        fail(f"--cleanup must be incremental or full, not {cleanup!r}")
    with command_context(params) as ctx:
        src = ctx.params.sources
        if not (transcripts or articles or youtube):
            transcripts, articles, youtube = src.transcripts, src.articles, src.youtube
        if not (transcripts or articles or youtube):
            fail(
                "nothing to ingest: give --transcripts, --articles or --youtube "
                "(or sources in params.yaml)"
            )

        def on_reject(r: Reject) -> None:
            _err(r.line())

        with _progress(_interactive()) as progress:
            result = pipeline.ingest(
                ctx,
                sources=(transcripts, articles, youtube),
                cleanup=cleanup,
                dry_run=dry_run,
                progress=progress,
                on_reject=on_reject,
            )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), sort_keys=True))
    else:
        _print_ingest(result)
    if strict and result.rejected:
        raise typer.Exit(1)


def _print_ingest(r: Any) -> None:
    verb = "would be " if r.dry_run else ""
    typer.echo(
        f"{'[dry run] ' if r.dry_run else ''}{r.documents} documents, {r.chunks} chunks "
        f"-> {r.collection} ({r.physical_collection})"
    )
    typer.echo(
        f"  {verb}added {r.added}, updated {r.updated}, skipped {r.skipped}, deleted {r.deleted}, "
        f"rejected {r.rejected}, duplicates {r.duplicates}"
    )
    typer.echo(
        f"  embedded {r.embedded} (cache hits {r.cache_hits}), upserted {r.upserted}"
        + (f", migrated {r.migrated}" if r.migrated else "")
        + f" in {r.seconds:.1f}s"
    )
    usage = r.embedding_usage
    if usage:
        cost = usage.get("estimated_cost")
        typer.echo(
            f"  tokens {usage.get('tokens_used', 0)}"
            + (f", estimated cost ${cost:.4f}" if cost is not None else "")
        )
    if r.skipped_inputs:
        typer.echo(f"  not inputs (skipped, listed with --json): {r.skipped_inputs} files")
    if r.rejected:
        typer.echo(f"  rejects: {r.rejects_file}")
    if r.duplicates and not r.dry_run:
        typer.echo(f"  duplicates: {r.duplicates_file}")


snapshot_app = typer.Typer(
    help="Write the collection as canonical JSON; `snapshot show --rev REV` reads a version back.",
    pretty_exceptions_enable=False,
)
app.add_typer(snapshot_app, name="snapshot")


@snapshot_app.callback(invoke_without_command=True)
def snapshot(
    tctx: typer.Context,
    out: Annotated[
        str | None, typer.Option(help="output path (default: snapshot.out in params)")
    ] = None,
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version/--no-version",
            help="record the snapshot as a DVC/Comet version and in the lineage ledger",
        ),
    ] = True,
) -> None:
    """Write the collection (and the named queries) as canonical JSON, then version it."""
    from corpusflow import pipeline

    if tctx.invoked_subcommand is not None:
        return

    with command_context(params) as ctx:
        res = pipeline.snapshot(ctx, out)
        versions = pipeline.version(ctx, res) if version else {}
    if as_json:
        typer.echo(
            json.dumps(
                {"path": res.path, "records": res.records, "sha256": res.sha256, **versions},
                sort_keys=True,
                default=str,
            )
        )
        return
    typer.echo(f"{res.records} records -> {res.path}\n  sha256 {res.sha256}")
    comet = versions.get("comet") or {}
    if comet.get("ledger_version"):
        where = comet.get("artifact_version") or comet.get("mode")
        typer.echo(
            f"  version {comet['ledger_version']} (Comet: {where}); see `corpusflow lineage`"
        )
    for name, value in versions.items():
        if isinstance(value, dict) and "error" in value and name != "dvc":
            _err(f"warning: {name} versioning failed: {value['error']}")


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="free text")],
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, max=16384)] = 5,
    filter: Annotated[str, typer.Option("--filter", help="Milvus filter expression")] = "",
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
) -> None:
    """Semantic search; transcript hits link to the moment in the video."""
    from corpusflow import pipeline

    with command_context(params) as ctx:
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


def _clock(seconds: float) -> str:
    s = int(seconds)
    return (
        f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
    )


@app.command()
def stats(as_json: JsonOpt = False, params: ParamsOpt = None) -> None:
    """Counts in the collection, by source type."""
    from corpusflow import pipeline

    with command_context(params) as ctx:
        info = pipeline.stats(ctx)
    if as_json:
        typer.echo(json.dumps(info, sort_keys=True))
    elif not info["exists"]:
        typer.echo(f"{info['collection']}: empty (run `corpusflow ingest`)")
    else:
        types = ", ".join(
            f"{k} {v['documents']} documents / {v['chunks']} chunks"
            for k, v in info["by_source_type"].items()
        )
        typer.echo(
            f"{info['collection']} -> {info['physical_collection']}: {info['records']} records "
            f"from {info['sources']} sources ({types}); model {', '.join(info['models'])}"
        )


# --- sub-commands defined in their own modules (one registration line each) ---
# (registrations go here)
from corpusflow.versioning.comet_cli import (  # noqa: E402 - Comet sync, lineage, evaluation
    comet_app,
    evaluate_command,
    lineage_command,
)

app.add_typer(comet_app, name="comet")
app.command("lineage")(lineage_command)
app.command("evaluate")(evaluate_command)

from corpusflow.stages import show_cmd, stage_app, versions_app  # noqa: E402 - DVC stages, versions

app.add_typer(stage_app, name="stage")
app.add_typer(versions_app, name="versions")
snapshot_app.command("show")(show_cmd)


def main() -> None:
    """Run the app, then leave without interpreter teardown.

    pyarrow's C++ thread pools now and then abort the process during Python's final
    teardown, after all work is done ("terminate called without an active exception",
    apache/arrow#34314: about 1 run in 100 here with the CSV source), turning a success
    into exit status 134. Every output is written by now, so atexit handlers run (Milvus
    Lite, Comet, logging), streams are flushed, and the process ends with the app's code.
    """
    code: int = 0
    try:
        app()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if isinstance(exc.code, str):
            print(exc.code, file=sys.stderr)
    finally:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe must not change the exit code
                pass
    os._exit(code)


if __name__ == "__main__":
    main()
