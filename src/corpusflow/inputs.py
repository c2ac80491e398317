"""Input files through one run: their fingerprints, and which documents came from which.

`Inputs.skip` is what the sources call before reading a file: an input whose fingerprint
and stored sources are current is answered with `Unchanged` (not read), one the memo has
seen with its parsed documents (not parsed). A file's fingerprint is recorded in the state
table once all its documents are stored and it gave no reject and no duplicate.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from corpusflow.ids import hash_value, input_key, input_of_id
from corpusflow.models import Unchanged
from corpusflow.state import StateTable


# ----------------------------------------------------------------------------------------
# fingerprints
# ----------------------------------------------------------------------------------------
def _stat_part(path: Path, regular: bool = False) -> list[Any] | None:
    """The stat fields of a fingerprint; None if unreadable (or, with `regular`, if not a
    regular file: one `stat` answers both)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if regular and not stat.S_ISREG(st.st_mode):
        return None
    return [path.name, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev]


def _sharing_prefix(names: list[str], prefix: str) -> list[str]:
    """The names in sorted `names` that start with `prefix`: one run of the list, found by
    bisection rather than by testing every sidecar in the folder for every file in it
    (quadratic in the folder's size)."""
    i = start = bisect.bisect_left(names, prefix)
    while i < len(names) and names[i].startswith(prefix):
        i += 1
    return names[start:i]


class Fingerprints:
    """Input fingerprints for one run: what would make re-reading a file give other
    documents. A file's own stat (size, mtime, ctime, inode, as DVC's state does), the stats
    of every metadata sidecar that could belong to it (any `*.info.json`/`*.meta.json` beside
    it sharing its name up to the first dot), and a salt: the code that parses inputs and the
    settings it reads, so a new parser or column mapping re-reads every input once."""

    def __init__(self, settings: Any):
        package = Path(__file__).parent / "sources"
        code = [(p.name, p.read_bytes()) for p in sorted(package.glob("*.py"))]
        for name in ("models.py", "ids.py", "memo.py"):  # documents, their hashes, the memo form
            code.append((name, Path(__file__).with_name(name).read_bytes()))
        self.salt = hash_value([[n, hashlib.sha256(b).hexdigest()] for n, b in code] + [settings])
        self._sidecars: dict[Path, list[str]] = {}

    def of(self, path: Path) -> str | None:
        """The fingerprint of `path`, or None if it is not a readable regular file."""
        own = _stat_part(path, regular=True)
        if own is None:
            return None
        prefix = path.name.split(".", 1)[0]
        names = _sharing_prefix(self._sidecar_names(path.parent), prefix)
        sidecars = [_stat_part(path.parent / name) for name in names]
        return hash_value([self.salt, own, sidecars])

    def _sidecar_names(self, folder: Path) -> list[str]:
        if folder not in self._sidecars:  # one listing per directory per run
            try:
                names = sorted(
                    n
                    for n in os.listdir(folder)
                    if n.lower().endswith((".info.json", ".meta.json"))
                )
            except OSError:
                names = []
            self._sidecars[folder] = names
        return self._sidecars[folder]


# ----------------------------------------------------------------------------------------
# inputs: which file each document came from, and when a file is done
# ----------------------------------------------------------------------------------------
class Inputs:
    """Follows the input files of one run through the pipeline.

    Sources call `skip(path, type)` before reading each file; an unchanged one is answered
    with `Unchanged` and not read. A document belongs to the input its origin names (a file
    read without `skip`, such as one of a Whisper format group, is never fingerprinted).
    Once every document of a file is loaded, and the file gave no reject and no duplicate,
    its fingerprint is recorded, so the next run skips it.
    """

    def __init__(self, state: StateTable, chunker: str, settings: Any, memo: Any = None):
        self.state, self.chunker, self.memo = state, chunker, memo
        self.parsed: list[Any] | None = None  # documents of the input being parsed, to memo
        self.prints = Fingerprints(
            settings.model_dump() if hasattr(settings, "model_dump") else settings
        )
        self.current = ""  # the input being read
        self.fingerprint: dict[str, str] = {}  # input -> fingerprint taken before reading it
        self.pending: dict[str, int] = {}  # input -> its documents not yet loaded
        self.ended: list[str] = []  # inputs read to the end, waiting for their documents
        self.impure: set[str] = set()  # inputs that gave a reject or duplicate this run

    def skip(self, path: Path, source_type: str) -> list[Any] | None:
        """What to yield instead of reading `path`: [Unchanged], its memoized documents, or
        None (read it)."""
        self._end_current()
        key = input_key(path)
        fp = self.prints.of(path)
        self.current = key
        if fp is None:
            return None
        found = self.state.unchanged_input(key, fp, self.chunker)
        if found is not None:
            stype, documents, chunks = found
            self.current = ""
            return [Unchanged(str(path), stype, key, documents, chunks)]
        self.fingerprint[key] = fp
        docs = self.memo.documents(fp) if self.memo is not None else None
        if docs is None:
            self.parsed = []
        return docs

    def document(self, doc: Any) -> None:
        key = self.input_of(doc)
        if self.parsed is not None and key == self.current:
            self.parsed.append(doc)
        self.state.see([doc.source_id])
        if key:
            self.pending[key] = self.pending.get(key, 0) + 1

    @staticmethod
    def input_of(doc: Any) -> str:
        """The input a document came from, as its origin names it ("PATH" or "PATH row N")."""
        if not doc.origin:
            return input_of_id(doc.source_id)
        return input_key(doc.origin.rsplit(" row ", 1)[0])

    @staticmethod
    def _key(item: Any) -> str:
        return input_key(item.source) if item.source else ""

    def met_unchanged(self, source_id: str) -> bool:
        return self.state.met(source_id)

    def rejected(self, item: Any) -> None:
        if item.source_id:
            self.state.see([item.source_id])
        key = self._key(item)
        self.impure.add(key)
        if key and not item.locator:  # the whole input was rejected
            self.state.see_input(key)

    def impure_input(self, input: str) -> None:
        self.impure.add(input)

    def duplicate(self, item: Any) -> None:
        self.impure.add(self._key(item))

    def loaded(self, inputs: Iterable[str]) -> None:
        for key in inputs:
            if key in self.pending:
                self.pending[key] -= 1
        self._record_done()

    def close(self) -> None:
        self._end_current()
        self._record_done()

    def _end_current(self) -> None:
        parsed, self.parsed = self.parsed, None
        key = self.current
        if parsed and key not in self.impure and key in self.fingerprint:
            self.memo.put_documents(self.fingerprint[key], parsed)
        if self.current:
            self.ended.append(self.current)
            self.pending.setdefault(self.current, 0)
        self.current = ""

    def _record_done(self) -> None:
        waiting = []
        for key in self.ended:
            if self.pending.get(key, 0) > 0:
                waiting.append(key)
                continue
            self.pending.pop(key, None)
            fp = self.fingerprint.pop(key, None)
            if key in self.impure or fp is None:
                self.state.forget_input(key)
            else:
                self.state.record_input(key, fp)
        self.ended = waiting
