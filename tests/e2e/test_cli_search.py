"""search, stats and ingest progress on the ingested sample corpus: a bad filter fails in
words before the model loads, stats counts documents and chunks, the light model load gives
sentence-transformers' vectors, and progress knows its totals (quiet in a pipe)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import CLI, SAMPLE
from corpusflow import pipeline
from corpusflow.config import Embedding, load_params
from corpusflow.embedding.local import LocalEmbedder, shipped_model_path

PARAMS = """\
sources:
  transcripts: [data/raw/transcripts]
  articles: [data/raw/articles/articles.csv]
ingest:
  batch_documents: 4
comet:
  mode: disabled
"""

# The CLI's own runner in a fresh process, reporting afterwards whether torch was imported.
RUN_AND_REPORT_TORCH = (
    "import sys; from corpusflow.cli import app; from corpusflow.cli.support import run_app; "
    "code = run_app(app, sys.argv[1:]); print('torch imported:', 'torch' in sys.modules); "
    "sys.stdout.flush(); import os; os._exit(code)"
)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, embedder) -> Path:
    """The sample corpus ingested once (in process, with the session's model)."""
    root = tmp_path_factory.mktemp("search")
    (root / "params.yaml").write_text(PARAMS)
    (root / "data").mkdir()
    (root / "data" / "raw").symlink_to(SAMPLE)
    result = _ingest(root, embedder)
    (root / "first.json").write_text(json.dumps(result.to_dict()))
    return root


def _ingest(root: Path, embedder: LocalEmbedder, progress=None) -> pipeline.IngestResult:
    import os

    here = os.getcwd()
    os.chdir(root)
    try:
        params = load_params("params.yaml")
        ctx = pipeline.Context(params)
        ctx._embedder = embedder
        src = params.sources
        try:
            items = pipeline.extract(params, src.transcripts, src.articles, [])
            if progress is not None:
                items = progress.track(items)
            return pipeline.ingest(ctx, items, progress=progress)
        finally:
            ctx.close()
    finally:
        os.chdir(here)


def run_cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True)


def test_a_bad_filter_fails_in_words_before_the_model_loads(workdir):
    for expr, words in (
        ('source_typ == "article"', "unknown field 'source_typ'"),
        ('source_type = = "article"', "unexpected character '='"),
    ):
        out = subprocess.run(
            [sys.executable, "-c", RUN_AND_REPORT_TORCH, "search", "anything", "--filter", expr],
            cwd=workdir,
            capture_output=True,
            text=True,
        )
        assert out.returncode == 2, out.stderr
        assert out.stdout.strip() == "torch imported: False"
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1, out.stderr
        assert lines[0].startswith(f"error: --filter {expr!r} is not a valid Milvus filter: ")
        assert words in lines[0] and "Exception" not in lines[0]


def test_a_deeply_nested_filter_is_one_line(workdir):
    expr = "(" * 2000 + "chunk_index == 0" + ")" * 2000
    out = run_cli(workdir, "search", "anything", "--filter", expr)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0, out.stderr[:2000]
    assert "nested too deeply" in out.stderr and "Traceback" not in out.stderr


def test_a_good_filter_still_filters(workdir):
    out = run_cli(
        workdir, "search", "fortresses", "-k", "3", "--filter", 'source_type == "article"'
    )
    assert out.returncode == 0, out.stderr
    hits = json.loads(
        run_cli(
            workdir, "search", "fortresses", "--filter", 'source_type == "article"', "--json"
        ).stdout
    )
    assert hits and {h["source_type"] for h in hits} == {"article"}


def test_stats_counts_documents_and_chunks_per_source_type(workdir):
    first = json.loads((workdir / "first.json").read_text())
    info = json.loads(run_cli(workdir, "stats", "--json").stdout)
    by_type = info["by_source_type"]
    assert (
        {t: v["documents"] for t, v in by_type.items()}
        == {t: v["documents"] for t, v in first["by_type"].items()}
        == {"article": 6, "transcript": 5}
    )
    assert sum(v["chunks"] for v in by_type.values()) == info["records"] == first["chunks"]
    text = run_cli(workdir, "stats").stdout
    assert f"{first['documents']} documents, {first['chunks']} chunks" in text
    art = by_type["article"]
    assert any(
        line.split()
        == ["article", str(art["documents"]), "documents,", str(art["chunks"]), "chunks"]
        for line in text.splitlines()
    ), text


def test_the_light_model_load_gives_sentence_transformers_vectors():
    from sentence_transformers import SentenceTransformer

    texts = [p.read_text(errors="replace")[:1500] for p in sorted(SAMPLE.rglob("*.*"))]
    texts += ["", "a", "word " * 600, "émoji 🎉, ünïcode, 中文"]  # empty, tiny, truncated, odd
    emb = LocalEmbedder(Embedding())
    ours = np.array(emb.embed(texts))
    assert type(emb._model).__name__ == "BertSentenceEncoder"  # the shipped model goes light
    reference = SentenceTransformer(str(shipped_model_path()), device="cpu").encode(
        texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True
    )
    assert ours.shape == reference.shape == (len(texts), 384)
    assert np.allclose(ours, reference, atol=1e-6, rtol=0)
    one_by_one = np.array([emb.embed([t])[0] for t in texts[:5]])
    assert np.allclose(one_by_one, reference[:5], atol=1e-6, rtol=0)


def test_the_light_model_batches_by_token_count(monkeypatch: pytest.MonkeyPatch):
    """Each forward pass gets texts of neighbouring token counts, padded to its longest
    only: sorting by characters would put 120 characters of 'hello ' (22 tokens) ahead of
    57 characters of digits and commas (57 tokens) and pad it to 57."""
    texts = ["hello " * n for n in (20, 3, 9)] + ["1,2,3,4,5,6,7,8,9,0" * n for n in (3, 1, 2)]
    emb = LocalEmbedder(Embedding(batch_size=2))
    model = emb._model
    passes: list[tuple[list[int], int]] = []
    real = model._padded

    def spy(enc):
        lengths = [len(e.ids) for e in enc]  # before padding, which happens in place
        ids, mask, types = real(enc)
        passes.append((lengths, ids.shape[1]))
        return ids, mask, types

    monkeypatch.setattr(model, "_padded", spy)
    vectors = np.array(emb.embed(texts))
    counts = [n for lengths, _ in passes for n in lengths]
    assert counts == sorted((len(e.ids) for e in model.tokenizer.encode_batch(texts)), reverse=True)
    assert all(width == max(lengths) for lengths, width in passes)
    one_by_one = np.array([emb.embed([t])[0] for t in texts])
    assert np.allclose(vectors, one_by_one, atol=1e-6, rtol=0)


def test_a_plans_texts_reach_the_model_shortest_first(tmp_path, monkeypatch: pytest.MonkeyPatch):
    """A plan's texts not in the cache go to the model in calls of like lengths (each call
    pads to its longest), at most EMBED_BATCH a call, and come back in the plan's order."""
    from corpusflow.embedding.cache import EmbeddingCache
    from corpusflow.embedding.cached import EMBED_BATCH, EmbedCounts, embed_texts

    texts = [f"text {i} " + "word " * ((i * 37) % 50) for i in range(EMBED_BATCH * 2 + 5)]
    emb = LocalEmbedder(Embedding())
    calls: list[list[str]] = []
    real = emb.embed

    def spy(part: list[str]) -> list[list[float]]:
        calls.append(list(part))
        return real(part)

    monkeypatch.setattr(emb, "embed", spy)
    cache = EmbeddingCache(tmp_path / "cache.sqlite")
    counts = EmbedCounts()
    vectors = np.array(embed_texts(cache, emb, texts, counts))
    sent = [len(t) for call in calls for t in call]
    assert sent == sorted(len(t) for t in texts)
    assert [len(call) for call in calls] == [EMBED_BATCH, EMBED_BATCH, 5]
    assert counts.embedded == len(texts)
    assert np.allclose(vectors, np.array(real(texts)), atol=1e-6, rtol=0)


def test_ingest_progress_knows_its_totals(tmp_path):
    from rich.console import Console
    from rich.progress import Progress

    from corpusflow.cli.ingest import IngestProgress, _input_names

    (tmp_path / "params.yaml").write_text(PARAMS)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "raw").symlink_to(SAMPLE)
    sources = (["data/raw/transcripts"], ["data/raw/articles/articles.csv"], [])
    inputs = _with_cwd(tmp_path, _input_names, *sources)
    assert len(inputs) == 6  # five transcripts (sidecars are not inputs) and one CSV
    seen: list[tuple[str, int]] = []
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with Progress(console=console, auto_refresh=False) as bar:
        progress = IngestProgress(bar, inputs)

        def watch(what: str, n: int) -> None:
            seen.append((what, n))
            progress(what, n)

        fresh = LocalEmbedder(Embedding())  # not loaded yet: the load is announced
        fresh.listener = watch
        result = _ingest(tmp_path, fresh, progress=_Tracked(progress, watch))
        tasks = {t.description.split(" (")[0]: t for t in bar.tasks}
    assert ("loading model", 0) in seen and ("model loaded", 0) in seen
    assert seen.index(("loading model", 0)) < seen.index(("model loaded", 0))
    assert "loading model" not in tasks  # removed once loaded
    assert tasks["inputs"].total == tasks["inputs"].completed == 6
    assert tasks["inputs"].description == f"inputs ({result.documents} documents)"
    assert tasks["embedding"].total == tasks["embedding"].completed == result.embedded > 0


def test_ingest_in_a_pipe_prints_no_progress(workdir):
    out = run_cli(workdir, "ingest")
    assert out.returncode == 0, out.stderr
    assert out.stderr == ""  # no bar, no escape codes: stderr is a pipe here
    assert "skipped" in out.stdout


class _Tracked:
    """The IngestProgress's stream tracking with every progress call recorded."""

    def __init__(self, progress, watch):
        self.track, self._watch = progress.track, watch

    def __call__(self, what: str, n: int) -> None:
        self._watch(what, n)


def _with_cwd(cwd: Path, fn, *args):
    import os

    here = os.getcwd()
    os.chdir(cwd)
    try:
        return fn(*args)
    finally:
        os.chdir(here)
