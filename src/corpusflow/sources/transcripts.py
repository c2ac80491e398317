"""Transcript files (WebVTT, SRT, JSON, plain text) into Documents.

A dlt-style source: a plain generator that never raises for bad input. Every transcript
file ends as exactly one Document, Reject (with a reason the user can act on) or Skipped
(an exact duplicate of one already yielded). Timed formats keep their cues as segments so
chunks can be mapped back to seconds.

Decisions:
- Text must be UTF-8 (with or without BOM) or UTF-16/32 with a BOM. Anything else
  (Latin-1, cp1252, ...) is rejected with "not valid UTF-8 ...; re-save the file as UTF-8"
  rather than guessed: a wrong guess would silently index mojibake under a stable hash.
- A NUL byte in a decoded transcript means a binary file or UTF-16 without a BOM: rejected.
- Consecutive cues that repeat the previous cue's lines (YouTube's rolling auto-captions and
  their 10 ms transition cues) keep only the new lines, so every spoken line reads once.
- Overlapping cues are kept (sorted by start); a cue that ends before it starts is rejected.

Paths: what may be read (the same rule for CSV directories in `articles`):
- A path the user names (on the command line or in params.yaml) is read where it points,
  `..` components and symlinks included: naming it is the user's decision. Its `file:` id is
  `ids.input_key`: the resolved path, relative to the project root when inside it.
- A directory is the boundary for everything found by walking it. A file, directory or
  metadata sidecar inside it that is a symlink resolving outside it is never read: it is
  rejected with "symlink leads outside DIR (to TARGET) ...", so a link planted in a data
  directory cannot pull in (and index) files from elsewhere on the machine.
- Symlinked directories are not descended into. One whose target is inside the directory is
  skipped (its files are read at their real path); one pointing outside is rejected, as above.
- Hidden names (starting with ".") are ignored, files and directories alike.
"""

from __future__ import annotations

import codecs
import html
import json
import math
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import srt
import webvtt
from webvtt.errors import MalformedCaptionError, MalformedFileError

from corpusflow.ids import file_source_id, sha256_text
from corpusflow.models import Document, Reject, Segment, Skipped, SourceItem

SOURCE_TYPE = "transcript"
# (file, source type) -> the items to yield instead of reading it (e.g. [Unchanged]), or None
SkipFn = Callable[[Path, str], "list[SourceItem] | None"]
EXTENSIONS = (".vtt", ".srt", ".json", ".txt")
SIDECAR_SUFFIXES = (".info.json", ".meta.json")
VIDEO_ID_RE = re.compile(r"^[A-Za-z0-9_-]{11}$")
WATCH_URL = "https://www.youtube.com/watch?v={}"

# "Title [dQw4w9WgXcQ]" as yt-dlp names its files (after extension and language are removed).
_YTDLP_NAME = re.compile(r"^(?P<title>.*?)\s*\[(?P<id>[A-Za-z0-9_-]{11})\]$")
# ".en", ".en-US", ".en-orig", ".zh-Hans": the language part of "Title [id].en.vtt".
_LANG_SUFFIX = re.compile(r"\.[A-Za-z]{2,3}(?:-[A-Za-z0-9]{2,8})*$")
_TAG = re.compile(r"<[^>]*>")  # <i>, </b>, <font color="red">, <00:00:01.320>, <c>
_ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")  # {\an8} and friends in SRT files
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: its BOM starts the same way
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)


class BadInput(Exception):
    """Raised inside a parser to turn the current input into a Reject with this reason."""


# ----------------------------------------------------------------------------------------
# helpers shared by the sources
# ----------------------------------------------------------------------------------------
def clean_text(text: str) -> str:
    """Cue text as one line: tags and ASS overrides dropped, entities decoded, spaces folded."""
    text = _ASS_OVERRIDE.sub("", _TAG.sub("", text))
    return " ".join(html.unescape(text).split())


def condense(message: object, limit: int = 300) -> str:
    """One line, bounded length: library messages go into reject files and log lines."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def walk(root: Path, keep) -> list[Path]:
    """Files under `root` (recursive, hidden names skipped) that `keep` accepts, plus every
    symlinked directory (never descended into: see `linked_directory`), sorted."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, d) for d in dirnames if Path(dirpath, d).is_symlink())
        for name in filenames:
            path = Path(dirpath, name)
            if not is_hidden(path) and keep(path):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def escapes(path: Path, root: Path | None) -> str | None:
    """Why `path`, found by walking `root`, must not be read (it resolves outside `root`),
    or None. Explicitly named paths (`root` None) are read wherever they point."""
    if root is None:
        return None
    try:
        base = root.resolve()
        target = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        return condense(f"cannot resolve the path ({exc}); a symlink loop?")
    if target == base or base in target.parents:
        return None
    return (
        f"symlink leads outside {root} (to {target}); only files inside a directory given "
        "as a source are read from it: copy the file in, or name it explicitly"
    )


def linked_directory(path: Path, root: Path, source_type: str) -> Reject | Skipped:
    """A symlinked directory met while walking `root`: never followed, always accounted."""
    outside = escapes(path, root)
    if outside:
        return Reject(str(path), source_type, outside)
    return Skipped(
        str(path),
        source_type,
        f"symlinked directory, not followed: its target inside {root} is read at its own path",
    )


def input_files(
    paths: Iterable[str | Path], keep: Callable[[Path], bool], source_type: str
) -> Iterator[tuple[Path, Path | None] | Reject | Skipped]:
    """Each named path, or the files `keep` accepts under a named directory (sorted), as
    (path, the walked directory or None); missing paths and symlinked directories met while
    walking come out as Rejects/Skipped, so every input is accounted for."""
    for given in paths:
        root = Path(given)
        if root.is_dir():
            for path in walk(root, keep):
                if path.is_symlink() and path.is_dir():
                    yield linked_directory(path, root, source_type)
                else:
                    yield path, root
        elif root.exists() or root.is_symlink():
            yield root, None
        else:
            yield Reject(str(given), source_type, "no such file or directory")


class Seen:
    """First occurrence of each source_id, to tell exact duplicates from conflicting ones.

    Keeps 16-byte digests, not texts, so a CSV far larger than memory can be checked.
    """

    def __init__(self) -> None:
        self._first: dict[str, tuple[bytes, bytes, object]] = {}

    def check(self, doc: Document, where: object) -> tuple[str, object] | None:
        """None for a new source_id; else ("same"|"text"|"metadata", where it was first seen)."""
        content, text = _digest(doc.content_hash), _digest(sha256_text(doc.text))
        first = self._first.get(doc.source_id)
        if first is None:
            self._first[doc.source_id] = (content, text, where)
            return None
        if first[0] == content:
            return "same", first[2]
        return ("text" if first[1] != text else "metadata"), first[2]


def _digest(hex_hash: str) -> bytes:
    return bytes.fromhex(hex_hash[:32])


# ----------------------------------------------------------------------------------------
# the source
# ----------------------------------------------------------------------------------------
def iter_transcripts(
    paths: Iterable[str | Path], skip: SkipFn | None = None
) -> Iterator[SourceItem]:
    """Each path is a file or a directory (searched recursively, sorted order for determinism).

    Files are chosen by extension; `*.info.json` / `*.meta.json` sidecars are metadata for
    the transcript beside them, not inputs. Two files giving the same source_id (the same
    video twice, e.g. in two languages) yield one Document: an identical one is Skipped, a
    different one Rejected, since one source_id can only hold one text downstream.
    `skip(path, type)` may give the items to yield instead of reading a file (Unchanged).
    """
    seen = Seen()
    for item in input_files(paths, lambda p: not _is_sidecar(p), SOURCE_TYPE):
        if isinstance(item, Reject | Skipped):
            yield item
            continue
        path, boundary = item
        if boundary is None and _is_sidecar(path):
            yield Skipped(
                str(path),
                SOURCE_TYPE,
                "metadata sidecar, not a transcript (it is read with the transcript beside it)",
            )
        elif skip is not None and (instead := skip(path, SOURCE_TYPE)) is not None:
            yield from instead
        else:
            yield _one(path, seen, boundary)


def _is_sidecar(path: Path) -> bool:
    return path.name.lower().endswith(SIDECAR_SUFFIXES)


def _one(path: Path, seen: Seen, boundary: Path | None = None) -> Document | Reject | Skipped:
    origin = str(path)
    try:
        doc = _read_transcript(path, boundary)
    except BadInput as bad:
        return Reject(origin, SOURCE_TYPE, str(bad), source_id=_source_id_of(path, boundary))
    except Exception as exc:  # never raise for bad input, whatever a library does with it
        reason = condense(f"unexpected error: {type(exc).__name__}: {exc}")
        return Reject(origin, SOURCE_TYPE, reason, source_id=_source_id_of(path, boundary))
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
        named = _YTDLP_NAME.match(_LANG_SUFFIX.sub("", path.stem) or path.stem)
        return f"youtube:{named['id']}" if named else file_source_id(path)


def _read_transcript(path: Path, boundary: Path | None = None) -> Document:
    outside = escapes(path, boundary)
    if outside:
        raise BadInput(outside)
    suffix = path.suffix.lower()
    if suffix not in EXTENSIONS:
        shown = suffix or "(no extension)"
        raise BadInput(f"unknown format {shown} (expected .vtt, .srt, .json, .txt)")
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
        segments = _parse_vtt(text)
    elif suffix == ".srt":
        segments = _parse_srt(text)
    elif suffix == ".json":
        segments = _parse_json(text)
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


def decode(data: bytes) -> str:
    """Bytes to text: UTF-8 (BOM optional) or UTF-16/32 by BOM; anything else is refused."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                raise BadInput(
                    f"not valid {encoding.upper()} despite its BOM ({exc.reason})"
                ) from None
            break
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if b"\x00" in data:
                raise BadInput(
                    "binary file (contains NUL bytes), or UTF-16 without a BOM; expected UTF-8 text"
                ) from None
            bad = data[exc.start : exc.start + 1].hex()
            raise BadInput(
                f"not valid UTF-8 (byte 0x{bad} at offset {exc.start}; Latin-1/cp1252?); "
                "re-save the file as UTF-8"
            ) from None
    if "\x00" in text:
        raise BadInput(
            "binary file (contains NUL bytes), or UTF-16 without a BOM; expected UTF-8 text"
        )
    return text


# ----------------------------------------------------------------------------------------
# metadata: sidecars and yt-dlp names
# ----------------------------------------------------------------------------------------
def _metadata(path: Path, boundary: Path | None = None) -> dict[str, Any]:
    """Document fields other than text: from a sidecar, the yt-dlp file name, or the stem."""
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    base = _LANG_SUFFIX.sub("", stem) or stem
    named = _YTDLP_NAME.match(base)
    video_id = named["id"] if named else ""
    title = named["title"] if named else base
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
        source_id = f"youtube:{video_id}"
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


# ----------------------------------------------------------------------------------------
# formats
# ----------------------------------------------------------------------------------------
def _seconds(ms: int | float) -> float:
    return round(ms / 1000, 3)


def _parse_vtt(text: str) -> list[Segment]:
    """WebVTT through webvtt-py; rolling (YouTube) repeats removed; sorted by start."""
    try:
        captions = webvtt.from_string(text).captions
    except MalformedFileError:
        raise BadInput("not a WebVTT file (it must start with a WEBVTT line)") from None
    except MalformedCaptionError as exc:
        raise BadInput(condense(f"malformed WebVTT cue: {exc}")) from None
    timing_lines = sum(1 for line in text.splitlines() if "-->" in line)
    if timing_lines > len(captions):
        detail = ""
        try:
            webvtt.from_string(text, strict=True)
        except (MalformedCaptionError, MalformedFileError) as exc:
            detail = f": {exc}"
        raise BadInput(
            condense(f"{timing_lines - len(captions)} WebVTT cue(s) could not be parsed{detail}")
        )
    cues = []
    for number, cap in enumerate(captions, 1):
        start, end = cap.start_time.in_milliseconds(), cap.end_time.in_milliseconds()
        if end < start:
            raise BadInput(f"WebVTT cue {number} has end before start ({cap.start} --> {cap.end})")
        lines = [clean_text(line) for line in cap.text.split("\n")]  # library strips cue tags
        cues.append((_seconds(start), _seconds(end), lines))
    return sorted(drop_rolling_repeats(cues), key=lambda s: s.start)


def drop_rolling_repeats(cues: Iterable[tuple[float, float, list[str]]]) -> list[Segment]:
    """Keep only the lines a cue adds to the previous one.

    YouTube auto-captions show two lines: the previous cue's last line and a new one, and
    between cues a 10 ms cue that only repeats the finished line. Dropping the lines that
    continue the previous cue's tail (and cues with nothing new) makes each line read once.
    """
    segments: list[Segment] = []
    previous: list[str] = []
    for start, end, raw_lines in cues:
        lines = [line for line in raw_lines if line]
        overlap = 0
        for k in range(min(len(lines), len(previous)), 0, -1):
            if lines[:k] == previous[-k:]:
                overlap = k
                break
        new = lines[overlap:]
        if lines:
            previous = lines
        if new:
            segments.append(Segment(start, end, " ".join(new)))
    return segments


def _parse_srt(text: str) -> list[Segment]:
    """SRT through the `srt` library; tags stripped; reversed cues refused; sorted by start."""
    try:
        subs = list(srt.parse(text.lstrip("\ufeff")))
    except srt.SRTParseError as exc:
        raise BadInput(condense(f"not a valid SRT file: {exc}")) from None
    segments = []
    for position, sub in enumerate(subs, 1):
        number = sub.index if sub.index is not None else position
        start, end = sub.start.total_seconds(), sub.end.total_seconds()
        if end < start:
            raise BadInput(
                f"SRT cue {number} has end before start "
                f"({srt.timedelta_to_srt_timestamp(sub.start)} --> "
                f"{srt.timedelta_to_srt_timestamp(sub.end)})"
            )
        segments.append(Segment(round(start, 3), round(end, 3), clean_text(sub.content)))
    return sorted(segments, key=lambda s: s.start)


_JSON_LAYOUTS = (
    "a youtube-transcript-api list of {text, start, duration} "
    "or Whisper output {text, segments: [{start, end, text}]}"
)


def _parse_json(text: str) -> list[Segment] | str:
    """youtube-transcript-api or Whisper JSON; a str return is Whisper text without segments."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        at_end = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        cut = "; the file ends too early (truncated?)" if at_end else ""
        raise BadInput(
            f"invalid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}){cut}"
        ) from None
    if isinstance(data, list) and all(
        isinstance(item, dict) and {"text", "start", "duration"} <= item.keys() for item in data
    ):
        if not data:
            raise BadInput("empty transcript (the JSON list has no items)")
        segments = []
        for n, item in enumerate(data, 1):
            start = _number(item["start"], f"item {n} start")
            duration = _number(item["duration"], f"item {n} duration")
            if duration < 0:
                raise BadInput(f"item {n} has a negative duration")
            segments.append(
                Segment(round(start, 3), round(start + duration, 3), _cue_text(item["text"], n))
            )
        return sorted(segments, key=lambda s: s.start)
    if isinstance(data, dict) and isinstance(data.get("segments"), list) and "text" in data:
        if not data["segments"]:
            return _str_field(data["text"], "text")
        segments = []
        for n, seg in enumerate(data["segments"], 1):
            if not isinstance(seg, dict) or not {"start", "end", "text"} <= seg.keys():
                raise BadInput(f"Whisper segment {n} lacks start, end or text")
            start = _number(seg["start"], f"Whisper segment {n} start")
            end = _number(seg["end"], f"Whisper segment {n} end")
            if end < start:
                raise BadInput(f"Whisper segment {n} has end before start ({start} > {end})")
            segments.append(Segment(round(start, 3), round(end, 3), _cue_text(seg["text"], n)))
        return sorted(segments, key=lambda s: s.start)
    shape = type(data).__name__
    if isinstance(data, dict):
        shape = "object with keys " + ", ".join(sorted(map(str, data))[:8])
    raise BadInput(condense(f"unknown JSON layout ({shape}); expected {_JSON_LAYOUTS}"))


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadInput(f"{what} is not a number: {value!r}")
    if value < 0:
        raise BadInput(f"{what} is negative: {value!r}")
    return float(value)


def _cue_text(value: Any, n: int) -> str:
    if not isinstance(value, str):
        raise BadInput(f"item {n} text is not a string")
    return " ".join(value.split())  # JSON text is already plain: no tags or entities to undo


def _str_field(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadInput(f"{what} is not a string")
    return value
