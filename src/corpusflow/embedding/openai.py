"""OpenAI-compatible embeddings: packed to the API's limits, concurrent, retried under rate limits.

Works with any server speaking `POST {base_url}/embeddings` (OpenAI, Azure OpenAI's v1 API,
vLLM, Ollama, TEI, ...). The endpoint comes from OPENAI_BASE_URL (or params
`embedding.base_url`), the key from OPENAI_API_KEY only.

Retries are ours, not the client's (it is built with `max_retries=0`): tenacity drives them so
that (1) a 429's Retry-After pauses every worker thread, not just the one that got it, (2) the
backoff is configurable beyond the client's fixed 0.5-8 s, (3) a quota-exhausted 429 or a
Retry-After longer than we are willing to wait fails at once with a clear message, and (4)
each retry is logged with the batch it concerns and the final error counts the attempts.

Results stream out per request through `embed_batches`, so a caller can persist each batch
(EmbeddingCache) as it lands: a persistent failure loses only the batches that failed.

One call is split into about `max_concurrency` requests (packing.py), so a single `embed`
keeps the endpoint's concurrency busy; the bound holds across calls running at once. Vectors
are asked for as base64 float32 (a quarter of the JSON's bytes, decoded by numpy without a
float parser); a server that ignores that and answers floats is accepted as well.
"""

from __future__ import annotations

import json
import logging
import random
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import openai
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from corpusflow.config import Embedding, Env
from corpusflow.embedding.base import EmbeddingError
from corpusflow.embedding.packing import Batch, Limits, plan_requests
from corpusflow.embedding.ratelimit import (  # noqa: F401 - _Cancelled: re-exported
    RateGate,
    _Cancelled,
    _sleep_unless,
    retry_after,
)
from corpusflow.embedding.tokens import ByteCounter, TokenCounter, counter_for_model
from corpusflow.embedding.vectors import VectorError, base64_vectors, unit_vectors
from corpusflow.redact import redact, safe_url

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.openai.com/v1"
# Keyless local servers (vLLM, Ollama, TEI) ignore the key, but the client must send one.
PLACEHOLDER_KEY = "unused"
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
PRICE_PER_MILLION_TOKENS = {  # USD, list prices
    "text-embedding-3-small": 0.02,
    "text-embedding-3-large": 0.13,
    "text-embedding-ada-002": 0.10,
}
RETRY_STATUSES = frozenset({408, 409, 429})  # plus every 5xx


@dataclass(frozen=True)
class RetryEvent:
    """A retry that happened: which request, after which attempt, why, and how long we waited."""

    request: int
    attempt: int
    reason: str
    delay: float


def _status(exc: BaseException) -> int | None:
    return exc.status_code if isinstance(exc, openai.APIStatusError) else None


class OpenAIEmbedder:
    """Embeds through an OpenAI-compatible `/embeddings` endpoint with the official client."""

    backoff_initial = 0.5  # seconds before the first retry when the server gives no Retry-After
    backoff_max = 30.0
    max_retry_after = 300.0  # a longer Retry-After (e.g. a daily quota) fails instead of hanging
    min_request_inputs = 32  # a call is split for concurrency down to requests of this size

    def __init__(
        self,
        settings: Embedding,
        env: Env,
        *,
        backoff_initial: float | None = None,
        backoff_max: float | None = None,
    ):
        self.settings = settings
        self.model_id = settings.model
        self.base_url = env.openai_base_url or settings.base_url or DEFAULT_BASE_URL
        if urlsplit(self.base_url).scheme not in ("http", "https"):
            raise EmbeddingError(f"embedding base URL must be http(s): {safe_url(self.base_url)}")
        self._key = (env.openai_api_key or "").strip() or None
        if backoff_initial is not None:
            self.backoff_initial = backoff_initial
        if backoff_max is not None:
            self.backoff_max = backoff_max
        self._name = settings.model.rsplit("/", 1)[-1]
        self._expected_dim = settings.dimensions or KNOWN_DIMENSIONS.get(self._name)
        self._dimension: int | None = self._expected_dim
        self._counter: TokenCounter | None = None
        self._client: openai.OpenAI | None = None
        self._lock = threading.Lock()
        self.gate = RateGate(settings.tokens_per_minute, concurrency=settings.max_concurrency)
        self.requests = 0  # attempts sent, retries included
        self.tokens_used = 0
        self.inputs_embedded = 0
        self.retry_events: list[RetryEvent] = []

    def __repr__(self) -> str:
        return f"OpenAIEmbedder(model={self.model_id!r}, base_url={safe_url(self.base_url)!r})"

    # -- the Embedder protocol -------------------------------------------------------------

    @property
    def dimension(self) -> int:
        """params.dimensions, else the known size of OpenAI's models, else probed once."""
        if self._dimension is None:
            self.embed(["dimension probe"])
        assert self._dimension is not None
        return self._dimension

    @property
    def max_tokens(self) -> int:
        return self.settings.max_input_tokens

    @property
    def token_counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = counter_for_model(self.settings.model)
        return self._counter

    def count_tokens(self, text: str) -> int:
        """cl100k_base count (exact for OpenAI's models), or a UTF-8 upper bound; see tokens.py."""
        return self.token_counter.count(text)

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit vectors for `texts`, in input order."""
        out: list[list[float] | None] = [None] * len(texts)
        for indexes, vectors in self.embed_batches(texts):
            for i, vector in zip(indexes, vectors, strict=True):
                out[i] = vector
        assert all(v is not None for v in out)
        return out  # type: ignore[return-value]

    # -- usage ----------------------------------------------------------------------------

    @property
    def price_per_million_tokens(self) -> float | None:
        if self.settings.price_per_million_tokens is not None:
            return self.settings.price_per_million_tokens
        return PRICE_PER_MILLION_TOKENS.get(self._name)

    @property
    def estimated_cost(self) -> float | None:
        """USD for the tokens used so far; None when the model's price is unknown."""
        price = self.price_per_million_tokens
        return None if price is None else self.tokens_used * price / 1_000_000

    def usage(self) -> dict[str, Any]:
        """Counters for the run summary (never the key)."""
        with self._lock:
            return {
                "provider": "openai",
                "model": self.model_id,
                "base_url": safe_url(self.base_url),
                "requests": self.requests,
                "retries": len(self.retry_events),
                "inputs": self.inputs_embedded,
                "tokens_used": self.tokens_used,
                # what counted for packing: the UTF-8 bound unless exact counts were needed
                "token_counter": self._counter.name if self._counter else ByteCounter.name,
                "price_per_million_tokens": self.price_per_million_tokens,
                "estimated_cost": self.estimated_cost,
            }

    # -- batching -------------------------------------------------------------------------

    def limits(self) -> Limits:
        """The request limits of params, a token budget's, and the concurrency to split for."""
        s = self.settings
        batch_tokens = min(s.max_batch_tokens, s.tokens_per_minute or s.max_batch_tokens)
        return Limits(
            max_inputs=s.max_batch_inputs,
            max_tokens=batch_tokens,
            max_input_tokens=min(s.max_input_tokens, batch_tokens),
            concurrency=s.max_concurrency,
            min_inputs=self.min_request_inputs,
        )

    def plan(self, texts: Sequence[str]) -> list[Batch]:
        """Check every input, then pack them into requests (see packing.py); nothing is sent.
        With a tokens-per-minute budget every input is counted: the gate needs real counts."""
        exact = self.settings.tokens_per_minute is not None
        return plan_requests(texts, lambda: self.token_counter, self.limits(), exact=exact)

    # -- concurrency ----------------------------------------------------------------------

    def embed_batches(self, texts: Sequence[str]) -> Iterator[tuple[list[int], list[list[float]]]]:
        """Yield (indexes into texts, their unit vectors) as each request completes.

        At most `max_concurrency` requests are in flight. If a request fails for good, no
        new ones start, those in flight finish and are yielded, then one EmbeddingError is
        raised: everything yielded before it is final, so a caller that persisted it resumes
        with only the rest.
        """
        texts = list(texts)
        batches = self.plan(texts)
        if not batches:
            return
        client = self._get_client()
        stop = threading.Event()
        todo = iter(batches)
        pending: dict[Future[list[list[float]]], Batch] = {}
        failures: list[tuple[Batch, BaseException]] = []
        workers = min(self.settings.max_concurrency, len(batches))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="corpusflow-embed")

        def submit_next() -> None:
            batch = None if failures else next(todo, None)
            if batch is not None:
                fut = pool.submit(self._run, client, texts[batch.start : batch.stop], batch, stop)
                pending[fut] = batch

        try:
            for _ in range(workers):
                submit_next()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(done, key=lambda f: pending[f].number):
                    batch = pending.pop(fut)
                    try:
                        vectors = fut.result()
                    except BaseException as exc:  # noqa: BLE001 - re-raised after draining
                        failures.append((batch, exc))
                        continue
                    submit_next()
                    yield batch.indexes, vectors
        finally:
            stop.set()  # a consumer that stopped early: in-flight retries give up
            pool.shutdown(wait=True, cancel_futures=True)
        if failures:
            batch, exc = failures[0]
            if not isinstance(exc, EmbeddingError):
                raise exc
            unsent = sum(1 for _ in todo)
            done_count = len(batches) - len(failures) - unsent
            more = f"; {len(failures) - 1} other request(s) failed too" if len(failures) > 1 else ""
            raise EmbeddingError(
                f"{exc}; {done_count} of {len(batches)} requests completed and were returned, "
                f"{unsent} not sent{more}"
            ) from None

    # -- one request, with retries --------------------------------------------------------

    def _get_client(self) -> openai.OpenAI:
        with self._lock:
            if self._client is None:
                key = self._key
                if key is None:
                    host = urlsplit(self.base_url).hostname or ""
                    if host.endswith(("openai.com", "azure.com")):
                        raise EmbeddingError(f"OPENAI_API_KEY is not set; {host} needs it")
                    log.info("OPENAI_API_KEY not set: sending a placeholder key to %s", host)
                    key = PLACEHOLDER_KEY
                timeout = self.settings.request_timeout
                self._client = openai.OpenAI(
                    api_key=key,
                    base_url=self.base_url,
                    max_retries=0,  # ours, see the module docstring
                    timeout=timeout,
                    # redirects could take the request (and key) to another host: refuse them
                    http_client=openai.DefaultHttpxClient(timeout=timeout, follow_redirects=False),
                )
            return self._client

    def close(self) -> None:
        """Close the HTTP connection pool."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _redact(self, text: str) -> str:
        return redact(text, [self._key])

    def _reason(self, exc: BaseException) -> str:
        """A short, key-free description of a failed attempt."""
        if isinstance(exc, openai.APITimeoutError):
            return f"timed out after {self.settings.request_timeout:g} s"
        if isinstance(exc, openai.APIConnectionError):
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "no response"
            return f"connection failed ({cause})"
        if isinstance(exc, openai.APIStatusError):
            body = exc.body
            detail = body.get("message") if isinstance(body, dict) else body
            detail = " ".join(str(detail or "").split())[:200]
            code = f" {exc.code}" if exc.code else ""
            return self._redact(f"HTTP {exc.status_code}{code}" + (f": {detail}" if detail else ""))
        return self._redact(f"{type(exc).__name__}: {exc}")

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, openai.APIConnectionError):  # timeouts and dropped connections
            return True
        status = _status(exc)
        if status is None:
            return False
        if status == 429 and getattr(exc, "code", None) == "insufficient_quota":
            return False  # billing, not rate: waiting will not help
        after = retry_after(exc)
        if after is not None and after > self.max_retry_after:
            return False
        return status in RETRY_STATUSES or status >= 500

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        after = retry_after(exc) if exc is not None else None
        if after is not None:
            if _status(exc) == 429:
                self.gate.pause(after)  # every worker holds, not only this one
            return after
        # exponential with "equal jitter": half fixed, half random, so threads spread out
        ceiling = min(self.backoff_max, self.backoff_initial * 2 ** (state.attempt_number - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)

    def _request(
        self, client: openai.OpenAI, inputs: list[str], batch: Batch, stop: threading.Event
    ) -> Any:
        attempts = self.settings.max_retries + 1
        retrying = Retrying(
            stop=stop_after_attempt(attempts),
            retry=retry_if_exception(self._retryable),
            wait=self._wait,
            sleep=lambda seconds: _sleep_unless(stop, seconds),
            before_sleep=self._on_retry(batch, attempts),
            reraise=True,
        )
        kwargs: dict[str, Any] = {"encoding_format": "base64"}  # decoded in _vectors
        if self.settings.dimensions is not None:
            kwargs["dimensions"] = self.settings.dimensions
        attempt = 0
        try:
            for attempt_manager in retrying:
                with attempt_manager:
                    self.gate.acquire(batch.tokens, stop)
                    attempt += 1
                    with self._lock:
                        self.requests += 1
                    log.debug(
                        "embedding %s: %d inputs, %d tokens, attempt %d",
                        batch.describe(),
                        len(inputs),
                        batch.tokens,
                        attempt,
                    )
                    # raw: we parse the JSON ourselves, so `true` is not read as 1.0 and an
                    # HTML page answered with 200 is not handed back as a string
                    with self.gate.in_flight(stop):
                        return client.embeddings.with_raw_response.create(
                            model=self.settings.model, input=inputs, **kwargs
                        )
        except openai.OpenAIError as exc:
            raise self._failure(exc, batch, attempt) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _on_retry(self, batch: Batch, attempts: int) -> Any:
        """tenacity's before_sleep: record the retry and say why, in one warning line."""

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            delay = state.next_action.sleep if state.next_action else 0.0
            reason = self._reason(exc) if exc else "?"
            event = RetryEvent(batch.number, state.attempt_number, reason, delay)
            with self._lock:
                self.retry_events.append(event)
            log.warning(
                "embedding %s: %s; retry %d of %d in %.2f s",
                batch.describe(), reason, state.attempt_number, attempts - 1, delay,
            )  # fmt: skip

        return before_sleep

    def _failure(self, exc: openai.OpenAIError, batch: Batch, attempt: int) -> EmbeddingError:
        """The one line a request that failed for good ends with (no secret in it)."""
        hint = " (check OPENAI_API_KEY)" if _status(exc) in (401, 403) else ""
        after = retry_after(exc)
        if after is not None and after > self.max_retry_after:
            hint = f" (the server asks to retry in {after:g} s: too long to wait)"
        tries = f"after {attempt} attempts" if attempt > 1 else "on the first attempt"
        return EmbeddingError(
            f"embedding {batch.describe()} at {safe_url(self.base_url)} failed {tries}: "
            f"{self._reason(exc)}{hint}"
        )

    def _run(
        self, client: openai.OpenAI, inputs: list[str], batch: Batch, stop: threading.Event
    ) -> list[list[float]]:
        body = self._json(self._request(client, inputs, batch, stop), batch)
        vectors = self._vectors(body, batch, len(inputs))
        usage = body.get("usage")
        tokens = usage.get("total_tokens") if isinstance(usage, dict) else None
        if type(tokens) is not int or tokens <= 0:  # no usage reported: our own count
            counter = self.token_counter
            tokens = batch.tokens if batch.counted else sum(counter.count(t) for t in inputs)
        with self._lock:
            self.tokens_used += tokens
            self.inputs_embedded += len(inputs)
        return vectors

    def _json(self, raw: Any, batch: Batch) -> dict[str, Any]:
        """The response body as a JSON object, or one line saying what came instead."""
        http = raw.http_response
        kind = http.headers.get("content-type", "no content type").split(";")[0]
        try:
            body = json.loads(http.content)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise EmbeddingError(
                f"embedding {batch.describe()} at {safe_url(self.base_url)}: the server "
                f"answered HTTP {http.status_code} with {kind}, not a JSON embeddings list "
                "(is the base URL the API's /v1 address, not a web page or proxy?)"
            )
        return body

    def _vectors(self, body: dict[str, Any], batch: Batch, count: int) -> list[list[float]]:
        """Check the response against the request and return unit float32 vectors in order."""
        data = body.get("data")
        items = data if isinstance(data, list) and all(isinstance(d, dict) for d in data) else []
        by_index = {d.get("index"): d.get("embedding") for d in items}
        indexes_ok = all(type(i) is int for i in by_index) and set(by_index) == set(range(count))
        if len(items) != count or not indexes_ok:
            raise EmbeddingError(
                f"embedding {batch.describe()}: the server returned {len(items)} vectors "
                f"for {count} inputs"
            )
        rows: Any = [by_index[i] for i in range(count)]
        source = f"embedding {batch.describe()} from {self.model_id!r}"
        with self._lock:
            expected = self._expected_dim or self._dimension
        encoded = [isinstance(r, str) for r in rows]
        if all(encoded):  # what we asked for
            rows = base64_vectors(rows, expected, source)
        elif any(encoded):
            raise VectorError(f"{source}: base64 and float vectors mixed; none of these was stored")
        vectors = unit_vectors(rows, expected, source)
        with self._lock:
            if self._dimension is None and vectors:
                self._dimension = len(vectors[0])
        return vectors
