"""Versioning survives kills, full disks, torn and merged files (issue 14, versioning part).

Real processes throughout: the `corpusflow` CLI (`comet record` is the versioning step every
snapshot ends with; `comet sync` uploads), the real comet_ml SDK writing real offline
archives, and tests/comet_stub.py (Comet's REST protocol on 127.0.0.1) receiving them. Kills
are real SIGKILLs: a small launcher wraps one named function of the running CLI so that the
process kills itself right before or after it (the points are listed in KILL_POINTS). Every
wait is a process exiting, never a clock.

What must hold after every fault, once the command is rerun and `comet sync` has run:
`comet sync` completes, each distinct snapshot sha256 is exactly one ledger version and one
Comet artifact version, and nothing is left behind under data/comet (no archive still to
upload, no staging leftover, no saved bytes or *.tmp without a queue entry).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
os.environ.setdefault("COMET_DISABLE_ANNOUNCEMENT", "true")

from comet_stub import CometStub  # noqa: E402
from conftest import CLI  # noqa: E402

SECRET = "cometSECRETkey123"
TIMEOUT = 180.0
LAUNCHER = """
import importlib, os, signal, sys
spec = os.environ.pop("CORPUSFLOW_KILL_AT")
module, name, when = spec.split(":")
owner = importlib.import_module(module)
*path, attr = name.split(".")
for part in path:
    owner = getattr(owner, part)
original = getattr(owner, attr)
def wrapped(*args, **kwargs):
    if when == "before":
        os.kill(os.getpid(), signal.SIGKILL)
    result = original(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
    return result
setattr(owner, attr, wrapped)
from corpusflow.cli import main
sys.argv = ["corpusflow", *sys.argv[1:]]
main()
"""

# (where the process dies, the command it is running); functions are patched where used
KILL_POINTS = [
    ("corpusflow.versioning.step:save_bytes:after", "record"),  # bytes saved, nothing queued
    ("corpusflow.versioning.queue:PendingQueue.add:after", "record"),  # queued, run not logged
    ("corpusflow.versioning.step:log_chunks_per_source:after", "record"),  # mid-experiment
    ("corpusflow.versioning.comet:publish_archive:before", "record"),  # archive in staging
    ("corpusflow.versioning.comet:publish_archive:after", "record"),  # archive, no ledger line
    ("corpusflow.versioning.lineage:Ledger.record_produced:after", "record"),  # all but exit
    ("corpusflow.versioning.sync:tidy:after", "sync"),
    ("comet_ml.offline:main_upload:after", "sync"),  # uploaded, not moved to uploaded/
    ("corpusflow.versioning.sync:log_artifact:after", "sync"),  # in Comet, not in the ledger
    ("corpusflow.versioning.lineage:Ledger.append:after", "sync"),  # synced, still queued
]


# --- helpers ------------------------------------------------------------------------------
def write_snapshot(path: Path, seed: int, records: int = 12) -> str:
    """A snapshot file in the canonical layout; returns its sha256."""
    rnd = random.Random(seed)
    rows = []
    for i in range(records):
        text = " ".join(rnd.choice(["amber", "basalt", "cedar", "delta"]) for _ in range(40))
        rows.append(
            {
                "id": f"{seed:04d}-{i:04d}",
                "source_id": f"file:talk{i % 4}.txt",
                "doc_hash": hashlib.sha256(f"{seed}-{i % 4}".encode()).hexdigest(),
                "model": "sentence-transformers/all-MiniLM-L6-v2",
                "text": text,
            }
        )
    body = "\n,".join(json.dumps(r, sort_keys=True) for r in rows)  # the canonical layout
    head = f'{{"collection":"corpusflow","count":{records},"queries":{{}},"records":['
    data = f"{head}\n{body}\n]}}\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data, encoding="utf-8")
    return hashlib.sha256(data.encode()).hexdigest()


class Project:
    """A working directory with params.yaml; Comet offline unless `online` is asked for."""

    def __init__(self, root: Path, stub: CometStub):
        self.root, self.stub = root, stub
        (root / "params.yaml").write_text("comet: {mode: auto}\n", encoding="utf-8")
        (root / "comet.config").write_text("[comet]\n", encoding="utf-8")
        (root / "launcher.py").write_text(LAUNCHER, encoding="utf-8")
        base = {k: v for k, v in os.environ.items() if not k.startswith(("COMET_", "PREFECT"))}
        base.update(
            COMET_CONFIG=str(root / "comet.config"),
            COMET_DISABLE_AUTO_LOGGING="1",
            COMET_ERROR_TRACKING_ENABLE="false",
            COMET_URL_OVERRIDE=stub.url,
            COMET_OPTIMIZER_URL=f"http://127.0.0.1:{stub.port}/optimizer/",
        )
        self.offline_env = base
        self.online_env = {**base, "COMET_API_KEY": SECRET}

    @property
    def comet_dir(self) -> Path:
        return self.root / "data" / "comet"

    def run(self, *args: str, online: bool = False, kill_at: str | None = None, **kw):
        env = dict(self.online_env if online else self.offline_env)
        cmd = [CLI, *args]
        if kill_at:
            env["CORPUSFLOW_KILL_AT"] = kill_at
            cmd = [sys.executable, str(self.root / "launcher.py"), *args]
        return subprocess.run(
            cmd, cwd=self.root, env=env, capture_output=True, text=True, timeout=TIMEOUT, **kw
        )

    def record(self, snapshot: Path, **kw) -> subprocess.CompletedProcess:
        return self.run("comet", "record", "--snapshot", str(snapshot), "--json", **kw)

    def sync(self, **kw) -> subprocess.CompletedProcess:
        return self.run("comet", "sync", "--json", online=True, **kw)

    def lineage(self, *args: str) -> subprocess.CompletedProcess:
        return self.run("lineage", *args)

    def ledger_lines(self) -> list[str]:
        return (self.root / "lineage" / "ledger.jsonl").read_text().splitlines()

    def comet_shas(self) -> list[str]:
        """sha256 of every artifact version Comet has, in version order."""
        versions = self.stub.artifact_versions("milvus-query-results")
        return [json.loads(v["metadata"])["sha256"] for v in versions]

    def leftovers(self) -> list[str]:
        """Files under data/comet that nothing will ever take care of."""
        d = self.comet_dir
        stray = [*d.glob("*.zip"), *d.glob("uploading/*"), *d.glob(".staging/*")]
        stray += [p for p in d.rglob("*.tmp")]
        stray += [p for p in d.glob("pending/*.json")]
        return sorted(str(p.relative_to(d)) for p in stray)


def versioned(out: dict) -> dict:
    """The versioning outcome of `comet record --json`."""
    return out.get("comet", out)


def no_traceback(proc: subprocess.CompletedProcess) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr


def ok(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    no_traceback(proc)
    return json.loads(proc.stdout)


@pytest.fixture
def project(tmp_path):
    stub = CometStub().start()
    try:
        yield Project(tmp_path, stub)
    finally:
        stub.stop()


def assert_converged(p: Project, shas: list[str]) -> None:
    """After a clean sync: one ledger version and one Comet version per distinct sha."""
    report = ok(p.sync())
    assert report["error"] is None and report["remaining"] == 0, report
    distinct = list(dict.fromkeys(shas))
    assert sorted(p.comet_shas()) == sorted(distinct)  # exactly one version each
    graph = json.loads(p.lineage("--json").stdout)["versions"]
    assert sorted(v["sha256"] for v in graph) == sorted(distinct)
    assert all(v["comet"]["versions"] and not v["comet"]["pending"] for v in graph), graph
    assert p.leftovers() == []


# --- broken archives ------------------------------------------------------------------------
def test_empty_or_torn_archive_is_quarantined_and_later_versions_sync(project):
    """What a kill -9 or a full disk leaves in data/comet (an empty zip: the SDK creates it
    when the experiment starts; a torn one) must not stop `comet sync` for good."""
    p = project
    sha1 = write_snapshot(p.root / "s1.json", 1)
    ok(p.record(p.root / "s1.json"))
    (good,) = p.comet_dir.glob("*.zip")
    (p.comet_dir / ("0" * 32 + ".zip")).write_bytes(b"")  # killed right after the start
    (p.comet_dir / ("1" * 32 + ".zip")).write_bytes(good.read_bytes()[:100])  # disk full
    sha2 = write_snapshot(p.root / "s2.json", 2)
    ok(p.record(p.root / "s2.json"))

    proc = p.sync()
    report = ok(proc)
    assert sorted(q["archive"] for q in report["archives_quarantined"]) == [
        "0" * 32 + ".zip",
        "1" * 32 + ".zip",
    ]
    assert [a["sha256"] for a in report["artifacts_logged"]] == [sha1, sha2]
    assert sorted(x.name for x in (p.comet_dir / "quarantine").iterdir()) == [
        "0" * 32 + ".zip",
        "1" * 32 + ".zip",
    ]
    quarantined = [line for line in proc.stderr.splitlines() if "quarantine" in line]
    assert len(quarantined) == 2  # one line each
    again = ok(p.sync())
    assert again["archives_quarantined"] == [] and again["artifacts_logged"] == []
    assert p.comet_shas() == [sha1, sha2]


def test_full_disk_while_versioning_leaves_nothing_sync_trips_on(project):
    """A real kernel limit (RLIMIT_FSIZE, SIGXFSZ ignored: writes fail with EFBIG) lets the
    versioning step save the snapshot's bytes and its ledger line, but not the archive."""
    p = project
    sha = write_snapshot(p.root / "big.json", 7, records=60)
    limit = (p.root / "big.json").stat().st_size + 4096

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)

    proc = p.record(p.root / "big.json", preexec_fn=small_files)
    no_traceback(proc)
    assert not list(p.comet_dir.glob("*.zip"))  # no torn archive where sync uploads from
    if proc.returncode == 0:  # the version is queued; its run archive could not be written
        assert versioned(json.loads(proc.stdout))["ledger_version"] == "v1"
    else:
        assert versioned(ok(p.record(p.root / "big.json")))["ledger_version"] == "v1"
    assert_converged(p, [sha])


# --- the same bytes are one version ---------------------------------------------------------
def test_orphan_queue_entry_does_not_make_a_second_comet_version(project):
    """A run killed between queueing its artifact version and writing its ledger line
    leaves an orphan queue entry; the rerun (same bytes) must finish it, not add another."""
    p = project
    sha = write_snapshot(p.root / "s.json", 3)
    ok(p.record(p.root / "s.json"))
    ledger = p.root / "lineage" / "ledger.jsonl"
    ledger.write_text("")  # the ledger line never made it
    out = ok(p.record(p.root / "s.json"))
    assert versioned(out)["ledger_version"] == "v1"
    assert_converged(p, [sha])


def test_bytes_seen_before_make_no_new_version_or_archive(project):
    """A, B, then A again: two versions, two archives; A's rerun reuses A's version."""
    p = project
    a = write_snapshot(p.root / "a.json", 4)
    b = write_snapshot(p.root / "b.json", 5)
    outs = [ok(p.record(p.root / name)) for name in ("a.json", "b.json", "a.json", "a.json")]
    assert [versioned(o)["ledger_version"] for o in outs] == ["v1", "v2", "v1", "v1"]
    assert [versioned(o)["new_version"] for o in outs] == [True, True, False, False]
    assert len(list(p.comet_dir.glob("*.zip"))) == 2  # identical bytes: no new archive
    assert_converged(p, [a, b])
    assert p.comet_shas() == [a, b]


# --- torn, foreign and merged lines ----------------------------------------------------------
def test_torn_and_non_object_ledger_lines_are_skipped_with_one_line_each(project):
    p = project
    sha1 = write_snapshot(p.root / "s1.json", 11)
    ok(p.record(p.root / "s1.json"))
    ledger = p.root / "lineage" / "ledger.jsonl"
    good = ledger.read_text()
    ledger.write_text(good + '{"event": "produced", "sha2\n[1, 2]\n"text"\n42\nnull\n{"event"')
    proc = p.lineage()
    assert proc.returncode == 0, proc.stderr
    no_traceback(proc)
    assert "v1" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if "ledger.jsonl" in line]
    assert len(warnings) == 6, proc.stderr  # torn, four non-objects, torn last line
    sha2 = write_snapshot(p.root / "s2.json", 12)
    out = ok(p.record(p.root / "s2.json"))  # appends on a line of its own
    assert versioned(out)["ledger_version"] == "v2"
    assert json.loads(p.ledger_lines()[-1])["sha256"] == sha2
    shown = json.loads(p.lineage("--json").stdout)["versions"]
    assert [(v["version"], v["sha256"]) for v in shown] == [("v1", sha1), ("v2", sha2)]


def test_torn_rejects_line_does_not_swallow_the_next_reject(tmp_path):
    from corpusflow.models import Reject
    from corpusflow.pipeline import RejectLog

    path = tmp_path / "rejects.jsonl"
    path.write_text('{"run_id": "r0", "source": "a.txt", "reason": "emp')  # killed writer
    RejectLog(str(path), "r1").add(Reject("b.txt", "transcript", "no text"))
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[-1])["source"] == "b.txt"


def merged_ledger(p: Project) -> tuple:
    """main: v1 (A); branch x appends v2 (B), branch y appends v2 (C); then both merged."""
    shas = [write_snapshot(p.root / f"m{i}.json", 20 + i) for i in range(3)]
    ok(p.record(p.root / "m0.json"))
    base = p.ledger_lines()
    ok(p.record(p.root / "m1.json"))
    line_b = p.ledger_lines()[-1]
    ledger = p.root / "lineage" / "ledger.jsonl"
    ledger.write_text("\n".join(base) + "\n")
    ok(p.record(p.root / "m2.json"))
    line_c = p.ledger_lines()[-1]
    assert json.loads(line_b)["version"] == json.loads(line_c)["version"] == "v2"
    return shas[0], shas[1], shas[2], base, line_b, line_c


def test_merged_ledger_with_two_v2_resolves_deterministically(project):
    p = project
    a, b, c, base, line_b, line_c = merged_ledger(p)
    ledger = p.root / "lineage" / "ledger.jsonl"
    views = []
    for order in ([line_b, line_c], [line_c, line_b]):  # either merge direction
        ledger.write_text("\n".join([*base, *order]) + "\n")
        proc = p.lineage("--json")
        assert proc.returncode == 0, proc.stderr
        no_traceback(proc)
        assert len([ln for ln in proc.stderr.splitlines() if "two snapshots" in ln]) == 1
        views.append([(v["version"], v["sha256"]) for v in json.loads(proc.stdout)["versions"]])
    assert views[0] == views[1]  # the same answer whichever way the branches were merged
    assert [v for v, _ in views[0]] == ["v1", "v2", "v3"]
    assert {s for _, s in views[0]} == {a, b, c}
    for version, sha in views[0]:
        for ref in (version, sha[:10]):
            shown = json.loads(p.lineage(ref, "--json").stdout)["version"]
            assert shown["sha256"] == sha
    d = write_snapshot(p.root / "m3.json", 30)
    assert versioned(ok(p.record(p.root / "m3.json")))["ledger_version"] == "v4"
    after = json.loads(p.lineage("--json").stdout)["versions"]
    assert [(v["version"], v["sha256"]) for v in after] == [*views[0], ("v4", d)]  # stable


# --- the fault-injection loop ----------------------------------------------------------------
def test_kill_at_every_point_of_version_and_sync_then_rerun(project):
    """For each point: make a new snapshot, kill -9 the step there, rerun it, sync. After
    every round `comet sync` completes, nothing is left behind, and each distinct snapshot
    is exactly one ledger version and one Comet version."""
    p = project
    shas: list[str] = []
    for i, (point, command) in enumerate(KILL_POINTS):
        snap = p.root / f"round{i}.json"
        shas.append(write_snapshot(snap, 100 + i))
        if command == "record":
            killed = p.record(snap, kill_at=point)
        else:
            ok(p.record(snap))
            killed = p.sync(kill_at=point)
        assert killed.returncode == -signal.SIGKILL, (point, killed.stderr[-2000:])
        rerun = p.record(snap) if command == "record" else p.sync()
        ok(rerun)
        assert_converged(p, shas)
    archives = list((p.comet_dir / "uploaded").glob("*.zip"))
    assert all(zipfile.ZipFile(a).testzip() is None for a in archives)
