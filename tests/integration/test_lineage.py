"""The lineage ledger and `corpusflow lineage`: which snapshot came from what, who used it.

The end-to-end test builds a git repository with two snapshot versions (real Milvus Lite,
real MiniLM, real comet_ml offline) and one evaluation run, then checks the JSON graph.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
os.environ.setdefault("COMET_DISABLE_ANNOUNCEMENT", "true")

from typer.testing import CliRunner  # noqa: E402

from corpusflow.evaluation import evaluate  # noqa: E402
from corpusflow.models import Document  # noqa: E402
from corpusflow.pipeline import ingest, snapshot  # noqa: E402
from corpusflow.versioning import comet as cv  # noqa: E402
from corpusflow.versioning.step import record_version  # noqa: E402

TEXTS = {
    "file:bread": "Feed the sourdough starter flour and water every day so the wild yeast "
    "stays alive; a lively starter doubles within hours.",
    "file:kayak": "Paddling a kayak through river rapids takes a strong brace stroke, a "
    "helmet and a spray skirt.",
}
QUERIES = [
    {"query": "keeping a wild yeast starter alive", "expected_source": "file:bread"},
    {"query": "whitewater paddling safety gear", "expected_source": "file:kayak"},
]


def documents(edited: bool = False) -> list[Document]:
    out = []
    for sid, text in TEXTS.items():
        if edited and sid == "file:kayak":
            text += " Always scout a rapid from the bank first."
        out.append(Document(source_id=sid, source_type="article", text=text, title=sid))
    return out


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A git repository as the working directory, with Comet offline and unconfigured."""
    for key in list(os.environ):
        if key.startswith("COMET_") and key not in cv.COMET_ENV_DEFAULTS:
            monkeypatch.delenv(key)
    (tmp_path / "comet.config").write_text("[comet]\n")
    monkeypatch.setenv("COMET_CONFIG", str(tmp_path / "comet.config"))
    monkeypatch.delenv("PREFECT__FLOW_RUN_ID", raising=False)
    monkeypatch.chdir(tmp_path)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], check=True)
    Path("README").write_text("corpus\n")
    subprocess.run([*git, "add", "README"], check=True)
    subprocess.run([*git, "-c", "commit.gpgsign=false", "commit", "-qm", "init"], check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True)
    return tmp_path, head.stdout.strip()


def lineage_cli(*args: str) -> tuple[int, str]:
    from corpusflow.cli import app

    result = CliRunner().invoke(app, ["lineage", *args])
    return result.exit_code, result.output


def test_lineage_graph_two_versions_and_an_evaluation(make_ctx, repo):
    root, commit = repo
    # default comet settings: ledger at lineage/ledger.jsonl, archives under data/comet
    ctx = make_ctx(root, evaluation={"queries": QUERIES, "k": 2})
    docs1, docs2 = documents(), documents(edited=True)
    r1 = ingest(ctx, docs1)
    s1 = snapshot(ctx)
    m1 = json.loads(Path(s1.manifest).read_text())["run_id"]  # the manifest is overwritten
    o1 = record_version(
        ctx.params, Path(s1.path), result=r1, dvc={"md5": "md5-one", "remote": "file:///r/one"}
    )
    r2 = ingest(ctx, docs2)
    s2 = snapshot(ctx)
    m2 = json.loads(Path(s2.manifest).read_text())["run_id"]
    o2 = record_version(
        ctx.params, Path(s2.path), result=r2, dvc={"md5": "md5-two", "remote": "file:///r/two"}
    )
    ev = evaluate(ctx, "v2")
    assert (o1["ledger_version"], o2["ledger_version"]) == ("v1", "v2")
    assert ev.snapshot["version"] == "v2" and ev.hit_rate == 1.0

    code, out = lineage_cli("--json")
    assert code == 0, out
    doc = json.loads(out)
    assert doc["ledger"] == "lineage/ledger.jsonl"
    v1, v2 = doc["versions"]
    assert (v1["version"], v2["version"]) == ("v1", "v2")
    assert (v1["sha256"], v2["sha256"]) == (s1.sha256, s2.sha256)
    assert v1["sources"] == {d.source_id: d.content_hash for d in docs1}
    assert v2["sources"] == {d.source_id: d.content_hash for d in docs2}
    assert v1["sources"]["file:kayak"] != v2["sources"]["file:kayak"]
    assert v1["sources"]["file:bread"] == v2["sources"]["file:bread"]
    for v, r, snap, m, o, md5 in (
        (v1, r1, s1, m1, o1, "md5-one"),
        (v2, r2, s2, m2, o2, "md5-two"),
    ):
        assert v["params_hash"] == ctx.params.digest()
        assert v["params"]["milvus"]["collection"] == "corpusflow"
        assert v["model"] == "sentence-transformers/all-MiniLM-L6-v2"
        assert v["code_commit"] == commit
        assert v["records"] == snap.records == 2
        assert v["collection"] == "corpusflow" and v["physical_collection"] == ctx.target
        (p,) = v["produced_by"]
        assert p["ingest_run_id"] == r.run_id and p["snapshot_run_id"] == m
        assert p["comet_experiment"] == o["experiment_key"] and p["comet_mode"] == "offline"
        assert v["dvc"] == [{"md5": md5, "remote": f"file:///r/{md5.split('-')[1]}"}]
        assert v["comet"] == {
            "artifact": "milvus-query-results",
            "versions": [],
            "pending": [o["pending_id"]],
        }
    assert v1["aliases"] == [] and v2["aliases"] == ["latest"]
    assert v1["consumers"] == []
    (consumer,) = v2["consumers"]
    assert consumer["kind"] == "evaluation" and consumer["run_id"] == ev.run_id
    assert consumer["experiment_key"] == ev.experiment_key and consumer["mode"] == "offline"
    assert consumer["metrics"] == {"hit_rate@2": 1.0, "mrr@2": 1.0, "queries": 2}
    assert consumer["reference"] == "v2" and consumer["pending_id"] == ev.pending_id

    code, out = lineage_cli("v1", "--json")
    assert code == 0 and json.loads(out)["version"]["sha256"] == s1.sha256

    code, text = lineage_cli(s2.sha256[:10])
    assert code == 0
    assert text.startswith(f"v2 [latest]  sha256 {s2.sha256[:12]}")
    assert f"ingest {r2.run_id}" in text and "md5-two" in text
    assert "file:kayak  " + docs2[1].content_hash[:12] in text
    assert f"evaluation {ev.run_id}" in text and "hit_rate@2=1.0" in text
    # the params values, not only their hash
    size = ctx.params.chunking.chunk_size
    assert f"params chunking: chunk_overlap=null  chunk_size={json.dumps(size)}" in text
    assert 'model="sentence-transformers/all-MiniLM-L6-v2"' in text

    code, text = lineage_cli("v9")
    assert code == 2 and "no snapshot version v9" in text
