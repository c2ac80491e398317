"""Property tests (hypothesis) on the chunker with the real model's tokenizer (the parsers' and
the character chunker's properties are in tests/unit/test_properties.py).

The exact property ("nothing lost"): placing every chunk at its `start_char` reproduces the
document. Each chunk equals the document text at that offset, chunks are in document order,
and every character that no chunk covers is whitespace the splitter trimmed at a seam.
Timestamps: for timed transcripts `start_seconds` never decreases with `chunk_index`, and
`start_seconds <= end_seconds`; the offset splitter gives exactly the library's chunks.
"""

from __future__ import annotations

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from chunk_properties import SETTINGS, TEXT, assert_reproduces, make_doc
from corpusflow.chunking import Chunker, resolve_spec
from corpusflow.config import Chunking
from corpusflow.models import Document, Segment
from corpusflow.sources.transcripts import iter_transcripts


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("props")


# --- the chunker -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def count_tokens(embedder):
    return embedder.count_tokens


@SETTINGS
@given(
    text=TEXT,
    size=st.integers(4, 48),
    overlap_part=st.floats(0, 0.5),
    max_bytes=st.sampled_from([65_535, 64, 24]),
)
def test_token_chunks_reproduce_the_text(
    count_tokens, embedder, text, size, overlap_part, max_bytes
):
    settings_ = Chunking(chunk_size=size, chunk_overlap=int(size * overlap_part))
    spec = resolve_spec(settings_, embedder.model_id, embedder.max_tokens)
    chunks = Chunker(spec, count_tokens, max_text_bytes=max_bytes).split(make_doc(text))
    assert_reproduces(text, chunks)
    # the ingest's chunker counts a document's chunks in one call or takes the splitter's
    # exact sums (`for_embedder`): exactly the chunks of counting them one by one
    assert (
        Chunker.for_embedder(spec, embedder, max_text_bytes=max_bytes).split(make_doc(text))
        == chunks
    )
    for c in chunks:
        assert len(c.text.encode("utf-8")) <= max_bytes
        if max_bytes == 65_535:  # the model never sees more than its limit
            assert count_tokens(c.text) <= spec.chunk_size


_WORDS = ["word", "wörd", "\u0301a", "日本", "🎉", "x" * 120, "[MASK]", "a.b", "\u200f", "é"]
_SPACED = st.lists(
    st.tuples(st.sampled_from(_WORDS), st.sampled_from([" ", "\n", "\n\n", "  ", " \n", "\t"])),
    max_size=120,
).map(lambda pairs: "".join(w + s for w, s in pairs))


@SETTINGS
@given(text=st.one_of(TEXT, _SPACED), size=st.integers(2, 48))
def test_the_splitters_own_sums_are_the_tokenizers_counts(count_tokens, embedder, text, size):
    """A chunk merged at whitespace is not counted again: the sum the splitter added up
    must be exactly the tokenizer's count of the chunk, and the chunks are the library's."""
    from corpusflow.splitter import OffsetSplitter

    exact = OffsetSplitter(chunk_size=size, chunk_overlap=size // 4, length_function=count_tokens)
    exact.additive_at_whitespace = embedder.additive_at_whitespace
    found = exact.split_with_lengths(text)
    assert [(s, c) for s, c, _ in found] == exact.split_with_offsets(text)
    assert [c for _, c, _ in found] == exact.split_text(text)
    for _, chunk, tokens in found:
        assert tokens is None or tokens == count_tokens(chunk), (chunk, tokens)


def test_merged_chunks_of_prose_need_no_second_count(embedder):
    """MiniLM's tokenizer is additive at whitespace, so prose chunks carry their counts."""
    from corpusflow.splitter import OffsetSplitter

    assert embedder.additive_at_whitespace
    splitter = OffsetSplitter(chunk_size=32, chunk_overlap=4, length_function=embedder.count_tokens)
    splitter.additive_at_whitespace = True
    prose = " ".join(f"Sentence {i} is about rivers and the weather." for i in range(60))
    found = splitter.split_with_lengths(prose)
    assert len(found) > 5 and all(tokens is not None for _, _, tokens in found)


_SEGMENT = st.builds(
    lambda start, length, text: Segment(round(start, 3), round(start + length, 3), text),
    st.floats(0, 5000, allow_nan=False),
    st.floats(0, 30, allow_nan=False),
    st.text(alphabet="ab cd\n🎉", max_size=40),
)


@SETTINGS
@given(segments=st.lists(_SEGMENT, max_size=30), size=st.integers(4, 40))
def test_chunk_timestamps_are_monotonic(count_tokens, embedder, segments, size):
    segments = sorted(segments, key=lambda s: s.start)  # as every transcript parser yields them
    doc = make_doc("", segments)
    assume(doc.text)
    spec = resolve_spec(Chunking(chunk_size=size), embedder.model_id, embedder.max_tokens)
    chunks = Chunker(spec, count_tokens).split(doc)
    assert_reproduces(doc.text, chunks)
    starts = [c.start_seconds for c in chunks]
    assert starts == sorted(starts)
    first, last = doc.segments[0].start, max(s.end for s in doc.segments)
    for c in chunks:
        assert first <= c.start_seconds <= c.end_seconds <= last


def _clock(ms: int, comma: bool) -> str:
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    sec, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{sec:02d}{',' if comma else '.'}{ms:03d}"


def _subtitle_file(cues: list[tuple[int, int, str]], srt: bool) -> str:
    blocks = [
        f"{n}\n{_clock(start, srt)} --> {_clock(start + length, srt)}\n{text}\n"
        for n, (start, length, text) in enumerate(cues, 1)
    ]
    return ("" if srt else "WEBVTT\n\n") + "\n".join(blocks)


_VALID_CUES = st.lists(
    st.tuples(
        st.integers(0, 10_000_000),
        st.integers(0, 60_000),
        st.lists(
            st.sampled_from(["hello", "world", "🎉", "שלום", "<i>x</i>", "a b"]),
            min_size=1,
            max_size=6,
        ).map(" ".join),
    ),
    min_size=1,
    max_size=25,
)


@SETTINGS
@given(cues=_VALID_CUES, srt=st.booleans())
def test_parsed_subtitles_chunk_into_monotonic_timestamps(
    scratch, count_tokens, embedder, cues, srt
):
    """Valid cues in any order, overlapping or not: parsed, then chunked."""
    path = scratch / ("timed.srt" if srt else "timed.vtt")
    path.write_text(_subtitle_file(cues, srt), encoding="utf-8")
    (item,) = iter_transcripts([path])
    assert isinstance(item, Document) and item.segments, item
    spec = resolve_spec(Chunking(chunk_size=8, chunk_overlap=2), embedder.model_id, 254)
    chunks = Chunker(spec, count_tokens).split(item)
    assert_reproduces(item.text, chunks)
    starts = [c.start_seconds for c in chunks]
    assert starts == sorted(starts)
    assert all(c.start_seconds <= c.end_seconds for c in chunks)


@SETTINGS
@given(
    text=TEXT,
    size=st.integers(1, 60),
    overlap_part=st.floats(0, 0.9),
    tokens=st.booleans(),
)
def test_offset_splitter_gives_exactly_the_librarys_chunks(
    count_tokens, text, size, overlap_part, tokens
):
    """Chunk texts (and so chunk ids) are langchain's own; only their offsets are added."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    from corpusflow.splitter import OffsetSplitter

    kwargs = {
        "chunk_size": size,
        "chunk_overlap": min(int(size * overlap_part), size - 1),
        "length_function": count_tokens if tokens else len,
    }
    ours = OffsetSplitter(**kwargs).split_with_offsets(text)
    assert [piece for _, piece in ours] == RecursiveCharacterTextSplitter(**kwargs).split_text(text)
    for start, piece in ours:
        assert text[start : start + len(piece)] == piece
