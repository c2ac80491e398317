"""A seeded corpus generator: realistic transcripts (.vtt/.srt/.txt) and CSV articles.

Document `i` depends only on (seed, i), so a corpus of N documents is a prefix of one of
10 N: sizes scale without changing what the smaller one holds. Roughly:

- 35 % YouTube auto-caption WebVTT (`Title [VIDEO_ID].en.vtt`, rolling two-line cues with
  inline `<00:00:01.320><c>` tags, and a yt-dlp `.info.json` sidecar beside it);
- 15 % hand-made WebVTT, 12 % SRT, 8 % plain .txt transcripts;
- 30 % articles, in CSV files of at most `ARTICLES_PER_CSV` rows.

With MiniLM's tokenizer (254-token chunks, 32 overlap) a document averages ~6 chunks.
"""

from __future__ import annotations

import csv
import json
import random
import string
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

ARTICLES_PER_CSV = 500
CHUNKS_PER_DOC = 6.0  # measured average (token chunker, or 1000 characters); sizes a corpus
ARTICLE_COLUMNS = ["id", "title", "author", "url", "published", "text"]

_TOPICS = {
    "baking": "sourdough starter flour hydration crumb crust oven dough levain yeast rye "
    "wholemeal proof bulk fermentation autolyse banneton scoring steam loaf bake",
    "travel": "train station ticket border hostel luggage itinerary mountain coast village "
    "ferry airport passport museum market hiking trail weather season map",
    "software": "database index query latency cache server deploy container pipeline schema "
    "vector embedding model batch thread memory benchmark release version test",
    "garden": "tomato compost soil seedling mulch irrigation greenhouse pruning harvest "
    "orchard pollinator bed frost raised manure basil squash trellis",
    "music": "guitar chord melody rhythm tempo scale harmony recording microphone mixer "
    "studio bass drum vocal album tuning amplifier pedal",
}
_COMMON = (
    "the a an and or but so because when while after before then also just really very "
    "quite this that these those it its we you they I he she our your their my "
    "is are was were be been have has had do does did can could will would should might "
    "make take get use keep find show try start need want know think see look give work "
    "good new first last long great little small big old right different important "
    "time way day year people thing part place point week hour minute problem question "
    "of in on at to for with from by about into over under between through without"
).split()
_SYLLABLES = (
    "ka ro mi ten lus bar gen tor vel an is pra dor fen qui sol mar ex ult nor "
    "cal bi de fa go hu ja le mo ni pe ri sa ti vo ze ber den lin mon tar"
).split()
_FILLERS = ["so", "um", "you know", "okay", "right", "actually", "basically", "like"]
_NAMES = ["Ada Park", "Bruno Silva", "Chen Wei", "Dana Okafor", "Eli Novak", "Farah Haddad"]


@dataclass
class Corpus:
    """Where a generated corpus lives and what it holds."""

    root: Path
    documents: int
    seed: int
    transcripts_dir: Path
    articles: list[Path] = field(default_factory=list)
    transcript_files: list[Path] = field(default_factory=list)
    n_articles: int = 0
    bytes: int = 0

    @property
    def n_transcripts(self) -> int:
        return len(self.transcript_files)

    def inputs(self) -> tuple[list[str], list[str]]:
        """(transcript paths, article CSV paths) as `corpusflow.pipeline.extract` takes them."""
        return [str(self.transcripts_dir)], [str(p) for p in self.articles]

    def summary(self) -> dict[str, object]:
        """What the corpus holds, for reports."""
        return {
            "documents": self.documents,
            "transcripts": self.n_transcripts,
            "articles": self.n_articles,
            "article_csvs": len(self.articles),
            "bytes": self.bytes,
            "seed": self.seed,
        }


def documents_for_chunks(chunks: float) -> int:
    """About how many documents give `chunks` chunks with the default chunker."""
    return max(1, round(chunks / CHUNKS_PER_DOC))


# ----------------------------------------------------------------------------------------
# text
# ----------------------------------------------------------------------------------------
def _rare_vocabulary(size: int = 8000) -> tuple[list[str], list[float]]:
    """Pseudo-words with Zipf weights: a long tail of vocabulary, as real text has."""
    rnd = random.Random("corpusflow-bench:vocabulary")
    words: dict[str, None] = {}
    while len(words) < size:
        words["".join(rnd.choice(_SYLLABLES) for _ in range(rnd.randint(2, 4)))] = None
    cum, total = [], 0.0
    for rank in range(1, size + 1):
        total += 1.0 / rank
        cum.append(total)
    return list(words), cum


_RARE, _RARE_CUM = _rare_vocabulary()


def _word(rnd: random.Random, topic: list[str]) -> str:
    x = rnd.random()
    if x < 0.25:
        return rnd.choice(topic)
    if x < 0.45:
        return rnd.choices(_RARE, cum_weights=_RARE_CUM)[0]
    return rnd.choice(_COMMON)


def _sentence(rnd: random.Random, topic: list[str], spoken: bool) -> str:
    n = rnd.randint(7, 22)
    words = [_word(rnd, topic) for _ in range(n)]
    if spoken and rnd.random() < 0.3:
        words.insert(rnd.randrange(len(words)), rnd.choice(_FILLERS))
    if rnd.random() < 0.15:
        words.append(str(rnd.randint(2, 450)))
    text = " ".join(words)
    end = rnd.choice(".....?!") if not spoken else rnd.choice("....?")
    return text[0].upper() + text[1:] + end


def _paragraphs(rnd: random.Random, words: int, topic: list[str], spoken: bool) -> list[str]:
    paras: list[str] = []
    total = 0
    while total < words:
        sents = [_sentence(rnd, topic, spoken) for _ in range(rnd.randint(3, 7))]
        para = " ".join(sents)
        paras.append(para)
        total += para.count(" ") + 1
    return paras


def _doc_rng(seed: int, i: int) -> random.Random:
    return random.Random(f"corpusflow-bench:{seed}:{i}")


def _video_id(rnd: random.Random) -> str:
    alphabet = string.ascii_letters + string.digits + "-_"
    return "".join(rnd.choice(alphabet) for _ in range(11))


def _title(rnd: random.Random, topic_name: str, topic: list[str]) -> str:
    picks = rnd.sample(topic, 3)
    return f"{topic_name.title()}: {picks[0]}, {picks[1]} and {picks[2]} ({rnd.randint(1, 99)})"


def _clock(seconds: float, sep: str = ".") -> str:
    ms = int(round(seconds * 1000))
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def _lines(paras: list[str], rnd: random.Random) -> list[str]:
    """Speech broken into caption lines of 5-9 words."""
    words = " ".join(paras).split()
    out: list[str] = []
    i = 0
    while i < len(words):
        n = rnd.randint(5, 9)
        out.append(" ".join(words[i : i + n]))
        i += n
    return out


def _vtt_manual(lines: list[str], rnd: random.Random) -> str:
    parts = ["WEBVTT", ""]
    t = 0.0
    for k in range(0, len(lines), 2):
        dur = rnd.uniform(2.0, 4.5)
        parts += [f"{_clock(t)} --> {_clock(t + dur)}", *lines[k : k + 2], ""]
        t += dur + rnd.uniform(0.0, 0.4)
    return "\n".join(parts)


def _vtt_youtube(lines: list[str], rnd: random.Random) -> str:
    """Rolling auto-captions: each cue repeats the previous line, plus 10 ms transition cues."""
    parts = ["WEBVTT", "Kind: captions", "Language: en", ""]
    t = 0.0
    previous = ""
    for line in lines:
        dur = rnd.uniform(1.8, 3.5)
        words = line.split()
        step = dur / len(words)
        timed = words[0] + "".join(
            f"<{_clock(t + step * j)}><c> {w}</c>" for j, w in enumerate(words[1:], 1)
        )
        head = f"{_clock(t)} --> {_clock(t + dur)} align:start position:0%"
        parts += [head, previous or " ", timed, ""]
        parts += [f"{_clock(t + dur)} --> {_clock(t + dur + 0.01)} align:start position:0%"]
        parts += [line, " ", ""]
        previous = line
        t += dur + 0.01
    return "\n".join(parts)


def _srt(lines: list[str], rnd: random.Random) -> str:
    parts: list[str] = []
    t = 0.0
    for n, k in enumerate(range(0, len(lines), 2), 1):
        dur = rnd.uniform(2.0, 4.5)
        parts += [str(n), f"{_clock(t, ',')} --> {_clock(t + dur, ',')}", *lines[k : k + 2], ""]
        t += dur + rnd.uniform(0.0, 0.4)
    return "\n".join(parts)


# ----------------------------------------------------------------------------------------
# documents
# ----------------------------------------------------------------------------------------
def _kind(rnd: random.Random) -> str:
    x = rnd.random()
    for kind, upto in (("yt", 0.35), ("vtt", 0.50), ("srt", 0.62), ("txt", 0.70)):
        if x < upto:
            return kind
    return "article"


def _document(
    seed: int, i: int, edit: int = 0, articles_only: bool = False
) -> tuple[str, dict[str, object]]:
    """(kind, fields) of document `i`; `edit` > 0 rewrites one paragraph (a new version)."""
    rnd = _doc_rng(seed, i)
    kind = _kind(rnd)  # drawn either way: the text is the same whatever the kind
    if articles_only:
        kind = "article"
    topic_name = rnd.choice(sorted(_TOPICS))
    topic = _TOPICS[topic_name].split()
    spoken = kind != "article"
    paras = _paragraphs(rnd, rnd.randint(400, 1000), topic, spoken)
    if edit:
        erng = random.Random(f"edit:{seed}:{i}:{edit}")
        paras[erng.randrange(len(paras))] = " ".join(
            _sentence(erng, topic, spoken) for _ in range(4)
        )
    return kind, {
        "rnd": rnd,
        "id": _video_id(rnd),
        "title": _title(rnd, topic_name, topic),
        "author": rnd.choice(_NAMES),
        "published": f"20{rnd.randint(15, 25)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}",
        "paras": paras,
    }


def _write_transcript(folder: Path, i: int, kind: str, f: dict[str, object]) -> list[Path]:
    rnd: random.Random = f["rnd"]  # type: ignore[assignment]
    paras: list[str] = f["paras"]  # type: ignore[assignment]
    title = str(f["title"]).replace(":", " -").replace("/", " ")
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "yt":
        vid = str(f["id"])
        path = folder / f"{title} [{vid}].en.vtt"
        path.write_text(_vtt_youtube(_lines(paras, rnd), rnd), encoding="utf-8")
        published = str(f["published"]).replace("-", "")
        info = {
            "id": vid,
            "title": f["title"],
            "uploader": f["author"],
            "webpage_url": f"https://www.youtube.com/watch?v={vid}",
            "upload_date": published,
            "duration": 60 * rnd.randint(3, 20),
            "extractor": "youtube",
        }
        side = folder / f"{title} [{vid}].info.json"
        side.write_text(json.dumps(info, indent=1), encoding="utf-8")
        return [path, side]
    name = f"talk-{i:06d}"
    if kind == "vtt":
        path = folder / f"{name}.vtt"
        path.write_text(_vtt_manual(_lines(paras, rnd), rnd), encoding="utf-8")
    elif kind == "srt":
        path = folder / f"{name}.srt"
        path.write_text(_srt(_lines(paras, rnd), rnd), encoding="utf-8")
    else:
        path = folder / f"{name}.txt"
        path.write_text("\n\n".join(paras) + "\n", encoding="utf-8")
    return [path]


def _article_row(i: int, f: dict[str, object]) -> list[str]:
    paras: list[str] = f["paras"]  # type: ignore[assignment]
    slug = f"post-{i:06d}"
    return [
        slug,
        str(f["title"]),
        str(f["author"]),
        f"https://blog.example.org/{slug}",
        str(f["published"]),
        "\n\n".join(paras),
    ]


def generate(
    root: str | Path,
    documents: int,
    seed: int = 0,
    edits: dict[int, int] | None = None,
    articles_only: bool = False,
    drop: Collection[int] = (),
) -> Corpus:
    """Write `documents` documents under `root` (transcripts/ and articles/), deterministically.

    `edits` maps document index -> edit number: those documents get one paragraph rewritten.
    Regenerating into the same root with edits rewrites every file; only edited documents
    change their bytes. `articles_only` makes every document a CSV article (the same text);
    documents in `drop` are left out (deleted since an earlier generation).
    """
    root = Path(root)
    edits = edits or {}
    tdir, adir = root / "transcripts", root / "articles"
    adir.mkdir(parents=True, exist_ok=True)
    tdir.mkdir(parents=True, exist_ok=True)
    corpus = Corpus(root=root, documents=documents, seed=seed, transcripts_dir=tdir)
    rows: list[list[str]] = []

    def flush_csv() -> None:
        path = adir / f"articles-{len(corpus.articles):04d}.csv"
        with path.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            writer.writerow(ARTICLE_COLUMNS)
            writer.writerows(rows)
        corpus.articles.append(path)
        corpus.bytes += path.stat().st_size
        rows.clear()

    for i in range(documents):
        if i in drop:
            continue
        kind, fields = _document(seed, i, edits.get(i, 0), articles_only)
        if kind == "article":
            rows.append(_article_row(i, fields))
            corpus.n_articles += 1
            if len(rows) >= ARTICLES_PER_CSV:
                flush_csv()
        else:
            sub = tdir / f"batch-{i // 1000:03d}"
            written = _write_transcript(sub, i, kind, fields)
            corpus.transcript_files.append(written[0])
            corpus.bytes += sum(p.stat().st_size for p in written)
    if rows:
        flush_csv()
    return corpus


def pick_edits(documents: int, fraction: float, seed: int = 0, edit: int = 1) -> dict[int, int]:
    """`fraction` of the documents (at least one), chosen reproducibly, for `generate(edits=)`."""
    n = max(1, round(documents * fraction))
    chosen = random.Random(f"pick:{seed}:{documents}:{fraction}").sample(range(documents), n)
    return {i: edit for i in sorted(chosen)}


__all__ = ["Corpus", "documents_for_chunks", "generate", "pick_edits"]
