"""Milvus: schema, physical collection per model behind an alias, upsert, cleanup, read, search.

Every filter expression is built here from escaped literals (`literal`), so a source id
containing quotes or expression syntax can never widen a delete.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corpusflow.ids import sha256_text
from corpusflow.milvus_uri import (
    grpc_options,
    is_local_uri,
    lite_defaults,
    lite_key,
    lite_open_failures,
    lock_holder,
    one_line,
    uri_identity,
)

# Field name -> VARCHAR max_length (UTF-8 bytes). Text is split by the chunker to fit.
VARCHAR_FIELDS = {
    "id": 36,
    "source_id": 4096,
    "source_type": 32,
    "title": 65_535,
    "author": 65_535,
    "url": 65_535,
    "published": 256,
    "text": 65_535,
    "text_hash": 64,
    "doc_hash": 64,
    "chunker": 64,
    "model": 512,
    "run_id": 64,
}
INT_FIELDS = ("chunk_index", "n_chunks", "start_char")
FLOAT_FIELDS = ("start_seconds", "end_seconds")
SCALAR_FIELDS = tuple(VARCHAR_FIELDS) + INT_FIELDS + FLOAT_FIELDS
VECTOR_FIELD = "vector"
STATE_FIELDS = ["id", "source_id", "doc_hash", "chunker", "n_chunks"]

# Every read here must see the writes made just before it: the state that incremental sync
# compares against, stale/full cleanup, migration, snapshot export (same state, same bytes),
# counts, and the searches a snapshot records. A Milvus server's default is "Bounded": a read
# may miss up to `common.gracefulTime` (5 s) of writes, so a state query right after an upsert
# would re-plan rows and a snapshot taken right after `ingest` could miss them. "Strong" makes
# the query nodes catch up to the request's timestamp first (milliseconds; no flush, which
# seals segments, is rate-limited and leaves small segments behind). Milvus Lite reads are
# always current; there the argument changes nothing.
READ_CONSISTENCY = "Strong"

# Rows per `query_iterator` page: the largest pymilvus allows (its MAX_BATCH_SIZE). Milvus
# Lite answers every page by assembling, masking and pk-sorting the whole collection, so a
# page costs about the same at 1,000 rows as at 16,384 (5.5 s vs 8 s at 972k rows): reading
# everything costs pages x that, and fewer pages is the only lever from here.
PAGE_ROWS = 16_384
# A Milvus server refuses a page over quotaAndLimits.limits.maxOutputSize (100 MiB), and
# pymilvus' gRPC channel one over 64 MiB: on a server a page is sized so that rows at their
# schema's maximum fit in 48 MiB (a margin for the message's own encoding).
SERVER_OUTPUT_BYTES = 48 * 1024 * 1024
NOT_LOADED = 101  # Milvus error code: collection not loaded (released, or a server restart)


class StoreError(Exception):
    """Milvus cannot be reached or used: reported to the user as one line."""


class MilvusLockedError(StoreError):
    """The Milvus Lite database is open in another process: waiting may help."""


def literal(value: str) -> str:
    """A Milvus expression string literal that matches `value` exactly and nothing else."""
    escaped = (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r")
    ).replace("\t", "\\t")
    return f'"{escaped}"'


def in_filter(field: str, values: Iterable[str]) -> str:
    return f"{field} in [{', '.join(literal(v) for v in values)}]"


def physical_name(alias: str, model_id: str, dimension: int) -> str:
    """Collection name carrying model and dimension (docs/architecture.md, decision 3)."""
    slug = re.sub(r"[^A-Za-z0-9]+", "_", model_id).strip("_").lower()
    if len(slug) > 60:
        slug = slug[:48] + "_" + sha256_text(model_id)[:8]
    return f"{alias}__{slug}_{dimension}"


@dataclass(frozen=True)
class Hit:
    score: float
    record: dict[str, Any]


class MilvusStore:
    """One connection to Milvus (Lite file or server) for one alias."""

    def __init__(self, uri: str, alias: str, token: str | None = None, index: Any = None):
        lite_defaults()  # before pymilvus imports milvus_lite
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        # query_iterator warns about client-side timestamps on every call against Milvus Lite
        logging.getLogger("pymilvus").setLevel(logging.CRITICAL)

        self.uri, self.alias, self.index = uri, alias, index
        self.identity = uri_identity(uri)
        if is_local_uri(uri):
            Path(uri).parent.mkdir(parents=True, exist_ok=True)
        try:
            with lite_open_failures() as failures:
                self.client = MilvusClient(
                    uri=uri, token=token or "", grpc_options=grpc_options(uri)
                )
        except Exception as exc:  # lock held by another process, server down, bad URI
            if any(type(f).__name__ == "DataDirLockedError" for f in failures):
                holder = lock_holder(uri) or "a running ingest or flow?"
                raise MilvusLockedError(
                    f"Milvus Lite database {uri} is in use by another process ({holder}) that "
                    "holds its lock; "
                    "wait for it to finish, or share it through `milvus-lite server` "
                    "(README: Scaling up)"
                ) from None
            hint = ""  # a server refuses a wrong token as "Fail connecting"
            if isinstance(exc, MilvusException) and not is_local_uri(uri):
                hint = " (is it up, and is MILVUS_TOKEN right?)"
            raise StoreError(f"cannot open Milvus at {uri}: {one_line(exc)}{hint}") from None
        self._loaded: set[str] = set()
        self._closed = False
        if is_local_uri(uri):
            _LITE_USERS[lite_key(uri)] = _LITE_USERS.get(lite_key(uri), 0) + 1
        self._described: dict[str, list[dict[str, Any]]] = {}
        self._lite: bool | None = None
        self._counted: dict[str, int] = {}  # Milvus Lite's count from its index answer

    # --- collections and alias -------------------------------------------------------
    def alias_target(self) -> str | None:
        if self.alias not in self._aliases():
            return None
        return self.client.describe_alias(self.alias)["collection_name"]

    def _aliases(self) -> list[str]:
        names: list[str] = []
        for coll in self.client.list_collections():
            names.extend(self.client.list_aliases(coll).get("aliases", []))
        return names

    def has(self, name: str) -> bool:
        return self.client.has_collection(name)

    def ensure_collection(self, name: str, dimension: int) -> bool:
        """Create the collection with its explicit schema and index; True if it was created."""
        created = False
        if not self.client.has_collection(name):
            try:
                self._create(name, dimension)
                created = True
            except Exception:  # another writer creating it at the same moment, or a real error
                if not _wait_for(lambda: self.client.has_collection(name)):
                    raise
        if not created and not self._has_vector_index(name):
            # Another writer may be between creating the collection and its index; if none
            # makes it (the one that created the collection was killed there), make it here.
            if not _wait_for(lambda: self._has_vector_index(name)):
                self._create_vector_index(name)
        # an existing collection is not loaded here: writes need no load, and loading builds
        # the vector index in memory (seconds and hundreds of MB at 30k rows); reads load on
        # first use. A new one is (`_create`): empty, it has nothing to build
        return created

    def _create(self, name: str, dimension: int) -> None:
        """Collection, index, load: what `create_collection(index_params=...)` does, but the
        index is not waited for. pymilvus polls a new index every 0.5 s, sleeping first, so
        each new collection cost 0.5 s; an empty collection's index has nothing to build."""
        self.client.create_collection(name, schema=self._schema(dimension))
        self.client.create_index(name, self._index_params(), sync=False)
        self.client.load_collection(name)
        self._loaded.add(name)

    def _has_vector_index(self, name: str) -> bool:
        """Milvus Lite answers with its exact live row count, which it counts for that (every
        row; seconds after a kill left many in its memtable): kept for the `row_count` that
        follows before any write, so opening and verifying a collection count once."""
        if not self._is_lite():
            return bool(self.client.list_indexes(name, field_name=VECTOR_FIELD))
        info = self.client.describe_index(name, VECTOR_FIELD)
        if info:
            self._counted[name] = int(info["total_rows"])
        return bool(info)

    def _create_vector_index(self, name: str) -> None:
        """The vector index a killed run did not get to create (a racing writer may)."""
        try:
            self.client.create_index(name, self._index_params())
        except Exception:
            if not _wait_for(lambda: self._has_vector_index(name)):
                raise

    def load(self, name: str) -> None:
        if name not in self._loaded:
            self.client.load_collection(name)  # needed after every reopen
            self._loaded.add(name)

    def point_alias(self, name: str) -> None:
        """Create the alias or move it to `name` in one step: searches never see a gap."""
        if self.alias_target() is None:
            try:
                self.client.create_alias(name, self.alias)
                return
            except Exception:
                if self.alias_target() is None:  # not a race with another writer
                    raise
        self.client.alter_alias(name, self.alias)

    def _schema(self, dimension: int):
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        for field, size in VARCHAR_FIELDS.items():
            schema.add_field(field, DataType.VARCHAR, max_length=size, is_primary=field == "id")
        for field in INT_FIELDS:
            schema.add_field(field, DataType.INT64)
        for field in FLOAT_FIELDS:
            schema.add_field(field, DataType.DOUBLE, nullable=True)
        schema.add_field(VECTOR_FIELD, DataType.FLOAT_VECTOR, dim=dimension)
        return schema

    def _index_params(self):
        params = self.client.prepare_index_params()
        params.add_index(
            field_name=VECTOR_FIELD,
            index_type=self.index.type if self.index else "HNSW",
            metric_type="COSINE",
            params=dict(self.index.params) if self.index else {"M": 16, "efConstruction": 200},
        )
        return params

    # --- writes ------------------------------------------------------------------------
    def upsert(self, name: str, rows: Sequence[dict[str, Any]], batch_size: int = 500) -> int:
        """Write whole rows, replacing any with the same key.

        A server gets `upsert` (an insert of an existing key would duplicate it). Milvus Lite
        gets `insert`: its engine keeps every write with a sequence number and every read,
        count and compaction keeps only a key's latest, so an insert of a whole row replaces
        it; its `upsert` first reads each key's old row to merge a partial update (looking in
        every segment), which whole rows never need (tests/integration/test_reliability_store.py
        checks the replacement). Rows go as columns, one list per field, through the calls
        pymilvus' own `Collection.insert` makes: the request is the same as for rows, but
        packing it costs a fifth of the CPU (pymilvus checks a row value by value)."""
        fields = self._fields(name)
        if any(f["name"] in FLOAT_FIELDS and not f.get("nullable") for f in fields):
            rows = [_nan_for_none(row) for row in rows]
        conn = self.client._get_connection()
        write = conn.batch_insert if self._is_lite() else conn.upsert
        schema, context = {"fields": fields}, self.client._generate_call_context()
        self._counted.pop(name, None)
        for i in range(0, len(rows), batch_size):
            batch = rows[i : i + batch_size]
            columns = [
                {"name": f["name"], "type": f["type"], "values": [r[f["name"]] for r in batch]}
                for f in fields
            ]
            write(name, columns, schema=schema, context=context)
        return len(rows)

    def _is_lite(self) -> bool:
        """Milvus Lite, embedded or behind `milvus-lite server` (it reports "milvus_lite-…")."""
        if self._lite is None:
            self._lite = self.client.get_server_version().startswith("milvus_lite")
        return self._lite

    def _fields(self, name: str) -> list[dict[str, Any]]:
        """`name`'s fields as Milvus describes them (the names, types, lengths and nullable
        flags a write is packed by). Milvus before 2.5 drops the `nullable` flag without an
        error: a missing time is then stored as NaN, which, like null, no comparison in a
        filter matches, and is read back as None."""
        if name not in self._described:
            self._described[name] = self.client.describe_collection(name)["fields"]
        return self._described[name]

    def _reloading(self, name: str, read):
        """Run a read; if the collection is not loaded (after a server restart, until the
        server has reloaded it, or released by someone), load it and read once more."""
        from pymilvus.exceptions import MilvusException

        try:
            return read()
        except MilvusException as exc:
            if exc.code != NOT_LOADED:
                raise
        self._loaded.discard(name)
        self.load(name)
        return read()

    def delete_ids(self, name: str, ids: Sequence[str], batch_size: int = 1000) -> int:
        """Delete by primary key: no expression is built from user data."""
        self._counted.pop(name, None)
        for i in range(0, len(ids), batch_size):
            self.client.delete(name, ids=list(ids[i : i + batch_size]))
        return len(ids)

    # --- reads -------------------------------------------------------------------------
    def state_of(
        self, name: str, source_ids: Sequence[str], fields: Sequence[str] = STATE_FIELDS
    ) -> dict[str, list[dict[str, Any]]]:
        """Existing records (state fields only) for the given sources, by source id."""
        state: dict[str, list[dict[str, Any]]] = {sid: [] for sid in source_ids}
        for i in range(0, len(source_ids), 100):
            part = source_ids[i : i + 100]
            for row in self.iter_rows(name, fields, in_filter("source_id", part)):
                state[row["source_id"]].append(row)
        return state

    def iter_rows(
        self, name: str, fields: Sequence[str], filter: str = "", batch_size: int = PAGE_ROWS
    ) -> Iterator[dict[str, Any]]:
        """Every matching row through `query_iterator` (limit+offset caps at 16,384)."""
        self.load(name)
        if not self._is_lite():
            batch_size = min(batch_size, self._server_page_rows(name, fields))

        def first_page():
            # pymilvus 3.0.2 sends iterator queries with `use_default_consistency` and drops
            # `consistency_level`, so on a server they run at the collection's default
            # (Bounded): rows written a moment ago are not there yet. A Strong read first makes
            # the query nodes catch up with every write made before it; the pages after it
            # read at their own, later, timestamps and so see those writes. (Milvus Lite reads
            # are always current: no extra round trip there.)
            if not self._is_lite():
                self.client.query(
                    name, filter="", output_fields=["count(*)"], consistency_level=READ_CONSISTENCY
                )
            iterator = self.client.query_iterator(
                name,
                batch_size=batch_size,
                filter=filter,
                output_fields=list(fields),
                consistency_level=READ_CONSISTENCY,
            )
            try:
                return iterator, iterator.next()
            except BaseException:
                iterator.close()
                raise

        iterator, batch = self._reloading(name, first_page)
        try:
            while batch:
                yield from map(_none_for_nan, batch)
                batch = iterator.next()
        finally:
            iterator.close()

    def _server_page_rows(self, name: str, fields: Sequence[str]) -> int:
        """Rows per page that stay under a server's output limit at the fields' maximum size
        (VARCHAR max_length in bytes, 8 per number, 4 per vector dimension)."""
        dims = {
            f["name"]: int((f.get("params") or {}).get("dim", 0))
            for f in self._fields(name)
        }
        row = sum(VARCHAR_FIELDS.get(f, 0) or 4 * dims.get(f, 0) or 8 for f in fields)
        return max(1, SERVER_OUTPUT_BYTES // row)

    def first(self, name: str, fields: Sequence[str]) -> dict[str, Any]:
        """Any one row's `fields` (the collection must not be empty)."""
        self.load(name)
        rows = self._reloading(
            name,
            lambda: self.client.query(
                name,
                filter="",
                output_fields=list(fields),
                limit=1,
                consistency_level=READ_CONSISTENCY,
            ),
        )
        return _none_for_nan(dict(rows[0]))

    def row_count(self, name: str) -> int:
        """Exact live rows, cheaply: Milvus Lite's statistics are exact and need no load or
        scan; a server's statistics count deleted rows until compaction, so ask `count(*)`."""
        if self._is_lite():
            counted = self._counted.pop(name, None)  # counted once, before any write
            if counted is not None:
                return counted
            return int(self.client.get_collection_stats(name)["row_count"])
        return self.count(name)

    def properties(self, name: str) -> dict[str, str]:
        """The collection's key/value properties (corpusflow keeps its state markers there)."""
        return dict(self.client.describe_collection(name).get("properties") or {})

    def set_properties(self, name: str, values: dict[str, str]) -> bool:
        """Set properties; False where the server refuses custom keys (state then is never
        trusted across runs and is re-read from Milvus, correct but slower)."""
        try:
            self.client.alter_collection_properties(name, properties=values)
        except Exception:
            return False
        return True

    def count(self, name: str, filter: str = "") -> int:
        """Rows in a physical collection (matching `filter`), counted by Milvus."""
        self.load(name)
        rows = self._reloading(
            name,
            lambda: self.client.query(
                name, filter=filter, output_fields=["count(*)"], consistency_level=READ_CONSISTENCY
            ),
        )
        return int(rows[0]["count(*)"])

    def search(
        self, name: str, vector: Sequence[float], k: int, fields: Sequence[str], filter: str = ""
    ) -> list[Hit]:
        search_params = {"params": dict(self.index.search_params)} if self.index else {}
        if self.index and self.index.type.upper() == "HNSW":
            search_params["params"]["ef"] = max(search_params["params"].get("ef", 64), k)
        result = self._reloading(
            name,
            lambda: self.client.search(
                name,
                [list(vector)],
                limit=k,
                filter=filter,
                output_fields=list(fields),
                search_params=search_params,
                consistency_level=READ_CONSISTENCY,
            ),
        )
        return [
            Hit(score=float(h["distance"]), record=_none_for_nan(dict(h["entity"])))
            for h in result[0]
        ]

    def close(self) -> None:
        """Close the connection; when the last store on a Milvus Lite file closes, also stop
        the in-process server, which otherwise holds the database's lock until exit."""
        if self._closed:
            return
        self._closed = True
        try:
            self.client.close()
        except Exception:  # closing a broken connection must not hide the real error
            pass
        if is_local_uri(self.uri):
            key = lite_key(self.uri)
            _LITE_USERS[key] -= 1
            if _LITE_USERS[key] == 0:
                from milvus_lite.server_manager import server_manager_instance

                server_manager_instance.release_server(self.uri)


_LITE_USERS: dict[str, int] = {}  # open stores per Milvus Lite file in this process


def _wait_for(condition, timeout: float = 10.0) -> bool:
    """Poll `condition` until it holds (True) or `timeout` seconds pass (False)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _nan_for_none(row: dict[str, Any]) -> dict[str, Any]:
    if all(row.get(f) is not None for f in FLOAT_FIELDS):
        return row
    return {**row, **{f: math.nan for f in FLOAT_FIELDS if row.get(f, 0) is None}}


def _none_for_nan(row: dict[str, Any]) -> dict[str, Any]:
    for f in FLOAT_FIELDS:
        value = row.get(f)
        if isinstance(value, float) and math.isnan(value):
            row[f] = None
    return row
