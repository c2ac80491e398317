"""Comet artifacts and lineage with the real comet_ml SDK: offline archives and the pending
queue, and online runs against a loopback stand-in that speaks Comet's REST protocol.

Only the Comet cloud is replaced (tests/comet_stub.py); the SDK, Milvus Lite and MiniLM are
real. An audit hook checks that nothing connects or resolves anything but loopback.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

# Before any test module's fixtures load the embedder (which imports comet_ml).
os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
os.environ.setdefault("COMET_DISABLE_ANNOUNCEMENT", "true")

from comet_stub import CometStub  # noqa: E402
from corpusflow.evaluation import evaluate  # noqa: E402
from corpusflow.models import Document  # noqa: E402
from corpusflow.pipeline import ingest, snapshot  # noqa: E402
from corpusflow.versioning import comet as cv  # noqa: E402
from corpusflow.versioning.lineage import Ledger, file_sha256  # noqa: E402
from corpusflow.versioning.queue import PendingQueue  # noqa: E402
from corpusflow.versioning.step import record_version  # noqa: E402
from corpusflow.versioning.sync import sync  # noqa: E402

SECRET = "cometSECRETkey123"

# --- network audit: every connect / name lookup in this process is recorded ---------------
_NET: list[tuple[str, object]] = []


def _audit(event: str, args: tuple) -> None:
    if event == "socket.connect":
        _NET.append(("connect", args[1]))
    elif event == "socket.getaddrinfo":
        _NET.append(("resolve", args[0]))


sys.addaudithook(_audit)


def _loopback(target: object) -> bool:
    if isinstance(target, str | bytes):  # AF_UNIX path (Milvus Lite) or a host name
        host = target.decode() if isinstance(target, bytes) else target
        if "/" in host or host == "":
            return True
    elif isinstance(target, tuple):
        host = target[0]
    else:
        return False
    if host in ("localhost", None):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def only_loopback():
    start = len(_NET)
    yield
    stray = [n for n in _NET[start:] if not _loopback(n[1])]
    assert not stray, f"network beyond loopback: {stray}"


# --- fixtures ---------------------------------------------------------------------------------
@pytest.fixture
def comet_home(tmp_path, monkeypatch):
    """A clean Comet configuration: no key, no URL, no user config files."""
    for key in list(os.environ):
        if key.startswith("COMET_") and key not in cv.COMET_ENV_DEFAULTS:
            monkeypatch.delenv(key)
    cfg = tmp_path / "comet.config"
    cfg.write_text("[comet]\n")
    monkeypatch.setenv("COMET_CONFIG", str(cfg))
    monkeypatch.setenv("PREFECT__FLOW_RUN_ID", "flow-run-0001")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def stub(comet_home, monkeypatch):
    server = CometStub().start()
    monkeypatch.setenv("COMET_URL_OVERRIDE", server.url)
    monkeypatch.setenv("COMET_OPTIMIZER_URL", f"http://127.0.0.1:{server.port}/optimizer/")
    yield server
    server.stop()


def git_repo(path: Path) -> str:
    """Make `path` a git repository with one commit; returns the commit."""
    run = [
        "git",
        "-c",
        "user.email=t@example.com",
        "-c",
        "user.name=t",
        "-c",
        "commit.gpgsign=false",
    ]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    (path / "README").write_text("x\n")
    subprocess.run([*run, "-C", str(path), "add", "README"], check=True)
    subprocess.run([*run, "-C", str(path), "commit", "-qm", "init"], check=True)
    return subprocess.run(
        ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()


TOPICS = {
    "file:bread": "Feed the sourdough starter flour and water every day so the wild yeast "
    "stays alive; a lively starter doubles within hours and smells pleasantly sour.",
    "file:kayak": "Paddling a kayak through river rapids takes a strong brace stroke, a "
    "helmet and a spray skirt; scout every rapid from the bank before running it.",
    "file:garden": "Tomatoes in the vegetable garden want full sun, deep watering twice a "
    "week and a stake to climb; pinch the suckers to get bigger fruit.",
}
QUERIES = [
    {"query": "how do I keep a wild yeast starter alive", "expected_source": "file:bread"},
    {"query": "safety gear for whitewater paddling", "expected_source": "file:kayak"},
    {"query": "growing tomato plants", "expected_source": "file:garden"},
]


def docs(edit: str | None = None) -> list[Document]:
    out = []
    for sid, text in TOPICS.items():
        if sid == edit:
            text += " Edited: this version adds a paragraph."
        out.append(Document(source_id=sid, source_type="article", text=text, title=sid))
    return out


def make(make_ctx, root: Path, **comet):
    return make_ctx(
        root,
        comet={
            "offline_dir": str(root / "data" / "comet"),
            "ledger": str(root / "ledger.jsonl"),
            **comet,
        },
        evaluation={"queries": QUERIES, "k": 2},
    )


def produce(ctx, documents, dvc=None):
    result = ingest(ctx, documents)
    snap = snapshot(ctx)
    out = record_version(ctx.params, Path(snap.path), result=result, dvc=dvc or {})
    return result, snap, out


def named(version: dict) -> list[str]:
    """A version's aliases other than its sha256 alias."""
    return [a for a in version["aliases"] if not a.startswith("sha256-")]


def archive_messages(path: str) -> tuple[list[dict], zipfile.ZipFile]:
    zf = zipfile.ZipFile(path)
    lines = zf.read("messages.json").decode().splitlines()
    return [json.loads(line) for line in lines if line.strip()], zf


def assert_no_secret_in_requests(server: CometStub) -> None:
    """The key may appear only where the SDK authenticates: the Authorization header and the
    SDK's own `apiKey`/`api_key` handshake fields — never in anything we log."""
    assert server.state.requests
    for rec in server.state.requests:
        headers = {k: v for k, v in rec.headers.items() if k != "authorization"}
        assert SECRET not in json.dumps(headers), rec.path
        assert SECRET not in json.dumps(rec.query), rec.path
        body = rec.body
        try:
            doc = json.loads(body) if body else None
        except ValueError:
            doc = None
        if isinstance(doc, dict):
            for field in ("apiKey", "api_key"):
                if doc.get(field) == SECRET:
                    del doc[field]
            body = json.dumps(doc).encode()
        assert SECRET.encode() not in body, f"{rec.method} {rec.path} carries the key"
    data_paths = ("parameter", "metric", "log-other", "artifacts", "asset/upload")
    assert any(p in r.path for r in server.state.requests for p in data_paths)


# --- offline ------------------------------------------------------------------------------
def test_offline_run_writes_archive_and_pending_version(make_ctx, comet_home):
    commit = git_repo(comet_home)
    ctx = make(make_ctx, comet_home)
    result, snap, out = produce(ctx, docs(), dvc={"md5": "d41d8cd9", "remote": "s3://b/x"})

    assert out["mode"] == "offline" and out["artifact_version"] == "pending"
    assert out["ledger_version"] == "v1" and out["new_version"]
    archive = Path(out["archive"])
    assert archive.parent == comet_home / "data" / "comet" and archive.suffix == ".zip"

    messages, zf = archive_messages(str(archive))
    logged = [m["payload"] for m in messages if m["type"] == "parameter_msg"]
    params = {
        p["paramName"]: p["paramValue"] for p in (m.get("param") or m["params"] for m in logged)
    }
    assert params["params_hash"] == ctx.params.digest()
    assert params["milvus|collection"] == "corpusflow"
    metrics = {
        m["payload"]["metric"]["metricName"]: m["payload"]["metric"]["metricValue"]
        for m in messages
        if m["type"] == "metric_msg"
    }
    assert metrics["chunks"] == result.chunks == 3 and metrics["snapshot_records"] == 3
    assert metrics["article.documents"] == 3 and metrics["chunks_per_second"] > 0
    uploads = {
        m["payload"]["additional_params"]["fileName"]: m["payload"]
        for m in messages
        if m["type"] == "file_upload"
    }
    assert {"snapshot.json", "chunks_per_source.csv", "snapshot.manifest.json"} <= set(uploads)
    snap_bytes = Path(snap.path).read_bytes()
    assert zf.read(uploads["snapshot.json"]["file_path"]) == snap_bytes
    table = zf.read(uploads["chunks_per_source.csv"]["file_path"]).decode()
    assert "file:bread,1" in table.replace("\r", "")
    others = {
        m["payload"]["key"]: m["payload"]["value"] for m in messages if m["type"] == "log_other"
    }
    assert others["snapshot_sha256"] == snap.sha256 and others["ledger_version"] == "v1"

    queue = PendingQueue(comet_home / "data" / "comet" / "pending").entries()
    assert len(queue) == 1
    entry = queue[0]
    assert entry["kind"] == "artifact" and entry["experiment_key"] == out["experiment_key"]
    assert entry["artifact"] == "milvus-query-results" and entry["aliases"] == ["latest"]
    meta = entry["metadata"]
    assert meta["sha256"] == snap.sha256
    assert meta["dvc_md5"] == "d41d8cd9" and meta["dvc_remote"] == "s3://b/x"
    assert meta["git_commit"] == commit
    assert meta["params_hash"] == ctx.params.digest()
    assert meta["collection"] == meta["alias"] == "corpusflow"
    assert meta["physical_collection"] == ctx.target
    assert meta["embedding_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert meta["records"] == 3 and meta["ingest_run_id"] == result.run_id
    assert meta["prefect_flow_run_id"] == "flow-run-0001"
    assert Path(entry["file"]).read_bytes() == snap_bytes  # survives the next snapshot

    # an unchanged rerun adds no pending version and keeps v1
    _, _, again = produce(ctx, docs())
    assert again["ledger_version"] == "v1" and again["pending_id"] == out["pending_id"]
    assert len(PendingQueue(comet_home / "data" / "comet" / "pending").entries()) == 1


def test_offline_archive_and_ledger_hold_no_secret(
    make_ctx, comet_home, monkeypatch, capfd, caplog
):
    monkeypatch.setenv("COMET_API_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openaiSECRET456")
    ctx = make(make_ctx, comet_home, mode="offline")
    _, _, out = produce(ctx, docs(), dvc={"remote": "https://user:hunter2pass@dvc.example/x"})
    ev = evaluate(ctx, "latest")
    assert out["mode"] == ev.mode == "offline"
    blobs = []
    for archive in (out["archive"], ev.archive):
        with zipfile.ZipFile(archive) as zf:
            blobs += [zf.read(n) for n in zf.namelist()]
    blobs.append((comet_home / "ledger.jsonl").read_bytes())
    blobs += [p.read_bytes() for p in (comet_home / "data" / "comet" / "pending").iterdir()]
    captured = capfd.readouterr()
    blobs += [captured.out.encode(), captured.err.encode(), caplog.text.encode()]
    for blob in blobs:
        for secret in (SECRET, "sk-openaiSECRET456", "hunter2pass"):
            assert secret.encode() not in blob
    entry = PendingQueue(comet_home / "data" / "comet" / "pending").entries()[0]
    assert entry["metadata"]["dvc_remote"] == "https://***@dvc.example/x"


# --- online, against the stand-in -------------------------------------------------------------
def test_online_versions_alias_and_recorded_consumer(make_ctx, stub, monkeypatch, capfd, caplog):
    monkeypatch.setenv("COMET_API_KEY", SECRET)
    stub_root = Path.cwd()
    ctx = make(make_ctx, stub_root)
    r1, snap1, out1 = produce(ctx, docs(), dvc={"md5": "aaa111", "remote": "s3://b/1"})
    v1_bytes = Path(snap1.path).read_bytes()
    assert out1["mode"] == "online" and out1["artifact_version"] == "1.0.0"
    r2, snap2, out2 = produce(ctx, docs(edit="file:kayak"))
    assert out2["artifact_version"] == "2.0.0" and out2["ledger_version"] == "v2"

    versions = stub.artifact_versions("milvus-query-results")
    assert [v["version"] for v in versions] == ["1.0.0", "2.0.0"]
    assert [named(v) for v in versions] == [[], ["latest"]]  # latest moved to 2.0.0
    shas = [cv.sha_alias(snap1.sha256), cv.sha_alias(snap2.sha256)]
    assert [sorted(set(v["aliases"]) - set(named(v))) for v in versions] == [[a] for a in shas]
    assert all(v["state"] == "CLOSED" for v in versions)
    first = versions[0]
    local = [a for a in first["assets"] if not stub.state.assets[a].get("remote")]
    remote = [stub.state.assets[a] for a in first["assets"] if stub.state.assets[a].get("remote")]
    assert [stub.asset_bytes(a) for a in local] == [v1_bytes]  # small: uploaded too
    # and where DVC keeps the bytes, as a remote asset (a link, nothing uploaded)
    assert [(r["link"], r["fileName"]) for r in remote] == [("s3://b/1", cv.DVC_REMOTE_ASSET)]
    assert stub.state.assets[local[0]]["fileName"] == "snapshot.json"
    meta = json.loads(first["metadata"])
    assert meta["sha256"] == snap1.sha256 and meta["dvc_md5"] == "aaa111"
    assert meta["dvc_remote"] == "s3://b/1" and meta["records"] == 3
    assert meta["physical_collection"] == ctx.target and meta["params_hash"] == ctx.params.digest()
    assert first["experimentKey"] == out1["experiment_key"]
    producer = stub.state.experiments[out1["experiment_key"]]
    assert producer["params"]["params_hash"] == ctx.params.digest()
    assert {m["metricName"] for m in producer["metrics"]} >= {"chunks", "chunks_per_second"}
    assert producer["others"]["ledger_version"] == "v1"

    ev = evaluate(ctx, "latest")
    assert ev.mode == "online" and ev.comet_recorded
    assert ev.snapshot["comet_version"] == "2.0.0" and ev.snapshot["version"] == "v2"
    assert ev.hit_rate == 1.0 and ev.mrr == 1.0
    ev1 = evaluate(ctx, "v1")  # a ledger version is translated to its Comet version
    assert ev1.snapshot["comet_version"] == "1.0.0"
    assert Path(ev1.snapshot["path"]).read_bytes() == v1_bytes
    consumers = [(c["consumerExperimentKey"], c["version"]) for c in stub.state.consumers]
    assert consumers == [(ev.experiment_key, "2.0.0"), (ev1.experiment_key, "1.0.0")]
    evaluator = stub.state.experiments[ev.experiment_key]
    assert {m["metricName"]: m["metricValue"] for m in evaluator["metrics"]}["hit_rate@2"] == 1.0

    assert not stub.state.unknown, [(r.method, r.path) for r in stub.state.unknown]
    assert_no_secret_in_requests(stub)
    captured = capfd.readouterr()
    for text in (captured.out, captured.err, caplog.text, (stub_root / "ledger.jsonl").read_text()):
        assert SECRET not in text


def test_sync_replays_offline_runs_and_pending_versions_in_order(make_ctx, stub, monkeypatch):
    root = Path.cwd()
    ctx = make(make_ctx, root)
    _, snap1, out1 = produce(ctx, docs(), dvc={"md5": "m1"})
    ev = evaluate(ctx, "v1")  # offline consumer, queued for Comet
    _, snap2, out2 = produce(ctx, docs(edit="file:garden"))
    assert (out1["mode"], ev.mode, out2["mode"]) == ("offline",) * 3
    assert ev.pending_id
    assert not stub.state.requests  # nothing left the machine while offline

    monkeypatch.setenv("COMET_API_KEY", SECRET)
    report = sync(ctx.params)
    assert report["error"] is None and report["remaining"] == 0, report
    assert len(report["archives_uploaded"]) == 3 and not report["archives_failed"]
    assert [a["version"] for a in report["artifacts_logged"]] == ["1.0.0", "2.0.0"]
    assert [a["sha256"] for a in report["artifacts_logged"]] == [snap1.sha256, snap2.sha256]

    versions = stub.artifact_versions("milvus-query-results")
    assert [named(v) for v in versions] == [[], ["latest"]]
    assert [v["experimentKey"] for v in versions] == [
        out1["experiment_key"],
        out2["experiment_key"],
    ]
    assert json.loads(versions[0]["metadata"])["dvc_md5"] == "m1"
    assert file_sha256_bytes(stub.asset_bytes(versions[1]["assets"][0])) == snap2.sha256
    uploaded = stub.state.experiments[out1["experiment_key"]]
    assert uploaded["offline"] and uploaded["params"]["params_hash"] == ctx.params.digest()
    assert [(c["consumerExperimentKey"], c["version"]) for c in stub.state.consumers] == [
        (ev.experiment_key, "1.0.0")
    ]

    pending = root / "data" / "comet" / "pending"
    assert PendingQueue(pending).entries() == []
    assert not list(pending.glob("*.json"))  # saved bytes dropped once uploaded
    assert not list((root / "data" / "comet").glob("*.zip"))
    view = {v["version"]: v for v in Ledger(root / "ledger.jsonl").graph()}
    assert view["v1"]["comet"] == {
        "artifact": "milvus-query-results",
        "versions": ["1.0.0"],
        "pending": [],
    }
    assert view["v1"]["consumers"][0]["comet_recorded"] is True  # by sync's get_artifact
    assert view["v1"]["consumers"][0]["comet_version"] == "1.0.0"
    again = sync(ctx.params)  # idempotent
    assert again["archives_uploaded"] == [] and again["artifacts_logged"] == []
    assert not stub.state.unknown, [(r.method, r.path) for r in stub.state.unknown]
    assert_no_secret_in_requests(stub)


def test_online_run_whose_artifact_fails_is_queued_and_synced(make_ctx, stub, monkeypatch):
    monkeypatch.setenv("COMET_API_KEY", SECRET)
    ctx = make(make_ctx, Path.cwd())
    stub.state.reject_artifacts = True
    _, snap, out = produce(ctx, docs())
    assert out["mode"] == "online" and out["artifact_version"] == "pending"
    assert out["archive"] is None  # the run itself is in Comet already
    stub.state.reject_artifacts = False
    report = sync(ctx.params)
    assert report["archives_uploaded"] == [] and report["error"] is None
    assert [a["version"] for a in report["artifacts_logged"]] == ["1.0.0"]
    (version,) = stub.artifact_versions("milvus-query-results")
    assert version["experimentKey"] == out["experiment_key"] and named(version) == ["latest"]
    assert json.loads(version["metadata"])["sha256"] == snap.sha256
    assert Ledger(Path.cwd() / "ledger.jsonl").resolve("1.0.0")["sha256"] == snap.sha256


def file_sha256_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def test_unreachable_comet_falls_back_to_offline(make_ctx, comet_home, monkeypatch):
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there: connection refused at once
    monkeypatch.setenv("COMET_URL_OVERRIDE", f"http://127.0.0.1:{port}/clientlib/")
    monkeypatch.setenv("COMET_API_KEY", SECRET)
    ctx = make(make_ctx, comet_home)
    _, snap, out = produce(ctx, docs())
    assert out["mode"] == "offline" and out["artifact_version"] == "pending"
    assert Path(out["archive"]).exists()
    entry = PendingQueue(comet_home / "data" / "comet" / "pending").entries()[0]
    assert file_sha256(entry["file"]) == snap.sha256


def test_sync_without_key_is_a_clear_error(comet_home):
    from corpusflow.config import Params

    with pytest.raises(cv.CometError, match="COMET_API_KEY"):
        sync(Params())


def test_scrub_redacts_keys_env_secrets_and_url_passwords(monkeypatch):
    monkeypatch.setenv("MILVUS_TOKEN", "root:Milvus-token-9")
    value = {
        "api_key": "abc",
        "password": "p",
        "max_input_tokens": 8192,  # a count, not a secret
        "uri": "http://root:Milvus-token-9@h:19530",
        "nested": [{"auth": "x", "note": "uses root:Milvus-token-9"}],
        "remote": "s3://user:pw@bucket/path",
    }
    out = cv.scrub(value)
    assert out["api_key"] == out["password"] == "***"
    assert out["max_input_tokens"] == 8192
    assert "Milvus-token-9" not in json.dumps(out)
    assert out["nested"][0]["auth"] == "***"
    assert out["remote"] == "s3://***@bucket/path"
