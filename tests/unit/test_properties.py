"""Property tests (hypothesis) on the parsers and the chunker.

Parsers: any bytes at all, under any transcript extension, give exactly one Document,
Reject or Skipped and never raise; any CSV gives one item per data row.

Chunker, the exact property ("nothing lost"): placing every chunk at its `start_char`
reproduces the document. Each chunk equals the document text at that offset, chunks are
in document order (`start_char` non-decreasing with `chunk_index`: after the splitter strips
whitespace, a chunk can start where the previous one starts), and every character that no
chunk covers is whitespace: the splitter trims whitespace at chunk seams and drops nothing
else. Equivalently, concatenating the chunks minus their overlaps (the part of each chunk
before the furthest end reached so far) gives the document text with only whitespace
removed at the seams. Timestamps: for timed transcripts
`start_seconds` never decreases with `chunk_index`, and `start_seconds <= end_seconds`.
Here: the parsers and the character chunker; the token chunker and the timestamps, with the
real model's tokenizer, are in tests/integration/test_properties_tokens.py.
"""

from __future__ import annotations

import csv
import io
import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from chunk_properties import SETTINGS, TEXT, assert_reproduces, make_doc
from corpusflow.chunking import Chunker, resolve_spec
from corpusflow.config import Chunking
from corpusflow.models import Document, Reject, Skipped
from corpusflow.sources.articles import iter_articles
from corpusflow.sources.transcripts import iter_transcripts

# --- building blocks that reach past the first line of each parser -------------------------
_TIMES = st.sampled_from(
    ["00:00:01.000", "00:01.500", "00:00:00,000", "01:02:03,456", "00:00:05.000", "99:59:59.999"]
    + ["00:0x:02", "-00:00:01.000", "00:00:02", "1", ""]
)
_WORDS = st.sampled_from(
    ["hello", "world", "<i>tag</i>", "&amp;", "<00:00:01.320><c>", "🎉", "שלום", "", " ", "NOTE"]
)
_CUE = st.builds(
    lambda n, a, b, words: f"{n}\n{a} --> {b}\n{' '.join(words)}\n",
    st.integers(0, 5),
    _TIMES,
    _TIMES,
    st.lists(_WORDS, max_size=4),
)
_SUBTITLE = st.builds(
    lambda head, cues, sep: head + sep.join(cues),
    st.sampled_from(["WEBVTT\n\n", "\ufeffWEBVTT - x\n\n", "", "WEBVTT"]),
    st.lists(_CUE, max_size=5),
    st.sampled_from(["\n", "\r\n", "\n\n"]),
)
_JSON_LIKE = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["text", "start", "duration", "end", "segments", "id"]),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)
_ENCODINGS = st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "latin-1"])


def _json_text(value) -> str:
    import json

    return json.dumps(value, allow_nan=True)


def _encode(text: str, encoding: str) -> bytes:
    return text.encode(encoding, errors="replace")


ARBITRARY_FILE = st.one_of(
    st.binary(max_size=2048),
    st.builds(_encode, _SUBTITLE, _ENCODINGS),
    st.builds(_encode, st.builds(_json_text, _JSON_LIKE), _ENCODINGS),
    st.builds(_encode, st.text(max_size=300), _ENCODINGS),
)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("props")


@pytest.mark.parametrize("suffix", [".vtt", ".srt", ".json", ".txt"])
def test_any_bytes_give_exactly_one_item_and_never_raise(scratch, suffix):
    @SETTINGS
    @given(data=ARBITRARY_FILE)
    def check(data: bytes) -> None:
        path = scratch / f"input{suffix}"
        path.write_bytes(data)
        items = list(iter_transcripts([path]))  # must not raise
        assert len(items) == 1
        item = items[0]
        assert isinstance(item, Document | Reject | Skipped)
        if isinstance(item, Reject):
            assert item.reason and "\n" not in item.reason and len(item.reason) <= 300
            assert not item.reason.startswith("unexpected error"), item.reason
            return
        assert isinstance(item, Document)
        assert item.text.strip() and "\x00" not in item.text
        starts = [s.start for s in item.segments]
        assert starts == sorted(starts)
        for seg in item.segments:
            assert 0 <= seg.start <= seg.end and math.isfinite(seg.end) and seg.text

    check()


_CELL = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=30,
) | st.sampled_from(["", "NaN", " ", '"', ",", "\n", "\r\n", "1", "a,b"])


@SETTINGS
@given(
    rows=st.lists(st.lists(_CELL, min_size=1, max_size=5), max_size=12),
    line_end=st.sampled_from(["\n", "\r\n"]),
    bom=st.booleans(),
)
def test_every_csv_data_row_ends_as_exactly_one_item(scratch, rows, line_end, bom):
    # a row whose only cell is empty would be a blank line: not a row at all
    assume(all(row != [""] for row in rows))
    out = io.StringIO()
    # with "\n" line ends the csv module leaves a bare "\r" unquoted (a line break to any
    # reader): quote every field then
    quoting = csv.QUOTE_MINIMAL if line_end == "\r\n" else csv.QUOTE_ALL
    writer = csv.writer(out, lineterminator=line_end, quoting=quoting)
    writer.writerow(["id", "title", "text"])
    writer.writerows(rows)
    path = scratch / "rows.csv"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + out.getvalue().encode("utf-8"))
    items = list(iter_articles([path]))  # must not raise
    assert len(items) == len(rows)
    for n, (item, row) in enumerate(zip(items, rows, strict=True), 1):
        assert isinstance(item, Document | Reject | Skipped)
        if isinstance(item, Reject):
            assert f"row {n}" in (item.locator or item.reason), (item, n)
            assert not item.reason.startswith("unexpected error")
        if len(row) != 3:
            assert isinstance(item, Reject) and "fields, expected 3" in item.reason
        elif isinstance(item, Document):
            assert item.text == row[2].replace("\r\n", "\n").replace("\r", "\n").strip()
            assert item.origin.endswith(f"row {n}")


@SETTINGS
@given(data=st.binary(max_size=4096))
def test_any_bytes_as_csv_never_raise(scratch, data):
    path = scratch / "any.csv"
    path.write_bytes(data)
    for item in iter_articles([path]):
        assert isinstance(item, Document | Reject | Skipped)
        if isinstance(item, Document):
            assert item.text and "\x00" not in item.text


# --- the chunker -----------------------------------------------------------------------------
@SETTINGS
@given(
    text=TEXT,
    size=st.integers(2, 60),
    overlap_part=st.floats(0, 0.9),
    max_bytes=st.sampled_from([65_535, 40]),
)
def test_character_chunks_reproduce_the_text(text, size, overlap_part, max_bytes):
    spec = resolve_spec(
        Chunking(mode="characters", chunk_size=size, chunk_overlap=int(size * overlap_part)),
        "m",
        None,
    )
    chunks = Chunker(spec, max_text_bytes=max_bytes).split(make_doc(text))
    assert_reproduces(text, chunks)
    assert all(len(c.text) <= size for c in chunks)
