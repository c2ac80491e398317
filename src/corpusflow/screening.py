"""Screening: source items become unique documents. Rejects go to the rejects file with a
reason, duplicates to the duplicates file with where they were first seen, files that are
not inputs are counted; every source id reaches the later stages at most once a run."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from corpusflow.inputs import Inputs
from corpusflow.models import Document, IngestResult, Reject, Skipped, SourceItem, Unchanged
from corpusflow.sources.files import Seen
from corpusflow.store import VARCHAR_FIELDS


def duplicates_path(rejects: str | Path) -> Path:
    """Duplicates are listed beside the rejects: data/rejects.jsonl -> data/duplicates.jsonl."""
    return Path(rejects).with_name("duplicates.jsonl")


class RejectLog:
    """Appends rejects to data/rejects.jsonl (one JSON object a line, with the run id); the
    same writer lists skipped duplicates, with where they were first seen, beside it."""

    def __init__(self, path: str | Path, run_id: str, enabled: bool = True):
        self.path, self.run_id, self.enabled = Path(path), run_id, enabled
        self.items: list[Reject | Skipped] = []

    def add(self, reject: Reject | Skipped) -> None:
        self.items.append(reject)
        if not self.enabled:
            return
        from corpusflow.files import append_jsonl  # a torn last line stays apart

        entry = {"run_id": self.run_id, "time": datetime.now(UTC).isoformat(), **asdict(reject)}
        append_jsonl(self.path, entry)


def _oversized_field(doc: Document) -> str | None:
    for name in ("source_id", "title", "author", "url", "published"):
        size = len(getattr(doc, name).encode("utf-8"))
        if size > VARCHAR_FIELDS[name]:
            return f"{name} is {size} bytes in UTF-8, over Milvus' limit of {VARCHAR_FIELDS[name]}"
    return None


class Screener:
    """Turns source items into unique documents: rejects logged, duplicates counted.

    Used by every ingest, and alone by the DVC extract stage (no Milvus needed).
    """

    def __init__(
        self,
        result: IngestResult,
        rejects: RejectLog,
        on_reject: Callable[[Reject], None] | None = None,
        inputs: Inputs | None = None,
        duplicates: RejectLog | None = None,
    ):
        self.result, self.rejects, self.on_reject = result, rejects, on_reject
        self.inputs, self.duplicates = inputs, duplicates
        self.seen = Seen()  # first occurrence of each source id, across inputs
        self.protected: set[str] = set()  # rejected this run: `full` cleanup must keep them

    def reject(self, item: Reject, input_counted: bool = False) -> None:
        self.rejects.add(item)
        self.result.rejected += 1
        if not input_counted:
            self.result.count(item.source_type, "inputs")
        self.result.count(item.source_type, "rejected")
        if item.source_id:
            self.protected.add(item.source_id)
        if self.inputs is not None:
            self.inputs.rejected(item)
        if self.on_reject:
            self.on_reject(item)

    def _duplicate(self, item: Skipped) -> None:
        self.result.duplicates += 1
        self.result.count(item.source_type, "inputs")
        self.result.count(item.source_type, "duplicates")
        if self.duplicates is not None:
            self.duplicates.add(item)
        if self.inputs is not None:
            self.inputs.duplicate(item)

    def _skip(self, item: Skipped) -> None:
        """A file that is not an input: counted and listed, never an error."""
        self.result.skipped_inputs += 1
        self.result.count(item.source_type, "inputs")
        self.result.count(item.source_type, "skipped")
        self.result.skipped_files.append({"source": item.source, "reason": item.reason})

    def _unchanged(self, item: Unchanged) -> None:
        r = self.result
        r.documents += item.documents
        r.unchanged_documents += item.documents
        r.chunks += item.chunks
        r.skipped += item.chunks
        for key in ("inputs", "documents", "unchanged"):
            r.count(item.source_type, key, item.documents)

    def screen(self, items: Iterable[SourceItem]) -> Iterator[Document]:
        """Documents to process: rejects logged, duplicates counted, each source id once."""
        for item in items:
            if isinstance(item, Reject):
                self.reject(item)
            elif isinstance(item, Skipped):
                (self._duplicate if item.duplicate else self._skip)(item)
            elif isinstance(item, Unchanged):
                self._unchanged(item)
            elif item.source_id in self.seen or (
                self.inputs is not None and self.inputs.met_unchanged(item.source_id)
            ):
                first = self.seen.first(item.source_id) or "an unchanged input"
                verdict = (
                    self.seen.check(item, item.origin) if item.source_id in self.seen else None
                )
                if verdict is not None and verdict[0] == "same":
                    why = f"duplicate of {first}"
                    self._duplicate(Skipped(item.origin, item.source_type, why, "", item.source_id))
                else:
                    why = f"duplicate source id {item.source_id} with different content"
                    self.reject(Reject(item.origin, item.source_type, f"{why} (first: {first})"))
            elif reason := _oversized_field(item):
                self.reject(Reject(item.origin, item.source_type, reason, source_id=item.source_id))
            else:
                self.seen.check(item, item.origin)
                self.result.count(item.source_type, "inputs")
                if self.inputs is not None:
                    self.inputs.document(item)
                yield item
