"""End to end: a real Prefect server and process worker on 127.0.0.1 (scripts/prefect-stack.sh),
`prefect deploy --all`, `prefect deployment run 'ingest/local' --watch`, then everything stopped
by PID. Runs in a temporary copy of the repository's flow files and a tiny corpus, so the
repository's data/ is never touched."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SAMPLE = REPO / "data" / "raw" / "transcripts"
TINY = ["marathon-training.txt", "how-volcanoes-erupt.srt", "how-volcanoes-erupt.meta.json"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its reaper counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def descendants(pids: set[int]) -> set[int]:
    parent: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
            except (OSError, ValueError, IndexError):
                continue
    found, todo = set(), set(pids)
    while todo:
        kids = {p for p, pp in parent.items() if pp in todo} - found
        found |= kids
        todo = kids
    return found


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        threading.Event().wait(0.2)


@pytest.fixture
def repo_copy(tmp_path):
    root = tmp_path / "repo"
    (root / "flows").mkdir(parents=True)
    for f in (REPO / "flows").glob("*.py"):
        shutil.copy2(f, root / "flows" / f.name)
    (root / "scripts").mkdir()
    shutil.copy2(REPO / "scripts" / "prefect-stack.sh", root / "scripts")
    shutil.copy2(REPO / "prefect.yaml", root)
    shutil.copy2(REPO / "params.yaml", root)
    corpus = root / "data" / "raw" / "transcripts"
    corpus.mkdir(parents=True)
    for name in TINY:
        shutil.copy2(SAMPLE / name, corpus / name)
    return root


def test_deployment_run_on_a_real_server_and_worker(repo_copy, tmp_path):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
        DeploymentFilter,
        DeploymentFilterId,
    )

    from corpusflow.store import MilvusStore

    port = free_port()
    state = tmp_path / "prefect-state"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "CORPUSFLOW_", "MILVUS_", "OPENAI_", "COMET_API"))
    }
    env.update(
        PREFECT_PORT=str(port),
        CORPUSFLOW_PREFECT_DIR=str(state),
        CORPUSFLOW_BIN=str(BIN),
        PREFECT_HOME=str(state / "home"),
        PREFECT_API_URL=f"http://127.0.0.1:{port}/api",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_UI_ENABLED="false",  # the UI is for people; it only slows the start here
    )
    script = str(repo_copy / "scripts" / "prefect-stack.sh")

    def stack(cmd: str, timeout: float = 240) -> subprocess.CompletedProcess:
        return subprocess.run(
            [script, cmd], cwd=repo_copy, env=env, capture_output=True, text=True, timeout=timeout
        )

    pids: set[int] = set()
    clock = time.monotonic()
    try:
        started = stack("start")
        assert started.returncode == 0, started.stdout + started.stderr
        healthy = re.search(r"server healthy after (\d+) s", started.stderr)
        print(f"\nserver healthy after {healthy.group(1) if healthy else '?'} s; ", end="")
        print(f"stack up in {time.monotonic() - clock:.1f} s; ", end="")
        clock = time.monotonic()
        pids = {int((state / f"{n}.pid").read_text()) for n in ("server", "worker")}
        assert all(alive(p) for p in pids)
        assert "running" in stack("status").stdout

        run = subprocess.run(
            [
                str(BIN / "prefect"),
                "deployment",
                "run",
                "ingest/local",
                "-p",
                'transcripts=["data/raw/transcripts"]',
                "--watch",
                "--watch-interval",
                "1",
                "--watch-timeout",
                "300",
            ],
            cwd=repo_copy,
            env=env,
            capture_output=True,
            text=True,
            timeout=330,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        assert "Completed" in run.stdout
        print(f"deployment run --watch took {time.monotonic() - clock:.1f} s; ", end="")

        with SyncPrefectClient(api=env["PREFECT_API_URL"]) as client:
            deployment = client.read_deployment_by_name("ingest/local")
            flow_runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
            )
            assert len(flow_runs) == 1
            flow_run = flow_runs[0]
            assert flow_run.state.is_completed() and flow_run.state.name == "Completed"
            assert flow_run.parameters == {"transcripts": ["data/raw/transcripts"]}
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=["ingest-summary"]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]),
                )
            )
            hourly = client.read_deployment_by_name("ingest/hourly")
            assert [s.active for s in hourly.schedules] == [False]  # scheduled, paused

        assert len(artifacts) == 1
        md = artifacts[0].data
        chunks = int(re.search(r"\| chunks \| (\d+) \|", md).group(1))
        assert "| documents | 2 (0 unchanged) |" in md
        assert f"| added | {chunks} |" in md and chunks >= 2

        snapshot = repo_copy / "data" / "snapshots" / "snapshot.json"
        sha = hashlib.sha256(snapshot.read_bytes()).hexdigest()
        assert f"sha256: `{sha}`" in md

        # the flow-run process has exited, so the Milvus Lite lock is free for us
        store = MilvusStore(str(repo_copy / "data" / "milvus.db"), "corpusflow")
        try:
            assert store.count(store.alias_target()) == chunks
        finally:
            store.close()
        pids |= descendants(pids)
    finally:
        if not pids and (state / "server.pid").exists():
            pids = {int((state / f).read_text()) for f in ("server.pid", "worker.pid")
                    if (state / f).exists()}  # fmt: skip
        clock = time.monotonic()
        stopped = stack("stop", timeout=90)
        print(f"stopped in {time.monotonic() - clock:.1f} s")
    assert stopped.returncode == 0, stopped.stderr
    wait_until(lambda: not any(alive(p) for p in pids), 30, f"processes {sorted(pids)} to end")
    assert not (state / "server.pid").exists() and not (state / "worker.pid").exists()
    assert "stopped" in stack("status").stdout
