"""The overlapped run (runner.run_pipelined, the default) against the serial one (issue 17).

Planning (parsing, chunking), embedding and loading run in three threads with bounded queues
between them. These tests hold it to the serial run: the same ids, vectors and counts; a
failure in any stage stops the others and nothing is written after the run returns; the
planner never runs more than the queues allow ahead of the loader. The kill -9 points of
tests/test_reliability_loop.py run through this path too (pipelined is the default).
"""

from __future__ import annotations

import contextvars
import shutil
import threading

import pytest

from conftest import SAMPLE
from corpusflow import runner
from corpusflow.ingestion import Ingestion
from corpusflow.models import Reject
from corpusflow.pipeline import ingest
from corpusflow.sources import reader, transcripts
from corpusflow.store import MilvusStore

FIELDS = ["id", "source_id", "chunk_index", "n_chunks", "text", "doc_hash", "chunker", "vector"]
VOLATILE = {"run_id", "seconds", "rejects_file", "duplicates_file"}


def corpus(root):
    shutil.copytree(SAMPLE, root / "raw")
    return ([str(root / "raw" / "transcripts")], [str(root / "raw" / "articles")], ())


def settings(pipelined: bool) -> dict:
    return {
        "ingest": {"batch_documents": 1, "pipelined": pipelined},
        "chunking": {"mode": "characters", "chunk_size": 200, "chunk_overlap": 0},
    }


def rows(ctx) -> list[tuple]:
    physical = ctx.store.alias_target()
    ctx.store.load(physical)
    got = ctx.store.client.query(physical, filter="", output_fields=FIELDS, limit=16_000)
    return sorted(
        (*(r[f] for f in FIELDS[:-1]), tuple(round(x, 6) for x in r["vector"])) for r in got
    )


def counts(result) -> dict:
    return {k: v for k, v in result.to_dict().items() if k not in VOLATILE}


def test_pipelined_run_matches_the_serial_one(tmp_path, make_ctx, monkeypatch):
    """The pipelined run parses transcripts in 2 worker processes (sources/reader.py; the
    sample has fewer files than it takes by default), the serial one in its own."""
    monkeypatch.setattr(transcripts, "MIN_FILES", 0)
    handed: list[str] = []
    submit = reader.Reader.submit
    monkeypatch.setattr(
        reader.Reader, "submit", lambda self, p, b: handed.append(p.name) or submit(self, p, b)
    )
    sources = corpus(tmp_path)
    contexts = {}
    for pipelined in (True, False):
        root = tmp_path / f"pipelined-{pipelined}"
        root.mkdir()
        contexts[pipelined] = make_ctx(root, **settings(pipelined))
        contexts[pipelined].params.ingest.parse_workers = 2 if pipelined else 0
    first = {p: counts(ingest(ctx, sources=sources)) for p, ctx in contexts.items()}
    edited = tmp_path / "raw" / "transcripts" / "marathon-training.txt"
    edited.write_text("Long runs build the base. Rest days matter as much as hard days.\n")
    second = {p: counts(ingest(ctx, sources=sources)) for p, ctx in contexts.items()}
    assert first[True]["added"] > 20  # a real corpus, many batches of one document
    assert second[True]["added"] > 0 and second[True]["deleted"] > 0
    assert first[True] == first[False]
    assert second[True] == second[False]
    assert handed  # the workers parsed transcripts
    assert rows(contexts[True]) == rows(contexts[False])


class Boom(RuntimeError):
    pass


def test_a_failing_load_stops_every_stage_and_nothing_is_written_after(
    tmp_path, make_ctx, monkeypatch
):
    sources = corpus(tmp_path)
    ctx = make_ctx(tmp_path, **settings(True))
    calls = {"upsert": 0, "after_failure": 0}
    original = MilvusStore.upsert

    def upsert(self, *args, **kwargs):
        calls["upsert"] += 1
        if calls["upsert"] == 3:
            raise Boom("server gone")
        if calls["upsert"] > 3:
            calls["after_failure"] += 1
        return original(self, *args, **kwargs)

    monkeypatch.setattr(MilvusStore, "upsert", upsert)
    with pytest.raises(Boom):
        ingest(ctx, sources=sources)
    assert calls["after_failure"] == 0
    assert not [t for t in threading.enumerate() if t.name.startswith("corpusflow-")]
    monkeypatch.setattr(MilvusStore, "upsert", original)
    again = ingest(ctx, sources=sources)  # the journal leaves only the failed batch to redo
    (tmp_path / "clean").mkdir()
    clean = make_ctx(tmp_path / "clean", **settings(False))
    reference = ingest(clean, sources=sources)
    assert again.documents == reference.documents
    assert rows(ctx) == rows(clean)


def test_a_failing_source_stops_the_run(tmp_path, make_ctx):
    sources = corpus(tmp_path)
    ctx = make_ctx(tmp_path, **settings(True))
    run = Ingestion(ctx)
    items = list(run.extract(*sources))

    def stream():
        yield from items[:3]
        raise Boom("disk read error")

    with pytest.raises(Boom):
        runner.run_pipelined(run, stream())
    assert not [t for t in threading.enumerate() if t.name.startswith("corpusflow-")]
    result = ingest(ctx, sources=sources)  # the next run completes what the first began
    assert result.documents == len([i for i in items if hasattr(i, "content_hash")])


def test_the_planner_runs_ahead_of_the_loader_only_as_far_as_the_queues_allow(
    tmp_path, make_ctx, monkeypatch
):
    sources = corpus(tmp_path)
    ctx = make_ctx(tmp_path, **settings(True))
    planned, loaded, lead = [0], [0], []
    plan, load = Ingestion.plan, Ingestion.load

    def counting_plan(self, batch):
        out = plan(self, batch)
        planned[0] += 1
        lead.append(planned[0] - loaded[0])
        return out

    def counting_load(self, p, vectors):
        load(self, p, vectors)
        loaded[0] += 1

    monkeypatch.setattr(Ingestion, "plan", counting_plan)
    monkeypatch.setattr(Ingestion, "load", counting_load)
    result = ingest(ctx, sources=sources)
    assert loaded[0] == planned[0] == result.documents
    # in the queues: DEPTH planned + DEPTH embedded; in hand: one embedding, one loading,
    # and the one just planned
    assert max(lead) <= 2 * runner.DEPTH + 3
    assert max(lead) > 1  # it did run ahead: the stages overlapped


RUN = contextvars.ContextVar("RUN")


def test_callbacks_from_the_stage_threads_see_the_callers_context(tmp_path, make_ctx):
    """A Prefect run logger (or any context-bound callback) called for a reject found while
    planning runs in the planner's thread; it must still see the caller's run context."""
    sources = corpus(tmp_path)
    ctx = make_ctx(tmp_path, **settings(True))
    seen: list[tuple[str | None, str]] = []
    RUN.set("run-1")
    broken = Reject(str(tmp_path / "broken.vtt"), "transcript", "no cues")
    items = [broken, *extract_all(ctx, sources)]
    result = ingest(
        ctx,
        items,
        on_reject=lambda r: seen.append((RUN.get(None), threading.current_thread().name)),
    )
    assert result.rejected == 1
    assert seen == [("run-1", "corpusflow-prepare")]


def extract_all(ctx, sources):
    from corpusflow.pipeline import extract

    return list(extract(ctx.params, *sources))
