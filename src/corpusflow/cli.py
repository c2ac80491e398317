"""The `corpusflow` command: a thin Typer shell over corpusflow.pipeline."""

from __future__ import annotations

import atexit
import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import typer

from corpusflow.cli_support import (
    JsonOpt,
    ParamsOpt,
    command_context,
    fail,
    one_line,
    require_paths,
    run_app,
)
from corpusflow.models import Reject

app = typer.Typer(
    help="Transcripts and articles into Milvus, versioned snapshots out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"corpusflow {version('corpusflow')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Transcripts and articles into Milvus, versioned snapshots out."""


def _err(line: str) -> None:
    typer.echo(line, err=True)


def _interactive() -> bool:
    return sys.stderr.isatty() and not os.environ.get("CI")


class IngestProgress:
    """Rich bars for an ingest on a terminal: inputs read of those found, texts embedded of
    those planned so far (the pipeline plans batch by batch), a "loading model" spinner,
    each with elapsed time and ETA. The pipeline reports through `progress(what, n)`."""

    def __init__(self, bar: Any, inputs: list[str]):
        self.bar, self.inputs, self.at = bar, inputs, 0
        self.documents = 0
        self.read = bar.add_task("inputs", total=len(inputs) or None)
        self.embedding = bar.add_task("embedding", total=0, visible=False)
        self.loading: Any = None

    def track(self, items: Iterable[Any]) -> Iterator[Any]:
        """Pass the source items through, moving the inputs bar as each input is finished."""
        for item in items:
            self._reached(getattr(item, "origin", "") or getattr(item, "source", ""))
            yield item
        self.bar.update(self.read, completed=len(self.inputs))

    def _reached(self, where: str) -> None:
        for i in range(self.at, len(self.inputs)):
            name = self.inputs[i]
            if where == name or where.startswith(name + " "):  # CSV rows: "PATH row 3"
                self.at = i
                self.bar.update(self.read, completed=i)
                return

    def __call__(self, what: str, n: int) -> None:
        bar = self.bar
        if what == "documents":
            self.documents += n
            bar.update(self.read, description=f"inputs ({self.documents} documents)")
        elif what == "to embed":  # announced once a batch is planned and the cache consulted
            total = bar.tasks[self.embedding].total or 0
            bar.update(self.embedding, total=total + n, visible=True)
        elif what == "embedded":
            bar.advance(self.embedding, n)
        elif what == "loading model":
            self.loading = bar.add_task("loading model", total=None)
        elif what == "model loaded" and self.loading is not None:
            bar.remove_task(self.loading)
            self.loading = None


def _input_names(transcripts: list[str], articles: list[str], youtube: list[str]) -> list[str]:
    """Every input an ingest will read, in the order the sources read them."""
    from corpusflow.sources.transcripts import _is_sidecar, input_files

    names: list[str] = []
    for paths, keep in ((transcripts, lambda p: not _is_sidecar(p)), (articles, _is_csv)):
        for item in input_files(paths, keep, ""):
            if isinstance(item, tuple):
                names.append(str(item[0]))
    return names + list(youtube)


def _is_csv(path: Any) -> bool:
    return path.suffix.lower() == ".csv"


@contextmanager
def _progress(enabled: bool, inputs: list[str]) -> Iterator[IngestProgress | None]:
    """Progress bars on a terminal (stderr); nothing in CI or when output is piped."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn

    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), _counts())
    with Progress(*columns, transient=True, console=Console(stderr=True)) as bar:
        yield IngestProgress(bar, inputs)


def _counts() -> Any:
    """`14/18  0:00:07 elapsed, eta 0:00:02` (the ETA at the average rate so far: batches
    arrive seconds apart, too few for rich's 30 s window); only the elapsed time where no
    total is known (the model loading)."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    def clock(seconds: float | None) -> str:
        s = int(seconds or 0)
        return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"

    class Counts(ProgressColumn):
        def render(self, task: Any) -> Text:
            elapsed = f"{clock(task.elapsed)} elapsed"
            if not task.total:
                return Text(elapsed, style="progress.elapsed")
            done, spent = task.completed, task.elapsed or 0.0
            left = spent * (task.total - done) / done if done else None  # the average rate
            eta = "" if task.finished else f", eta {'?' if left is None else clock(left)}"
            return Text(f"{int(task.completed)}/{int(task.total)}  {elapsed}{eta}")

    return Counts()


@app.command()
def ingest(
    transcripts: Annotated[
        list[str],
        typer.Option(
            "--transcripts", metavar="PATH", help="transcript file or directory (repeatable)"
        ),
    ] = [],  # noqa: B006 - Typer reads defaults, never mutates them
    articles: Annotated[
        list[str], typer.Option("--articles", metavar="CSV", help="CSV of articles (repeatable)")
    ] = [],  # noqa: B006
    youtube: Annotated[
        list[str],
        typer.Option("--youtube", metavar="URL_OR_ID", help="YouTube URL or id (repeatable)"),
    ] = [],  # noqa: B006
    cleanup: Annotated[
        Literal["incremental", "full"] | None,
        typer.Option(help="full: drop sources absent from this run (default: ingest.cleanup)"),
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

    with command_context(params) as ctx:
        transcripts, articles, youtube = _sources(
            ctx.params, params, transcripts, articles, youtube
        )
        interactive = _interactive()
        inputs = _input_names(transcripts, articles, youtube) if interactive else []

        with _progress(interactive, inputs) as progress:
            if progress is not None:
                if hasattr(ctx.embedder, "listener"):
                    ctx.embedder.listener = progress
            result = pipeline.ingest(
                ctx,
                sources=(transcripts, articles, youtube),
                track=progress.track if progress is not None else None,
                cleanup=cleanup,
                dry_run=dry_run,
                progress=progress,
                on_reject=_print_reject,
            )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), sort_keys=True))
    else:
        _print_ingest(result)
    if strict and result.rejected:
        raise typer.Exit(1)


def _sources(
    p: Any, params_file: str | None, transcripts: list[str], articles: list[str], youtube: list[str]
) -> tuple[list[str], list[str], list[str]]:
    """The inputs named on the command line, else those of params.yaml; each named path
    must exist (a typo is a user error, not a reject)."""
    where = ""
    if not (transcripts or articles or youtube):
        transcripts, articles, youtube = (
            p.sources.transcripts,
            p.sources.articles,
            p.sources.youtube,
        )
        where = f"{params_file or 'params.yaml'}: sources."
    if not (transcripts or articles or youtube):
        fail(
            "nothing to ingest: give --transcripts, --articles or --youtube "
            "(or sources in params.yaml)"
        )
    opt = "" if where else "--"
    require_paths({f"{opt}transcripts": transcripts, f"{opt}articles": articles}, where)
    return list(transcripts), list(articles), list(youtube)


def _print_reject(r: Reject) -> None:
    _err(r.line())


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


@app.command()
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
        code = run_app(app)
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
