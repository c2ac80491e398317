"""The embedding cache used from threads other than the one that opened it, as a pipeline
that embeds in its own thread does: real SQLite, every write durable and readable."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from corpusflow.embedding.cache import EmbeddingCache

KEY = "model@4"


def vector(i: int) -> list[float]:
    return np.asarray([1.0, i, -i, 0.5], dtype=np.float32).tolist()


def test_threads_write_and_read_one_cache(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache.sqlite")  # opened in this thread
    try:

        def write(side: int) -> None:
            for i in range(side * 100, side * 100 + 50):
                cache.put_many(KEY, [(f"h{i}", vector(i))])
                assert cache.get_many(KEY, [f"h{i}"]) == {f"h{i}": vector(i)}

        with ThreadPoolExecutor(2) as pool:
            list(pool.map(write, [0, 1]))  # each raised before: "created in a thread ..."
        assert cache.count(KEY) == 100
        wanted = [f"h{i}" for i in [*range(50), *range(100, 150)]]
        found = cache.get_many(KEY, wanted)
        assert found == {f"h{i}": vector(i) for i in [*range(50), *range(100, 150)]}
    finally:
        cache.close()
