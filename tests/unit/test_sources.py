"""Sources: transcript formats, sidecars, CSV streaming, live YouTube (replayed, no network)."""

from __future__ import annotations

import codecs
import json
import os
from pathlib import Path

import pytest
import requests
from requests.adapters import BaseAdapter
from youtube_transcript_api import YouTubeTranscriptApi

from corpusflow.config import Columns
from corpusflow.ids import sha256_text
from corpusflow.models import Document, Reject, Segment, Skipped
from corpusflow.sources import articles as articles_mod
from corpusflow.sources.articles import iter_articles
from corpusflow.sources.transcripts import iter_transcripts
from corpusflow.sources.youtube import fetch_youtube, video_id_from

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "raw"


def one(paths) -> Document | Reject | Skipped:
    items = list(iter_transcripts(paths))
    assert len(items) == 1, items
    return items[0]


def write(path: Path, content: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


# A YouTube auto-caption file as `yt-dlp --write-auto-subs` leaves it: every cue shows the
# previous line again above the new one (which carries word timings), and 10 ms cues in
# between repeat the finished line alone.
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sources"
YT_AUTO_VTT = (FIXTURES / "Feeding Sourdough [abcDEF12345].en.vtt").read_text(encoding="utf-8")


# ----------------------------------------------------------------------------------------
# WebVTT
# ----------------------------------------------------------------------------------------
def test_youtube_rolling_autocaptions_read_each_line_once(tmp_path):
    path = write(tmp_path / "Feeding Sourdough [abcDEF12345].en.vtt", YT_AUTO_VTT)
    doc = one([path])
    assert isinstance(doc, Document)
    assert doc.text == (
        "so today we're going to feed the starter with rye and then let it double >> it smells sour"
    )
    for phrase in ("so today", "feed the starter", "with rye", "let it double", "smells sour"):
        assert doc.text.count(phrase) == 1
    assert "<" not in doc.text.replace(">>", "") and "&#39;" not in doc.text
    # the 10 ms transition cues are gone; each new line keeps its own cue's times
    assert doc.segments == (
        Segment(0.0, 2.31, "so today we're going to"),
        Segment(2.32, 4.87, "feed the starter with rye"),
        Segment(4.88, 7.15, "and then let it double"),
        Segment(7.16, 9.4, ">> it smells sour"),
    )
    # yt-dlp name without sidecar: id and title from the name
    assert doc.source_id == "youtube:abcDEF12345"
    assert doc.title == "Feeding Sourdough"
    assert doc.url == "https://www.youtube.com/watch?v=abcDEF12345"
    assert doc.source_type == "transcript" and doc.origin == str(path)


def test_plain_vtt_with_bom_notes_styles_voices_and_multiline_cues(tmp_path):
    vtt = (
        "\ufeffWEBVTT - lecture\n\nSTYLE\n::cue { color: yellow }\n\nNOTE recorded live\n\n"
        "intro\n00:01.000 --> 00:04.500 line:90%\n<v Ada>Rivers carve</v>\n"
        "<b>valleys</b> &amp; canyons.\n\n"
        "00:00:05.250 --> 00:00:08.000\nOver millions of years.\n"
    )
    doc = one([write(tmp_path / "geology.vtt", vtt)])
    assert isinstance(doc, Document)
    assert doc.text == "Rivers carve valleys & canyons. Over millions of years."
    assert doc.segments == (
        Segment(1.0, 4.5, "Rivers carve valleys & canyons."),
        Segment(5.25, 8.0, "Over millions of years."),
    )
    assert doc.title == "geology" and doc.source_id.startswith("file:")


def test_vtt_reversed_missing_header_and_broken_cue_are_rejected(tmp_path):
    reversed_ = write(
        tmp_path / "a.vtt",
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nok\n\n00:00:05.000 --> 00:00:03.000\nbackwards\n",
    )
    no_header = write(tmp_path / "b.vtt", "00:00:01.000 --> 00:00:02.000\nno header\n")
    broken = write(tmp_path / "c.vtt", "WEBVTT\n\n00:00:01.000 --> 00:0x:02\nbroken time\n")
    got = {Path(r.source).name: r for r in iter_transcripts([reversed_, no_header, broken])}
    assert all(isinstance(r, Reject) for r in got.values())
    assert got["a.vtt"].reason == (
        "WebVTT cue 2 has end before start (00:00:05.000 --> 00:00:03.000)"
    )
    assert "WEBVTT" in got["b.vtt"].reason
    assert got["c.vtt"].reason.startswith("1 WebVTT cue(s) could not be parsed")


# ----------------------------------------------------------------------------------------
# SRT
# ----------------------------------------------------------------------------------------
SRT_BODY = (
    "1\r\n00:00:01,000 --> 00:00:03,500\r\n<i>Magma rises</i> through\r\nthe crust.\r\n\r\n"
    '2\r\n00:00:03,000 --> 00:00:04,250\r\n{\\an8}<font color="#ff0">[rumbling]</font>\r\n\r\n'
    "3\r\n00:00:00,200 --> 00:00:00,900\r\n<b>Intro</b>\r\n\r\n"
)


def test_srt_with_bom_crlf_tags_and_overlaps(tmp_path):
    doc = one([write(tmp_path / "volcano.srt", codecs.BOM_UTF8 + SRT_BODY.encode())])
    assert isinstance(doc, Document)
    # overlapping cues are kept and sorted by start; tags and CRs are gone
    assert doc.segments == (
        Segment(0.2, 0.9, "Intro"),
        Segment(1.0, 3.5, "Magma rises through the crust."),
        Segment(3.0, 4.25, "[rumbling]"),
    )
    assert doc.text == "Intro Magma rises through the crust. [rumbling]"
    assert "\r" not in doc.text and "\ufeff" not in doc.text


def test_srt_reversed_cue_and_garbage_are_rejected(tmp_path):
    bad = SRT_BODY.replace("00:00:03,000 --> 00:00:04,250", "00:00:04,250 --> 00:00:03,000")
    reversed_ = one([write(tmp_path / "rev.srt", bad)])
    assert isinstance(reversed_, Reject)
    assert reversed_.reason == "SRT cue 2 has end before start (00:00:04,250 --> 00:00:03,000)"
    garbage = one([write(tmp_path / "junk.srt", "this is\nnot a subtitle file\n")])
    assert isinstance(garbage, Reject) and garbage.reason.startswith("not a valid SRT file")


# ----------------------------------------------------------------------------------------
# JSON and text
# ----------------------------------------------------------------------------------------
def test_youtube_transcript_api_json(tmp_path):
    items = [
        {"text": "Knight to f3\ndevelops a piece.", "start": 0.5, "duration": 2.25},
        {"text": "Then castle early.", "start": 2.1, "duration": 1.3},
    ]
    doc = one([write(tmp_path / "chess.json", json.dumps(items))])
    assert isinstance(doc, Document)
    assert doc.segments == (
        Segment(0.5, 2.75, "Knight to f3 develops a piece."),
        Segment(2.1, 3.4, "Then castle early."),
    )
    assert doc.text == "Knight to f3 develops a piece. Then castle early."


def test_whisper_json(tmp_path):
    whisper = {
        "text": " Bees cluster in winter. They shiver to stay warm.",
        "language": "en",
        "segments": [
            {"id": 0, "start": 0.0, "end": 2.4, "text": " Bees cluster in winter."},
            {"id": 1, "start": 2.4, "end": 5.04, "text": " They shiver to stay warm."},
        ],
    }
    doc = one([write(tmp_path / "bees.json", json.dumps(whisper))])
    assert isinstance(doc, Document)
    assert doc.segments == (
        Segment(0.0, 2.4, "Bees cluster in winter."),
        Segment(2.4, 5.04, "They shiver to stay warm."),
    )
    assert doc.text == "Bees cluster in winter. They shiver to stay warm."
    # Whisper output without segments: its text, untimed
    no_segments = one([write(tmp_path / "w2.json", json.dumps({"text": " Hi.", "segments": []}))])
    assert isinstance(no_segments, Document)
    assert no_segments.text == "Hi." and no_segments.segments == ()


def test_json_unknown_layout_invalid_json_and_reversed_whisper(tmp_path):
    unknown = one([write(tmp_path / "x.json", json.dumps({"captions": []}))])
    assert isinstance(unknown, Reject) and unknown.reason.startswith("unknown JSON layout")
    assert "captions" in unknown.reason
    invalid = one([write(tmp_path / "y.json", '[{"text": "a", ')])
    assert isinstance(invalid, Reject) and invalid.reason.startswith("invalid JSON (line 1")
    seg = {"text": "x", "segments": [{"start": 3.0, "end": 1.0, "text": "late"}]}
    reversed_ = one([write(tmp_path / "z.json", json.dumps(seg))])
    assert isinstance(reversed_, Reject)
    assert reversed_.reason == "Whisper segment 1 has end before start (3.0 > 1.0)"


def test_txt_and_file_source_ids(tmp_path, monkeypatch):
    inside = write(tmp_path / "notes" / "marathon-plan.txt", "Long runs first.\r\nThen taper.\r\n")
    write(tmp_path / "params.yaml", "{}\n")  # the project root: ids are relative to it
    monkeypatch.chdir(tmp_path)
    doc = one([Path("notes")])
    assert isinstance(doc, Document)
    assert doc.text == "Long runs first.\nThen taper." and doc.segments == ()
    assert doc.source_id == "file:notes/marathon-plan.txt"
    assert doc.title == "marathon-plan" and doc.url == ""
    # the same file named by an absolute path, or from a subdirectory, gets the same id
    assert one([inside]).source_id == "file:notes/marathon-plan.txt"
    monkeypatch.chdir(tmp_path / "notes")
    assert one([Path("../notes/./marathon-plan.txt")]).source_id == "file:notes/marathon-plan.txt"
    # outside the project root: the absolute, resolved posix path
    elsewhere = tmp_path.parent / f"{tmp_path.name}-other"
    outside = write(elsewhere / "run.txt", "Easy pace.")
    assert one([outside]).source_id == f"file:{Path(os.path.realpath(outside)).as_posix()}"


# ----------------------------------------------------------------------------------------
# metadata
# ----------------------------------------------------------------------------------------
def test_ytdlp_info_json_sidecar(tmp_path):
    folder = tmp_path / "yt"
    write(folder / "Bread Basics [Xy_-9876543].en.vtt", YT_AUTO_VTT)
    write(
        folder / "Bread Basics [Xy_-9876543].info.json",
        json.dumps(
            {
                "id": "Xy_-9876543",
                "title": "Bread Basics: Feeding Day",
                "channel": "Crumb Channel",
                "webpage_url": "https://www.youtube.com/watch?v=Xy_-9876543",
                "upload_date": "20240131",
                "duration": 9,
                "extractor": "youtube",
            }
        ),
    )
    doc = one([folder])  # the sidecar is read as metadata, never as an input
    assert isinstance(doc, Document)
    assert doc.source_id == "youtube:Xy_-9876543"
    assert doc.title == "Bread Basics: Feeding Day"
    assert doc.author == "Crumb Channel"  # channel when there is no uploader
    assert doc.published == "2024-01-31"
    assert doc.url == "https://www.youtube.com/watch?v=Xy_-9876543"


def test_meta_json_sidecar_and_broken_sidecar(tmp_path):
    write(tmp_path / "talk.srt", SRT_BODY)
    meta = {
        "video_id": "V0lcan0Erup",
        "title": "How Volcanoes Erupt",
        "author": "Earth Explained",
        "url": "https://example.org/volcano",
        "published_at": "2023-06-30",
    }
    write(tmp_path / "talk.meta.json", json.dumps(meta))
    doc = one([tmp_path / "talk.srt"])
    assert isinstance(doc, Document)
    assert (doc.source_id, doc.title, doc.author, doc.url, doc.published) == (
        "youtube:V0lcan0Erup",
        "How Volcanoes Erupt",
        "Earth Explained",
        "https://example.org/volcano",
        "2023-06-30",
    )
    write(tmp_path / "talk.meta.json", "{not json")
    broken = one([tmp_path / "talk.srt"])
    assert isinstance(broken, Reject) and "talk.meta.json is not valid JSON" in broken.reason


def test_explicit_sidecar_is_skipped_and_hidden_files_ignored(tmp_path):
    write(tmp_path / "b" / "two.txt", "second")
    write(tmp_path / "a.txt", "first")
    write(tmp_path / ".hidden.txt", "secret")
    write(tmp_path / ".git" / "x.txt", "internal")
    write(tmp_path / "a.meta.json", json.dumps({"title": "A"}))
    items = list(iter_transcripts([tmp_path]))
    assert [Path(d.origin).name for d in items] == ["a.txt", "two.txt"]  # sorted, recursive
    assert items[0].title == "A"
    side = one([tmp_path / "a.meta.json"])
    assert isinstance(side, Skipped) and "sidecar" in side.reason


# ----------------------------------------------------------------------------------------
# bytes, encodings, paths
# ----------------------------------------------------------------------------------------
def test_encodings_and_binary(tmp_path):
    vtt = "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nCafé crème\n"
    utf16 = one([write(tmp_path / "u16.vtt", vtt.encode("utf-16"))])  # BOM + UTF-16
    assert isinstance(utf16, Document) and utf16.text == "Café crème"
    utf16be = one(
        [write(tmp_path / "u16be.srt", codecs.BOM_UTF16_BE + SRT_BODY.encode("utf-16-be"))]
    )
    assert isinstance(utf16be, Document) and "Magma rises" in utf16be.text
    # Latin-1 is refused, not guessed
    latin1 = one([write(tmp_path / "l1.vtt", vtt.encode("latin-1"))])
    assert isinstance(latin1, Reject)
    assert latin1.reason.startswith("not valid UTF-8 (byte 0xe9")
    assert "re-save the file as UTF-8" in latin1.reason
    binary = one([write(tmp_path / "bin.vtt", b"WEBVTT\n\x00\x01\x02\x00 \x89PNG")])
    assert isinstance(binary, Reject) and binary.reason.startswith("binary file")
    no_bom16 = one([write(tmp_path / "nobom.txt", "hello".encode("utf-16-le"))])
    assert isinstance(no_bom16, Reject) and "UTF-16 without a BOM" in no_bom16.reason
    for name, content in (
        ("zero.vtt", b""),
        ("blank.txt", b" \n\t\r\n"),
        ("bom.srt", b"\xef\xbb\xbf"),
    ):
        empty = one([write(tmp_path / name, content)])
        assert isinstance(empty, Reject) and empty.reason == "empty transcript", name


def test_unknown_extension_missing_path_and_unreadable(tmp_path, monkeypatch):
    unknown = one([write(tmp_path / "slides.pdf", b"%PDF-1.7")])
    assert isinstance(unknown, Reject)
    assert unknown.reason == "unknown format .pdf (expected .vtt, .srt, .json, .txt)"
    missing = one([tmp_path / "nope"])
    assert isinstance(missing, Reject) and missing.reason == "no such file or directory"
    (tmp_path / "gone.vtt").symlink_to(tmp_path / "deleted.vtt")  # a file that vanished
    vanished = one([tmp_path / "gone.vtt"])
    assert isinstance(vanished, Reject) and "cannot read" in vanished.reason

    denied = write(tmp_path / "locked.txt", "secret")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    locked = one([denied])
    assert isinstance(locked, Reject) and locked.reason == "cannot read file: Permission denied"


def test_rejected_transcript_keeps_its_source_id(tmp_path):
    broken = one([write(tmp_path / "Talk [abcDEF12345].en.srt", "garbage\n")])
    assert isinstance(broken, Reject) and broken.source_id == "youtube:abcDEF12345"
    write(tmp_path / "x.meta.json", "[oops")
    sidecar = one([write(tmp_path / "x.vtt", "WEBVTT\n")])
    assert isinstance(sidecar, Reject) and "x.meta.json" in sidecar.reason
    assert sidecar.source_id == f"file:{Path(os.path.realpath(tmp_path / 'x.vtt')).as_posix()}"


def test_duplicate_transcripts(tmp_path):
    path = write(tmp_path / "Clip [abcDEF12345].en.vtt", YT_AUTO_VTT)
    items = list(iter_transcripts([tmp_path, path]))
    assert isinstance(items[0], Document)
    assert isinstance(items[1], Skipped) and items[1].reason == f"duplicate of {path}"
    # the same video in another language: one source id, two texts -> reject the second
    write(
        tmp_path / "Clip [abcDEF12345].fr.vtt", "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nBonjour\n"
    )
    kinds = [type(i).__name__ for i in iter_transcripts([tmp_path])]
    assert kinds == ["Document", "Reject"]
    reject = list(iter_transcripts([tmp_path]))[1]
    assert "same source id youtube:abcDEF12345" in reject.reason


# ----------------------------------------------------------------------------------------
# CSV articles
# ----------------------------------------------------------------------------------------
CSV = (
    "id,title,author,url,published,text\n"
    'a1,"Reefs, heat and algae",Maya,https://x.org/reef,2024-03-12,"Corals bleach, then starve.\n'
    'Second paragraph, with ""quotes""."\n'
    "a2,Castles,Elena,https://x.org/castle,2023-11-20,Walls were thick.\n"
)


def arts(paths, **kw) -> list:
    return list(iter_articles(paths, **kw))


def test_csv_quoted_commas_and_embedded_newlines(tmp_path):
    path = write(tmp_path / "news.csv", CSV)
    first, second = arts([path])
    assert isinstance(first, Document) and isinstance(second, Document)
    assert first.text == 'Corals bleach, then starve.\nSecond paragraph, with "quotes".'
    assert first.title == "Reefs, heat and algae"
    assert (first.source_id, first.author, first.url, first.published) == (
        f"csv:{(tmp_path / 'news.csv').resolve().as_posix()}:a1",
        "Maya",
        "https://x.org/reef",
        "2024-03-12",
    )
    assert first.source_type == "article" and first.origin == f"{path} row 1"
    assert (
        second.source_id == f"csv:{(tmp_path / 'news.csv').resolve().as_posix()}:a2"
        and second.origin == f"{path} row 2"
    )


def test_csv_column_autodetect_and_override(tmp_path):
    path = write(
        tmp_path / "feed.csv",
        "Article_ID,Headline,Byline,Link,Date,Summary,Body\n"
        "7,Jazz,Marcus,https://x.org/jazz,2023,Short.,Long body text.\n",
    )
    (auto,) = arts([path])
    assert (auto.source_id, auto.title, auto.author, auto.url, auto.published, auto.text) == (
        f"csv:{(tmp_path / 'feed.csv').resolve().as_posix()}:7",
        "Jazz",
        "Marcus",
        "https://x.org/jazz",
        "2023",
        "Long body text.",
    )
    (override,) = arts([path], columns=Columns(text="summary", title="Byline"))
    assert override.text == "Short." and override.title == "Marcus"
    (missing,) = arts([path], columns=Columns(text="story"))
    assert isinstance(missing, Reject)
    assert "'story' set in sources.columns.text is not in the CSV header" in missing.reason


def test_csv_without_text_column_is_one_reject(tmp_path):
    path = write(tmp_path / "t.csv", "id,title,notes\n1,a,b\n2,c,d\n")
    (reject,) = arts([path])
    assert isinstance(reject, Reject) and reject.locator == ""
    assert reject.reason == (
        "CSV has no text column (looked for text/content/body/description/news/article/story; "
        "set sources.columns.text in params.yaml); columns found: id, title, notes"
    )


def test_csv_empty_text_ragged_rows_and_nul(tmp_path):
    path = write(
        tmp_path / "r.csv",
        "id,title,text\n"
        "1,ok,fine\n"
        "2,ragged,too,many\n"
        "3,blank,   \n"
        "4,short\n"
        '5,quoted-empty,""\n'
        "6,nul,bad\x00bytes\n",
    )
    items = arts([path])
    summary = [(type(i).__name__, getattr(i, "reason", None) or i.origin) for i in items]
    assert summary == [
        ("Document", f"{path} row 1"),
        ("Reject", "row 2 has 4 fields, expected 3"),
        ("Reject", "row 3: empty text"),
        ("Reject", "row 4 has 2 fields, expected 3"),
        ("Reject", "row 5: empty text"),
        ("Document", f"{path} row 6"),
    ]
    assert [i.locator for i in items if isinstance(i, Reject)] == [
        "row 2",
        "row 3",
        "row 4",
        "row 5",
    ]
    assert items[-1].text == "badbytes"  # NULs are stripped silently
    # an empty text keeps its source id, so a full cleanup keeps the stored article
    assert (
        items[2].source_id == f"csv:{(tmp_path / 'r.csv').resolve().as_posix()}:3"
        and items[1].source_id == ""
    )


def test_csv_duplicates(tmp_path):
    path = write(
        tmp_path / "d.csv",
        "id,title,text\n1,A,same\n2,B,other\n1,A,same\n1,A,changed\n",
    )
    items = arts([path])
    assert [type(i).__name__ for i in items] == ["Document", "Document", "Skipped", "Reject"]
    assert items[2].reason == "duplicate of row 1" and items[2].locator == "row 3"
    assert items[3].reason == "duplicate id 1 with different text (first seen in row 1)"
    assert (
        items[3].locator == "row 4"
        and items[3].source_id == f"csv:{(tmp_path / 'd.csv').resolve().as_posix()}:1"
    )


def test_csv_key_without_id(tmp_path):
    path = write(
        tmp_path / "noid.csv",
        "id,title,url,text\n,T1,https://x.org/1,one\n,T2,,two\n,,,three\n",
    )
    docs = arts([path])
    base = f"csv:{(tmp_path / 'noid.csv').resolve().as_posix()}:"
    assert [d.source_id for d in docs] == [
        base + sha256_text("https://x.org/1")[:16],
        base + sha256_text("T2" + chr(10) + "two")[:16],  # title and text: see AG News
        base + sha256_text("three")[:16],
    ]


def _signature(items) -> list:
    return [
        (
            type(i).__name__,
            i.source_id,
            getattr(i, "text", None),
            getattr(i, "reason", None),
            getattr(i, "locator", None),
            getattr(i, "origin", None),
        )
        for i in items
    ]


def test_csv_tiny_block_size_streams_the_same(tmp_path):
    rows = ["id,title,author,url,published,text"]
    for n in range(1, 401):
        if n % 41 == 0:
            rows.append(f"{n},ragged,x")
        elif n % 7 == 0:
            rows.append(f'{n},"T, {n}",A,u{n},2024,"line one, {n}\nline two\n\nline four"')
        else:
            rows.append(f"{n},T{n},A,u{n},2024,plain text number {n}")
    rows.append('999,big,A,u,2024,"' + "a long paragraph, " * 120 + '"')  # > 256 bytes
    path = write(tmp_path / "many.csv", "\n".join(rows) + "\n")
    small = arts([path], block_size=256)
    large = arts([path], block_size=1 << 20)
    assert _signature(small) == _signature(large)
    assert len(large) == 401
    assert sum(isinstance(i, Document) for i in large) == 401 - 400 // 41
    assert large[40].reason == "row 41 has 3 fields, expected 6"
    assert (
        large[41].origin == f"{path} row 42"
        and large[41].text == "line one, 42\nline two\n\nline four"
    )
    assert large[
        -1
    ].source_id == f"csv:{(tmp_path / 'many.csv').resolve().as_posix()}:999" and large[
        -1
    ].text.startswith("a long paragraph")


def test_csv_is_streamed_a_bad_byte_in_the_last_block_costs_only_its_row(tmp_path):
    good = "".join(f"{n},t,text {n}\n" for n in range(1, 10001))  # > the 64 KiB head check
    path = write(tmp_path / "s.csv", ("id,title,text\n" + good).encode() + b"9999,t,caf\xe9\n")
    items = arts([path], block_size=4096)
    docs = [i for i in items if isinstance(i, Document)]
    assert len(docs) == 10000 and len(items) == 10001
    reject = items[-1]
    assert isinstance(reject, Reject) and reject.locator == "row 10001"
    assert reject.reason.startswith("row 10001: text is not valid UTF-8 (byte 0xe9 at offset 3")


def test_csv_file_level_rejects(tmp_path):
    cases = {
        "empty.csv": b"",
        "latin1.csv": "id,title,text\n1,caf\xe9,cr\xe8me\n".encode("latin-1"),
        "utf16.csv": "id,text\n1,x\n".encode("utf-16"),
        "binary.csv": bytes(range(256)) * 8,
    }
    paths = [write(tmp_path / name, data) for name, data in cases.items()]
    got = {Path(r.source).name: r for r in arts(paths + [tmp_path / "missing.csv"])}
    assert all(isinstance(r, Reject) for r in got.values())
    assert got["empty.csv"].reason.startswith("empty file")
    assert "re-save the file as UTF-8" in got["latin1.csv"].reason
    assert "UTF-16" in got["utf16.csv"].reason
    assert got["binary.csv"].reason.startswith("not a UTF-8 text CSV")
    assert got["missing.csv"].reason == "no such file or directory"
    assert arts([write(tmp_path / "header.csv", "id,title,text\n")]) == []


def test_csv_bom_and_crlf(tmp_path):
    data = codecs.BOM_UTF8 + b'ID,Text\r\n1,"a\r\nb"\r\n'
    (doc,) = arts([write(tmp_path / "w.csv", data)])
    assert (
        doc.source_id == f"csv:{(tmp_path / 'w.csv').resolve().as_posix()}:1" and doc.text == "a\nb"
    )


def test_csv_huge_row_retry_gives_up_cleanly(tmp_path, monkeypatch):
    monkeypatch.setattr(articles_mod, "MAX_BLOCK_SIZE", 512)
    path = write(tmp_path / "h.csv", "id,text\n1,small\n2," + "x" * 5000 + "\n3,after\n")
    items = arts([path], block_size=256)
    assert isinstance(items[0], Document) and items[0].text == "small"
    assert isinstance(items[-1], Reject) and "larger than 512 bytes" in items[-1].reason


# ----------------------------------------------------------------------------------------
# the sample corpus
# ----------------------------------------------------------------------------------------
def test_sample_corpus_parses_without_rejects():
    items = list(iter_transcripts([SAMPLE / "transcripts"]))
    items += list(iter_articles([SAMPLE / "articles" / "articles.csv"]))
    assert [i for i in items if not isinstance(i, Document)] == []
    assert sum(i.source_type == "transcript" for i in items) == 5
    assert sum(i.source_type == "article" for i in items) == 6
    assert len({i.source_id for i in items}) == len(items)
    for doc in items:
        assert 150 <= len(doc.text.split()) <= 400, doc.source_id
    by_id = {d.source_id: d for d in items}
    bread = by_id["youtube:Sd0ugh8read"]
    assert bread.title == "Keeping a Sourdough Starter Alive" and bread.published == "2024-02-14"
    assert "sourdough starter healthy because" in bread.text
    assert bread.text.count("hi everyone and welcome back to the kitchen") == 1
    words = bread.text.split()
    grams = [tuple(words[i : i + 6]) for i in range(len(words) - 5)]
    assert len(grams) == len(set(grams))  # no rolling repeats: no 6 words read twice
    assert by_id["youtube:V0lcan0Erup"].author == "Earth Explained"
    readme = (SAMPLE / "README.md").read_text(encoding="utf-8")
    for path in (SAMPLE / "transcripts").iterdir():
        if not path.name.endswith((".info.json", ".meta.json")):
            assert path.name in readme
    assert "articles.csv" in readme and readme.count("Paraphrase query") >= 11


# ----------------------------------------------------------------------------------------
# live YouTube, replayed through the library's own HTTP layer
# ----------------------------------------------------------------------------------------
VIDEO = "dQw4w9WgXcQ"
WATCH_HTML = (
    '<!DOCTYPE html><html><head><script>ytcfg.set({"INNERTUBE_API_KEY":"AIzaFakeKey_1",'
    '"INNERTUBE_CONTEXT":{"client":{"hl":"en"}}});</script></head><body></body></html>'
)
TIMEDTEXT = (
    '<?xml version="1.0" encoding="utf-8" ?><transcript>'
    '<text start="0.16" dur="2.4">we&amp;#39;re no strangers</text>'
    '<text start="2.56" dur="1.94">to\nlove</text>'
    "</transcript>"
)


def player_json(captions: bool = True, status: str = "OK", reason: str | None = None) -> dict:
    data: dict = {"playabilityStatus": {"status": status}}
    if reason:
        data["playabilityStatus"]["reason"] = reason
    if captions:
        data["captions"] = {
            "playerCaptionsTracklistRenderer": {
                "captionTracks": [
                    {
                        "baseUrl": f"https://www.youtube.com/api/timedtext?v={VIDEO}&caps=asr"
                        "&lang=en&fmt=srv3",
                        "name": {"runs": [{"text": "English (auto-generated)"}]},
                        "languageCode": "en",
                        "kind": "asr",
                        "isTranslatable": False,
                    }
                ]
            }
        }
    return data


class Replay(BaseAdapter):
    """A requests transport that answers from a table and refuses anything else."""

    def __init__(self, routes: dict[tuple[str, str], tuple[int, str | dict]]):
        super().__init__()
        self.routes = routes
        self.calls: list[tuple[str, str]] = []

    def send(self, request, **kwargs):
        self.calls.append((request.method, request.url))
        for (method, prefix), (status, body) in self.routes.items():
            if request.method == method and request.url.startswith(prefix):
                response = requests.Response()
                response.status_code = status
                response.url = request.url
                response.request = request
                response.encoding = "utf-8"
                is_json = isinstance(body, dict)
                response._content = (json.dumps(body) if is_json else body).encode()
                response.headers["Content-Type"] = "application/json" if is_json else "text/html"
                return response
        raise requests.ConnectionError(f"no route to {request.url} (tests are offline)")

    def close(self):
        pass


def replay_api(player: dict | None = None, watch_status: int = 200) -> tuple:
    routes = {
        ("GET", f"https://www.youtube.com/watch?v={VIDEO}"): (watch_status, WATCH_HTML),
        ("POST", "https://www.youtube.com/youtubei/v1/player?key=AIzaFakeKey_1"): (
            200,
            player if player is not None else player_json(),
        ),
        ("GET", f"https://www.youtube.com/api/timedtext?v={VIDEO}"): (200, TIMEDTEXT),
    }
    adapter = Replay(routes)
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return YouTubeTranscriptApi(http_client=session), adapter


@pytest.mark.parametrize(
    "given, expected",
    [
        (VIDEO, VIDEO),
        (f"https://www.youtube.com/watch?v={VIDEO}&t=42s", VIDEO),
        (f"https://m.youtube.com/watch?feature=share&v={VIDEO}", VIDEO),
        (f"https://youtu.be/{VIDEO}?si=abc", VIDEO),
        (f"youtu.be/{VIDEO}", VIDEO),
        (f"https://www.youtube.com/shorts/{VIDEO}", VIDEO),
        (f"https://www.youtube.com/embed/{VIDEO}?start=3", VIDEO),
        (f"https://www.youtube-nocookie.com/embed/{VIDEO}", VIDEO),
        ("https://www.youtube.com/watch?v=short", None),
        (f"https://vimeo.com/{VIDEO}", None),
        ("https://www.youtube.com/@somechannel", None),
        ("not a video", None),
        ("", None),
    ],
)
def test_video_id_from(given, expected):
    assert video_id_from(given) == expected


def test_fetch_youtube_through_the_library_http_layer():
    api, adapter = replay_api()
    (doc,) = fetch_youtube([f"https://youtu.be/{VIDEO}"], languages=["de", "en"], api=api)
    assert isinstance(doc, Document)
    assert doc.source_id == f"youtube:{VIDEO}" and doc.source_type == "transcript"
    assert doc.url == f"https://www.youtube.com/watch?v={VIDEO}"
    assert VIDEO in doc.title
    assert doc.segments == (
        Segment(0.16, 2.56, "we're no strangers"),
        Segment(2.56, 4.5, "to love"),
    )
    assert doc.text == "we're no strangers to love"
    assert [m for m, _ in adapter.calls] == ["GET", "POST", "GET"]
    assert all(url.startswith("https://www.youtube.com/") for _, url in adapter.calls)


@pytest.mark.parametrize(
    "player, watch_status, expected",
    [
        (player_json(captions=False), 200, "TranscriptsDisabled: Subtitles are disabled"),
        (
            player_json(captions=False, status="ERROR", reason="This video is unavailable"),
            200,
            "VideoUnavailable: The video is no longer available",
        ),
        (None, 429, "IpBlocked: YouTube is blocking requests from your IP"),
        (None, 500, "YouTubeRequestFailed: Request to YouTube failed: 500"),
    ],
)
def test_fetch_youtube_failures_become_one_line_rejects(player, watch_status, expected):
    api, _ = replay_api(player, watch_status)
    (reject,) = fetch_youtube([VIDEO], api=api)
    assert isinstance(reject, Reject)
    assert reject.reason.startswith(expected), reject.reason
    assert "\n" not in reject.reason and len(reject.reason) <= 300
    assert reject.source_id == f"youtube:{VIDEO}" and reject.source == VIDEO


def test_fetch_youtube_language_network_invalid_and_duplicate():
    api, adapter = replay_api()
    items = list(fetch_youtube([VIDEO], languages=["fr"], api=api))
    assert isinstance(items[0], Reject)
    assert items[0].reason.startswith("NoTranscriptFound: no transcript in fr (available: en)")

    offline = requests.Session()
    offline.mount("https://", Replay({}))
    offline.mount("http://", Replay({}))
    (net,) = fetch_youtube([VIDEO], api=YouTubeTranscriptApi(http_client=offline))
    assert isinstance(net, Reject) and net.reason.startswith("network error (ConnectionError)")

    api, adapter = replay_api()
    items = list(
        fetch_youtube(["https://example.com/watch?v=x", VIDEO, f"youtu.be/{VIDEO}"], api=api)
    )
    assert [type(i).__name__ for i in items] == ["Reject", "Document", "Skipped"]
    assert items[0].reason.startswith("not a YouTube video URL")
    assert items[2].reason == f"duplicate of {VIDEO}"
    assert len(adapter.calls) == 3  # one fetch: the invalid URL and the repeat made no request
