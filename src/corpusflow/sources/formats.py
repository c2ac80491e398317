"""Transcript formats: WebVTT, SRT and JSON (youtube-transcript-api, Whisper) into segments.

Each parser takes decoded text and returns timed segments, or raises BadInput with a reason
the user can act on. Decisions:
- Markup is removed only where it is markup: `<i>`, `</b>`, `<font ...>`, `<c.x>`, `<v Ada>`
  and cue timestamps `<00:00:01.320>`. A bare `<` (as in `2<3,5>1`) is text and kept.
- SRT files written from SSA/ASS carry `\\N` / `\\n` (line breaks) and `\\h` (hard space):
  they become spaces, like the `{\\an8}` override tags are dropped.
- Entities are decoded in VTT/SRT and in youtube-transcript-api JSON (which, from older
  versions and its raw data, carries `&#39;`); Whisper JSON is plain text and kept as is.
- WebVTT: YouTube's rolling auto-captions repeat the previous cue's lines in the next,
  time-adjacent cue: only the new lines are kept. An identical line in a cue that starts
  later than the previous one ended is a real repeat and kept. A text block without a
  timing line (which a player would drop) rejects the file, naming its line. An HLS
  `X-TIMESTAMP-MAP` header shifts every cue by its LOCAL time (MPEGTS, the stream's clock,
  has no origin in the file and is not added).
- Times must be finite and at most MAX_SECONDS: an overflowing start + duration is refused.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Iterable
from typing import Any

import srt
import webvtt
from webvtt.errors import MalformedCaptionError, MalformedFileError

from corpusflow.models import Segment
from corpusflow.sources.files import BadInput, condense

MAX_SECONDS = 1e12  # ~31,700 years: far beyond any recording, far below float overflow
ROLLING_GAP = 0.05  # seconds: a cue starting this close to the previous end continues it

_TAG = re.compile(
    r"</?(?:b|i|u|s|c|v|br|ruby|rt|lang|font|span)\b[^<>]*>"  # VTT/SRT/HTML markup
    r"|<\d+(?::\d{1,2})+[.,]\d{1,3}>",  # cue timestamps <00:00:01.320>
    re.IGNORECASE,
)
_ASS_OVERRIDE = re.compile(r"\{\\[^}]*\}")  # {\an8} and friends in SRT files
_SSA_ESCAPE = re.compile(r"\\[Nnh]")
_TIMESTAMP_MAP = re.compile(r"^X-TIMESTAMP-MAP=(?P<value>.*)$", re.MULTILINE)
_LOCAL = re.compile(r"LOCAL:(?P<ts>[\d:.]+)")
_VTT_BLOCK_KEYWORDS = ("NOTE", "STYLE", "REGION")

JSON_LAYOUTS = (
    "a youtube-transcript-api list of {text, start, duration} (or its CLI's list of one such "
    "list) or Whisper output {text, segments: [{start, end, text}]}"
)


def clean_text(text: str) -> str:
    """Cue text as one line: tags and ASS overrides dropped, entities decoded, spaces folded."""
    text = _ASS_OVERRIDE.sub("", _TAG.sub("", text))
    return " ".join(html.unescape(text).split())


def _seconds(ms: int | float) -> float:
    return round(ms / 1000, 3)


def checked_time(value: float, what: str) -> float:
    """A time in seconds that can be stored and serialised: finite, bounded, rounded to ms."""
    if not math.isfinite(value):
        raise BadInput(f"{what} time is too large to store (start + duration overflows)")
    if value > MAX_SECONDS:
        raise BadInput(f"{what} time {value:g} s is too large to store (at most {MAX_SECONDS:g} s)")
    return round(value, 3)


# ----------------------------------------------------------------------------------------
# WebVTT
# ----------------------------------------------------------------------------------------
def parse_vtt(text: str) -> list[Segment]:
    """WebVTT through webvtt-py; rolling (YouTube) repeats removed; sorted by start."""
    try:
        captions = webvtt.from_string(text).captions
    except MalformedFileError:
        raise BadInput("not a WebVTT file (it must start with a WEBVTT line)") from None
    except MalformedCaptionError as exc:
        raise BadInput(condense(f"malformed WebVTT cue: {exc}")) from None
    _check_vtt_blocks(text, len(captions))
    shift = _timestamp_map_local(text)
    cues = []
    for number, cap in enumerate(captions, 1):
        start, end = cap.start_time.in_milliseconds(), cap.end_time.in_milliseconds()
        if end < start:
            raise BadInput(f"WebVTT cue {number} has end before start ({cap.start} --> {cap.end})")
        if start < shift:
            raise BadInput(
                f"WebVTT cue {number} starts ({cap.start}) before the X-TIMESTAMP-MAP LOCAL time"
            )
        lines = [clean_text(line) for line in cap.text.split("\n")]  # library strips cue tags
        cues.append((_seconds(start - shift), _seconds(end - shift), lines))
    return sorted(drop_rolling_repeats(cues), key=lambda s: s.start)


def _check_vtt_blocks(text: str, parsed: int) -> None:
    """Every block after the header is a cue, NOTE, STYLE or REGION; else the file is refused
    (webvtt-py, like a player, drops a block without a timing line without a word)."""
    # (first line number, lines), split as webvtt-py splits them: an empty line ends a
    # block, and so does a timing line that cannot be the current block's own
    blocks: list[tuple[int, list[str]]] = []
    block: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        starts = "-->" in line and block and (len(block) > 1 or "-->" in block[0])
        if not line or starts:
            block = []
        if line:
            if not block:
                blocks.append((number, block))
            block.append(line)
    blocks = blocks[1:]  # the header
    cues = orphan = 0
    where = ""
    for first_line, block in blocks:
        if not block or block[0].startswith(_VTT_BLOCK_KEYWORDS):
            continue
        if any("-->" in line for line in block[:2]):
            cues += 1
        elif not orphan:
            orphan = first_line
            where = condense(block[0], 60)
    if orphan:
        raise BadInput(
            f"WebVTT text block at line {orphan} has no timing line ({where!r}): it would be "
            "lost; add its timing line or delete the block"
        )
    if cues > parsed:
        detail = ""
        try:
            webvtt.from_string(text, strict=True)
        except (MalformedCaptionError, MalformedFileError) as exc:
            detail = f": {exc}"
        raise BadInput(condense(f"{cues - parsed} WebVTT cue(s) could not be parsed{detail}"))


def _timestamp_map_local(text: str) -> int:
    """Milliseconds to subtract from every cue: the LOCAL time of an HLS X-TIMESTAMP-MAP."""
    header = re.split(r"\r?\n\s*\r?\n", text, maxsplit=1)[0]
    found = _TIMESTAMP_MAP.search(header)
    if not found:
        return 0
    local = _LOCAL.search(found["value"])
    if not local:
        raise BadInput(f"X-TIMESTAMP-MAP header without a LOCAL time: {found['value']!r}")
    try:
        return webvtt.models.Timestamp.from_string(local["ts"]).in_milliseconds()
    except MalformedCaptionError:
        raise BadInput(f"X-TIMESTAMP-MAP LOCAL time is not a timestamp: {local['ts']!r}") from None


def drop_rolling_repeats(cues: Iterable[tuple[float, float, list[str]]]) -> list[Segment]:
    """Keep only the lines a cue adds to the previous, time-adjacent one.

    YouTube auto-captions show two lines: the previous cue's last line and a new one, and
    between cues a 10 ms cue that only repeats the finished line. Dropping the lines that
    continue the previous cue's tail (and cues with nothing new) makes each line read once.
    A cue that starts after a pause is never a continuation: its lines are all kept.
    """
    segments: list[Segment] = []
    previous: list[str] = []
    previous_end = -math.inf
    for start, end, raw_lines in cues:
        lines = [line for line in raw_lines if line]
        overlap = 0
        if start <= previous_end + ROLLING_GAP:
            for k in range(min(len(lines), len(previous)), 0, -1):
                if lines[:k] == previous[-k:]:
                    overlap = k
                    break
        new = lines[overlap:]
        if lines:
            previous, previous_end = lines, end
        if new:
            segments.append(Segment(start, end, " ".join(new)))
    return segments


# ----------------------------------------------------------------------------------------
# SRT
# ----------------------------------------------------------------------------------------
def parse_srt(text: str) -> list[Segment]:
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
        content = clean_text(_SSA_ESCAPE.sub(" ", sub.content))
        segments.append(Segment(round(start, 3), round(end, 3), content))
    return sorted(segments, key=lambda s: s.start)


# ----------------------------------------------------------------------------------------
# JSON
# ----------------------------------------------------------------------------------------
def parse_json(text: str) -> list[Segment] | str:
    """youtube-transcript-api or Whisper JSON; a str return is Whisper text without segments."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        at_end = exc.pos >= len(text.rstrip()) or exc.msg.startswith("Unterminated string")
        cut = "; the file ends too early (truncated?)" if at_end else ""
        raise BadInput(
            f"invalid JSON (line {exc.lineno} column {exc.colno}: {exc.msg}){cut}"
        ) from None
    if isinstance(data, list):
        return _youtube_transcript_api(data)
    if isinstance(data, dict) and isinstance(data.get("segments"), list) and "text" in data:
        return _whisper(data)
    shape = type(data).__name__
    if isinstance(data, dict):
        shape = "object with keys " + ", ".join(sorted(map(str, data))[:8])
    raise BadInput(condense(f"unknown JSON layout ({shape}); expected {JSON_LAYOUTS}"))


def _youtube_transcript_api(data: list[Any]) -> list[Segment]:
    """A list of {text, start, duration}, or the CLI's `--format json`: a list of such lists
    (one per video asked for; one file can only hold one)."""
    if data and all(isinstance(item, list) for item in data):
        if len(data) > 1:
            raise BadInput(
                f"youtube-transcript-api output with {len(data)} transcripts (one per video "
                "asked for); save each video's transcript in its own file"
            )
        data = data[0]
    if not data:
        raise BadInput("empty transcript (the JSON list has no items)")
    segments = []
    for n, item in enumerate(data, 1):
        if not isinstance(item, dict) or not {"text", "start", "duration"} <= item.keys():
            raise BadInput(
                f"youtube-transcript-api item {n} is not an object with text, start and duration"
            )
        start = _number(item["start"], f"item {n} start")
        duration = _number(item["duration"], f"item {n} duration")
        end = checked_time(start + duration, f"item {n} end")
        text = html.unescape(_cue_text(item["text"], n))
        segments.append(Segment(checked_time(start, f"item {n} start"), end, text))
    return sorted(segments, key=lambda s: s.start)


def _whisper(data: dict[str, Any]) -> list[Segment] | str:
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
        start = checked_time(start, f"Whisper segment {n} start")
        end = checked_time(end, f"Whisper segment {n} end")
        segments.append(Segment(start, end, _cue_text(seg["text"], n)))
    return sorted(segments, key=lambda s: s.start)


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadInput(f"{what} is not a number: {value!r}")
    if value < 0:
        raise BadInput(f"{what} is negative: {value!r}")
    return float(value)


def _cue_text(value: Any, n: int) -> str:
    if not isinstance(value, str):
        raise BadInput(f"item {n} text is not a string")
    return " ".join(value.split())  # JSON text is already plain: no tags to undo


def _str_field(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise BadInput(f"{what} is not a string")
    return value
