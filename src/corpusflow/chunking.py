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

Offsets are exact, not searched for: `OffsetSplitter` runs the library's recursive
algorithm on (offset, text) pairs. (Finding each chunk with `str.find` after the fact put
chunks on an earlier copy of themselves in repetitive text, e.g. a long run of one
character, and then offsets and seconds were wrong.)
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import TYPE_CHECKING, Any

from corpusflow.config import Chunking, ConfigError
from corpusflow.ids import chunk_id, hash_value, sha256_text
from corpusflow.models import Chunk, Document

if TYPE_CHECKING:
    from corpusflow.splitter import OffsetSplitter

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
        count_many: Callable[[Sequence[str]], list[int]] | None = None,
        additive_at_whitespace: bool | Callable[[], bool] = False,
    ):
        self.spec, self.max_text_bytes = spec, max_text_bytes
        if spec.mode == "characters":
            count: Callable[[str], int] = len
        elif count_tokens is None:
            raise ValueError("token mode needs a token counter")
        else:
            # the splitter measures the same small pieces over and over: 6x faster cached
            count = lru_cache(maxsize=65_536)(count_tokens)
        self._count = count
        # every chunk is measured whole once more (`_fits`); those texts are all different,
        # so they are counted in one call per document, not one each through the cache
        self._count_many = count_many if spec.mode == "tokens" and count_many else None
        # ... unless the splitter's own sum is exact (splitter.OffsetSplitter); asked when
        # the first text is split: the answer loads the tokenizer, which a no-op never needs
        self._additive = additive_at_whitespace
        self._splitters: dict[int, OffsetSplitter] = {}

    @classmethod
    def for_embedder(cls, spec: ChunkerSpec, embedder: Any, **kw: Any) -> Chunker:
        """Measured with `embedder`'s own tokenizer, many texts per call where it can
        (`count_tokens_many`: a fifth less chunker CPU with MiniLM's tokenizer)."""
        many = getattr(embedder, "count_tokens_many", None)
        def additive() -> bool:
            return bool(getattr(embedder, "additive_at_whitespace", False))

        return cls(
            spec, embedder.count_tokens, count_many=many, additive_at_whitespace=additive, **kw
        )

    @cached_property
    def _splitter(self) -> OffsetSplitter:
        """Built on the first split: langchain's import is about 0.5 s, and a run whose
        inputs are all unchanged never splits."""
        from corpusflow.splitter import OffsetSplitter

        size, overlap = self.spec.chunk_size, self.spec.chunk_overlap
        splitter = OffsetSplitter(
            chunk_size=size, chunk_overlap=overlap, length_function=self._count
        )
        additive = self._additive() if callable(self._additive) else self._additive
        splitter.additive_at_whitespace = self.spec.mode == "tokens" and additive
        return splitter

    def _fits(self, text: str, tokens: int | None = None) -> bool:
        """Within both limits; `tokens` is `text`'s count when it is already known."""
        count = self._count(text) if tokens is None else tokens
        return count <= self.spec.chunk_size and len(text.encode("utf-8")) <= self.max_text_bytes

    def _counts(self, pieces: list[tuple[int, str, int | None]]) -> list[int | None]:
        """Each piece's token count: the splitter's where it is exact, the rest in one call
        where the embedder counts many at once (else None: `_fits` counts it)."""
        counts = [known for _, _, known in pieces]
        todo = [i for i, known in enumerate(counts) if known is None]
        if self._count_many is not None and todo:
            for i, n in zip(todo, self._count_many([pieces[i][1] for i in todo]), strict=True):
                counts[i] = n
        return counts

    def _limit_splitter(self, tokens: int) -> OffsetSplitter:
        """A splitter whose chunks stay within `tokens` and the byte limit, as it measures
        them (sums over pieces). Lengths in integer units of 1/max_text_bytes token."""
        if tokens not in self._splitters:
            limit, count = self.max_text_bytes, self._count

            def within_both(text: str) -> int:
                return max(count(text) * limit, len(text.encode("utf-8")) * tokens)

            from corpusflow.splitter import OffsetSplitter

            self._splitters[tokens] = OffsetSplitter(
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
        pieces = self._splitter.split_with_lengths(text)
        for (start, piece, _), tokens in zip(pieces, self._counts(pieces), strict=True):
            if start < covered:
                rest = text[covered : start + len(piece)]
                if not rest.strip():
                    continue
                start, piece, tokens = start + len(piece) - len(rest.lstrip()), rest.strip(), None
            if self._fits(piece, tokens):
                located.append((start, piece))
                continue
            located.extend(self._fit(start, piece))
            covered = start + len(piece)
        return located


def _seconds(doc: Document, offsets: list[int], start: int, end: int) -> tuple[float, float]:
    """Seconds covered by characters [start, end): first to last overlapping segment."""
    first = max(bisect_right(offsets, start) - 1, 0)
    last = max(bisect_right(offsets, max(end - 1, start)) - 1, first)
    segs = doc.segments[first : last + 1]
    return segs[0].start, max(s.end for s in segs)
