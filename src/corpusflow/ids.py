"""Hashing and deterministic keys: the only place ids and content hashes are made.

The same input always gives the same ids, so a re-run upserts nothing new and never
duplicates; a changed chunk gets a new id and the old one becomes stale.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import stat
import uuid
from pathlib import Path
from typing import Any

# Fixed forever: changing it would re-key every collection ever built.
CORPUSFLOW_NAMESPACE = uuid.UUID("6f1c3b1e-6a52-5d8e-9a57-2f0c1b7e4c21")


def sha256_text(text: str) -> str:
    """Hex sha256 of a string's UTF-8 bytes."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no incidental whitespace: equal values, equal bytes."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def hash_value(value: Any) -> str:
    """sha256 of the canonical JSON of a value (params, settings, metadata)."""
    return sha256_text(canonical_json(value))


def chunk_id(source_id: str, chunk_index: int, chunk_text: str) -> str:
    """UUIDv5 of `source_id|chunk_index|sha256(text)` (docs/architecture.md, decision 1)."""
    name = f"{source_id}|{chunk_index}|{sha256_text(chunk_text)}"
    return str(uuid.uuid5(CORPUSFLOW_NAMESPACE, name))


# ----------------------------------------------------------------------------------------
# source ids
# ----------------------------------------------------------------------------------------
PROJECT_MARKER = "params.yaml"
# The directory that file and CSV ids are relative to: that of the params file in use, set
# by `config.load_params` for the whole process (Prefect runs tasks in threads of its own).
_PROJECT_ROOT: list[Path | None] = [None]


def set_project_root(root: Path | None) -> Path | None:
    """Make `root` the project root of this process; returns the previous one."""
    previous, _PROJECT_ROOT[0] = _PROJECT_ROOT[0], root
    return previous


def project_root() -> Path | None:
    """The project root: the directory of the params file in use, else the nearest directory
    from the working directory upward that holds a params.yaml, else None (absolute ids)."""
    root = _PROJECT_ROOT[0]
    if root is not None:
        return root
    return _found_root(os.getcwd())


@functools.lru_cache(maxsize=8)
def _found_root(cwd: str) -> Path | None:
    """The nearest folder from `cwd` upward holding a params.yaml (kept for the run, like
    resolved paths: every document's input asks for it)."""
    here = Path(cwd).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_MARKER).is_file():
            return folder
    return None


def input_key(path: str | Path) -> str:
    """A file's identity however it was typed and wherever the command ran: the resolved
    path (symlinks followed), relative to the project root when inside it, else absolute."""
    return _resolved_key(os.path.abspath(path), project_root())


@functools.lru_cache(maxsize=1 << 16)
def _resolved_key(absolute: str, root: Path | None) -> str:
    """Resolving follows every component with a syscall: a run asks for the same few
    thousand paths many times (each document names its input), so answers are kept for the
    run (`forget_resolved_paths` at its start: a symlink may have moved since the last).
    A file that is not itself a symlink resolves to its folder's resolved path plus its
    name: one `lstat` per file, the folder resolved once per run."""
    folder, name = os.path.split(absolute)
    try:
        plain = name not in ("", ".", "..") and not stat.S_ISLNK(os.lstat(absolute).st_mode)
    except OSError:
        plain = False
    try:
        resolved = _resolved_folder(folder) / name if plain else Path(absolute).resolve()
    except (OSError, RuntimeError):  # a symlink loop: keep the lexical path
        resolved = Path(absolute)
    if root is not None:
        try:
            return resolved.relative_to(root).as_posix()
        except ValueError:
            pass
    return resolved.as_posix()


@functools.lru_cache(maxsize=1 << 12)
def _resolved_folder(folder: str) -> Path:
    return Path(folder).resolve()


def forget_resolved_paths() -> None:
    _resolved_key.cache_clear()
    _resolved_folder.cache_clear()
    _found_root.cache_clear()


def input_of_id(source_id: str) -> str:
    """The input file a `file:`/`csv:` id names (for ids rebuilt from Milvus)."""
    if source_id.startswith("file:"):
        return source_id[5:]
    if source_id.startswith("csv:"):
        return source_id[4:].rpartition(":")[0]
    return ""


def file_source_id(path: str | Path) -> str:
    """`file:<input key>` for a transcript with no video id."""
    return f"file:{input_key(path)}"


def csv_source_id(path: str | Path, key: str) -> str:
    """`csv:<input key>:<row key>`: two CSVs with the same name in two folders never collide."""
    return f"csv:{input_key(path)}:{key}"


def csv_row_key(row_id: str, url: str, title: str, text: str) -> tuple[str, str]:
    """(row key, what it is made from: "id", "url", "title and text" or "text"): the id;
    else a hash of the url; else of the title and text (distinct stories sharing a headline
    stay distinct); else of the text. ("", "") when there is nothing to make it from."""
    if row_id:
        return row_id, "id"
    if url:
        return sha256_text(url)[:16], "url"
    if title:
        return (sha256_text(f"{title}\n{text}")[:16], "title and text") if text else ("", "")
    if text:
        return sha256_text(text)[:16], "text"
    return "", ""


def youtube_source_id(video_id: str) -> str:
    """`youtube:<11-character video id>`: the same video is one source however it came in
    (a live fetch, a yt-dlp download, a transcript named after it)."""
    return f"youtube:{video_id}"


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file's bytes, read in blocks (snapshots can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
