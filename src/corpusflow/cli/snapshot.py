"""`corpusflow snapshot`: write the collection as a snapshot file, then record it as a version.

Words, as everywhere in the CLI: a *snapshot* is the canonical JSON file of the collection and
its named queries; a *version* is a recorded snapshot (ledger `v2`, Comet artifact version, DVC
address). `snapshot show --rev` reads a version back (cli.versions).
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from corpusflow.cli.support import JsonOpt, ParamsOpt, command_context

snapshot_app = typer.Typer(
    help="Write the collection as canonical JSON; `snapshot show --rev REV` reads a version back.",
    pretty_exceptions_enable=False,
)


@snapshot_app.callback(invoke_without_command=True)
def snapshot(
    tctx: typer.Context,
    out: Annotated[
        str | None, typer.Option(help="output path (default: snapshot.out in params)")
    ] = None,
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
    record_version: Annotated[
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
        written = pipeline.snapshot(ctx, out)
        recorded = pipeline.version(ctx, written) if record_version else {}
    if as_json:
        doc = {"path": written.path, "records": written.records, "sha256": written.sha256}
        typer.echo(json.dumps({**doc, **recorded}, sort_keys=True, default=str))
        return
    typer.echo(f"{written.records} records -> {written.path}\n  sha256 {written.sha256}")
    _print_recorded(recorded)


def _print_recorded(recorded: dict[str, Any]) -> None:
    """The ledger version the snapshot became, and a warning per backend that failed; none
    for DVC, whose address is only in --json (outside a DVC project there is none to give)."""
    comet = recorded.get("comet") or {}
    if comet.get("ledger_version"):
        where = comet.get("artifact_version") or comet.get("mode")
        typer.echo(
            f"  version {comet['ledger_version']} (Comet: {where}); see `corpusflow lineage`"
        )
    for name, value in recorded.items():
        if isinstance(value, dict) and "error" in value and name != "dvc":
            typer.echo(f"warning: {name} versioning failed: {value['error']}", err=True)
