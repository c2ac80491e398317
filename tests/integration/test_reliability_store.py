"""A kill between creating the collection and its vector index must not leave it unindexed.

pymilvus' `create_collection(schema=..., index_params=...)` is two calls to Milvus (create,
then create_index); a run killed between them leaves exactly the collection made here with
`create_collection(schema=...)` alone. Real Milvus Lite and MiniLM.
"""

from __future__ import annotations

import pytest

from corpusflow.pipeline import ingest, search
from corpusflow.store import INT_FIELDS, VARCHAR_FIELDS, VECTOR_FIELD, MilvusStore
from milvus_servers import LiteServer
from test_incremental import make_doc


def test_a_collection_left_without_its_index_gets_it_on_the_next_run(make_ctx, embedder):
    ctx = make_ctx()
    store, target = ctx.store, ctx.target
    store.client.create_collection(target, schema=store._schema(embedder.dimension))
    assert store.client.list_indexes(target) == []  # what the killed run left

    docs = [make_doc(i) for i in range(3)]
    result = ingest(ctx, docs)
    assert result.added == result.chunks > 0

    names = store.client.list_indexes(target, field_name=VECTOR_FIELD)
    assert len(names) == 1
    index = store.client.describe_index(target, names[0])
    assert (index["index_type"], index["metric_type"]) == ("HNSW", "COSINE")
    hits = search(ctx, docs[1].text[:200], k=1)
    assert hits[0]["source_id"] == docs[1].source_id


# --- a write of a stored key replaces its row (Milvus Lite takes `insert`) -----------------
def _row(i: int, text: str, dimension: int) -> dict:
    vector = [0.0] * dimension
    vector[i % dimension] = 1.0 if text.endswith("new") else -1.0
    fields = {f: "" for f in VARCHAR_FIELDS} | {f: 0 for f in INT_FIELDS}
    return fields | {
        "id": f"00000000-0000-0000-0000-{i:012d}",
        "source_id": f"file:s{i % 3}",
        "text": text,
        "doc_hash": text,
        "start_seconds": None,
        "end_seconds": None,
        "vector": vector,
    }


@pytest.mark.parametrize("where", ["embedded", "lite server"])
def test_writing_stored_keys_again_replaces_their_rows(tmp_path, where):
    """Milvus Lite gets whole rows through `insert`: a key written again (in the memtable, in
    a flushed segment, after a reopen) must leave one row, the latest, for every read."""
    dim, n = 8, 40
    server = LiteServer(tmp_path / "server") if where == "lite server" else None
    if server:
        server.start()
    uri = server.uri if server else str(tmp_path / "milvus.db")
    try:
        store = MilvusStore(uri, "c")
        store.ensure_collection("t", dim)
        store.upsert("t", [_row(i, "old", dim) for i in range(n)], batch_size=16)
        store.client.flush("t")  # the old rows in segments, the rewrite in the memtable
        store.upsert("t", [_row(i, "new", dim) for i in range(0, n, 2)], batch_size=16)
        store.upsert("t", [_row(i, "new", dim) for i in range(0, n, 2)], batch_size=16)
        for reopen in (False, True):
            if reopen:
                store.close()
                store = MilvusStore(uri, "c")
            rows = {r["id"]: r["text"] for r in store.iter_rows("t", ["id", "text"])}
            want = {_row(i, "", dim)["id"]: "new" if i % 2 == 0 else "old" for i in range(n)}
            assert rows == want
            assert store.row_count("t") == store.count("t") == n
            hits = store.search("t", _row(4, "new", dim)["vector"], k=n, fields=["id", "text"])
            assert sorted(h.record["id"] for h in hits) == sorted(want)  # one hit a key
            assert hits[0].record == {"id": _row(4, "", dim)["id"], "text": "new"}
        store.close()
    finally:
        if server:
            server.stop()


# --- rows are sent as columns, in the request pymilvus builds for the rows -----------------
def test_a_write_sends_the_request_pymilvus_builds_from_its_rows(tmp_path, monkeypatch):
    """The store packs a write column by column (pymilvus checks a row value by value, five
    times the CPU): what reaches Milvus must be what pymilvus makes of the same rows, field
    for field, missing times (nulls) and non-ASCII text included."""
    from pymilvus.client.prepare import Prepare

    sent = []
    columnar = Prepare.batch_insert_param.__func__

    def spy(cls, *args, **kwargs):
        sent.append(columnar(cls, *args, **kwargs))
        return sent[-1]

    monkeypatch.setattr(Prepare, "batch_insert_param", classmethod(spy))
    store = MilvusStore(str(tmp_path / "milvus.db"), "c")
    store.ensure_collection("t", 8)
    rows = [
        _row(i, f"naïve text {i} ✓", 8)
        | ({"start_seconds": 1.5 * i, "end_seconds": 2.0 * i} if i % 2 else {})
        for i in range(20)
    ]
    store.upsert("t", rows, batch_size=8)
    fields = store.client.describe_collection("t")["fields"]
    assert [request.num_rows for request in sent] == [8, 8, 4]
    for got, i in zip(sent, range(0, 20, 8), strict=True):
        want = Prepare.row_insert_param("t", rows[i : i + 8], "", fields, [])
        assert list(got.fields_data) == list(want.fields_data)
    stored = {r["id"]: r for r in store.iter_rows("t", ["id", "text", "start_seconds"])}
    assert {k: (r["text"], r["start_seconds"]) for k, r in stored.items()} == {
        r["id"]: (r["text"], r["start_seconds"]) for r in rows
    }
    store.close()


# --- a Milvus Lite channel keeps within grpcio's ping policy ------------------------------
@pytest.mark.parametrize("where", ["embedded", "lite server"])
def test_a_milvus_lite_channel_pings_within_the_servers_policy(tmp_path, monkeypatch, where):
    """Milvus Lite's server is grpcio with its default policy: with no call in flight a ping
    is allowed once per 2 hours, during a call once per 5 minutes, and the third ping too
    soon gets GOAWAY "too_many_pings" (an error line on the user's stderr after ~100 s idle,
    e.g. during a model load). pymilvus' default channel pings every 10 s, calls or not.
    Every channel the client opens to Milvus Lite must ask for neither."""
    import grpc

    opened: list[dict] = []
    real = grpc.insecure_channel

    def recording(target, options=None, *args, **kwargs):
        opened.append(dict(options or ()))
        return real(target, options, *args, **kwargs)

    server = LiteServer(tmp_path / "server") if where == "lite server" else None
    if server:
        server.start()
    monkeypatch.setattr(grpc, "insecure_channel", recording)
    try:
        store = MilvusStore(server.uri if server else str(tmp_path / "milvus.db"), "pings")
        store.ensure_collection("t", 8)
        assert store.client.list_collections() == ["t"]  # the channel answers
        store.close()
    finally:
        if server:
            server.stop()
    assert opened, "no channel was opened through grpc.insecure_channel"
    for options in opened:
        assert not options["grpc.keepalive_permit_without_calls"]
        assert options["grpc.keepalive_time_ms"] >= 5 * 60 * 1000


# --- Milvus Lite counts once when a collection is opened and verified ---------------------
def test_opening_and_verifying_a_lite_collection_counts_its_rows_once(tmp_path, monkeypatch):
    """Milvus Lite counts every live row to answer the index check (`describe_index`) and
    `get_collection_stats` (seconds after a kill left rows in its memtable). The count from
    the index check serves the verification that follows; any write makes it stale."""
    dim, uri = 8, str(tmp_path / "milvus.db")
    store = MilvusStore(uri, "c")
    store.ensure_collection("t", dim)
    store.upsert("t", [_row(i, "old", dim) for i in range(10)])
    store.close()

    store = MilvusStore(uri, "c")
    stats_calls = []
    real = store.client.get_collection_stats
    monkeypatch.setattr(
        store.client, "get_collection_stats", lambda *a, **k: stats_calls.append(a) or real(*a, **k)
    )
    store.ensure_collection("t", dim)
    assert store.row_count("t") == 10
    assert stats_calls == []  # the index check's count served
    store.upsert("t", [_row(i, "new", dim) for i in range(10, 13)])
    assert store.row_count("t") == 13  # counted again after the write, not the kept 10
    store.delete_ids("t", [_row(0, "", dim)["id"]])
    assert store.row_count("t") == 12
    assert len(stats_calls) == 2
    store.close()


# --- a whole-collection read takes as few pages as pymilvus allows ------------------------
def test_a_full_read_pages_at_the_clients_largest_batch_and_misses_no_row(tmp_path, monkeypatch):
    """Milvus Lite answers each iterator page by pk-sorting the whole collection (5.5 s a page
    at 972k rows whether it holds 1,000 rows or 16,384): a snapshot, a state rebuild or a
    migration at 1M rows costs its page count times that. Every read asks for the largest
    page pymilvus accepts; the pk cursor across pages must still return every row once."""
    from pymilvus.client.constants import MAX_BATCH_SIZE

    dim, n = 8, 40
    store = MilvusStore(str(tmp_path / "milvus.db"), "c")
    store.ensure_collection("t", dim)
    store.upsert("t", [_row(i, "old", dim) for i in range(n)], batch_size=16)
    pages: list[int] = []
    real = store.client.query_iterator
    monkeypatch.setattr(
        store.client,
        "query_iterator",
        lambda *a, **k: pages.append(k["batch_size"]) or real(*a, **k),
    )
    ids = [r["id"] for r in store.iter_rows("t", ["id"])]
    assert pages == [MAX_BATCH_SIZE]
    assert ids == sorted(_row(i, "", dim)["id"] for i in range(n))

    ids = [r["id"] for r in store.iter_rows("t", ["id"], batch_size=7)]  # six pages
    assert ids == sorted(_row(i, "", dim)["id"] for i in range(n))
    store.close()
