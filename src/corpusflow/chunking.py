"""Split documents into chunks with langchain-text-splitters and map chunks back to seconds.

Token mode measures length with the embedding model's own tokenizer, so no chunk is longer
than the model accepts (MiniLM silently truncates past 256 tokens otherwise).

What is guaranteed (tests/unit/test_properties.py and
tests/integration/test_properties_tokens.py check it on arbitrary text): placing every chunk
at its `start_char` reproduces the document. Each chunk is exactly the document text at that
offset, chunks come in document order, and every character no chunk covers is
whitespace the splitter trimmed at a seam. Nothing is truncated: a chunk over Milvus'
VARCHAR limit (UTF-8 bytes) is split again into parts within both limits. For timed
transcripts, `start_seconds` never decreases with `chunk_index`, and
`start_seconds <= end_seconds`.

Offsets are exact, not searched for: `_OffsetSplitter` runs the library's recursive
algorithm on (offset, text) pairs. (Finding each chunk with `str.find` after the fact put
chunks on an earlier copy of themselves in repetitive text, e.g. a long run of one
character, and then offsets and seconds were wrong.)
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache

from langchain_text_splitters import RecursiveCharacterTextSplitter
from langchain_text_splitters.character import _split_text_with_regex

from corpusflow.config import Chunking, ConfigError
from corpusflow.ids import chunk_id, hash_value, sha256_text
from corpusflow.models import Chunk, Document

# Bump when the splitting logic changes: it is part of every record's chunker hash.
# 2: exact start offsets (were searched for, and wrong in repetitive text); parts of a chunk
#    over the byte limit respect the token limit and never go back in time. Chunks and ids
#    of ordinary text are unchanged; their records are rewritten once with exact offsets.
CHUNKER_VERSION = 2
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
    """Fill in defaults: token mode uses the model's own limit unless a smaller size is set.
    A default overlap shrinks to fit a small size; an overlap the user set never does."""
    if settings.mode == "characters":
        size = settings.chunk_size or CHARACTER_DEFAULTS[0]
        unit, default = "characters", min(CHARACTER_DEFAULTS[1], size - 1)
    elif model_max_tokens is None:
        raise ValueError("token chunking needs a model with a known token limit")
    else:
        size = min(settings.chunk_size or model_max_tokens, model_max_tokens)
        unit, default = "tokens", min(TOKEN_OVERLAP_DEFAULT, size // 2)
    overlap = default if settings.chunk_overlap is None else settings.chunk_overlap
    if overlap >= size:
        raise ConfigError(
            f"chunking.chunk_overlap ({overlap}) must be smaller than the chunk size "
            f"({size} {unit}{'' if settings.chunk_size else ', the default'})"
        )
    tokens = settings.mode == "tokens"
    return ChunkerSpec(settings.mode, size, overlap, model_id if tokens else "")


class Chunker:
    """Turns a Document into Chunks with ids, start offsets and, for transcripts, seconds."""

    def __init__(
        self,
        spec: ChunkerSpec,
        count_tokens: Callable[[str], int] | None = None,
        max_text_bytes: int = MAX_TEXT_BYTES,  # Milvus' limit; smaller only in tests
    ):
        self.spec, self.max_text_bytes = spec, max_text_bytes
        if spec.mode == "characters":
            count: Callable[[str], int] = len
        elif count_tokens is None:
            raise ValueError("token mode needs a token counter")
        else:
            # the splitter measures the same small pieces over and over: 6x faster cached
            count = lru_cache(maxsize=65_536)(count_tokens)
        self._splitter = _OffsetSplitter(
            chunk_size=spec.chunk_size, chunk_overlap=spec.chunk_overlap, length_function=count
        )
        self._count = count
        self._splitters: dict[int, _OffsetSplitter] = {}

    def _fits(self, text: str) -> bool:
        return (
            self._count(text) <= self.spec.chunk_size
            and len(text.encode("utf-8")) <= self.max_text_bytes
        )

    def _limit_splitter(self, tokens: int) -> _OffsetSplitter:
        """A splitter whose chunks stay within `tokens` and the byte limit, as it measures
        them (sums over pieces). Lengths in integer units of 1/max_text_bytes token."""
        if tokens not in self._splitters:
            limit, count = self.max_text_bytes, self._count

            def within_both(text: str) -> int:
                return max(count(text) * limit, len(text.encode("utf-8")) * tokens)

            self._splitters[tokens] = _OffsetSplitter(
                chunk_size=tokens * limit, chunk_overlap=0, length_function=within_both
            )
        return self._splitters[tokens]

    def _fit(self, start: int, piece: str, tokens: int | None = None) -> list[tuple[int, str]]:
        """`piece` split again, never cut, into parts within both limits as counted on each
        part's own text. The splitter adds up its pieces' counts, but a BPE count of joined
        text can exceed that sum (merges across the seam), and one 70,000-byte "word" can
        count as a single [UNK]; a part still over the limit is split with a smaller size."""
        tokens = self.spec.chunk_size if tokens is None else tokens
        parts = self._limit_splitter(tokens).split_with_offsets(piece)
        if tokens == 1 and parts == [(0, piece)]:
            return [(start, piece)]  # a single character over the limit: nothing to split
        out: list[tuple[int, str]] = []
        for at, part in parts:
            if self._fits(part):
                out.append((start + at, part))
                continue
            over = max(self._count(part) - self.spec.chunk_size, 1)
            out.extend(self._fit(start + at, part, max(1, min(tokens - 1, tokens - over))))
        return out

    def split(self, doc: Document) -> list[Chunk]:
        offsets = doc.segment_offsets() if doc.segments else []
        chunks: list[Chunk] = []
        for index, (start, text) in enumerate(self._pieces(doc.text)):
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

    def _pieces(self, text: str) -> list[tuple[int, str]]:
        """(start offset, chunk text) in document order, each within both limits.

        Ordinary text is exactly the splitter's chunks. After a chunk that had to be split
        again, the next chunk's overlap into it is dropped (its parts cover that text), so
        chunks never start before the one before them."""
        located: list[tuple[int, str]] = []
        covered = 0  # end of the last chunk that was split again
        for start, piece in self._splitter.split_with_offsets(text):
            if start < covered:
                rest = text[covered : start + len(piece)]
                if not rest.strip():
                    continue
                start, piece = start + len(piece) - len(rest.lstrip()), rest.strip()
            if self._fits(piece):
                located.append((start, piece))
                continue
            located.extend(self._fit(start, piece))
            covered = start + len(piece)
        return located


class _OffsetSplitter(RecursiveCharacterTextSplitter):
    """langchain's RecursiveCharacterTextSplitter that also says where each chunk starts.

    `_split_at` and `_merge_at` are the library's `_split_text` and `_merge_splits`
    (langchain-text-splitters 1.x) step for step, on (offset, text) pairs. With the separator
    kept at the start of each piece (the default), the library's pieces are contiguous slices
    of the text, so a chunk starts at its first piece's offset plus the whitespace that
    `strip` removes. tests/integration/test_properties_tokens.py checks that the texts equal
    the library's own `split_text` on arbitrary input, so a library change that would alter
    them is caught.
    """

    def split_with_offsets(self, text: str) -> list[tuple[int, str]]:
        if self._keep_separator not in (True, "start"):
            raise ValueError("offsets need the separator kept at the start of each piece")
        return self._split_at(0, text, self._separators)

    def _split_at(self, base: int, text: str, separators: list[str]) -> list[tuple[int, str]]:
        final: list[tuple[int, str]] = []
        separator, new_separators = separators[-1], []
        for i, candidate in enumerate(separators):
            pattern = candidate if self._is_separator_regex else re.escape(candidate)
            if not candidate:
                separator = candidate
                break
            if re.search(pattern, text):
                separator, new_separators = candidate, separators[i + 1 :]
                break
        pattern = separator if self._is_separator_regex else re.escape(separator)
        splits, pos = [], base
        for piece in _split_text_with_regex(text, pattern, keep_separator=self._keep_separator):
            splits.append((pos, piece))
            pos += len(piece)
        good: list[tuple[int, str]] = []
        for at, piece in splits:
            if self._length_function(piece) < self._chunk_size:
                good.append((at, piece))
                continue
            if good:
                final.extend(self._merge_at(good))
                good = []
            if not new_separators:
                final.append((at, piece))
            else:
                final.extend(self._split_at(at, piece, new_separators))
        if good:
            final.extend(self._merge_at(good))
        return final

    def _merge_at(self, splits: list[tuple[int, str]]) -> list[tuple[int, str]]:
        sep_len = self._length_function("")  # kept separators: pieces are joined with ""
        docs: list[tuple[int, str]] = []
        current: list[tuple[int, str]] = []
        total = 0
        for at, piece in splits:
            len_ = self._length_function(piece)
            if total + len_ + (sep_len if current else 0) > self._chunk_size:
                if current:
                    doc = self._join_at(current)
                    if doc is not None:
                        docs.append(doc)
                    while total > self._chunk_overlap or (
                        total + len_ + (sep_len if current else 0) > self._chunk_size and total > 0
                    ):
                        total -= self._length_function(current[0][1]) + (
                            sep_len if len(current) > 1 else 0
                        )
                        current = current[1:]
            current.append((at, piece))
            total += len_ + (sep_len if len(current) > 1 else 0)
        doc = self._join_at(current)
        if doc is not None:
            docs.append(doc)
        return docs

    def _join_at(self, pieces: list[tuple[int, str]]) -> tuple[int, str] | None:
        if not pieces:
            return None
        start, text = pieces[0][0], "".join(piece for _, piece in pieces)
        if self._strip_whitespace:
            kept = text.lstrip()
            start += len(text) - len(kept)
            text = kept.rstrip()
        return (start, text) if text else None


def _seconds(doc: Document, offsets: list[int], start: int, end: int) -> tuple[float, float]:
    """Seconds covered by characters [start, end): first to last overlapping segment."""
    first = max(bisect_right(offsets, start) - 1, 0)
    last = max(bisect_right(offsets, max(end - 1, start)) - 1, first)
    segs = doc.segments[first : last + 1]
    return segs[0].start, max(s.end for s in segs)
