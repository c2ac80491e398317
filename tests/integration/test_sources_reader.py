"""Transcripts parsed ahead in worker processes (sources/reader.py) against the run's own
process: the same items in the same order, the same `skip` calls, whatever the workers do.

The corpus is the real-world fixtures twice (yt-dlp names with sidecars, a Whisper format
group, a GB2312 file and a cue without timing that are rejected, READMEs and CSVs that are
skipped, the same videos again in a second folder): more than `reader.MIN_FILES` files.
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from corpusflow.models import Document, Reject, Skipped
from corpusflow.sources import reader
from corpusflow.sources.transcripts import iter_transcripts

REAL = Path(__file__).resolve().parent.parent / "fixtures" / "real"


@pytest.fixture
def corpus(tmp_path) -> Path:
    for copy in ("a", "b"):
        for part in ("subtitles", "ytdlp", "yta", "whisper"):
            shutil.copytree(REAL / part, tmp_path / "in" / copy / part)
    found = [p for p in (tmp_path / "in").rglob("*") if p.is_file()]
    assert len(found) >= reader.MIN_FILES
    return tmp_path / "in"


def _every_third(calls: list[str]):
    """A skip callback answering for every third file it is asked about (like Unchanged)."""

    def skip(path: Path, source_type: str):
        calls.append(path.name)
        if len(calls) % 3 == 0:
            return [Skipped(str(path), source_type, "unchanged", duplicate=False)]
        return None

    return skip


def test_workers_give_the_same_items_in_the_same_order(corpus):
    here = list(iter_transcripts([corpus], workers=0))
    ahead = list(iter_transcripts([corpus], workers=2))
    assert ahead == here
    kinds = {type(i) for i in here}
    assert kinds == {Document, Reject, Skipped}  # the corpus has all three
    assert sum(isinstance(i, Document) for i in here) >= 10


def test_a_skip_callback_is_asked_in_the_same_order_and_its_answers_win(corpus):
    calls_here: list[str] = []
    calls_ahead: list[str] = []
    here = list(iter_transcripts([corpus], skip=_every_third(calls_here), workers=0))
    ahead = list(iter_transcripts([corpus], skip=_every_third(calls_ahead), workers=2))
    assert calls_ahead == calls_here  # never asked early, never twice
    assert ahead == here
    assert any(isinstance(i, Skipped) and i.reason == "unchanged" for i in ahead)


def _workers_of(parent: int) -> list[int]:
    """Parse workers (`python -m corpusflow.sources.reader`) whose parent is `parent`."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[1]) == parent and b"corpusflow.sources.reader" in cmdline:
            pids.append(int(entry.name))
    return pids


def test_a_worker_killed_mid_run_costs_no_item(corpus):
    """A worker that dies (out of memory, killed) leaves its files to be read here."""
    here = list(iter_transcripts([corpus], workers=0))
    got, killed = [], []
    for item in iter_transcripts([corpus], workers=2):
        got.append(item)
        if len(got) == 5:
            killed = _workers_of(os.getpid())
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
    assert killed  # the workers were running
    assert got == here


CHILD = """
import os, signal, sys
from pathlib import Path
from corpusflow.sources.transcripts import iter_transcripts
items = iter_transcripts([Path(sys.argv[1])], workers=2)
for n, item in enumerate(items):
    if n == 3:
        print("started", flush=True)
        sys.stdin.readline()  # the test has seen the workers
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_workers_end_when_the_run_is_killed(corpus):
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(corpus)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout.readline().strip() == "started"
    workers = [os.pidfd_open(pid) for pid in _workers_of(child.pid)]
    assert workers
    child.stdin.write("go\n")
    child.stdin.flush()
    assert child.wait(timeout=30) == -signal.SIGKILL
    # a pidfd turns readable when its process ends: wait on that, not on a clock
    running = set(workers)
    while running:
        ended, _, _ = select.select(list(running), [], [], 30)
        assert ended, "parse workers outlived the killed run"
        running.difference_update(ended)
    for fd in workers:
        os.close(fd)
