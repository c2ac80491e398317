"""Transcript files (WebVTT, SRT, JSON, plain text) into Documents.

A dlt-style source: a plain generator that never raises for bad input. Every file found
ends as exactly one Document, Reject (with a reason the user can act on) or Skipped (not a
transcript, another format of one already read, or an exact duplicate). Timed formats keep
their cues as segments so chunks can be mapped back to seconds (see `formats`).

Decisions:
- Text must be UTF-8 (with or without BOM) or UTF-16/32 with a BOM. Anything else
  (Latin-1, cp1252, GB2312, ...) is rejected with "not valid UTF-8 ...; re-save the file as
  UTF-8" and a guess of what it is, rather than decoded by a guess: a wrong guess would
  silently index mojibake under a stable hash.
- A NUL byte in a decoded transcript means a binary file or UTF-16 without a BOM: rejected.
- Inside a directory, only .vtt, .srt, .json and .txt are read; every other file (README,
  notes, thumbnails, yt-dlp .description, Whisper .tsv, CSVs) is Skipped as not a transcript,
  never rejected. A file the user names explicitly is read, or rejected, whatever its type.
- One transcript per name in a folder: Whisper writes audio.json/.vtt/.srt/.txt/.tsv side by
  side. The first of FORMAT_PREFERENCE that parses is read; the others are Skipped.
- yt-dlp names ("Title [VIDEO_ID].en.vtt") and older youtube-dl names ("Title-VIDEO_ID.ru.vtt")
  give the video id; a `.info.json` (yt-dlp) or `.meta.json` (ours) sidecar overrides them.

Paths: see `corpusflow.sources.files` (named paths are read where they point; walked
directories are a boundary; only regular files with UTF-8 names are opened). A `file:` id
is `ids.input_key`: the resolved path, relative to the project root when inside it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from corpusflow.ids import file_source_id, youtube_source_id
from corpusflow.models import Document, Reject, Skipped, SourceItem
from corpusflow.sources.files import (
    BadInput,
    Seen,
    condense,
    decode,
    escapes,
    input_files,
)
from corpusflow.sources.formats import parse_json, parse_srt, parse_vtt
from corpusflow.sources.reader import MIN_FILES, Pending, Reader, WorkerGone

SOURCE_TYPE = "transcript"
# (file, source type) -> the items to yield instead of reading it (e.g. [Unchanged]), or None
SkipFn = Callable[[Path, str], "list[SourceItem] | None"]
EXTENSIONS = (".vtt", ".srt", ".json", ".txt")
FORMAT_PREFERENCE = (".json", ".vtt", ".srt", ".txt")  # richest timing first
SIDECAR_SUFFIXES = (".info.json", ".meta.json")
NOT_TRANSCRIPT_STEMS = frozenset({"readme", "license", "licence", "changelog", "notes"})
VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")
WATCH_URL = "https://www.youtube.com/watch?v={}"
AHEAD = 4  # files parsed ahead per worker, at most: keeps them busy, bounds memory

# "Title [dQw4w9WgXcQ]" as yt-dlp names its files (after extension and language are removed).
_YTDLP_NAME = re.compile(r"^(?P<title>.*?)\s*\[(?P<id>[A-Za-z0-9_-]{11})\]$")
# "Title-dQw4w9WgXcQ" as youtube-dl named them ("%(title)s-%(id)s"). An id must hold a digit
# or a capital so that an ordinary "part-one-intro" name is not taken for one.
_YOUTUBE_DL_NAME = re.compile(r"^(?P<title>.+)-(?P<id>(?=[^-]*[A-Z0-9])[A-Za-z0-9_-]{11})$")
# ".en", ".en-US", ".en-orig", ".zh-Hans": the language part of "Title [id].en.vtt".
_LANG_SUFFIX = re.compile(r"\.[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")


def video_name(base: str) -> tuple[str, str] | None:
    """(title, video id) from a yt-dlp or youtube-dl file name without extension/language."""
    named = _YTDLP_NAME.match(base) or _YOUTUBE_DL_NAME.match(base)
    return (named["title"].strip(), named["id"]) if named else None


# ----------------------------------------------------------------------------------------
# the source
# ----------------------------------------------------------------------------------------
def iter_transcripts(
    paths: Iterable[str | Path], skip: SkipFn | None = None, workers: int = 0
) -> Iterator[SourceItem]:
    """Each path is a file or a directory (searched recursively, sorted order for determinism).

    `*.info.json` / `*.meta.json` sidecars are metadata for the transcript beside them, not
    inputs. Two files giving the same source_id (the same video twice, e.g. in two
    languages) yield one Document: an identical one is Skipped, a different one Rejected,
    since one source_id can only hold one text downstream. `skip(path, type)` may give the
    items to yield instead of reading a file (e.g. Unchanged); a format group is always read.
    `workers` > 0: with at least reader.MIN_FILES found, files are parsed ahead in that many
    worker processes (reader.py); the items, their order and every `skip` call are the same.
    """
    seen = Seen()
    found = list(input_files(paths, lambda p: not _is_sidecar(p), SOURCE_TYPE, _not_a_transcript))
    steps = list(_steps(found))
    reader = Reader(workers) if workers > 0 and len(found) >= MIN_FILES else None
    ahead: dict[int, Pending] = {}  # step index -> its file, being parsed by a worker
    streak = 0  # files read in a row: how far ahead to parse
    try:
        for i, (kind, value, boundary) in enumerate(steps):
            if kind == "items":
                yield from value
            elif kind == "group":
                yield from _one_of(value, seen, boundary)
            elif skip is not None and (instead := skip(value, SOURCE_TYPE)) is not None:
                streak = 0  # unchanged files come in runs too: parse nothing ahead
                ahead.pop(i, None)  # parsed for nothing, never yielded
                yield from instead
            else:
                streak += 1
                if reader is not None and streak > 1:  # an edited file alone starts none
                    _parse_ahead(reader, steps, i, min(2**streak, AHEAD * workers), ahead)
                yield _one(value, seen, boundary, _answer(ahead.pop(i, None)))
    finally:
        if reader is not None:
            reader.close()


def _steps(found: list) -> Iterator[tuple[str, Any, Path | None]]:
    """What to do for each item found, in order: ("items", [...], None) to yield them,
    ("group", members, boundary) to read one of a format group, ("file", path, boundary)
    to read a file unless `skip` says otherwise."""
    groups = _format_groups(found)
    done: set[Path] = set()
    for item in found:
        if isinstance(item, Reject | Skipped):
            yield "items", [item], None
            continue
        path, boundary = item
        if path in done:
            continue
        if boundary is None and _is_sidecar(path):
            why = "metadata sidecar, not a transcript (it is read with the transcript beside it)"
            yield "items", [_not_read(path, why)], None
        elif boundary is not None and path in groups:
            done.update(groups[path])
            yield "group", groups[path], boundary
        else:
            yield "file", path, boundary


def _parse_ahead(
    reader: Reader, steps: list, i: int, n: int, ahead: dict[int, Pending]
) -> None:
    """Hand the files of the next `n` steps after `i` to the workers (those not handed yet).
    A file `skip` then answers for is dropped: parsed for nothing, never yielded."""
    for j in range(i + 1, min(i + 1 + n, len(steps))):
        kind, path, boundary = steps[j]
        if kind == "file" and j not in ahead:
            try:
                ahead[j] = reader.submit(path, boundary)
            except WorkerGone:  # the files it would have parsed are read here
                return


def _answer(pending: Pending | None) -> Document | str | None:
    """A worker's `read_outcome` for the file, or None: read it here (none was handed out,
    or the worker died: killed, out of memory)."""
    if pending is None:
        return None
    try:
        return pending.result()
    except WorkerGone:
        return None


def _not_read(path: Path, why: str) -> Skipped:
    return Skipped(str(path), SOURCE_TYPE, why, duplicate=False)


def _is_sidecar(path: Path) -> bool:
    return path.name.lower().endswith(SIDECAR_SUFFIXES)


def _not_a_transcript(path: Path) -> str | None:
    """Why a file met in a walked directory is not read as a transcript, or None."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "a CSV, not a transcript: give it as an articles source to ingest it"
    if suffix not in EXTENSIONS:
        return f"not a transcript type ({suffix or 'no extension'}); read: {', '.join(EXTENSIONS)}"
    if path.stem.lower() in NOT_TRANSCRIPT_STEMS:
        return f"{path.name} reads as documentation, not a transcript"
    return None


def _format_groups(found: list) -> dict[Path, list[Path]]:
    """Walked transcripts sharing a folder and a name but not a format (Whisper's
    audio.json/.vtt/.srt/.txt), each first member mapped to the group in preference order."""
    by_name: dict[tuple[Path, str], list[Path]] = {}
    for item in found:
        if isinstance(item, tuple) and item[1] is not None:
            path = item[0]
            if path.suffix.lower() in EXTENSIONS:
                by_name.setdefault((path.parent, path.stem), []).append(path)
    groups: dict[Path, list[Path]] = {}
    for members in by_name.values():
        if len(members) > 1:
            first = members[0]  # walk order: where the group is met
            members.sort(key=lambda p: FORMAT_PREFERENCE.index(p.suffix.lower()))
            groups[first] = members
    return groups


def _one_of(
    members: list[Path], seen: Seen, boundary: Path
) -> Iterator[Document | Reject | Skipped]:
    """The first format of one transcript that reads; the failed ones before it are
    rejected (they are broken), the ones after it skipped (the same words again)."""
    chosen: Path | None = None
    for path in members:
        if chosen is not None:
            yield _not_read(
                path,
                f"the same transcript as {chosen.name} in another format (one per name is "
                f"read, preferring {', '.join(FORMAT_PREFERENCE)})",
            )
            continue
        item = _one(path, seen, boundary)
        if not isinstance(item, Reject):
            chosen = path
        yield item


def read_outcome(path: Path, boundary: Path | None = None) -> Document | str:
    """The file's Document, or why it is rejected: what a parse worker answers (reader.py)."""
    try:
        return _read_transcript(path, boundary)
    except BadInput as bad:
        return str(bad)
    except Exception as exc:  # never raise for bad input, whatever a library does with it
        return condense(f"unexpected error: {type(exc).__name__}: {exc}")


def _one(
    path: Path, seen: Seen, boundary: Path | None = None, outcome: Document | str | None = None
) -> Document | Reject | Skipped:
    """`outcome`: the file's `read_outcome` if a worker has read it already."""
    origin = str(path)
    doc = read_outcome(path, boundary) if outcome is None else outcome
    if isinstance(doc, str):
        return Reject(origin, SOURCE_TYPE, doc, source_id=_source_id_of(path, boundary))
    dup = seen.check(doc, origin)
    if dup is None:
        return doc
    kind, first = dup
    if kind == "same":
        return Skipped(origin, SOURCE_TYPE, f"duplicate of {first}", source_id=doc.source_id)
    return Reject(
        origin,
        SOURCE_TYPE,
        f"same source id {doc.source_id} as {first} but different {kind} "
        "(the same video in another language or format?); keep one of the files",
        source_id=doc.source_id,
    )


def _source_id_of(path: Path, boundary: Path | None = None) -> str:
    """The source id a rejected file would have had, so a full cleanup keeps its old version."""
    try:
        return _metadata(path, boundary)["source_id"]
    except Exception:  # a broken sidecar: fall back to what the name says
        named = video_name(_LANG_SUFFIX.sub("", path.stem) or path.stem)
        return youtube_source_id(named[1]) if named else file_source_id(path)


def _read_transcript(path: Path, boundary: Path | None = None) -> Document:
    outside = escapes(path, boundary)
    if outside:
        raise BadInput(outside)
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        shown_suffix = suffix or "(no extension)"
        raise BadInput(f"unknown format {shown_suffix} (expected .vtt, .srt, .json, .txt)")
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise BadInput("file vanished or is a broken link: cannot read it") from None
    except OSError as exc:
        raise BadInput(f"cannot read file: {exc.strerror or exc}") from None
    text = decode(data)
    if not text.strip():
        raise BadInput("empty transcript")
    meta = _metadata(path, boundary)
    if suffix == ".vtt":
        segments = parse_vtt(text)
    elif suffix == ".srt":
        segments = parse_srt(text)
    elif suffix == ".json":
        segments = parse_json(text)
    else:
        segments = None
    if segments is None or isinstance(segments, str):  # plain text (a .txt or Whisper w/o segments)
        body = text if segments is None else segments
        body = body.replace("\r\n", "\n").replace("\r", "\n").strip()
        if not body:
            raise BadInput("empty transcript")
        return Document(text=body, **meta)
    doc = Document.from_segments(segments, **meta)
    if not doc.text:
        raise BadInput("empty transcript (no cue has any text)")
    return doc


# ----------------------------------------------------------------------------------------
# metadata: sidecars and yt-dlp names
# ----------------------------------------------------------------------------------------
def _metadata(path: Path, boundary: Path | None = None) -> dict[str, Any]:
    """Document fields other than text: from a sidecar, the yt-dlp file name, or the stem."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    base = _LANG_SUFFIX.sub("", stem) or stem
    named = video_name(base)
    video_id = named[1] if named else ""
    title = named[0] if named else base
    author = url = published = ""

    sidecar = _find_sidecar(path.parent, base, stem)
    if sidecar is not None:
        outside = escapes(sidecar, boundary)
        if outside:
            raise BadInput(f"metadata sidecar {sidecar.name}: {outside}")
        info = _load_sidecar(sidecar)
        if sidecar.name.endswith(".info.json"):  # yt-dlp
            sid = _str(info.get("id"))
            extractor = _str(info.get("extractor") or info.get("extractor_key")).lower()
            if VIDEO_ID_RE.match(sid) and (not extractor or "youtube" in extractor):
                video_id = sid
            title = _str(info.get("title")) or title
            author = _str(info.get("uploader")) or _str(info.get("channel"))
            url = _str(info.get("webpage_url")) or _str(info.get("original_url"))
            published = _ymd(_str(info.get("upload_date")))
        else:  # our own .meta.json
            sid = _str(info.get("video_id"))
            if VIDEO_ID_RE.match(sid):
                video_id = sid
            title = _str(info.get("title")) or title
            author = _str(info.get("author"))
            url = _str(info.get("url"))
            published = _str(info.get("published_at")) or _str(info.get("published"))

    if video_id:
        source_id = youtube_source_id(video_id)
        url = url or WATCH_URL.format(video_id)
    else:
        source_id = file_source_id(path)
    return {
        "source_id": source_id,
        "source_type": SOURCE_TYPE,
        "title": title,
        "author": author,
        "url": url,
        "published": published,
        "origin": str(path),
    }


def _find_sidecar(folder: Path, base: str, stem: str) -> Path | None:
    names = [f"{base}.info.json", f"{stem}.info.json", f"{stem}.meta.json", f"{base}.meta.json"]
    for name in dict.fromkeys(names):  # ordered, without repeats
        candidate = folder / name
        if candidate.is_file():
            return candidate
    return None


def _load_sidecar(path: Path) -> dict[str, Any]:
    try:
        info = json.loads(decode(path.read_bytes()))
    except BadInput as bad:
        raise BadInput(f"metadata sidecar {path.name}: {bad}") from None
    except OSError as exc:
        raise BadInput(f"cannot read metadata sidecar {path.name}: {exc.strerror or exc}") from None
    except json.JSONDecodeError as exc:
        raise BadInput(
            f"metadata sidecar {path.name} is not valid JSON (line {exc.lineno}: {exc.msg}); "
            "fix or delete it"
        ) from None
    if not isinstance(info, dict):
        raise BadInput(f"metadata sidecar {path.name} is not a JSON object; fix or delete it")
    return info


def _str(value: Any) -> str:
    if value is None or isinstance(value, dict | list):
        return ""
    return " ".join(str(value).split())


def _ymd(value: str) -> str:
    """yt-dlp's YYYYMMDD as YYYY-MM-DD (other shapes are kept as they are)."""
    return f"{value[:4]}-{value[4:6]}-{value[6:]}" if re.fullmatch(r"\d{8}", value) else value
