"""Split documents into chunks with langchain-text-splitters and map chunks back to seconds.

Token mode measures length with the embedding model's own tokenizer, so no chunk is longer
than the model accepts (MiniLM silently truncates past 256 tokens otherwise).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from langchain_text_splitters import RecursiveCharacterTextSplitter

from corpusflow.config import Chunking
from corpusflow.ids import chunk_id, hash_value, sha256_text
from corpusflow.models import Chunk, Document

# Bump when the splitting logic changes: it is part of every record's chunker hash.
CHUNKER_VERSION = 1
# Milvus VARCHAR max_length is counted in UTF-8 bytes; chunks above it are split again.
MAX_TEXT_BYTES = 65_535
CHARACTER_DEFAULTS = (1000, 50)
TOKEN_OVERLAP_DEFAULT = 32


@dataclass(frozen=True)
class ChunkerSpec:
    """Resolved chunker settings; their hash marks every record so a change is detected."""

    mode: str
    chunk_size: int
    chunk_overlap: int
    tokenizer: str  # model id whose tokenizer measures length ("" in character mode)

    @cached_property
    def digest(self) -> str:
        return hash_value(
            {
                "version": CHUNKER_VERSION,
                "mode": self.mode,
                "size": self.chunk_size,
                "overlap": self.chunk_overlap,
                "tokenizer": self.tokenizer,
            }
        )


def resolve_spec(settings: Chunking, model_id: str, model_max_tokens: int | None) -> ChunkerSpec:
    """Fill in defaults: token mode uses the model's own limit unless a smaller size is set."""
    if settings.mode == "characters":
        size = settings.chunk_size or CHARACTER_DEFAULTS[0]
        overlap = (
            CHARACTER_DEFAULTS[1] if settings.chunk_overlap is None else settings.chunk_overlap
        )
        return ChunkerSpec("characters", size, min(overlap, size - 1), "")
    if model_max_tokens is None:
        raise ValueError("token chunking needs a model with a known token limit")
    size = min(settings.chunk_size or model_max_tokens, model_max_tokens)
    overlap = TOKEN_OVERLAP_DEFAULT if settings.chunk_overlap is None else settings.chunk_overlap
    return ChunkerSpec("tokens", size, min(overlap, size // 2), model_id)


class Chunker:
    """Turns a Document into Chunks with ids, start offsets and, for transcripts, seconds."""

    def __init__(self, spec: ChunkerSpec, count_tokens: Callable[[str], int] | None = None):
        self.spec = spec
        length = len if spec.mode == "characters" else count_tokens
        if length is None:
            raise ValueError("token mode needs a token counter")
        self._length = length
        self._splitter = RecursiveCharacterTextSplitter(
            chunk_size=spec.chunk_size,
            chunk_overlap=spec.chunk_overlap,
            length_function=length,
        )
        # Safety net for pathological text (e.g. one huge "word" the tokenizer counts as a
        # single [UNK]): any chunk over the VARCHAR byte limit is split again, never cut.
        self._byte_splitter = RecursiveCharacterTextSplitter(
            chunk_size=MAX_TEXT_BYTES // 4, chunk_overlap=0, length_function=len
        )

    def split(self, doc: Document) -> list[Chunk]:
        pieces: list[str] = []
        for piece in self._splitter.split_text(doc.text):
            if len(piece.encode("utf-8")) > MAX_TEXT_BYTES:
                pieces.extend(self._byte_splitter.split_text(piece))
            else:
                pieces.append(piece)
        offsets = doc.segment_offsets() if doc.segments else []
        chunks: list[Chunk] = []
        prev_start, prev = 0, ""
        for index, text in enumerate(pieces):
            start = self._locate(doc.text, prev_start, prev, text)
            prev_start, prev = start, text
            start_s = end_s = None
            if offsets:
                start_s, end_s = _seconds(doc, offsets, start, start + len(text))
            chunks.append(
                Chunk(
                    id=chunk_id(doc.source_id, index, text),
                    source_id=doc.source_id,
                    chunk_index=index,
                    text=text,
                    start_char=start,
                    text_hash=sha256_text(text),
                    start_seconds=start_s,
                    end_seconds=end_s,
                )
            )
        return chunks

    def _locate(self, text: str, prev_start: int, prev: str, chunk: str) -> int:
        """Where `chunk` starts in `text`, given the chunk before it.

        The splitter does not report offsets, and a plain `find` lands on an earlier copy
        when text repeats. A chunk either starts after the previous one or begins with an
        overlap that is a suffix of it no longer than `chunk_overlap`: take the longest such
        suffix, falling back to `find` only if the text disagrees.
        """
        if prev:
            prev_end = prev_start + len(prev)
            for k in range(min(len(prev) - 1, len(chunk)), 0, -1):
                if prev.endswith(chunk[:k]) and self._length(chunk[:k]) <= self.spec.chunk_overlap:
                    start = prev_end - k
                    if text.startswith(chunk, start):
                        return start
            found = text.find(chunk, prev_end)
            if found >= 0:
                return found
        found = text.find(chunk, prev_start + 1 if prev else 0)
        return found if found >= 0 else prev_start


def _seconds(doc: Document, offsets: list[int], start: int, end: int) -> tuple[float, float]:
    """Seconds covered by characters [start, end): first to last overlapping segment."""
    first = max(bisect_right(offsets, start) - 1, 0)
    last = max(bisect_right(offsets, max(end - 1, start)) - 1, first)
    segs = doc.segments[first : last + 1]
    return segs[0].start, max(s.end for s in segs)
