"""Snapshot versions through DVC: get a snapshot back at any git revision, and say where a
snapshot's bytes live in the DVC remote (for the Comet metadata).

A plain library (no Typer) so downstream consumers and the Comet code can import it; the
`corpusflow versions ...` commands are a thin shell over it. DVC is
imported inside the functions: it costs ~0.5 s and most corpusflow commands never need it.
Nothing here opens a connection except to a remote the repository's DVC config names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from corpusflow.config import Snapshot

DEFAULT_SNAPSHOT: str = Snapshot.model_fields["out"].default
_BLOCK = 1 << 20


def read_snapshot_bytes(
    rev: str | None = None,
    path: str = DEFAULT_SNAPSHOT,
    repo: str | None = None,
    remote: str | None = None,
) -> bytes:
    """The snapshot's exact bytes at git revision `rev` (None: the working tree).

    Read through `dvc.api`: from the local DVC cache when it holds them, otherwise from
    `remote` (default: the repository's default remote), so a fresh clone works too.
    `repo` is a path or git URL of the DVC project (default: the one around the cwd).
    """
    import dvc.api

    return dvc.api.read(path, repo=repo, rev=rev, remote=remote, mode="rb")


def read_snapshot(
    rev: str | None = None,
    path: str = DEFAULT_SNAPSHOT,
    repo: str | None = None,
    remote: str | None = None,
) -> dict[str, Any]:
    """The snapshot at git revision `rev`, parsed: what a downstream consumer wants."""
    from corpusflow.snapshot import parse_snapshot

    return parse_snapshot(read_snapshot_bytes(rev, path, repo, remote))


def file_md5(path: str | Path) -> str:
    """MD5 of a file's bytes: DVC 3's hash of a file output, as dvc.lock records it."""
    digest = hashlib.md5(usedforsecurity=False)
    with Path(path).open("rb") as src:
        while block := src.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def remote_url_for(md5: str, where: str | Path = ".", remote: str | None = None) -> str | None:
    """Where DVC keeps (or, after `dvc push`, will keep) the object with this md5 in
    `remote` (default remote if None) of the DVC project around `where`; None when there
    is no project or no remote. Uses DVC's own layout (files/md5/ab/cdef...), not a guess."""
    from dvc.config import NoRemoteError
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    start = Path(where).resolve()
    if start.is_file():
        start = start.parent
    try:
        root = Repo.find_root(str(start))
    except NotDvcRepoError:
        return None
    repo = Repo(root)
    try:
        odb = repo.cloud.get_remote_odb(remote, hash_name="md5")
    except NoRemoteError:
        return None
    finally:
        repo.close()
    return odb.fs.unstrip_protocol(odb.oid_to_path(md5))


def project_path(path: str | Path) -> str:
    """`path` relative to the DVC project (git) root around it, as dvc.yaml names outputs;
    the path as given when there is no project."""
    start = Path(path).resolve()
    for root in [start.parent, *start.parent.parents]:
        if (root / ".dvc").is_dir():
            return start.relative_to(root).as_posix()
    return str(path)


def _locked_md5(root: Path, rev: str, path: str) -> str | None:
    """md5 dvc.lock at `rev` records for output `path` (None: not an output there)."""
    import subprocess

    import yaml

    shown = subprocess.run(
        ["git", "-C", str(root), "show", f"{rev}:dvc.lock"], capture_output=True, text=True
    )
    if shown.returncode != 0:
        return None
    for stage in (yaml.safe_load(shown.stdout) or {}).get("stages", {}).values():
        for out in stage.get("outs", []):
            if out.get("path") == path:
                return out.get("md5")
    return None


def explain_missing(
    rev: str, path: str, repo: str | None = None, remote: str | None = None
) -> str | None:
    """Why `path` cannot be read at `rev`, when it is a DVC output whose bytes are in
    neither the local DVC cache nor the remote (never pushed), and what to do about it.
    None when that is not the reason (then DVC's own message stands)."""
    from corpusflow.redact import scrub

    if repo is not None and "://" in repo:
        return None
    start = Path(repo or ".").resolve()
    root = next((d for d in [start, *start.parents] if (d / ".dvc").is_dir()), None)
    if root is None:
        return None
    md5 = _locked_md5(root, rev, path)
    if md5 is None:
        return f"dvc.lock at {rev} has no output {path} (not built by `dvc repro` there)"
    where = remote_url_for(md5, root, remote)
    if where and "://" not in where and Path(where).exists():
        return None  # in the remote after all: some other failure
    return scrub(
        f"it is a DVC output (md5 {md5}) that was never pushed: its bytes are in neither "
        f"this clone's DVC cache nor the DVC remote ({where or 'none configured'}). "
        f"Run `dvc push` (`make dvc-push`) in the clone that built {rev}, or rebuild it "
        f"here with `git checkout {rev} && dvc repro`"
    )


def snapshot_version_info(path: str | Path, remote: str | None = None) -> dict[str, str | None]:
    """`{md5, remote_url}` of a snapshot file: the identity DVC gives these bytes and the
    address of that version in the DVC remote, for Comet to record next to the run."""
    md5 = file_md5(path)
    return {"md5": md5, "remote_url": remote_url_for(md5, path, remote)}


__all__ = [
    "DEFAULT_SNAPSHOT",
    "explain_missing",
    "file_md5",
    "project_path",
    "read_snapshot",
    "read_snapshot_bytes",
    "remote_url_for",
    "snapshot_version_info",
]
