"""The offline side of Comet: the pending queue, offline archives, and their upkeep.

Offline experiments are written by the SDK into a staging directory (`<offline_dir>/.staging`):
the SDK creates `<key>.zip` empty when the experiment starts and fills it when it ends, so a
kill -9 or a full disk in between would otherwise leave an empty or torn archive where
`comet sync` uploads from, failing on it every time. An archive reaches `<offline_dir>` only
once it is a complete zip holding the experiment's metadata and messages (checked, then
renamed in place). `comet sync` checks again and moves a broken archive to
`<offline_dir>/quarantine/` with one warning line, so later versions still sync.

`PendingQueue` holds artifact versions and consumptions Comet has not got yet; it is keyed
by snapshot sha256 (one entry per distinct snapshot, whatever number of runs made it).
`tidy` removes what a killed run can leave behind: staging leftovers, `*.tmp` files, and
saved snapshot bytes no queue entry refers to.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corpusflow.files import append_jsonl, copy_once, jsonl_line, read_jsonl, write_lines
from corpusflow.versioning.ledger import now

if TYPE_CHECKING:
    from corpusflow.versioning.settings import CometSettings

LOG = logging.getLogger(__name__)
ARCHIVE_PARTS = ("experiment.json", "messages.json")  # what every SDK offline archive holds


class PendingQueue:
    """Artifact versions and consumptions that could not reach Comet yet, in order."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.path = directory / "queue.jsonl"

    def entries(self) -> list[dict[str, Any]]:
        """Entries in order; lines without an id or kind are skipped (one warning each)."""
        out = []
        for e in read_jsonl(self.path):
            if isinstance(e.get("id"), str) and e.get("kind") in ("artifact", "consume"):
                out.append(e)
            else:
                LOG.warning("%s: an entry without id/kind: ignored", self.path)
        return out

    def add(self, entry: dict[str, Any]) -> dict[str, Any]:
        """Append `entry` unless one with its id is queued already (a rerun after a kill
        must not queue the same thing twice); returns the queued entry."""
        for e in self.entries():
            if e["id"] == entry["id"]:
                return e
        entry = {"time": now(), **entry}
        append_jsonl(self.path, entry)
        return entry

    def artifact_for(self, sha256: str, artifact: str) -> dict[str, Any] | None:
        """The queued artifact version of these bytes in `artifact`, if any."""
        for e in self.entries():
            if e["kind"] == "artifact" and e.get("sha256") == sha256:
                if e.get("artifact") == artifact:
                    return e
        return None

    def replace(self, entries: list[dict[str, Any]]) -> None:
        """Rewrite the queue atomically (used by sync to drop what it has done)."""
        write_lines(self.path, (jsonl_line(e) + "\n" for e in entries))

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One versioning step or one sync at a time: each sees the other's work whole."""
        self.dir.mkdir(parents=True, exist_ok=True)
        with (self.dir / "sync.lock").open("a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def queue_consumption(
    settings: CometSettings,
    experiment_key: str,
    sha256: str,
    reference: str,
    *,
    offline: bool = True,
) -> str:
    """Remember that an experiment used a snapshot Comet could not serve (offline, or the
    version was still pending), so `sync` records it in Comet through `get_artifact` once
    the experiment and the version are there."""
    pending_id = f"use-{sha256[:12]}-{experiment_key[:8]}"
    PendingQueue(settings.pending_dir).add(
        {
            "id": pending_id,
            "kind": "consume",
            "experiment_key": experiment_key,
            "offline": offline,
            "artifact": settings.artifact,
            "workspace": settings.workspace,
            "sha256": sha256,
            "reference": reference,
        }
    )
    return pending_id


# ----------------------------------------------------------------------------------------
# archives
# ----------------------------------------------------------------------------------------
def staging_dir(offline_dir: Path) -> Path:
    return offline_dir / ".staging"


def archive_problem(path: Path) -> str | None:
    """Why `path` is not an uploadable offline archive, or None when it is."""
    try:
        if path.stat().st_size == 0:
            return "empty file"
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
            if bad is not None:
                return f"corrupt member {bad}"
            missing = [p for p in ARCHIVE_PARTS if p not in zf.namelist()]
            if missing:
                return f"no {', '.join(missing)}"
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as exc:
        return f"not a zip archive ({exc})"
    return None


def publish_archive(key: str, written_in: Path, offline_dir: Path) -> Path:
    """Move a finished offline archive from staging to `offline_dir` once it checks out.

    Raises OSError with the reason when the SDK could not write it (full disk: the SDK
    then falls back to a temporary directory, or leaves a torn zip): nothing half-written
    is left where `comet sync` would find it.
    """
    staged = written_in / f"{key}.zip"
    stage = staging_dir(offline_dir)
    problem = archive_problem(staged) if staged.exists() else "not written"
    if problem is None and staged.parent.resolve() != stage.resolve():
        problem = f"written to {staged.parent} instead (disk full?)"
    if problem is not None:
        for leftover in {staged, stage / f"{key}.zip"}:
            leftover.unlink(missing_ok=True)
        raise OSError(f"the offline archive of experiment {key} is not usable: {problem}")
    target = offline_dir / staged.name
    os.replace(staged, target)
    return target


def quarantine(path: Path, offline_dir: Path, problem: str) -> Path:
    """Set a broken archive aside (kept for inspection), with one warning line."""
    where = offline_dir / "quarantine"
    where.mkdir(parents=True, exist_ok=True)
    target = where / path.name
    os.replace(path, target)
    LOG.warning("offline archive %s is broken (%s): moved to %s", path.name, problem, where)
    return target


def save_bytes(pending_dir: Path, snapshot: Path, sha: str) -> Path:
    """Keep the snapshot's bytes for a later upload (content-addressed, written once)."""
    return copy_once(snapshot, pending_dir / f"{sha}.json")


def tidy(offline_dir: Path, queue: PendingQueue) -> list[str]:
    """Remove what a killed run leaves behind; call it holding `queue.locked()` (then no
    step is half-way). Returns the paths removed."""
    removed: list[str] = []
    stage = staging_dir(offline_dir)
    if stage.is_dir():
        for p in stage.iterdir():
            removed.append(str(p))
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    wanted = {Path(e["file"]).name for e in queue.entries() if e.get("file")}
    if queue.dir.is_dir():
        for p in queue.dir.iterdir():
            if p.name.endswith(".tmp") or (p.suffix == ".json" and p.name not in wanted):
                removed.append(str(p))
                p.unlink()
    return removed
