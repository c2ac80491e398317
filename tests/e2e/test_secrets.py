"""Planted secrets never leave the environment.

OPENAI_API_KEY, MILVUS_TOKEN and COMET_API_KEY are set to recognisable values and used for
real: the key authenticates every embedding request to a local OpenAI-compatible server
(tests/openai_stub.py), the token every call to a milvus-lite gRPC server, and the Comet key
sits in the environment of runs that version snapshots (Comet offline, so nothing leaves the
machine). Every command runs with every logger at DEBUG (plus gRPC, OpenAI and Comet debug
logging); then stdout, stderr, and every file the runs wrote are searched for the secrets,
raw and base64-encoded (gRPC and HTTP carry credentials base64-encoded): rejects, snapshots,
manifests, DVC stage files and metrics, the embedding cache, Comet archives (unzipped) and
logs, the lineage ledger, the Milvus data directory, and for the Prefect flow its
parameters, logs, artifacts, task runs, persisted results and the API's database.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import yaml

from milvus_servers import LiteServer, free_port
from openai_stub import serve

pytest_plugins = ["conftest_prefect"]

SECRETS = {
    "OPENAI_API_KEY": "sk-proj-plantedOpenAIkey7f3a9c",
    "MILVUS_TOKEN": "root:plantedMilvusPass5d21",
    "COMET_API_KEY": "plantedCometKey0b8e44d2",
}


def needles() -> dict[str, bytes]:
    found: dict[str, bytes] = {}
    for name, value in SECRETS.items():
        found[name] = value.encode()
        found[f"{name} (base64)"] = base64.b64encode(value.encode()).rstrip(b"=")
    found["MILVUS_TOKEN password"] = SECRETS["MILVUS_TOKEN"].split(":", 1)[1].encode()
    return found


def leaks(places: dict[str, bytes]) -> list[tuple[str, str]]:
    return [
        (where, what)
        for where, blob in places.items()
        for what, needle in needles().items()
        if needle in blob
    ]


def files_under(root: Path) -> dict[str, bytes]:
    """Every file under `root` by path; zip archives (Comet offline runs) also member by
    member, since their members are compressed."""
    found: dict[str, bytes] = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        found[str(path)] = data
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as zf:
                for name in zf.namelist():
                    found[f"{path}!{name}"] = zf.read(name)
    return found


def write_workdir(root: Path, comet_config: Path) -> None:
    corpus = root / "corpus"
    corpus.mkdir(parents=True)
    (corpus / "rivers.txt").write_text("Rivers carve valleys over millions of years.")
    (corpus / "Volcano [V0lcan0Erup].en.vtt").write_text(
        "WEBVTT\n\n00:00:01.000 --> 00:00:04.000\nMagma rises through the crust.\n"
    )
    (corpus / "broken.srt").write_text("not a subtitle\n")  # a reject
    (root / "articles.csv").write_text(
        'id,title,text\n1,Reefs,"Corals bleach, then starve."\n2,Empty,""\n', encoding="utf-8"
    )
    params = {
        "sources": {"transcripts": ["corpus"], "articles": ["articles.csv"]},
        "embedding": {"provider": "openai", "model": "text-embedding-3-small", "dimensions": 16},
        "snapshot": {"queries": [{"name": "rivers", "query": "river valleys", "top_k": 2}]},
        "comet": {"mode": "offline", "offline_dir": "data/comet", "ledger": "lineage/ledger.jsonl"},
    }
    (root / "params.yaml").write_text(yaml.safe_dump(params), encoding="utf-8")
    comet_config.write_text("[comet]\n")


DRIVER = textwrap.dedent(
    """
    # The `corpusflow` Typer app, command after command in one process, every logger at DEBUG
    # (pymilvus included: the store's attempt to quiet it is disabled).
    import json, logging, sys
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr, force=True)
    for name in ("pymilvus", "openai", "httpx", "httpcore", "comet_ml", "corpusflow", "urllib3"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    logging.getLogger("pymilvus").setLevel = lambda level: None
    from corpusflow.cli import app
    codes = []
    for args in json.loads(sys.argv[1]):
        print("=== corpusflow", *args, file=sys.stderr, flush=True)
        codes.append(app(args=args, standalone_mode=False, prog_name="corpusflow") or 0)
    print("=== exit codes", json.dumps(codes), file=sys.stderr)
    sys.exit(max(codes))
    """
)
COMMANDS = [
    ["ingest", "--json"],
    ["snapshot", "--json"],
    ["stats", "--json"],
    ["search", "river valleys", "--json"],
    ["comet", "record", "--json"],
    ["comet", "status", "--json"],
    ["lineage"],
    ["stage", "extract"],
    ["stage", "chunk"],
    ["stage", "embed"],
    ["stage", "load"],
    ["stage", "snapshot"],
]


def secret_env(home: Path, stub_url: str, milvus_uri: str | None) -> dict[str, str]:
    env = dict(os.environ, **SECRETS)
    env.update(
        OPENAI_BASE_URL=stub_url,
        COMET_CONFIG=str(home / "comet.config"),
        COMET_LOGGING_CONSOLE="debug",
        COMET_LOGGING_FILE=str(home / "logs" / "comet.log"),
        COMET_LOGGING_FILE_LEVEL="debug",
        OPENAI_LOG="debug",
        GRPC_VERBOSITY="DEBUG",
        PREFECT_LOGGING_LEVEL="DEBUG",
    )
    if milvus_uri:
        env["MILVUS_URI"] = milvus_uri
    return env


def test_cli_never_shows_or_stores_a_secret(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "logs").mkdir()
    write_workdir(work, work / "comet.config")
    (tmp_path / "driver.py").write_text(DRIVER)
    server = LiteServer(tmp_path / "milvus-server", port=free_port())
    server.start()
    try:
        with serve(dim=16) as stub:
            env = secret_env(work, stub.url, server.uri)
            out = subprocess.run(
                [sys.executable, str(tmp_path / "driver.py"), json.dumps(COMMANDS)],
                cwd=work,
                env=env,
                capture_output=True,
                timeout=300,
            )
            requests = len(stub.requests)
    finally:
        server.stop()
    stderr = out.stderr.decode("utf-8", "replace")
    assert out.returncode == 0, stderr[-3000:]
    assert requests > 0  # the key was really used
    assert "rejected corpus/broken.srt" in stderr and "DEBUG" in stderr  # verbose, real run
    assert (work / "data" / "comet").is_dir() and (work / "lineage" / "ledger.jsonl").exists()
    places = {"stdout": out.stdout, "stderr": out.stderr}
    places |= files_under(work)
    places |= files_under(tmp_path / "milvus-server")
    assert len(places) > 15
    assert leaks(places) == []


def test_prefect_flow_parameters_logs_and_results_hold_no_secret(
    prefect_client, tmp_path, monkeypatch, capfd, caplog
):
    import logging

    import prefect.settings as ps
    from flows.ingest import ingest
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterId,
        LogFilter,
        LogFilterFlowRunId,
    )

    from conftest_prefect import artifact_markdown

    monkeypatch.chdir(tmp_path)
    write_workdir(tmp_path, tmp_path / "comet.config")
    caplog.set_level(logging.DEBUG)
    with serve(dim=16) as stub:
        for key, value in secret_env(tmp_path, stub.url, None).items():
            monkeypatch.setenv(key, value)
        state = ingest(params_file=str(tmp_path / "params.yaml"), return_state=True)
        assert state.is_completed(), state.message
        assert stub.requests
    summary = state.result()
    assert summary["result"]["rejected"] == 2 and summary["snapshot"]

    flow_run_id = state.state_details.flow_run_id
    flow_run = prefect_client.read_flow_run(flow_run_id)
    logs = prefect_client.read_logs(
        log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
    )
    task_runs = prefect_client.read_task_runs(
        flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
    )
    assert logs and task_runs
    captured = capfd.readouterr()
    places = {
        "flow run": flow_run.model_dump_json().encode(),
        "flow result": json.dumps(summary, default=str).encode(),
        "logs": "\n".join(log.model_dump_json() for log in logs).encode(),
        "task runs": "\n".join(t.model_dump_json() for t in task_runs).encode(),
        "artifact": artifact_markdown(prefect_client, flow_run_id).encode(),
        "stdout": captured.out.encode(),
        "stderr": captured.err.encode(),
        "caplog": caplog.text.encode(),
    }
    places |= files_under(tmp_path)
    places |= files_under(Path(ps.PREFECT_HOME.value()))  # persisted task results
    database = ps.PREFECT_API_DATABASE_CONNECTION_URL.value() or ""
    if database.startswith("sqlite"):  # everything the Prefect API stored
        db_file = Path(database.split("///", 1)[1])
        places |= {str(p): p.read_bytes() for p in db_file.parent.glob(db_file.name + "*")}
    assert leaks(places) == []


def test_the_search_itself_would_find_a_leak(tmp_path):
    """The scanner is not blind: a file holding a secret in any of its forms is reported."""
    (tmp_path / "a.json").write_text(json.dumps({"key": SECRETS["OPENAI_API_KEY"]}))
    (tmp_path / "b.log").write_bytes(base64.b64encode(SECRETS["MILVUS_TOKEN"].encode()))
    with zipfile.ZipFile(tmp_path / "c.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("parameters.json", SECRETS["COMET_API_KEY"] * 3)
    found = {what for _, what in leaks(files_under(tmp_path))}
    assert found >= {"OPENAI_API_KEY", "MILVUS_TOKEN (base64)", "COMET_API_KEY"}
