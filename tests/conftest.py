"""Shared fixtures: one real MiniLM per session, a fresh Milvus Lite per test; and the promise
of tests/unit/ (no Milvus, no model, no server, no subprocess), kept for every unit test.

The suite is split by what a test needs: tests/unit/ (`make test-fast`), tests/integration/
(Milvus Lite, the model, DVC, Prefect's test harness, stand-in servers in process) and
tests/e2e/ (the CLI in subprocesses, Prefect server and worker, Milvus servers, the README's
commands). Helpers shared by all of them (comet_stub.py, openai_stub.py, milvus_servers.py,
conftest_prefect.py, fixtures/) stay here, importable from every folder."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import corpusflow  # noqa: F401, E402 - importing it sets the offline switches (OFFLINE_ENV)

for _key in ("MILVUS_URI", "MILVUS_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL", "COMET_API_KEY"):
    os.environ.pop(_key, None)

from corpusflow.config import Embedding, Params  # noqa: E402
from corpusflow.embedding.local import LocalEmbedder  # noqa: E402
from corpusflow.pipeline import Context  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "raw"
CLI = str(Path(sys.executable).with_name("corpusflow"))
UNIT = Path(__file__).resolve().parent / "unit"
HEAVY_FIXTURES = {"make_ctx": "Milvus Lite and the model", "embedder": "the model"}


@pytest.fixture(autouse=True)
def _unit_tests_stay_unit(request, monkeypatch):
    """A test in tests/unit/ that reaches for Milvus, the model, a server or a subprocess fails
    and says where it belongs, so `make test-fast` stays fast and honest."""
    if UNIT not in Path(request.node.path).resolve().parents:
        return
    for name, what in HEAVY_FIXTURES.items():
        if name in request.fixturenames:
            pytest.fail(f"a unit test uses {what} ({name}): move it to tests/integration/")

    def refuse(what: str):
        def refused(*args, **kwargs):
            raise AssertionError(f"a unit test started {what}: move it out of tests/unit/")

        return refused

    import pymilvus

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse("a subprocess"))
    monkeypatch.setattr(socket.socket, "listen", refuse("a server"))
    monkeypatch.setattr(socket.socket, "connect", refuse("a network connection"))
    monkeypatch.setattr(pymilvus.MilvusClient, "__init__", refuse("Milvus"))
    monkeypatch.setattr(LocalEmbedder, "__init__", refuse("the model"))


@pytest.fixture(autouse=True)
def _no_project_root_from_another_test():
    """`load_params` sets the project root that file and CSV ids are relative to; a test
    that loaded a params file must not move the ids of the tests after it."""
    from corpusflow.ids import set_project_root

    previous = set_project_root(None)
    yield
    set_project_root(previous)


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    """The real shipped MiniLM, loaded once for the whole session."""
    return LocalEmbedder(Embedding())


def make_params(root: Path, **sections) -> Params:
    """Params whose every path lives under `root`, with section overrides."""
    base = {
        "milvus": {"uri": str(root / "milvus.db")},
        "ingest": {
            "rejects": str(root / "rejects.jsonl"),
            "cache": str(root / "cache.sqlite"),
            "state": str(root / "state.sqlite"),
            "batch_documents": 4,
        },
        "snapshot": {"out": str(root / "snapshots" / "snapshot.json")},
    }
    for name, values in sections.items():
        base[name] = {**base.get(name, {}), **values}
    return Params.model_validate(base)


@pytest.fixture
def make_ctx(tmp_path, embedder):
    """Build Contexts on a per-test Milvus Lite; all are closed at teardown."""
    made: list[Context] = []

    def _make(root: Path | None = None, emb=None, **sections) -> Context:
        ctx = Context(make_params(root or tmp_path, **sections))
        ctx._embedder = emb or embedder
        made.append(ctx)
        return ctx

    yield _make
    for ctx in made:
        ctx.close()


# pyarrow's C++ thread pools now and then abort the interpreter's final teardown after all
# work is done ("terminate called without an active exception", apache/arrow#34314), which
# would turn a green run into exit status 134. The CLI leaves through os._exit for the same
# reason (corpusflow.cli.main); the test session does too, once pytest has reported.
_session_status: list[int] = []


def pytest_sessionfinish(session, exitstatus):
    _session_status.append(int(exitstatus))


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    if not _session_status:
        return
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(_session_status[-1])
