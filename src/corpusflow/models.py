"""The contracts between stages: Document, Chunk, Reject, Skipped, Unchanged, and what a
run reports: IngestResult.

Sources yield Documents (or Rejects/Skipped), the chunker turns Documents into Chunks,
the store turns Chunks plus vectors into records. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, Literal, NamedTuple

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


class PipelineError(Exception):
    """A user-facing failure of a step: one clear line, no traceback."""


BY_TYPE_KEYS = ("inputs", "documents", "unchanged", "duplicates", "rejected", "skipped")


@dataclass
class IngestResult:
    """What one ingest run did, in counts. Every field is part of the run API: the CLI prints
    it (`--json`), the Prefect flow publishes it, the DVC stage writes it as metrics; a new
    counter added here reaches all three without another edit.

    documents: documents met (stored or unchanged); unchanged_documents: skipped as stored.
    chunks: chunks of those documents; skipped: chunks left as stored; upserted: rows written;
    added/updated: chunk ids new to the collection / rewritten; deleted: stale or removed chunks;
    migrated: rows copied from the previous collection after a model switch.
    embedded / cache_hits: texts the model embedded / found in the embedding cache.
    rejected / duplicates: records in the rejects / duplicates file this run.
    skipped_inputs / skipped_files: files met that are not inputs (a README among transcripts).
    by_type: the same counts per source type (inputs, documents, unchanged, duplicates,
    rejected, skipped).
    """

    run_id: str
    collection: str
    physical_collection: str
    model: str
    cleanup: str
    dry_run: bool = False
    documents: int = 0
    unchanged_documents: int = 0
    chunks: int = 0
    embedded: int = 0
    cache_hits: int = 0
    upserted: int = 0
    added: int = 0
    updated: int = 0
    skipped: int = 0
    deleted: int = 0
    migrated: int = 0
    rejected: int = 0
    duplicates: int = 0
    skipped_inputs: int = 0
    skipped_files: list[dict[str, str]] = field(default_factory=list)
    alias_moved: bool = False
    embedding_usage: dict[str, Any] = field(default_factory=dict)
    by_type: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects_file: str = ""
    duplicates_file: str = ""
    seconds: float = 0.0

    def count(self, source_type: str, key: str, n: int = 1) -> None:
        bucket = self.by_type.setdefault(source_type, dict.fromkeys(BY_TYPE_KEYS, 0))
        bucket[key] += n

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
