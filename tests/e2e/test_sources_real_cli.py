"""Real-world transcripts and CSVs through the `corpusflow` CLI (issue 16): a download folder
passes --strict, duplicates are written beside the rejects, the summary names them.

The fixtures are under tests/fixtures/real/ (described in tests/unit/test_sources_real.py,
which reads them through the sources directly).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import CLI
from corpusflow.models import Document, Reject, Skipped
from corpusflow.sources.articles import iter_articles
from corpusflow.sources.transcripts import iter_transcripts

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
VIDEO = "Qx7_kP2mZ9a"


def one(path: Path) -> Document | Reject | Skipped:
    items = list(iter_transcripts([path]))
    assert len(items) == 1, items
    return items[0]


# ----------------------------------------------------------------------------------------
# through the CLI: a real download folder passes --strict; skips and duplicates are listed
# ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def folder_run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("real")
    shutil.copytree(REAL / "ytdlp", root / "downloads")
    shutil.copytree(REAL / "whisper", root / "downloads" / "whisper")
    (root / "articles").mkdir()
    for name in ("ag_news_sample.csv", "custom_layout.csv"):
        shutil.copy(REAL / "csv" / name, root / "articles" / name)
    (root / "params.yaml").write_text(
        "sources:\n  columns_by_file:\n    custom_layout.csv: {title: essay_title, text: "
        "essay_body}\n",
        encoding="utf-8",
    )
    args = ["ingest", "--transcripts", "downloads", "--articles", "articles"]
    out = subprocess.run(
        [CLI, *args, "--strict", "--json"], cwd=root, capture_output=True, text=True
    )
    return {"root": root, "out": out}


def test_a_download_folder_passes_strict_and_lists_what_it_skipped(folder_run):
    out = folder_run["out"]
    assert out.returncode == 0, out.stderr
    r = json.loads(out.stdout)
    assert r["rejected"] == 0
    assert r["by_type"]["transcript"] == {
        "inputs": 12,
        "documents": 3,  # the yt-dlp video, the youtube-dl video, the Whisper transcript
        "unchanged": 0,
        "duplicates": 0,
        "rejected": 0,
        "skipped": 9,
    }
    assert r["by_type"]["article"] == {
        "inputs": 5,
        "documents": 4,
        "unchanged": 0,
        "duplicates": 1,
        "rejected": 0,
        "skipped": 0,
    }
    assert r["skipped_inputs"] == 9
    assert sorted(f["source"] for f in r["skipped_files"]) == [
        "downloads/README.md",
        f"downloads/Rivers of Ice [{VIDEO}].description",
        f"downloads/Rivers of Ice [{VIDEO}].webp",
        "downloads/links.csv",
        "downloads/notes.txt",
        "downloads/whisper/lecture.srt",
        "downloads/whisper/lecture.tsv",
        "downloads/whisper/lecture.txt",
        "downloads/whisper/lecture.vtt",
    ]
    assert "not inputs" not in out.stdout  # --json prints the JSON only


def test_duplicates_are_written_beside_the_rejects_with_their_origin(folder_run):
    root, r = folder_run["root"], json.loads(folder_run["out"].stdout)
    assert r["duplicates_file"] == "data/duplicates.jsonl"
    lines = (root / "data" / "duplicates.jsonl").read_text("utf-8").splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    first = next(iter_articles([REAL / "csv" / "ag_news_sample.csv"]))
    key = first.source_id.rpartition(":")[2]  # the run's copy: its path relative to its root
    assert {k: entry[k] for k in ("source", "locator", "reason", "source_id", "run_id")} == {
        "source": "articles/ag_news_sample.csv",
        "locator": "row 4",
        "reason": "duplicate of row 1",
        "source_id": f"csv:articles/ag_news_sample.csv:{key}",
        "run_id": r["run_id"],
    }
    assert not (root / "data" / "rejects.jsonl").exists()  # nothing was rejected


def test_the_summary_names_the_skipped_count_and_the_duplicates_file(folder_run):
    root = folder_run["root"]
    out = subprocess.run(
        [CLI, "ingest", "--transcripts", "downloads", "--articles", "articles", "--strict"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert "  not inputs (skipped, listed with --json): 9 files" in out.stdout
    assert "  duplicates: data/duplicates.jsonl" in out.stdout
    assert out.stderr.count("rejected ") == 0
