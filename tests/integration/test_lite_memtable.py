"""Milvus Lite writes segments as an ingest goes, not all at its close (milvus_uri.py).

At milvus-lite's own default (128 MiB) a first ingest of up to ~40k chunks stays in memory
whole and is flushed, compacted and indexed when the run closes; corpusflow sets 16 MiB
unless the user set `MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES`. milvus_lite reads that once
at import, so each case runs in a fresh interpreter. Real Milvus Lite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path
    from corpusflow.store import INT_FIELDS, VARCHAR_FIELDS, MilvusStore

    db = Path(sys.argv[1])
    store = MilvusStore(str(db), "c")
    store.ensure_collection("c_rows", 8)
    text = "x" * 3000
    rows = [
        {f: "" for f in VARCHAR_FIELDS} | {f: 0 for f in INT_FIELDS} | {
            "id": f"00000000-0000-0000-0000-{i:012d}", "source_id": f"file:s{i}",
            "text": text, "start_seconds": None, "end_seconds": None,
            "vector": [float(i % 7 + 1)] * 8,
        }
        for i in range(8000)  # about 24 MB of text: more than 16 MiB, far below 128 MiB
    ]
    store.upsert("c_rows", rows)
    segments = len(list(db.rglob("*.parquet")))  # written before the store closes
    from milvus_lite.engine import collection
    print(json.dumps({"segments": segments, "limit": collection.MEMTABLE_MEMORY_LIMIT,
                      "count": store.count("c_rows")}))
    store.close()
    """
)


def _run(tmp_path, env_limit: str | None) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES"}
    if env_limit is not None:
        env["MILVUS_LITE_MEMTABLE_MEMORY_LIMIT_BYTES"] = env_limit
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path / "milvus.db")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_an_ingest_writes_segments_as_it_goes(tmp_path):
    got = _run(tmp_path, None)
    assert got["limit"] == 16 << 20
    assert got["count"] == 8000
    assert got["segments"] >= 1  # at milvus-lite's 128 MiB nothing is on disk yet


def test_a_limit_the_user_set_wins(tmp_path):
    got = _run(tmp_path, str(256 << 20))
    assert got["limit"] == 256 << 20
    assert (got["count"], got["segments"]) == (8000, 0)
