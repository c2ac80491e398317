"""Persistent embedding cache keyed by (model id, sha256 of the text).

SQLite, not Parquet: lookups are by key in small batches, every embedded batch must be
durable before the next starts (a killed run resumes from it), and several processes may
share the file; SQLite gives indexed point reads, atomic commits and locking in the
standard library. Vectors are stored as float32 bytes, exactly what Milvus keeps.

Nothing read back is trusted: every entry passes the same check as a fresh vector
(`vectors.blob_problem`); a bad one (NaN, odd length, wrong dimension) is deleted and
reported as missing, so it is embedded again, and the run says so in one line when the
cache closes. A cache file SQLite cannot use (not a database, damaged, read-only, disk
full, a directory) is a `CacheError`: one line naming the file and what to do.

One cache may be used from several threads (a pipeline embeds in its own thread): the
connection allows it and a lock keeps one statement at a time.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from corpusflow.embedding.base import EmbeddingError
from corpusflow.embedding.vectors import (
    VectorError,
    blob_problem,
    blob_vector,
    blob_vectors,
    vector_blob,
)

log = logging.getLogger(__name__)

_CHUNK = 500  # SQLite's bound-variable limit is far above this; keeps statements small
# a table with rowids: a row may fill most of a page before it spills (see _convert_old_layout)
_TABLE = (
    "CREATE TABLE IF NOT EXISTS {name} ("
    " model TEXT NOT NULL, text_hash TEXT NOT NULL, dim INTEGER NOT NULL,"
    " vector BLOB NOT NULL, PRIMARY KEY (model, text_hash))"
)
_KEY_DIMENSION = re.compile(r"@(\d+)$")  # cache keys are "<model id>@<dimension>"
_ADVICE = {
    "not a database": "it is not an embedding cache",
    "malformed": "it is damaged",
    "disk is full": "the disk is full; free some space",
    "disk i/o error": "the disk failed or a size limit was hit",
}


class CacheError(EmbeddingError):
    """The embedding cache file cannot be used; one line says which and what to do."""


def key_dimension(model: str) -> int | None:
    """The dimension in a cache key `<model id>@<dimension>`, if it carries one."""
    match = _KEY_DIMENSION.search(model)
    return int(match.group(1)) if match else None


class EmbeddingCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.discarded = 0  # bad entries found, deleted and re-embedded
        self._first_problem = ""
        self._db: sqlite3.Connection | None = None
        self._lock = threading.RLock()
        with self._sqlite("open"):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, timeout=60, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_TABLE.format(name="embeddings"))
            self._convert_old_layout()

    def _convert_old_layout(self) -> None:
        """Caches made before 2026-12 keep vectors in a WITHOUT ROWID table, whose rows
        spill to an overflow page past about 1,000 bytes (4 KB pages): every 384-d vector
        did, so lookups took 2.9x as long and the file was 2.2x the size.
        Converted once, in one transaction; if that fails (disk full, busy), the old table
        is kept and works as before."""
        sql = self.db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'embeddings'"
        ).fetchone()
        if not sql or "WITHOUT ROWID" not in sql[0].upper():
            return
        try:
            with self.db:  # commits, or rolls back on any error
                self.db.execute("BEGIN IMMEDIATE")
                self.db.execute(_TABLE.format(name="embeddings_rowid"))
                self.db.execute("INSERT INTO embeddings_rowid SELECT * FROM embeddings")
                self.db.execute("DROP TABLE embeddings")
                self.db.execute("ALTER TABLE embeddings_rowid RENAME TO embeddings")
        except sqlite3.Error as exc:
            log.warning("embedding cache %s: kept its old layout (%s)", self.path, exc)
            return
        with contextlib.suppress(sqlite3.Error):  # the old table's pages back to the disk
            self.db.execute("VACUUM")

    @contextmanager
    def _sqlite(self, doing: str) -> Iterator[None]:
        """sqlite3 and file errors as one CacheError line naming the file; one thread at a time."""
        try:
            with self._lock:
                yield
        except (sqlite3.Error, OSError) as exc:
            text = str(exc).strip() or type(exc).__name__
            why = self._diagnose() or next((a for k, a in _ADVICE.items() if k in text.lower()), "")
            advice = f"{why}; " if why else ""
            raise CacheError(
                f"embedding cache {self.path}: cannot {doing} ({text}); {advice}"
                "move it away or delete it to start a new one (it only saves re-embedding)"
            ) from None

    def _diagnose(self) -> str:
        """What is wrong with the file itself, when SQLite only says it cannot open it."""
        if self.path.is_dir():
            return "it is a directory, not a file"
        parent = self.path.parent
        if not os.access(parent, os.W_OK) or (
            self.path.exists() and not os.access(self.path, os.W_OK)
        ):
            return "it or its directory is read-only (SQLite writes a journal beside it)"
        return ""

    @property
    def db(self) -> sqlite3.Connection:
        assert self._db is not None
        return self._db

    def get_many(
        self, model: str, text_hashes: Iterable[str], dimension: int | None = None
    ) -> dict[str, list[float]]:
        """Valid cached vectors by text hash; bad entries are deleted and left out."""
        dimension = dimension or key_dimension(model)
        wanted = list(dict.fromkeys(text_hashes))
        found: dict[str, list[float]] = {}
        bad: list[str] = []
        with self._sqlite("read"):
            for i in range(0, len(wanted), _CHUNK):
                part = wanted[i : i + _CHUNK]
                marks = ",".join("?" * len(part))
                rows = self.db.execute(
                    "SELECT text_hash, vector FROM embeddings"
                    f" WHERE model = ? AND text_hash IN ({marks})",
                    [model, *part],
                )
                rows = rows.fetchall()
                vectors = blob_vectors([b for _, b in rows], dimension) if dimension else None
                if vectors is not None:
                    found.update(zip([h for h, _ in rows], vectors, strict=True))
                    continue
                for text_hash, blob in rows:
                    problem = blob_problem(blob, dimension)
                    if problem is None:
                        found[text_hash] = blob_vector(blob)
                    else:
                        bad.append(text_hash)
                        self._first_problem = self._first_problem or problem
        if bad:
            self._discard(model, bad)
        return found

    def _discard(self, model: str, text_hashes: list[str]) -> None:
        self.discarded += len(text_hashes)
        with self._sqlite("delete bad entries from"), self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "DELETE FROM embeddings WHERE model = ? AND text_hash = ?",
                [(model, h) for h in text_hashes],
            )

    def put_many(
        self,
        model: str,
        items: Sequence[tuple[str, Sequence[float]]],
        dimension: int | None = None,
    ) -> None:
        """Store vectors in one transaction: after it returns, they survive a kill -9.
        A vector that fails the check is never stored (VectorError)."""
        dimension = dimension or key_dimension(model)
        rows = []
        for h, v in items:
            blob = vector_blob(v)
            if problem := blob_problem(blob, dimension):
                raise VectorError(f"refusing to cache a vector that is {problem}")
            rows.append((model, h, len(v), blob))
        with self._sqlite("write"), self.db:
            self.db.execute("BEGIN")
            self.db.executemany(
                "INSERT OR REPLACE INTO embeddings (model, text_hash, dim, vector)"
                " VALUES (?, ?, ?, ?)",
                rows,
            )

    def count(self, model: str | None = None) -> int:
        with self._sqlite("read"):
            if model is None:
                return self.db.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]
            return self.db.execute(
                "SELECT COUNT(*) FROM embeddings WHERE model = ?", [model]
            ).fetchone()[0]

    def close(self) -> None:
        """Close the file; report discarded bad entries (one line for the whole run)."""
        if self.discarded:
            log.warning(
                "embedding cache %s: discarded %d bad entr%s (first: %s); embedded again",
                self.path,
                self.discarded,
                "y" if self.discarded == 1 else "ies",
                self._first_problem,
            )
            self.discarded = 0
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None
