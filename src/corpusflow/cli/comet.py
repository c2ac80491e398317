"""`corpusflow comet ...`: upload offline runs and pending versions, record a snapshot as a
version.

comet_ml is imported only by the commands that talk to Comet (through corpusflow.versioning),
so `corpusflow lineage` stays fast and offline. Comet's hygiene switches are in the
environment before that: `import corpusflow` sets them (corpusflow.OFFLINE_ENV).
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from corpusflow.cli.support import JsonOpt, ParamsOpt, emit, errors_as_lines, fail, params_or_fail

comet_app = typer.Typer(
    help="Comet: upload offline runs and pending snapshot versions; version a snapshot.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


ForceUploadOpt = Annotated[
    bool, typer.Option("--force-upload", help="re-upload archives Comet already has")
]


@comet_app.command("sync")
def sync_command(
    force_upload: ForceUploadOpt = False,
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
) -> None:
    """Upload offline archives, then log pending snapshot versions in order (needs
    COMET_API_KEY)."""
    from corpusflow.versioning.sync import sync

    with errors_as_lines():
        report = sync(params_or_fail(params), force_upload=force_upload)
    emit(report, as_json, lambda: _print_sync(report))
    if report["error"] or report["archives_failed"]:
        raise typer.Exit(1)


@comet_app.command("status")
def status_command(as_json: JsonOpt = False, params: ParamsOpt = None) -> None:
    """What is waiting for `corpusflow comet sync`."""
    from corpusflow.versioning.sync import status

    info = status(params_or_fail(params))
    if as_json:
        typer.echo(json.dumps(info, sort_keys=True))
        return
    typer.echo(f"mode {info['mode']}: {len(info['archives'])} archives to upload")
    for a in info["archives"]:
        typer.echo(f"  {a}")
    typer.echo(f"{len(info['pending'])} pending")
    for p in info["pending"]:
        typer.echo(f"  {p['id']}  {p['kind']}  {p['sha256'][:12]}  {p['time']}")


@comet_app.command("record")
def record_command(
    snapshot: Annotated[
        str | None, typer.Option(help="snapshot file (default: snapshot.out in params)")
    ] = None,
    ingest_run_id: Annotated[str | None, typer.Option(help="the ingest run that led to it")] = None,
    as_json: JsonOpt = False,
    params: ParamsOpt = None,
) -> None:
    """Version a snapshot file (the step `corpusflow snapshot` ends with): ledger version,
    Comet artifact version (or pending) and its DVC address; same bytes, same version."""
    from pathlib import Path

    from corpusflow.versioning.step import version_snapshot

    p = params_or_fail(params)
    path = Path(snapshot or p.snapshot.out)
    if not path.is_file():
        fail(f"snapshot not found: {path}")
    runs = {"ingest": ingest_run_id} if ingest_run_id else None
    out = version_snapshot(p, path, run_ids=runs)
    comet = out["comet"]
    if "error" in comet:
        fail(f"versioning failed: {comet['error']}")
    line = (
        f"{comet['ledger_version']} sha256 {comet['sha256'][:12]} -> "
        f"{comet['artifact']}:{comet['artifact_version']} ({comet['mode']})"
    )
    emit(out, as_json, lambda: typer.echo(line))


def _print_sync(report: dict) -> None:
    typer.echo(
        f"archives uploaded {len(report['archives_uploaded'])}, "
        f"failed {len(report['archives_failed'])}; "
        f"artifact versions logged {len(report['artifacts_logged'])}, "
        f"consumers recorded {len(report['consumers_recorded'])}; "
        f"still pending {report['remaining']}"
    )
    for a in report["artifacts_logged"]:
        typer.echo(f"  {a['sha256'][:12]} -> version {a['version']}")
    for q in report["archives_quarantined"]:
        typer.echo(f"  quarantined: {q['archive']}: {q['problem']}", err=True)
    for f in report["archives_failed"]:
        typer.echo(f"  failed: {f['archive']}: {f['error']}", err=True)
    if report["error"]:
        typer.echo(f"  stopped: {report['error']}", err=True)
