"""Hostile inputs at the source level (issue 14): each one costs its own record, never the run.

Source-level tests that pin the exact reasons and row numbers: a file name that is not
UTF-8, a named device, one bad byte in a CSV, timestamps that overflow. The whole run over
such a directory, through the CLI, is tests/e2e/test_reliability_sources_cli.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from corpusflow.models import Document, Reject, Skipped
from corpusflow.sources.articles import iter_articles
from corpusflow.sources.transcripts import iter_transcripts
from hostile_sources import BAD_NAME, VTT, rows


# ----------------------------------------------------------------------------------------
# the same defects, at the source, with exact reasons
# ----------------------------------------------------------------------------------------
def test_a_non_utf8_file_name_is_one_reject_and_the_rest_goes_on(tmp_path):
    (tmp_path / "a.vtt").write_text(VTT, encoding="utf-8")
    (tmp_path / os.fsdecode(BAD_NAME)).write_text(VTT, encoding="utf-8")
    (tmp_path / "z.vtt").write_text(VTT.replace("Rivers", "Glaciers"), encoding="utf-8")
    items = list(iter_transcripts([tmp_path]))
    docs = [i for i in items if isinstance(i, Document)]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert [Path(d.origin).name for d in docs] == ["a.vtt", "z.vtt"]
    assert len(rejects) == 1
    bad = rejects[0]
    # the reject itself is printable and storable: no lone surrogates left in it
    bad.source.encode("utf-8")
    bad.reason.encode("utf-8")
    assert bad.source == str(tmp_path / "caf\\xe9 notes.vtt")
    assert bad.reason == (
        "file name is not valid UTF-8 (byte 0xe9); rename the file with a UTF-8 name"
    )


def test_a_non_utf8_csv_name_is_one_reject(tmp_path):
    (tmp_path / os.fsdecode(b"caf\xe9.csv")).write_text("id,text\n1,hello\n", encoding="utf-8")
    (tmp_path / "ok.csv").write_text("id,text\n1,hello\n", encoding="utf-8")
    items = list(iter_articles([tmp_path]))
    assert [type(i).__name__ for i in items] == ["Reject", "Document"]
    assert items[0].reason.startswith("file name is not valid UTF-8")
    assert items[1].source_id == f"csv:{(tmp_path / 'ok.csv').resolve().as_posix()}:1"


def test_a_named_device_is_rejected_without_being_read(tmp_path):
    items = list(iter_transcripts(["/dev/zero"]))
    assert len(items) == 1 and isinstance(items[0], Reject)
    assert items[0].reason == "not a regular file (a character device); it is not read"


def test_one_bad_byte_deep_in_a_csv_rejects_only_its_row(tmp_path):
    path = tmp_path / "news.csv"
    path.write_bytes(rows(120, bad_row=100))
    assert path.stat().st_size > 1 << 16  # past the header check's first 64 KiB
    items = list(iter_articles([path], block_size=1 << 12))
    docs = [i for i in items if isinstance(i, Document)]
    rejects = [i for i in items if isinstance(i, Reject)]
    assert len(docs) == 119
    assert [d.source_id for d in docs] == [
        f"csv:{(tmp_path / 'news.csv').resolve().as_posix()}:{i}" for i in range(1, 121) if i != 100
    ]
    assert docs[-1].text.startswith("Article number 120 about rivers")
    assert len(rejects) == 1
    assert rejects[0].locator == "row 100"
    assert rejects[0].source_id == f"csv:{(tmp_path / 'news.csv').resolve().as_posix()}:100"
    assert rejects[0].reason == (
        "row 100: text is not valid UTF-8 (byte 0xe9 at offset 43 of the field; "
        "Latin-1/cp1252?); re-save the file as UTF-8"
    )


def test_a_bad_byte_in_an_early_row_rejects_only_that_row(tmp_path):
    path = tmp_path / "early.csv"
    path.write_bytes(b"id,title,text\n1,T1,fine\n2,Caf\xe9,also fine\n3,T3,good\n")
    items = list(iter_articles([path]))
    assert [type(i).__name__ for i in items] == ["Document", "Reject", "Document"]
    assert items[1].reason == (
        "row 2: title is not valid UTF-8 (byte 0xe9 at offset 3 of the field; "
        "Latin-1/cp1252?); re-save the file as UTF-8"
    )
    assert not [i for i in items if isinstance(i, Skipped)]


@pytest.mark.parametrize(
    "payload, reason",
    [
        (
            [{"text": "x", "start": 1.7e308, "duration": 1.7e308}],
            "item 1 end time is too large to store (start + duration overflows)",
        ),
        (
            [{"text": "x", "start": 0, "duration": 1e300}],
            "item 1 end time 1e+300 s is too large to store (at most 1e+12 s)",
        ),
        (
            {"text": "x", "segments": [{"start": 0, "end": 1e300, "text": "x"}]},
            "Whisper segment 1 end time 1e+300 s is too large to store (at most 1e+12 s)",
        ),
    ],
)
def test_overflowing_timestamps_are_rejected(tmp_path, payload, reason):
    path = tmp_path / "t.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    items = list(iter_transcripts([path]))
    assert len(items) == 1 and isinstance(items[0], Reject), items
    assert items[0].reason == reason


def test_overflowing_times_from_live_youtube_are_rejected(monkeypatch):
    """The live fetch parses YouTube's XML through youtube-transcript-api (replayed, offline)."""
    import test_sources as ts
    from corpusflow.sources.youtube import fetch_youtube

    monkeypatch.setattr(
        ts,
        "TIMEDTEXT",
        ts.TIMEDTEXT.replace('start="2.56" dur="1.94"', 'start="1e308" dur="1e308"'),
    )
    api, _ = ts.replay_api()
    (reject,) = fetch_youtube([ts.VIDEO], api=api)
    assert isinstance(reject, Reject), reject
    assert reject.reason == "snippet 2 start time 1e+308 s is too large to store (at most 1e+12 s)"
    assert reject.source_id == f"youtube:{ts.VIDEO}"
