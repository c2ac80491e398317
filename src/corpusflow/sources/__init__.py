"""Sources: transcripts, CSV articles and live YouTube as Documents, Rejects and Skipped.

The public functions are re-exported lazily so that importing one source does not import
the others' libraries (youtube-transcript-api pulls in requests and defusedxml).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "iter_transcripts": "corpusflow.sources.transcripts",
    "iter_articles": "corpusflow.sources.articles",
    "fetch_youtube": "corpusflow.sources.youtube",
    "video_id_from": "corpusflow.sources.youtube",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
