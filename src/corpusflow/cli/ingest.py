"""`corpusflow ingest`: sources into Milvus, with progress bars on a terminal."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

import typer

from corpusflow.cli.support import JsonOpt, ParamsOpt, command_context, fail, require_paths
from corpusflow.config import DEFAULT_PARAMS_FILE, ConfigError, chosen_sources
from corpusflow.models import Reject


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
    try:
        chosen = chosen_sources(p.sources, transcripts, articles, youtube, option_prefix="--")
    except ConfigError as exc:
        fail(str(exc))
    where = f"{params_file or DEFAULT_PARAMS_FILE}: sources." if chosen.from_params else ""
    opt = "" if chosen.from_params else "--"
    require_paths(
        {f"{opt}transcripts": chosen.transcripts, f"{opt}articles": chosen.articles}, where
    )
    return chosen.transcripts, chosen.articles, chosen.youtube


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
