"""Derived data kept by what it derives from, so a rebuild skips parsing and chunking.

Two tables beside the state (`ingest.state`), shared by every collection:
- an input file's documents, by the file's fingerprint (`inputs.Fingerprints`: its stat, its
  sidecars', and the parser code): a file read once is not parsed again while it is the same;
- a document's chunks, by (content hash, chunker digest): the same text, cut the same way.

Like the embedding cache it only ever saves work: a miss parses or chunks as usual. Inputs
with more than `MAX_DOCUMENTS` documents are not kept, so memory stays bounded by one batch.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Sequence
from pathlib import Path

from corpusflow.models import Chunk, Document, Segment

MAX_DOCUMENTS = 2_000  # per input file; larger inputs are parsed each time they change
_SCHEMA = """
CREATE TABLE IF NOT EXISTS memo_documents(fingerprint TEXT PRIMARY KEY, items BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS memo_chunks(
    doc_hash TEXT NOT NULL, chunker TEXT NOT NULL, chunks BLOB NOT NULL,
    PRIMARY KEY (doc_hash, chunker)) WITHOUT ROWID;
"""
_DOC_FIELDS = ("source_id", "source_type", "text", "title", "author", "url", "published", "origin")
_CHUNK_FIELDS = (
    "id",
    "source_id",
    "chunk_index",
    "text",
    "start_char",
    "text_hash",
    "start_seconds",
    "end_seconds",
)


def _pack(value: object) -> bytes:
    return zlib.compress(json.dumps(value, ensure_ascii=False).encode("utf-8"), 1)


def _unpack(blob: bytes) -> object:
    return json.loads(zlib.decompress(blob))


class Memo:
    """Parsed documents by input fingerprint, chunk lists by (content hash, chunker)."""

    def __init__(self, path: str):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.executescript(_SCHEMA)

    def documents(self, fingerprint: str) -> list[Document] | None:
        row = self.db.execute(
            "SELECT items FROM memo_documents WHERE fingerprint=?", (fingerprint,)
        ).fetchone()
        if row is None:
            return None
        out = []
        for item in _unpack(row[0]):
            fields = dict(zip(_DOC_FIELDS, item[0], strict=True))
            doc = Document(**fields, segments=tuple(Segment(*s) for s in item[1]))
            doc.__dict__["content_hash"] = item[2]  # kept with it: hashing costs a parse's third
            out.append(doc)
        return out

    def put_documents(self, fingerprint: str, docs: Sequence[Document]) -> None:
        if len(docs) > MAX_DOCUMENTS:
            return
        items = [
            [[getattr(d, f) for f in _DOC_FIELDS], [list(s) for s in d.segments], d.content_hash]
            for d in docs
        ]
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO memo_documents VALUES (?,?)", (fingerprint, _pack(items))
            )

    def chunks(self, doc_hash: str, chunker: str) -> list[Chunk] | None:
        row = self.db.execute(
            "SELECT chunks FROM memo_chunks WHERE doc_hash=? AND chunker=?", (doc_hash, chunker)
        ).fetchone()
        if row is None:
            return None
        return [Chunk(**dict(zip(_CHUNK_FIELDS, c, strict=True))) for c in _unpack(row[0])]

    def put_chunks(self, items: Sequence[tuple[str, str, Sequence[Chunk]]]) -> None:
        """Keep (content hash, chunker digest, chunks) triples, in one transaction."""
        if not items:
            return
        rows = [
            (h, c, _pack([[getattr(x, f) for f in _CHUNK_FIELDS] for x in chunks]))
            for h, c, chunks in items
        ]
        with self.db:
            self.db.executemany("INSERT OR REPLACE INTO memo_chunks VALUES (?,?,?)", rows)

    def close(self) -> None:
        self.db.close()


class _NoMemo:
    """What a dry run uses: remembers nothing, creates no file."""

    def documents(self, fingerprint: str) -> None:
        return None

    def put_documents(self, fingerprint: str, docs: Sequence[Document]) -> None:
        pass

    def chunks(self, doc_hash: str, chunker: str) -> None:
        return None

    def put_chunks(self, items: Sequence[tuple[str, str, Sequence[Chunk]]]) -> None:
        pass


NO_MEMO = _NoMemo()
