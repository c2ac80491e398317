"""The reference a streamed snapshot is held to (tests/unit/test_reliability_snapshot.py,
tests/integration/test_reliability_snapshot_sample.py)."""

from __future__ import annotations

from corpusflow.ids import canonical_json
from corpusflow.snapshot import SNAPSHOT_FORMAT


def in_memory_bytes(header: dict, records: list[dict], queries: dict) -> bytes:
    """The writer as it was before streaming (everything sorted in memory): the reference."""
    ordered = sorted(records, key=lambda r: r["id"])
    head = dict(header, format=SNAPSHOT_FORMAT, count=len(ordered), queries=queries)
    text = canonical_json(head)[:-1] + ',"records":[\n'
    for i, record in enumerate(ordered):
        text += ("," if i else "") + canonical_json(record) + "\n"
    return (text + "]}\n").encode("utf-8")
