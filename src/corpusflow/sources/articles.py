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
- The CSV must be UTF-8 (BOM optional), checked field by field: a row holding bytes that
  are not UTF-8 (Latin-1, cp1252, ...) is rejected with its row number and "re-save the
  file as UTF-8", the other rows are read. A header that is not UTF-8, a UTF-16 file and
  a binary file (NUL bytes and invalid UTF-8 in its first 64 KiB) are refused whole.
- Columns are found by name (see CANDIDATES; case, spaces, "_" and "-" are ignored, so
  `publishedAt`, `Published At` and `published_at` are one name), or set in params.yaml:
  `sources.columns` for every CSV, `sources.columns_by_file` per file name or glob.
- Without an id column the key is made from the url; without a url, from the title and the
  text together: distinct articles sharing a headline (AG News has many) get distinct keys,
  and the same row gets the same key on every run. An edited text then gets a new key, so
  the old version is removed only by a `full` cleanup; an id or url column avoids that.
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
import io
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from corpusflow.config import Columns, columns_for
from corpusflow.ids import csv_row_key, csv_source_id
from corpusflow.models import Document, Reject, Skipped, SourceItem
from corpusflow.sources.files import Seen, condense, escapes, guess_hint, input_files
from corpusflow.sources.transcripts import SkipFn

SOURCE_TYPE = "article"
MAX_BLOCK_SIZE = 1 << 30  # a single row larger than this is refused
_HEAD_BYTES = 1 << 16
MISSING_MARKERS = frozenset({"nan", "null", "none", "n/a", "#n/a", "nat", "<na>"})

# Auto-detected column names, in priority order (compared without case, spaces, "_", "-").
# The text column is picked first; a name it took is not used again (`article` is the text
# of a CSV without another text column, the title of one with `description` or `news`).
CANDIDATES: dict[str, tuple[str, ...]] = {
    "text": ("text", "content", "body", "description", "news", "article", "story"),
    "id": ("id", "article_id", "uuid", "guid"),
    "title": ("title", "headline", "heading", "article"),
    "author": ("author", "authors", "byline", "creator"),
    "url": ("url", "link", "article_url"),
    "published": (
        "published",
        "date",
        "published_at",
        "publish_date",
        "pub_date",
        "created_at",
        "date_added",
        "timestamp",
    ),
}
_FIELDS = tuple(CANDIDATES)


class _FileReject(Exception):
    """The whole file is refused, for this reason."""


def iter_articles(
    paths: Iterable[str | Path],
    columns: Columns | None = None,
    block_size: int = 1 << 20,
    by_file: Mapping[str, Columns] | None = None,
    skip: SkipFn | None = None,
) -> Iterator[SourceItem]:
    """Articles from CSV files (a directory means every *.csv under it, sorted).

    `columns` applies to every file; `by_file` maps a file name or glob to the columns of
    the files it matches (first match wins, over `columns`). Duplicates are judged across
    all the files of one call: the same source_id with the same content is Skipped, with
    different content Rejected (one source_id, one text).
    """
    columns = columns or Columns()
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
            mapping = columns_for(path, columns, by_file or {})
            yield from _read_csv(path, mapping, max(int(block_size), 1 << 8), seen)
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
    path: Path, columns: Columns, block_size: int, seen: Seen
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
            reader = _open_reader(path, header, block_size, on_invalid)
            picked = _pick_columns(reader.schema.names, columns)
            row = 0
            for batch in reader:
                values = {field: _column(batch.column(index)) for field, index in picked.items()}
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


def _open_reader(path: Path, header: list[str], block_size: int, on_invalid: Any) -> Any:
    """A streaming reader: every column as bytes (UTF-8 is checked per field, so one bad
    byte costs its row, not the file), one thread (row numbers stay exact)."""
    return pacsv.open_csv(
        path,
        read_options=pacsv.ReadOptions(block_size=block_size, use_threads=False),
        parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
        convert_options=pacsv.ConvertOptions(
            column_types={name: pa.binary() for name in header},
            strings_can_be_null=False,
            quoted_strings_can_be_null=False,
        ),
    )


def _column(column: Any) -> list[str | bytes | None]:
    """A column's values as text, validated by pyarrow in one pass; a column holding a bad
    byte stays bytes, so `_decode` can name the row and the byte."""
    try:
        return column.cast(pa.string()).to_pylist()
    except pa.ArrowInvalid:
        return column.to_pylist()


def _header(path: Path) -> list[str]:
    """Column names, checking first that the file is readable, non-empty text with a UTF-8
    header (the rows' encoding is checked field by field)."""
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
        if b"\x00" in head:
            raise _FileReject(
                f"not a UTF-8 text CSV (byte 0x{head[exc.start : exc.start + 1].hex()} at "
                f"offset {exc.start} and NUL bytes: binary?); re-save the file as UTF-8"
            ) from None
    text = head.decode("utf-8", "surrogateescape").removeprefix("\ufeff")
    try:
        names = next(csv.reader(io.StringIO(text, newline="")), [])
    except csv.Error as exc:
        raise _FileReject(condense(f"cannot read the CSV header: {exc}")) from None
    for name in names:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            shown = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
            raise _FileReject(
                condense(
                    f"the CSV header is not valid UTF-8 (column {shown!r}; "
                    f"{guess_hint(head)}); re-save the file as UTF-8"
                )
            ) from None
    return names


def _norm(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name.lower())


def _pick_columns(names: list[str], columns: Columns) -> dict[str, int]:
    """Field -> column index: overrides first (exact, then normalised), else candidates."""
    normalised: dict[str, int] = {}
    for index, name in enumerate(names):
        normalised.setdefault(_norm(name), index)
    found = condense(", ".join(names) or "(none)", 200)
    picked: dict[str, int] = {}
    for field in _FIELDS:  # overrides first, then the candidates for the fields left
        wanted = getattr(columns, field)
        if wanted is None:
            continue
        if wanted in names:
            picked[field] = names.index(wanted)
        elif _norm(wanted) in normalised:
            picked[field] = normalised[_norm(wanted)]
        else:
            raise _FileReject(
                condense(
                    f"column {wanted!r} set in sources.columns.{field} is not in the CSV "
                    f"header (columns found: {found})"
                )
            )
    for field in (f for f in _FIELDS if f not in picked):
        taken = set(picked.values())
        for candidate in CANDIDATES[field]:
            index = normalised.get(_norm(candidate))
            if index is not None and index not in taken:
                picked[field] = index
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


class _NotUtf8(Exception):
    """A field's bytes are not UTF-8: the row is rejected, the file goes on."""


def _decode(value: str | bytes | None, field: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _NotUtf8(
            f"{field} is not valid UTF-8 (byte 0x{value[exc.start : exc.start + 1].hex()} at "
            f"offset {exc.start} of the field; {guess_hint(value)}); re-save the file as UTF-8"
        ) from None


def _field(value: str) -> str:
    """A metadata field as one line; NULs stripped."""
    return " ".join(value.replace("\x00", "").split())


def _body(value: str) -> str:
    """The article text: NULs stripped, line ends normalised, outer whitespace trimmed."""
    return value.replace("\x00", "").replace("\r\n", "\n").replace("\r", "\n").strip()


def _key(meta: dict[str, str], text: str) -> tuple[str, str]:
    """(key, how it is shown); the key itself is made by ids.csv_row_key."""
    key, basis = csv_row_key(meta["id"], meta["url"], meta["title"], text)
    if not key:
        return "", ""
    if basis == "id":
        return key, f"id {key}"
    missing = "id or url" if basis == "title and text" else "id"
    return key, f"key {key} (no {missing}; made from the {basis})"


def _article(
    path: Path, row: int, raw: dict[str, str | bytes | None], seen: Seen
) -> Document | Reject | Skipped:
    locator = f"row {row}"
    values: dict[str, str] = {}
    bad = ""
    for name in _FIELDS:
        try:
            values[name] = _decode(raw.get(name), name)
        except _NotUtf8 as exc:
            values[name], bad = "", bad or str(exc)
    text = _body(values["text"])
    meta = {f: _field(values[f]) for f in ("id", "title", "author", "url", "published")}
    # an undecodable row keeps only a readable id: other keys would hash a partial row
    key, label = _key(meta, text) if not bad else (meta["id"], "")
    source_id = csv_source_id(path, key) if key else ""
    if bad:
        reason = f"row {row}: {bad}"
        return Reject(str(path), SOURCE_TYPE, reason, locator=locator, source_id=source_id)
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
