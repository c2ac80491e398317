"""The chunker: token limits, offsets, seconds, byte limits, deterministic ids."""

from __future__ import annotations

from corpusflow.chunking import MAX_TEXT_BYTES, Chunker, resolve_spec
from corpusflow.config import Chunking
from corpusflow.ids import chunk_id
from corpusflow.models import Document, Segment


def _doc(text: str, **kw) -> Document:
    return Document(source_id="file:x.txt", source_type="transcript", text=text, **kw)


PROSE = " ".join(
    f"Sentence number {i} talks about rivers, mountains and the weather in spring."
    for i in range(200)
)


def test_token_mode_never_exceeds_model_limit(embedder):
    spec = resolve_spec(Chunking(), embedder.model_id, embedder.max_tokens)
    assert spec.chunk_size == embedder.max_tokens == 254
    chunks = Chunker(spec, embedder.count_tokens).split(_doc(PROSE))
    assert len(chunks) > 5
    # the model's own tokenizer, with [CLS]/[SEP], stays within 256: nothing is truncated
    assert max(embedder.count_tokens(c.text) for c in chunks) + 2 <= 256


def test_start_char_points_at_the_chunk_even_in_repetitive_text(embedder):
    text = "the same words again and again. " * 400
    for settings in (Chunking(), Chunking(mode="characters", chunk_size=300, chunk_overlap=40)):
        spec = resolve_spec(settings, embedder.model_id, embedder.max_tokens)
        chunks = Chunker(spec, embedder.count_tokens).split(_doc(text.strip()))
        starts = [c.start_char for c in chunks]
        assert starts == sorted(starts) and len(set(starts)) == len(starts)
        for c in chunks:
            assert text[c.start_char : c.start_char + len(c.text)] == c.text
        # the last chunk ends where the text ends: offsets did not stall on an earlier copy
        assert chunks[-1].start_char + len(chunks[-1].text) == len(text.strip())


def test_character_mode_classic_settings():
    spec = resolve_spec(Chunking(mode="characters"), "m", None)
    assert (spec.chunk_size, spec.chunk_overlap) == (1000, 50)
    chunks = Chunker(spec).split(_doc(PROSE))
    assert max(len(c.text) for c in chunks) <= 1000
    covered = "".join(
        c.text[max(0, (chunks[i - 1].start_char + len(chunks[i - 1].text)) - c.start_char) :]
        if i
        else c.text
        for i, c in enumerate(chunks)
    )
    # concatenated minus overlaps gives back the text, up to the whitespace at the seams
    assert covered.replace(" ", "") == PROSE.replace(" ", "")


def test_transcript_chunk_seconds_match_their_cues(embedder):
    segments = [
        Segment(i * 4.0, i * 4.0 + 3.5, f"cue {i} says word{i} plainly") for i in range(300)
    ]
    doc = Document.from_segments(
        segments, source_id="youtube:abcdefghijk", source_type="transcript"
    )
    spec = resolve_spec(Chunking(), embedder.model_id, embedder.max_tokens)
    chunks = Chunker(spec, embedder.count_tokens).split(doc)
    assert len(chunks) > 3

    def cue_at(pos: int) -> int:  # which cue holds character `pos`, found by counting cues
        return doc.text[: pos + 4].count("cue ") - 1

    for c in chunks:
        assert c.start_seconds == segments[cue_at(c.start_char)].start
        assert c.end_seconds == segments[cue_at(c.start_char + len(c.text) - 1)].end


def test_text_over_the_varchar_limit_is_split_not_cut():
    huge_word = "x" * (MAX_TEXT_BYTES + 5000)  # one "word": the recursive splitter cannot break it
    spec = resolve_spec(Chunking(mode="characters", chunk_size=200_000, chunk_overlap=0), "m", None)
    chunks = Chunker(spec).split(_doc(huge_word))
    assert all(len(c.text.encode()) <= MAX_TEXT_BYTES for c in chunks)
    assert "".join(c.text for c in chunks) == huge_word


def test_ids_are_deterministic_and_depend_on_text(embedder):
    spec = resolve_spec(Chunking(), embedder.model_id, embedder.max_tokens)
    chunker = Chunker(spec, embedder.count_tokens)
    a, b = chunker.split(_doc(PROSE)), chunker.split(_doc(PROSE))
    assert [c.id for c in a] == [c.id for c in b]
    assert a[0].id == chunk_id("file:x.txt", 0, a[0].text)
    changed = chunker.split(_doc("A new opening sentence. " + PROSE))
    assert changed[0].id != a[0].id


def test_chunker_settings_change_the_digest(embedder):
    base = resolve_spec(Chunking(), embedder.model_id, embedder.max_tokens)
    assert base.digest == resolve_spec(Chunking(), embedder.model_id, embedder.max_tokens).digest
    other = resolve_spec(Chunking(chunk_size=128), embedder.model_id, embedder.max_tokens)
    assert other.digest != base.digest
