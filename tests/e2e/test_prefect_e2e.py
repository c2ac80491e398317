"""End to end, as a user drives Prefect: the README's Prefect commands, run literally in a
fresh `git clone` of this repository's HEAD, in a clean environment (only PATH with the venv,
as `source .venv/bin/activate` gives, and a scratch HOME), with a real server and a real
process worker on 127.0.0.1 (port 4200 from the committed prefect.toml: run this under
/work/shared/tools/loopback-only, whose network namespace has the port to itself). Long-running
commands (marked "keeps running" in the README) start in the background and are stopped by PID,
worker first, then the server; nothing is left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
API = "http://127.0.0.1:4200/api"  # prefect.toml
MARKER = "<!-- tests/e2e/test_prefect_e2e.py runs this block -->"

pytest_plugins = ["conftest_prefect"]


def readme_commands() -> list[tuple[str, bool]]:
    """The README's Prefect quick start: (command, keeps running) per line, comments off."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    assert MARKER in text, "the README lost its Prefect quick start block"
    block = text.split(MARKER, 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    commands = []
    for line in block.splitlines():
        command, _, comment = line.partition("#")
        if command.strip():
            commands.append((command.strip(), "keeps running" in comment))
    return commands


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def session_members(sid: int) -> set[int]:
    """Processes of session `sid` (a background command and everything it started)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[3]) == sid and fields[0] != "Z":
                found.add(int(entry.name))
    return found


def healthy() -> bool:
    try:
        with urllib.request.urlopen(f"{API}/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def worker_polling() -> bool:
    """The `local` pool has a worker that has sent a heartbeat."""
    req = urllib.request.Request(
        f"{API}/work_pools/local/workers/filter", data=b"{}", method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=2) as r:
            return any(w.get("status") == "ONLINE" for w in json.load(r))
    except OSError:
        return False


@pytest.fixture
def fresh_clone(tmp_path) -> Path:
    head = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    clone = tmp_path / "corpusflow"
    subprocess.run(["git", "clone", "-q", "--no-checkout", str(REPO), str(clone)], check=True)
    subprocess.run(["git", "-C", str(clone), "checkout", "-q", head], check=True)
    return clone


def test_readme_prefect_commands_in_a_fresh_clone(fresh_clone, tmp_path, flowkit):
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    from corpusflow.store import MilvusStore

    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", 4200)) != 0, (
            "port 4200 is taken: run this test under /work/shared/tools/loopback-only"
        )
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    commands = readme_commands()
    assert [c for c, _ in commands][-1] == "prefect deployment run 'ingest/local' --watch"

    background: list[subprocess.Popen] = []
    logs = tmp_path / "logs"
    logs.mkdir()
    outputs: dict[str, str] = {}
    seconds: dict[str, float] = {}
    try:
        for command, keeps_running in commands:
            clock = time.monotonic()
            if keeps_running:
                log = (logs / f"{len(background)}.log").open("w")
                background.append(subprocess.Popen(
                    ["bash", "-c", command], cwd=fresh_clone, env=env, stdout=log,
                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                ))  # fmt: skip
                if command.startswith("prefect server start"):
                    flowkit.poll(healthy, 180, "the server's /api/health")
                else:
                    flowkit.poll(worker_polling, 120, "the worker's first heartbeat")
                seconds[command] = round(time.monotonic() - clock, 1)
                continue
            done = subprocess.run(
                ["bash", "-c", command], cwd=fresh_clone, env=env, capture_output=True,
                text=True, timeout=600, stdin=subprocess.DEVNULL,
            )  # fmt: skip
            outputs[command] = done.stdout + done.stderr
            seconds[command] = round(time.monotonic() - clock, 1)
            assert done.returncode == 0, f"`{command}` exited {done.returncode}:\n" + (
                done.stdout + done.stderr
            )[-3000:]
        print("\nseconds per command:", json.dumps(seconds, indent=1))
        watched = outputs["prefect deployment run 'ingest/local' --watch"]
        assert "Completed" in watched

        with SyncPrefectClient(api=API) as client:
            deployment = client.read_deployment_by_name("ingest/local")
            assert deployment.pull_steps == [
                {"prefect.deployments.steps.set_working_directory": {
                    "directory": str(fresh_clone.resolve())}}
            ]  # fmt: skip
            hourly = client.read_deployment_by_name("ingest/hourly")
            assert [sch.active for sch in hourly.schedules] == [False]  # scheduled, paused
            client.read_deployment_by_name("watch/local")
            (flow_run,) = client.read_flow_runs()
            assert flow_run.state.name == "Completed"
            assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8} · params\.yaml", flow_run.name)
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id]))
            )
            by_key = {a.key: a for a in found}
            assert set(by_key) == {"ingest-summary", "ingest-counts", "ingest-rejects",
                                   "ingest-progress"}  # fmt: skip
            assert by_key["ingest-progress"].data == 100.0
            counts = {row["source type"]: row for row in json.loads(by_key["ingest-counts"].data)}
            assert counts["transcript"]["documents"] == 5 and counts["article"]["documents"] == 6
            assert counts["total"]["rejected"] == 0
            chunks = int(re.search(r"\| chunks \| (\d+) \|", by_key["ingest-summary"].data)[1])
        # the flow-run process has exited, so the Milvus Lite lock is free for us
        store = MilvusStore(str(fresh_clone / "data" / "milvus.db"), "corpusflow")
        try:
            assert store.count(store.alias_target()) == chunks > 11
        finally:
            store.close()
        assert (fresh_clone / "data" / "snapshots" / "snapshot.json").is_file()
    finally:
        members = {p.pid: session_members(p.pid) for p in background}
        for proc in reversed(background):  # the worker before the server
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(timeout=30)
        for sid, pids in members.items():
            flowkit.poll(lambda pids=pids: not any(alive(p) for p in pids), 30, f"session {sid}")
    assert not healthy()


def test_stack_status_on_a_stopped_stack_says_so_and_exits_0(tmp_path):
    """`make prefect-status` used to end in `make: *** Error 3` when nothing ran."""
    done = subprocess.run(
        [str(REPO / "scripts" / "prefect-stack.sh"), "status"],
        env={**os.environ, "CORPUSFLOW_PREFECT_DIR": str(tmp_path / "state")},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "server: stopped",
        "worker: stopped",
        "the stack is stopped: make prefect-up (or scripts/prefect-stack.sh start) starts it",
    ]
