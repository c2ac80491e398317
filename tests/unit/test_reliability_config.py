"""Configuration mistakes are errors at load, never a silent fix: a default overlap shrinks to
fit, booleans and fractions are not counts, snapshot query names are unique. (Through the
CLI, one line and exit 2: tests/e2e/test_reliability_errors.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from corpusflow.config import ConfigError, load_params


def test_a_default_overlap_still_shrinks_to_fit_a_small_chunk_size(tmp_path):
    from corpusflow.chunking import resolve_spec

    spec = resolve_spec(
        load_params_from(tmp_path, {"chunking": {"chunk_size": 20}}).chunking, "m", 254
    )
    assert (spec.chunk_size, spec.chunk_overlap) == (20, 10)
    spec = resolve_spec(
        load_params_from(
            tmp_path, {"chunking": {"chunk_size": 200, "chunk_overlap": 150}}
        ).chunking,
        "m",
        254,
    )
    assert (spec.chunk_size, spec.chunk_overlap) == (200, 150)  # as set, not halved


def load_params_from(root: Path, params: dict):
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params), encoding="utf-8")
    return load_params(path)


@pytest.mark.parametrize(
    "params, where",
    [
        ({"chunking": {"chunk_size": True}}, "chunking.chunk_size"),
        ({"milvus": {"batch_size": True}}, "milvus.batch_size"),
        ({"ingest": {"batch_documents": False}}, "ingest.batch_documents"),
        ({"embedding": {"max_retries": True}}, "embedding.max_retries"),
        ({"evaluation": {"k": 2.5}}, "evaluation.k"),
    ],
)
def test_booleans_and_fractions_are_not_integers(tmp_path, params, where):
    with pytest.raises(ConfigError, match=f"{where}: Input should be a valid integer"):
        load_params_from(tmp_path, params)


def test_duplicate_snapshot_query_names_are_an_error(tmp_path):
    queries = [{"name": "rivers", "filter": 'source_type == "transcript"'}]
    queries += [{"name": "rivers", "query": "valleys"}, {"name": "other", "query": "x"}]
    with pytest.raises(ConfigError, match="snapshot: .*unique; repeated: rivers"):
        load_params_from(tmp_path, {"snapshot": {"queries": queries}})
