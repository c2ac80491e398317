"""The hostile inputs of tests/unit/test_reliability_sources.py (each at the source) and
tests/e2e/test_reliability_sources_cli.py (all of them in one CLI run)."""

from __future__ import annotations

import json
import os
from pathlib import Path

VTT = "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nRivers carve valleys.\n"
BAD_NAME = b"caf\xe9 notes.vtt"  # Latin-1 "café": not decodable as UTF-8
OVERFLOW = json.dumps([{"text": "far future", "start": 1.7e308, "duration": 1.7e308}])


def rows(n: int, bad_row: int) -> bytes:
    """A CSV of `n` articles; row `bad_row` holds one Latin-1 byte, deep past the first 64 KiB."""
    lines = [b"id,title,text"]
    for i in range(1, n + 1):
        body = f"Article number {i} about rivers and valleys. ".encode() * 20
        if i == bad_row:
            body = body[:40] + b"caf\xe9 " + body[40:]
        lines.append(f"{i},Title {i},".encode() + b'"' + body + b'"')
    return b"\n".join(lines) + b"\n"


def build(root: Path) -> None:
    tr = root / "transcripts"
    tr.mkdir(parents=True)
    (tr / "good.vtt").write_text(VTT, encoding="utf-8")
    (tr / os.fsdecode(BAD_NAME)).write_text(VTT.replace("Rivers", "Cafes"), encoding="utf-8")
    os.mkfifo(tr / "pipe.vtt")
    (tr / "overflow.json").write_text(OVERFLOW, encoding="utf-8")
    ar = root / "articles"
    ar.mkdir()
    (ar / "news.csv").write_bytes(rows(120, bad_row=100))
