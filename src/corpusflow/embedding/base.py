"""The embedder interface every provider implements."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable


class EmbeddingError(Exception):
    """Embedding failed in a way the user must act on (endpoint down, input too long)."""


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into normalised vectors.

    `model_id`, `dimension` and `max_tokens` must be cheap: the pipeline reads them to name
    the collection and to chunk without loading the model, so a no-op run stays fast.
    """

    model_id: str

    @property
    def dimension(self) -> int: ...

    @property
    def max_tokens(self) -> int | None: ...

    def count_tokens(self, text: str) -> int: ...

    def embed(self, texts: Sequence[str]) -> list[list[float]]: ...
