"""Live YouTube transcripts through youtube-transcript-api.

A dlt-style source: a plain generator that never raises for bad input. Each URL or id
ends as one Document, or a Reject carrying the library's reason on one line (transcripts
disabled, no transcript in the wanted languages, video unavailable, network, ...). A video
asked for twice is fetched once; the repeat is Skipped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from urllib.parse import parse_qs, urlsplit

import requests
from youtube_transcript_api import YouTubeTranscriptApi
from youtube_transcript_api._errors import (
    CouldNotRetrieveTranscript,
    NoTranscriptFound,
    YouTubeTranscriptApiException,
)

from corpusflow.ids import youtube_source_id
from corpusflow.models import Document, Reject, Segment, Skipped
from corpusflow.sources.files import BadInput, Seen, condense
from corpusflow.sources.formats import checked_time
from corpusflow.sources.transcripts import VIDEO_ID_RE, WATCH_URL

SOURCE_TYPE = "transcript"
_HOSTS = {
    "youtube.com",
    "m.youtube.com",
    "music.youtube.com",
    "youtube-nocookie.com",
}
_PATH_ID = re.compile(r"^/(?:shorts|embed|live|v|e)/([A-Za-z0-9_-]{11})(?:[/?#]|$)")


def video_id_from(url_or_id: str) -> str | None:
    """The 11-character video id of a YouTube URL (watch, youtu.be, shorts, embed) or bare id."""
    value = (url_or_id or "").strip()
    if VIDEO_ID_RE.match(value):
        return value
    if "://" not in value:
        value = "https://" + value  # "youtu.be/ID", "www.youtube.com/watch?v=ID"
    try:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None
    if parts.scheme not in ("http", "https"):
        return None
    host = host.removeprefix("www.")
    if host == "youtu.be":
        candidate = parts.path.strip("/").split("/")[0]
        return candidate if VIDEO_ID_RE.match(candidate) else None
    if host not in _HOSTS:
        return None
    if parts.path in ("/watch", "/watch/"):
        ids = parse_qs(parts.query).get("v", [])
        return ids[0] if ids and VIDEO_ID_RE.match(ids[0]) else None
    match = _PATH_ID.match(parts.path)
    return match.group(1) if match else None


def fetch_youtube(
    urls_or_ids: Iterable[str],
    languages: Sequence[str] = ("en",),
    api: YouTubeTranscriptApi | None = None,
) -> Iterator[Document | Reject | Skipped]:
    """Fetch each video's transcript (first available of `languages`) as a timed Document.

    `api` lets callers (and tests) supply a client with their own `requests.Session`.
    """
    seen = Seen()
    for given in urls_or_ids:
        given = str(given)
        video_id = video_id_from(given)
        if video_id is None:
            yield Reject(
                given,
                SOURCE_TYPE,
                "not a YouTube video URL or 11-character video id "
                "(expected e.g. https://www.youtube.com/watch?v=ID or https://youtu.be/ID)",
            )
            continue
        source_id = youtube_source_id(video_id)
        if (first := seen.claim(source_id, given)) is not None:
            yield Skipped(given, SOURCE_TYPE, f"duplicate of {first}", source_id=source_id)
            continue
        if api is None:
            api = YouTubeTranscriptApi()
        try:
            fetched = api.fetch(video_id, languages=list(languages))
            segments = [
                Segment(
                    checked_time(float(s.start), f"snippet {n} start"),
                    checked_time(float(s.start) + float(s.duration), f"snippet {n} end"),
                    " ".join(s.text.split()),
                )
                for n, s in enumerate(fetched, 1)
            ]
        except BadInput as bad:
            yield Reject(given, SOURCE_TYPE, str(bad), source_id=source_id)
            continue
        except Exception as exc:  # the library's errors, requests' errors, parse errors
            yield Reject(given, SOURCE_TYPE, _reason(exc), source_id=source_id)
            continue
        doc = Document.from_segments(
            sorted(segments, key=lambda s: s.start),
            source_id=source_id,
            source_type=SOURCE_TYPE,
            title=f"YouTube video {video_id}",
            url=WATCH_URL.format(video_id),
            origin=given,
        )
        if not doc.text:
            yield Reject(given, SOURCE_TYPE, "empty transcript", source_id=source_id)
        else:
            yield doc


def _reason(exc: Exception) -> str:
    """The library's explanation on one line, without its boilerplate."""
    name = type(exc).__name__
    if isinstance(exc, NoTranscriptFound):
        wanted = ", ".join(getattr(exc, "_requested_language_codes", []) or [])
        available = sorted({t.language_code for t in getattr(exc, "_transcript_data", None) or []})
        return condense(
            f"{name}: no transcript in {wanted or 'the requested languages'} "
            f"(available: {', '.join(available) or 'none'}); set sources.youtube_languages"
        )
    if isinstance(exc, CouldNotRetrieveTranscript):
        cause = exc.cause.split("\n\n")[0] if exc.cause else ""
        return condense(f"{name}: {cause or 'could not retrieve a transcript'}")
    if isinstance(exc, YouTubeTranscriptApiException):
        return condense(f"{name}: {exc}")
    if isinstance(exc, requests.RequestException):
        return condense(f"network error ({name}): {exc}")
    return condense(f"unexpected error from youtube-transcript-api: {name}: {exc}")
