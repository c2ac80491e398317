"""Canonical JSON snapshots of the collection: same state, same bytes.

Records are sorted by id with sorted keys, one record per line, UTF-8; no wall-clock time
inside the data file (it goes into the manifest beside it).

Memory does not grow with the collection: records (and filter-query results, `by_id`) are
sorted externally: runs of `run_size` records are sorted in memory and spilled to
temporary files as canonical JSON lines, then merged with `heapq.merge` while the file is
written. The bytes are exactly those of sorting everything in memory (the merge is stable,
like `sorted`), so the sample corpus' snapshots are unchanged.

Both files are first written in full (and fsynced) to temporary names beside their targets,
then renamed into place, snapshot first. A failed write (disk full, file-size limit, no
permission) therefore leaves the previous snapshot and manifest byte for byte as they were,
removes its temporary files, and raises `SnapshotError` (an OSError) with one line to show.
A target that is not a regular file (a symlink, a device, a directory) is refused, never
replaced. New files get the mode the umask allows, as any other file the user writes.
Temporary files carry the writer's pid (`<target>.<pid>-<random>.tmp`): those a killed
writer left behind are removed by the next write.
"""

from __future__ import annotations

import errno
import hashlib
import heapq
import json
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from corpusflow.files import remove_stale_temps, temp_beside
from corpusflow.ids import canonical_json

SNAPSHOT_FORMAT = 1
SCORE_DECIMALS = 4  # float noise between identical runs must not change the bytes
RUN_RECORDS = 20_000  # records sorted in memory before a run is spilled to a temporary file


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


@dataclass
class by_id:  # noqa: N801 - reads as a marker: queries={"name": by_id(rows)}
    """Query results to be written sorted by id (externally, like the records)."""

    rows: Iterable[dict[str, Any]]


@dataclass
class _SortedRuns:
    """An external sort by id: sorted runs of at most `run_size` records spilled to
    temporary files beside the target; `lines()` merges them back in order."""

    target: Path
    run_size: int
    temps: list[Path]
    count: int = 0
    _buffer: list[dict[str, Any]] = field(default_factory=list)
    _runs: list[Path] = field(default_factory=list)

    def add_all(self, records: Iterable[dict[str, Any]]) -> _SortedRuns:
        for record in records:
            self._buffer.append(record)
            self.count += 1
            if len(self._buffer) >= self.run_size:
                self._spill()
        if self._runs and self._buffer:
            self._spill()  # all on disk before the snapshot file is begun
        return self

    def _spill(self) -> None:
        self._buffer.sort(key=lambda r: r["id"])
        with temp_beside(self.target, self.temps, sync=False) as out:
            for record in self._buffer:
                out.write(f"{json.dumps(record['id'])}\t{canonical_json(record)}\n".encode())
        self._runs.append(self.temps[-1])
        self._buffer.clear()

    def lines(self) -> Iterator[str]:
        """Each record's canonical JSON, in id order (stable for equal ids)."""
        if not self._runs:  # it all fitted in memory
            self._buffer.sort(key=lambda r: r["id"])
            for record in self._buffer:
                yield canonical_json(record)
            return
        with ExitStack() as stack:
            files = [stack.enter_context(run.open("rb")) for run in self._runs]
            for _, line in heapq.merge(*map(_read_run, files), key=lambda pair: pair[0]):
                yield line


def _read_run(file: BinaryIO) -> Iterator[tuple[str, str]]:
    for raw in file:  # canonical JSON escapes newlines: one record per line
        key, _, line = raw.decode("utf-8").rstrip("\n").partition("\t")
        # a JSON string without escapes is the text between its quotes (every UUID)
        plain = key.startswith('"') and "\\" not in key
        yield (key[1:-1] if plain else json.loads(key)), line


def write_snapshot(
    path: str | Path,
    header: dict[str, Any],
    records: Iterable[dict[str, Any]],
    queries: dict[str, list[dict[str, Any]] | by_id],
    manifest: dict[str, Any],
    run_size: int = RUN_RECORDS,
) -> SnapshotResult:
    """Write `{header..., queries, records}` canonically, then its manifest."""
    path = Path(path)
    mpath = manifest_path(path)
    digest = hashlib.sha256()
    temps: list[Path] = []
    for target in (path, mpath):
        _refuse_non_regular(target)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for target in (path, mpath):
            remove_stale_temps(target)
        sort = lambda rows: _SortedRuns(path, run_size, temps).add_all(rows)  # noqa: E731
        ordered = sort(records)
        streams = {k: sort(v.rows) if isinstance(v, by_id) else v for k, v in queries.items()}
        first = len(temps)
        with temp_beside(path, temps) as out:

            def emit(text: str) -> None:
                data = text.encode("utf-8")
                digest.update(data)
                out.write(data)

            head = dict(header, format=SNAPSHOT_FORMAT, count=ordered.count, queries=streams)
            _emit_object(emit, head)
            emit(',"records":[\n')
            for i, line in enumerate(ordered.lines()):
                emit(("," if i else "") + line + "\n")
            emit("]}\n")
        snapshot_temp = temps[first]
        sha = digest.hexdigest()
        meta = dict(manifest, snapshot=path.name, sha256=sha, count=ordered.count)
        with temp_beside(mpath, temps) as out:
            out.write(_manifest_bytes(meta))
        os.replace(snapshot_temp, path)  # nothing is replaced until both files are complete
        os.replace(temps[-1], mpath)
    except OSError as exc:
        raise SnapshotError(_failure(path, exc)) from exc
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
    return SnapshotResult(path=str(path), records=ordered.count, sha256=sha, manifest=str(mpath))


def _emit_object(emit: Callable[[str], None], value: dict[str, Any]) -> None:
    """canonical_json(value) without its closing brace, with sorted runs streamed as arrays
    (json.dumps with sorted keys and no spaces composes exactly like this)."""
    emit("{")
    for i, key in enumerate(sorted(value)):
        emit(("," if i else "") + json.dumps(key, ensure_ascii=False) + ":")
        item = value[key]
        if isinstance(item, _SortedRuns):
            emit("[")
            for j, line in enumerate(item.lines()):
                emit(("," if j else "") + line)
            emit("]")
        elif isinstance(item, dict) and any(isinstance(v, _SortedRuns) for v in item.values()):
            _emit_object(emit, item)
            emit("}")
        else:
            emit(canonical_json(item))


def round_score(score: float) -> float:
    return round(float(score), SCORE_DECIMALS)


# ----------------------------------------------------------------------------------------
# reading snapshots: the one place that knows their layout
# ----------------------------------------------------------------------------------------
RECORDS_OPEN = '"records":['  # how the canonical writer's first line ends


def parse_snapshot(data: bytes | str) -> dict[str, Any]:
    """A snapshot's bytes (e.g. read back from DVC at a git revision), parsed."""
    return json.loads(data)


def read_snapshot(path: str | Path) -> dict[str, Any]:
    """The whole snapshot, parsed (records included: for small ones and tests)."""
    return parse_snapshot(Path(path).read_text(encoding="utf-8"))


def read_head(path: str | Path) -> dict[str, Any]:
    """The snapshot without its records (header fields and query results), reading only
    its first line when it has the canonical layout."""
    with open(path, encoding="utf-8") as f:
        head = f.readline().rstrip()
        f.seek(0)
        whole = json.loads(head + "]}") if head.endswith(RECORDS_OPEN) else json.load(f)
    whole.pop("records", None)
    return whole


def iter_records(path: str | Path) -> Iterator[dict[str, Any]]:
    """Records of a snapshot file, streamed line by line (the canonical writer puts one
    record per line); any other JSON layout is read whole."""
    with open(path, encoding="utf-8") as f:
        head = f.readline()
        if not head.rstrip().endswith(RECORDS_OPEN):
            f.seek(0)
            yield from json.load(f).get("records", [])
            return
        for line in f:
            line = line.strip()
            if not line or line == "]}":
                continue
            yield json.loads(line[1:] if line.startswith(",") else line)


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest beside the snapshot at `path`; {} when there is none or it is unreadable."""
    mpath = manifest_path(path)
    if not mpath.exists():
        return {}
    try:
        return json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _refuse_non_regular(target: Path) -> None:
    """A rename would replace a symlink, a device node or a FIFO: refuse instead."""
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISREG(mode):
        return
    if stat.S_ISLNK(mode):
        kind = "a symlink"
    elif stat.S_ISDIR(mode):
        kind = "a directory"
    else:
        kind = "a device or other special file"
    raise SnapshotError(
        f"cannot write snapshot: {target} is {kind}, not a regular file, and is never "
        "replaced; remove it or set snapshot.out to another path"
    )


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
