"""A fast deterministic embedder for benchmarks where the model is not the point.

Vectors are a hash of the text (sha256 seeds a normal draw, then unit length), 384
dimensions like MiniLM. Token counting is MiniLM's own tokenizer (the `tokenizers` Rust
library, no torch), so chunk boundaries, chunk ids and chunk counts are exactly those of a
real run: only the model call is replaced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np

from corpusflow.config import LOCAL_MODEL_ID, Embedding
from corpusflow.embedding.local import LocalEmbedder

HASH_MODEL_ID = "bench/sha256-normal-384"


def hash_vectors(texts: Sequence[str], dimension: int = 384) -> list[list[float]]:
    """Unit vectors, a pure function of each text (sha256 seeds a normal draw)."""
    out = np.empty((len(texts), dimension), dtype=np.float32)
    for i, text in enumerate(texts):
        seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
        out[i] = np.random.default_rng(seed).standard_normal(dimension)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.tolist()


class HashEmbedder:
    """Satisfies `corpusflow.embedding.base.Embedder`; inject it with `ctx._embedder = ...`.

    `model_id` defaults to a name of its own so its vectors never mix with MiniLM's in a
    cache; pass `LOCAL_MODEL_ID` to stand in for MiniLM where only the no-op path is measured.
    """

    def __init__(
        self,
        model_id: str = HASH_MODEL_ID,
        dimension: int = 384,
        count_tokens: Callable[[str], int] | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self.model_id = model_id
        self._dimension = dimension
        local = LocalEmbedder(Embedding(model=LOCAL_MODEL_ID))  # loads no model, only config
        self._count = count_tokens or local.count_tokens
        self._many = None if count_tokens else local.count_tokens_many
        self._local = None if count_tokens else local
        self._max_tokens = max_tokens if max_tokens is not None else local.max_tokens
        self.calls = 0
        self.texts = 0

    @property
    def dimension(self) -> int:
        return self._dimension

    @property
    def max_tokens(self) -> int | None:
        return self._max_tokens

    def count_tokens(self, text: str) -> int:
        """Tokens as MiniLM counts them (or the given counter)."""
        return self._count(text)

    @property
    def additive_at_whitespace(self) -> bool:
        """As MiniLM's tokenizer (when it counts): the chunker may add up piece counts."""
        return bool(self._local and self._local.additive_at_whitespace)

    def count_tokens_many(self, texts: Sequence[str]) -> list[int]:
        """`count_tokens` of each text, in one call where MiniLM's tokenizer counts."""
        return self._many(texts) if self._many else [self._count(t) for t in texts]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Unit vectors, a pure function of each text."""
        self.calls += 1
        self.texts += len(texts)
        return hash_vectors(texts, self._dimension)


__all__ = ["HASH_MODEL_ID", "HashEmbedder", "hash_vectors"]
