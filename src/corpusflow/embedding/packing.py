"""Packing one call's texts into embedding requests: within the API's limits, and enough
requests that they run concurrently instead of one large request at a time.

Why split: one request of 370 inputs waits for the server's whole latency and for all of its
work in one go; four of ~93 wait for it once, side by side, and their answers are decoded
while the others are still on the wire. Below `min_inputs` a request is not split further
(each request has its own fixed cost, and a rate limit may count requests).

Why count lazily: an exact cl100k count is pure Python (~0.2 ms for a 1000-character chunk,
and loading the ranks takes ~0.5-1 s), and every BPE token covers at least one UTF-8 byte,
so a text's byte length bounds its count.
When the bounds already fit the per-input and per-request limits, exact counts could not
change the plan and are skipped; only a budget (`tokens_per_minute`) or a limit the bound
would hit makes us count.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from corpusflow.embedding.base import EmbeddingError
from corpusflow.embedding.tokens import TokenCounter


@dataclass(frozen=True)
class Batch:
    """One planned request: the contiguous inputs texts[start:stop] and their tokens
    (`counted`: by the token counter; else the UTF-8 upper bound)."""

    number: int
    start: int
    stop: int
    tokens: int
    counted: bool = True

    @property
    def indexes(self) -> list[int]:
        return list(range(self.start, self.stop))

    def describe(self) -> str:
        last = self.stop - 1
        span = f"input {self.start}" if last == self.start else f"inputs {self.start}-{last}"
        return f"request {self.number} ({span})"


@dataclass(frozen=True)
class Limits:
    """Per request: inputs and tokens; per input: tokens; and how to split for concurrency."""

    max_inputs: int
    max_tokens: int
    max_input_tokens: int
    concurrency: int = 1
    min_inputs: int = 32


def inputs_per_request(count: int, limits: Limits) -> int:
    """Inputs per request so that `count` inputs fill `concurrency` requests of at least
    `min_inputs` each (fewer requests for fewer inputs), balanced, never over `max_inputs`."""
    if count <= 0:
        return limits.max_inputs
    requests = min(limits.concurrency, max(1, count // limits.min_inputs))
    requests = max(requests, math.ceil(count / limits.max_inputs))
    return math.ceil(count / requests)


def plan_requests(
    texts: Sequence[str],
    counter: Callable[[], TokenCounter],
    limits: Limits,
    *,
    exact: bool = False,
) -> list[Batch]:
    """Check every input, then pack consecutive inputs into requests within `limits`.

    All inputs are checked before anything is sent, so a bad input costs no request.
    `counter` is called only when counts are needed; `exact` always counts (a token
    budget needs the real numbers).
    """
    for i, text in enumerate(texts):
        if not isinstance(text, str) or not text:
            kind = "empty" if isinstance(text, str) else f"a {type(text).__name__}"
            raise EmbeddingError(f"input {i} is {kind}: the embeddings API needs text")
    per_request = inputs_per_request(len(texts), limits)
    if not exact:
        bounds = [len(t.encode("utf-8")) for t in texts]
        batches = _pack(bounds, per_request, limits, counted=False)
        if batches is not None:
            return batches
    tokens = counter()
    counts = [tokens.count(t) for t in texts]
    for i, n in enumerate(counts):
        if n > limits.max_input_tokens:
            bound = "" if tokens.exact else " at most"
            raise EmbeddingError(
                f"input {i} is too long to embed: {n} tokens{bound} by {tokens.name}, "
                f"limit {limits.max_input_tokens} per input ({texts[i][:60]!r}...); "
                "chunk it smaller"
            )
    batches = _pack(counts, per_request, limits, counted=True)
    assert batches is not None
    return batches


def _pack(
    sizes: Sequence[int], per_request: int, limits: Limits, *, counted: bool
) -> list[Batch] | None:
    """Requests of `per_request` consecutive inputs, split earlier by the token limit.
    For upper bounds (`counted` off) None as soon as a token limit binds: count instead."""
    if not counted and any(n > limits.max_input_tokens for n in sizes):
        return None
    batches: list[Batch] = []
    start, tokens = 0, 0
    for i, n in enumerate(sizes):
        full = i - start >= per_request
        if i > start and (full or tokens + n > limits.max_tokens):
            if not full and not counted:
                return None
            batches.append(Batch(len(batches), start, i, tokens, counted))
            start, tokens = i, 0
        tokens += n
    if len(sizes) > start:
        batches.append(Batch(len(batches), start, len(sizes), tokens, counted))
    return batches
