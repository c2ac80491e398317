"""The lineage ledger on its own: same bytes, same version; concurrent appends; use_snapshot
offline; the evaluation's ranking and scores. (The end-to-end lineage graph with Milvus Lite,
MiniLM and comet_ml is tests/integration/test_lineage.py.)
"""

from __future__ import annotations

import os
import threading

import pytest

os.environ.setdefault("COMET_DISABLE_AUTO_LOGGING", "1")
os.environ.setdefault("COMET_DISABLE_ANNOUNCEMENT", "true")


from corpusflow.evaluation import QueryOutcome, rank_sources, score  # noqa: E402
from corpusflow.lineage import Ledger, LineageError, use_snapshot  # noqa: E402


def test_same_bytes_same_version_and_references(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    a = ledger.record_produced({"sha256": "a" * 64, "sources": {"s": "h1"}})
    b = ledger.record_produced({"sha256": "b" * 64, "sources": {"s": "h2"}})
    a2 = ledger.record_produced({"sha256": "a" * 64, "sources": {"s": "h1"}})
    assert (a["version"], b["version"], a2["version"]) == ("v1", "v2", "v1")
    assert a["new_version"] and not a2["new_version"] and "sources" not in a2
    assert ledger.resolve("latest")["version"] == "v1"  # the newest run made v1 again
    assert ledger.resolve("bbbbbbb")["version"] == "v2"
    ledger.append({"event": "comet_synced", "sha256": "b" * 64, "comet": {"version": "4.0.0"}})
    assert ledger.resolve("4.0.0")["version"] == "v2"
    with pytest.raises(LineageError, match="no snapshot"):
        ledger.resolve("cccccccc")
    # a torn last line (killed writer) is skipped, and the next append starts a fresh line
    with ledger.path.open("a") as f:
        f.write('{"event": "produced", "sha2')
    c = ledger.record_produced({"sha256": "c" * 64})
    assert c["version"] == "v3" and len(ledger.events()) == 5


def test_concurrent_appends_never_share_a_version(tmp_path):
    ledger = Ledger(tmp_path / "ledger.jsonl")
    shas = [f"{i:064x}" for i in range(12)]
    threads = [threading.Thread(target=ledger.record_produced, args=({"sha256": s},)) for s in shas]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    versions = {e["sha256"]: e["version"] for e in ledger.events()}
    assert sorted(versions.values(), key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 13)]


def test_use_snapshot_offline_finds_matching_bytes_or_says_how(tmp_path):
    data = b'{"records":[]}\n'
    import hashlib

    sha = hashlib.sha256(data).hexdigest()
    ledger = Ledger(tmp_path / "ledger.jsonl")
    ledger.record_produced({"sha256": sha, "snapshot": {"path": str(tmp_path / "gone.json")}})
    with pytest.raises(LineageError, match="dvc checkout"):
        use_snapshot(version_or_alias="v1", ledger=ledger)
    (tmp_path / "other.json").write_bytes(b"different")
    store = tmp_path / "store"
    store.mkdir()
    (store / f"{sha}.json").write_bytes(data)
    used = use_snapshot(
        version_or_alias="latest",
        ledger=ledger,
        candidates=[tmp_path / "other.json"],
        content_dirs=[store],
    )
    assert used.path == str(store / f"{sha}.json") and used.version == "v1"
    assert used.source == "ledger"


def test_ranking_and_scores():
    records = [[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]
    sources = ["a", "b", "c"]
    ranked = rank_sources([[1.0, 0.0], [0.0, 1.0]], records, sources, depth=2)
    assert ranked == [["a", "b"], ["c", "b"]]
    outcomes = [
        QueryOutcome("q1", "a", 1, ["a"]),
        QueryOutcome("q2", "b", 2, ["c", "b"]),
        QueryOutcome("q3", "z", None, ["a"]),
    ]
    assert score(outcomes, 2) == (round(2 / 3, 6), round((1 + 0.5) / 3, 6))
    assert score(outcomes, 1) == (round(1 / 3, 6), round(1 / 3, 6))
