"""Hostile inputs at the source level (issue 14): each one costs its own record, never the run.

One real CLI ingest runs over a data directory holding a file whose name is not UTF-8, a
FIFO, a CSV with one bad byte deep inside, and a JSON transcript whose timestamps overflow
to infinity, next to good files. The run must finish (a FIFO used to hang it: the CLI gets a
timeout), account every input, and store only finite numbers. Targeted source-level tests
pin the exact reasons and row numbers.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
from pathlib import Path

import pytest

from conftest import CLI
from hostile_sources import VTT, build


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hostile")
    build(root)
    args = ["ingest", "--transcripts", "transcripts", "--articles", "articles", "--json"]
    try:
        out = subprocess.run([CLI, *args], cwd=root, capture_output=True, text=True, timeout=300)
    except subprocess.TimeoutExpired:
        pytest.fail("the ingest hung (a FIFO in the data directory was opened?)")
    return {"root": root, "out": out}


def test_the_run_finishes_and_accounts_every_hostile_input(run):
    out = run["out"]
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    result = json.loads(out.stdout)
    # transcripts: good.vtt stored; bad name, FIFO and overflow rejected
    # articles: 119 of 120 rows stored, row 100 rejected
    assert result["by_type"]["transcript"]["documents"] == 1
    assert result["by_type"]["transcript"]["rejected"] == 3
    assert result["by_type"]["article"]["documents"] == 119
    assert result["by_type"]["article"]["rejected"] == 1
    rejects = [
        json.loads(line)
        for line in (run["root"] / "data" / "rejects.jsonl").read_text("utf-8").splitlines()
    ]
    assert len(rejects) == 4
    by_name = {Path(r["source"]).name: r for r in rejects}
    assert "not valid UTF-8" in by_name["caf\\xe9 notes.vtt"]["reason"]
    assert "FIFO" in by_name["pipe.vtt"]["reason"]
    assert "too large" in by_name["overflow.json"]["reason"]
    assert by_name["news.csv"]["locator"] == "row 100"
    # each reject is one line on stderr
    lines = [line for line in out.stderr.splitlines() if line.startswith("rejected ")]
    assert len(lines) == 4, out.stderr


def test_nothing_non_finite_reaches_milvus_or_the_snapshot(run):
    root = run["root"]
    out = subprocess.run([CLI, "snapshot"], cwd=root, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    snapshots = sorted((root / "data" / "snapshots").glob("*.json"))
    assert snapshots

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-finite number {constant} in the snapshot")

    for path in snapshots:
        data = json.loads(path.read_text("utf-8"), parse_constant=refuse)
        records = data["records"] if isinstance(data, dict) and "records" in data else []
        for rec in records:
            for key in ("start_seconds", "end_seconds"):
                value = rec.get(key)
                assert value is None or math.isfinite(value)


def test_a_fifo_is_rejected_without_being_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe.vtt")
    os.mkfifo(tmp_path / "pipe.csv")
    (tmp_path / "a.vtt").write_text(VTT, encoding="utf-8")
    # a writer would unblock an open() for reading: there is none, so opening would hang;
    # the generator is consumed in a child process with a deadline
    code = (
        "import sys; from corpusflow.sources.transcripts import iter_transcripts;"
        "from corpusflow.sources.articles import iter_articles;"
        "items = list(iter_transcripts([sys.argv[1]])) + list(iter_articles([sys.argv[1]]));"
        "print('\\n'.join(f'{type(i).__name__}|{i.origin if hasattr(i, \"segments\") else i.source}"
        '|{getattr(i, "reason", "")}\' for i in items))'
    )
    py = str(Path(CLI).with_name("python"))
    try:
        out = subprocess.run(
            [py, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("reading a directory with a FIFO hung")
    assert out.returncode == 0, out.stderr
    rows = [line.split("|") for line in out.stdout.splitlines()]
    fifo = "not a regular file (a FIFO); it is not read"
    assert rows == [
        ["Document", str(tmp_path / "a.vtt"), ""],
        # among transcripts a .csv is not an input at all: skipped by name, never opened
        [
            "Skipped",
            str(tmp_path / "pipe.csv"),
            "a CSV, not a transcript: give it as an articles source to ingest it",
        ],
        ["Reject", str(tmp_path / "pipe.vtt"), fifo],
        ["Reject", str(tmp_path / "pipe.csv"), fifo],
    ]
