"""What the chunker property tests share (tests/unit/test_properties.py for characters,
tests/integration/test_properties_tokens.py for the model's tokens): the texts hypothesis
draws, its settings, and the exact "nothing lost" property."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from corpusflow.models import Document

SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

_PROSE = st.lists(
    st.sampled_from(list("ab c\n\t.,") + ["é", "€", "🎉", "שׁ", "\u200f", "xyzzy", "  \n\n"]),
    max_size=200,
).map("".join)
_REPETITIVE = st.builds(
    lambda unit, n, tail: unit * n + tail,
    st.text(alphabet="ab .\n", min_size=1, max_size=6),
    st.integers(1, 80),
    st.text(alphabet="ab .\n", max_size=5),
)
TEXT = st.one_of(_PROSE, _REPETITIVE, st.text(alphabet=string.printable, max_size=300))


def assert_reproduces(text: str, chunks) -> None:
    """The exact property stated in the module docstring."""
    assert [c.chunk_index for c in chunks] == list(range(len(chunks)))
    starts = [c.start_char for c in chunks]
    assert starts == sorted(starts), starts
    covered = [False] * len(text)
    for c in chunks:
        assert c.text and c.text == c.text.strip()
        assert text[c.start_char : c.start_char + len(c.text)] == c.text, c
        covered[c.start_char : c.start_char + len(c.text)] = [True] * len(c.text)
    lost = [ch for ch, seen in zip(text, covered, strict=True) if not seen and not ch.isspace()]
    assert lost == [], lost
    # the same, as concatenation minus overlaps
    rebuilt, end = "", 0
    for c in chunks:
        rebuilt += c.text[max(0, end - c.start_char) :]
        end = max(end, c.start_char + len(c.text))
    assert "".join(rebuilt.split()) == "".join(text.split())


def make_doc(text: str, segments=()) -> Document:
    if segments:
        return Document.from_segments(list(segments), source_id="s", source_type="transcript")
    return Document(source_id="s", source_type="transcript", text=text)
