"""The contracts between stages: Document, Chunk, Reject, Skipped, Unchanged.

Sources yield Documents (or Rejects/Skipped), the chunker turns Documents into Chunks,
the store turns Chunks plus vectors into records. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal, NamedTuple

from corpusflow.ids import hash_value

SourceType = Literal["transcript", "article"]
SEGMENT_SEPARATOR = " "


class Segment(NamedTuple):
    """One timed piece of a transcript (a cue)."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Document:
    """One transcript or one article, with the metadata every chunk inherits.

    For timed transcripts, `text` is the segments' texts joined by a single space
    (use `Document.from_segments`), so character offsets map back to seconds.
    """

    source_id: str
    source_type: SourceType
    text: str
    title: str = ""
    author: str = ""
    url: str = ""
    published: str = ""
    origin: str = ""  # where it came from (path, URL, "file.csv row 3"): for messages only
    segments: tuple[Segment, ...] = ()

    @classmethod
    def from_segments(cls, segments: list[Segment] | tuple[Segment, ...], **kwargs) -> Document:
        segs = tuple(s for s in segments if s.text)
        return cls(text=SEGMENT_SEPARATOR.join(s.text for s in segs), segments=segs, **kwargs)

    @cached_property
    def content_hash(self) -> str:
        """Hash of everything that ends up in the records; `origin` is excluded on purpose."""
        return hash_value(
            {
                "source_id": self.source_id,
                "source_type": self.source_type,
                "text": self.text,
                "title": self.title,
                "author": self.author,
                "url": self.url,
                "published": self.published,
                "segments": [list(s) for s in self.segments],
            }
        )

    def segment_offsets(self) -> list[int]:
        """Start offset of each segment in `text` (valid for `from_segments` documents)."""
        offsets, pos = [], 0
        for seg in self.segments:
            offsets.append(pos)
            pos += len(seg.text) + len(SEGMENT_SEPARATOR)
        return offsets


@dataclass(frozen=True)
class Chunk:
    """A piece of a document, the unit that is embedded and stored."""

    id: str
    source_id: str
    chunk_index: int
    text: str
    start_char: int
    text_hash: str
    start_seconds: float | None = None
    end_seconds: float | None = None


@dataclass(frozen=True)
class Reject:
    """An input that could not be ingested, with a reason a user can act on."""

    source: str  # file path, URL or CSV path
    source_type: str
    reason: str
    locator: str = ""  # e.g. "row 12" inside a CSV
    source_id: str = ""

    def line(self) -> str:
        shown = self.locator and not self.reason.startswith(self.locator)
        where = f"{self.source} ({self.locator})" if shown else self.source
        return f"rejected {where}: {self.reason}"


@dataclass(frozen=True)
class Skipped:
    """An input deliberately not ingested, counted but not an error: an exact duplicate of
    one already read (`duplicate`), or a file that is not an input (`duplicate=False`: a
    README among transcripts, another format of a transcript already read)."""

    source: str
    source_type: str
    reason: str
    locator: str = ""
    source_id: str = ""
    duplicate: bool = True


@dataclass(frozen=True)
class Unchanged:
    """An input file whose fingerprint says it has not changed since its documents were
    stored: not read again. Carries what the stored state says it holds."""

    source: str
    source_type: str
    input: str
    documents: int
    chunks: int


SourceItem = Document | Reject | Skipped | Unchanged
