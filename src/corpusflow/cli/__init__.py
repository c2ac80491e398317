"""The `corpusflow` command: a thin Typer shell over corpusflow.pipeline, one module per
command group (ingest, search, stats, snapshot, versions, comet, lineage, evaluate, stage);
support.py holds what they share. Importing this package changes nothing in the process:
the commands import what they need when they run.

Words, one meaning each: a *snapshot* is the canonical JSON file of the collection; a
*version* is a recorded snapshot (ledger `v2`, Comet artifact version, DVC address), and
`corpusflow --version` prints the package's release; a *stage* is a DVC stage of dvc.yaml.
"""

from __future__ import annotations

import atexit
import os
import sys
from typing import Annotated

import typer

from corpusflow.cli import (
    comet,
    evaluate,
    ingest,
    lineage,
    search,
    snapshot,
    stage,
    stats,
    versions,
)
from corpusflow.cli.support import run_app

app = typer.Typer(
    help="Transcripts and articles into Milvus, versioned snapshots out.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_release(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"corpusflow {version('corpusflow')}")
        raise typer.Exit()


@app.callback()
def _root(
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_release, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Transcripts and articles into Milvus, versioned snapshots out."""


# the order of `corpusflow --help`: commands first, then the groups
app.command("ingest")(ingest.ingest)
app.command("search")(search.search)
app.command("stats")(stats.stats)
app.command("lineage")(lineage.lineage_command)
app.command("evaluate")(evaluate.evaluate_command)
snapshot.snapshot_app.command("show")(versions.show_cmd)
app.add_typer(snapshot.snapshot_app, name="snapshot")
app.add_typer(comet.comet_app, name="comet")
app.add_typer(stage.stage_app, name="stage")
app.add_typer(versions.versions_app, name="versions")


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
