"""`embedding.device` for the local model, on this CPU-only machine: auto resolves to the CPU,
an explicit device it lacks falls back to the CPU with one warning and the same vectors, the
cache key ignores the device, and an unknown device is a one-line config error (exit 2).
Real parts: the shipped MiniLM (both loaders), Milvus Lite, the `corpusflow` CLI.
"""

from __future__ import annotations

import json
import logging
import subprocess

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from conftest import CLI, make_params
from corpusflow.config import Embedding, Env, load_params
from corpusflow.embedding import light
from corpusflow.embedding.local import LocalEmbedder, shipped_model_path
from corpusflow.pipeline import Context
from test_cli_errors import one_error_line
from test_reliability_vectors import TALKS, write_corpus

TEXTS = [
    "Milvus stores the vectors under deterministic keys.",
    "A transcript of a talk about data versioning, a little longer than the others.",
    "日本語の文章も埋め込める。",
]


def test_this_machine_has_no_gpu():
    """What the fallback tests below rely on (torch is the CPU build here)."""
    assert not torch.cuda.is_available() and not torch.backends.mps.is_available()


def test_auto_resolves_to_the_cpu_with_its_batch_size(embedder):
    assert Embedding().device == "auto" and embedder.settings.device == "auto"
    assert (embedder.device, embedder.batch_size) == ("cpu", 8)
    assert LocalEmbedder(Embedding(batch_size=32)).batch_size == 32  # the user's override


@pytest.mark.parametrize("device", ["cuda", "cuda:1", "mps"])
def test_an_unavailable_device_falls_back_to_the_cpu_with_one_warning(
    device: str, embedder, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.WARNING)
    fallback = LocalEmbedder(Embedding(device=device))
    first = fallback.embed(TEXTS)
    fallback.embed(TEXTS[:1])
    warnings = [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and r.name.startswith("corpusflow")
    ]
    assert len(warnings) == 1, warnings
    assert warnings[0].startswith(f"embedding.device {device} is not available here (torch sees")
    assert warnings[0].endswith("): using cpu")
    assert fallback.device == "cpu" and fallback.batch_size == 8
    assert np.array_equal(first, embedder.embed(TEXTS))  # bit for bit


def test_the_sentence_transformers_loader_honours_the_device_too(
    embedder, monkeypatch: pytest.MonkeyPatch
):
    """A model directory the light loader does not take goes through sentence-transformers;
    on the CPU it gives the light loader's vectors (within their known 1e-6)."""
    other = LocalEmbedder(Embedding(model=str(shipped_model_path()), device="cuda"))
    monkeypatch.setattr(light, "supports", lambda path: False)  # as for any other model
    vectors = other.embed(TEXTS)
    assert other.device == "cpu" and type(other._model).__name__ == "SentenceTransformer"
    assert str(other._model.device) == "cpu"
    np.testing.assert_allclose(vectors, embedder.embed(TEXTS), atol=1e-6)


def test_the_cache_key_does_not_depend_on_the_device(tmp_path):
    keys = []
    for device in ("auto", "cpu", "cuda"):
        ctx = Context(make_params(tmp_path / device, embedding={"device": device}))
        try:
            keys.append(ctx.cache_model_key)
            assert "device" not in vars(ctx.embedder)  # not resolved: no torch import for it
        finally:
            ctx.close()
    assert keys == [keys[0]] * 3


@pytest.mark.parametrize("value", ["gpu", "cuda:", "CUDA", "cuda:x", ""])
def test_an_unknown_device_is_a_config_error(value: str):
    with pytest.raises(ValidationError, match="is not a device: auto, cpu, cuda, cuda:N or mps"):
        Embedding(device=value)


def test_an_unknown_device_is_one_line_and_exit_2_from_the_cli(tmp_path):
    write_corpus(tmp_path, {"embedding": {"device": "gpu"}})
    out = subprocess.run([CLI, "ingest"], cwd=tmp_path, capture_output=True, text=True)
    line = one_error_line(out)
    assert "embedding.device: 'gpu' is not a device: auto, cpu, cuda, cuda:N or mps" in line


def test_ingest_asking_for_cuda_here_warns_once_and_stores_the_cpu_vectors(tmp_path, embedder):
    write_corpus(tmp_path, {"embedding": {"device": "cuda"}})
    out = subprocess.run(
        [CLI, "ingest", "--json"], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["embedded"] == len(TALKS)
    lines = [line for line in out.stderr.splitlines() if "embedding.device" in line]
    assert lines == [
        "embedding.device cuda is not available here (torch sees no CUDA GPU): using cpu"
    ]
    params = load_params(tmp_path / "params.yaml")
    params.milvus.uri = str(tmp_path / params.milvus.uri)
    ctx = Context(params, env=Env())
    try:
        rows = list(ctx.store.iter_rows(ctx.store.alias_target(), ["text", "vector"]))
    finally:
        ctx.close()
    assert len(rows) == len(TALKS)
    mine = embedder.embed([r["text"] for r in rows])  # this process, on the CPU
    assert np.array_equal(np.float32([r["vector"] for r in rows]), np.float32(mine))
