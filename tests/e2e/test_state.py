"""The state layer (issue 13): identities that cannot collide, cleanup that trusts only what
it knows, model switch-back, and a local state that Milvus can always overrule."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import CLI
from corpusflow.config import Embedding
from corpusflow.embedding.local import LocalEmbedder, shipped_model_path
from corpusflow.models import Document
from corpusflow.pipeline import extract, ingest

TEXTS = {
    "a1": "Sourdough starters need flour and water every day to keep the wild yeast alive.",
    "a2": "Kayakers brace against river rapids with a strong paddle stroke and a helmet.",
    "a3": "Tomatoes want full sun, deep watering and a stake to climb in the garden.",
}


def write_csv(path: Path, rows: dict[str, str], text_column: str = "text") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["id", "title", text_column])
        writer.writerows([k, f"Title {k}", v] for k, v in rows.items())


def source_ids(ctx) -> set[str]:
    target = ctx.store.alias_target()
    return {r["source_id"] for r in ctx.store.iter_rows(target, ["source_id"])}


def rows_of(ctx, target: str | None = None) -> dict[str, tuple]:
    target = target or ctx.store.alias_target()
    fields = ["id", "source_id", "doc_hash", "text"]
    return {r["id"]: (r["source_id"], r["doc_hash"]) for r in ctx.store.iter_rows(target, fields)}


# --- defect 1: CSVs with the same name in two folders ------------------------------------
def test_same_csv_name_in_two_folders_never_collides(make_ctx, tmp_path):
    ctx = make_ctx()
    write_csv(tmp_path / "2024" / "articles.csv", {"a1": TEXTS["a1"], "a2": TEXTS["a2"]})
    write_csv(tmp_path / "2025" / "articles.csv", {"a1": TEXTS["a3"], "a2": TEXTS["a2"]})
    first = ingest(ctx, extract(ctx.params, articles=[str(tmp_path / "2024" / "articles.csv")]))
    second = ingest(ctx, extract(ctx.params, articles=[str(tmp_path / "2025" / "articles.csv")]))
    assert (first.rejected, second.rejected, second.deleted) == (0, 0, 0)
    base = tmp_path.resolve().as_posix()
    assert source_ids(ctx) == {
        f"csv:{base}/2024/articles.csv:a1",
        f"csv:{base}/2024/articles.csv:a2",
        f"csv:{base}/2025/articles.csv:a1",
        f"csv:{base}/2025/articles.csv:a2",
    }


# --- defect 4: ids independent of the working directory and of how the path was typed -----
def _cli_ingest(cwd: Path, params: Path, *paths: str) -> dict:
    args = [CLI, "ingest", "--json", "--params", str(params)]
    for p in paths:
        args += ["--transcripts", p]
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_file_ids_do_not_depend_on_the_working_directory(tmp_path):
    root = tmp_path / "project"
    (root / "talks").mkdir(parents=True)
    (root / "elsewhere").mkdir()
    (root / "talks" / "bread.txt").write_text(TEXTS["a1"], encoding="utf-8")
    params = root / "params.yaml"
    store = {  # absolute, so every run below uses the same Milvus whatever its directory
        "milvus": {"uri": str(root / "data" / "milvus.db")},
        "ingest": {
            k: str(root / "data" / f)
            for k, f in [("cache", "cache.sqlite"), ("rejects", "r.jsonl")]
        },
        "snapshot": {"out": str(root / "data" / "snapshot.json")},
        "chunking": {"mode": "characters"},
    }
    params.write_text(yaml.safe_dump(store), encoding="utf-8")
    first = _cli_ingest(root, params, "talks/bread.txt")
    again = _cli_ingest(root / "elsewhere", params, "../talks/./bread.txt")
    third = _cli_ingest(tmp_path, params, str(root / "talks" / "bread.txt"))
    assert first["added"] == 1
    for run in (again, third):
        assert (run["added"], run["updated"], run["deleted"], run["skipped"]) == (0, 0, 0, 1)
    out = subprocess.run(
        [CLI, "snapshot", "--json", "--params", str(params)],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    snap = json.loads(Path(root / json.loads(out.stdout)["path"]).read_text(encoding="utf-8"))
    assert {r["source_id"] for r in snap["records"]} == {"file:talks/bread.txt"}


# --- defect 2: whole-input rejects protect every stored source of that input -------------
def test_full_cleanup_keeps_sources_of_inputs_rejected_whole(make_ctx, tmp_path):
    ctx = make_ctx()
    data = tmp_path / "data"
    write_csv(data / "news.csv", {"a1": TEXTS["a1"], "a2": TEXTS["a2"]})
    (data / "talks").mkdir()
    (data / "talks" / "garden.txt").write_text(TEXTS["a3"], encoding="utf-8")
    (data / "linked").mkdir()
    (data / "real.txt").write_text(TEXTS["a2"] + " Again.", encoding="utf-8")
    (data / "linked" / "link.txt").symlink_to(data / "real.txt")
    (data / "more").mkdir()
    (data / "more" / "m.txt").write_text(TEXTS["a1"] + " More.", encoding="utf-8")
    transcripts = [str(data / "talks"), str(data / "linked" / "link.txt"), str(data / "more")]
    articles = [str(data / "news.csv")]
    ingest(ctx, extract(ctx.params, transcripts, articles))
    before = source_ids(ctx)
    assert len(before) == 5
    write_csv(data / "news.csv", {"a1": TEXTS["a1"]}, text_column="renamed")  # text column gone
    (data / "real.txt").unlink()  # the link now dangles
    for f in (data / "more").iterdir():
        f.unlink()
    (data / "more").rmdir()  # a missing directory
    result = ingest(ctx, extract(ctx.params, transcripts, articles), cleanup="full")
    assert result.rejected == 3 and result.deleted == 0
    assert source_ids(ctx) == before


def test_full_cleanup_still_removes_what_left_a_good_input(make_ctx, tmp_path):
    ctx = make_ctx()
    write_csv(tmp_path / "news.csv", {"a1": TEXTS["a1"], "a2": TEXTS["a2"]})
    src = ((), [str(tmp_path / "news.csv")], ())
    ingest(ctx, sources=src)
    write_csv(tmp_path / "news.csv", {"a1": TEXTS["a1"]})
    result = ingest(ctx, sources=src, cleanup="full")
    assert result.deleted == 1
    assert source_ids(ctx) == {f"csv:{tmp_path.resolve().as_posix()}/news.csv:a1"}


# --- defect 3: model A -> B -> A ---------------------------------------------------------
def _doc(name: str, text: str) -> Document:
    return Document(source_id=f"file:{name}", source_type="transcript", text=text, origin=name)


def test_model_switch_back_matches_the_collection_it_leaves(make_ctx, embedder, tmp_path):
    alt = LocalEmbedder(Embedding(model=str(shipped_model_path())))
    alt.__dict__["_model"] = embedder._model  # same weights, another model id
    small = {"chunking": {"mode": "characters", "chunk_size": 60, "chunk_overlap": 0}}
    a = make_ctx(**small)
    docs = {n: _doc(n, t) for n, t in TEXTS.items()}
    ingest(a, list(docs.values()))
    a_target = a.store.alias_target()
    a.close()

    b = make_ctx(emb=alt, **small)
    ingest(b, list(docs.values()))  # switch to B: all three carried over
    edited = _doc("a1", TEXTS["a1"] + " Feed it twice in summer.")
    ingest(b, [edited])  # a1 edited while B is current
    ingest(b, [edited, docs["a2"]], cleanup="full")  # a3 deleted while B is current
    b_rows = {v for v in rows_of(b).values()}
    b.close()

    back = make_ctx(**small)
    result = ingest(back, [docs["a2"]])  # back to A, incremental, with only a2 in the run
    assert result.alias_moved and back.store.alias_target() == a_target
    assert {v for v in rows_of(back).values()} == b_rows
    assert source_ids(back) == {"file:a1", "file:a2"}
    again = ingest(back, [docs["a2"]])
    assert (again.upserted, again.deleted, again.migrated) == (0, 0, 0)


# --- Milvus stays the truth --------------------------------------------------------------
def test_dropped_collection_is_never_mistaken_for_current(make_ctx):
    ctx = make_ctx()
    docs = [_doc(n, t) for n, t in TEXTS.items()]
    first = ingest(ctx, docs)
    ctx.store.client.drop_collection(ctx.store.alias_target())
    again = ingest(ctx, docs)
    assert again.added == first.added and again.upserted == first.upserted > 0
    assert len(rows_of(ctx)) == first.chunks


def test_foreign_delete_is_noticed_and_repaired(make_ctx):
    ctx = make_ctx()
    docs = [_doc(n, t) for n, t in TEXTS.items()]
    first = ingest(ctx, docs)
    target = ctx.store.alias_target()
    victim = next(iter(rows_of(ctx)))
    ctx.store.client.delete(target, ids=[victim])  # written by someone else
    again = ingest(ctx, docs)
    assert again.upserted >= 1 and victim in rows_of(ctx)
    assert len(rows_of(ctx)) == first.chunks


def test_foreign_upsert_that_keeps_the_count_is_noticed(make_ctx, tmp_path):
    ctx = make_ctx()
    docs = [_doc(n, t) for n, t in TEXTS.items()]
    ingest(ctx, docs)
    target = ctx.store.alias_target()
    # another corpusflow (its own state file) rewrites a1 in the same collection
    other = make_ctx(ingest={"state": str(tmp_path / "other-state.sqlite")})
    ingest(other, [_doc("a1", TEXTS["a1"] + " Changed elsewhere.")])
    other.close()
    again = ingest(ctx, docs)  # our table is stale: re-read from Milvus, a1 put back
    assert again.updated + again.added >= 1
    stored = {sid: h for sid, h in rows_of(ctx, target).values()}
    assert stored == {d.source_id: d.content_hash for d in docs}


# --- unchanged inputs are not parsed -----------------------------------------------------
def test_unchanged_files_are_not_read_again(make_ctx, tmp_path, monkeypatch):
    from corpusflow.sources import transcripts

    folder = tmp_path / "talks"
    folder.mkdir()
    for n, t in TEXTS.items():
        (folder / f"{n}.txt").write_text(t, encoding="utf-8")
    write_csv(tmp_path / "news.csv", {"n1": TEXTS["a1"], "n2": TEXTS["a2"]})
    read: list[str] = []
    original = transcripts._read_transcript

    def counting(path, *args, **kwargs):
        read.append(Path(path).name)
        return original(path, *args, **kwargs)

    monkeypatch.setattr(transcripts, "_read_transcript", counting)
    ctx = make_ctx()
    src = ([str(folder)], [str(tmp_path / "news.csv")], ())
    first = ingest(ctx, sources=src)
    assert sorted(read) == ["a1.txt", "a2.txt", "a3.txt"]
    read.clear()
    again = ingest(ctx, sources=src)
    assert read == []
    assert (again.documents, again.unchanged_documents, again.skipped) == (5, 5, first.chunks)
    assert again.by_type["article"]["unchanged"] == 2
    (folder / "a2.txt").write_text(TEXTS["a2"] + " New line.", encoding="utf-8")
    edited = ingest(ctx, sources=src)
    assert (
        read == ["a2.txt"]
        and edited.unchanged_documents == 4
        and edited.updated + edited.added >= 1
    )
    read.clear()
    assert ingest(ctx, sources=src, cleanup="full").deleted == 0  # skipped inputs count as seen
    assert read == []


class Killed(BaseException):
    """Stands for kill -9: nothing after it runs (no except, no finally that settles)."""


def _kill_after_the_write(ctx, docs, monkeypatch) -> None:
    """Ingest `docs`, dying after the Milvus upsert but before the local table settles."""
    from corpusflow import state as state_mod

    def die(self, *a, **k):
        raise Killed

    monkeypatch.setattr(state_mod.StateTable, "settle", die)
    with pytest.raises(Killed):
        ingest(ctx, docs)
    monkeypatch.undo()
    for table in ctx._states:
        table.close()
    ctx._states.clear()


def _reads_of_milvus(monkeypatch) -> list[str]:
    """Every filtered or full read of the collection's rows from now on, and every rebuild."""
    from corpusflow import state as state_mod
    from corpusflow.store import MilvusStore

    calls: list[str] = []
    real_rows, real_rebuild = MilvusStore.iter_rows, state_mod.StateTable.rebuild

    def rows(self, name, fields, filter="", **kw):
        calls.append(f"iter_rows {filter[:40]}")
        return real_rows(self, name, fields, filter, **kw)

    monkeypatch.setattr(MilvusStore, "iter_rows", rows)
    monkeypatch.setattr(
        state_mod.StateTable,
        "rebuild",
        lambda s, *a: calls.append("rebuild") or real_rebuild(s, *a),
    )
    return calls


def test_a_kill_between_milvus_write_and_settle_is_redone_without_reading_milvus(
    make_ctx, monkeypatch
):
    """The journal names the sources and ids of the batch in flight: the next run rewrites
    that batch (an upsert) instead of loading the collection to read it back."""
    ctx = make_ctx()
    docs = [_doc(n, t) for n, t in TEXTS.items()]
    first = ingest(ctx, docs[:2])
    _kill_after_the_write(ctx, docs, monkeypatch)
    reads = _reads_of_milvus(monkeypatch)
    again = ingest(ctx, docs)
    assert reads == []  # no read-back, no rebuild
    a3 = again.chunks - first.chunks
    # counted against the last completed state: a3 was not stored by any run that ended
    assert (again.upserted, again.added, again.updated, again.deleted) == (a3, a3, 0, 0)
    assert again.unchanged_documents == 2
    monkeypatch.undo()
    assert len(rows_of(ctx)) == again.chunks
    assert ctx.state_of(ctx.store.alias_target()).matches()  # the table is exact again


def test_a_rerun_after_a_kill_counts_what_an_uninterrupted_run_counts(
    make_ctx, monkeypatch, tmp_path
):
    """Counts are against the last completed run: the killed batch's writes are redone, not
    reported as updates of rows no finished run stored."""
    long = " ".join(f"{TEXTS['a3']} Part {i}." for i in range(12))
    v1, v2 = _doc("a3", long), _doc("a3", long.replace("Part 7.", "Part seven, changed."))
    counts = {}
    for killed in (False, True):
        small = {"chunking": {"mode": "characters", "chunk_size": 200, "chunk_overlap": 0}}
        ctx = make_ctx(tmp_path / f"killed-{killed}", **small)
        ingest(ctx, [v1])
        if killed:
            _kill_after_the_write(ctx, [v2], monkeypatch)
        r = ingest(ctx, [v2])
        counts[killed] = (r.added, r.updated, r.deleted, r.chunks, len(rows_of(ctx)))
        ctx.close()
    assert counts[True] == counts[False] and counts[False][0] > 0 and counts[False][2] > 0


def test_a_source_edited_after_a_kill_keeps_no_row_of_the_killed_batch(make_ctx, monkeypatch):
    ctx = make_ctx()
    docs = [_doc(n, t) for n, t in TEXTS.items()]
    ingest(ctx, docs[:2])
    _kill_after_the_write(ctx, docs, monkeypatch)
    edited = _doc("a3", "Peppers like warm soil, little water and a sheltered corner.")
    again = ingest(ctx, [*docs[:2], edited])
    stored = rows_of(ctx)
    assert len(stored) == again.chunks
    assert {h for sid, h in stored.values() if sid == edited.source_id} == {edited.content_hash}


@pytest.mark.parametrize("cleanup", ["incremental", "full"])
def test_a_killed_batch_not_met_again_is_read_back_exactly(make_ctx, monkeypatch, cleanup):
    """A journaled source the rerun does not meet is read back at its end: kept exactly as
    stored (incremental), or deleted with its exact row count (full)."""
    ctx = make_ctx()
    docs = [_doc(n, t) for n, t in TEXTS.items()]
    first = ingest(ctx, docs[:2])
    _kill_after_the_write(ctx, docs, monkeypatch)
    stored = rows_of(ctx)
    a3_rows = sum(1 for sid, _ in stored.values() if sid == docs[2].source_id)
    assert a3_rows > 0  # the killed run's upsert is in Milvus
    again = ingest(ctx, docs[:2], cleanup=cleanup)
    assert again.upserted == 0
    left = rows_of(ctx)
    if cleanup == "full":
        assert again.deleted == a3_rows and len(left) == first.chunks
    else:
        assert again.deleted == 0 and left == stored
    table = ctx.state_of(ctx.store.alias_target())
    assert table.matches() and table.total_chunks() == len(left)


def test_stats_counts_documents_and_chunks_without_reading_rows(make_ctx, monkeypatch):
    from corpusflow.pipeline import stats

    ctx = make_ctx(chunking={"mode": "characters", "chunk_size": 40, "chunk_overlap": 0})
    r = ingest(ctx, [_doc(n, t) for n, t in TEXTS.items()])
    monkeypatch.setattr(type(ctx.store), "iter_rows", lambda *a, **k: pytest.fail("read rows"))
    out = stats(ctx)
    assert out["records"] == r.chunks and out["sources"] == 3
    assert out["by_source_type"] == {"transcript": {"documents": 3, "chunks": r.chunks}}
