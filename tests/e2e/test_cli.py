"""The core path end to end through the real `corpusflow` command on the sample corpus."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import CLI, REPO, SAMPLE
from corpusflow.config import load_params
from corpusflow.pipeline import Context, search

ART = "csv:data/raw/articles/articles.csv:"  # ids are relative to the project root
# One paraphrase per sample document: its meaning, not its distinctive words.
PARAPHRASES = {
    "youtube:Sd0ugh8read": "how do I keep a wild yeast starter alive",
    "youtube:V0lcan0Erup": "why does a burning mountain sometimes explode violently instead of "
    "oozing gently",
    "file:data/raw/transcripts/chess-openings-for-beginners.json": "which first moves should a "
    "novice learn in the classic two-player strategy board game",
    "file:data/raw/transcripts/beekeeping-through-the-year.json": "caring for buzzing pollinators "
    "kept in a garden box from spring until the cold months",
    "file:data/raw/transcripts/marathon-training.txt": "how should a first-timer prepare for a 42 "
    "kilometre road race",
    ART + "reef-001": "why are tropical underwater ecosystems losing their colour as seas "
    "get hotter",
    ART + "qc-002": "how can machines exploiting the odd physics of tiny particles solve "
    "some problems faster",
    ART + "castle-003": "how did lords in the middle ages protect their fortresses from attackers",
    "Composting at home, step by step": "turning food leftovers and fallen foliage into "
    "fertiliser for the vegetable patch",
    ART + "jazz-005": "how did improvised African American music evolve from the early "
    "1900s to the postwar era",
    ART + "print-006": "how did mechanically reproducing books change reading and religion "
    "in fifteenth-century Europe",
}


def cli(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def sample_inputs() -> int:
    transcripts = [
        p
        for p in (SAMPLE / "transcripts").rglob("*")
        if p.is_file() and not p.name.endswith((".info.json", ".meta.json"))
    ]
    with open(SAMPLE / "articles" / "articles.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return len(transcripts) + len(rows)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    """A copy of the repository's params.yaml and data/raw, ingested once through the CLI."""
    root = tmp_path_factory.mktemp("work")
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    shutil.copytree(SAMPLE, root / "data" / "raw")
    result = json.loads(cli(root, "ingest", "--json").stdout)
    root.joinpath("first.json").write_text(json.dumps(result))
    return root


def first_result(workdir: Path) -> dict:
    return json.loads((workdir / "first.json").read_text())


def test_ingest_reports_every_sample_document(workdir):
    r = first_result(workdir)
    assert r["documents"] == sample_inputs() == 11
    assert r["rejected"] == 0 and r["duplicates"] == 0
    assert r["chunks"] == r["embedded"] == r["upserted"] == r["added"] > r["documents"]
    assert r["collection"] == "corpusflow"
    for key in ("documents", "chunks", "embedded", "upserted", "skipped", "deleted", "rejected"):
        assert isinstance(r[key], int)


def test_paraphrase_finds_each_document_first(workdir, embedder):
    os.chdir(workdir)
    ctx = Context(load_params())
    ctx._embedder = embedder
    try:
        for expected, query in PARAPHRASES.items():
            top = search(ctx, query, k=1)[0]
            assert expected in (top["source_id"], top["title"]), (query, top["title"])
    finally:
        ctx.close()
        os.chdir(REPO)


def test_search_json_has_the_fields_and_deep_links(workdir):
    hits = json.loads(cli(workdir, "search", PARAPHRASES["youtube:V0lcan0Erup"], "--json").stdout)
    assert len(hits) == 5
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
    top = hits[0]
    for key in ("id", "score", "source_id", "source_type", "title", "author", "url", "chunk_index"):
        assert key in top
    assert top["source_type"] == "transcript" and top["source_id"] == "youtube:V0lcan0Erup"
    assert top["start_seconds"] is not None and top["end_seconds"] >= top["start_seconds"]
    assert top["url"].endswith(f"&t={int(top['start_seconds'])}s")
    assert "watch?v=V0lcan0Erup" in top["url"]


def test_second_ingest_embeds_and_upserts_nothing(workdir):
    before = json.loads(cli(workdir, "stats", "--json").stdout)["records"]
    again = json.loads(cli(workdir, "ingest", "--json").stdout)
    assert (again["embedded"], again["upserted"], again["added"], again["deleted"]) == (0, 0, 0, 0)
    assert again["skipped"] == first_result(workdir)["chunks"]
    assert json.loads(cli(workdir, "stats", "--json").stdout)["records"] == before


def test_two_snapshots_are_byte_identical(workdir):
    a = json.loads(cli(workdir, "snapshot", "--out", "a.json", "--json").stdout)
    b = json.loads(cli(workdir, "snapshot", "--out", "b.json", "--json", "--no-version").stdout)
    assert a["comet"]["ledger_version"] == "v1" and a["comet"]["mode"] == "offline"
    assert a["dvc"]["md5"] and "comet" not in b
    assert a["sha256"] == b["sha256"] and a["records"] == first_result(workdir)["chunks"]
    assert (workdir / "a.json").read_bytes() == (workdir / "b.json").read_bytes()
    data = json.loads((workdir / "a.json").read_text())
    ids = [r["id"] for r in data["records"]]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all("vector" not in r and "run_id" not in r for r in data["records"])
    assert {"articles", "yeast-starter"} <= set(data["queries"])
    assert data["queries"]["yeast-starter"][0]["source_id"] == "youtube:Sd0ugh8read"


def test_rejects_are_reported_and_the_rest_goes_on(tmp_path):
    bad = tmp_path / "in"
    bad.mkdir()
    (bad / "good.txt").write_text("A perfectly fine transcript about gardening tomatoes.")
    (bad / "empty.srt").write_text("")
    (bad / "notes.docx").write_bytes(b"PK\x03\x04binary")
    (bad / "latin1.vtt").write_bytes(
        "WEBVTT\n\n00:00.000 --> 00:01.000\ncaf\xe9\n".encode("latin-1")
    )
    (tmp_path / "notext.csv").write_text("id,title\n1,hello\n")
    (tmp_path / "arts.csv").write_text('id,title,text\n1,ok,"fine text here"\n2,empty,""\n')
    out = cli(
        tmp_path,
        "ingest",
        "--transcripts",
        "in",
        "--articles",
        "notext.csv",
        "--articles",
        "arts.csv",
        "--json",
    )
    result = json.loads(out.stdout)
    assert result["documents"] == 2 and result["rejected"] == 4
    # a .docx among transcripts is not an input: skipped and listed, not rejected
    assert result["skipped_inputs"] == 1
    assert result["skipped_files"] == [
        {
            "source": "in/notes.docx",
            "reason": "not a transcript type (.docx); read: .vtt, .srt, .json, .txt",
        }
    ]
    lines = [line for line in out.stderr.splitlines() if line.startswith("rejected ")]
    assert len(lines) == 4 and "Traceback" not in out.stderr
    rejects = [json.loads(line) for line in (tmp_path / "data" / "rejects.jsonl").open()]
    assert len(rejects) == 4 and all(r["reason"] and r["run_id"] for r in rejects)
    reasons = " | ".join(r["reason"] for r in rejects)
    assert "empty" in reasons and "UTF-8" in reasons
    assert "text column" in reasons
    strict = cli(tmp_path, "ingest", "--transcripts", "in", "--strict", check=False)
    assert strict.returncode == 1 and "rejected 2" in strict.stdout


def test_user_errors_are_one_line_without_traceback(tmp_path):
    (tmp_path / "params.yaml").write_text("chunking:\n  chunk_sise: 10\n")
    out = cli(tmp_path, "stats", check=False)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and out.stderr.startswith("error: ")
    assert "chunk_sise" in out.stderr
    empty = tmp_path / "other"
    empty.mkdir()
    out = cli(empty, "search", "anything", check=False)
    assert out.returncode == 2 and "run `corpusflow ingest` first" in out.stderr
    assert "Traceback" not in out.stderr
