"""How the OpenAI-compatible embedder uses the wire: base64 vectors decoded exactly (and float
answers still taken), broken base64 refused, one call split into concurrent requests, and the
concurrency bound shared by calls running at once. Against tests/openai_stub.py.
"""

from __future__ import annotations

import base64
import json
import threading

import numpy as np
import pytest

from corpusflow.embedding import EmbeddingError
from corpusflow.embedding.packing import Limits, inputs_per_request
from openai_stub import Fault, hash_vector, serve
from test_openai_embedder import expected, make, texts_


def float32_vectors(texts: list[str], dimensions: int | None) -> list[list[float]]:
    """Hash vectors whose values are float32 numbers (as a real model's are), so the JSON
    float and the base64 encodings carry exactly the same values."""
    return np.asarray([hash_vector(t, dimensions or 16) for t in texts], "<f4").tolist()


# -- base64 ----------------------------------------------------------------------------------


def test_base64_is_asked_for_and_decodes_to_the_float_answers_bits():
    texts = texts_(50)
    with (
        serve(vectors=float32_vectors) as b64,
        serve(vectors=float32_vectors, floats_only=True) as fl,
    ):
        from_b64 = np.asarray(make(b64, max_concurrency=2).embed(texts), dtype=np.float32)
        from_floats = np.asarray(make(fl, max_concurrency=2).embed(texts), dtype=np.float32)
        assert {s.encoding_format for s in b64.requests + fl.requests} == {"base64"}
        assert fl.violations == b64.violations == []
    # the server that ignored the request answered JSON floats: taken as well, same bits
    assert np.array_equal(from_b64, from_floats)
    np.testing.assert_allclose(from_b64, expected(texts), atol=1e-6)
    sent = np.asarray(float32_vectors(texts, 16), np.float64)
    unit = (sent / np.linalg.norm(sent, axis=1, keepdims=True)).astype(np.float32)
    assert np.array_equal(from_b64, unit)  # decoded exactly, then scaled like the float path


def _answer(*embeddings: str) -> Fault:
    data = [{"object": "embedding", "index": i, "embedding": e} for i, e in enumerate(embeddings)]
    return Fault.raw(json.dumps({"object": "list", "model": "m", "data": data}))


def _b64(values: list[float]) -> str:
    return base64.b64encode(np.asarray(values, "<f4").tobytes()).decode()


GOOD = _b64([0.5] * 16)
BROKEN_BASE64 = {
    "truncated by one value": (_b64([0.5] * 15), r"vector 1 has 15 float32 values.*others 16"),
    "truncated mid-character": (GOOD[:-5], r"vector 1 is not valid base64"),
    "cut inside a value": (GOOD[:20], r"vector 1 is 15 bytes of base64, not whole"),
    "garbled characters": (GOOD[:10] + "!?" + GOOD[12:], r"vector 1 is not valid base64"),
    "all vectors short": (_b64([0.5] * 8), r"got 8-dimensional vectors, expected 16"),
}


@pytest.mark.parametrize("case", list(BROKEN_BASE64))
def test_a_truncated_or_garbled_base64_vector_is_refused(case: str):
    broken, message = BROKEN_BASE64[case]
    second = [broken, broken] if case == "all vectors short" else [GOOD, broken]
    with serve() as stub:
        stub.inject(_answer(*second))
        emb = make(stub, max_retries=0)
        with pytest.raises(EmbeddingError, match=message):
            emb.embed(["one", "two"])
        assert emb.inputs_embedded == 0  # nothing of that answer was handed back


# -- sizing and concurrency ------------------------------------------------------------------


def test_one_call_fills_max_concurrency_requests_at_once():
    texts = texts_(200)
    # the server holds requests until 4 are waiting: if the call sent them one by one, or
    # as one packed request, a group would never fill and the order below would not hold
    with serve(reverse_groups=4) as stub:
        vectors = make(stub, max_concurrency=4).embed(texts)
        assert [len(s.inputs) for s in stub.requests] == [50] * 4
        assert stub.peak_in_flight == 4 and stub.completed == [3, 2, 1, 0]
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)
    with serve() as stub:
        make(stub, max_concurrency=4).embed(texts[:40])  # too few to split: one request
        assert [len(s.inputs) for s in stub.requests] == [40]


def test_request_sizes_are_balanced_and_within_the_limits():
    sizes = {n: inputs_per_request(n, Limits(2048, 300_000, 8192, 4, 32)) for n in (1, 63, 100)}
    assert sizes == {1: 1, 63: 63, 100: 34}  # fewer requests than workers for few inputs
    assert inputs_per_request(10_000, Limits(2048, 300_000, 8192, 4, 32)) == 2000  # 5 requests
    assert inputs_per_request(370, Limits(2048, 300_000, 8192, 4, 32)) == 93


def test_calls_running_at_once_share_the_concurrency_bound():
    with serve(delay=(0.1, 0.1)) as stub:
        emb = make(stub, max_concurrency=2)
        start = threading.Barrier(2)
        results: dict[str, list[list[float]]] = {}

        def call(name: str) -> None:
            texts = texts_(64, name)  # two requests of 32 per call
            start.wait()
            results[name] = emb.embed(texts)

        threads = [threading.Thread(target=call, args=(n,)) for n in ("left", "right")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(stub.requests) == 4 and stub.peak_in_flight == 2
    for name, vectors in results.items():
        np.testing.assert_allclose(vectors, expected(texts_(64, name)), atol=1e-6)


def test_exact_counts_only_when_a_limit_or_budget_needs_them():
    texts = texts_(40)
    with serve() as stub:
        emb = make(stub)
        emb.embed(texts)  # the UTF-8 bounds fit every limit: the ranks are never loaded
        assert emb._counter is None and emb.usage()["token_counter"] == "utf8-bytes"
        assert emb.tokens_used == sum(s.tokens for s in stub.answered())  # the server's
        budget = make(stub, tokens_per_minute=100_000)  # the gate needs real counts
        assert [b.counted for b in budget.plan(texts)] == [True]
        tight = make(stub, max_batch_tokens=60)  # the bounds would split: count instead
        batches = tight.plan(texts)
        assert all(b.counted and b.tokens <= 60 for b in batches)
        assert sum(b.stop - b.start for b in batches) == 40
