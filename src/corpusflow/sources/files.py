"""Finding and decoding input files: the walk, the path rule, and the checks made before
any file is opened. Shared by the transcript and CSV sources.

Paths: what may be read (the same rule for transcripts and CSVs):
- A path the user names (on the command line or in params.yaml) is read where it points,
  `..` components and symlinks included: naming it is the user's decision.
- A directory is the boundary for everything found by walking it. A file, directory or
  metadata sidecar inside it that is a symlink resolving outside it is never read: it is
  rejected with "symlink leads outside DIR (to TARGET) ...", so a link planted in a data
  directory cannot pull in (and index) files from elsewhere on the machine.
- Symlinked directories are not descended into. One whose target is inside the directory is
  skipped (its files are read at their real path); one pointing outside is rejected, as above.
- Hidden names (starting with ".") are ignored, files and directories alike.
- Only regular files are opened: a FIFO, socket or device (named or found) is rejected
  before any open(), since reading a FIFO with no writer blocks for ever.
- A name that is not valid UTF-8 is rejected (shown with the bad byte escaped): its id,
  title and reject line could not be stored or printed otherwise.
"""

from __future__ import annotations

import codecs
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from corpusflow.ids import sha256_text
from corpusflow.models import Document, Reject, Skipped

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),  # before UTF-16 LE: its BOM starts the same way
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_KINDS = (
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISDIR, "a directory"),
)
_LATIN_GUESSES = ("cp125", "latin", "iso8859", "mac_", "cp437", "cp850", "ascii")


class BadInput(Exception):
    """Raised inside a parser to turn the current input into a Reject with this reason."""


def condense(message: object, limit: int = 300) -> str:
    """One line, bounded length: library messages go into reject files and log lines."""
    text = " ".join(str(message).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def shown(path: Path | str) -> str:
    """A path as printable UTF-8: undecodable name bytes become `\\xNN`."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def walk(root: Path, keep: Callable[[Path], bool]) -> list[Path]:
    """Files under `root` (recursive, hidden names skipped) that `keep` accepts, plus every
    symlinked directory (never descended into: see `linked_directory`), sorted."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found.extend(Path(dirpath, d) for d in dirnames if Path(dirpath, d).is_symlink())
        for name in filenames:
            path = Path(dirpath, name)
            if not is_hidden(path) and keep(path):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).parts)


def escapes(path: Path, root: Path | None) -> str | None:
    """Why `path`, found by walking `root`, must not be read (it resolves outside `root`),
    or None. Explicitly named paths (`root` None) are read wherever they point."""
    if root is None:
        return None
    try:
        base = root.resolve()
        target = path.resolve()
    except (OSError, RuntimeError) as exc:  # a symlink loop
        return condense(f"cannot resolve the path ({exc}); a symlink loop?")
    if target == base or base in target.parents:
        return None
    return (
        f"symlink leads outside {shown(root)} (to {shown(target)}); only files inside a "
        "directory given as a source are read from it: copy the file in, or name it explicitly"
    )


def linked_directory(path: Path, root: Path, source_type: str) -> Reject | Skipped:
    """A symlinked directory met while walking `root`: never followed, always accounted."""
    outside = escapes(path, root)
    if outside:
        return Reject(str(path), source_type, outside)
    return Skipped(
        str(path),
        source_type,
        f"symlinked directory, not followed: its target inside {root} is read at its own path",
        duplicate=False,
    )


def unreadable(path: Path) -> str | None:
    """Why `path` must not be opened (an undecodable name, not a regular file), or None.
    Missing files and broken links pass: reading them gives the precise reason."""
    raw = os.fsencode(str(path))
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (
            f"file name is not valid UTF-8 (byte 0x{raw[exc.start : exc.start + 1].hex()}); "
            "rename the file with a UTF-8 name"
        )
    try:
        mode = path.stat().st_mode  # follows a symlink: the target is what would be read
    except OSError:
        return None
    for test, kind in _KINDS:
        if test(mode):
            return f"not a regular file ({kind}); it is not read"
    return None


def input_files(
    paths: Iterable[str | Path],
    keep: Callable[[Path], bool],
    source_type: str,
    not_input: Callable[[Path], str | None] | None = None,
) -> Iterator[tuple[Path, Path | None] | Reject | Skipped]:
    """Each named path, or the files `keep` accepts under a named directory (sorted), as
    (path, the walked directory or None); missing paths, symlinked directories, undecodable
    names and non-regular files come out as Rejects/Skipped, so every input is accounted for.
    A walked file for which `not_input` gives a reason is Skipped with it, unopened."""
    for given in paths:
        root = Path(given)
        if root.is_dir():
            for path in walk(root, keep):
                if path.is_symlink() and path.is_dir():
                    yield linked_directory(path, root, source_type)
                elif not_input and (why := not_input(path)):
                    yield Skipped(shown(path), source_type, why, duplicate=False)
                elif why := unreadable(path):
                    yield Reject(shown(path), source_type, why)
                else:
                    yield path, root
        elif root.exists() or root.is_symlink():
            if why := unreadable(root):
                yield Reject(shown(root), source_type, why)
            else:
                yield root, None
        else:
            yield Reject(shown(given), source_type, "no such file or directory")


class Seen:
    """First occurrence of each source_id, to tell exact duplicates from conflicting ones:
    the one place duplicates by source id are judged (within a source call: transcripts,
    articles, YouTube ids; and across sources: the pipeline's screening).

    Keeps 16-byte digests, not texts, so a CSV far larger than memory can be checked.
    """

    def __init__(self) -> None:
        self._first: dict[str, tuple[bytes, bytes, object]] = {}

    def __contains__(self, source_id: object) -> bool:
        return source_id in self._first

    def __iter__(self) -> Iterator[str]:
        return iter(self._first)

    def first(self, source_id: str) -> object | None:
        """Where `source_id` was first seen (None: not yet)."""
        first = self._first.get(source_id)
        return None if first is None else first[2]

    def claim(self, source_id: str, where: object) -> object | None:
        """By id alone, before there is any content (a video to fetch once): None for a new
        source_id (now recorded as first seen at `where`), else where it was first seen."""
        if source_id in self._first:
            return self._first[source_id][2]
        self._first[source_id] = (b"", b"", where)
        return None

    def check(self, doc: Document, where: object) -> tuple[str, object] | None:
        """None for a new source_id; else ("same"|"text"|"metadata", where it was first seen)."""
        content, text = _digest(doc.content_hash), _digest(sha256_text(doc.text))
        first = self._first.get(doc.source_id)
        if first is None:
            self._first[doc.source_id] = (content, text, where)
            return None
        if first[0] == content:
            return "same", first[2]
        return ("text" if first[1] != text else "metadata"), first[2]


def _digest(hex_hash: str) -> bytes:
    return bytes.fromhex(hex_hash[:32])


def guess_hint(data: bytes) -> str:
    """What a non-UTF-8 file probably is, for the reject reason only (never to decode it:
    a wrong guess would index mojibake under a stable hash)."""
    if len(data) < 32:  # too little to tell: name the usual suspects
        return "Latin-1/cp1252?"
    try:
        from charset_normalizer import from_bytes
    except ImportError:  # pragma: no cover - requests ships it
        return "Latin-1/cp1252?"
    best = from_bytes(data[: 1 << 16]).best()
    name = (best.encoding if best else "").lower()
    if not name or name.startswith(_LATIN_GUESSES) or name.startswith("utf"):
        return "Latin-1/cp1252?"
    return f"it looks like {name.upper()}"


def decode(data: bytes) -> str:
    """Bytes to text: UTF-8 (BOM optional) or UTF-16/32 by BOM; anything else is refused."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                text = data[len(bom) :].decode(encoding)
            except UnicodeDecodeError as exc:
                raise BadInput(
                    f"not valid {encoding.upper()} despite its BOM ({exc.reason})"
                ) from None
            break
    else:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            if b"\x00" in data:
                raise BadInput(
                    "binary file (contains NUL bytes), or UTF-16 without a BOM; expected UTF-8 text"
                ) from None
            bad = data[exc.start : exc.start + 1].hex()
            raise BadInput(
                f"not valid UTF-8 (byte 0x{bad} at offset {exc.start}; {guess_hint(data)}); "
                "re-save the file as UTF-8"
            ) from None
    if "\x00" in text:
        raise BadInput(
            "binary file (contains NUL bytes), or UTF-16 without a BOM; expected UTF-8 text"
        )
    return text
