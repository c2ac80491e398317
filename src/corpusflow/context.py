"""What every step needs, built cheaply: params, environment, and lazily opened parts
(embedder, Milvus store, embedding cache, memo, state tables). Nothing is opened or loaded
until a step asks for it, so a no-op run stays fast."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from corpusflow.chunking import ChunkerSpec, resolve_spec
from corpusflow.config import Env, Params
from corpusflow.embedding import Embedder, make_embedder
from corpusflow.embedding.cache import EmbeddingCache
from corpusflow.embedding.cached import EmbedCounts, EmbedFn, Progress, cache_key, embed_texts
from corpusflow.memo import Memo
from corpusflow.state import StateTable
from corpusflow.store import MilvusStore, is_local_uri, physical_name


def new_run_id() -> str:
    """Sortable and unique: UTC time plus random hex (never uuid4: ids stay meaningful)."""
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{secrets.token_hex(4)}"


@dataclass
class Context:
    params: Params
    env: Env = field(default_factory=Env.from_environ)
    _embedder: Embedder | None = None
    _store: MilvusStore | None = None
    _cache: EmbeddingCache | None = None
    _states: list[StateTable] = field(default_factory=list)
    _memo: Memo | None = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = make_embedder(self.params.embedding, self.env)
        return self._embedder

    @property
    def store(self) -> MilvusStore:
        if self._store is None:
            uri = self.env.milvus_uri or self.params.milvus.uri
            self._store = MilvusStore(
                uri, self.params.milvus.collection, self.env.milvus_token, self.params.milvus.index
            )
        return self._store

    def lite_file_missing(self) -> bool:
        """True when Milvus is a local Milvus Lite file that does not exist (yet)."""
        uri = self.env.milvus_uri or self.params.milvus.uri
        return is_local_uri(uri) and not Path(uri).exists()

    @property
    def cache(self) -> EmbeddingCache:
        if self._cache is None:
            self._cache = EmbeddingCache(self.params.ingest.cache)
        return self._cache

    def memo(self) -> Memo:
        """Parsed documents and chunk lists kept by what they derive from (memo.py)."""
        if self._memo is None:
            self._memo = Memo(self.params.ingest.state)
        return self._memo

    def state_of(self, physical: str, writable: bool = True) -> StateTable:
        """The local record of `physical`, checked against Milvus (rebuilt if it differs)."""
        table = StateTable(self.params.ingest.state, self.store, physical, writable=writable)
        self._states.append(table)
        table.verify()
        return table

    @property
    def cache_model_key(self) -> str:
        return cache_key(self.embedder)

    def embed_texts(
        self,
        texts: Sequence[str],
        counts: EmbedCounts,
        progress: Progress | None = None,
        embed_fn: EmbedFn | None = None,
    ) -> list[list[float]]:
        """Vectors for `texts` through this context's cache (embedding/cached.py)."""
        return embed_texts(self.cache, self.embedder, texts, counts, progress, embed_fn)

    @property
    def target(self) -> str:
        """The physical collection for the configured model."""
        emb = self.embedder
        return physical_name(self.params.milvus.collection, emb.model_id, emb.dimension)

    def chunker_spec(self) -> ChunkerSpec:
        emb = self.embedder
        max_tokens = emb.max_tokens if self.params.chunking.mode == "tokens" else None
        return resolve_spec(self.params.chunking, emb.model_id, max_tokens)

    def close(self) -> None:
        while self._states:
            self._states.pop().close()
        if self._memo is not None:
            self._memo.close()
            self._memo = None
        if self._store is not None:
            self._store.close()
            self._store = None
        if self._cache is not None:
            self._cache.close()
            self._cache = None
