"""CSV articles into Documents, streamed block by block with pyarrow.

A dlt-style source: a plain generator that never raises for bad input. Every data row ends
as exactly one Document, Reject or Skipped; problems with a whole file (unreadable, empty,
not UTF-8, no text column) end as one Reject for the file.

The file is never read whole: `pyarrow.csv.open_csv` parses one block (`block_size` bytes)
at a time, so a CSV larger than memory works. A row larger than a block makes pyarrow stop;
the read is then restarted with a larger block and the rows already yielded are skipped.

Decisions:
- Row numbers are 1-based data rows (the header is not counted): "row 1" is the first
  line after the header, whatever newlines its quoted fields hold.
- NUL bytes in a field are stripped silently (they come from broken exports and would
  break downstream string handling); a text that is empty afterwards is rejected.
- The CSV must be UTF-8 (BOM optional); Latin-1/cp1252 is rejected, not guessed, with
  "re-save the file as UTF-8".
- Line ends inside a field are normalised to "\\n" so the content hash does not depend on
  the platform that wrote the file.
- A text that is only a missing-value marker (NaN, null, None, N/A, #N/A, NaT, <NA>: what
  `df.astype(str).to_csv()` and spreadsheets write for an empty cell) is rejected like an
  empty one; metadata fields are kept as written.
- Paths follow the transcripts rule (see `corpusflow.sources.transcripts`): a named CSV is
  read where it points; inside a directory, a *.csv or a directory that is a symlink leading
  outside it is rejected, and symlinked directories are never descended into.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from corpusflow.config import Columns
from corpusflow.ids import csv_source_id, sha256_text
from corpusflow.models import Document, Reject, Skipped, SourceItem
from corpusflow.sources.transcripts import Seen, SkipFn, condense, escapes, input_files

SOURCE_TYPE = "article"
MAX_BLOCK_SIZE = 1 << 30  # a single row larger than this is refused
_HEAD_BYTES = 1 << 16
MISSING_MARKERS = frozenset({"nan", "null", "none", "n/a", "#n/a", "nat", "<na>"})

CANDIDATES: dict[str, tuple[str, ...]] = {
    "id": ("id", "article_id"),
    "title": ("title", "headline"),
    "author": ("author", "authors", "byline"),
    "url": ("url", "link"),
    "text": ("text", "content", "body"),
    "published": ("published", "date", "published_at"),
}


# CSV column overrides are `sources.columns` in params.yaml: one definition, in config.
ArticleColumns = Columns


class _FileReject(Exception):
    """The whole file is refused, for this reason."""


def iter_articles(
    paths: Iterable[str | Path],
    columns: ArticleColumns | None = None,
    block_size: int = 1 << 20,
    skip: SkipFn | None = None,
) -> Iterator[SourceItem]:
    """Articles from CSV files (a directory means every *.csv under it, sorted).

    Duplicates are judged across all the files of one call: the same source_id with the
    same content is Skipped, with different content Rejected (one source_id, one text).
    """
    columns = columns or ArticleColumns()
    seen = Seen()
    for item in input_files(paths, lambda p: p.suffix.lower() == ".csv", SOURCE_TYPE):
        if isinstance(item, Reject | Skipped):
            yield item
            continue
        path, boundary = item
        if outside := escapes(path, boundary):
            yield Reject(str(path), SOURCE_TYPE, outside)
            continue
        if skip is not None and (instead := skip(path, SOURCE_TYPE)) is not None:
            yield from instead
            continue
        try:
            yield from _read_csv(path, columns, max(int(block_size), 1 << 8), seen)
        except _FileReject as bad:
            yield Reject(str(path), SOURCE_TYPE, str(bad))
        except Exception as exc:  # never raise for bad input, whatever a library does
            yield Reject(
                str(path), SOURCE_TYPE, condense(f"unexpected error: {type(exc).__name__}: {exc}")
            )


# ----------------------------------------------------------------------------------------
# one file
# ----------------------------------------------------------------------------------------
def _read_csv(
    path: Path, columns: ArticleColumns, block_size: int, seen: Seen
) -> Iterator[Document | Reject | Skipped]:
    header = _header(path)
    done = 0  # data rows (good or ragged) already yielded; a restart skips them
    while True:
        reader = None
        ragged: dict[int, tuple[int, int]] = {}
        unnumbered: list[tuple[int, int]] = []

        def on_invalid(row: Any, ragged=ragged, unnumbered=unnumbered) -> str:
            if row.number is None:  # only with threads; kept for safety
                unnumbered.append((row.actual_columns, row.expected_columns))
            else:
                ragged[row.number - 1] = (row.actual_columns, row.expected_columns)
            return "skip"

        try:
            reader = pacsv.open_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=block_size, use_threads=False),
                parse_options=pacsv.ParseOptions(
                    newlines_in_values=True, invalid_row_handler=on_invalid
                ),
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in header},
                    strings_can_be_null=False,
                    quoted_strings_can_be_null=False,
                ),
            )
            picked = _pick_columns(reader.schema.names, columns)
            row = 0
            for batch in reader:
                values = {field: batch.column(index).to_pylist() for field, index in picked.items()}
                for i in range(batch.num_rows):
                    row += 1
                    while row in ragged:
                        if row > done:
                            yield _ragged(path, row, *ragged[row])
                            done = row
                        row += 1
                    if row > done:
                        yield _article(path, row, {f: v[i] for f, v in values.items()}, seen)
                        done = row
                for actual, expected in unnumbered:
                    yield Reject(
                        str(path), SOURCE_TYPE, f"a row has {actual} fields, expected {expected}"
                    )
                unnumbered.clear()
            for number in sorted(n for n in ragged if n > done):
                yield _ragged(path, number, *ragged[number])
                done = number
            return
        except _FileReject:
            raise
        except (pa.ArrowInvalid, OSError) as exc:
            message = str(exc)
            if "straddling" in message and block_size < MAX_BLOCK_SIZE:
                block_size = min(block_size * 8, MAX_BLOCK_SIZE)  # a row bigger than a block
                continue
            raise _FileReject(_explain(message, done)) from None
        finally:
            if reader is not None:
                reader.close()


def _header(path: Path) -> list[str]:
    """Column names, checking first that the file is readable, non-empty UTF-8 text."""
    try:
        with path.open("rb") as fh:
            head = fh.read(_HEAD_BYTES)
    except FileNotFoundError:
        raise _FileReject("file vanished or is a broken link: cannot read it") from None
    except OSError as exc:
        raise _FileReject(f"cannot read file: {exc.strerror or exc}") from None
    if not head.strip():
        raise _FileReject("empty file (expected a CSV header line and rows)")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise _FileReject("the CSV is UTF-16; re-save the file as UTF-8")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=len(head) < _HEAD_BYTES)
    except UnicodeDecodeError as exc:
        raise _FileReject(
            f"not a UTF-8 text CSV (byte 0x{head[exc.start : exc.start + 1].hex()} at offset "
            f"{exc.start}; Latin-1/cp1252 or binary?); re-save the file as UTF-8"
        ) from None
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            return next(csv.reader(fh), [])
    except (csv.Error, UnicodeDecodeError, OSError) as exc:
        raise _FileReject(condense(f"cannot read the CSV header: {exc}")) from None


def _pick_columns(names: list[str], columns: ArticleColumns) -> dict[str, int]:
    """Field -> column index: overrides first (exact, then case-insensitive), else candidates."""
    lowered: dict[str, int] = {}
    for index, name in enumerate(names):
        lowered.setdefault(name.strip().lower(), index)
    found = ", ".join(names) or "(none)"
    picked: dict[str, int] = {}
    for field in Columns.model_fields:
        wanted = getattr(columns, field)
        if wanted is not None:
            if wanted in names:
                picked[field] = names.index(wanted)
            elif wanted.strip().lower() in lowered:
                picked[field] = lowered[wanted.strip().lower()]
            else:
                raise _FileReject(
                    f"column {wanted!r} set in sources.columns.{field} is not in the CSV "
                    f"header (columns found: {found})"
                )
            continue
        for candidate in CANDIDATES[field]:
            if candidate in lowered:
                picked[field] = lowered[candidate]
                break
    if "text" not in picked:
        raise _FileReject(
            "CSV has no text column (looked for "
            + "/".join(CANDIDATES["text"])
            + f"; set sources.columns.text in params.yaml); columns found: {found}"
        )
    return picked


def _explain(message: str, done: int) -> str:
    where = f"after row {done}" if done else "before the first row"
    if "invalid UTF8" in message:
        return (
            f"not valid UTF-8 text {where} (Latin-1/cp1252?); re-save the file as UTF-8; "
            "rows from there on were not ingested"
        )
    if "straddling" in message:
        return (
            f"a row {where} is larger than {MAX_BLOCK_SIZE} bytes; rows from there on were "
            "not ingested"
        )
    if "Empty CSV" in message:
        return "empty file (expected a CSV header line and rows)"
    return condense(f"CSV read stopped {where}: {message}; rows from there on were not ingested")


# ----------------------------------------------------------------------------------------
# one row
# ----------------------------------------------------------------------------------------
def _ragged(path: Path, row: int, actual: int, expected: int) -> Reject:
    return Reject(
        str(path),
        SOURCE_TYPE,
        f"row {row} has {actual} fields, expected {expected}",
        locator=f"row {row}",
    )


def _field(value: Any) -> str:
    """A metadata field as one line; NULs stripped."""
    if value is None:
        return ""
    return " ".join(str(value).replace("\x00", "").split())


def _body(value: Any) -> str:
    """The article text: NULs stripped, line ends normalised, outer whitespace trimmed."""
    if value is None:
        return ""
    text = str(value).replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n")
    return text.strip()


def _article(
    path: Path, row: int, values: dict[str, Any], seen: Seen
) -> Document | Reject | Skipped:
    locator = f"row {row}"
    text = _body(values.get("text"))
    meta = {f: _field(values.get(f)) for f in ("id", "title", "author", "url", "published")}
    if meta["id"]:
        key, label = meta["id"], f"id {meta['id']}"
    elif basis := meta["url"] or meta["title"] or text:
        kind = "url" if meta["url"] else "title" if meta["title"] else "text"
        key = sha256_text(basis)[:16]
        label = f"key {key} (no id; made from the {kind})"
    else:
        key = label = ""
    source_id = csv_source_id(path, key) if key else ""
    if not text or text.lower() in MISSING_MARKERS:
        # the source id (when known) lets a full cleanup keep the article's stored version
        reason = f"row {row}: empty text"
        if text:
            reason = f"row {row}: text is {text!r}, a missing-value marker, not an article"
        return Reject(str(path), SOURCE_TYPE, reason, locator=locator, source_id=source_id)
    doc = Document(
        source_id=source_id,
        source_type=SOURCE_TYPE,
        text=text,
        title=meta["title"],
        author=meta["author"],
        url=meta["url"],
        published=meta["published"],
        origin=f"{path} {locator}",
    )
    dup = seen.check(doc, (str(path), row))
    if dup is None:
        return doc
    kind, (first_path, first_row) = dup
    first = f"row {first_row}" if first_path == str(path) else f"{first_path} row {first_row}"
    if kind == "same":
        return Skipped(
            str(path),
            SOURCE_TYPE,
            f"duplicate of {first}",
            locator=locator,
            source_id=doc.source_id,
        )
    return Reject(
        str(path),
        SOURCE_TYPE,
        f"duplicate {label} with different {kind} (first seen in {first})",
        locator=locator,
        source_id=doc.source_id,
    )
