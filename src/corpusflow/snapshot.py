"""Canonical JSON snapshots of the collection: same state, same bytes.

Records are sorted by id with sorted keys, one record per line, UTF-8; no wall-clock time
inside the data file (it goes into the manifest beside it).

Both files are first written in full (and fsynced) to temporary names beside their targets,
then renamed into place, snapshot first. A failed write (disk full, file-size limit, no
permission) therefore leaves the previous snapshot and manifest byte for byte as they were,
removes its temporary files, and raises `SnapshotError` (an OSError) with one line to show.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from corpusflow.ids import canonical_json

SNAPSHOT_FORMAT = 1
SCORE_DECIMALS = 4  # float noise between identical runs must not change the bytes


@dataclass(frozen=True)
class SnapshotResult:
    path: str
    records: int
    sha256: str
    manifest: str


def manifest_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(path.stem + ".manifest.json")


class SnapshotError(OSError):
    """Writing a snapshot failed; the previous snapshot and manifest are unchanged."""


def write_snapshot(
    path: str | Path,
    header: dict[str, Any],
    records: Iterable[dict[str, Any]],
    queries: dict[str, list[dict[str, Any]]],
    manifest: dict[str, Any],
) -> SnapshotResult:
    """Write `{header..., queries, records}` canonically, then its manifest."""
    path = Path(path)
    mpath = manifest_path(path)
    ordered = sorted(records, key=lambda r: r["id"])
    digest = hashlib.sha256()
    temps: list[Path] = []
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _temp_beside(path, temps) as out:

            def emit(text: str) -> None:
                data = text.encode("utf-8")
                digest.update(data)
                out.write(data)

            head = dict(header, format=SNAPSHOT_FORMAT, count=len(ordered), queries=queries)
            emit(canonical_json(head)[:-1] + ',"records":[\n')
            for i, record in enumerate(ordered):
                emit(("," if i else "") + canonical_json(record) + "\n")
            emit("]}\n")
        sha = digest.hexdigest()
        meta = dict(manifest, snapshot=path.name, sha256=sha, count=len(ordered))
        with _temp_beside(mpath, temps) as out:
            out.write(_manifest_bytes(meta))
        os.replace(temps[0], path)  # nothing is replaced until both files are complete
        os.replace(temps[1], mpath)
    except OSError as exc:
        raise SnapshotError(_failure(path, exc)) from exc
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return SnapshotResult(path=str(path), records=len(ordered), sha256=sha, manifest=str(mpath))


def round_score(score: float) -> float:
    return round(float(score), SCORE_DECIMALS)


def read_snapshot(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


@contextmanager
def _temp_beside(target: Path, temps: list[Path]) -> Iterator[BinaryIO]:
    """A binary file under a temporary name next to `target` (same file system, so the
    rename is atomic), flushed and fsynced when the block ends; recorded in `temps`."""
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    temps.append(Path(tmp))
    with os.fdopen(fd, "wb") as out:
        yield out
        out.flush()
        os.fsync(out.fileno())


def _manifest_bytes(value: dict[str, Any]) -> bytes:
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def _failure(path: Path, exc: OSError) -> str:
    why = exc.strerror or str(exc)
    code = errno.errorcode.get(exc.errno or 0)
    hint = {
        errno.ENOSPC: "; free some disk space",
        errno.EFBIG: "; the file-size limit (ulimit -f) or file system is too small",
        errno.EDQUOT: "; the disk quota is used up",
        errno.EACCES: "; check the directory's permissions",
    }.get(exc.errno or 0, "")
    return (
        f"cannot write snapshot {path}: {why}{f' ({code})' if code else ''}{hint}; "
        "the previous snapshot is unchanged"
    )
