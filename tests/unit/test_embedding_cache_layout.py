"""The embedding cache's table layout: a vector row fits in its page (a table with rowids),
and a cache made with the old WITHOUT ROWID table is converted once, keeping every entry;
a conversion that cannot finish (disk full) keeps the old table working. Real SQLite."""

from __future__ import annotations

import sqlite3

import numpy as np

from corpusflow.embedding.cache import EmbeddingCache
from corpusflow.embedding.vectors import vector_blob

KEY, DIM = "model@384", 384
OLD_TABLE = (
    "CREATE TABLE embeddings ( model TEXT NOT NULL, text_hash TEXT NOT NULL,"
    " dim INTEGER NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, text_hash))"
    " WITHOUT ROWID"
)


def vector(i: int) -> list[float]:
    v = np.random.default_rng(i).standard_normal(DIM).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32).tolist()


def old_cache(path, n: int) -> dict[str, list[float]]:
    db = sqlite3.connect(path)
    db.execute(OLD_TABLE)
    want = {f"h{i}": vector(i) for i in range(n)}
    db.executemany(
        "INSERT INTO embeddings VALUES (?, ?, ?, ?)",
        [(KEY, h, DIM, vector_blob(v)) for h, v in want.items()],
    )
    db.commit()
    db.close()
    return want


def table_sql(path) -> list[str]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT name, sql FROM sqlite_master WHERE type='table'").fetchall()
        assert [name for name, _ in rows] == ["embeddings"]  # one table, no leftover
        return [sql for _, sql in rows]
    finally:
        db.close()


def page_count(path) -> int:
    """Pages in the file: with every vector on its own overflow page, about 2.2x as many."""
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA page_count").fetchone()[0]
    finally:
        db.close()


def test_a_new_cache_keeps_vectors_in_a_table_with_rowids(tmp_path):
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    cache.put_many(KEY, [("h", vector(1))])
    cache.close()
    (sql,) = table_sql(tmp_path / "c.sqlite")
    assert "WITHOUT ROWID" not in sql.upper()


def test_an_old_cache_is_converted_once_with_every_entry(tmp_path):
    path = tmp_path / "c.sqlite"
    want = old_cache(path, 300)
    pages_before = page_count(path)
    cache = EmbeddingCache(path)
    assert cache.get_many(KEY, list(want)) == want
    assert cache.count() == 300
    cache.put_many(KEY, [("new", vector(999))])
    cache.close()
    (sql,) = table_sql(path)
    assert "WITHOUT ROWID" not in sql.upper()
    assert page_count(path) < pages_before / 1.5  # the spilled pages are gone
    again = EmbeddingCache(path)
    assert again.get_many(KEY, [*want, "new"]) == want | {"new": vector(999)}
    again.close()


def test_a_conversion_that_hits_a_full_disk_keeps_the_old_table(tmp_path, monkeypatch, caplog):
    path = tmp_path / "c.sqlite"
    want = old_cache(path, 300)
    pages = page_count(path)
    real = sqlite3.connect

    def full_disk(*args, **kwargs):  # SQLite's own limit: "database or disk is full"
        db = real(*args, **kwargs)
        db.execute(f"PRAGMA max_page_count = {pages + 8}")
        return db

    monkeypatch.setattr(sqlite3, "connect", full_disk)
    cache = EmbeddingCache(path)
    assert "kept its old layout (database or disk is full)" in caplog.text
    assert cache.get_many(KEY, list(want)) == want
    cache.close()
    monkeypatch.setattr(sqlite3, "connect", real)
    (sql,) = table_sql(path)
    assert "WITHOUT ROWID" in sql.upper()
