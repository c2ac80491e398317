"""`corpusflow versions show|info` and `corpusflow snapshot show --rev`: snapshot versions
through DVC (a thin shell over corpusflow.versioning.dvc)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from corpusflow.cli.support import command_context, fail

versions_app = typer.Typer(
    help="Snapshot versions through DVC: read one back at any git revision.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@versions_app.command("show")
def show_cmd(
    rev: Annotated[str, typer.Option("--rev", help="git revision (commit, tag, branch)")] = "HEAD",
    path: Annotated[str | None, typer.Option(help="snapshot path in the repo")] = None,
    repo: Annotated[str | None, typer.Option(help="DVC project path or git URL")] = None,
    remote: Annotated[str | None, typer.Option(help="DVC remote (default: the default)")] = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="write here, not stdout")] = None,
) -> None:
    """Print (or write) the snapshot as it was at a git revision, through dvc.api."""
    from dvc.exceptions import DvcException

    from corpusflow.versioning.dvc import DEFAULT_SNAPSHOT, explain_missing, read_snapshot_bytes

    if path is None:
        with command_context(None, with_context=False) as p:
            path = p.snapshot.out if not repo else DEFAULT_SNAPSHOT
    try:
        data = read_snapshot_bytes(rev, path, repo, remote)
    except (DvcException, FileNotFoundError) as exc:
        why = explain_missing(rev, path, repo, remote) or str(exc).strip().splitlines()[0]
        fail(f"cannot read {path} at {rev}: {why}")
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_bytes(data)
        typer.echo(f"{path}@{rev} -> {out} ({len(data)} bytes)", err=True)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


@versions_app.command("info")
def info_cmd(
    path: Annotated[str | None, typer.Argument(help="snapshot (default: snapshot.out)")] = None,
    remote: Annotated[str | None, typer.Option(help="DVC remote (default: the default)")] = None,
) -> None:
    """md5 of a snapshot file and its address in the DVC remote, as JSON."""
    from corpusflow.versioning.dvc import snapshot_version_info

    if path is None:
        with command_context(None, with_context=False) as p:
            path = p.snapshot.out
    if not Path(path).is_file():
        fail(f"no snapshot at {path}")
    typer.echo(json.dumps(snapshot_version_info(path, remote), sort_keys=True))
