"""The sample corpus' snapshot, streamed, has exactly the bytes of the in-memory writer. Real
Milvus Lite and MiniLM. (The writer on its own: tests/unit/test_reliability_snapshot.py.)"""

from __future__ import annotations

from pathlib import Path

from conftest import REPO
from corpusflow.config import load_params
from corpusflow.pipeline import Context, extract, ingest, snapshot
from corpusflow.snapshot import (
    by_id,
)
from snapshot_reference import in_memory_bytes


# ------------------------------------------------------------------------------------------
# streaming: same bytes, bounded memory
# ------------------------------------------------------------------------------------------
def test_the_sample_corpus_snapshot_has_the_same_bytes_as_the_in_memory_writer(
    tmp_path, embedder, monkeypatch
):
    monkeypatch.chdir(REPO)  # params.yaml names the sample corpus relative to the repo
    params = load_params(REPO / "params.yaml")
    params.milvus.uri = str(tmp_path / "milvus.db")
    params.ingest.cache = str(tmp_path / "cache.sqlite")
    params.ingest.rejects = str(tmp_path / "rejects.jsonl")
    ctx = Context(params)
    ctx._embedder = embedder
    try:
        src = params.sources
        ingest(ctx, extract(params, src.transcripts, src.articles, src.youtube))
        assert params.snapshot.queries, "the sample params name snapshot queries"
        captured: dict = {}
        import corpusflow.snapshot as snapmod

        real = snapmod.write_snapshot

        def keep(path, header, records, queries, manifest, run_size=3):
            records = list(records)  # what the pipeline handed over, for the reference
            queries = {
                k: by_id(list(v.rows)) if isinstance(v, by_id) else v for k, v in queries.items()
            }
            captured.update(header=header, records=records, queries=queries)
            return real(path, header, iter(records), queries, manifest, run_size=3)

        monkeypatch.setattr(snapmod, "write_snapshot", keep)
        result = snapshot(ctx, out=str(tmp_path / "snap.json"))
    finally:
        ctx.close()
    assert result.records == len(captured["records"]) > 3  # more than one run was spilled
    queries = {
        k: sorted(v.rows, key=lambda r: r["id"]) if isinstance(v, by_id) else v
        for k, v in captured["queries"].items()
    }
    expected = in_memory_bytes(captured["header"], captured["records"], queries)
    assert Path(result.path).read_bytes() == expected
