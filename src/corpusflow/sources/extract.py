"""All sources as one stream of Documents, Rejects, Skipped and Unchanged, in a stable order:
transcripts, then articles, then live YouTube."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from corpusflow.config import Params
from corpusflow.models import SourceItem


def extract(
    params: Params,
    transcripts: Sequence[str] = (),
    articles: Sequence[str] = (),
    youtube: Sequence[str] = (),
    skip: Any = None,
) -> Iterator[SourceItem]:
    """`skip(path, source_type)` may answer Unchanged for a file not to be read (inputs.py)."""
    from corpusflow.sources.articles import iter_articles
    from corpusflow.sources.reader import default_workers
    from corpusflow.sources.transcripts import iter_transcripts

    if transcripts:
        workers = params.ingest.parse_workers
        workers = default_workers() if workers is None else workers
        yield from iter_transcripts(transcripts, skip=skip, workers=workers)
    if articles:
        src = params.sources
        yield from iter_articles(articles, src.columns, by_file=src.columns_by_file, skip=skip)
    if youtube:
        from corpusflow.sources.youtube import fetch_youtube

        yield from fetch_youtube(youtube, params.sources.youtube_languages)
