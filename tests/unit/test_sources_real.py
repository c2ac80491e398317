"""Real-world transcripts and CSVs, read the way their authors meant (issue 16).

The fixtures under tests/fixtures/real/ are small copies of public material of each kind:
webvtt-py's own test subtitles (sample_hls.vtt, missing_timeframe.vtt, youtube_dl.vtt),
an excerpt of pysrt's SubRip "capability tester", a yt-dlp download folder (auto-captions,
.info.json, .webp thumbnail, .description, a README and notes), an older youtube-dl name,
Whisper's `--output_format all` files of one audio, youtube-transcript-api's raw data and
its CLI's `--format json`, and CSV layouts of AG News, a NewsAPI export and others.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from corpusflow.config import Columns, load_params
from corpusflow.ids import input_key, sha256_text
from corpusflow.models import Document, Reject, Segment, Skipped
from corpusflow.pipeline import extract
from corpusflow.sources.articles import iter_articles
from corpusflow.sources.transcripts import iter_transcripts

REAL = Path(__file__).resolve().parents[1] / "fixtures" / "real"
VIDEO = "Qx7_kP2mZ9a"
PREFERRING = "(one per name is read, preferring .json, .vtt, .srt, .txt)"


def one(path: Path) -> Document | Reject | Skipped:
    items = list(iter_transcripts([path]))
    assert len(items) == 1, items
    return items[0]


def by_name(items) -> dict[str, Document | Reject | Skipped]:
    """Items by file name (a CSV row's origin is "path row N")."""
    return {Path(getattr(i, "source", "") or i.origin.split(" row ")[0]).name: i for i in items}


# ----------------------------------------------------------------------------------------
# youtube-transcript-api
# ----------------------------------------------------------------------------------------
def test_youtube_transcript_api_entities_are_decoded():
    doc = one(REAL / "yta" / "raw_data.json")
    assert isinstance(doc, Document)
    assert doc.text == "we're here"
    assert doc.segments == (Segment(0.5, 1.75, "we're here"),)


def test_youtube_transcript_api_cli_format_json_is_read():
    doc = one(REAL / "yta" / "cli_format_json.json")
    assert isinstance(doc, Document), doc
    assert doc.text == 'I didn\'t think glaciers & rivers could "talk"'
    assert doc.segments == (
        Segment(0.0, 1.54, "I didn't think"),
        Segment(1.54, 3.64, "glaciers & rivers"),
        Segment(3.64, 4.64, 'could "talk"'),
    )
    two = one(REAL / "yta" / "two_videos.json")
    assert isinstance(two, Reject)
    assert two.reason == (
        "youtube-transcript-api output with 2 transcripts (one per video asked for); "
        "save each video's transcript in its own file"
    )


def test_a_json_list_that_is_no_transcript_names_the_bad_item(tmp_path):
    path = tmp_path / "list.json"
    path.write_text(json.dumps([{"text": "a", "start": 0, "duration": 1}, {"x": 1}]))
    reject = one(path)
    assert isinstance(reject, Reject)
    assert reject.reason == (
        "youtube-transcript-api item 2 is not an object with text, start and duration"
    )


# ----------------------------------------------------------------------------------------
# download folders: what is not a transcript is skipped, never rejected
# ----------------------------------------------------------------------------------------
def test_a_ytdlp_download_folder_reads_the_subtitles_and_skips_the_rest():
    items = list(iter_transcripts([REAL / "ytdlp"]))
    got = by_name(items)
    assert not [i for i in items if isinstance(i, Reject)]
    types = "read: .vtt, .srt, .json, .txt"
    assert {n: i.reason for n, i in got.items() if isinstance(i, Skipped)} == {
        "README.md": f"not a transcript type (.md); {types}",
        f"Rivers of Ice [{VIDEO}].description": f"not a transcript type (.description); {types}",
        f"Rivers of Ice [{VIDEO}].webp": f"not a transcript type (.webp); {types}",
        "links.csv": "a CSV, not a transcript: give it as an articles source to ingest it",
        "notes.txt": "notes.txt reads as documentation, not a transcript",
    }
    assert all(not i.duplicate for i in items if isinstance(i, Skipped))
    doc = got[f"Rivers of Ice [{VIDEO}].en.vtt"]
    assert isinstance(doc, Document)
    assert (doc.source_id, doc.title, doc.author, doc.published) == (
        f"youtube:{VIDEO}",
        "Rivers of Ice",
        "Geo Lab",
        "2024-03-11",
    )
    assert doc.segments == (
        Segment(0.0, 2.31, "glaciers move slowly"),
        Segment(2.32, 4.87, "but they carve valleys"),
    )
    assert len(items) == 7  # 5 skipped + 2 documents: every file accounted once


def test_the_older_youtube_dl_name_gives_the_video_id():
    doc = one(REAL / "ytdlp" / "Ледники-Lk3vR8_tQ0w.ru.vtt")
    assert isinstance(doc, Document)
    assert (doc.source_id, doc.title, doc.url) == (
        "youtube:Lk3vR8_tQ0w",
        "Ледники",
        "https://www.youtube.com/watch?v=Lk3vR8_tQ0w",
    )
    assert doc.segments == (Segment(1.0, 3.0, "Ледники медленно движутся."),)


def test_an_ordinary_hyphenated_name_is_not_taken_for_a_video_id(tmp_path):
    path = tmp_path / "geology-part-one-intro.vtt"  # "one-intro" is 9 chars, "part-one-in..."
    path.write_text("WEBVTT\n\n00:01.000 --> 00:02.000\nhi\n", encoding="utf-8")
    lower = tmp_path / "lecture-introducing.vtt"  # 11 lowercase letters: not an id
    lower.write_text("WEBVTT\n\n00:01.000 --> 00:02.000\nhi\n", encoding="utf-8")
    assert one(path).source_id.startswith("file:")
    assert one(lower).source_id.startswith("file:")


def test_a_whisper_folder_stores_the_transcript_once():
    items = list(iter_transcripts([REAL / "whisper"]))
    docs = [i for i in items if isinstance(i, Document)]
    assert len(docs) == 1 and len(items) == 5
    (doc,) = docs
    assert Path(doc.origin).name == "lecture.json"
    assert doc.text == "Glaciers move slowly, but they carve deep valleys."
    assert doc.segments == (
        Segment(0.0, 2.5, "Glaciers move slowly,"),
        Segment(2.5, 5.24, "but they carve deep valleys."),
    )
    skipped = {n: i.reason for n, i in by_name(items).items() if isinstance(i, Skipped)}
    same = f"the same transcript as lecture.json in another format {PREFERRING}"
    assert skipped == {
        "lecture.vtt": same,
        "lecture.srt": same,
        "lecture.txt": same,
        "lecture.tsv": "not a transcript type (.tsv); read: .vtt, .srt, .json, .txt",
    }


def test_a_broken_preferred_format_falls_back_to_the_next(tmp_path):
    shutil.copytree(REAL / "whisper", tmp_path / "w")
    (tmp_path / "w" / "lecture.json").write_text('{"text": "cut', encoding="utf-8")
    items = list(iter_transcripts([tmp_path / "w"]))
    got = by_name(items)
    assert isinstance(got["lecture.json"], Reject)
    assert isinstance(got["lecture.vtt"], Document)
    assert got["lecture.vtt"].segments == (
        Segment(0.0, 2.5, "Glaciers move slowly,"),
        Segment(2.5, 5.24, "but they carve deep valleys."),
    )
    assert got["lecture.srt"].reason == (
        f"the same transcript as lecture.vtt in another format {PREFERRING}"
    )


# ----------------------------------------------------------------------------------------
# SRT and WebVTT as their libraries' own test files write them
# ----------------------------------------------------------------------------------------
def test_srt_bare_less_than_is_text_and_ssa_escapes_are_spaces():
    doc = one(REAL / "subtitles" / "capability_tester_excerpt.srt")
    assert isinstance(doc, Document)
    assert doc.segments == (
        Segment(
            17.501,
            20.5,
            "This text should be showed underlined without problems also: 2<3,5>1,4<6 "
            "This shouldn't be underlined",
        ),
        Segment(
            54.501,
            60.5,
            "The line will never break automatically right before or after a hard space. :-D",
        ),
        Segment(58.501, 60.5, "05 hard spaces between letters: A A ^--Forced line break"),
    )


def test_vtt_block_without_timing_line_is_rejected_not_dropped():
    reject = one(REAL / "subtitles" / "missing_timeframe.vtt")
    assert isinstance(reject, Reject)
    assert reject.reason == (
        "WebVTT text block at line 6 has no timing line ('Caption text #2'): it would be "
        "lost; add its timing line or delete the block"
    )


def test_vtt_keeps_a_line_repeated_seconds_later_like_srt_does():
    vtt, srt = one(REAL / "subtitles" / "repeat.vtt"), one(REAL / "subtitles" / "repeat.srt")
    assert isinstance(vtt, Document) and isinstance(srt, Document)
    expected = (
        Segment(1.0, 2.0, "No."),
        Segment(5.0, 6.0, "No."),
        Segment(6.0, 8.0, "I said no."),
    )
    assert vtt.segments == srt.segments == expected
    assert vtt.text == srt.text == "No. No. I said no."


@pytest.mark.parametrize(
    "name, segments",
    [
        (  # HLS: cue 1088:42:00.500 - X-TIMESTAMP-MAP LOCAL 1086:59:52.424 = 1:42:08.076
            "sample_hls.vtt",
            (
                Segment(6128.076, 6134.576, "Caption text #1"),
                Segment(6134.576, 6139.466, "Caption text #2"),
                Segment(6139.466, 6143.896, "Caption text #3"),
            ),
        ),
        (  # youtube-dl: a Style header, <c.color> tags, a cue not separated by a blank line
            "youtube_dl.vtt",
            (
                Segment(286.07, 286.47, "yeah"),
                Segment(286.47, 304.08, "what"),
                Segment(304.08, 305.069, "this will happen is I'm telling"),
            ),
        ),
    ],
)
def test_webvtt_py_samples_give_exact_times(name, segments):
    doc = one(REAL / "subtitles" / name)
    assert isinstance(doc, Document)
    assert doc.segments == segments


def test_a_gb2312_srt_is_refused_with_a_hint_that_names_it():
    reject = one(REAL / "subtitles" / "jingyesi.gb2312.srt")
    assert isinstance(reject, Reject)
    assert reject.reason == (
        "not valid UTF-8 (byte 0xb4 at offset 32; it looks like GB18030); re-save the file as UTF-8"
    )


# ----------------------------------------------------------------------------------------
# CSVs
# ----------------------------------------------------------------------------------------
def test_ag_news_articles_sharing_a_headline_are_distinct():
    path = REAL / "csv" / "ag_news_sample.csv"
    items = list(iter_articles([path]))
    assert [type(i).__name__ for i in items] == ["Document", "Document", "Document", "Skipped"]
    first, second, third, repeat = items
    assert first.title == second.title == "Red Hat replaces CFO"
    assert first.text != second.text and first.source_id != second.source_id
    assert first.source_id == (
        f"csv:{input_key(path)}:{sha256_text('Red Hat replaces CFO' + chr(10) + first.text)[:16]}"
    )
    assert third.text == "A header in stoppage time gave United a 2-1 win at home."
    # the exact repeat of row 1 is a duplicate, with where it was first seen
    assert (repeat.locator, repeat.reason, repeat.source_id) == (
        "row 4",
        "duplicate of row 1",
        first.source_id,
    )
    # stable across reruns
    assert [i.source_id for i in iter_articles([path])] == [i.source_id for i in items]


def test_common_column_names_are_detected():
    got = by_name(
        list(
            iter_articles(
                [REAL / "csv" / n for n in ("newsapi_export.csv", "essays.csv", "posts.csv")]
            )
        )
    )
    news, essay, post = got["newsapi_export.csv"], got["essays.csv"], got["posts.csv"]
    assert (news.title, news.author, news.url, news.published, news.text) == (
        "Glaciers retreat",
        "Ana Ruiz",
        "https://example.org/glaciers",
        "2024-03-11T09:00:00Z",  # publishedAt
        "Glaciers in the Alps lost a tenth of their volume in two years.",  # content
    )
    assert (essay.title, essay.published, essay.text) == (  # article, date_added, news
        "On rivers",
        "2023-05-01",
        "Rivers carve valleys over millions of years.",
    )
    assert (post.title, post.published, post.text) == (  # Headline, created_at, Description
        "Ice cores",
        "2022-01-09",
        "Ice cores hold air from eight hundred thousand years ago.",
    )


def test_an_article_column_alone_is_the_text(tmp_path):
    path = tmp_path / "cnn.csv"
    path.write_text("id,article,highlights\n7,Body of the story.,Short.\n", encoding="utf-8")
    (doc,) = iter_articles([path])
    assert (doc.text, doc.title) == ("Body of the story.", "")


def test_columns_by_file_maps_two_layouts_in_one_run(tmp_path):
    for name in ("custom_layout.csv", "newsapi_export.csv"):
        shutil.copy(REAL / "csv" / name, tmp_path / name)
    params_file = tmp_path / "params.yaml"
    params_file.write_text(
        "sources:\n"
        "  columns: {author: source}\n"
        "  columns_by_file:\n"
        "    custom_*.csv: {title: essay_title, text: essay_body, published: when}\n",
        encoding="utf-8",
    )
    params = load_params(params_file)
    assert params.sources.columns_by_file == {
        "custom_*.csv": Columns(title="essay_title", text="essay_body", published="when")
    }
    got = by_name(list(extract(params, articles=[str(tmp_path)])))
    custom, news = got["custom_layout.csv"], got["newsapi_export.csv"]
    assert isinstance(custom, Document), custom
    # the matching entry replaces `columns` (no `source` column needed there)
    assert (custom.title, custom.text, custom.published, custom.author) == (
        "Deltas",
        "Deltas grow where rivers slow and drop their silt.",
        "2021-07-04",
        "",
    )
    assert news.author == "Geo Daily"  # the run-wide `columns` apply to the other file


def test_a_header_with_newlines_gives_a_one_line_reject():
    (reject,) = iter_articles([REAL / "csv" / "multiline_header.csv"])
    assert isinstance(reject, Reject)
    assert "\n" not in reject.reason and "\n" not in reject.line()
    assert reject.reason.endswith("columns found: a column with many lines, other")
