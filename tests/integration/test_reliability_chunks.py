"""Every chunk fits the model's input limit as counted on the chunk's own text.

The splitter adds up the counts of the pieces it merges, but a BPE count of the finished
chunk can be larger: stripping the space before a chunk's first word changes how that word
is tokenized (cl100k_base counts " 포b" as 2 tokens and "포b" as 4). With the OpenAI-compatible
provider at OpenAI's own limit (8,192 tokens per input), a long document then gave chunks
of 8,194 tokens, the request planner refused them, and the run failed on every retry.
Real parts: the shipped cl100k_base ranks, Milvus Lite, a local OpenAI-compatible server
that counts tokens itself and records any input over its limit.
"""

from __future__ import annotations

from corpusflow.config import Env
from corpusflow.embedding import make_embedder
from corpusflow.embedding.tokens import counter_for_model
from corpusflow.models import Document
from corpusflow.pipeline import ingest
from openai_stub import openai_settings, serve

WORD = "포b"  # 4 tokens alone, 2 after a space


def test_a_long_document_ingests_through_the_openai_provider_at_its_real_limit(make_ctx):
    count = counter_for_model("text-embedding-3-small").count
    assert (count(WORD), count(" " + WORD)) == (4, 2)
    text = "A long document.\n\n" + " ".join([WORD] * 12_000) + "\n\nAnd its last line."
    doc = Document(
        source_id="file:long.txt", source_type="transcript", text=text, title="Long", origin="x"
    )
    with serve(max_input_tokens=8192) as stub:
        ctx = make_ctx(
            embedding=openai_settings(stub, model="text-embedding-3-small", dimensions=16)
        )
        ctx._embedder = make_embedder(ctx.params.embedding, Env())
        assert ctx.chunker_spec().chunk_size == 8192
        result = ingest(ctx, [doc])
        assert stub.violations == []
    assert result.rejected == 0 and result.upserted == result.chunks >= 3
    rows = list(ctx.store.iter_rows(ctx.target, ["text", "start_char", "chunk_index"]))
    assert len(rows) == result.chunks
    assert max(count(r["text"]) for r in rows) <= 8192
    for r in rows:  # nothing cut: each chunk is the document's text at its offset
        assert text[r["start_char"] : r["start_char"] + len(r["text"])] == r["text"]
    covered = sorted((r["start_char"], r["start_char"] + len(r["text"])) for r in rows)
    end = 0
    for start, stop in covered:  # and only whitespace between chunks
        assert text[end:start].strip() == ""
        end = max(end, stop)
    assert text[end:].strip() == ""


# mixed scripts, symbols and unassigned code points: seeds found where the old chunker gave
# a chunk one token over the limit at chunk_size 16 (the same seam effect, at a small size)
RANGES = [(0x4E00, 0x9FFF), (0x1F300, 0x1F6FF), (0x0400, 0x04FF), (0x0300, 0x036F)]
RANGES += [(0x0E00, 0x0E7F), (0xAC00, 0xD7A3), (32, 32), (10, 10)]


def mixed_text(seed: int, n: int = 400) -> str:
    import random

    rng = random.Random(seed)
    return "".join(chr(rng.randint(*rng.choice(RANGES))) for _ in range(n))


def test_no_chunk_of_mixed_script_text_exceeds_the_limit_as_counted_on_itself():
    from corpusflow.chunking import Chunker, ChunkerSpec

    count = counter_for_model("text-embedding-3-small").count
    for size, overlap in [(16, 0), (16, 4), (48, 8)]:
        chunker = Chunker(ChunkerSpec("tokens", size, overlap, "m"), count)
        for seed in [31, 48, 125, *range(20)]:
            text = mixed_text(seed)
            doc = Document(source_id="s", source_type="transcript", text=text, title="", origin="")
            chunks = chunker.split(doc)
            assert all(count(c.text) <= size for c in chunks), (size, seed)
            for c in chunks:
                assert text[c.start_char : c.start_char + len(c.text)] == c.text
