"""What is stored where: a local record manager that Milvus can always overrule.

Milvus holds the truth; this SQLite table (`ingest.state`) mirrors, per physical
collection, each stored source (content hash, chunker hash, chunk ids, the input file it
came from) and each input file's fingerprint, so a run looks up only what it touches and
never parses a file that did not change. It is trusted only while it provably matches:

- the collection carries two properties: `corpusflow.instance` (set once when it is first
  seen: a dropped and rebuilt collection has another) and `corpusflow.epoch` (moved by every
  run that writes). Both must equal the local copy, and Milvus' exact row count must equal
  the sum of the local chunk counts; otherwise the table is rebuilt from Milvus;
- each batch is journaled (`pending`, with the chunk ids it writes) before it is written to
  Milvus and settled after. After a kill -9 each journaled source is *in doubt* (never
  current; its possible rows: the ids it had and the batch's), and the next run rewrites it
  (one upsert) rather than read it back (a load, which after a kill builds the collection's
  vector index); only what that run does not meet is read back, at its end;
- a run whose epoch was moved by another writer meanwhile leaves the table untrusted.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from corpusflow.ids import input_of_id

INSTANCE, EPOCH = "corpusflow.instance", "corpusflow.epoch"
MODEL = "corpusflow.model"  # the embedding model of every row (one physical collection per model)
STATE_VERSION = 2  # bump when the table's meaning changes: old tables are rebuilt
_FIELDS = ["id", "source_id", "source_type", "doc_hash", "chunker", "n_chunks", "chunk_index"]
_COLUMNS = "source_id, source_type, doc_hash, chunker, n_chunks, ids, input"  # a Stored
_ROW_ORDER = ("source_id", "id", "source_type", "doc_hash", "chunker", "n_chunks", "chunk_index")
MIXED = "mixed"  # doc_hash of a source whose stored rows disagree: never current
DOUBT = "in doubt"  # doc_hash of a source a killed batch was writing (`Stored.stored_ids`)
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta VALUES ('version', '{STATE_VERSION}');
CREATE TABLE IF NOT EXISTS collections(
    coll TEXT PRIMARY KEY, instance TEXT NOT NULL, epoch TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sources(
    coll TEXT NOT NULL, source_id TEXT NOT NULL, source_type TEXT NOT NULL,
    doc_hash TEXT NOT NULL, chunker TEXT NOT NULL, n_chunks INTEGER NOT NULL,
    ids TEXT NOT NULL, input TEXT NOT NULL,
    PRIMARY KEY (coll, source_id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS sources_by_input ON sources(coll, input);
CREATE INDEX IF NOT EXISTS sources_in_doubt ON sources(coll) WHERE doc_hash='{DOUBT}';
CREATE TABLE IF NOT EXISTS pending(
    coll TEXT NOT NULL, source_id TEXT NOT NULL, ids TEXT, source_type TEXT,
    PRIMARY KEY (coll, source_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS inputs(
    coll TEXT NOT NULL, input TEXT NOT NULL, fingerprint TEXT NOT NULL,
    PRIMARY KEY (coll, input)) WITHOUT ROWID;
"""


class Stored(NamedTuple):
    """One stored source, as the collection holds it."""

    source_id: str
    source_type: str
    doc_hash: str
    chunker: str
    n_chunks: int
    ids: tuple[str, ...]
    input: str = ""

    @property
    def stored_ids(self) -> tuple[str, ...]:
        """Ids known as stored: an in-doubt one's first n_chunks; the rest the batch wrote."""
        return self.ids[: self.n_chunks] if self.doc_hash == DOUBT else self.ids


def _token() -> str:
    return secrets.token_hex(8)


class StateTable:
    """The local mirror of one physical collection (see the module docstring)."""

    def __init__(self, path: str, store: Any, physical: str, *, writable: bool = True):
        self.store, self.physical, self.writable = store, physical, writable
        self.coll = f"{store.identity}|{physical}"
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self._migrate_schema()
        for table in ("seen", "met"):  # this run: sources met / met in unchanged inputs
            self.db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table}(source_id TEXT PRIMARY KEY)")
        self.epoch: str | None = None  # this run's epoch, once it writes
        self.props: dict[str, str] = {}  # the collection's properties, as verify() read them
        self.rebuilt = False

    def _migrate_schema(self) -> None:
        version = None
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key='version'").fetchone()
            version = row[0] if row else None
        except sqlite3.OperationalError:
            pass
        if version is not None and version != str(STATE_VERSION):
            for table in ("collections", "sources", "pending", "inputs", "meta"):
                self.db.execute(f"DROP TABLE IF EXISTS {table}")
        self.db.executescript(_SCHEMA)

    # --- trust ---------------------------------------------------------------------------
    def verify(self) -> bool:
        """Make the table match Milvus (re-reading what is in doubt); True if it was trusted
        as it stood."""
        props = self.props = self.store.properties(self.physical)
        instance, epoch = props.get(INSTANCE), props.get(EPOCH, "")
        if instance is None and self.writable:
            instance, epoch = _token(), _token()
            if not self.store.set_properties(self.physical, {INSTANCE: instance, EPOCH: epoch}):
                instance = None
        local = self.db.execute(
            "SELECT instance, epoch FROM collections WHERE coll=?", (self.coll,)
        ).fetchone()
        trusted = instance is not None and local == (instance, epoch)
        if trusted:
            self._doubt_pending()
            self._settle_pending()
            doubt = sum(len(s.ids) for s in self._in_doubt())
            total = self.total_chunks()  # in-doubt sources: up to `doubt` rows more
            trusted = total <= self.store.row_count(self.physical) <= total + doubt
        if not trusted:
            self.rebuild(instance or "", epoch)
        return trusted

    def note_model(self, model: str) -> None:
        """Record the collection's model as a property (`stats` reads it without a load)."""
        if self.writable and self.props.get(MODEL) != model:
            self.store.set_properties(self.physical, {MODEL: model})

    def matches(self) -> bool:
        """True when the table provably mirrors Milvus as it stands (markers equal, no batch
        in doubt, the same row count); reads no row and changes nothing."""
        props = self.store.properties(self.physical)
        instance, epoch = props.get(INSTANCE), props.get(EPOCH, "")
        local = self.db.execute(
            "SELECT instance, epoch FROM collections WHERE coll=?", (self.coll,)
        ).fetchone()
        pending = self.db.execute("SELECT 1 FROM pending WHERE coll=?", (self.coll,)).fetchone()
        busy = pending is not None or self._in_doubt()  # in doubt: outside the total
        if instance is None or local != (instance, epoch) or busy:
            return False
        return self.total_chunks() == self.store.row_count(self.physical)

    def by_type(self) -> dict[str, dict[str, int]]:
        """Documents and chunks per source type, as stored."""
        rows = self.db.execute(
            "SELECT source_type, count(*), sum(n_chunks) FROM sources WHERE coll=?"
            " GROUP BY source_type ORDER BY source_type",
            (self.coll,),
        )
        return {t: {"documents": int(d), "chunks": int(c)} for t, d, c in rows}

    def _doubt_pending(self) -> None:
        """Journaled sources whose ids are known become in doubt (nothing is read)."""
        if not self.writable:  # a reader reads them back (`_settle_pending`)
            return
        pending = self.db.execute(
            "SELECT source_id, ids, source_type FROM pending WHERE coll=? AND ids IS NOT NULL",
            (self.coll,),
        ).fetchall()
        with self._tx():
            for sid, ids, stype in pending:
                old = self.lookup([sid]).get(sid)
                union = tuple(dict.fromkeys((*(old.ids if old else ()), *json.loads(ids))))
                old = old or Stored(sid, stype or "", "", "", 0, (), input_of_id(sid))
                had = old.n_chunks if old.doc_hash == DOUBT else len(old.ids)
                self._put(old._replace(doc_hash=DOUBT, n_chunks=had, ids=union))
            self.db.execute("DELETE FROM pending WHERE coll=? AND ids IS NOT NULL", (self.coll,))

    def _in_doubt(self) -> list[Stored]:
        """In-doubt sources, through their partial index (a run with none reads no row)."""
        cursor = self.db.execute(
            f"SELECT {_COLUMNS} FROM sources INDEXED BY sources_in_doubt"
            f" WHERE coll=? AND doc_hash='{DOUBT}'",
            (self.coll,),
        )
        return list(map(_stored, cursor))

    def _settle_pending(self) -> None:
        """Sources of a batch a killed run was writing: read their rows back from Milvus."""
        pending = self.db.execute("SELECT source_id FROM pending WHERE coll=?", (self.coll,))
        self._read_back([r[0] for r in pending])

    def _read_back(self, ids: Sequence[str]) -> None:
        for i in range(0, len(ids), 100):
            part = ids[i : i + 100]
            rows = self.store.state_of(self.physical, part, _FIELDS)
            with self._tx():
                for sid in part:
                    self._forget(sid)
                    if rows[sid]:
                        self._put(_aggregate(sid, rows[sid], self._old_input(sid)))
                    self.db.execute(
                        "DELETE FROM pending WHERE coll=? AND source_id=?", (self.coll, sid)
                    )

    def rebuild(self, instance: str, epoch: str) -> None:
        """Re-read every stored source from Milvus (after a drop, a foreign write, a crash
        outside a batch, or a first run against an existing collection)."""
        self.rebuilt = True
        with self._tx():
            for table in ("sources", "pending", "inputs", "collections"):
                self.db.execute(f"DELETE FROM {table} WHERE coll=?", (self.coll,))
            self.db.execute(
                "CREATE TEMP TABLE IF NOT EXISTS rows(source_id TEXT, id TEXT, source_type TEXT,"
                " doc_hash TEXT, chunker TEXT, n_chunks INTEGER, chunk_index INTEGER)"
            )
            self.db.execute("DELETE FROM rows")
            self.db.executemany(
                "INSERT INTO rows VALUES (?,?,?,?,?,?,?)",
                (
                    tuple(r[f] for f in _ROW_ORDER)
                    for r in self.store.iter_rows(self.physical, _FIELDS)
                ),
            )
            self._aggregate_rows()
            self.db.execute("DROP TABLE rows")
            if instance:
                self.db.execute(
                    "INSERT INTO collections VALUES (?,?,?)", (self.coll, instance, epoch)
                )

    def _aggregate_rows(self) -> None:
        query = """
            SELECT source_id, min(source_type), min(doc_hash), max(doc_hash), min(chunker),
                   max(chunker), min(n_chunks), max(n_chunks), count(*),
                   json_group_array(id) FROM (SELECT * FROM rows ORDER BY source_id, chunk_index)
            GROUP BY source_id"""
        for sid, stype, h1, h2, c1, c2, n1, n2, count, ids in self.db.execute(query).fetchall():
            consistent = h1 == h2 and c1 == c2 and n1 == n2 == count
            self._put(
                Stored(
                    sid,
                    stype,
                    h1 if consistent else MIXED,
                    c1,
                    n1,
                    tuple(json.loads(ids)),
                    input_of_id(sid),
                )
            )

    def claim(self) -> None:
        """Before this run's first write: move the epoch (locally first, then in Milvus)."""
        if self.epoch is not None or not self.writable:
            return
        self.epoch = _token()
        instance = self.store.properties(self.physical).get(INSTANCE)
        with self._tx():
            self.db.execute("DELETE FROM collections WHERE coll=?", (self.coll,))
            if instance is not None:
                self.db.execute(
                    "INSERT INTO collections VALUES (?,?,?)", (self.coll, instance, self.epoch)
                )
        self.store.set_properties(self.physical, {EPOCH: self.epoch})

    def resolve_doubt(self) -> None:
        """Near a writing run's end: read back what it did not rewrite, so the table is exact."""
        doubt = [s.source_id for s in self._in_doubt()]
        if doubt and self.writable:
            self._read_back(doubt)

    def release(self) -> None:
        """End of a writing run: if another writer moved the epoch meanwhile, what we hold
        may miss its writes, so neither side may trust its table any more."""
        if self.epoch is None:
            return
        if self.store.properties(self.physical).get(EPOCH) != self.epoch:
            self.db.execute("DELETE FROM collections WHERE coll=?", (self.coll,))
            self.store.set_properties(self.physical, {EPOCH: _token()})
        self.epoch = None

    # --- reads ---------------------------------------------------------------------------
    def lookup(self, source_ids: Sequence[str]) -> dict[str, Stored]:
        out: dict[str, Stored] = {}
        for i in range(0, len(source_ids), 500):
            part = list(source_ids[i : i + 500])
            marks = ",".join("?" * len(part))
            for row in self.db.execute(
                f"SELECT {_COLUMNS} FROM sources WHERE coll=? AND source_id IN ({marks})",
                (self.coll, *part),
            ):
                out[row[0]] = _stored(row)
        return out

    def total_chunks(self) -> int:
        """Chunks of every source known as stored (an in-doubt one's are not known)."""
        row = self.db.execute(
            "SELECT coalesce(sum(n_chunks), 0) FROM sources WHERE coll=? AND doc_hash!=?",
            (self.coll, DOUBT),
        ).fetchone()
        return int(row[0])

    def all_sources(self) -> Iterator[Stored]:
        cursor = self.db.execute(
            f"SELECT {_COLUMNS} FROM sources WHERE coll=? ORDER BY source_id",
            (self.coll,),
        )
        yield from map(_stored, cursor)

    def unseen(self) -> Iterator[Stored]:
        """Stored sources this run has not met (what `full` cleanup removes)."""
        cursor = self.db.execute(
            f"SELECT {_COLUMNS} FROM sources"
            " WHERE coll=? AND source_id NOT IN (SELECT source_id FROM temp.seen)",
            (self.coll,),
        )
        yield from map(_stored, cursor.fetchall())

    # --- inputs (fingerprints) --------------------------------------------------------------
    def unchanged_input(
        self, input: str, fingerprint: str, chunker: str
    ) -> tuple[str, int, int] | None:
        """(source type, documents, chunks) of an input whose fingerprint matches and whose
        every source is current for `chunker`; its sources count as seen. None otherwise."""
        row = self.db.execute(
            "SELECT fingerprint FROM inputs WHERE coll=? AND input=?", (self.coll, input)
        ).fetchone()
        if row is None or row[0] != fingerprint:
            return None
        agg = self.db.execute(
            "SELECT min(source_type), count(*), coalesce(sum(n_chunks), 0),"
            " sum(chunker != ? OR doc_hash IN (?, ?)) FROM sources INDEXED BY sources_by_input"
            " WHERE coll=? AND input=?",
            (chunker, MIXED, DOUBT, self.coll, input),
        ).fetchone()
        if not agg[1] or agg[3]:
            return None
        for table in ("seen", "met"):
            self.db.execute(
                f"INSERT OR IGNORE INTO temp.{table} SELECT source_id FROM sources"
                " INDEXED BY sources_by_input WHERE coll=? AND input=?",
                (self.coll, input),
            )
        return agg[0], int(agg[1]), int(agg[2])

    def record_input(self, input: str, fingerprint: str) -> None:
        """An input fully parsed and stored: its fingerprint, and only this run's sources."""
        if not self.writable:
            return
        with self._tx():
            self.db.execute(
                "UPDATE sources INDEXED BY sources_by_input SET input='' WHERE coll=? AND input=?"
                " AND source_id NOT IN (SELECT source_id FROM temp.seen)",
                (self.coll, input),
            )
            self.db.execute(
                "INSERT OR REPLACE INTO inputs VALUES (?,?,?)", (self.coll, input, fingerprint)
            )

    def forget_input(self, input: str) -> None:
        if self.writable:
            self.db.execute("DELETE FROM inputs WHERE coll=? AND input=?", (self.coll, input))

    def see(self, source_ids: Iterable[str]) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO temp.seen VALUES (?)", ((s,) for s in source_ids)
        )

    def seen(self, source_id: str) -> bool:
        return self._has("seen", source_id)

    def met(self, source_id: str) -> bool:
        """Met in an unchanged input this run (a document with this id elsewhere clashes)."""
        return self._has("met", source_id)

    def _has(self, table: str, source_id: str) -> bool:
        row = self.db.execute(f"SELECT 1 FROM temp.{table} WHERE source_id=?", (source_id,))
        return row.fetchone() is not None

    def see_input(self, input: str) -> None:
        """A whole input was rejected: every stored source of it (or under it) is kept."""
        prefix = input.rstrip("/") + "/"
        self.db.execute(
            "INSERT OR IGNORE INTO temp.seen SELECT source_id FROM sources"
            " INDEXED BY sources_by_input WHERE coll=? AND (input=? OR (input>=? AND input<?))",
            (self.coll, input, prefix, prefix + "\U0010ffff"),
        )

    # --- writes (journaled around each Milvus batch) ------------------------------------
    def begin(self, sources: Iterable[Stored | str]) -> None:
        """Journal a batch before it is written: each source as it will be stored, or its id."""
        if self.writable:
            self.claim()
            with self._tx():
                self.db.executemany(
                    "INSERT OR IGNORE INTO pending VALUES (?,?,?,?)",
                    (
                        (self.coll, s, None, None)
                        if isinstance(s, str)
                        else (self.coll, s.source_id, json.dumps(list(s.ids)), s.source_type)
                        for s in sources
                    ),
                )

    def settle(
        self,
        written: Iterable[Stored],
        removed: Iterable[str] = (),
        pending: Iterable[str] | None = None,
    ) -> None:
        """Record a written batch and end its journal: every pending source, or only those
        in `pending` (other batches may still be being written, e.g. on Dask workers)."""
        if not self.writable:
            return
        with self._tx():
            for item in written:
                self._forget(item.source_id)
                self._put(item)
            for sid in removed:
                self._forget(sid)
            if pending is None:
                self.db.execute("DELETE FROM pending WHERE coll=?", (self.coll,))
            else:
                self.db.executemany(
                    "DELETE FROM pending WHERE coll=? AND source_id=?",
                    ((self.coll, s) for s in pending),
                )

    def set_input(self, source_ids: Sequence[str], input: str) -> None:
        if self.writable and input:
            self.db.executemany(
                "UPDATE sources SET input=? WHERE coll=? AND source_id=? AND input!=?",
                ((input, self.coll, s, input) for s in source_ids),
            )

    def close(self) -> None:
        self.db.close()

    # --- helpers -------------------------------------------------------------------------
    def _tx(self):
        return _Tx(self.db)

    def _put(self, s: Stored) -> None:
        row = (self.coll, *s[:5], json.dumps(list(s.ids)), s.input)
        self.db.execute("INSERT OR REPLACE INTO sources VALUES (?,?,?,?,?,?,?,?)", row)

    def _forget(self, source_id: str) -> None:
        self.db.execute("DELETE FROM sources WHERE coll=? AND source_id=?", (self.coll, source_id))

    def _old_input(self, source_id: str) -> str:
        row = self.db.execute(
            "SELECT input FROM sources WHERE coll=? AND source_id=?", (self.coll, source_id)
        ).fetchone()
        return row[0] if row else input_of_id(source_id)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error) on an autocommit connection."""

    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, *_: Any) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _stored(row: Sequence[Any]) -> Stored:
    return Stored(row[0], row[1], row[2], row[3], int(row[4]), tuple(json.loads(row[5])), row[6])


def _aggregate(source_id: str, rows: list[dict[str, Any]], input: str) -> Stored:
    rows = sorted(rows, key=lambda r: r["chunk_index"])
    first = rows[0]
    consistent = (
        all(
            r["doc_hash"] == first["doc_hash"]
            and r["chunker"] == first["chunker"]
            and r["n_chunks"] == first["n_chunks"]
            for r in rows
        )
        and len(rows) == first["n_chunks"]
    )
    return Stored(
        source_id,
        first["source_type"],
        first["doc_hash"] if consistent else MIXED,
        first["chunker"],
        int(first["n_chunks"]),
        tuple(r["id"] for r in rows),
        input,
    )
