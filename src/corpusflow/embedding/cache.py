"""Persistent embedding cache keyed by (model id, sha256 of the text).

SQLite, not Parquet: lookups are by key in small batches, every embedded batch must be
durable before the next starts (a killed run resumes from it), and several processes may
share the file; SQLite gives indexed point reads, atomic commits and locking in the
standard library. Vectors are stored as float32 bytes, exactly what Milvus keeps.
"""

from __future__ import annotations

import sqlite3
from array import array
from collections.abc import Iterable, Sequence
from pathlib import Path

_CHUNK = 500  # SQLite's bound-variable limit is far above this; keeps statements small


class EmbeddingCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS embeddings ("
            " model TEXT NOT NULL, text_hash TEXT NOT NULL, dim INTEGER NOT NULL,"
            " vector BLOB NOT NULL, PRIMARY KEY (model, text_hash)) WITHOUT ROWID"
        )

    def get_many(self, model: str, text_hashes: Iterable[str]) -> dict[str, list[float]]:
        wanted = list(dict.fromkeys(text_hashes))
        found: dict[str, list[float]] = {}
        for i in range(0, len(wanted), _CHUNK):
            part = wanted[i : i + _CHUNK]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                "SELECT text_hash, vector FROM embeddings"
                f" WHERE model = ? AND text_hash IN ({marks})",
                [model, *part],
            )
            for text_hash, blob in rows:
                found[text_hash] = array("f", blob).tolist()
        return found

    def put_many(self, model: str, items: Sequence[tuple[str, Sequence[float]]]) -> None:
        """Store vectors in one transaction: after it returns, they survive a kill -9."""
        rows = [(model, h, len(v), array("f", v).tobytes()) for h, v in items]
        with self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO embeddings (model, text_hash, dim, vector)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )

    def count(self, model: str | None = None) -> int:
        if model is None:
            return self._db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
        return self._db.execute(
            "SELECT COUNT(*) FROM embeddings WHERE model = ?", [model]
        ).fetchone()[0]

    def close(self) -> None:
        self._db.close()
