"""Streaming ingestion: the `watch` flow (flows/watch.py) under prefect_test_harness, on real
Milvus Lite and MiniLM. Files dropped into a watched directory one after another are each
searchable once their run completes, each is embedded exactly once, a rewrite with the same
bytes embeds nothing, a broken file is a reject, and a burst is one run."""

from __future__ import annotations

import contextvars
import json
import threading
from pathlib import Path

pytest_plugins = ["conftest_prefect"]

TEXTS = {
    "early.txt": "Lighthouse keepers trimmed the wicks every night and polished the great lens "
    "so that ships could see the light from twenty miles away.",
    "one.txt": "Sourdough bread needs a lively starter of flour and water, fed every day and kept "
    "in a warm kitchen until it doubles and smells pleasantly sour.",
    "two.txt": "Volcanoes erupt when magma rises through cracks in the crust; pressure from "
    "dissolved gases blasts ash and lava out of the vent.",
    "three.txt": "A beginner's chess opening should control the centre with pawns, develop "
    "knights before bishops and castle early to keep the king safe.",
    "burst-a.txt": "Honeybees cluster together in winter, shivering their flight muscles to keep "
    "the queen warm until the first spring flowers bloom.",
    "burst-b.txt": "Marathon training builds up the long run slowly, week by week, with easy days "
    "between the hard sessions so the legs can recover.",
}
QUERIES = {
    "early.txt": "who polished the lens of the lighthouse",
    "one.txt": "how to feed a sourdough starter",
    "two.txt": "why does magma make a volcano erupt",
    "three.txt": "how should a beginner open a chess game",
    "burst-a.txt": "how do bees survive the winter",
    "burst-b.txt": "how to build up the long run for a marathon",
}


def child_runs(client, parent_name: str = "watch"):
    """The watch flow run and its `ingest` subflow runs (oldest first), read from the API."""
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterParentFlowRunId,
    )
    from prefect.client.schemas.sorting import FlowRunSort

    parents = client.read_flow_runs(flow_filter=FlowFilter(name=FlowFilterName(any_=[parent_name])))
    if not parents:
        return None, []
    children = client.read_flow_runs(
        flow_run_filter=FlowRunFilter(
            parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parents[0].id])
        ),
        sort=FlowRunSort.EXPECTED_START_TIME_ASC,
    )
    return parents[0], children


def completed(client, n: int):
    _, children = child_runs(client)
    done = [c for c in children if c.state and c.state.is_completed()]
    return done if len(done) >= n else None


def top_source(make_ctx, root: Path, query: str) -> str:
    from corpusflow import pipeline

    ctx = make_ctx(root)
    try:
        return pipeline.search(ctx, query, k=1)[0]["source_id"]
    finally:
        ctx.close()


def test_watch_ingests_each_new_file_once_and_a_burst_in_one_run(
    flowkit, prefect_client, tmp_path, monkeypatch, make_ctx
):
    from flows.watch import watch

    monkeypatch.chdir(tmp_path)
    inbox = tmp_path / "inbox"
    (inbox / "sub").mkdir(parents=True)
    (inbox / "early.txt").write_text(TEXTS["early.txt"])  # before the watcher: caught up
    pfile = flowkit.write_params(tmp_path, sources={"transcripts": [str(inbox)]})

    outcome: dict = {}

    def run_watch():
        outcome["state"] = watch(
            params_file=str(pfile), step_ms=400, debounce_ms=5000, max_runs=5, return_state=True
        )

    thread = threading.Thread(target=contextvars.copy_context().run, args=(run_watch,))
    thread.start()
    try:
        flowkit.poll(lambda: completed(prefect_client, 1), 120, "the catch-up run")
        assert top_source(make_ctx, tmp_path, QUERIES["early.txt"]) == "file:inbox/early.txt"

        for n, name in enumerate(["one.txt", "two.txt", "three.txt"], start=2):
            where = inbox / "sub" if name == "three.txt" else inbox  # recursive
            (where / name).write_text(TEXTS[name])
            (inbox / ".partial.txt").write_text("hidden: ignored")  # an editor's temp file
            (inbox / "cover.webp").write_bytes(b"RIFF")  # not a source: ignored
            flowkit.poll(lambda n=n: completed(prefect_client, n), 60, f"the run for {name}")
            sid = f"file:{(where / name).relative_to(tmp_path).as_posix()}"
            assert top_source(make_ctx, tmp_path, QUERIES[name]) == sid

        # same bytes again and a broken file: one run, nothing embedded, one reject
        (inbox / "one.txt").write_text(TEXTS["one.txt"])
        (inbox / "broken.srt").write_text("not a subtitle file at all\n")
        flowkit.poll(lambda: completed(prefect_client, 5), 60, "the run for one.txt, broken.srt")

        # a burst: one file written, one in a folder moved in (inotify names only the folder)
        (tmp_path / "folder").mkdir()
        (tmp_path / "folder" / "burst-b.txt").write_text(TEXTS["burst-b.txt"])
        (inbox / "burst-a.txt").write_text(TEXTS["burst-a.txt"])
        (tmp_path / "folder").rename(inbox / "folder")
        thread.join(timeout=120)
        assert not thread.is_alive(), "the watch flow did not stop after max_runs"
    finally:
        if thread.is_alive():  # a failure above: create the change sets it still waits for
            for i in range(5):
                (inbox / f"stop-{i}.txt").write_text(f"stop {i} " * 5)
            thread.join(timeout=120)

    state = outcome["state"]
    assert state.is_completed(), state.message
    runs = state.result()["runs"]
    rewrite = runs.pop(3)
    assert [r["documents"] for r in runs] == [1, 1, 1, 2]  # one document per drop, burst of 2
    for r in runs:  # only the new files were planned and embedded: no duplicate work
        assert r["unchanged_documents"] == 0 and r["skipped"] == 0 and r["rejected"] == 0
        assert r["chunks"] == r["added"] == r["embedded"] >= r["documents"]
        assert r["seconds"]["embed"] > 0
    assert rewrite["documents"] == rewrite["unchanged_documents"] == 1  # same bytes: skipped
    assert rewrite["embedded"] == rewrite["added"] == rewrite["updated"] == 0
    assert rewrite["rejected"] == 1
    (reject,) = [json.loads(line) for line in (tmp_path / "rejects.jsonl").open()]
    assert reject["source"].endswith("broken.srt") and reject["run_id"] == rewrite["run_id"]

    parent, children = child_runs(prefect_client)
    assert len(children) == 6  # catch-up + 5: nothing ran twice, the ignored files ran nothing
    assert all(c.state.is_completed() for c in children)
    assert "burst-a.txt, burst-b.txt" in children[-1].name

    assert top_source(make_ctx, tmp_path, QUERIES["burst-a.txt"]) == "file:inbox/burst-a.txt"
    assert top_source(make_ctx, tmp_path, QUERIES["burst-b.txt"]) == "file:inbox/folder/burst-b.txt"
    ctx = make_ctx(tmp_path)
    rows = list(ctx.store.iter_rows(ctx.store.alias_target(), ["id", "source_id"]))
    ctx.close()
    assert len(rows) == len({r["id"] for r in rows})
    assert {r["source_id"] for r in rows} == {
        "file:inbox/early.txt",
        "file:inbox/one.txt",
        "file:inbox/two.txt",
        "file:inbox/sub/three.txt",
        "file:inbox/burst-a.txt",
        "file:inbox/folder/burst-b.txt",
    }
    catch_up_chunks = len(rows) - sum(r["chunks"] for r in runs)
    assert catch_up_chunks >= 1  # early.txt, from the catch-up run
