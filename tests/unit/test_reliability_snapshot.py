"""The snapshot writer streams with bounded memory to exactly the bytes of the in-memory
writer, whatever the run size. (The sample corpus through Milvus Lite and MiniLM:
tests/integration/test_reliability_snapshot_sample.py.)"""

from __future__ import annotations

import json
import random

import pytest

from corpusflow.snapshot import (
    by_id,
    write_snapshot,
)
from snapshot_reference import in_memory_bytes

TIMEOUT = 120.0


def _random_record(rng: random.Random, i: int) -> dict:
    alphabet = "aé€𝔘 \n\t\"\\'\u2028\u0000🎉עב"
    text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
    return {
        "id": f"{rng.randrange(16**8):08x}-{i:04d}" if i % 7 else f"{rng.randrange(10):x}",
        "text": text,
        "chunk_index": rng.randint(-5, 10**12),
        "start_seconds": rng.choice([None, rng.uniform(-1e6, 1e6), 0.1, 1e-300]),
        "title": rng.choice(["", "T", text[::-1]]),
        "nested": {"z": rng.random(), "a": [1, "x", None]},
    }


@pytest.mark.parametrize("run_size", [1, 7, 100, 10_000])
def test_a_randomized_collection_streams_to_the_same_bytes(tmp_path, run_size):
    rng = random.Random(run_size)
    records = [_random_record(rng, i) for i in range(900)]  # ids repeat: stability matters
    picked = [r for r in records if r["chunk_index"] % 3 == 0]
    hits = [dict(r, score=round(rng.random(), 4)) for r in records[:5]]  # ranked, not sorted
    header = {"collection": "c", "physical_collection": "c__m_384"}
    result = write_snapshot(
        tmp_path / "s.json",
        header,
        iter(records),
        {"picked": by_id(iter(picked)), "hits": hits, "empty": by_id(iter([]))},
        {"run_id": "r"},
        run_size=run_size,
    )
    queries = {"picked": sorted(picked, key=lambda r: r["id"]), "hits": hits, "empty": []}
    assert (tmp_path / "s.json").read_bytes() == in_memory_bytes(header, records, queries)
    assert result.records == 900
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.json", "s.manifest.json"]


class Counted(dict):
    """A record that knows how many records are alive at once."""

    alive = 0
    peak = 0

    def __init__(self, *args, **kw):
        super().__init__(*args, **kw)
        Counted.alive += 1
        Counted.peak = max(Counted.peak, Counted.alive)

    def __del__(self):
        Counted.alive -= 1


def test_the_writer_never_holds_more_than_one_run_of_records(tmp_path):
    rng = random.Random(5)
    Counted.alive = Counted.peak = 0

    def records(n: int, tag: str):
        for i in range(n):
            yield Counted(_random_record(rng, i), id=f"{tag}{rng.random()}")

    write_snapshot(
        tmp_path / "s.json",
        {"collection": "c"},
        records(5000, "r"),
        {"by_filter": by_id(records(3000, "q"))},
        {},
        run_size=50,
    )
    assert Counted.peak <= 51, Counted.peak  # one run in memory, plus the record arriving
    data = json.loads((tmp_path / "s.json").read_text(encoding="utf-8"))
    assert data["count"] == 5000 and len(data["queries"]["by_filter"]) == 3000
    ids = [r["id"] for r in data["records"]]
    assert ids == sorted(ids)
