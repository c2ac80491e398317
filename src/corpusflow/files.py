"""Files written so that a kill, a full disk or a concurrent reader never sees half of one.

The one home of atomic writes (a temporary file beside the target, fsynced, then renamed
over it: the rename is atomic on one file system) and of JSON-lines appends (the lineage
ledger, the pending Comet queue, rejects.jsonl): a line of its own even after a torn write,
and a reader that skips a torn or foreign line with one warning instead of failing.

Temporary files are named `<target>.<pid>-<random>.tmp`, so the next write removes those a
killed writer left (its pid no longer runs), and get the mode the umask gives new files
(mkstemp alone makes 0600), as any other file the user writes.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, BinaryIO

LOG = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------
# atomic writes
# ----------------------------------------------------------------------------------------
def _umask() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    current = os.umask(0o022)  # no /proc: read it the only other way, and put it back
    os.umask(current)
    return current


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(target: Path) -> None:
    """Temporary files of our naming (`<target>.<pid>-<random>.tmp`) whose writer is no
    longer running: what a killed write left behind."""
    for tmp in target.parent.glob(f"{glob.escape(target.name)}.*-*.tmp"):
        pid = tmp.name[len(target.name) + 1 :].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            tmp.unlink(missing_ok=True)


@contextmanager
def temp_beside(target: Path, temps: list[Path], sync: bool = True) -> Iterator[BinaryIO]:
    """A binary file under a temporary name next to `target` (same file system, so the
    rename is atomic), with the mode the umask gives new files, flushed and fsynced when
    the block ends; recorded in `temps` (the caller renames or removes it)."""
    prefix = f"{target.name}.{os.getpid()}-"
    fd, tmp = tempfile.mkstemp(prefix=prefix, suffix=".tmp", dir=target.parent)
    temps.append(Path(tmp))
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 whatever the umask
    with os.fdopen(fd, "wb") as out:
        yield out
        out.flush()
        if sync:
            os.fsync(out.fileno())


@contextmanager
def replacing(path: str | Path) -> Iterator[BinaryIO]:
    """Write `path` whole or not at all: the block writes a temporary file beside it, which
    replaces `path` only when the block ends without an exception (else it is removed)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path)
    temps: list[Path] = []
    try:
        with temp_beside(path, temps) as out:
            yield out
        os.replace(temps[0], path)
    finally:
        for tmp in temps:
            tmp.unlink(missing_ok=True)


def write_lines(path: str | Path, lines: Iterable[str]) -> int:
    """Write `lines` (UTF-8, each as given) atomically; returns how many were written."""
    count = 0
    with replacing(path) as out:
        for line in lines:
            out.write(line.encode("utf-8"))
            count += 1
    return count


def write_json(path: str | Path, value: Any) -> None:
    """Pretty, sorted JSON, written atomically (diffable in git and by `dvc metrics diff`)."""
    write_lines(path, [json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n"])


def copy_once(source: str | Path, target: str | Path) -> Path:
    """`source`'s bytes at `target` unless `target` exists already (content-addressed
    files are written once); atomically, so a kill never leaves a partial copy."""
    target = Path(target)
    if not target.exists():
        with open(source, "rb") as src, replacing(target) as out:
            shutil.copyfileobj(src, out)
    return target


# ----------------------------------------------------------------------------------------
# JSON-lines files written by appends (the ledger, the pending queue, rejects.jsonl)
# ----------------------------------------------------------------------------------------
_WARNED: set[tuple[str, str]] = set()


def warn_once(where: str, message: str) -> None:
    """One warning line per distinct problem per process (files are read many times)."""
    if (where, message) not in _WARNED:
        _WARNED.add((where, message))
        LOG.warning("%s: %s", where, message)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The JSON objects of a JSON-lines file, in order. A line that is not one JSON object
    (torn by a killed writer, a merge marker, a stray value) is skipped with one warning
    line naming it, so one bad line never stops the runs that read the file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    out = []
    for no, line in enumerate(raw.decode("utf-8", "replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            warn_once(str(path), f"line {no} is not valid JSON (a torn write?): ignored")
            continue
        if not isinstance(value, dict):
            warn_once(str(path), f"line {no} is not a JSON object: ignored")
            continue
        out.append(value)
    return out


def jsonl_line(value: dict[str, Any]) -> str:
    """One JSON-lines record: sorted keys, UTF-8 as is."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def write_line(f: IO[str], line: str) -> None:
    """Append one line to an open a+ file, on a line of its own even after a torn write."""
    f.seek(0, os.SEEK_END)
    if f.tell() > 0:  # a torn last line must not swallow this one
        f.seek(f.tell() - 1)
        if f.read(1) != "\n":
            f.write("\n")
    f.write(line + "\n")
    f.flush()
    os.fsync(f.fileno())


def append_jsonl(path: str | Path, value: dict[str, Any]) -> None:
    """Append one JSON object as a line (unlocked: for single-writer logs like rejects)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+", encoding="utf-8") as f:
        write_line(f, jsonl_line(value))
