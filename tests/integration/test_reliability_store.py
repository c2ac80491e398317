"""A kill between creating the collection and its vector index must not leave it unindexed.

pymilvus' `create_collection(schema=..., index_params=...)` is two calls to Milvus (create,
then create_index); a run killed between them leaves exactly the collection made here with
`create_collection(schema=...)` alone. Real Milvus Lite and MiniLM.
"""

from __future__ import annotations

from corpusflow.pipeline import ingest, search
from corpusflow.store import VECTOR_FIELD
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
