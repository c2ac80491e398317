"""`dvc repro` on a temporary git repository: real DVC, Milvus Lite, MiniLM; moto for S3.

The repository is a copy of the project's pipeline files (dvc.yaml, params.yaml, .dvc/config,
.dvcignore, the source tree the stages list as deps) on a small corpus written here. The
tests share it and run in order, each starting from the state the previous one left:
build -> no-op -> built by the flow functions -> Milvus damaged -> snapshot params ->
chunking params -> push/pull and older revisions -> rebuild from nothing -> S3.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from corpusflow.versioning.dvc import read_snapshot, read_snapshot_bytes, snapshot_version_info

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DVC = str(BIN / "dvc")
CLI = str(BIN / "corpusflow")
SNAPSHOT = "data/snapshots/snapshot.json"
STAGES = {"extract", "chunk", "embed", "load", "snapshot"}
# the columns `make dvc-exp-show` keeps (mk/dvc.mk, docs/dvc.md)
EXP_COLUMNS = r"^(Experiment|Created|chunking\.chunk_size|rejected|chunks|records|kilobytes)$"

WORDS = (
    "river mountain forest ocean valley glacier meadow canyon island harbor village market "
    "bridge castle tower garden orchard library museum railway tunnel lighthouse prairie"
).split()
SOURDOUGH = (
    "To keep a wild yeast sourdough starter alive, feed it flour and water every day. "
    "Discard half of the starter before each feeding so the yeast and bacteria stay active. "
    "Keep the jar somewhere warm; in the fridge the starter sleeps and needs a feed weekly. "
)


def _words(seed: int, n: int) -> str:
    import random

    rnd = random.Random(seed)
    return " ".join(rnd.choice(WORDS) for _ in range(n)).capitalize() + "."


def write_corpus(root: Path) -> None:
    """Three .txt transcripts, a timed .vtt, an empty file (rejected) and a CSV of three."""
    transcripts = root / "data/raw/transcripts"
    articles = root / "data/raw/articles"
    transcripts.mkdir(parents=True)
    articles.mkdir(parents=True)
    (transcripts / "sourdough.txt").write_text(SOURDOUGH * 6 + _words(1, 120), encoding="utf-8")
    for i in (2, 3):
        body = "\n\n".join(_words(i * 10 + p, 90) for p in range(4))
        (transcripts / f"walk-{i}.txt").write_text(body, encoding="utf-8")
    cues = "".join(
        f"00:00:{2 * k:02d}.000 --> 00:00:{2 * k + 2:02d}.000\n{_words(50 + k, 12)}\n\n"
        for k in range(20)
    )
    (transcripts / "harbor.vtt").write_text("WEBVTT\n\n" + cues, encoding="utf-8")
    (transcripts / "empty.txt").write_text("", encoding="utf-8")
    rows = ["id,title,author,url,published,text"]
    for i in range(3):
        text = " ".join(_words(100 + i * 10 + p, 70) for p in range(3))
        meta = f"a{i},Article {i},Author {i},https://example.org/a{i},2024-01-0{i + 1}"
        rows.append(f'{meta},"{text}"')
    (articles / "articles.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")


@dataclass
class Project:
    """The temporary DVC project, its environment and what earlier tests recorded."""

    root: Path
    env: dict[str, str]
    revs: dict[str, str] = field(default_factory=dict)
    snapshots: dict[str, bytes] = field(default_factory=dict)

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    def run(self, *cmd: str, cwd: Path | None = None, check: bool = True) -> str:
        proc = subprocess.run(
            list(cmd), cwd=cwd or self.repo, env=self.env, capture_output=True, text=True
        )
        out = proc.stdout + proc.stderr
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{out}")
        return out

    def dvc(self, *args: str, cwd: Path | None = None) -> str:
        return self.run(DVC, *args, cwd=cwd)

    def git(self, *args: str, cwd: Path | None = None) -> str:
        return self.run("git", *args, cwd=cwd)

    def repro(self, *args: str) -> set[str]:
        """Run `dvc repro` and return the stages it actually ran."""
        out = self.dvc("repro", *args)
        return set(re.findall(r"Running stage '([^']+)'", out))

    def commit(self, name: str) -> str:
        self.git("add", "-A")
        self.git("commit", "-q", "-m", name)
        rev = self.git("rev-parse", "HEAD").strip()
        self.revs[name] = rev
        self.snapshots[name] = (self.repo / SNAPSHOT).read_bytes()
        return rev

    def lock_md5(self, path: str, lock: str | None = None) -> str:
        data = yaml.safe_load(lock or (self.repo / "dvc.lock").read_text())
        for stage in data["stages"].values():
            for out in stage.get("outs", []):
                if out["path"] == path:
                    return out["md5"]
        raise KeyError(path)

    @contextmanager
    def store(self) -> Iterator[Any]:
        """The project's Milvus Lite, released afterwards: it admits one process at a
        time, and the next `dvc repro` must be able to open it."""
        from milvus_lite.server_manager import server_manager_instance

        from corpusflow.config import load_params
        from corpusflow.pipeline import Context

        ctx = Context(load_params(self.repo / "params.yaml"))
        uri = str(self.repo / ctx.params.milvus.uri)
        ctx.params.milvus.uri = uri
        try:
            yield ctx.store
        finally:
            ctx.close()
            server_manager_instance.release_server(uri)

    def milvus_ids(self) -> set[str]:
        """Ids in the collection behind the alias."""
        with self.store() as store:
            target = store.alias_target()
            return {row["id"] for row in store.iter_rows(target, ["id"])} if target else set()

    def delete_from_milvus(self, ids: list[str]) -> None:
        with self.store() as store:
            store.delete_ids(store.alias_target(), ids)

    def chunk_ids(self) -> set[str]:
        lines = (self.repo / "data/work/chunks.jsonl").read_text().splitlines()
        return {json.loads(line)["id"] for line in lines}

    def lineage_json(self, *args: str) -> dict[str, Any]:
        proc = subprocess.run(
            [CLI, "lineage", *args, "--json"], cwd=self.repo, env=self.env, capture_output=True
        )
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    def lineage(self, ref: str) -> dict[str, Any]:
        return self.lineage_json(ref)["version"]

    def lineage_all(self) -> list[dict[str, Any]]:
        return self.lineage_json()["versions"]

    def edit_params(self, old: str, new: str) -> None:
        path = self.repo / "params.yaml"
        text = path.read_text()
        assert text.count(old) == 1, old
        path.write_text(text.replace(old, new))


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Project:
    root = tmp_path_factory.mktemp("dvc")
    repo = root / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, repo / name)
    (repo / ".dvc").mkdir()
    for name in ("config", ".gitignore"):
        shutil.copy(REPO / ".dvc" / name, repo / ".dvc" / name)
    shutil.copytree(
        REPO / "src/corpusflow",
        repo / "src/corpusflow",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    write_corpus(repo)
    for d in ("home", "dvc-global", "dvc-system", "dvc-site"):
        (root / d).mkdir()
    env = {
        **os.environ,
        "HOME": str(root / "home"),  # the default remote lives under ~ (see docs/dvc.md)
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "DVC_GLOBAL_CONFIG_DIR": str(root / "dvc-global"),
        "DVC_SYSTEM_CONFIG_DIR": str(root / "dvc-system"),
        "DVC_SITE_CACHE_DIR": str(root / "dvc-site"),
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.invalid",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    p = Project(root, env)
    p.git("init", "-q", "-b", "main")
    p.git("add", "-A")
    p.git("commit", "-q", "-m", "pipeline and raw data")
    mp = pytest.MonkeyPatch()  # dvc.api runs in this process too: same hermetic DVC dirs
    for key in ("HOME", "DVC_GLOBAL_CONFIG_DIR", "DVC_SYSTEM_CONFIG_DIR", "DVC_SITE_CACHE_DIR"):
        mp.setenv(key, env[key])
    yield p
    mp.undo()


def test_committed_config_is_offline_with_a_default_remote():
    from configparser import ConfigParser

    cfg = ConfigParser()
    cfg.read(REPO / ".dvc/config")
    assert cfg["core"]["analytics"] == "false"
    assert cfg["core"]["check_update"] == "false"
    default = cfg["core"]["remote"]
    url = cfg[f"'remote \"{default}\"'"]["url"]
    # A local directory (no network, nothing to set up on a fresh clone), under ~ rather
    # than relative: DVC resolves a relative remote against the git tree for past
    # revisions, so `push --all-commits` and `dvc.api.read(rev=...)` would miss it.
    assert url.startswith("~/") and "://" not in url
    makefile = (REPO / "Makefile").read_text()
    assert re.search(r"^export DVC_NO_ANALYTICS\s*:?=\s*1", makefile, re.M)


def test_committed_lock_matches_the_committed_code_and_data(tmp_path):
    """In a fresh clone of the repository as committed (HEAD), `dvc status` finds no stage
    whose code, data or params differ from dvc.lock, and no metric or plot file differing
    from what dvc.lock records: the first `dvc repro` there rebuilds only what a fresh clone
    lacks (the cached outputs, not pushed here). `make dvc-lock` refreshes a stale lock."""
    clone = tmp_path / "clone"
    env = {**os.environ, "HOME": str(tmp_path), "DVC_NO_ANALYTICS": "1",
           "DVC_SITE_CACHE_DIR": str(tmp_path / "site")}  # fmt: skip
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, env=env)
    proc = subprocess.run(
        [DVC, "status", "--json"], cwd=clone, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    produced = {o for s in yaml.safe_load((clone / "dvc.lock").read_text())["stages"].values()
                for o in (x["path"] for x in s.get("outs", []))}  # fmt: skip
    stale = []
    for stage, changes in json.loads(proc.stdout).items():
        for change in changes:
            if change == "always changed":
                continue
            for kind, paths in change.items():
                for path, state in paths.items() if isinstance(paths, dict) else []:
                    if kind == "changed deps" and path in produced and state == "deleted":
                        continue  # another stage's output, not pulled in a fresh clone
                    if kind == "changed outs" and state == "not in cache":
                        continue
                    stale.append(f"{stage}: {kind}: {path} {state}")
    assert stale == [], "dvc.lock is stale (run `make dvc-lock` and commit): " + "; ".join(stale)


def test_params_yaml_survives_dvc_writing_it_back(tmp_path):
    """`dvc exp run -S` rewrites params.yaml through DVC's YAML dumper: the committed file
    is already in that layout, so an experiment changes only the values it sets."""
    from dvc.utils.hydra import apply_overrides

    copy = tmp_path / "params.yaml"
    copy.write_text((REPO / "params.yaml").read_text())
    apply_overrides(str(copy), ["embedding.batch_size=null"])  # the value it already has
    assert copy.read_text() == (REPO / "params.yaml").read_text()


def test_repro_builds_collection_and_snapshot(project: Project):
    assert project.repro() == STAGES
    repo = project.repo
    data = (repo / SNAPSHOT).read_bytes()
    assert md5(data) == project.lock_md5(SNAPSHOT)
    snap = json.loads(data)
    loaded = json.loads((repo / "data/work/load.json").read_text())
    ids = project.milvus_ids()
    assert ids == project.chunk_ids() == {r["id"] for r in snap["records"]}
    assert loaded["records"] == len(ids) == snap["count"] > 10
    assert len(snap["queries"]["articles"]) == 3
    best = snap["queries"]["yeast-starter"][0]
    assert best["source_id"] == "file:data/raw/transcripts/sourdough.txt"
    extract = json.loads((repo / "metrics/pipeline/extract.json").read_text())
    assert extract == {"documents": 7, "rejected": 1, "duplicates": 0}  # counts only
    plots = repo / "metrics/plots"
    assert json.loads((plots / "rejects_by_reason.json").read_text()) == [
        {"reason": "empty transcript", "rejects": 1}
    ]
    by_type = {r["source_type"]: r["chunks"] for r in read(plots / "chunks_by_type.json")}
    assert sum(by_type.values()) == len(ids) and set(by_type) == {"article", "transcript"}
    size = read(plots / "snapshot_size.json")
    assert size == [
        {"snapshot": "snapshot.json", "records": len(ids), "kilobytes": size[0]["kilobytes"]}
    ]
    assert "seconds" in read(repo / "data/work/runs/snapshot.json")  # timings: not metrics
    shown = json.loads(project.dvc("metrics", "show", "--json"))
    assert not any("seconds" in json.dumps(v) for v in shown.values())
    assert "snapshot size over revisions (KB)" in project.dvc("plots", "show", "--json")

    # the snapshot stage versioned what it wrote: producer, commit, params values, DVC address
    latest = project.lineage("latest")
    assert latest["sha256"] == hashlib.sha256(data).hexdigest()
    assert latest["version"] == "v1" and latest["records"] == len(ids)
    made = latest["produced_by"][-1]
    assert made["producer"] == {
        "kind": "dvc",
        "stage": "snapshot",
        "experiment": None,
        "baseline": None,
    }
    assert made["code_commit"] == project.git("rev-parse", "HEAD").strip()
    assert latest["params"]["chunking"]["chunk_size"] is None
    assert latest["params"]["snapshot"]["queries"][1]["top_k"] == 3
    assert latest["dvc"] == [
        {"md5": md5(data), "remote": latest["dvc"][0]["remote"], "path": SNAPSHOT}
    ]
    assert latest["dvc"][0]["remote"].endswith(f"files/md5/{md5(data)[:2]}/{md5(data)[2:]}")
    assert project.lineage(latest["sha256"][:9])["version"] == "v1"
    project.commit("built")


def test_noop_repro_changes_nothing(project: Project):
    repo = project.repo
    lock = (repo / "dvc.lock").read_bytes()
    outs = ["data/work/documents.jsonl", "data/work/chunks.jsonl", SNAPSHOT]
    mtimes = {p: (repo / p).stat().st_mtime_ns for p in outs}
    assert project.repro() == {"load"}  # the Milvus sync always runs; nothing else does
    assert (repo / "dvc.lock").read_bytes() == lock
    assert project.git("status", "--porcelain").strip() == ""  # metrics untouched too
    assert {p: (repo / p).stat().st_mtime_ns for p in outs} == mtimes


def test_ingest_and_snapshot_outside_dvc_make_the_same_version(
    project: Project, embedder, monkeypatch
):
    """The functions a Prefect flow or `corpusflow ingest` call build the collection DVC
    expects (the next repro has nothing to do) and write the very same snapshot bytes."""
    from milvus_lite.server_manager import server_manager_instance

    from corpusflow import pipeline
    from corpusflow.config import load_params
    from corpusflow.pipeline import Context

    repo = project.repo
    load = (repo / "data/work/load.json").read_bytes()
    shutil.rmtree(repo / "data/milvus.db")
    monkeypatch.chdir(repo)  # source ids are paths relative to the working directory
    ctx = Context(load_params("params.yaml"))
    ctx._embedder = embedder
    try:
        src = ctx.params.sources
        items = pipeline.extract(ctx.params, src.transcripts, src.articles, src.youtube)
        result = pipeline.ingest(ctx, items)
        res = pipeline.snapshot(ctx, str(project.root / "flow-snapshot.json"))
    finally:
        ctx.close()
        server_manager_instance.release_server(str(repo / "data/milvus.db"))
    assert result.added == len(project.chunk_ids())
    assert Path(res.path).read_bytes() == (repo / SNAPSHOT).read_bytes()
    assert project.repro() == {"load"}
    assert (repo / "data/work/load.json").read_bytes() == load
    assert project.git("status", "--porcelain").strip() == ""  # nothing to sync, no new metrics


def test_damaged_or_deleted_milvus_is_rebuilt(project: Project):
    repo = project.repo
    load = (repo / "data/work/load.json").read_bytes()
    expected = project.chunk_ids()
    project.delete_from_milvus(sorted(expected)[:3])  # diverged behind DVC's back
    assert len(project.milvus_ids()) == len(expected) - 3
    assert project.repro() == {"load"}
    assert project.milvus_ids() == expected
    assert (repo / "data/work/load.json").read_bytes() == load  # so snapshot did not rerun

    shutil.rmtree(repo / "data/milvus.db")  # gone entirely
    assert project.repro() == {"load"}
    assert project.milvus_ids() == expected
    assert (repo / "data/work/load.json").read_bytes() == load
    run = json.loads((repo / "data/work/runs/load.json").read_text())
    assert run["added"] == len(expected) and run["embedded"] == 0  # from the cache
    project.git("checkout", "--", "metrics/pipeline/load.json", "dvc.lock")


def test_snapshot_params_rerun_only_the_snapshot(project: Project):
    project.edit_params("top_k: 3", "top_k: 2")
    assert project.repro() == {"load", "snapshot"}
    snap = json.loads((project.repo / SNAPSHOT).read_bytes())
    assert len(snap["queries"]["yeast-starter"]) == 2
    project.commit("top2")


def test_chunking_params_rerun_chunk_and_after(project: Project):
    before = project.chunk_ids()
    project.edit_params("chunk_size: ", "chunk_size: 64")
    assert project.repro() == {"chunk", "embed", "load", "snapshot"}
    after = project.chunk_ids()
    assert len(after) > len(before)
    assert project.milvus_ids() == after  # stale chunks of the old size were deleted
    snap = json.loads((project.repo / SNAPSHOT).read_bytes())
    assert snap["count"] == len(after)
    project.commit("small-chunks")


def test_exp_run_is_a_version_naming_the_experiment(project: Project):
    """`dvc exp run -S` runs the same snapshot stage, so the same versioning step: a new
    version whose producer names the experiment; params.yaml keeps its layout."""
    repo = project.repo
    before = (repo / "params.yaml").read_text().splitlines()
    versions = len(project.lineage_all())
    project.dvc("exp", "run", "-n", "size48", "-S", "chunking.chunk_size=48")
    after = (repo / "params.yaml").read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert [b.split("#")[0].strip() for _, b in changed] == ["chunk_size: 48"]
    latest = project.lineage("latest")
    assert latest["sha256"] == hashlib.sha256((repo / SNAPSHOT).read_bytes()).hexdigest()
    made = latest["produced_by"][-1]["producer"]
    assert (made["kind"], made["stage"], made["experiment"]) == ("dvc", "snapshot", "size48")
    assert latest["params"]["chunking"]["chunk_size"] == 48
    assert latest["version"] == f"v{versions + 1}" == f"v{len(project.lineage_all())}"
    assert project.lineage(latest["sha256"][:8])["version"] == latest["version"]
    project.env["COLUMNS"] = "120"  # a common terminal width
    shown = project.dvc("exp", "show", "--no-pager", "--drop", ".*", "--keep", EXP_COLUMNS)
    del project.env["COLUMNS"]
    (project.root / "exp-show.txt").write_text(shown)
    assert "size48" in shown and "…" not in shown  # readable: no collapsed columns
    project.git("checkout", "--", ".")  # back to the committed state for the next tests
    project.dvc("checkout")


def test_push_pull_and_read_older_versions(project: Project):
    repo, root = project.repo, project.root
    never = root / "clone-not-pushed"
    project.git("clone", "-q", str(repo), str(never), cwd=root)
    out = project.run(CLI, "snapshot", "show", "--rev", "HEAD", cwd=never, check=False)
    assert out.count("\n") == 1 and "never pushed" in out and "dvc push" in out, out
    project.dvc("push", "--all-commits")
    info = snapshot_version_info(repo / SNAPSHOT)
    assert info["md5"] == project.lock_md5(SNAPSHOT)
    stored = Path(info["remote_url"])
    assert stored.is_relative_to(root / "home/.local/share/corpusflow/dvc-remote")  # default
    assert stored.read_bytes() == project.snapshots["small-chunks"]

    clone = root / "clone"
    project.git("clone", "-q", str(repo), str(clone), cwd=root)
    project.dvc("pull", cwd=clone)  # nothing configured in the clone
    assert (clone / SNAPSHOT).read_bytes() == project.snapshots["small-chunks"]

    old = project.revs["built"]
    assert read_snapshot(old, repo=str(clone)) == json.loads(project.snapshots["built"])
    shown = subprocess.run(
        [CLI, "versions", "show", "--rev", project.revs["top2"]],
        cwd=clone,
        env=project.env,
        capture_output=True,
        check=True,
    ).stdout
    assert shown == project.snapshots["top2"]
    assert len({project.snapshots[k] for k in ("built", "top2", "small-chunks")}) == 3


def test_rebuild_from_nothing_is_byte_identical(project: Project):
    repo = project.repo
    lock = (repo / "dvc.lock").read_text()
    recorded = project.lock_md5(SNAPSHOT, lock)
    # Milvus, the working outputs, the embedding cache and DVC's cache (else DVC would
    # check the outputs out instead of running): what a fresh clone has not got.
    for path in ("data/milvus.db", "data/work", "data/snapshots", ".dvc/cache"):
        shutil.rmtree(repo / path)
    for cache in repo.glob("data/embedding-cache.sqlite*"):
        cache.unlink()
    versions = len(project.lineage_all())
    assert project.repro() == STAGES
    data = (repo / SNAPSHOT).read_bytes()
    assert md5(data) == recorded
    assert len(project.lineage_all()) == versions  # the same bytes: no new version
    latest = project.lineage("latest")
    assert latest["sha256"] == hashlib.sha256(data).hexdigest() and len(latest["produced_by"]) >= 2
    before = project.snapshots["small-chunks"]
    assert hashlib.sha256(data).hexdigest() == hashlib.sha256(before).hexdigest()
    new = yaml.safe_load((repo / "dvc.lock").read_text())
    old = yaml.safe_load(lock)
    for name, stage in old["stages"].items():  # only the metrics (durations) may differ
        cached = [o for o in stage.get("outs", []) if not o["path"].startswith("metrics/")]
        assert cached == [
            o for o in new["stages"][name].get("outs", []) if not o["path"].startswith("metrics/")
        ]
    project.git("checkout", "--", ".")


def test_s3_remote_round_trip(project: Project):
    boto3 = pytest.importorskip("boto3")
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        creds = {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": str(project.root / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(project.root / "no-aws-credentials"),
        }
        project.env.update(creds)
        s3 = boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="corpusflow")
        project.dvc("remote", "add", "s3", "s3://corpusflow/dvc")
        project.dvc("remote", "modify", "s3", "endpointurl", endpoint)
        project.commit("s3-remote")
        project.dvc("push", "-r", "s3")
        md5_ = project.lock_md5(SNAPSHOT)
        key = f"dvc/files/md5/{md5_[:2]}/{md5_[2:]}"
        body = s3.get_object(Bucket="corpusflow", Key=key)["Body"].read()
        assert body == project.snapshots["small-chunks"]

        clone = project.root / "clone-s3"
        project.git("clone", "-q", str(project.repo), str(clone), cwd=project.root)
        project.dvc("pull", "-r", "s3", cwd=clone)
        assert (clone / SNAPSHOT).read_bytes() == body
        bare = project.root / "clone-s3-api"
        project.git("clone", "-q", str(project.repo), str(bare), cwd=project.root)
        with pytest.MonkeyPatch.context() as mp:
            for k, v in creds.items():
                mp.setenv(k, v)
            assert read_snapshot_bytes("HEAD", repo=str(bare), remote="s3") == body
    finally:
        server.stop()
