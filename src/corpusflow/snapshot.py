"""Canonical JSON snapshots of the collection: same state, same bytes.

Records are sorted by id with sorted keys, one record per line, UTF-8; no wall-clock time
inside the data file (it goes into the manifest beside it). Written to a temporary file
and renamed, so a failed write never damages the previous snapshot.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def write_snapshot(
    path: str | Path,
    header: dict[str, Any],
    records: Iterable[dict[str, Any]],
    queries: dict[str, list[dict[str, Any]]],
    manifest: dict[str, Any],
) -> SnapshotResult:
    """Write `{header..., queries, records}` canonically, then its manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ordered = sorted(records, key=lambda r: r["id"])
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as out:

            def emit(text: str) -> None:
                data = text.encode("utf-8")
                digest.update(data)
                out.write(data)

            head = dict(header, format=SNAPSHOT_FORMAT, count=len(ordered), queries=queries)
            emit(canonical_json(head)[:-1] + ',"records":[\n')
            for i, record in enumerate(ordered):
                emit(("," if i else "") + canonical_json(record) + "\n")
            emit("]}\n")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    sha = digest.hexdigest()
    mpath = manifest_path(path)
    _write_json_atomic(mpath, dict(manifest, snapshot=path.name, sha256=sha, count=len(ordered)))
    return SnapshotResult(path=str(path), records=len(ordered), sha256=sha, manifest=str(mpath))


def round_score(score: float) -> float:
    return round(float(score), SCORE_DECIMALS)


def read_snapshot(path: str | Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _write_json_atomic(path: Path, value: dict[str, Any]) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(value, out, sort_keys=True, indent=2, ensure_ascii=False)
        out.write("\n")
    os.replace(tmp, path)
