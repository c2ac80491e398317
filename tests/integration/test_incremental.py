"""Incremental sync against real Milvus Lite: exact counts and the final set of ids."""

from __future__ import annotations

import random

from corpusflow.chunking import Chunker
from corpusflow.config import Embedding
from corpusflow.embedding.local import LocalEmbedder, shipped_model_path
from corpusflow.models import Document
from corpusflow.pipeline import ingest, search

WORDS = (
    "river mountain forest ocean desert valley glacier meadow canyon island harbor village "
    "market bridge castle tower garden orchard vineyard library museum theater stadium "
    "railway airport highway tunnel lighthouse volcano prairie swamp reef lagoon"
).split()


def paragraph(seed: int, n: int = 60) -> str:
    rnd = random.Random(seed)
    return " ".join(rnd.choice(WORDS) for _ in range(n)).capitalize() + "."


def make_doc(i: int, paragraphs: int = 6, edit: int | None = None, title: str | None = None):
    paras = [paragraph(i * 100 + p) for p in range(paragraphs)]
    if edit is not None:
        paras[edit] = "This paragraph was rewritten entirely about cooking pasta and sauces."
    return Document(
        source_id=f"file:docs/doc{i}.txt",
        source_type="transcript",
        text="\n\n".join(paras),
        title=title or f"Document {i}",
        origin=f"docs/doc{i}.txt",
    )


def ids_in(ctx) -> dict[str, str]:
    target = ctx.store.alias_target()
    return {r["id"]: r["source_id"] for r in ctx.store.iter_rows(target, ["id", "source_id"])}


SMALL = {"chunking": {"chunk_size": 64, "chunk_overlap": 0}}


def test_rerun_skips_everything(make_ctx):
    ctx = make_ctx(**SMALL)
    docs = [make_doc(i) for i in range(3)]
    first = ingest(ctx, docs)
    assert first.added == first.upserted == first.chunks == len(ids_in(ctx)) > 6
    assert first.embedded == first.chunks
    again = ingest(ctx, docs)
    assert (again.embedded, again.upserted, again.added, again.updated, again.deleted) == (0,) * 5
    assert again.skipped == first.chunks and again.unchanged_documents == 3
    assert len(ids_in(ctx)) == first.chunks


def test_editing_one_paragraph_reembeds_only_its_chunks(make_ctx):
    ctx = make_ctx(**SMALL)
    ingest(ctx, [make_doc(i) for i in range(3)])
    before = ids_in(ctx)
    edited = make_doc(1, edit=2)
    chunks_new = {
        c.id for c in Chunker(ctx.chunker_spec(), ctx.embedder.count_tokens).split(edited)
    }
    old_of_doc1 = {i for i, s in before.items() if s == edited.source_id}
    vanished = old_of_doc1 - chunks_new
    appeared = chunks_new - old_of_doc1
    assert vanished and appeared and len(appeared) < len(chunks_new)

    result = ingest(ctx, [make_doc(0), edited, make_doc(2)])
    assert result.embedded == len(appeared)  # only changed chunk texts reach the model
    assert result.added == len(appeared)
    assert result.deleted == len(vanished)
    after = ids_in(ctx)
    assert not (vanished & set(after))
    untouched = {i for i, s in before.items() if s != edited.source_id}
    assert untouched <= set(after)
    assert {i for i, s in after.items() if s == edited.source_id} == chunks_new


def test_shrinking_document_leaves_no_orphans(make_ctx):
    ctx = make_ctx(**SMALL)
    ingest(ctx, [make_doc(5, paragraphs=8)])
    n_before = len(ids_in(ctx))
    result = ingest(ctx, [make_doc(5, paragraphs=2)])
    after = ids_in(ctx)
    assert result.deleted == n_before - len(after) > 0
    assert result.embedded == 0  # the two kept paragraphs' chunks come from the cache


def test_metadata_change_updates_without_embedding(make_ctx):
    ctx = make_ctx(**SMALL)
    first = ingest(ctx, [make_doc(7)])
    result = ingest(ctx, [make_doc(7, title="A better title")])
    assert result.updated == first.chunks and result.added == 0 and result.embedded == 0
    target = ctx.store.alias_target()
    assert {r["title"] for r in ctx.store.iter_rows(target, ["title"])} == {"A better title"}


def test_cleanup_modes(make_ctx):
    ctx = make_ctx(**SMALL)
    ingest(ctx, [make_doc(i) for i in range(3)])
    all_ids = ids_in(ctx)
    removed = make_doc(2).source_id

    incremental = ingest(ctx, [make_doc(0), make_doc(1)], cleanup="incremental")
    assert incremental.deleted == 0 and ids_in(ctx) == all_ids

    dry = ingest(ctx, [make_doc(0), make_doc(1)], cleanup="full", dry_run=True)
    assert dry.deleted == sum(1 for s in all_ids.values() if s == removed)
    assert ids_in(ctx) == all_ids  # a dry run changes nothing

    full = ingest(ctx, [make_doc(0), make_doc(1)], cleanup="full")
    assert full.deleted == dry.deleted
    assert ids_in(ctx) == {i: s for i, s in all_ids.items() if s != removed}


def test_dry_run_reports_without_writing(make_ctx, tmp_path):
    ctx = make_ctx(**SMALL)
    ingest(ctx, [make_doc(0)])
    before = ids_in(ctx)
    plan = ingest(ctx, [make_doc(0, edit=1), make_doc(9)], dry_run=True)
    assert plan.added > 0 and plan.deleted > 0 and plan.embedded == 0 and plan.upserted == 0
    assert ids_in(ctx) == before
    assert ctx.cache.count() == len(before)


def test_rebuild_from_empty_milvus_uses_the_cache(make_ctx, tmp_path):
    first_ctx = make_ctx(root=tmp_path, **SMALL)
    first = ingest(first_ctx, [make_doc(i) for i in range(2)])
    first_ctx.close()
    # an empty Milvus (a fresh database) sharing the same embedding cache
    ctx = make_ctx(root=tmp_path, milvus={"uri": str(tmp_path / "empty.db")}, **SMALL)
    rebuilt = ingest(ctx, [make_doc(i) for i in range(2)])
    assert rebuilt.embedded == 0 and rebuilt.cache_hits == first.chunks
    assert rebuilt.added == first.chunks


def test_chunker_change_rechunks_affected_sources(make_ctx):
    ctx = make_ctx(**SMALL)
    docs = [make_doc(i) for i in range(2)]
    first = ingest(ctx, docs)
    ctx2 = ctx  # same store and cache, new chunk settings
    ctx2.params.chunking.chunk_size = 40
    result = ingest(ctx2, docs)
    assert result.unchanged_documents == 0
    assert result.deleted == first.chunks  # every old chunk boundary is gone
    rows = list(ctx.store.iter_rows(ctx.store.alias_target(), ["chunker"]))
    assert {r["chunker"] for r in rows} == {ctx2.chunker_spec().digest}


def test_model_switch_builds_new_collection_then_moves_alias(make_ctx, embedder, tmp_path):
    ctx = make_ctx(**SMALL)
    ingest(ctx, [make_doc(i) for i in range(3)])
    old = ctx.store.alias_target()
    old_map = ids_in(ctx)
    old_ids = set(old_map)
    doc0_ids = {i for i, s in old_map.items() if s == make_doc(0).source_id}

    # the same weights under another model id: a different model as far as keys go
    alt = LocalEmbedder(Embedding(model=str(shipped_model_path())))
    alt.__dict__["_model"] = embedder._model
    new_ctx = make_ctx(emb=alt, **SMALL)
    new_ctx._store, new_ctx._cache = ctx.store, ctx.cache
    assert new_ctx.target != old

    seen_alias_targets = []

    def watch(what: str, n: int) -> None:  # while the new collection fills, the alias stays
        seen_alias_targets.append(ctx.store.alias_target())
        assert search(ctx, "volcano lagoon reef", 1)

    result = ingest(new_ctx, [make_doc(0)], progress=watch)
    assert set(seen_alias_targets) == {old}
    assert result.alias_moved and ctx.store.alias_target() == new_ctx.target
    assert result.migrated == len(old_ids - doc0_ids)  # sources not in this run, carried over
    assert result.embedded == len(old_ids)  # each text embedded once by the new model
    assert set(ids_in(new_ctx)) == old_ids  # the new collection is complete
    assert ctx.store.count(old) == len(old_ids)  # the old one is left for rollback
    models = {r["model"] for r in ctx.store.iter_rows(new_ctx.target, ["model"])}
    assert models == {alt.model_id}
