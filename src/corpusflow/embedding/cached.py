"""Embedding through the cache: a content hash decides whether a text is embedded at all.

Cached vectors are reused; the rest are embedded in batches, each committed to the cache
before the next, so a killed run resumes from the last committed batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from corpusflow.embedding.base import Embedder
from corpusflow.embedding.cache import EmbeddingCache
from corpusflow.ids import sha256_text

Progress = Callable[[str, int], None]  # (what, how many more): "documents", "embedded", or
# "to embed" (texts not in the cache, announced before they are embedded: a total)
EmbedFn = Callable[[list[str]], list[list[float]]]
EMBED_BATCH = 64  # texts per model call between cache commits: bounds work lost to a kill


@dataclass
class EmbedCounts:
    embedded: int = 0
    cache_hits: int = 0


def cache_key(embedder: Embedder) -> str:
    """The cache's model key: a vector is reused only for the same model and dimension."""
    return f"{embedder.model_id}@{embedder.dimension}"


def embed_texts(
    cache: EmbeddingCache,
    embedder: Embedder,
    texts: Sequence[str],
    counts: EmbedCounts,
    progress: Progress | None = None,
    embed_fn: EmbedFn | None = None,
) -> list[list[float]]:
    """Vectors for `texts` in order. `embed_fn` replaces the local model call (e.g. to run
    it on a Dask cluster); a remote embedder's own request packing is used otherwise."""
    key = cache_key(embedder)
    hashes = [sha256_text(t) for t in texts]
    known = cache.get_many(key, hashes)
    counts.cache_hits += sum(1 for h in hashes if h in known)
    missing: dict[str, str] = {}
    for h, t in zip(hashes, texts, strict=False):
        if h not in known:
            missing.setdefault(h, t)
    todo = list(missing.items())
    if progress and todo:
        progress("to embed", len(todo))
    batches = getattr(embedder, "embed_batches", None)
    if embed_fn is None and batches is not None and todo:
        # A remote embedder packs requests to the API's limits and runs them concurrently;
        # each finished request is committed to the cache as it arrives.
        for indexes, vectors in batches([t for _, t in todo]):
            _commit(cache, key, [(todo[i][0], v) for i, v in zip(indexes, vectors, strict=True)],
                    known, counts, progress)  # fmt: skip
        todo = []
    # a model call pads its texts to their longest: calls of like lengths pad least (1,704
    # article chunks in plans of 64 documents: 4.7% padded positions in order, 1.3% so)
    todo.sort(key=lambda item: len(item[1]))
    for i in range(0, len(todo), EMBED_BATCH):
        part = todo[i : i + EMBED_BATCH]
        vectors = (embed_fn or embedder.embed)([t for _, t in part])
        _commit(cache, key, [(h, v) for (h, _), v in zip(part, vectors, strict=False)],
                known, counts, progress)  # fmt: skip
    return [known[h] for h in hashes]


def _commit(
    cache: EmbeddingCache,
    key: str,
    done: list[tuple[str, list[float]]],
    known: dict[str, list[float]],
    counts: EmbedCounts,
    progress: Progress | None,
) -> None:
    cache.put_many(key, done)
    known.update(done)
    counts.embedded += len(done)
    if progress:
        progress("embedded", len(done))
