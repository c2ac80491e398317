"""Nothing lost: a hostile mixed corpus through the real `corpusflow` CLI, end to end.

Every planted input is listed in `PLANTED` with what must become of it (a document, a
skipped duplicate, or a reject with a reason a user can act on). One CLI run ingests them
all; the tests check the run's accounting per source type against that list, rejects.jsonl
and the stderr lines against the rejects, the collection's contents against the documents,
and exact round trips (emoji, right-to-left scripts, a 70,000-byte unbroken token) through
Milvus and the snapshot. Targeted tests cover a several-megabyte article and the rerun.
"""

from __future__ import annotations

import codecs
import json
import os
import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import CLI
from corpusflow.chunking import MAX_TEXT_BYTES
from corpusflow.config import load_params
from corpusflow.ids import sha256_text
from corpusflow.pipeline import Context, extract, ingest

DOC, DUP, REJECT, SKIP = "document", "duplicate", "rejected", "skipped"

EMOJI_RTL = (
    "Emoji and scripts 🎉👩‍👩‍👧‍👦🏳️‍🌈 — עברית: שלום עולם, العربية: مرحبا بالعالم، "
    "and mixed ‏RTL‎ marks, combining e\u0301 and 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 outside the BMP."
)
# One unbroken "word" of exactly 70,000 UTF-8 bytes (1 + 1 + 2 + 3 bytes per unit): longer
# than Milvus' VARCHAR limit, so it must be split across chunks, never cut.
TOKEN = "x9é€" * 10_000
LONG_TOKEN_TEXT = f"What follows is one enormous token. {TOKEN} And here the text goes on."
OUTSIDE_SECRET = "This file lives outside the data directory and must never be indexed."

VTT_GOOD = (
    "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\nRivers carve valleys\n\n"
    "00:00:03.000 --> 00:00:06.500\nover millions of years.\n"
)
SRT_OVERLAP = (
    "1\n00:00:01,000 --> 00:00:03,500\nMagma rises through\n\n"
    "2\n00:00:03,000 --> 00:00:04,250\nthe crust and erupts.\n\n"
)


@dataclass(frozen=True)
class Planted:
    path: str  # relative to the corpus root
    source_type: str
    outcome: str
    reason: str = ""  # a fragment the reject reason must contain
    row: int | None = None  # CSV data row (1-based) for row-level outcomes


PLANTED: list[Planted] = [
    # transcripts ---------------------------------------------------------------------
    Planted("transcripts/Rivers [abcDEF12345].en.vtt", "transcript", DOC),
    Planted("transcripts/overlap.srt", "transcript", DOC),  # overlapping cues: accepted
    Planted("transcripts/reversed.srt", "transcript", REJECT, "end before start"),
    Planted("transcripts/no-header.vtt", "transcript", REJECT, "must start with a WEBVTT"),
    Planted("transcripts/bad-time.vtt", "transcript", REJECT, "could not be parsed"),
    Planted("transcripts/vtt-reversed.vtt", "transcript", REJECT, "end before start"),
    Planted("transcripts/truncated.json", "transcript", REJECT, "truncated?"),
    Planted(
        "transcripts/invalid.json", "transcript", REJECT, "(line 1 column 2: Expecting property"
    ),
    Planted("transcripts/nan-start.json", "transcript", REJECT, "not a number: nan"),
    Planted("transcripts/binary.srt", "transcript", REJECT, "binary file"),
    Planted("transcripts/random.vtt", "transcript", REJECT, "not valid UTF-8"),
    Planted("transcripts/latin1.txt", "transcript", REJECT, "re-save the file as UTF-8"),
    Planted("transcripts/utf16-bom.srt", "transcript", DOC),
    Planted("transcripts/utf16-no-bom.txt", "transcript", REJECT, "UTF-16 without a BOM"),
    Planted("transcripts/zero.vtt", "transcript", REJECT, "empty transcript"),
    Planted("transcripts/nul.txt", "transcript", REJECT, "NUL bytes"),
    Planted("transcripts/notes.docx", "transcript", SKIP),  # not a transcript type
    Planted("transcripts/emoji-rtl.txt", "transcript", DOC),
    Planted("transcripts/long-token.txt", "transcript", DOC),
    Planted("transcripts/escape.txt", "transcript", REJECT, "symlink leads outside"),
    Planted("transcripts/escape-dir", "transcript", REJECT, "symlink leads outside"),
    Planted("transcripts/inner-link", "transcript", SKIP),  # symlinked dir inside: not followed
    Planted("transcripts/sub/Rivers [abcDEF12345].en.vtt", "transcript", DUP),
    Planted("transcripts/sub/Rivers [abcDEF12345].fr.vtt", "transcript", REJECT, "same source id"),
    # articles: one CSV, row by row ---------------------------------------------------
    Planted("articles/news.csv", "article", DOC, row=1),
    Planted("articles/news.csv", "article", REJECT, "row 2 has 5 fields, expected 4", row=2),
    Planted("articles/news.csv", "article", REJECT, "row 3: empty text", row=3),
    Planted("articles/news.csv", "article", REJECT, "missing-value marker", row=4),
    Planted("articles/news.csv", "article", DOC, row=5),  # empty title: fine
    Planted("articles/news.csv", "article", DOC, row=6),  # NUL bytes stripped
    Planted("articles/news.csv", "article", DUP, row=7),  # exact repeat of row 1
    Planted("articles/news.csv", "article", REJECT, "with different text", row=8),
    Planted("articles/news.csv", "article", DOC, row=9),  # emoji and RTL
    Planted("articles/news.csv", "article", DOC, row=10),  # a hostile id
    # articles: whole files refused ---------------------------------------------------
    Planted("articles/no-text.csv", "article", REJECT, "no text column"),
    Planted("articles/latin1.csv", "article", REJECT, "re-save the file as UTF-8"),
    Planted("articles/zero.csv", "article", REJECT, "empty file"),
    Planted("articles/utf16.csv", "article", REJECT, "UTF-16"),
    Planted("articles/elsewhere.csv", "article", REJECT, "symlink leads outside"),
]
# Present but not inputs: a yt-dlp sidecar (metadata), hidden files, a header-only CSV.

NEWS_CSV = (
    "id,title,author,text\n"
    '1,"Reefs, heat and algae",Maya,"Corals bleach, then starve.\nA second line."\n'
    "2,ragged,x,y,z\n"
    '3,blank,Ann,""\n'
    "4,missing,Ann,NaN\n"
    "5,,,An article without a title or author is still an article.\n"
    "6,nul,Ann,Broken\x00export\x00bytes are stripped.\n"
    '1,"Reefs, heat and algae",Maya,"Corals bleach, then starve.\nA second line."\n'
    "1,Reefs,Maya,A different text under the same id.\n"
    f'9,RTL,Dana,"{EMOJI_RTL}"\n'
    '"a"" or id != """,hostile,Eve,An id that looks like a Milvus expression.\n'
)


def build_corpus(root: Path) -> None:
    t = root / "corpus" / "transcripts"
    a = root / "corpus" / "articles"
    (t / "sub").mkdir(parents=True)
    (t / "real-sub").mkdir()
    a.mkdir(parents=True)
    outside = root / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.txt").write_text(OUTSIDE_SECRET, encoding="utf-8")
    (outside / "dir" / "more.txt").write_text(OUTSIDE_SECRET, encoding="utf-8")

    def put(name: str, data: str | bytes) -> None:
        path = t / name
        path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))

    put("Rivers [abcDEF12345].en.vtt", VTT_GOOD)
    info = {"id": "abcDEF12345", "title": "How rivers carve valleys", "extractor": "youtube"}
    put("Rivers [abcDEF12345].info.json", json.dumps(info))
    put("overlap.srt", SRT_OVERLAP)
    put("reversed.srt", "1\n00:00:05,000 --> 00:00:03,500\nbackwards\n\n")
    put("no-header.vtt", "00:00:01.000 --> 00:00:02.000\nno header line\n")
    put("bad-time.vtt", "WEBVTT\n\n00:00:01.000 --> 00:0x:02\nbroken timestamp\n")
    put("vtt-reversed.vtt", "WEBVTT\n\n00:00:05.000 --> 00:00:03.000\nbackwards\n")
    put("truncated.json", '[{"text": "cut off", "start": 0.0, "dura')
    put("invalid.json", "{'text': 'single quotes are not JSON'}")
    put("nan-start.json", '[{"text": "x", "start": NaN, "duration": 1.0}]')
    put("binary.srt", bytes(range(256)) * 4)
    put("random.vtt", bytes(random.Random(3).randrange(128, 256) for _ in range(512)))
    put("latin1.txt", "Café crème brûlée".encode("latin-1"))
    lava = SRT_OVERLAP.replace("Magma", "Lava")
    put("utf16-bom.srt", codecs.BOM_UTF16_LE + lava.encode("utf-16-le"))
    put("utf16-no-bom.txt", "no byte order mark".encode("utf-16-le"))
    put("zero.vtt", b"")
    put("nul.txt", b"text with a \x00 NUL byte")
    put("notes.docx", b"PK\x03\x04 a word document")
    put("emoji-rtl.txt", EMOJI_RTL)
    put("long-token.txt", LONG_TOKEN_TEXT)
    put(".hidden.txt", "hidden files are not inputs")
    (t / "escape.txt").symlink_to(outside / "secret.txt")
    (t / "escape-dir").symlink_to(outside / "dir", target_is_directory=True)
    (t / "real-sub" / "inside.txt").write_text("A file reached through its real path.")
    (t / "inner-link").symlink_to(t / "real-sub", target_is_directory=True)
    (t / "sub" / "Rivers [abcDEF12345].en.vtt").write_text(VTT_GOOD, encoding="utf-8")
    (t / "sub" / "Rivers [abcDEF12345].info.json").write_text(json.dumps(info))
    (t / "sub" / "Rivers [abcDEF12345].fr.vtt").write_text(
        "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nLes rivières creusent\n", encoding="utf-8"
    )

    (a / "news.csv").write_text(NEWS_CSV, encoding="utf-8")
    (a / "no-text.csv").write_text("id,title\n1,no text column here\n", encoding="utf-8")
    (a / "latin1.csv").write_bytes("id,text\n1,caf\xe9\n".encode("latin-1"))
    (a / "zero.csv").write_bytes(b"")
    (a / "utf16.csv").write_bytes("id,text\n1,x\n".encode("utf-16"))
    (a / "header-only.csv").write_text("id,title,text\n", encoding="utf-8")
    (outside / "other.csv").write_text(f"id,text\n1,{OUTSIDE_SECRET}\n", encoding="utf-8")
    (a / "elsewhere.csv").symlink_to(outside / "other.csv")


# real-sub/inside.txt is an input too (a document), reached at its real path
PLANTED.append(Planted("transcripts/real-sub/inside.txt", "transcript", DOC))


def cli(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([CLI, *args], cwd=cwd, capture_output=True, text=True)
    if check:
        assert out.returncode == 0, out.stderr
    return out


def open_ctx(cwd: Path, embedder=None) -> Context:
    """A Context on `cwd`'s params and database (the CLI process has exited: no lock)."""
    old = Path.cwd()
    os.chdir(cwd)
    try:
        ctx = Context(load_params())
        if embedder is not None:
            ctx._embedder = embedder
        ctx.params.milvus.uri = str(cwd / ctx.params.milvus.uri)
        return ctx
    finally:
        os.chdir(old)


def stored(cwd: Path) -> list[dict]:
    ctx = open_ctx(cwd)
    try:
        fields = ["id", "source_id", "source_type", "chunk_index", "n_chunks", "start_char"]
        fields += ["text", "title", "author", "start_seconds", "end_seconds"]
        return list(ctx.store.iter_rows(ctx.store.alias_target(), fields))
    finally:
        ctx.close()


def rebuild(text: str, chunks: list[dict]) -> str:
    """Place each chunk at its start_char. Every chunk must agree with `text` there, and
    every character no chunk covers must be whitespace (the seams the splitter trims)."""
    placed: list[str | None] = [None] * len(text)
    for c in chunks:
        start = c["start_char"]
        assert text[start : start + len(c["text"])] == c["text"], c["chunk_index"]
        placed[start : start + len(c["text"])] = c["text"]
    gaps = [i for i, ch in enumerate(placed) if ch is None]
    assert all(text[i].isspace() for i in gaps), [text[i] for i in gaps if not text[i].isspace()]
    return "".join(ch if ch is not None else text[i] for i, ch in enumerate(placed))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("mixed")
    build_corpus(root)
    args = ["ingest", "--transcripts", "corpus/transcripts", "--articles", "corpus/articles"]
    out = cli(root, *args, "--json")
    return {"root": root, "args": args, "out": out, "result": json.loads(out.stdout)}


def expected_counts() -> dict[str, dict[str, int]]:
    counts: dict[str, dict[str, int]] = {}
    for p in PLANTED:
        c = counts.setdefault(p.source_type, {"inputs": 0, DOC: 0, DUP: 0, REJECT: 0, SKIP: 0})
        c["inputs"] += 1
        c[p.outcome] += 1
    return counts


def test_every_planted_input_is_accounted_for(mixed):
    """inputs = documents + duplicates + rejected + skipped per source type, and each number
    equals what was planted: no input vanishes and none is counted twice."""
    r = mixed["result"]
    assert mixed["out"].returncode == 0  # rejects do not fail the run without --strict
    for source_type, want in expected_counts().items():
        got = r["by_type"][source_type]
        parts = got["documents"] + got["duplicates"] + got["rejected"] + got["skipped"]
        assert got["inputs"] == parts
        assert got["inputs"] == want["inputs"], source_type
        assert (got["documents"], got["duplicates"], got["rejected"], got["skipped"]) == (
            want[DOC],
            want[DUP],
            want[REJECT],
            want[SKIP],
        ), source_type
        assert got["unchanged"] == 0
    assert set(r["by_type"]) == {"transcript", "article"}
    assert r["documents"] == sum(p.outcome == DOC for p in PLANTED)
    assert r["rejected"] == sum(p.outcome == REJECT for p in PLANTED)
    assert r["duplicates"] == sum(p.outcome == DUP for p in PLANTED)
    assert r["skipped_inputs"] == sum(p.outcome == SKIP for p in PLANTED)
    assert sorted(f["source"] for f in r["skipped_files"]) == sorted(
        str(Path("corpus") / p.path) for p in PLANTED if p.outcome == SKIP
    )
    assert r["chunks"] == r["added"] == r["upserted"]


def test_each_reject_is_logged_once_with_an_actionable_reason(mixed):
    root, out = mixed["root"], mixed["out"]
    run_id = mixed["result"]["run_id"]
    rejects = [json.loads(line) for line in (root / "data" / "rejects.jsonl").open()]
    assert {r["run_id"] for r in rejects} == {run_id}
    planted = [p for p in PLANTED if p.outcome == REJECT]
    assert len(rejects) == len(planted)
    unmatched = list(rejects)
    for p in planted:
        source = str(Path("corpus") / p.path)
        hit = [
            r
            for r in unmatched
            if r["source"] == source
            and p.reason in r["reason"]
            and (p.row is None or f"row {p.row}" in (r["locator"] or r["reason"]))
        ]
        assert len(hit) == 1, (p, [r for r in rejects if r["source"] == source])
        unmatched.remove(hit[0])
    assert unmatched == []
    lines = [line for line in out.stderr.splitlines() if line.startswith("rejected ")]
    assert len(lines) == len(planted)
    assert all("\n" not in r["reason"] and len(r["reason"]) <= 300 for r in rejects)
    assert "Traceback" not in out.stderr


def test_collection_holds_exactly_the_documents(mixed):
    rows = stored(mixed["root"])
    ids = [r["id"] for r in rows]
    assert len(ids) == len(set(ids)) == mixed["result"]["chunks"]
    by_source: dict[str, list[dict]] = {}
    for r in rows:
        by_source.setdefault(r["source_id"], []).append(r)
    for chunks in by_source.values():  # every source is complete: indexes 0..n-1
        assert sorted(c["chunk_index"] for c in chunks) == list(range(chunks[0]["n_chunks"]))
    assert len(by_source) == mixed["result"]["documents"]
    base = mixed["root"].resolve().as_posix()  # no params.yaml there: ids are absolute
    t = f"file:{base}/corpus/transcripts/"
    news = f"csv:{base}/corpus/articles/news.csv:"
    assert {s for s in by_source if s.startswith(("file:", "youtube:"))} == {
        "youtube:abcDEF12345",
        t + "overlap.srt",
        t + "utf16-bom.srt",
        t + "emoji-rtl.txt",
        t + "long-token.txt",
        t + "real-sub/inside.txt",
    }
    assert {s for s in by_source if s.startswith("csv:")} == {
        news + "1",
        news + "5",
        news + "6",
        news + "9",
        news + 'a" or id != "',
    }
    everything = "\n".join(r["text"] for r in rows)
    assert OUTSIDE_SECRET not in everything  # the escaping symlinks were never read
    assert "Les rivières" not in everything  # the conflicting duplicate was not ingested
    assert "Broken export bytes" not in everything and "Brokenexportbytes" in everything
    rivers = by_source["youtube:abcDEF12345"]
    assert rivers[0]["title"] == "How rivers carve valleys"  # from the yt-dlp sidecar
    assert (rivers[0]["start_seconds"], rivers[0]["end_seconds"]) == (1.0, 6.5)
    # overlapping SRT cues: kept, in start order, seconds monotonic
    srt = by_source[t + "overlap.srt"][0]
    assert srt["text"] == "Magma rises through the crust and erupts."
    assert srt["start_seconds"] <= srt["end_seconds"] == 4.25
    assert by_source[t + "utf16-bom.srt"][0]["text"].startswith("Lava rises")
    assert by_source[news + "5"][0]["title"] == "" and by_source[news + "5"][0]["author"] == ""


def test_emoji_and_rtl_round_trip_exactly_through_milvus_and_the_snapshot(mixed):
    root = mixed["root"]
    rows = {r["source_id"]: r for r in stored(root)}
    base = root.resolve().as_posix()  # no params.yaml there: ids are absolute
    transcript = rows[f"file:{base}/corpus/transcripts/emoji-rtl.txt"]
    article = rows[f"csv:{base}/corpus/articles/news.csv:9"]
    assert transcript["text"] == EMOJI_RTL and transcript["n_chunks"] == 1
    assert article["text"] == EMOJI_RTL and article["title"] == "RTL"
    snap = json.loads(cli(root, "snapshot", "--json").stdout)
    raw = Path(root, snap["path"]).read_bytes()
    assert EMOJI_RTL.encode("utf-8") in raw  # stored as UTF-8, not \\u escapes
    records = {r["id"]: r for r in json.loads(raw)["records"]}
    assert records[transcript["id"]]["text"] == EMOJI_RTL
    assert records[article["id"]]["text"] == EMOJI_RTL
    assert len(records) == mixed["result"]["chunks"]


def test_a_70000_byte_token_is_split_across_chunks_never_cut(mixed):
    assert len(TOKEN.encode("utf-8")) == 70_000
    chunks = [r for r in stored(mixed["root"]) if r["source_id"].endswith("long-token.txt")]
    chunks.sort(key=lambda r: r["chunk_index"])
    assert len(chunks) >= 2
    assert all(len(c["text"].encode("utf-8")) <= MAX_TEXT_BYTES for c in chunks)
    rebuilt = rebuild(LONG_TOKEN_TEXT, chunks)
    assert rebuilt == LONG_TOKEN_TEXT
    # the token itself comes back from the chunk texts alone, concatenated in order
    joined = "".join(c["text"] for c in chunks)
    assert TOKEN in joined


def test_rerun_accounts_the_same_inputs_as_unchanged_and_strict_fails(mixed):
    root = mixed["root"]
    out = cli(root, *mixed["args"], "--json", "--strict", check=False)
    assert out.returncode == 1  # --strict: something was rejected
    r = json.loads(out.stdout)
    want = expected_counts()
    for source_type, got in r["by_type"].items():
        parts = got["documents"] + got["duplicates"] + got["rejected"] + got["skipped"]
        assert got["inputs"] == parts
        assert got["inputs"] == want[source_type]["inputs"]
        assert got["unchanged"] == got["documents"] == want[source_type][DOC]
    assert (r["embedded"], r["upserted"], r["added"], r["deleted"]) == (0, 0, 0, 0)
    assert r["skipped"] == mixed["result"]["chunks"]


def test_a_several_megabyte_article_is_ingested_in_full(make_ctx, tmp_path):
    """A 2.5 MB article in one CSV field (larger than pyarrow's read block) ends up whole in
    Milvus: every non-whitespace character is in a chunk at its offset, none over the limit.
    Large character chunks keep the embedding work (one model call per chunk) small."""
    rnd = random.Random(11)
    words = "tide reef coral algae heat bleach current plankton kelp".split()
    paragraphs, size = [], 0
    while size < 2_500_000:
        para = " ".join(rnd.choice(words) for _ in range(rnd.randint(5, 400)))
        if rnd.random() < 0.01:  # an unbroken run of letters, some of them two bytes long
            para += " " + "".join(rnd.choice("abcdefé") for _ in range(rnd.randint(1, 30_000)))
        paragraphs.append(para + ".")
        size += len(para.encode("utf-8")) + 2
    text = "\n\n".join(paragraphs)
    assert len(text.encode("utf-8")) > 2_500_000
    (tmp_path / "big.csv").write_text(
        f'id,title,text\nbig,The big one,"{text}"\nsmall,Small,A small one.\n', encoding="utf-8"
    )
    ctx = make_ctx(chunking={"mode": "characters", "chunk_size": 65_000, "chunk_overlap": 0})
    result = ingest(ctx, extract(ctx.params, articles=[str(tmp_path / "big.csv")]))
    assert result.documents == 2 and result.rejected == 0
    fields = ["source_id", "chunk_index", "n_chunks", "start_char", "text"]
    rows = [
        r
        for r in ctx.store.iter_rows(ctx.store.alias_target(), fields)
        if r["source_id"] == f"csv:{tmp_path.resolve().as_posix()}/big.csv:big"
    ]
    rows.sort(key=lambda r: r["chunk_index"])
    assert [r["chunk_index"] for r in rows] == list(range(rows[0]["n_chunks"]))
    assert len(rows) == result.chunks - 1 > 30
    assert max(len(r["text"].encode("utf-8")) for r in rows) <= MAX_TEXT_BYTES
    assert max(len(r["text"].encode("utf-8")) for r in rows) > 64_000
    assert rebuild(text, rows) == text  # every non-whitespace character is in some chunk
    assert sha256_text("".join(text.split())) == sha256_text(
        "".join("".join(r["text"] for r in rows).split())
    )


def test_path_rule_named_paths_are_read_links_out_of_a_walked_directory_are_not(
    tmp_path, monkeypatch
):
    """The rule in corpusflow.sources.transcripts: what the user names is read where it
    points (`..` included, id normalised); what a directory walk finds must resolve inside
    the directory, sidecars included."""
    from corpusflow.models import Document, Reject
    from corpusflow.sources.transcripts import iter_transcripts

    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "talk.txt").write_text("Named explicitly, read from anywhere.")
    (tmp_path / "elsewhere" / "x.meta.json").write_text('{"title": "Outside metadata"}')
    (tmp_path / "data" / "x.txt").write_text("A transcript whose sidecar is a link out.")
    (tmp_path / "data" / "x.meta.json").symlink_to(tmp_path / "elsewhere" / "x.meta.json")

    (named,) = iter_transcripts(["data/../elsewhere/talk.txt"])
    base = tmp_path.resolve().as_posix()  # no project root: ids are absolute, `..` resolved
    assert isinstance(named, Document) and named.source_id == f"file:{base}/elsewhere/talk.txt"
    (walked,) = iter_transcripts(["data"])
    assert isinstance(walked, Reject) and "sidecar x.meta.json: symlink leads outside" in (
        walked.reason
    )
    assert walked.source_id == f"file:{base}/data/x.txt"  # a full cleanup keeps its version
    (direct,) = iter_transcripts(["data/x.txt"])  # named: its sidecar is read as well
    assert isinstance(direct, Document) and direct.title == "Outside metadata"
