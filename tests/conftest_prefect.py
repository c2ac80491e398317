"""Prefect test fixtures, loaded as a plugin (`pytest_plugins = ["conftest_prefect"]`) by the
tests that need them, so the ~11-14 s `prefect_test_harness` starts once per session."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "raw"


@pytest.fixture(scope="session")
def prefect_harness(tmp_path_factory) -> Iterator[None]:
    """One temporary Prefect API (SQLite) for the whole session; task results (the per-batch
    counts that caching needs) go to a temporary directory, not ~/.prefect."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    import prefect.settings as ps
    from prefect.testing.utilities import prefect_test_harness

    home = tmp_path_factory.mktemp("prefect-home")
    with ps.temporary_settings(
        updates={
            ps.PREFECT_HOME: str(home),
            ps.PREFECT_LOCAL_STORAGE_PATH: str(home / "storage"),
            ps.PREFECT_SERVER_ANALYTICS_ENABLED: False,
            ps.PREFECT_UI_ENABLED: False,  # saves seconds of start-up; tests read the API
        }
    ):
        with prefect_test_harness(server_startup_timeout=60):
            yield


@pytest.fixture(scope="session")
def flow_model(embedder):
    """Flow runs in this process share the session's MiniLM (flows.tasks.local_embedder keeps
    one per process), so the model is not loaded again for every flow run."""
    from flows import tasks

    from corpusflow.config import Embedding
    from corpusflow.ids import hash_value

    tasks._LOCAL_EMBEDDERS[hash_value(Embedding().model_dump(mode="json"))] = embedder
    return embedder


@pytest.fixture
def prefect_client(prefect_harness, flow_model):
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        yield client


def write_params(root: Path, **sections) -> Path:
    """params.yaml for `root` (every path inside it), a flow's `params_file`."""
    import yaml

    from conftest import make_params

    sections.setdefault("comet", {"mode": "disabled"})
    params = make_params(root, **sections)
    path = root / "params.yaml"
    path.write_text(yaml.safe_dump(params.model_dump(mode="json")), encoding="utf-8")
    return path


def poll(condition, timeout: float, what: str):
    """Wait for `condition()` to be truthy and return it (no fixed sleeps); fail after
    `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.1)
    return value


def copy_sample(dest: Path, transcripts: list[str] | None = None, articles: bool = True) -> None:
    """A small corpus from data/raw: the named transcript files (+ sidecars) and articles."""
    (dest / "raw" / "transcripts").mkdir(parents=True, exist_ok=True)
    for path in sorted((SAMPLE / "transcripts").iterdir()):
        stem = path.name.split(".")[0]
        if transcripts is None or any(stem == t.split(".")[0] for t in transcripts):
            shutil.copy2(path, dest / "raw" / "transcripts" / path.name)
    if articles:
        (dest / "raw" / "articles").mkdir(parents=True, exist_ok=True)
        shutil.copy2(SAMPLE / "articles" / "articles.csv", dest / "raw" / "articles")


def artifact_markdown(client, flow_run_id, key: str = "ingest-summary") -> str:
    """The markdown artifact `key` that flow run `flow_run_id` published (read via the API)."""
    return artifact_data(client, flow_run_id, key, "markdown")


def artifact_data(client, flow_run_id, key: str, kind: str):
    """The data of the `kind` artifact `key` of flow run `flow_run_id`: markdown text, a
    table's rows (parsed JSON) or a progress percentage."""
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    found = client.read_artifacts(
        artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=[key]),
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
        )
    )
    assert len(found) == 1, f"expected one {key!r} artifact for {flow_run_id}, got {found}"
    assert found[0].type == kind
    data = found[0].data
    return json.loads(data) if kind == "table" else data


@pytest.fixture
def flowkit():
    """The helpers above, for test modules (importing this plugin module from a test module
    would bypass pytest's assertion rewriting)."""
    from types import SimpleNamespace

    return SimpleNamespace(
        copy_sample=copy_sample,
        artifact_markdown=artifact_markdown,
        artifact_data=artifact_data,
        write_params=write_params,
        poll=poll,
    )
