"""The store suite on three real backends: Milvus Lite in-process, milvus-lite's gRPC server,
and a Milvus 2.3.5 standalone server (PyPI `milvus`).

The servers are switched on the way a user does it: MILVUS_URI (and MILVUS_TOKEN; the
standalone runs with authorization on) in the environment, nothing else. The standalone only
runs inside a loopback-only network namespace (`../shared/tools/loopback-only`, as CI runs the
tests); where it cannot run, its parameters are left out and one skipped test,
`test_milvus_standalone_server_runs_here`, prints the reason in the summary.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from corpusflow.chunking import Chunker
from corpusflow.config import Env, Index, Params
from corpusflow.ids import chunk_id, sha256_text
from corpusflow.models import Document
from corpusflow.pipeline import SNAPSHOT_FIELDS, Context, ingest, search, snapshot
from corpusflow.snapshot import read_snapshot
from corpusflow.store import (
    FLOAT_FIELDS,
    INT_FIELDS,
    SCALAR_FIELDS,
    VARCHAR_FIELDS,
    VECTOR_FIELD,
    MilvusStore,
    StoreError,
    literal,
    physical_name,
)
from milvus_servers import (
    LiteServer,
    Server,
    StandaloneServer,
    poll_until,
    standalone_unavailable,
)

STANDALONE_UNAVAILABLE = standalone_unavailable()
SERVERS = ["lite-server"] + ([] if STANDALONE_UNAVAILABLE else ["standalone"])
BACKENDS = ["lite", *SERVERS]
BIG_EXPORT_BACKEND = SERVERS[-1]  # the real server where it runs, else milvus-lite's
DIM = 8
# Source ids that must survive expression building on every backend (quotes, backslash,
# newline, non-ASCII): a filter that mis-escapes them selects, or deletes, the wrong rows.
ODD_SOURCES = ['file:we"ird\\name.txt', "file:multi\nline 'quoted'.txt", "file:ñandú/ü.txt"]
SOURCES = [f"file:docs/{i}.txt" for i in range(4)] + ODD_SOURCES
_names = itertools.count()


# ---------------------------------------------------------------------------------------
# servers (one of each per session) and the per-test backend
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def lite_server(tmp_path_factory):
    server = LiteServer(tmp_path_factory.mktemp("milvus-lite-server") / "db")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def standalone_server(tmp_path_factory):
    assert not STANDALONE_UNAVAILABLE, STANDALONE_UNAVAILABLE
    server = StandaloneServer(tmp_path_factory.mktemp("milvus-standalone") / "data")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass
class Backend:
    name: str
    uri: str
    alias: str  # unique per test: tests share a server, never a collection
    server: Server | None = None
    stores: list[MilvusStore] = field(default_factory=list)

    @property
    def token(self) -> str:
        return self.server.token if self.server else ""

    def store(self, index: Index | None = None) -> MilvusStore:
        """A new connection (closed at teardown)."""
        store = MilvusStore(self.uri, self.alias, self.token or None, index)
        self.stores.append(store)
        return store

    def close(self) -> None:
        for store in self.stores:
            store.close()
        self.stores.clear()

    def restart(self) -> None:
        """Servers: restart the server process. Lite: close every connection (the database
        is reopened by the next store, as a new process would)."""
        if self.server is None:
            self.close()
        else:
            self.server.restart()

    def physical(self, model: str = "test-model") -> str:
        return physical_name(self.alias, model, DIM)


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path, monkeypatch):
    """One backend; for servers MILVUS_URI/MILVUS_TOKEN are set, exactly as a user would."""
    name = request.param
    alias = f"t{next(_names)}_{name.replace('-', '_')}"
    if name == "lite":
        yield Backend(name, str(tmp_path / "milvus.db"), alias)
        return
    server = request.getfixturevalue("standalone_server" if name == "standalone" else "lite_server")
    monkeypatch.setenv("MILVUS_URI", server.uri)
    if server.token:
        monkeypatch.setenv("MILVUS_TOKEN", server.token)
    backend = Backend(name, server.uri, alias, server)
    try:
        yield backend
    finally:
        backend.close()
        if name == "standalone":  # milvus-lite server takes ~10 s to drop 20k rows: leave them
            _drop_collections(server, alias)


def _drop_collections(server: Server, alias: str) -> None:
    from pymilvus import MilvusClient

    client = MilvusClient(uri=server.uri, token=server.token)
    try:
        for name in client.list_collections():
            if name.startswith(alias + "__"):
                for other in client.list_aliases(name).get("aliases", []):
                    client.drop_alias(other)
                client.drop_collection(name)
    finally:
        client.close()


@pytest.fixture
def backend_ctx(backend, make_ctx):
    """Pipeline Contexts on the backend: the same params as Lite, only the alias differs;
    the server comes from the environment the `backend` fixture set."""

    def _make(**sections) -> Context:
        milvus = {"collection": backend.alias, **sections.pop("milvus", {})}
        if backend.server is None:
            milvus["uri"] = backend.uri
        ctx = make_ctx(milvus=milvus, **sections)
        assert ctx.env.milvus_uri == (backend.uri if backend.server else None)
        return ctx

    return _make


# ---------------------------------------------------------------------------------------
# data through the real schema
# ---------------------------------------------------------------------------------------
def unit(vector: list[float]) -> list[float]:
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def make_rows(n: int, start: int = 0, dim: int = DIM) -> list[dict]:
    """Records shaped like the pipeline's, under real UUIDv5 keys; every third one is an
    article (no times: null), the rest transcript chunks with times."""
    rows = []
    for i in range(start, start + n):
        rnd = random.Random(i)
        source = SOURCES[i % len(SOURCES)]
        text = f"chunk {i} of {source}"
        article = i % 3 == 0
        rows.append(
            {
                "id": chunk_id(source, i, text),
                "source_id": source,
                "source_type": "article" if article else "transcript",
                "title": f"Title {i}",
                "author": "Ann O'Nym",
                "url": f"https://example.org/{i}",
                "published": "2024-05-01",
                "text": text,
                "text_hash": sha256_text(text),
                "doc_hash": sha256_text(source),
                "chunker": "c" * 64,
                "model": "test-model",
                "run_id": "run-1",
                "chunk_index": i,
                "n_chunks": n,
                "start_char": 10 * i,
                "start_seconds": None if article else i * 1.5,
                "end_seconds": None if article else i * 1.5 + 1.25,
                VECTOR_FIELD: unit([rnd.uniform(-1, 1) for _ in range(dim)]),
            }
        )
    return rows


def scalars(row: dict, fields=SCALAR_FIELDS) -> dict:
    return {f: row[f] for f in fields}


def by_id(rows) -> dict[str, dict]:
    return {r["id"]: r for r in rows}


def ids_in(store: MilvusStore, name: str) -> list[str]:
    return [r["id"] for r in store.iter_rows(name, ["id"])]


# ---------------------------------------------------------------------------------------
# the store on every backend
# ---------------------------------------------------------------------------------------
def test_schema_and_default_index(backend):
    store = backend.store()
    name = backend.physical()
    assert store.ensure_collection(name, DIM) is True
    assert store.ensure_collection(name, DIM) is False  # idempotent
    info = store.client.describe_collection(name)
    assert info["auto_id"] is False and not info.get("enable_dynamic_field")
    fields = {f["name"]: f for f in info["fields"]}
    assert set(fields) == set(SCALAR_FIELDS) | {VECTOR_FIELD}
    assert fields["id"].get("is_primary") is True
    for f, size in VARCHAR_FIELDS.items():
        assert int(fields[f]["params"]["max_length"]) == size, f
    assert {fields[f]["type"].name for f in INT_FIELDS} == {"INT64"}
    assert {fields[f]["type"].name for f in FLOAT_FIELDS} == {"DOUBLE"}
    assert int(fields[VECTOR_FIELD]["params"]["dim"]) == DIM
    # Milvus 2.3 accepts the `nullable` flag and silently drops it (nulls arrived in 2.5):
    # the store detects that and keeps nulls as NaN there (see test_reads_see_writes_at_once).
    nullable = {bool(fields[f].get("nullable")) for f in FLOAT_FIELDS}
    assert nullable == {backend.name != "standalone"}
    index = store.client.describe_index(name, VECTOR_FIELD)
    assert (index["index_type"], index["metric_type"]) == ("HNSW", "COSINE")
    build = {k: int(v) for k, v in index.items() if k in ("M", "efConstruction")}  # Lite: none
    assert build == ({"M": 16, "efConstruction": 200} if backend.name == "standalone" else {})


def test_a_new_collection_is_indexed_and_loaded_without_waiting(backend, monkeypatch):
    """pymilvus waits for a new index by sleeping 0.5 s before it first asks: a new, empty
    collection has nothing to build, so the store does not wait, and still leaves the
    collection indexed and loaded, as `create_collection(index_params=...)` does."""
    from pymilvus import MilvusClient
    from pymilvus.client.grpc_handler import GrpcHandler

    waits: list[tuple] = []
    monkeypatch.setattr(GrpcHandler, "wait_for_creating_index", lambda *a, **k: waits.append(a))
    store = backend.store()
    name = backend.physical()
    assert store.ensure_collection(name, DIM) is True
    assert waits == []
    other = MilvusClient(uri=backend.uri, token=backend.token or "")
    try:  # another connection sees the index and the load
        index = other.describe_index(name, VECTOR_FIELD)
        assert (index["index_type"], index["metric_type"]) == ("HNSW", "COSINE")
        assert other.get_load_state(name)["state"].name == "Loaded"
    finally:
        other.close()
    row = make_rows(1)[0]
    store.upsert(name, [row])
    hits = store.search(name, row["vector"], k=1, fields=["id"])
    assert [h.record["id"] for h in hits] == [row["id"]]


def test_reads_see_writes_at_once(backend):
    """Every read right after a write sees it (Strong reads on a server, no flush, no wait),
    nulls survive the round trip, and a second upsert replaces instead of duplicating."""
    store = backend.store()
    name = backend.physical()
    store.ensure_collection(name, DIM)
    rows = make_rows(70)
    assert store.upsert(name, rows, batch_size=30) == 70
    assert store.count(name) == 70
    got = by_id(store.iter_rows(name, SCALAR_FIELDS))
    assert got == {r["id"]: scalars(r) for r in rows}  # incl. None times, odd strings
    state = store.state_of(name, SOURCES)
    assert {s: len(v) for s, v in state.items()} == {
        s: sum(r["source_id"] == s for r in rows) for s in SOURCES
    }

    changed = [dict(r, title="retitled") for r in rows[:25]]
    store.upsert(name, changed)
    assert store.count(name) == 70
    titles = {r["id"]: r["title"] for r in store.iter_rows(name, ["id", "title"])}
    assert titles == {r["id"]: ("retitled" if i < 25 else r["title"]) for i, r in enumerate(rows)}

    odd = ODD_SOURCES[0]
    gone = [r["id"] for r in state[odd]]
    assert store.delete_ids(name, gone) == len(gone) > 0
    assert store.count(name) == 70 - len(gone)
    assert store.state_of(name, [odd]) == {odd: []}
    assert all(r["source_id"] != odd for r in store.iter_rows(name, ["source_id"]))


def test_a_full_read_of_more_than_a_servers_output_limit_pages_under_it(standalone_server):
    """A server refuses a page over its maxOutputSize (100 MiB), pymilvus one over 64 MiB: a
    1M-chunk snapshot against the 2.3.5 standalone failed so with 16,384-row pages. 1,800 rows
    of 60 kB text (108 MB) must come back whole, each once, in pages both accept."""
    store = MilvusStore(standalone_server.uri, f"t{next(_names)}_big", standalone_server.token)
    name = physical_name(store.alias, "test-model", DIM)
    try:
        store.ensure_collection(name, DIM)
        rows = [dict(r, text=f"{i:05d}" + "x" * 59_995) for i, r in enumerate(make_rows(1_800))]
        assert sum(store.upsert(name, rows[i : i + 100]) for i in range(0, 1_800, 100)) == 1_800
        got = [(r["id"], r["text"]) for r in store.iter_rows(name, ["id", "text"])]
        assert sorted(got) == sorted((r["id"], r["text"]) for r in rows)
        assert len(got) == len(rows)
    finally:
        store.client.drop_collection(name)
        store.close()


def test_insert_duplicates_on_a_server_where_upsert_does_not(backend):
    store = backend.store()
    name = backend.physical()
    store.ensure_collection(name, DIM)
    # rows without nulls: a raw insert bypasses the store's null handling for Milvus 2.3
    rows = [r for r in make_rows(30) if r["start_seconds"] is not None]
    store.upsert(name, rows)
    store.upsert(name, rows)
    assert store.count(name) == len(rows)

    store.client.insert(name, rows[:5])  # what design decision 1 forbids
    if backend.name == "standalone":
        # a real server stores both copies of each key: count(*) has them (queries and
        # searches hide them by de-duplicating results by key)
        assert store.count(name) == len(rows) + 5
    else:
        # Milvus Lite replaces on insert: a suite on Lite alone would never see this bug
        assert store.count(name) == len(rows)
    store.upsert(name, rows[:5])  # an upsert replaces every copy of its keys
    assert store.count(name) == len(rows)
    assert sorted(ids_in(store, name)) == sorted(r["id"] for r in rows)


def test_search_nearest_with_escaped_filter(backend):
    store = backend.store()
    name = backend.physical()
    store.ensure_collection(name, DIM)
    rows = make_rows(90)
    store.upsert(name, rows)
    for probe in (rows[4], rows[45], rows[88]):
        hits = store.search(name, probe[VECTOR_FIELD], 3, ["id", "source_id", "start_seconds"])
        assert len(hits) == 3
        assert hits[0].record["id"] == probe["id"] and hits[0].score == pytest.approx(1, abs=1e-4)
        assert hits[0].record["start_seconds"] == probe["start_seconds"]  # None stays None
        assert hits[0].score >= hits[1].score >= hits[2].score
    odd = ODD_SOURCES[1]
    only_odd = f"source_id == {literal(odd)}"
    hits = store.search(name, rows[0][VECTOR_FIELD], 50, ["source_id"], only_odd)
    assert {h.record["source_id"] for h in hits} == {odd}
    assert len(hits) == sum(r["source_id"] == odd for r in rows)


def test_alias_moves_to_a_new_collection_and_back(backend):
    store = backend.store()
    a, b = backend.physical("model-a"), backend.physical("model-b")
    rows_a, rows_b = make_rows(12), make_rows(9, start=500)
    for name, rows in ((a, rows_a), (b, rows_b)):
        store.ensure_collection(name, DIM)
        store.upsert(name, rows)
    assert store.alias_target() is None
    store.point_alias(a)
    assert store.alias_target() == a
    assert sorted(ids_in(store, backend.alias)) == sorted(r["id"] for r in rows_a)

    store.point_alias(b)
    # another connection (another process, on a server) sees the move at once
    other = backend.store() if backend.server else store
    assert other.alias_target() == b
    assert sorted(ids_in(other, backend.alias)) == sorted(r["id"] for r in rows_b)
    hits = other.search(backend.alias, rows_b[3][VECTOR_FIELD], 1, ["id"])
    assert hits[0].record["id"] == rows_b[3]["id"]
    assert store.count(a) == len(rows_a)  # the old collection stays for rollback
    store.point_alias(a)
    assert other.alias_target() == a


def test_snapshot_export_right_after_writes(backend, backend_ctx):
    """A snapshot taken the moment the writes return holds all of them, nulls included, and
    a second one has the same bytes."""
    ctx = backend_ctx(
        snapshot={"queries": [{"name": "articles", "filter": 'source_type == "article"'}]}
    )
    name = backend.physical()
    rows = make_rows(120)
    ctx.store.ensure_collection(name, DIM)
    ctx.store.upsert(name, rows)
    ctx.store.point_alias(name)

    first = snapshot(ctx)
    data = read_snapshot(first.path)
    expected = sorted((scalars(r, SNAPSHOT_FIELDS) for r in rows), key=lambda r: r["id"])
    assert first.records == data["count"] == 120
    assert data["physical_collection"] == name
    assert data["records"] == expected
    assert data["queries"]["articles"] == [r for r in expected if r["source_type"] == "article"]
    again = snapshot(ctx, out=str(Path(first.path).with_name("again.json")))
    assert again.sha256 == first.sha256  # same state, same bytes


INDEXES = [
    Index(),  # the default: HNSW
    Index(type="IVF_FLAT", params={"nlist": 16}, search_params={"nprobe": 16}),
    Index(type="FLAT", params={}, search_params={}),
    Index(type="AUTOINDEX", params={}, search_params={}),
]


def test_index_types_build_and_search(backend):
    """The index types a user is likely to configure are accepted, really built (a server
    indexes sealed segments only, hence the flush) and searched."""
    rows = make_rows(400)

    def build(index: Index) -> tuple[MilvusStore, str]:
        store = backend.store(index)
        name = backend.physical(index.type)
        store.ensure_collection(name, DIM)
        store.upsert(name, rows, batch_size=400)
        store.client.flush(name)
        poll_until(
            lambda: store.client.describe_index(name, VECTOR_FIELD)["indexed_rows"] == len(rows),
            f"{index.type} index built on {backend.name}",
        )
        return store, name

    # one connection per index; on a server they load and index side by side
    with ThreadPoolExecutor(len(INDEXES) if backend.server else 1) as pool:
        built = list(pool.map(build, INDEXES))
    for index, (store, name) in zip(INDEXES, built, strict=True):
        assert store.client.describe_index(name, VECTOR_FIELD)["index_type"] == index.type
        for probe in rows[::97]:
            hits = store.search(name, probe[VECTOR_FIELD], 2, ["id"])
            assert hits[0].record["id"] == probe["id"], index.type


def test_search_again_after_restart(backend):
    """After a restart the collection must be loaded again before it can be searched: a new
    connection loads it, and a connection kept across the restart reloads it on its own."""
    store = backend.store()
    name = backend.physical()
    store.ensure_collection(name, DIM)
    rows = make_rows(150)
    store.upsert(name, rows)
    probe = rows[77][VECTOR_FIELD]
    before = [h.record["id"] for h in store.search(name, probe, 5, ["id"])]
    assert before[0] == rows[77]["id"]

    backend.restart()
    if backend.server is not None:
        # first the connection kept across the restart: its client reconnects, and the store
        # loads the collection again when the server says it is not loaded (code 101)
        assert [h.record["id"] for h in store.search(name, probe, 5, ["id"])] == before
    fresh = backend.store()
    assert fresh.count(name) == len(rows)
    assert [h.record["id"] for h in fresh.search(name, probe, 5, ["id"])] == before


def test_milvus_standalone_server_runs_here(request):
    """Where the standalone cannot run, this is the one skip line that says why; where it
    runs, it is Milvus 2.3.5 with authorization on: no token or a wrong one is refused."""
    if STANDALONE_UNAVAILABLE:
        pytest.skip(f"Milvus standalone server not tested: {STANDALONE_UNAVAILABLE}")
    server = request.getfixturevalue("standalone_server")
    store = MilvusStore(server.uri, "any", server.token)
    try:
        assert store.client.get_server_version().startswith("v2.3.5")
    finally:
        store.close()
    for token in ("root:wrong", None):
        with pytest.raises(StoreError, match="MILVUS_TOKEN"):
            MilvusStore(server.uri, "any", token)


# ---------------------------------------------------------------------------------------
# the pipeline on every backend: incremental sync, stale cleanup, search
# ---------------------------------------------------------------------------------------
WORDS = (
    "river mountain forest ocean desert valley glacier meadow canyon island harbor village "
    "market bridge castle tower garden orchard vineyard library museum theater stadium"
).split()
SMALL = {"chunking": {"chunk_size": 64, "chunk_overlap": 0}}


def make_doc(
    i: int, source_id: str | None = None, edit: int | None = None, paragraphs: int = 4
) -> Document:
    rnd = random.Random(i)
    paras = [" ".join(rnd.choice(WORDS) for _ in range(55)) + "." for _ in range(paragraphs)]
    if edit is not None:
        paras[edit] = "This paragraph was rewritten entirely about cooking pasta and sauces."
    sid = source_id or f"file:docs/doc{i}.txt"
    return Document(source_id=sid, source_type="transcript", text="\n\n".join(paras),
                    title=f"Document {i}", origin=sid)  # fmt: skip


def source_map(ctx: Context) -> dict[str, str]:
    target = ctx.store.alias_target()
    return {r["id"]: r["source_id"] for r in ctx.store.iter_rows(target, ["id", "source_id"])}


def test_incremental_sync_stale_cleanup_and_search(backend, backend_ctx):
    ctx = backend_ctx(**SMALL)
    odd = make_doc(9, source_id=ODD_SOURCES[0])
    docs = [make_doc(0), make_doc(1), odd]
    first = ingest(ctx, docs)
    before = source_map(ctx)
    assert first.added == first.chunks == len(before) > 6
    assert ctx.store.count(ctx.target) == len(before)

    again = ingest(ctx, docs)  # right after the writes: all of them must be seen as current
    assert (again.upserted, again.added, again.deleted, again.embedded) == (0, 0, 0, 0)
    assert again.unchanged_documents == 3

    edited = make_doc(1, edit=2)
    new_ids = {c.id for c in Chunker(ctx.chunker_spec(), ctx.embedder.count_tokens).split(edited)}
    old_ids = {i for i, s in before.items() if s == edited.source_id}
    result = ingest(ctx, [make_doc(0), edited, odd])
    after = source_map(ctx)
    assert result.deleted == len(old_ids - new_ids) > 0
    assert {i for i, s in after.items() if s == edited.source_id} == new_ids
    assert ctx.store.count(ctx.target) == len(after)  # no stale chunk, no duplicate

    hits = search(ctx, "cooking pasta and sauces", k=3)
    assert hits[0]["source_id"] == edited.source_id and "pasta" in hits[0]["text"]

    full = ingest(ctx, [make_doc(0), edited], cleanup="full")  # the odd source id goes
    remaining = source_map(ctx)
    assert full.deleted == sum(1 for s in after.values() if s == odd.source_id) > 0
    assert set(remaining.values()) == {make_doc(0).source_id, edited.source_id}


# ---------------------------------------------------------------------------------------
# server-only: large exports, and several writer processes
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("backend", [BIG_EXPORT_BACKEND], indirect=True)
def test_snapshot_exports_past_the_16384_window(backend, backend_ctx):
    """20,500 records in one snapshot: `query_iterator` pages by primary key, where
    limit+offset would stop at 16,384 on a server."""
    n = 20_500
    ctx = backend_ctx()
    name = backend.physical()
    ctx.store.ensure_collection(name, 4)
    rows = make_rows(n, dim=4)
    ctx.store.upsert(name, rows, batch_size=2_500)
    ctx.store.point_alias(name)
    if backend.name == "standalone":  # the cap is real there
        with pytest.raises(Exception, match="16384"):
            ctx.store.client.query(name, filter="", output_fields=["id"], limit=16_384, offset=1)

    snap = snapshot(ctx)
    data = read_snapshot(snap.path)
    ids = [r["id"] for r in data["records"]]
    assert snap.records == data["count"] == len(ids) == n
    assert ids == sorted(r["id"] for r in rows)  # complete, sorted, no duplicates
    assert data["records"][n // 2] == scalars(by_id(rows)[ids[n // 2]], SNAPSHOT_FIELDS)


@dataclass
class WriterGroup:
    """One writer's sources, its params, and the ids a clean run of it produces."""

    documents: list[Document]
    params: dict
    ids: set[str]


@pytest.fixture(scope="module")
def writer_groups(tmp_path_factory, embedder) -> dict[str, WriterGroup]:
    """Two disjoint sets of sources. Each is first ingested into a private Milvus Lite: that
    gives the ids a writer must produce and fills its embedding cache, so the writer
    processes need no model (two processes loading torch on two cores would dominate)."""
    root = tmp_path_factory.mktemp("writers")
    groups = {}
    for key, first in (("a", 0), ("b", 100)):
        docs = [
            make_doc(first + i, source_id=f"file:{key}/{i}.txt", paragraphs=2) for i in range(6)
        ]
        home = root / key
        params = {
            "milvus": {"uri": str(home / "reference.db"), "batch_size": 8},
            "chunking": {"chunk_size": 48, "chunk_overlap": 0},
            "ingest": {"rejects": str(home / "rejects.jsonl"), "cache": str(home / "cache.sqlite"),
                       "batch_documents": 1},
        }  # fmt: skip
        ref = Context(Params.model_validate(params), env=Env())  # Lite, whatever the env says
        ref._embedder = embedder
        ingest(ref, docs)
        groups[key] = WriterGroup(docs, params, set(source_map(ref)))
        ref.close()
    assert groups["a"].ids and groups["b"].ids and not groups["a"].ids & groups["b"].ids
    return groups


WORKER = r"""
import json, sys
from corpusflow.config import Params
from corpusflow.models import Document
from corpusflow.pipeline import Context, ingest

spec = json.loads(open(sys.argv[1], encoding="utf-8").read())
ctx = Context(Params.model_validate(spec["params"]))  # MILVUS_URI/MILVUS_TOKEN: environment
docs = [Document(**d) for d in spec["documents"]]
ctx.store.alias_target()  # connected, imports done
print("ready", flush=True)
sys.stdin.readline()  # both workers start ingesting on the same signal
result = ingest(ctx, docs)
ctx.close()
print(json.dumps(result.to_dict()), flush=True)
"""


@pytest.mark.parametrize("backend", SERVERS, indirect=True)
def test_two_processes_ingest_into_one_collection_at_once(backend, tmp_path, writer_groups):
    """Two `ingest` processes with different sources start at the same moment on an empty
    server (both create the collection and the alias) and end with the union, no duplicates."""
    workers = {}
    try:
        for key, group in writer_groups.items():
            spec = tmp_path / f"{key}.json"
            milvus = {**group.params["milvus"], "collection": backend.alias}
            params = {**group.params, "milvus": milvus}  # uri: MILVUS_URI wins over it
            documents = [_doc_fields(d) for d in group.documents]
            spec.write_text(json.dumps({"params": params, "documents": documents}), "utf-8")
            with (tmp_path / f"{key}.stderr").open("w") as log:
                workers[key] = subprocess.Popen(
                    [sys.executable, "-c", WORKER, str(spec)], text=True,
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                )  # fmt: skip
        for key, proc in workers.items():
            assert proc.stdout.readline() == "ready\n", _stderr(tmp_path, key)
        for proc in workers.values():
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = {}
        for key, proc in workers.items():
            out, _ = proc.communicate(timeout=180)
            assert proc.returncode == 0, _stderr(tmp_path, key)
            results[key] = json.loads(out)
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    for key, result in results.items():
        assert result["added"] == len(writer_groups[key].ids) and result["embedded"] == 0
        assert result["rejected"] == result["deleted"] == 0
    store = backend.store()
    target = store.alias_target()
    assert target == physical_name(backend.alias, results["a"]["model"], 384)
    ids = ids_in(store, target)
    assert len(ids) == len(set(ids)) == store.count(target)  # no duplicates
    assert set(ids) == writer_groups["a"].ids | writer_groups["b"].ids  # the union


def _doc_fields(doc: Document) -> dict:
    fields = ("source_id", "source_type", "text", "title", "author", "url", "published")
    return {f: getattr(doc, f) for f in fields} | {"origin": doc.origin}


def _stderr(root: Path, key: str) -> str:
    return (root / f"{key}.stderr").read_text(encoding="utf-8", errors="replace")[-3000:]
